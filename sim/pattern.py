"""Run the pattern-convolution engine in an RTL simulator: a pattern-pruned integer 3x3 conv
layer and an input feature map in, outputs and cycle counts out.

:func:`run_pattern` is the one-call helper; :func:`run_pattern_batch` runs several layers in a
single simulator process on one build. Layers are encoded with
:func:`ir.pattern.encode_pattern` and laid out with :func:`hw.pattern.pack_pattern`; the
engine's Verilog is emitted once per parameter set (cached on disk and in the process), built once
per simulator (:func:`sim.runner.build_design`) and driven by the bench :mod:`sim.pattern_tb`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.dense import _check_ints
from sim.emit_cache import emit_cached
from sim.runner import BuiltDesign, build_design, check_simulator, run_cocotb

__all__ = ["PatternRun", "emit_pattern", "pattern_design", "run_pattern", "run_pattern_batch",
           "random_pattern_layer", "out_size"]

TEST_MODULE = "sim.pattern_tb"


@dataclass(frozen=True)
class PatternRun:
    """Results of one layer: ``outputs`` int32 ``(O, Ho, Wo)``, ``cycles``, ``run_seconds``."""

    outputs: np.ndarray
    cycles: int
    run_seconds: float


def out_size(n: int, stride: int, padding: int) -> int:
    """Output size of a 3x3 convolution along one axis."""
    return (n + 2 * padding - 3) // stride + 1


def emit_pattern(lanes: int, weight_bits: int, act_bits: int, library_size: int, kept: int,
                 max_channels: int, max_filters: int, max_height: int, max_width: int,
                 max_kernel_words: int | None = None, acc_bits: int = 32, *,
                 cache_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Emit (or reuse) the Verilog of a :class:`hw.pattern.PatternConv`; returns the ``.v``
    path and the top-level module name."""
    import hw.dense
    import hw.emit
    import hw.pattern
    from hw.pattern import PatternConv, check_pattern_parameters

    p = check_pattern_parameters(lanes, weight_bits=weight_bits, act_bits=act_bits,
                                 acc_bits=acc_bits, library_size=library_size, kept=kept,
                                 max_channels=max_channels, max_filters=max_filters,
                                 max_height=max_height, max_width=max_width,
                                 max_kernel_words=max_kernel_words)
    keys = ("lanes", "weight_bits", "act_bits", "acc_bits", "library_size", "kept",
            "max_channels", "max_filters", "max_height", "max_width", "max_kernel_words")
    params = tuple(p[k] for k in keys)
    name = "pattern_" + "_".join(str(v) for v in params)
    return emit_cached(lambda: PatternConv(**dict(zip(keys, params, strict=True))), name, params,
                       (hw.pattern, hw.dense, hw.emit), cache_dir)


def pattern_design(*args: Any, simulator: str = "verilator",
                   cache_dir: str | os.PathLike | None = None, **kwargs: Any) -> BuiltDesign:
    """Emit (:func:`emit_pattern` arguments) and build (or reuse) an engine for ``simulator``."""
    v_path, name = emit_pattern(*args, cache_dir=cache_dir, **kwargs)
    return build_design(v_path, name, simulator, cache_dir=cache_dir)


def run_pattern_batch(jobs: Sequence[tuple], lanes: int, weight_bits: int, act_bits: int,
                      simulator: str = "verilator", *, library_size: int | None = None,
                      max_channels: int | None = None, max_filters: int | None = None,
                      max_height: int | None = None, max_width: int | None = None,
                      cache_dir: str | os.PathLike | None = None) -> list[PatternRun]:
    """Run ``(qweight, mask, library, qx, stride, padding)`` jobs on one engine build in one
    simulator process.

    ``qweight``: integer ``(O, C, 3, 3)`` within ``weight_bits``; ``mask``: its pattern support
    (or None: ``qweight != 0``, each kernel taking the lowest library pattern containing it);
    ``library``: ``(K, 3, 3)`` (all jobs keep the same number of positions); ``qx``: integer
    ``(C, H, W)`` within ``act_bits``; ``stride`` 1 or 2, ``padding`` 0 or 1. The build is sized
    by the largest job unless the ``max_*`` and ``library_size`` arguments are given.

    Returns one :class:`PatternRun` per job, ``outputs`` equal to ``ir.golden.conv2d`` and
    ``cycles`` to :func:`hw.pattern.pattern_cycles`.
    """
    from hw.pattern import check_pattern_parameters, pack_pattern, pattern_field_widths
    from ir.pattern import encode_pattern

    check_simulator(simulator)
    if not jobs:
        raise ValueError("At least one (qweight, mask, library, qx, stride, padding) job is "
                         "needed")
    checked = []
    for k, (w, mask, lib, x, stride, pad) in enumerate(jobs):
        w = _check_ints(w, f"Job {k}: weight", weight_bits, (4,))
        x = _check_ints(x, f"Job {k}: activations", act_bits, (3,))
        if w.shape[2:] != (3, 3) or w.shape[0] == 0 or w.shape[1] == 0:
            raise ValueError(f"Job {k}: weight must have shape (O, C, 3, 3), not {w.shape}")
        if x.shape[0] != w.shape[1]:
            raise ValueError(f"Job {k}: activations of shape {x.shape} do not match "
                             f"{w.shape[1]} input channels")
        if stride not in (1, 2) or isinstance(stride, bool):
            raise ValueError(f"Job {k}: stride must be 1 or 2, not {stride!r}")
        if pad not in (0, 1) or isinstance(pad, bool):
            raise ValueError(f"Job {k}: padding must be 0 or 1, not {pad!r}")
        if min(x.shape[1:]) + 2 * pad < 3:
            raise ValueError(f"Job {k}: input {x.shape[1:]} with padding {pad} is smaller "
                             "than the 3x3 kernel")
        try:
            pc = encode_pattern(w, lib, mask)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"Job {k}: {exc}") from None
        checked.append((pc, x, int(stride), int(pad)))
    kept = {pc.positions.shape[1] for pc, _, _, _ in checked}
    if len(kept) != 1:
        raise ValueError(f"All libraries must keep the same number of positions, not "
                         f"{sorted(kept)}")
    n = kept.pop()
    p = check_pattern_parameters(
        lanes, weight_bits=weight_bits, act_bits=act_bits, kept=n,
        library_size=library_size or max(len(pc.library) for pc, *_ in checked),
        max_channels=max_channels or max(pc.shape[1] for pc, *_ in checked),
        max_filters=max_filters or max(pc.shape[0] for pc, *_ in checked),
        max_height=max_height or max(x.shape[1] for _, x, _, _ in checked),
        max_width=max_width or max(x.shape[2] for _, x, _, _ in checked))
    for k, (pc, x, _, _) in enumerate(checked):
        o, c = pc.shape[:2]
        if (len(pc.library) > p["library_size"] or c > p["max_channels"]
                or o > p["max_filters"] or x.shape[1] > p["max_height"]
                or x.shape[2] > p["max_width"]):
            raise ValueError(f"Job {k}: layer ({o}, {c}, {x.shape[1]}, {x.shape[2]}) with "
                             f"{len(pc.library)} patterns exceeds the build")
    design = pattern_design(lanes, weight_bits, act_bits, p["library_size"], n,
                            p["max_channels"], p["max_filters"], p["max_height"],
                            p["max_width"], simulator=simulator, cache_dir=cache_dir)
    wd = pattern_field_widths(lanes, p["max_channels"], p["library_size"],
                              p["max_kernel_words"], p["max_height"], p["max_width"])
    inputs: dict[str, np.ndarray] = {
        "params": np.array([lanes, weight_bits, act_bits, 32, n], dtype=np.int64),
        "widths": np.array([wd[k] for k in ("count", "base", "channel", "pattern", "height",
                                            "width")], dtype=np.int64)}
    images = []
    for j, (pc, x, stride, pad) in enumerate(checked):
        img = pack_pattern(pc, lanes)
        images.append(img)
        ho, wo = out_size(x.shape[1], stride, pad), out_size(x.shape[2], stride, pad)
        inputs[f"groups_{j}"] = img.groups
        inputs[f"kern_{j}"] = img.kernels
        inputs[f"val_{j}"] = img.values
        inputs[f"lib_{j}"] = img.library
        inputs[f"x_{j}"] = x
        inputs[f"cfg_{j}"] = np.array([x.shape[1], x.shape[2], ho, wo, stride == 2, pad,
                                       img.n_groups, len(img.out_filter) // lanes],
                                      dtype=np.int64)
    inputs["count"] = np.array([len(checked)], dtype=np.int64)
    result = run_cocotb(design, TEST_MODULE, inputs=inputs)
    runs = []
    run_s = result.meta.get("run_seconds", [0.0] * len(checked))
    for j, ((pc, _, _, _), img) in enumerate(zip(checked, images, strict=True)):
        y = result.arrays[f"y_{j}"].astype(np.int64)
        keep = img.out_filter >= 0
        out = np.zeros((pc.shape[0], *y.shape[1:]), dtype=np.int64)
        out[img.out_filter[keep]] = y[keep]
        out = ((out + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)
        runs.append(PatternRun(out, int(result.arrays["cycles"][j]), float(run_s[j])))
    return runs


def run_pattern(qweight: np.ndarray, mask: Any, library: Any, qx: np.ndarray, lanes: int,
                weight_bits: int, act_bits: int, stride: int = 1, padding: int = 1,
                simulator: str = "verilator", *, cache_dir: str | os.PathLike | None = None,
                **build: Any) -> tuple[np.ndarray, int]:
    """Compute the pattern-pruned conv of ``qx`` on the engine's RTL.

    Returns ``(outputs, cycles)``: int32 ``(O, Ho, Wo)`` equal to ``ir.golden.conv2d(qweight,
    qx, stride=stride, padding=padding)``, and cycles equal to :func:`hw.pattern.pattern_cycles`.
    ``build`` takes the ``max_*``/``library_size`` arguments of :func:`run_pattern_batch`.
    """
    run = run_pattern_batch([(qweight, mask, library, qx, stride, padding)], lanes, weight_bits,
                            act_bits, simulator, cache_dir=cache_dir, **build)[0]
    return run.outputs, run.cycles


def random_pattern_layer(rng: np.random.Generator, shape: tuple[int, int], library: Any,
                         keep: float, *, bits: int = 8, full: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A random ``(O, C, 3, 3)`` integer layer: each kernel kept with probability ``keep`` with
    a random library pattern; kept weights uniform in ``bits`` signed bits, non-zero (``full``:
    only the two extremes). Returns ``(qweight, mask)``."""
    lib = np.asarray(library).astype(bool)
    o, c = shape
    kept = rng.random((o, c)) < keep
    pid = rng.integers(0, len(lib), (o, c))
    mask = lib[pid] & kept[:, :, None, None]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if full:
        vals = rng.choice([lo, hi], (o, c, 3, 3))
    else:
        vals = rng.integers(lo, hi, (o, c, 3, 3))
        vals = np.where(vals >= 0, vals + 1, vals)      # non-zero
    return np.where(mask, vals, 0).astype(np.int64), mask
