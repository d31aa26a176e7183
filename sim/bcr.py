"""Run the BCR engine in an RTL simulator: an integer BCR layer and activations in, outputs and
cycle counts out.

:func:`run_bcr` is the one-call helper; :func:`run_bcr_batch` runs several layers, each with a
batch of activation vectors, in a single simulator process. Layers are encoded with
:func:`ir.bcr.encode_bcr` and laid out with :func:`hw.bcr.pack_bcr`; the engine's Verilog is
emitted once per parameter set (cached on disk and in the process), built once per simulator
(:func:`sim.runner.build_design`) and driven by the bench :mod:`sim.bcr_tb`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.dense import _check_ints, default_max_shape
from sim.emit_cache import emit_cached
from sim.runner import BuiltDesign, build_design, check_simulator, run_cocotb

__all__ = ["BCRRun", "bcr_design", "emit_bcr", "run_bcr", "run_bcr_batch", "random_bcr_layer",
           "exact_bcr_layer", "kept_shape"]

TEST_MODULE = "sim.bcr_tb"


@dataclass(frozen=True)
class BCRRun:
    """Results of one layer in :func:`run_bcr_batch`.

    Attributes
    ----------
    outputs : numpy.ndarray
        ``int32``, shape ``(batch, rows)``.
    cycles : list of int
        The engine's ``cycles`` for each activation vector.
    run_seconds : list of float
        Wall-clock time from ``start`` to ``done`` for each vector.
    """

    outputs: np.ndarray
    cycles: list[int]
    run_seconds: list[float]


def emit_bcr(lanes: int, block: tuple[int, int], weight_bits: int, act_bits: int,
             max_rows: int, max_cols: int, max_blocks: int | None = None,
             max_value_words: int | None = None, acc_bits: int = 32, *, slices: int = 1,
             cache_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Emit (or reuse) the Verilog of a :class:`hw.bcr.BCRMatVec` (``slices`` pipelines).

    Returns
    -------
    (pathlib.Path, str)
        The Verilog file (under ``<cache>/verilog/``, keyed by the parameters and the source of
        ``hw.bcr``/``hw.dense``/``hw.emit``) and its top-level module name.
    """
    import hw.bcr
    import hw.dense
    import hw.emit
    from hw.bcr import BCRMatVec, check_bcr_parameters

    p = check_bcr_parameters(lanes, block=block, weight_bits=weight_bits, act_bits=act_bits,
                             acc_bits=acc_bits, max_rows=max_rows, max_cols=max_cols,
                             max_blocks=max_blocks, max_value_words=max_value_words,
                             slices=slices)
    (br, bc) = p["block"]
    params = (p["lanes"], br, bc, p["weight_bits"], p["act_bits"], p["acc_bits"],
              p["max_rows"], p["max_cols"], p["max_blocks"], p["max_value_words"])
    name = (f"bcr_p{params[0]}_b{br}x{bc}_w{params[3]}_a{params[4]}_acc{params[5]}"
            f"_r{params[6]}_c{params[7]}_n{params[8]}_v{params[9]}")
    if p["slices"] > 1:
        params += (p["slices"],)
        name += f"_s{p['slices']}"
    return emit_cached(
        lambda: BCRMatVec(p["lanes"], block=(br, bc), weight_bits=p["weight_bits"],
                          act_bits=p["act_bits"], acc_bits=p["acc_bits"],
                          max_rows=p["max_rows"], max_cols=p["max_cols"],
                          max_blocks=p["max_blocks"], max_value_words=p["max_value_words"],
                          slices=p["slices"]),
        name, params, (hw.bcr, hw.dense, hw.emit), cache_dir)


def bcr_design(lanes: int, block: tuple[int, int], weight_bits: int, act_bits: int,
               max_rows: int, max_cols: int, max_blocks: int | None = None,
               max_value_words: int | None = None, acc_bits: int = 32, *, slices: int = 1,
               simulator: str = "verilator", cache_dir: str | os.PathLike | None = None
               ) -> BuiltDesign:
    """Emit and build (or reuse) a BCR engine for ``simulator``."""
    v_path, name = emit_bcr(lanes, block, weight_bits, act_bits, max_rows, max_cols, max_blocks,
                            max_value_words, acc_bits, slices=slices, cache_dir=cache_dir)
    return build_design(v_path, name, simulator, cache_dir=cache_dir)


def run_bcr_batch(jobs: Sequence[tuple[np.ndarray, Any, np.ndarray]], block: tuple[int, int],
                  lanes: int, weight_bits: int, act_bits: int, simulator: str = "verilator",
                  max_rows: int | None = None, max_cols: int | None = None,
                  max_blocks: int | None = None, max_value_words: int | None = None, *,
                  slices: int = 1, cache_dir: str | os.PathLike | None = None
                  ) -> list[BCRRun]:
    """Run several ``(qweight, mask, qx_batch)`` jobs on one BCR engine in one simulator process.

    Parameters
    ----------
    jobs : sequence of (qweight, mask, qx_batch)
        ``qweight``: integer ``(rows, cols)`` within ``weight_bits`` signed bits; ``mask``:
        its BCR support (boolean, same shape) or None for ``qweight != 0``; ``qx_batch``:
        integer ``(batch, cols)`` (or ``(cols,)``) within ``act_bits``.
    block : (int, int)
        The engine's block size, used to encode every job.
    lanes, weight_bits, act_bits : int
        Engine parameters (accumulators are 32 bits).
    simulator : {"verilator", "icarus"}
    max_rows, max_cols : int, optional
        Build shape; default :func:`sim.dense.default_max_shape` of the largest job.
    max_blocks, max_value_words : int, optional
        Memory depths, per slice; default: the whole block grid, every block fully kept.
    slices : int, optional
        The engine's slices (default 1); each job is split by :func:`hw.bcr.pack_bcr`.
    cache_dir : path, optional

    Returns
    -------
    list of BCRRun
        One per job; ``outputs`` equal ``ir.golden.linear(qweight, qx)``, ``cycles`` equal
        :func:`hw.bcr.bcr_cycles` of the encoded job on ``slices`` slices.

    Raises
    ------
    ValueError, TypeError
        On bad inputs, shapes larger than the build, or layers that do not fit its memories.
    sim.runner.SimulationError
        If the simulation fails.
    """
    from hw.bcr import bcr_field_widths, check_bcr_parameters, pack_bcr
    from ir.bcr import encode_bcr

    check_simulator(simulator)
    check_bcr_parameters(lanes, block=block, weight_bits=weight_bits, act_bits=act_bits,
                         max_rows=1 if max_rows is None else max_rows,
                         max_cols=1 if max_cols is None else max_cols, slices=slices)
    if not jobs:
        raise ValueError("At least one (qweight, mask, qx_batch) job is needed")
    checked = []
    for k, (w, mask, x) in enumerate(jobs):
        w = _check_ints(w, f"Job {k}: weight matrix", weight_bits, (2,))
        x = _check_ints(x, f"Job {k}: activations", act_bits, (1, 2))
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        rows, cols = w.shape
        if rows == 0 or cols == 0:
            raise ValueError(f"Job {k}: weight matrix must not be empty, not of shape {w.shape}")
        if x2.shape[1] != cols or x2.shape[0] == 0:
            raise ValueError(f"Job {k}: activations of shape {x.shape} do not match "
                             f"{cols} columns")
        try:
            bcr = encode_bcr(w, block, mask)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"Job {k}: {exc}") from None
        checked.append((w, bcr, x2))
    if max_rows is None or max_cols is None:
        dr, dc = default_max_shape(max(w.shape[0] for w, _, _ in checked),
                                   max(w.shape[1] for w, _, _ in checked), lanes)
        max_rows = dr if max_rows is None else max_rows
        max_cols = dc if max_cols is None else max_cols
    p = check_bcr_parameters(lanes, block=block, weight_bits=weight_bits, act_bits=act_bits,
                             max_rows=max_rows, max_cols=max_cols, max_blocks=max_blocks,
                             max_value_words=max_value_words, slices=slices)
    images = []
    for k, (w, bcr, _) in enumerate(checked):
        if w.shape[0] > max_rows or w.shape[1] > max_cols:
            raise ValueError(f"Job {k}: shape {w.shape} exceeds the build's "
                             f"{max_rows}x{max_cols}")
        img = pack_bcr(bcr, lanes, slices)
        for s in range(p["slices"]):
            _check_bank_fits(img.bank(s), f"Job {k}: " if p["slices"] == 1 else
                             f"Job {k}, slice {s}: ", p)
        images.append(img)

    design = bcr_design(lanes, block, weight_bits, act_bits, max_rows, max_cols,
                        p["max_blocks"], p["max_value_words"], slices=slices,
                        simulator=simulator, cache_dir=cache_dir)
    widths = bcr_field_widths(lanes, p["block"], max_rows, max_cols)
    inputs: dict[str, np.ndarray] = {
        "params": np.array([lanes, weight_bits, act_bits, 32, *p["block"]], dtype=np.int64),
        "widths": np.array([widths[n] for n in ("block_row", "block_col", "groups", "ncols",
                                                "col_index", "row_index")], dtype=np.int64),
        "slices": np.array([p["slices"], *_bank_bits(p)], dtype=np.int64)}
    case_w, spans, i = [], [], 0
    for j, ((_, _, x2), img) in enumerate(zip(checked, images, strict=True)):
        for s in range(p["slices"]):
            bank = img.bank(s)
            inputs[f"meta_{j}_{s}"] = bank.meta
            inputs[f"col_{j}_{s}"] = bank.col_index
            inputs[f"row_{j}_{s}"] = bank.row_index
            inputs[f"val_{j}_{s}"] = bank.values
        inputs[f"shape_{j}"] = np.array([img.rows, img.cols, img.blocks], dtype=np.int64)
        inputs[f"split_{j}"] = np.array(img.slice_blocks, dtype=np.int64)
        spans.append((i, i + len(x2)))
        for vec in x2:
            inputs[f"x_{i}"] = vec
            case_w.append(j)
            i += 1
    inputs["case_w"] = np.array(case_w, dtype=np.int64)
    result = run_cocotb(design, TEST_MODULE, inputs=inputs)

    runs = []
    cycles = result.arrays["cycles"]
    run_s = result.meta.get("run_seconds", [0.0] * len(case_w))
    for a, b in spans:
        ys = np.stack([result.arrays[f"y_{c}"] for c in range(a, b)]).astype(np.int64)
        outs = ((ys + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)
        runs.append(BCRRun(outs, [int(c) for c in cycles[a:b]], [float(s) for s in run_s[a:b]]))
    return runs


def _check_bank_fits(bank: Any, where: str, p: dict[str, Any]) -> None:
    """Raise ValueError if the images of one slice (``hw.bcr.BCRImages``) overflow its bank
    of the build with parameters ``p`` (``max_blocks``/``max_value_words`` are per slice)."""
    per = "" if p["slices"] == 1 else " per slice"
    if bank.blocks > p["max_blocks"]:
        raise ValueError(f"{where}{bank.blocks} blocks exceed the build's "
                         f"{p['max_blocks']}{per}")
    if len(bank.values) > p["max_value_words"]:
        raise ValueError(f"{where}{len(bank.values)} value words exceed the build's "
                         f"{p['max_value_words']}{per}")


def _bank_bits(p: dict[str, Any]) -> list[int]:
    """Bank address bits of ``meta``, ``col_index``, ``row_index``, ``values`` and the field
    width of one ``slice_blocks`` count, for the build with parameters ``p`` (as
    :attr:`hw.bcr.BCRMatVec.bank_bits`)."""
    from amaranth.utils import bits_for, ceil_log2

    (br, bc), P = p["block"], p["lanes"]
    depths = (p["max_blocks"], p["max_blocks"] * bc, p["max_blocks"] * -(-br // P),
              p["max_value_words"])
    return [ceil_log2(max(2, d)) for d in depths] + [bits_for(p["max_blocks"])]


def run_bcr(qweight: np.ndarray, mask: Any, block: tuple[int, int], qx_batch: np.ndarray,
            lanes: int, weight_bits: int, act_bits: int, simulator: str = "verilator",
            max_rows: int | None = None, max_cols: int | None = None, *, slices: int = 1,
            cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, list[int]]:
    """Compute ``qweight @ x`` for each ``x`` in ``qx_batch`` on the BCR engine's RTL.

    Parameters
    ----------
    qweight : numpy.ndarray
        Integer ``(rows, cols)`` weights within ``weight_bits`` signed bits.
    mask : numpy.ndarray or None
        BCR support of ``qweight`` (None: ``qweight != 0``).
    block : (int, int)
        Block size.
    qx_batch : numpy.ndarray
        Integer ``(batch, cols)`` activations (or one ``(cols,)`` vector).
    lanes, weight_bits, act_bits : int
    simulator : {"verilator", "icarus"}
    max_rows, max_cols : int, optional
        Build shape.
    slices : int, optional
        The engine's slices (default 1).

    Returns
    -------
    (numpy.ndarray, list of int)
        ``int32`` outputs of shape ``(batch, rows)`` (``(rows,)`` for one vector), equal to
        ``ir.golden.linear``; and the cycles per vector, equal to :func:`hw.bcr.bcr_cycles`.
    """
    single = np.asarray(qx_batch).ndim == 1
    run = run_bcr_batch([(qweight, mask, qx_batch)], block, lanes, weight_bits, act_bits,
                        simulator, max_rows, max_cols, slices=slices, cache_dir=cache_dir)[0]
    return (run.outputs[0] if single else run.outputs), run.cycles


def random_bcr_layer(rng: np.random.Generator, shape: tuple[int, int], block: tuple[int, int],
                     row_keep: float, col_keep: float, *, bits: int = 8, full: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A random integer layer with a BCR mask, for tests and benchmarks.

    In every block each row is kept with probability ``row_keep`` and each column with
    ``col_keep`` (so blocks may be empty, or fully kept); kept weights are uniform in ``bits``
    signed bits (``full``: only the two extremes). Returns ``(qweight, mask)``.
    """
    (rows, cols), (br, bc) = shape, block
    gr, gc = -(-rows // br), -(-cols // bc)
    kr = rng.random((gr, gc, br)) < row_keep
    kc = rng.random((gr, gc, bc)) < col_keep
    mb = kr[..., :, None] & kc[..., None, :]
    mask = mb.transpose(0, 2, 1, 3).reshape(gr * br, gc * bc)[:rows, :cols]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    vals = rng.choice([lo, hi], shape) if full else rng.integers(lo, hi + 1, shape)
    return np.where(mask, vals, 0).astype(np.int64), mask


def kept_shape(block: tuple[int, int], lanes: int, sparsity: float) -> tuple[int, int]:
    """Kept rows x columns per block closest to ``1 - sparsity`` of the block, with kept rows a
    multiple of ``lanes`` where possible (so no lane idles); ties go to the sparser choice."""
    br, bc = block
    target = (1.0 - sparsity) * br * bc
    rows_opts = [r for r in range(lanes, br + 1, lanes)] or [br]
    best = None
    for nr in rows_opts:
        for nc in range(1, bc + 1):
            key = (abs(nr * nc - target), nr * nc)
            if best is None or key < best[0]:
                best = (key, (nr, nc))
    return best[1]


def exact_bcr_layer(rng: np.random.Generator, shape: tuple[int, int], block: tuple[int, int],
                    kept_rows: int, kept_cols: int, *, bits: int = 8
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A random integer layer whose every block keeps exactly ``kept_rows`` rows and
    ``kept_cols`` columns (all of them in edge blocks that have fewer), as the BCR projection
    of :mod:`pruning.projections` does. Returns ``(qweight, mask)``."""
    (rows, cols), (br, bc) = shape, block
    mask = np.zeros(shape, dtype=bool)
    for r0 in range(0, rows, br):
        for c0 in range(0, cols, bc):
            h, w = min(br, rows - r0), min(bc, cols - c0)
            rr = r0 + rng.choice(h, min(kept_rows, h), replace=False)
            cc = c0 + rng.choice(w, min(kept_cols, w), replace=False)
            mask[np.ix_(rr, cc)] = True
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.where(mask, rng.integers(lo, hi + 1, shape), 0).astype(np.int64), mask
