"""Run the unstructured (CSC) engine in an RTL simulator: an integer layer and activations in,
outputs and cycle counts out.

:func:`run_unstructured` is the one-call helper; :func:`run_unstructured_batch` runs several
layers, each with a batch of activation vectors, in a single simulator process. Layers are
encoded with :func:`ir.csr.encode_csc_lanes` and laid out with
:func:`hw.unstructured.pack_unstructured`; the engine's Verilog is emitted once per parameter set
(cached on disk and in the process), built once per simulator (:func:`sim.runner.build_design`)
and driven by the bench :mod:`sim.unstructured_tb`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.dense import _check_ints, default_max_shape
from sim.emit_cache import emit_cached
from sim.runner import BuiltDesign, build_design, check_simulator, run_cocotb

__all__ = ["UnstructuredRun", "unstructured_design", "emit_unstructured", "run_unstructured",
           "run_unstructured_batch", "random_sparse_layer"]

TEST_MODULE = "sim.unstructured_tb"


@dataclass(frozen=True)
class UnstructuredRun:
    """Results of one layer in :func:`run_unstructured_batch`.

    Attributes
    ----------
    outputs : numpy.ndarray
        ``int32``, shape ``(batch, rows)``.
    cycles : list of int
        The engine's ``cycles`` for each activation vector (they depend on which activations
        are zero).
    run_seconds : list of float
        Wall-clock time from ``start`` to ``done`` for each vector.
    """

    outputs: np.ndarray
    cycles: list[int]
    run_seconds: list[float]


def emit_unstructured(lanes: int, weight_bits: int, act_bits: int, index_bits: int,
                      max_rows: int, max_cols: int, max_entries: int | None = None,
                      acc_bits: int = 32, *, cache_dir: str | os.PathLike | None = None
                      ) -> tuple[Path, str]:
    """Emit (or reuse) the Verilog of a :class:`hw.unstructured.UnstructuredMatVec`.

    Returns
    -------
    (pathlib.Path, str)
        The Verilog file (under ``<cache>/verilog/``, keyed by the parameters and the source of
        ``hw.unstructured``/``hw.dense``/``hw.emit``) and its top-level module name.
    """
    import hw.dense
    import hw.emit
    import hw.unstructured
    from hw.unstructured import UnstructuredMatVec, check_unstructured_parameters

    p = check_unstructured_parameters(lanes, weight_bits=weight_bits, act_bits=act_bits,
                                      acc_bits=acc_bits, index_bits=index_bits,
                                      max_rows=max_rows, max_cols=max_cols,
                                      max_entries=max_entries)
    params = (p["lanes"], p["weight_bits"], p["act_bits"], p["acc_bits"], p["index_bits"],
              p["max_rows"], p["max_cols"], p["max_entries"])
    name = (f"unstructured_p{params[0]}_w{params[1]}_a{params[2]}_acc{params[3]}_i{params[4]}"
            f"_r{params[5]}_c{params[6]}_e{params[7]}")
    return emit_cached(
        lambda: UnstructuredMatVec(
            p["lanes"], weight_bits=p["weight_bits"], act_bits=p["act_bits"],
            acc_bits=p["acc_bits"], index_bits=p["index_bits"], max_rows=p["max_rows"],
            max_cols=p["max_cols"], max_entries=p["max_entries"]),
        name, params, (hw.unstructured, hw.dense, hw.emit), cache_dir)


def unstructured_design(lanes: int, weight_bits: int, act_bits: int, index_bits: int,
                        max_rows: int, max_cols: int, max_entries: int | None = None,
                        acc_bits: int = 32, *, simulator: str = "verilator",
                        cache_dir: str | os.PathLike | None = None) -> BuiltDesign:
    """Emit and build (or reuse) an unstructured engine for ``simulator``."""
    v_path, name = emit_unstructured(lanes, weight_bits, act_bits, index_bits, max_rows,
                                     max_cols, max_entries, acc_bits, cache_dir=cache_dir)
    return build_design(v_path, name, simulator, cache_dir=cache_dir)


def run_unstructured_batch(jobs: Sequence[tuple[np.ndarray, np.ndarray]], lanes: int,
                           weight_bits: int, act_bits: int, index_bits: int,
                           simulator: str = "verilator", max_rows: int | None = None,
                           max_cols: int | None = None, max_entries: int | None = None, *,
                           cache_dir: str | os.PathLike | None = None
                           ) -> list[UnstructuredRun]:
    """Run several ``(qweight, qx_batch)`` jobs on one engine in one simulator process.

    Parameters
    ----------
    jobs : sequence of (qweight, qx_batch)
        ``qweight``: integer ``(rows, cols)`` within ``weight_bits`` signed bits; ``qx_batch``:
        integer ``(batch, cols)`` (or ``(cols,)``) within ``act_bits``.
    lanes, weight_bits, act_bits, index_bits : int
        Engine parameters (accumulators are 32 bits); ``index_bits`` is the relative row
        index width every job is encoded with.
    simulator : {"verilator", "icarus"}
    max_rows, max_cols : int, optional
        Build shape; default :func:`sim.dense.default_max_shape` of the largest job.
    max_entries : int, optional
        Entries per lane bank; default ``ceil(max_rows / lanes) * max_cols``.
    cache_dir : path, optional

    Returns
    -------
    list of UnstructuredRun
        One per job; ``outputs`` equal ``ir.golden.linear(qweight, qx)``, ``cycles`` equal
        :func:`hw.unstructured.unstructured_cycles` of the encoded job and each vector.

    Raises
    ------
    ValueError, TypeError
        On bad inputs, shapes larger than the build, or layers that do not fit its memories.
    sim.runner.SimulationError
        If the simulation fails.
    """
    from amaranth.utils import ceil_log2

    from hw.unstructured import check_unstructured_parameters, count_bits, pack_unstructured
    from ir.csr import encode_csc_lanes

    check_simulator(simulator)
    check_unstructured_parameters(lanes, weight_bits=weight_bits, act_bits=act_bits,
                                  index_bits=index_bits,
                                  max_rows=1 if max_rows is None else max_rows,
                                  max_cols=1 if max_cols is None else max_cols)
    if not jobs:
        raise ValueError("At least one (qweight, qx_batch) job is needed")
    checked = []
    for k, (w, x) in enumerate(jobs):
        w = _check_ints(w, f"Job {k}: weight matrix", weight_bits, (2,))
        x = _check_ints(x, f"Job {k}: activations", act_bits, (1, 2))
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        rows, cols = w.shape
        if rows == 0 or cols == 0:
            raise ValueError(f"Job {k}: weight matrix must not be empty, not of shape {w.shape}")
        if x2.shape[1] != cols or x2.shape[0] == 0:
            raise ValueError(f"Job {k}: activations of shape {x.shape} do not match "
                             f"{cols} columns")
        checked.append((w, encode_csc_lanes(w, lanes, index_bits), x2))
    if max_rows is None or max_cols is None:
        dr, dc = default_max_shape(max(w.shape[0] for w, _, _ in checked),
                                   max(w.shape[1] for w, _, _ in checked), lanes)
        max_rows = dr if max_rows is None else max_rows
        max_cols = dc if max_cols is None else max_cols
    p = check_unstructured_parameters(lanes, weight_bits=weight_bits, act_bits=act_bits,
                                      index_bits=index_bits, max_rows=max_rows,
                                      max_cols=max_cols, max_entries=max_entries)
    for k, (w, csc, _) in enumerate(checked):
        if w.shape[0] > max_rows or w.shape[1] > max_cols:
            raise ValueError(f"Job {k}: shape {w.shape} exceeds the build's "
                             f"{max_rows}x{max_cols}")
        most = int(csc.lane_value_counts.max())
        if most > p["max_entries"]:
            raise ValueError(f"Job {k}: {most} entries in one lane exceed the build's "
                             f"{p['max_entries']}")

    design = unstructured_design(lanes, weight_bits, act_bits, index_bits, max_rows, max_cols,
                                 p["max_entries"], simulator=simulator, cache_dir=cache_dir)
    entry_addr_bits = ceil_log2(max(2, p["max_entries"]))   # as UnstructuredMatVec
    inputs: dict[str, np.ndarray] = {
        "params": np.array([lanes, weight_bits, act_bits, 32, index_bits,
                            count_bits(lanes, max_rows),
                            entry_addr_bits], dtype=np.int64)}
    case_w, spans, i = [], [], 0
    for j, (_, csc, x2) in enumerate(checked):
        img = pack_unstructured(csc)
        inputs[f"cnt_{j}"] = img.counts
        for q in range(lanes):
            inputs[f"val_{j}_{q}"] = img.values[q]
            inputs[f"rel_{j}_{q}"] = img.rel_index[q]
        inputs[f"shape_{j}"] = np.array([img.rows, img.cols], dtype=np.int64)
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
        runs.append(UnstructuredRun(outs, [int(c) for c in cycles[a:b]],
                                    [float(s) for s in run_s[a:b]]))
    return runs


def run_unstructured(qweight: np.ndarray, qx_batch: np.ndarray, lanes: int, weight_bits: int,
                     act_bits: int, index_bits: int, simulator: str = "verilator",
                     max_rows: int | None = None, max_cols: int | None = None, *,
                     cache_dir: str | os.PathLike | None = None
                     ) -> tuple[np.ndarray, list[int]]:
    """Compute ``qweight @ x`` for each ``x`` in ``qx_batch`` on the unstructured engine's RTL.

    Returns
    -------
    (numpy.ndarray, list of int)
        ``int32`` outputs of shape ``(batch, rows)`` (``(rows,)`` for one vector), equal to
        ``ir.golden.linear``; and the cycles per vector, equal to
        :func:`hw.unstructured.unstructured_cycles`.
    """
    single = np.asarray(qx_batch).ndim == 1
    run = run_unstructured_batch([(qweight, qx_batch)], lanes, weight_bits, act_bits, index_bits,
                                 simulator, max_rows, max_cols, cache_dir=cache_dir)[0]
    return (run.outputs[0] if single else run.outputs), run.cycles


def random_sparse_layer(rng: np.random.Generator, shape: tuple[int, int], density: float, *,
                        bits: int = 8, full: bool = False) -> np.ndarray:
    """A random integer layer, each weight non-zero with probability ``density`` (non-zero
    values uniform in ``bits`` signed bits, or only the two extremes with ``full``)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    vals = rng.choice([lo, hi], shape) if full else rng.integers(lo, hi + 1, shape)
    vals = np.where(vals == 0, 1, vals)
    return np.where(rng.random(shape) < density, vals, 0).astype(np.int64)
