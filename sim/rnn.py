"""Run the LSTM and GRU engines (:class:`hw.rnn.LSTMEngine`, :class:`hw.rnn.GRUEngine`) in an
RTL simulator.

:func:`run_lstm_batch` (:func:`run_gru_batch`) runs several sequences (each with its own
weights, biases, inputs and initial state) on one build in a single simulator process;
:func:`run_lstm` (:func:`run_gru`) runs one. The
Verilog is emitted once per parameter set (cached on disk, keyed by the parameters and the
source of ``hw.rnn``/``hw.dense``/``hw.emit``) and the bench is :mod:`sim.rnn_tb`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ir.golden import RNNQuantConfig
from sim.emit_cache import emit_cached, source_digest
from sim.runner import BuiltDesign, build_design, check_simulator, run_cocotb

__all__ = ["GRUJob", "GRURun", "LSTMJob", "LSTMRun", "emit_rnn", "rnn_design", "run_gru",
           "run_gru_batch", "golden_gru_sequence", "golden_sequence",
           "random_gru_job", "random_job", "saturating_job", "bcr_pruned", "rnn_mismatches",
           "run_lstm", "run_lstm_batch"]

TEST_MODULE = "sim.rnn_tb"


@dataclass(frozen=True)
class LSTMJob:
    """One sequence: ``qx`` ``(steps, input)``, ``qh``/``qc`` ``(hidden,)`` initial state,
    ``qweight_ih`` ``(4H, input)``, ``qweight_hh`` ``(4H, H)``, optional int32 biases ``(4H,)``
    (the arguments of ``ir.golden.lstm_step``); for BCR gates, optional BCR masks ``mask_ih``,
    ``mask_hh`` of the weights (default: their non-zeros)."""

    qx: np.ndarray
    qh: np.ndarray
    qc: np.ndarray
    qweight_ih: np.ndarray
    qweight_hh: np.ndarray
    bias_ih: np.ndarray | None = None
    bias_hh: np.ndarray | None = None
    mask_ih: np.ndarray | None = None
    mask_hh: np.ndarray | None = None


@dataclass(frozen=True)
class GRUJob:
    """One GRU sequence: the arguments of ``ir.golden.gru_step`` with ``qx`` ``(steps, input)``
    (weights ``(3H, input)``, ``(3H, H)``, optional biases ``(3H,)``); ``mask_ih``/``mask_hh``
    as in :class:`LSTMJob`."""

    qx: np.ndarray
    qh: np.ndarray
    qweight_ih: np.ndarray
    qweight_hh: np.ndarray
    bias_ih: np.ndarray | None = None
    bias_hh: np.ndarray | None = None
    mask_ih: np.ndarray | None = None
    mask_hh: np.ndarray | None = None


@dataclass(frozen=True)
class GRURun:
    """Results of one GRU job: ``h_seq`` int32 ``(steps, hidden)``, ``h`` the final hidden
    state read back from the ``h`` memory, ``cycles``."""

    h_seq: np.ndarray
    h: np.ndarray
    cycles: int
    run_seconds: float = 0.0


@dataclass(frozen=True)
class LSTMRun:
    """Results of one job: ``h_seq`` int32 ``(steps, hidden)`` (``h_seq[-1]`` is the final
    ``h``), ``c`` int32 ``(hidden,)`` final cell state, ``h`` int32 final hidden state read
    back from the ``h`` memory, ``cycles`` the engine's count, ``run_seconds`` the simulator's
    wall time from ``start`` to ``done``."""

    h_seq: np.ndarray
    c: np.ndarray
    h: np.ndarray
    cycles: int
    run_seconds: float = 0.0


def golden_sequence(x, h, c, w_ih, w_hh, b_ih, b_hh, cfg):
    """``ir.golden.lstm_step`` iterated over ``x`` (``(steps, input)``): returns every step's
    ``h`` as ``(steps, hidden)`` and the final ``c``."""
    from ir.golden import lstm_step

    hs = []
    for t in range(len(x)):
        h, c = lstm_step(x[t], h, c, w_ih, w_hh, b_ih, b_hh, config=cfg)
        hs.append(h)
    return np.array(hs), c


def golden_gru_sequence(x, h, w_ih, w_hh, b_ih, b_hh, cfg):
    """``ir.golden.gru_step`` iterated over ``x``: every step's ``h``, ``(steps, hidden)``."""
    from ir.golden import gru_step

    hs = []
    for t in range(len(x)):
        h = gru_step(x[t], h, w_ih, w_hh, b_ih, b_hh, config=cfg)
        hs.append(h)
    return np.array(hs)


def random_gru_job(rng, cfg, isz, hsz, steps, *, bias=True, extreme=False):
    """A random ``(qx, qh, qweight_ih, qweight_hh, bias_ih, bias_hh)`` GRU tuple (see
    :func:`random_job`)."""
    x, h, _, _, _, _, _ = random_job(rng, cfg, isz, hsz, steps, bias=False, extreme=extreme)
    w = (1 << (cfg.weight_bits - 1)) - 1
    if extreme:
        pick = lambda shape: rng.choice([-w, w], shape)  # noqa: E731
    else:
        pick = lambda shape: rng.integers(-w, w + 1, shape)  # noqa: E731
    b = (lambda: rng.integers(-4000, 4001, 3 * hsz)) if bias else (lambda: None)
    return x, h, pick((3 * hsz, isz)), pick((3 * hsz, hsz)), b(), b()


def saturating_job(cfg, isz, hsz, steps, sign):
    """An LSTM job that drives the state to a rail: zero weights and huge biases make i, f and o
    the largest sigmoid code and g the tanh rail of sign ``sign`` (+1 or -1); ``c0`` starts at
    the cell rail of that sign."""
    cm = (1 << (cfg.cell_bits - 1)) - 1
    bias = np.full((4, hsz), 1 << 30, dtype=np.int64)
    bias[2] *= sign
    return (np.ones((steps, isz), dtype=np.int64), np.zeros(hsz, dtype=np.int64),
            np.full(hsz, sign * cm), np.zeros((4 * hsz, isz), dtype=np.int64),
            np.zeros((4 * hsz, hsz), dtype=np.int64), bias.reshape(-1), None)


def random_job(rng, cfg, isz, hsz, steps, *, bias=True, extreme=False):
    """A random ``(qx, qh, qc, qweight_ih, qweight_hh, bias_ih, bias_hh)`` tuple within the
    config's widths (``extreme``: only the symmetric extremes; ``bias=False``: no biases)."""
    a = (1 << (cfg.act_bits - 1)) - 1
    w = (1 << (cfg.weight_bits - 1)) - 1
    cm = (1 << (cfg.cell_bits - 1)) - 1
    if extreme:
        pick = lambda lim, shape: rng.choice([-lim, lim], shape)  # noqa: E731
    else:
        pick = lambda lim, shape: rng.integers(-lim, lim + 1, shape)  # noqa: E731
    b = (lambda: rng.integers(-4000, 4001, 4 * hsz)) if bias else (lambda: None)
    return (pick(a, (steps, isz)), pick(a, hsz), pick(cm, hsz), pick(w, (4 * hsz, isz)),
            pick(w, (4 * hsz, hsz)), b(), b())


def emit_rnn(cell: str, config: RNNQuantConfig, lanes: int, max_input: int, max_hidden: int,
             max_steps: int, *, gates: str = "dense", block: tuple[int, int] | None = None,
             max_blocks: int | None = None, max_value_words: int | None = None,
             slices: int = 1, cache_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Emit (or reuse) the Verilog of an :class:`hw.rnn.RNNEngine` (``cell`` ``"lstm"`` or
    ``"gru"``, ``gates`` ``"dense"`` or ``"bcr"``, ``slices`` BCR gates only); returns the file
    and the top-level module name (with one slice, the name and cache key of a build without
    the option)."""
    import hw.bcr
    import hw.dense
    import hw.emit
    import hw.rnn
    from hw.rnn import RNNEngine, check_lstm_parameters

    if cell not in ("lstm", "gru"):
        raise ValueError(f"Cell must be 'lstm' or 'gru', not {cell!r}")
    p = check_lstm_parameters(config, lanes=lanes, max_input=max_input, max_hidden=max_hidden,
                              max_steps=max_steps, gates=gates, block=block,
                              max_blocks=max_blocks, max_value_words=max_value_words, cell=cell,
                              slices=slices)
    modules = (hw.rnn, hw.dense, hw.bcr, hw.emit)
    key = json.dumps([cell, p, dataclasses.asdict(config), source_digest(*modules)],
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    tag = "" if gates == "dense" else "_bcr{}x{}".format(*p["block"])
    tag += f"_s{p['slices']}" if "slices" in p else ""
    name = (f"{cell}{tag}_p{p['lanes']}_i{p['max_input']}_h{p['max_hidden']}_"
            f"t{p['max_steps']}_{digest[:8]}")
    return emit_cached(lambda: RNNEngine(config, cell=cell, **p), name, key, modules,
                       cache_dir, digest=digest)


def rnn_design(cell: str, config: RNNQuantConfig, lanes: int, max_input: int, max_hidden: int,
               max_steps: int, *, gates: str = "dense", block: tuple[int, int] | None = None,
               max_blocks: int | None = None, max_value_words: int | None = None,
               slices: int = 1, simulator: str = "verilator",
               cache_dir: str | os.PathLike | None = None) -> BuiltDesign:
    """Emit and build (or reuse) an LSTM or GRU engine for ``simulator``."""
    v_path, name = emit_rnn(cell, config, lanes, max_input, max_hidden, max_steps, gates=gates,
                            block=block, max_blocks=max_blocks, max_value_words=max_value_words,
                            slices=slices, cache_dir=cache_dir)
    return build_design(v_path, name, simulator, cache_dir=cache_dir)


def _ints(arr, what: str, bits: int | None, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(arr)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{what} must have an integer dtype, not {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, not {a.shape}")
    if bits is not None:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if a.size and (a.min() < lo or a.max() > hi):
            raise ValueError(f"{what} values must lie in [{lo}, {hi}] for {bits} bits, "
                             f"found [{a.min()}, {a.max()}]")
    return a.astype(np.int64)


def _gate_images(n, cell, gates, w_ih, w_hh, job, lanes, p, inputs):
    """Fill ``inputs`` with job ``n``'s gate-engine memory images (BCR: each slice's bank,
    ``meta_<n>_<s>`` ..., and ``split_<n>``, its blocks per slice); return None (dense gates)
    or the stacked BCR gate matrix."""
    from hw.bcr import pack_bcr
    from hw.dense import pack_weights
    from hw.rnn import bcr_gate_matrix, gru_weight_matrix, lstm_weight_matrix
    from sim.bcr import _check_bank_fits

    if gates == "dense":
        if job.mask_ih is not None or job.mask_hh is not None:
            raise ValueError(f"Job {n}: masks are for BCR gates only")
        matrix = (lstm_weight_matrix if cell == "lstm" else gru_weight_matrix)(w_ih, w_hh)
        inputs[f"w_{n}"] = pack_weights(matrix, lanes)
        return None
    try:
        bcr = bcr_gate_matrix(cell, w_ih, w_hh, p["block"], job.mask_ih, job.mask_hh)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"Job {n}: {exc}") from None
    slices = p.get("slices", 1)
    img = pack_bcr(bcr, lanes, slices)
    for s in range(slices):
        bank = img.bank(s)
        _check_bank_fits(bank, f"Job {n}: " if slices == 1 else f"Job {n}, slice {s}: ",
                         {**p, "slices": slices})
        inputs[f"meta_{n}_{s}"] = bank.meta
        inputs[f"col_{n}_{s}"] = bank.col_index
        inputs[f"row_{n}_{s}"] = bank.row_index
        inputs[f"val_{n}_{s}"] = bank.values
    inputs[f"split_{n}"] = np.array(img.slice_blocks, dtype=np.int64)
    return bcr


def _run_batch(cell, jobs, config, lanes, simulator, max_input, max_hidden, max_steps,
               cache_dir, gates="dense", block=None, max_blocks=None, max_value_words=None,
               slices=1):
    from hw.bcr import bcr_field_widths
    from hw.rnn import (
        bcr_gate_layout,
        check_lstm_parameters,
        gru_bias_words,
        lstm_bias_words,
        rnn_bcr_cycles,
        rnn_cycles,
    )
    from sim.bcr import _bank_bits

    lstm = cell == "lstm"
    job_type = LSTMJob if lstm else GRUJob
    gates_n = 4 if lstm else 3
    check_simulator(simulator)
    p = check_lstm_parameters(config, lanes=lanes, max_input=max_input, max_hidden=max_hidden,
                              max_steps=max_steps, gates=gates, block=block,
                              max_blocks=max_blocks, max_value_words=max_value_words, cell=cell,
                              slices=slices)
    slices = p.get("slices", 1)
    if not jobs:
        raise ValueError("At least one job is needed")
    bcr = gates == "bcr"
    widths, banks = [0] * 6, [0] * 5
    if bcr:
        lay = bcr_gate_layout(cell, max_input, max_hidden, p["block"])
        wd = bcr_field_widths(lanes, p["block"], lay["rows"], lay["cols"])
        widths = [wd[k] for k in ("block_row", "block_col", "groups", "ncols", "col_index",
                                  "row_index")]
        banks = _bank_bits({**p, "lanes": lanes})
    inputs: dict[str, np.ndarray] = {
        "params": np.array([lanes, config.weight_bits, config.act_bits, config.cell_bits,
                            int(lstm), int(bcr)], dtype=np.int64),
        "widths": np.array(widths, dtype=np.int64),
        "slices": np.array([slices, *banks], dtype=np.int64)}
    shapes = []
    for n, job in enumerate(jobs):
        if not isinstance(job, job_type):
            raise TypeError(f"Job {n} must be a {job_type.__name__}, not {type(job).__name__}")
        qx = np.asarray(job.qx)
        if qx.ndim != 2 or qx.shape[0] == 0 or qx.shape[1] == 0:
            raise ValueError(f"Job {n}: qx must have shape (steps, input) with both positive, "
                             f"not {qx.shape}")
        steps, isz = qx.shape
        hsz = np.asarray(job.qh).shape[0] if np.asarray(job.qh).ndim == 1 else -1
        if hsz <= 0:
            raise ValueError(f"Job {n}: qh must have shape (hidden,) with hidden positive, "
                             f"not {np.asarray(job.qh).shape}")
        if steps > max_steps or isz > max_input or hsz > max_hidden:
            raise ValueError(f"Job {n}: steps {steps}, input {isz}, hidden {hsz} exceed the "
                             f"build's {max_steps}, {max_input}, {max_hidden}")
        ab, wb = config.act_bits, config.weight_bits
        x = _ints(qx, f"Job {n}: qx", ab, (steps, isz))
        h0 = _ints(job.qh, f"Job {n}: qh", ab, (hsz,))
        if lstm:
            inputs[f"c_{n}"] = _ints(job.qc, f"Job {n}: qc", config.cell_bits, (hsz,))
        w_ih = _ints(job.qweight_ih, f"Job {n}: qweight_ih", wb, (gates_n * hsz, isz))
        w_hh = _ints(job.qweight_hh, f"Job {n}: qweight_hh", wb, (gates_n * hsz, hsz))
        biases = [None if b is None else _ints(b, f"Job {n}: {name}", 32, (gates_n * hsz,))
                  for b, name in ((job.bias_ih, "bias_ih"), (job.bias_hh, "bias_hh"))]
        matrix = _gate_images(n, cell, gates, w_ih, w_hh, job, lanes, p, inputs)
        model = (rnn_cycles(cell, isz, hsz, steps, lanes) if matrix is None
                 else rnn_bcr_cycles(matrix, isz, hsz, steps, lanes, slices, cell=cell))
        inputs[f"b_{n}"] = (lstm_bias_words if lstm else gru_bias_words)(*biases, hsz)
        inputs[f"x_{n}"] = x.reshape(-1)
        inputs[f"h_{n}"] = h0
        blocks = 0 if matrix is None else matrix.block_count
        inputs[f"shape_{n}"] = np.array([isz, hsz, steps, blocks, 2 * model + 1000],
                                        dtype=np.int64)
        shapes.append((steps, hsz))
    inputs["count"] = np.array([len(jobs)], dtype=np.int64)

    design = rnn_design(cell, config, lanes, max_input, max_hidden, max_steps, gates=gates,
                        block=p.get("block"), max_blocks=p.get("max_blocks"),
                        max_value_words=p.get("max_value_words"), slices=slices,
                        simulator=simulator, cache_dir=cache_dir)
    result = run_cocotb(design, TEST_MODULE, inputs=inputs)
    cycles = result.arrays["cycles"]
    run_s = result.meta.get("run_seconds", [0.0] * len(jobs))
    runs = []
    for n, (steps, hsz) in enumerate(shapes):
        h_seq = result.arrays[f"hseq_{n}"].reshape(steps, hsz).astype(np.int32)
        h = result.arrays[f"h_{n}"].astype(np.int32)
        if lstm:
            runs.append(LSTMRun(h_seq, result.arrays[f"c_{n}"].astype(np.int32), h,
                                int(cycles[n]), float(run_s[n])))
        else:
            runs.append(GRURun(h_seq, h, int(cycles[n]), float(run_s[n])))
    return runs


_BATCH_DOC = """

    Parameters
    ----------
    jobs : sequence of {job}
    config : ir.golden.RNNQuantConfig
    lanes : int
        Gate-engine lanes (a multiple of 4 for dense gates).
    simulator : {{"verilator", "icarus"}}
    max_input, max_hidden, max_steps : int
        The build's largest shape.
    gates : {{"dense", "bcr"}}
        Gate products on :class:`hw.dense.DenseMatVec` or :class:`hw.bcr.BCRMatVec` (each
        job's weights, with its masks, through :func:`hw.rnn.bcr_gate_matrix`).
    block, max_blocks, max_value_words : optional
        BCR gates only (see :class:`hw.rnn.RNNEngine`; the depths are per slice).
    slices : int, optional
        BCR gates only: the gate engine's slices (default 1); each job's gate matrix is split
        by :func:`hw.bcr.pack_bcr` and must fit every slice's memories.
    cache_dir : path, optional

    Raises
    ------
    TypeError, ValueError
        On bad parameters, a shape beyond the build, values outside their widths, or a BCR
        matrix beyond the build's memories (of one slice).
    sim.runner.SimulationError
        If the simulation fails.
    """


def run_lstm_batch(jobs: Sequence[LSTMJob], config: RNNQuantConfig, lanes: int = 4,
                   simulator: str = "verilator", max_input: int = 16, max_hidden: int = 16,
                   max_steps: int = 8, *, gates: str = "dense",
                   block: tuple[int, int] | None = None, max_blocks: int | None = None,
                   max_value_words: int | None = None, slices: int = 1,
                   cache_dir: str | os.PathLike | None = None) -> list[LSTMRun]:
    return _run_batch("lstm", jobs, config, lanes, simulator, max_input, max_hidden, max_steps,
                      cache_dir, gates, block, max_blocks, max_value_words, slices)


run_lstm_batch.__doc__ = (
    "Run every job on one LSTM engine build in one simulator process.\n\n    Returns one "
    ":class:`LSTMRun` per job; ``h_seq[t]`` equals ``ir.golden.lstm_step`` iterated ``t + 1``\n"
    "    times, ``c`` the final cell state, ``cycles`` :func:`hw.rnn.lstm_cycles` (dense gates)"
    "\n    or :func:`hw.rnn.rnn_bcr_cycles` (BCR gates)." + _BATCH_DOC.format(job="LSTMJob"))


def run_gru_batch(jobs: Sequence[GRUJob], config: RNNQuantConfig, lanes: int = 4,
                  simulator: str = "verilator", max_input: int = 16, max_hidden: int = 16,
                  max_steps: int = 8, *, gates: str = "dense",
                  block: tuple[int, int] | None = None, max_blocks: int | None = None,
                  max_value_words: int | None = None, slices: int = 1,
                  cache_dir: str | os.PathLike | None = None) -> list[GRURun]:
    return _run_batch("gru", jobs, config, lanes, simulator, max_input, max_hidden, max_steps,
                      cache_dir, gates, block, max_blocks, max_value_words, slices)


run_gru_batch.__doc__ = (
    "Run every job on one GRU engine build in one simulator process.\n\n    ``h_seq[t]`` "
    "equals ``ir.golden.gru_step`` iterated ``t + 1`` times, ``cycles``\n    "
    ":func:`hw.rnn.gru_cycles` (dense gates) or :func:`hw.rnn.rnn_bcr_cycles` (BCR gates)."
    + _BATCH_DOC.format(job="GRUJob"))


def run_lstm(job: LSTMJob, config: RNNQuantConfig, lanes: int = 4,
             simulator: str = "verilator", max_input: int = 16, max_hidden: int = 16,
             max_steps: int = 8, **kwargs: Any) -> LSTMRun:
    """Run one job (see :func:`run_lstm_batch`; ``kwargs`` are its keywords)."""
    return run_lstm_batch([job], config, lanes, simulator, max_input, max_hidden, max_steps,
                          **kwargs)[0]


def run_gru(job: GRUJob, config: RNNQuantConfig, lanes: int = 4,
            simulator: str = "verilator", max_input: int = 16, max_hidden: int = 16,
            max_steps: int = 8, **kwargs: Any) -> GRURun:
    """Run one job (see :func:`run_gru_batch`; ``kwargs`` are its keywords)."""
    return run_gru_batch([job], config, lanes, simulator, max_input, max_hidden, max_steps,
                         **kwargs)[0]


def bcr_pruned(rng: np.random.Generator, job: tuple, block: tuple[int, int], row_keep: float,
               col_keep: float, *, bits: int, exact: tuple[int, int] | None = None) -> tuple:
    """A random job tuple (:func:`random_job` / :func:`random_gru_job`) with its weights
    replaced by BCR-pruned random ``bits``-bit weights and the two masks appended (so
    ``LSTMJob(*t)`` / ``GRUJob(*t)`` takes it). ``W_ih`` and ``W_hh`` are pruned separately,
    each in ``block`` tiles of its gate-major rows, as :mod:`pruning` prunes an RNN layer. Each
    block keeps every row with probability ``row_keep`` and every column with ``col_keep`` (so
    some blocks are empty), or with ``exact = (kept_rows, kept_cols)`` exactly that many
    (:func:`sim.bcr.exact_bcr_layer`)."""
    from sim.bcr import exact_bcr_layer, random_bcr_layer

    job = list(job)
    masks = []
    for pos in (-4, -3):
        shape = np.asarray(job[pos]).shape
        if exact is None:
            q, m = random_bcr_layer(rng, shape, block, row_keep, col_keep, bits=bits)
        else:
            q, m = exact_bcr_layer(rng, shape, block, *exact, bits=bits)
        job[pos] = q
        masks.append(m)
    return (*job, *masks)


def rnn_mismatches(cell: str, jobs: Sequence[tuple], runs: Sequence, config: RNNQuantConfig,
                   lanes: int, *, gates: str = "dense", block: tuple[int, int] | None = None,
                   slices: int = 1) -> list[tuple[int, bool, bool]]:
    """Check runs against the golden model and the cycle model (BCR gates on ``slices``
    slices).

    ``jobs`` are job tuples (``LSTMJob(*t)`` / ``GRUJob(*t)`` fields; with BCR gates ending in
    the two masks), ``runs`` their results. Returns ``(index, outputs_ok, cycles_ok)`` for every
    job that disagrees (every ``h_t``, the final ``h`` and, for an LSTM, the final ``c``)."""
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles, rnn_cycles

    bad = []
    for n, (job, run) in enumerate(zip(jobs, runs, strict=True)):
        plain = tuple(job[:-2]) if gates == "bcr" else tuple(job)
        x, h0 = np.asarray(plain[0]), np.asarray(plain[1])
        if cell == "lstm":
            want_hs, want_c = golden_sequence(*plain, config)
            out_ok = np.array_equal(run.c, want_c)
        else:
            want_hs, out_ok = golden_gru_sequence(*plain, config), True
        out_ok = out_ok and np.array_equal(run.h_seq, want_hs) and np.array_equal(
            run.h, want_hs[-1])
        if gates == "bcr":
            matrix = bcr_gate_matrix(cell, plain[-4], plain[-3], block, job[-2], job[-1])
            model = rnn_bcr_cycles(matrix, x.shape[1], len(h0), len(x), lanes, slices,
                                   cell=cell)
        else:
            model = rnn_cycles(cell, x.shape[1], len(h0), len(x), lanes)
        if not (out_ok and run.cycles == model):
            bad.append((n, bool(out_ok), run.cycles == model))
    return bad
