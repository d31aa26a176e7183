"""Run the dense engine in an RTL simulator: integer weights and activations in, outputs and
cycle counts out.

:func:`run_dense` is the one-call helper (used by ``codesign demo`` and the command line);
:func:`run_dense_batch` runs several weight matrices, each with a batch of activation vectors,
in a single simulator process. Both emit the engine's Verilog once per parameter set (cached
on disk and in the process), build it once per simulator (:func:`sim.runner.build_design`) and
run the bench :mod:`sim.dense_tb`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.emit_cache import emit_cached
from sim.runner import (
    BuiltDesign,
    SimResult,
    build_design,
    check_simulator,
    run_cocotb,
)

__all__ = ["DenseRun", "dense_design", "default_max_shape", "run_dense", "run_dense_batch",
           "emit_dense"]

TEST_MODULE = "sim.dense_tb"


@dataclass(frozen=True)
class DenseRun:
    """Results of one weight matrix in :func:`run_dense_batch`.

    Attributes
    ----------
    outputs : numpy.ndarray
        ``int32``, shape ``(batch, rows)``: the engine's outputs, one row per activation vector.
    cycles : list of int
        The engine's ``cycles`` for each activation vector.
    run_seconds : list of float
        Wall-clock time from ``start`` to ``done`` for each vector (simulator speed).
    """

    outputs: np.ndarray
    cycles: list[int]
    run_seconds: list[float]


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def default_max_shape(rows: int, cols: int, lanes: int) -> tuple[int, int]:
    """Build shape used when none is given: each dimension rounded up to a power of two (rows
    at least ``lanes``), so that nearby shapes share one build."""
    return max(lanes, _next_pow2(rows)), _next_pow2(cols)


def emit_dense(lanes: int, weight_bits: int, act_bits: int, max_rows: int, max_cols: int,
               acc_bits: int = 32, *, cache_dir: str | os.PathLike | None = None
               ) -> tuple[Path, str]:
    """Emit (or reuse) the Verilog of a :class:`hw.dense.DenseMatVec`.

    Returns
    -------
    (pathlib.Path, str)
        The Verilog file and its top-level module name. The file lives under
        ``<cache>/verilog/`` keyed by the parameters and the source of ``hw.dense``/``hw.emit``.
    """
    import hw.dense
    import hw.emit
    from hw.dense import DenseMatVec, check_dense_parameters

    checked = check_dense_parameters(lanes, weight_bits=weight_bits, act_bits=act_bits,
                                     acc_bits=acc_bits, max_rows=max_rows, max_cols=max_cols)
    lanes, weight_bits, act_bits, acc_bits, max_rows, max_cols = (
        checked[k] for k in ("lanes", "weight_bits", "act_bits", "acc_bits", "max_rows",
                             "max_cols"))
    params = (lanes, weight_bits, act_bits, acc_bits, max_rows, max_cols)
    name = f"dense_p{lanes}_w{weight_bits}_a{act_bits}_acc{acc_bits}_r{max_rows}_c{max_cols}"
    return emit_cached(
        lambda: DenseMatVec(lanes, weight_bits=weight_bits, act_bits=act_bits,
                            acc_bits=acc_bits, max_rows=max_rows, max_cols=max_cols),
        name, params, (hw.dense, hw.emit), cache_dir)


def dense_design(lanes: int, weight_bits: int, act_bits: int, max_rows: int, max_cols: int,
                 acc_bits: int = 32, *, simulator: str = "verilator",
                 cache_dir: str | os.PathLike | None = None) -> BuiltDesign:
    """Emit and build (or reuse) a dense engine for ``simulator``."""
    v_path, name = emit_dense(lanes, weight_bits, act_bits, max_rows, max_cols, acc_bits,
                              cache_dir=cache_dir)
    return build_design(v_path, name, simulator, cache_dir=cache_dir)


def _check_ints(arr, what: str, bits: int, ndim: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim not in ndim:
        raise ValueError(f"{what} must have {' or '.join(map(str, ndim))} dimensions, "
                         f"not shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{what} must have an integer dtype, not {a.dtype}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{what} values must lie in [{lo}, {hi}] for {bits} bits, "
                         f"found [{a.min()}, {a.max()}]")
    return a.astype(np.int64)


def run_dense_batch(jobs: Sequence[tuple[np.ndarray, np.ndarray]], lanes: int,
                    weight_bits: int, act_bits: int, simulator: str = "verilator",
                    max_rows: int | None = None, max_cols: int | None = None, *,
                    cache_dir: str | os.PathLike | None = None) -> list[DenseRun]:
    """Run several ``(qweight, qx_batch)`` jobs on one dense engine in one simulator process.

    Parameters
    ----------
    jobs : sequence of (qweight, qx_batch)
        ``qweight``: integer ``(rows, cols)`` within ``weight_bits`` signed bits;
        ``qx_batch``: integer ``(batch, cols)`` (or ``(cols,)``) within ``act_bits``.
    lanes, weight_bits, act_bits : int
        Engine parameters (accumulators are 32 bits).
    simulator : {"verilator", "icarus"}
    max_rows, max_cols : int, optional
        Build shape; default :func:`default_max_shape` of the largest job.
    cache_dir : path, optional
        Cache root for Verilog and builds (default: see :mod:`sim.runner`).

    Returns
    -------
    list of DenseRun
        One per job; ``outputs`` equal ``ir.golden.linear(qweight, qx)`` for each vector.

    Raises
    ------
    ValueError, TypeError
        On empty or out-of-range inputs or shapes larger than the build.
    sim.runner.SimulationError
        If the simulation fails.
    """
    from hw.dense import check_dense_parameters, pack_weights

    check_simulator(simulator)
    check_dense_parameters(lanes, weight_bits=weight_bits, act_bits=act_bits,
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
        checked.append((w, x2))
    if max_rows is None or max_cols is None:
        big_r = max(w.shape[0] for w, _ in checked)
        big_c = max(w.shape[1] for w, _ in checked)
        dr, dc = default_max_shape(big_r, big_c, lanes)
        max_rows = dr if max_rows is None else max_rows
        max_cols = dc if max_cols is None else max_cols
    check_dense_parameters(lanes, weight_bits=weight_bits, act_bits=act_bits,
                           max_rows=max_rows, max_cols=max_cols)
    for k, (w, _) in enumerate(checked):
        if w.shape[0] > max_rows or w.shape[1] > max_cols:
            raise ValueError(f"Job {k}: shape {w.shape} exceeds the build's "
                             f"{max_rows}x{max_cols}")

    design = dense_design(lanes, weight_bits, act_bits, max_rows, max_cols,
                          simulator=simulator, cache_dir=cache_dir)
    inputs: dict[str, np.ndarray] = {
        "params": np.array([lanes, weight_bits, act_bits, 32], dtype=np.int64)}
    case_w, spans, i = [], [], 0
    for j, (w, x2) in enumerate(checked):
        inputs[f"w_{j}"] = pack_weights(w, lanes)
        inputs[f"shape_{j}"] = np.array(w.shape, dtype=np.int64)
        spans.append((i, i + len(x2)))
        for vec in x2:
            inputs[f"x_{i}"] = vec
            case_w.append(j)
            i += 1
    inputs["case_w"] = np.array(case_w, dtype=np.int64)
    result: SimResult = run_cocotb(design, TEST_MODULE, inputs=inputs)

    runs = []
    cycles = result.arrays["cycles"]
    run_s = result.meta.get("run_seconds", [0.0] * len(case_w))
    for a, b in spans:
        ys = np.stack([result.arrays[f"y_{c}"] for c in range(a, b)]).astype(np.int64)
        outs = ((ys + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)
        runs.append(DenseRun(outs, [int(c) for c in cycles[a:b]], [float(s) for s in run_s[a:b]]))
    return runs


def run_dense(qweight: np.ndarray, qx_batch: np.ndarray, lanes: int, weight_bits: int,
              act_bits: int, simulator: str = "verilator", max_rows: int | None = None,
              max_cols: int | None = None, *, cache_dir: str | os.PathLike | None = None
              ) -> tuple[np.ndarray, list[int]]:
    """Compute ``qweight @ x`` for each ``x`` in ``qx_batch`` on the dense engine's RTL.

    Parameters
    ----------
    qweight : numpy.ndarray
        Integer ``(rows, cols)`` weights within ``weight_bits`` signed bits.
    qx_batch : numpy.ndarray
        Integer ``(batch, cols)`` activations (or one ``(cols,)`` vector) within ``act_bits``.
    lanes, weight_bits, act_bits : int
        Engine parameters.
    simulator : {"verilator", "icarus"}
    max_rows, max_cols : int, optional
        Build shape (default: rounded up to powers of two, see :func:`default_max_shape`).
    cache_dir : path, optional
        Cache root for Verilog and builds.

    Returns
    -------
    (numpy.ndarray, list of int)
        ``int32`` outputs of shape ``(batch, rows)`` (``(rows,)`` for a single vector), equal to
        ``ir.golden.linear``; and the engine's cycle count per vector, equal to
        :func:`hw.dense.dense_cycles`.
    """
    single = np.asarray(qx_batch).ndim == 1
    run = run_dense_batch([(qweight, qx_batch)], lanes, weight_bits, act_bits, simulator,
                          max_rows, max_cols, cache_dir=cache_dir)[0]
    return (run.outputs[0] if single else run.outputs), run.cycles
