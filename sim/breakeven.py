"""Break-even pruning ratios measured in RTL simulation.

The *break-even ratio* of a layer on a sparse engine is the smallest pruning ratio (pruned
fraction of the weights, in ``[0, 1]``) at which the sparse engine takes no more cycles than the
dense engine with the same lanes and bit widths.

How it is measured (:func:`find_breakeven`)
-------------------------------------------
* **Masks.** At a ratio ``r`` and a seed ``s`` a random mask of the engine's scheme is drawn with
  numpy, by the same rounding rules as the compressor's projections (:mod:`pruning.plan`,
  :mod:`pruning.projections`): *unstructured* keeps ``floor((1 - r) * numel + 1/2)`` weights
  chosen uniformly; *bcr* splits the ratio evenly, ``row = col = 1 - sqrt(1 - r)``, and every
  block of ``h x w`` keeps ``max(1, kept(row, h))`` random rows times ``max(1, kept(col, w))``
  random columns; *pattern* keeps 4 of 9 weights per kept kernel (a random pattern from the
  library) and prunes whole kernels for the rest, connectivity ``max(0, 1 - 9 (1 - r) / 4)``,
  so ratios below ``5/9`` cannot be reached (they count as "not break-even" and are not run).
  Kept weights and all activations are random non-zero integers (the engines skip nothing for
  zero activations: the unstructured engine is measured at its worst case).
* **Runs.** Every point ``(ratio, seed)`` runs the sparse engine and the dense engine (same lanes,
  weight and activation bits, the same pruned weights) in the RTL simulator; outputs are checked
  bit-exactly against :mod:`ir.golden`. A conv2d layer runs on the matrix engines as one im2col
  matrix-vector product (``out x in*kh*kw``) per output position; every position costs the same
  cycles (BCR and dense cycles do not depend on the activations, and the activations have no
  zeros), so one product is run and the layer's cycles are ``positions x`` its cycles. The
  pattern engine runs the whole convolution; its dense reference is the dense engine's im2col run
  (one product in RTL, times the positions). An LSTM/GRU layer is the product of its stacked gate
  matrix ``[W_ih | W_hh]`` (``G*H x (I + H)``) with one step's input, as :mod:`hw.rnn` computes it.
* **Across seeds.** "Sparse no more than dense" at a ratio means: for *every* seed, the sparse
  cycles are ``<=`` the dense cycles (the worst case over the random masks, which is where lane
  imbalance shows).
* **Search.** The grid (default 20 ratios ``0.00, 0.05, ..., 0.95``) is run first; the break-even
  is bracketed by the smallest grid ratio from which the criterion holds at every larger grid
  ratio and the grid ratio below it, then refined by bisection until the bracket is ``<= tol``
  wide; the upper end is reported. The exact cycle models (:mod:`hw`) pick the bisection ratios in
  advance (they see the same masks), so the RTL runs them in the same batch as the grid; the
  reported ratio is then recomputed from the RTL cycles alone, and more RTL rounds run if the RTL
  disagreed with the model. ``BreakEven.rtl_runs`` counts the simulator runs (sparse plus dense)
  behind it; ``predicted_ratio`` is what the cycle models alone give.
* **Storage break-even.** The same search with "weights plus index bits of the engine's storage
  format (:mod:`ir.csr` lane CSC, :mod:`ir.bcr`, :mod:`ir.pattern`) no more than the dense
  weights' bits" for every seed; it needs the masks only, no simulation.
* **Time break-even.** Given the engines' Fmax, the same search on ``cycles / Fmax`` (more RTL
  runs if its bisection needs other ratios).

Every point is a :class:`Point`, keyed by a hash of everything that determines it (layer shape,
engine configuration, ratio, seed, simulator, tool versions and the source of the engines and
benches); a :class:`Store` keeps them, so a rerun reuses them. This module imports numpy,
:mod:`ir`, :mod:`hw` and :mod:`sim` only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["LayerSpec", "EngineConfig", "Point", "BreakEven", "Store", "MemoryStore",
           "ENGINES", "DEFAULT_GRID", "KEY_VERSION", "find_breakeven", "draw_layer",
           "point_key", "run_points", "search", "plan_ratios", "breakeven_from_points",
           "build_sizes", "prebuild", "min_ratio", "bcr_kept", "pattern_library", "default_grid",
           "check_engine_layer", "tools_for_key"]

#: Sparse engines a break-even can be measured for.
ENGINES = ("unstructured", "bcr", "pattern")
#: Bumped whenever the way points are drawn or run changes (part of every key).
KEY_VERSION = 2
#: Weights kept per kept kernel by the pattern engine's library.
PATTERN_KEEP = 4


def default_grid(count: int = 20, top: float = 0.95) -> tuple[float, ...]:
    """``count`` evenly spaced ratios from 0 to ``top`` (rounded to 9 decimals)."""
    if count < 2:
        raise ValueError(f"A grid needs at least 2 ratios, not {count}")
    return tuple(round(float(v), 9) for v in np.linspace(0.0, top, count))


#: Default grid: 0.00, 0.05, ..., 0.95 (20 ratios).
DEFAULT_GRID = default_grid()


def _rnd(r: float) -> float:
    return round(float(r), 9)


def _pos_int(value: Any, what: str, lo: int = 1, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo \
            or (hi is not None and value > hi):
        rng = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
        raise ValueError(f"{what} must be {rng}, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class LayerSpec:
    """The shape of a layer, as a break-even measurement needs it.

    Parameters
    ----------
    name : str
        Layer name (recorded; does not enter the simulation).
    op : {"linear", "conv2d"}
    shape : tuple of int
        linear: ``(rows, cols)``; conv2d: ``(out, in, kh, kw)``.
    image : (int, int) or None
        conv2d input ``(H, W)``. Without it a conv2d layer counts one output position (enough for
        the matrix engines, whose break-even does not depend on it); the pattern engine needs it.
    stride, padding : int
        conv2d stride (>= 1) and zero padding (>= 0), the same in both directions.
    """

    name: str
    op: str
    shape: tuple[int, ...]
    image: tuple[int, int] | None = None
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Layer name must be a non-empty string, not {self.name!r}")
        if self.op not in ("linear", "conv2d"):
            raise ValueError(f"Layer {self.name!r}: op must be 'linear' or 'conv2d', not "
                             f"{self.op!r}")
        want = 2 if self.op == "linear" else 4
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else ()
        if len(shape) != want:
            raise ValueError(f"Layer {self.name!r}: a {self.op} shape has {want} positive "
                             f"integers, not {self.shape!r}")
        object.__setattr__(self, "shape", tuple(_pos_int(s, f"Layer {self.name!r}: shape")
                                                for s in shape))
        if self.image is not None:
            if self.op != "conv2d" or not isinstance(self.image, (list, tuple)) \
                    or len(self.image) != 2:
                raise ValueError(f"Layer {self.name!r}: image must be (H, W) of a conv2d layer, "
                                 f"not {self.image!r}")
            object.__setattr__(self, "image", tuple(
                _pos_int(v, f"Layer {self.name!r}: image") for v in self.image))
        object.__setattr__(self, "stride", _pos_int(self.stride, f"Layer {self.name!r}: stride"))
        object.__setattr__(self, "padding",
                           _pos_int(self.padding, f"Layer {self.name!r}: padding", 0))
        if self.out_size[0] < 1 or self.out_size[1] < 1:
            raise ValueError(f"Layer {self.name!r}: a {self.shape[2]}x{self.shape[3]} kernel does "
                             f"not fit the {self.image} input with padding {self.padding}")

    @classmethod
    def from_layer(cls, layer: Any, image: tuple[int, int] | None = None) -> LayerSpec:
        """The spec of a bundle layer (:class:`ir.Layer`).

        linear and conv2d keep their weight shape (conv2d: groups 1, square stride and padding);
        an LSTM or GRU layer becomes the linear product of its stacked gate matrix
        ``(G*H, I + H)``, as :func:`hw.rnn.lstm_weight_matrix` lays it out.
        """
        from ir.layer import ConvShape, LinearShape, RNNShape

        s = layer.shape
        if isinstance(s, LinearShape):
            return cls(layer.name, "linear", (s.out_features, s.in_features))
        if isinstance(s, ConvShape):
            if s.groups != 1 or s.stride[0] != s.stride[1] or s.padding[0] != s.padding[1]:
                raise ValueError(f"Layer {layer.name!r}: break-even sweeps run conv2d layers "
                                 "with groups 1 and the same stride and padding in both "
                                 "directions")
            return cls(layer.name, "conv2d", s.weight_shape(), image, s.stride[0], s.padding[0])
        if isinstance(s, RNNShape):
            g = len(s.gate_order)
            return cls(layer.name, "linear", (g * s.hidden_size, s.input_size + s.hidden_size))
        raise ValueError(f"Layer {layer.name!r}: unsupported op {layer.op!r}")

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """The 2-D weight view: linear as is, conv2d ``(out, in * kh * kw)``."""
        if self.op == "linear":
            return self.shape[0], self.shape[1]
        o, c, kh, kw = self.shape
        return o, c * kh * kw

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))

    @property
    def out_size(self) -> tuple[int, int]:
        """conv2d output ``(Ho, Wo)`` (``(1, 1)`` without an image or for linear)."""
        if self.op != "conv2d" or self.image is None:
            return 1, 1
        kh, kw = self.shape[2:]
        return ((self.image[0] + 2 * self.padding - kh) // self.stride + 1,
                (self.image[1] + 2 * self.padding - kw) // self.stride + 1)

    @property
    def positions(self) -> int:
        """Matrix-vector products per layer evaluation: ``Ho * Wo`` (1 for linear)."""
        ho, wo = self.out_size
        return ho * wo

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "shape": list(self.shape),
                "image": list(self.image) if self.image else None, "stride": self.stride,
                "padding": self.padding}


@dataclass(frozen=True)
class EngineConfig:
    """A sparse engine and its parameters; the dense reference has the same lanes and bits.

    Parameters
    ----------
    engine : {"unstructured", "bcr", "pattern"}
    lanes : int
    weight_bits, act_bits : int
        2 to 16.
    block : (int, int)
        BCR block ``(rows, cols)``.
    index_bits : int
        Unstructured relative-index width (1 to 16).
    library_size : int
        Pattern library size (patterns of 4 of 9 weights, centre kept; see
        :func:`pattern_library`).
    """

    engine: str
    lanes: int = 8
    weight_bits: int = 8
    act_bits: int = 8
    block: tuple[int, int] = (8, 16)
    index_bits: int = 4
    library_size: int = 8

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"Engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        _pos_int(self.lanes, "Lanes")
        _pos_int(self.weight_bits, "Weight bits", 2, 16)
        _pos_int(self.act_bits, "Activation bits", 2, 16)
        _pos_int(self.index_bits, "Index bits", 1, 16)
        _pos_int(self.library_size, "Library size", 1, 56)
        if not isinstance(self.block, (list, tuple)) or len(self.block) != 2:
            raise ValueError(f"Block must be a pair of positive integers, not {self.block!r}")
        object.__setattr__(self, "block", tuple(_pos_int(b, "Block size") for b in self.block))

    def key_fields(self) -> dict[str, Any]:
        """The fields that determine the engine's behaviour (others are left out of keys)."""
        out: dict[str, Any] = {"engine": self.engine, "lanes": self.lanes,
                               "weight_bits": self.weight_bits, "act_bits": self.act_bits}
        if self.engine == "bcr":
            out["block"] = list(self.block)
        elif self.engine == "unstructured":
            out["index_bits"] = self.index_bits
        else:
            out["library_size"] = self.library_size
        return out

    @property
    def label(self) -> str:
        """Short text such as ``bcr p8 w8a8 b8x16``."""
        extra = {"bcr": f" b{self.block[0]}x{self.block[1]}",
                 "unstructured": f" i{self.index_bits}",
                 "pattern": f" lib{self.library_size}"}[self.engine]
        return f"{self.engine} p{self.lanes} w{self.weight_bits}a{self.act_bits}{extra}"


@dataclass(frozen=True)
class Point:
    """One RTL measurement: a random mask of the engine's scheme at a ratio, run on the sparse and
    the dense engine.

    Cycles are per layer evaluation (``positions`` matrix-vector products for a conv2d on the
    matrix engines; the whole convolution on the pattern engine). ``*_model_cycles`` are the
    engines' cycle models on the same layer (equal to the RTL when the models are right).
    Storage bits: the sparse engine's weights plus index bits, and the dense weights' bits.
    ``tools`` holds the worker's ``(name, version)`` pairs (:func:`sim.toolchain.tool_versions`).
    """

    key: str
    layer: str
    op: str
    shape: tuple[int, ...]
    engine: str
    lanes: int
    weight_bits: int
    act_bits: int
    ratio: float
    seed: int
    nnz: int
    numel: int
    sparse_cycles: int
    dense_cycles: int
    sparse_model_cycles: int
    dense_model_cycles: int
    sparse_storage_bits: int
    dense_storage_bits: int
    positions: int
    simulator: str
    tools: tuple[tuple[str, str], ...]
    block: tuple[int, int] | None = None
    index_bits: int | None = None
    library_size: int | None = None
    image: tuple[int, int] | None = None
    stride: int = 1
    padding: int = 0

    @property
    def sparsity(self) -> float:
        """Achieved pruned fraction ``1 - nnz / numel``."""
        return 1.0 - self.nnz / self.numel if self.numel else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples as lists)."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = [list(x) if isinstance(x, tuple) else x for x in v]
        return out

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Point:
        """Inverse of :meth:`to_json`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        extra = sorted(set(record) - names)
        if extra:
            raise ValueError(f"Unknown point field {extra[0]!r}")
        rec = dict(record)
        for k in ("shape", "block", "image"):
            if rec.get(k) is not None:
                rec[k] = tuple(int(v) for v in rec[k])
        rec["tools"] = tuple((str(a), str(b)) for a, b in rec.get("tools", ()))
        return cls(**rec)


@dataclass(frozen=True)
class BreakEven:
    """The break-even ratios of one layer on one engine configuration.

    Attributes
    ----------
    layer : str
    config : EngineConfig
    ratio : float or None
        Break-even pruning ratio from the RTL cycles; None if sparse never took no more cycles
        than dense on the grid.
    storage_ratio : float or None
        Break-even of storage (weights plus index bits <= dense weights' bits).
    time_ratio : float or None
        Break-even of time (cycles / Fmax), None unless Fmax was given.
    rtl_runs : int
        Simulator runs (sparse plus dense) behind ``ratio``.
    points : tuple of Point
        Every RTL point the search used, sorted by ratio and seed.
    predicted_ratio : float or None
        What the cycle models alone give on the same masks.
    """

    layer: str
    config: EngineConfig
    ratio: float | None
    storage_ratio: float | None
    time_ratio: float | None
    rtl_runs: int
    points: tuple[Point, ...]
    predicted_ratio: float | None
    fmax_mhz: tuple[float, float] | None = field(default=None)


@runtime_checkable
class Store(Protocol):
    """Where points are kept: :class:`codesign.store.SQLiteStore` or :class:`MemoryStore`."""

    def get(self, key: str) -> Point | None:
        """The point stored under ``key``, or None."""

    def put(self, points: Iterable[Point]) -> int:
        """Store ``points`` (a key already stored is left as it is); return how many were new."""


class MemoryStore:
    """A :class:`Store` in a dict (for one process)."""

    def __init__(self) -> None:
        self._points: dict[str, Point] = {}

    def get(self, key: str) -> Point | None:
        return self._points.get(key)

    def put(self, points: Iterable[Point]) -> int:
        new = 0
        for p in points:
            if p.key not in self._points:
                self._points[p.key] = p
                new += 1
        return new

    def __len__(self) -> int:
        return len(self._points)


# ------------------------------------------------------------------------------ masks and layers

def _kept(sparsity: float, n: int) -> int:
    """As :func:`pruning.schemes.kept_count`: ``floor((1 - s) * n + 1/2)`` in ``[0, n]``."""
    return min(n, max(0, math.floor(round((1.0 - sparsity) * n, 9) + 0.5)))


def bcr_kept(ratio: float, h: int, w: int) -> tuple[int, int]:
    """Kept rows and columns of an ``h x w`` BCR block at pruning ratio ``ratio`` (even split,
    ``row = col = 1 - sqrt(1 - ratio)``, at least one of each, as :mod:`pruning.plan` and
    :func:`pruning.projections.bcr_mask` do)."""
    side = round(1.0 - math.sqrt(1.0 - ratio), 12)
    return max(1, _kept(side, h)), max(1, _kept(side, w))


def pattern_library(size: int = 8) -> np.ndarray:
    """The pattern engine's library for break-even runs: ``size`` of the 56 four-weight
    patterns that keep the centre, picked by a fixed seed (0), in increasing id order."""
    from ir.pattern import candidate_patterns

    cands = candidate_patterns(PATTERN_KEEP)
    ids = np.sort(np.random.default_rng(0).choice(len(cands), size, replace=False))
    return cands[ids]


def min_ratio(spec: LayerSpec, config: EngineConfig) -> float:
    """Smallest ratio the engine's scheme reaches: ``1 - 4/9`` for pattern, else 0."""
    return _rnd(1.0 - PATTERN_KEEP / 9) if config.engine == "pattern" else 0.0


def check_engine_layer(spec: LayerSpec, config: EngineConfig) -> None:
    """ValueError naming the layer if the engine cannot run it."""
    if config.engine == "pattern":
        if spec.op != "conv2d" or spec.shape[2:] != (3, 3):
            raise ValueError(f"Layer {spec.name!r}: the pattern engine runs 3x3 conv2d layers, "
                             f"not a {spec.op} of shape {spec.shape}")
        if spec.stride not in (1, 2) or spec.padding not in (0, 1):
            raise ValueError(f"Layer {spec.name!r}: the pattern engine runs stride 1 or 2 and "
                             f"padding 0 or 1, not stride {spec.stride}, padding {spec.padding}")
        if spec.image is None:
            raise ValueError(f"Layer {spec.name!r}: the pattern engine needs the conv2d input "
                             "size (image)")


def _seed_of(spec: LayerSpec, config: EngineConfig, ratio: float, seed: int) -> int:
    doc = json.dumps([KEY_VERSION, spec.op, list(spec.shape), config.key_fields(), _rnd(ratio),
                      int(seed)], sort_keys=True)
    return int.from_bytes(hashlib.sha256(doc.encode()).digest()[:8], "little")


def _nonzero_ints(rng: np.random.Generator, shape: tuple[int, ...], bits: int) -> np.ndarray:
    hi = (1 << (bits - 1)) - 1
    v = rng.integers(1, hi + 1, shape) * rng.choice(np.array([-1, 1]), shape)
    return v.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Drawn:
    """A random layer of the engine's scheme: integer weight (2-D view, or 4-D for pattern), its
    mask, and the activations (a vector for the matrix engines, ``(C, H, W)`` for pattern)."""

    qweight: np.ndarray
    mask: np.ndarray
    x: np.ndarray
    x_dense: np.ndarray


def _pick_sides(rng: np.random.Generator, blocks: tuple[int, int], size: int, total: int,
                ratio: float, axis: int) -> np.ndarray:
    """``(gr, gc, size)`` bool: in each block, a random subset of its real rows (``axis`` 0) or
    columns (1) of the size :func:`bcr_kept` gives."""
    gr, gc = blocks
    n_blocks = gr if axis == 0 else gc
    extent = np.minimum(size, total - size * np.arange(n_blocks))        # edge blocks are smaller
    kept = np.array([bcr_kept(ratio, e, e)[0] for e in extent])
    real = np.arange(size)[None, :] < extent[:, None]                   # (n_blocks, size)
    if axis == 0:
        kept, real = kept[:, None, None], real[:, None, :]
    else:
        kept, real = kept[None, :, None], real[None, :, :]
    score = np.where(real, rng.random((gr, gc, size)), np.inf)
    rank = np.argsort(np.argsort(score, axis=2, kind="stable"), axis=2, kind="stable")
    return rank < kept


def _bcr_mask(rng: np.random.Generator, rows: int, cols: int, block: tuple[int, int],
              ratio: float) -> np.ndarray:
    """A BCR mask: every ``h x w`` block keeps ``bcr_kept`` random rows times random columns."""
    (br, bc) = block
    gr, gc = -(-rows // br), -(-cols // bc)
    keep_r = _pick_sides(rng, (gr, gc), br, rows, ratio, 0)
    keep_c = _pick_sides(rng, (gr, gc), bc, cols, ratio, 1)
    mb = keep_r[..., :, None] & keep_c[..., None, :]
    return mb.transpose(0, 2, 1, 3).reshape(gr * br, gc * bc)[:rows, :cols]


def draw_layer(spec: LayerSpec, config: EngineConfig, ratio: float, seed: int) -> Drawn:
    """The random layer of point ``(ratio, seed)``: the same arguments give the same arrays.

    See the module docstring for the rules per scheme.
    """
    check_engine_layer(spec, config)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"Ratio must be a pruned fraction in [0, 1], not {ratio!r}")
    rng = np.random.default_rng(_seed_of(spec, config, ratio, seed))
    rows, cols = spec.matrix_shape
    if config.engine == "unstructured":
        keep = _kept(ratio, rows * cols)
        flat = np.zeros(rows * cols, dtype=bool)
        flat[rng.choice(rows * cols, keep, replace=False)] = True
        mask = flat.reshape(rows, cols)
    elif config.engine == "bcr":
        mask = _bcr_mask(rng, rows, cols, config.block, ratio)
    else:
        o, c = spec.shape[:2]
        lib = pattern_library(config.library_size).astype(bool)
        conn = max(0.0, round(1.0 - 9.0 * (1.0 - ratio) / PATTERN_KEEP, 12))
        kept = np.zeros(o * c, dtype=bool)
        kept[rng.choice(o * c, _kept(conn, o * c), replace=False)] = True
        pid = rng.integers(0, len(lib), o * c)
        mask = (lib[pid] & kept[:, None, None]).reshape(o, c, 3, 3)
    qweight = np.where(mask, _nonzero_ints(rng, mask.shape, config.weight_bits), 0)
    x_dense = _nonzero_ints(rng, (cols,), config.act_bits)
    if config.engine == "pattern":
        x = _nonzero_ints(rng, (spec.shape[1], *spec.image), config.act_bits)
    else:
        x = x_dense
    return Drawn(qweight.astype(np.int64), mask, x, x_dense)


def _encode(d: Drawn, config: EngineConfig) -> Any:
    if config.engine == "unstructured":
        from ir.csr import encode_csc_lanes

        return encode_csc_lanes(d.qweight, config.lanes, config.index_bits)
    if config.engine == "bcr":
        from ir.bcr import encode_bcr

        return encode_bcr(d.qweight, config.block, d.mask)
    from ir.pattern import encode_pattern

    return encode_pattern(d.qweight, pattern_library(config.library_size), d.mask)


def _model(spec: LayerSpec, config: EngineConfig, d: Drawn) -> tuple[int, int, int, int]:
    """(sparse model cycles, dense model cycles, sparse storage bits, dense storage bits), per
    layer evaluation."""
    from hw.dense import dense_cycles

    enc = _encode(d, config)
    rows, cols = spec.matrix_shape
    pos = spec.positions
    if config.engine == "unstructured":
        from hw.unstructured import unstructured_cycles

        sparse = pos * unstructured_cycles(enc, d.x, config.lanes)
    elif config.engine == "bcr":
        from hw.bcr import bcr_cycles

        sparse = pos * bcr_cycles(enc, config.lanes)
    else:
        from hw.pattern import pattern_cycles

        sparse = pattern_cycles(enc, spec.out_size, config.lanes)
    storage = int(enc.value_count) * config.weight_bits + int(enc.index_bits)
    return (int(sparse), int(pos * dense_cycles(rows, cols, config.lanes)), storage,
            rows * cols * config.weight_bits)


@functools.lru_cache(maxsize=8192)
def _model_at(spec: LayerSpec, config: EngineConfig, ratio: float, seed: int
              ) -> tuple[int, int, int, int]:
    return _model(spec, config, draw_layer(spec, config, ratio, seed))


# ---------------------------------------------------------------------------------------- keys

_PATH = re.compile(r"\S*/\S*")


def tools_for_key(simulator: str) -> tuple[tuple[str, str], ...]:
    """:func:`sim.toolchain.tool_versions` with file-system paths removed (so the same tools
    installed elsewhere give the same keys)."""
    from sim.toolchain import tool_versions

    return tuple((n, " ".join(_PATH.sub("", v).split())) for n, v in tool_versions(simulator))


# Everything that decides a point's cycles, model cycles and storage: the engine, its bench,
# the encoder that makes its memory image and the wrapper that runs it (the encoders and
# wrappers were left out, so a change to them reused stale points).
_SOURCES = {"unstructured": ("hw/unstructured.py", "sim/unstructured_tb.py", "ir/csr.py",
                             "sim/unstructured.py"),
            "bcr": ("hw/bcr.py", "sim/bcr_tb.py", "ir/bcr.py", "sim/bcr.py"),
            "pattern": ("hw/pattern.py", "sim/pattern_tb.py", "ir/pattern.py", "sim/pattern.py")}
_digests: dict[str, str] = {}


def _source_digest(engine: str) -> str:
    """SHA-256 of the engine's and the dense engine's hardware, bench, encoder and run-wrapper
    sources, the runner's, and this module's drawing rules (``KEY_VERSION``)."""
    if engine not in _digests:
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256(str(KEY_VERSION).encode())
        for rel in ("hw/dense.py", "hw/packing.py", "hw/emit.py", "sim/dense_tb.py",
                    "sim/tb_common.py", "sim/dense.py", "sim/runner.py", "sim/emit_cache.py",
                    *_SOURCES[engine]):
            h.update((root / rel).read_bytes())
        _digests[engine] = h.hexdigest()
    return _digests[engine]


def point_key(spec: LayerSpec, config: EngineConfig, ratio: float, seed: int,
              simulator: str = "verilator",
              tools: Sequence[tuple[str, str]] | None = None) -> str:
    """Hex SHA-256 of everything that determines a point: the layer's op, shape, image, stride
    and padding (not its name), the engine configuration, the ratio (9 decimals), the seed, the
    simulator, its tool versions (:func:`tools_for_key`) and the engines' sources."""
    tools = tools_for_key(simulator) if tools is None else tools
    doc = {"v": KEY_VERSION, "op": spec.op, "shape": list(spec.shape),
           "image": list(spec.image) if spec.image else None, "stride": spec.stride,
           "padding": spec.padding, "config": config.key_fields(), "ratio": _rnd(ratio),
           "seed": int(seed), "simulator": simulator, "tools": [list(t) for t in tools],
           "source": _source_digest(config.engine)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------- RTL runs

def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def build_sizes(specs: Sequence[LayerSpec], config: EngineConfig) -> dict[str, dict[str, int]]:
    """Build sizes that fit every layer of ``specs`` on ``config``'s engine and on the dense
    engine: ``{"sparse": {...}, "dense": {...}}`` keyword arguments of the ``run_*_batch``
    functions (each dimension rounded up to a power of two, so nearby sweeps share builds).
    Cycles do not depend on the build size."""
    if not specs:
        raise ValueError("At least one layer is needed")
    rows = max(s.matrix_shape[0] for s in specs)
    cols = max(s.matrix_shape[1] for s in specs)
    dense = {"max_rows": max(config.lanes, _next_pow2(rows)), "max_cols": _next_pow2(cols)}
    if config.engine == "pattern":
        sparse = {"max_filters": _next_pow2(max(s.shape[0] for s in specs)),
                  "max_channels": _next_pow2(max(s.shape[1] for s in specs)),
                  "max_height": max(s.image[0] for s in specs),
                  "max_width": max(s.image[1] for s in specs),
                  "library_size": config.library_size}
    else:
        sparse = dict(dense)
    return {"sparse": sparse, "dense": dense}


def prebuild(config: EngineConfig, build: Mapping[str, Mapping[str, int]], which: str, *,
             simulator: str = "verilator", cache_dir: str | os.PathLike | None = None) -> str:
    """Emit and build the sparse (``which="sparse"``) or the dense engine of ``config`` with the
    sizes of :func:`build_sizes`, as :func:`run_points` will use it; returns the build's key."""
    lanes, wb, ab = config.lanes, config.weight_bits, config.act_bits
    kw = {"simulator": simulator, "cache_dir": cache_dir}
    b = dict(build[which])
    if which == "dense":
        from sim.dense import dense_design

        return dense_design(lanes, wb, ab, b["max_rows"], b["max_cols"], **kw).key
    if which != "sparse":
        raise ValueError(f"Which must be 'sparse' or 'dense', not {which!r}")
    if config.engine == "unstructured":
        from sim.unstructured import unstructured_design

        return unstructured_design(lanes, wb, ab, config.index_bits, b["max_rows"],
                                   b["max_cols"], **kw).key
    if config.engine == "bcr":
        from sim.bcr import bcr_design

        return bcr_design(lanes, config.block, wb, ab, b["max_rows"], b["max_cols"], **kw).key
    from sim.pattern import pattern_design

    return pattern_design(lanes, wb, ab, b["library_size"], PATTERN_KEEP, b["max_channels"],
                          b["max_filters"], b["max_height"], b["max_width"], **kw).key


def run_points(spec: LayerSpec, config: EngineConfig, requests: Sequence[tuple[float, int]], *,
               simulator: str = "verilator", cache_dir: str | os.PathLike | None = None,
               build: Mapping[str, Mapping[str, int]] | None = None,
               key_tools: Sequence[tuple[str, str]] | None = None) -> list[Point]:
    """Run the points ``(ratio, seed)`` of one layer in RTL: one simulator process for the sparse
    engine and one for the dense engine, whatever the number of points.

    Parameters
    ----------
    spec, config : LayerSpec, EngineConfig
    requests : sequence of (float, int)
        Ratios (feasible for the engine, see :func:`min_ratio`) and seeds.
    simulator : {"verilator", "icarus"}
    cache_dir : path, optional
        Cache root for Verilog and builds (:mod:`sim.runner`).
    build : mapping, optional
        Build sizes from :func:`build_sizes` (default: sized for ``spec`` alone).
    key_tools : sequence of (str, str), optional
        Tool versions for the keys (default :func:`tools_for_key` here): a sweep passes the
        client's, so that keys match across machines.

    Returns
    -------
    list of Point
        In the order of ``requests``.

    Raises
    ------
    RuntimeError
        If an engine's outputs differ from :mod:`ir.golden` (a hardware bug, never a result).
    """
    from ir.golden import conv2d, linear
    from sim.dense import run_dense_batch
    from sim.toolchain import tool_versions

    check_engine_layer(spec, config)
    if not requests:
        return []
    lo = min_ratio(spec, config)
    for r, _ in requests:
        if not lo <= r <= 1.0:
            raise ValueError(f"Layer {spec.name!r}: ratio {r} is outside [{lo:.4f}, 1] for the "
                             f"{config.engine} engine")
    build = build_sizes([spec], config) if build is None else build
    drawn = [draw_layer(spec, config, r, s) for r, s in requests]
    lanes, wb, ab = config.lanes, config.weight_bits, config.act_bits
    kw = {"simulator": simulator, "cache_dir": cache_dir}
    if config.engine == "unstructured":
        from sim.unstructured import run_unstructured_batch

        runs = run_unstructured_batch([(d.qweight, d.x) for d in drawn], lanes, wb, ab,
                                      config.index_bits, **kw, **build["sparse"])
        sparse = [(r.outputs[0], r.cycles[0]) for r in runs]
    elif config.engine == "bcr":
        from sim.bcr import run_bcr_batch

        runs = run_bcr_batch([(d.qweight, d.mask, d.x) for d in drawn], config.block, lanes, wb,
                             ab, **kw, **build["sparse"])
        sparse = [(r.outputs[0], r.cycles[0]) for r in runs]
    else:
        from sim.pattern import run_pattern_batch

        lib = pattern_library(config.library_size)
        runs = run_pattern_batch([(d.qweight, d.mask, lib, d.x, spec.stride, spec.padding)
                                  for d in drawn], lanes, wb, ab, **kw, **build["sparse"])
        sparse = [(r.outputs, r.cycles) for r in runs]
    dense_runs = run_dense_batch([(d.qweight.reshape(spec.matrix_shape), d.x_dense)
                                  for d in drawn], lanes, wb, ab, **kw, **build["dense"])
    tools = tuple((str(a), str(b)) for a, b in tool_versions(simulator))
    key_tools = tools_for_key(simulator) if key_tools is None else key_tools
    points = []
    for (r, s), d, (out, cyc), drun in zip(requests, drawn, sparse, dense_runs, strict=True):
        w2 = d.qweight.reshape(spec.matrix_shape)
        if config.engine == "pattern":
            gold = conv2d(d.qweight, d.x, stride=spec.stride, padding=spec.padding)
            sparse_total = int(cyc)
        else:
            gold = linear(w2, d.x)
            sparse_total = spec.positions * int(cyc)
        if not np.array_equal(out, gold):
            raise RuntimeError(f"Layer {spec.name!r}, ratio {r}, seed {s}: the {config.engine} "
                               "engine's outputs differ from the golden model")
        if not np.array_equal(drun.outputs[0], linear(w2, d.x_dense)):
            raise RuntimeError(f"Layer {spec.name!r}, ratio {r}, seed {s}: the dense engine's "
                               "outputs differ from the golden model")
        sm, dm, sbits, dbits = _model_at(spec, config, _rnd(r), int(s))
        points.append(Point(
            key=point_key(spec, config, r, s, simulator, key_tools), layer=spec.name,
            op=spec.op, shape=spec.shape, engine=config.engine, lanes=lanes, weight_bits=wb,
            act_bits=ab, ratio=_rnd(r), seed=int(s), nnz=int(np.count_nonzero(d.mask)),
            numel=spec.numel, sparse_cycles=sparse_total,
            dense_cycles=spec.positions * int(drun.cycles[0]), sparse_model_cycles=sm,
            dense_model_cycles=dm, sparse_storage_bits=sbits, dense_storage_bits=dbits,
            positions=spec.positions, simulator=simulator, tools=tools,
            block=config.block if config.engine == "bcr" else None,
            index_bits=config.index_bits if config.engine == "unstructured" else None,
            library_size=config.library_size if config.engine == "pattern" else None,
            image=spec.image, stride=spec.stride, padding=spec.padding))
    return points


# ------------------------------------------------------------------------------------- search

Verdict = Callable[[float], "bool | None"]


def search(grid: Sequence[float], tol: float, verdict: Verdict
           ) -> tuple[float | None, list[float], list[float]]:
    """Grid then bisection on ``verdict`` (True: sparse no worse at that ratio; False: worse;
    None: not measured yet).

    Returns
    -------
    (float or None, list of float, list of float)
        The break-even (None if the last grid ratio fails, or while ``pending``), the ratios
        still to measure (``pending``; empty when done), and every ratio visited.
    """
    grid = sorted({_rnd(g) for g in grid})
    visited = list(grid)
    known = {g: verdict(g) for g in grid}
    pending = [g for g in grid if known[g] is None]
    if pending:
        return None, pending, visited
    k = len(grid)
    while k > 0 and known[grid[k - 1]]:
        k -= 1
    if k == len(grid):
        return None, [], visited
    if k == 0:
        return grid[0], [], visited
    lo, hi = grid[k - 1], grid[k]
    while hi - lo > tol + 1e-12:
        mid = _rnd((lo + hi) / 2)
        if mid in (lo, hi):
            break
        visited.append(mid)
        v = verdict(mid)
        if v is None:
            return None, [mid], visited
        lo, hi = (lo, mid) if v else (mid, hi)
    return hi, [], visited


def plan_ratios(spec: LayerSpec, config: EngineConfig, grid: Sequence[float] | None = None,
                tol: float = 0.01, seeds: int = 3) -> list[float]:
    """Ratios to run in RTL first: the grid and the bisection ratios the cycle models choose
    (on the same masks), feasible ones only, sorted. Runs no simulator."""
    grid_ = _feasible_grid(spec, config, grid)
    lo = min_ratio(spec, config)
    _, _, visited = search(grid_, tol, _model_verdict(spec, config, seeds))
    return sorted({r for r in visited if r >= lo})


def _check_grid(grid: Sequence[float] | None) -> list[float]:
    grid = list(DEFAULT_GRID if grid is None else grid)
    if len(grid) < 1:
        raise ValueError("The ratio grid must not be empty")
    for g in grid:
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0.0 <= g <= 1.0:
            raise ValueError(f"Ratios must be pruned fractions in [0, 1], not {g!r}")
    return sorted({_rnd(g) for g in grid})


def _feasible_grid(spec: LayerSpec, config: EngineConfig,
                   grid: Sequence[float] | None) -> list[float]:
    """The grid, plus the scheme's smallest ratio when some grid ratios are below it."""
    grid_ = _check_grid(grid)
    lo = min_ratio(spec, config)
    if grid_[0] < lo:
        grid_ = sorted(set(grid_) | {lo})
    return grid_


def _verdicts(points: Iterable[Point], seeds: int, lo: float,
              test: Callable[[Point], bool]) -> Verdict:
    by: dict[float, dict[int, Point]] = {}
    for p in points:
        by.setdefault(_rnd(p.ratio), {})[p.seed] = p

    def verdict(r: float) -> bool | None:
        if r < lo:
            return False
        got = by.get(_rnd(r), {})
        if any(s not in got for s in range(seeds)):
            return None
        return all(test(got[s]) for s in range(seeds))

    return verdict


def breakeven_from_points(points: Iterable[Point], spec: LayerSpec, config: EngineConfig, *,
                          seeds: int = 3, grid: Sequence[float] | None = None,
                          tol: float = 0.01, fmax_mhz: tuple[float, float] | None = None,
                          predicted: float | None = None) -> tuple[BreakEven | None, list[float]]:
    """The break-even from measured points, or the ratios still to run.

    Returns ``(BreakEven, [])`` when the RTL search (and the time search, with ``fmax_mhz`` =
    ``(sparse MHz, dense MHz)``) is complete, else ``(None, pending ratios)``.
    """
    pts = [p for p in points]
    grid_ = _feasible_grid(spec, config, grid)
    lo = min_ratio(spec, config)
    ratio, pending, visited = search(grid_, tol, _verdicts(
        pts, seeds, lo, lambda p: p.sparse_cycles <= p.dense_cycles))
    time_ratio = None
    if not pending and fmax_mhz is not None:
        fs, fd = (float(f) for f in fmax_mhz)
        if fs <= 0 or fd <= 0:
            raise ValueError(f"Fmax must be positive, not {fmax_mhz!r}")
        time_ratio, pending, tvisited = search(grid_, tol, _verdicts(
            pts, seeds, lo, lambda p: p.sparse_cycles / fs <= p.dense_cycles / fd))
        visited = visited + tvisited
    if pending:
        return None, sorted(set(pending))
    used = {_rnd(r) for r in visited}
    chosen = tuple(sorted((p for p in pts if _rnd(p.ratio) in used and p.seed < seeds),
                          key=lambda p: (p.ratio, p.seed)))
    storage = search(grid_, tol, _model_verdict(spec, config, seeds, storage=True))[0]
    return BreakEven(layer=spec.name, config=config, ratio=ratio, storage_ratio=storage,
                     time_ratio=time_ratio, rtl_runs=2 * len(chosen), points=chosen,
                     predicted_ratio=predicted, fmax_mhz=fmax_mhz), []


def _model_verdict(spec: LayerSpec, config: EngineConfig, seeds: int,
                   storage: bool = False) -> Verdict:
    """Verdict of the cycle models (or of the storage bits) on the points' masks."""
    lo = min_ratio(spec, config)

    def verdict(r: float) -> bool:
        if r < lo:
            return False
        res = [_model_at(spec, config, _rnd(r), s) for s in range(seeds)]
        return all((x[2] <= x[3]) if storage else (x[0] <= x[1]) for x in res)

    return verdict


def predicted_breakeven(spec: LayerSpec, config: EngineConfig, *, seeds: int = 3,
                        grid: Sequence[float] | None = None, tol: float = 0.01) -> float | None:
    """The break-even the cycle models alone give (same masks, same search; no simulator)."""
    return search(_feasible_grid(spec, config, grid), tol, _model_verdict(spec, config, seeds))[0]


def find_breakeven(spec: LayerSpec, config: EngineConfig, *, seeds: int = 3,
                   grid: Sequence[float] | None = None, tol: float = 0.01,
                   simulator: str = "verilator", store: Store | None = None,
                   cache_dir: str | os.PathLike | None = None,
                   fmax_mhz: tuple[float, float] | None = None,
                   build: Mapping[str, Mapping[str, int]] | None = None,
                   max_rounds: int = 20) -> BreakEven:
    """Measure the break-even ratios of one layer on one engine configuration in RTL.

    Parameters
    ----------
    spec : LayerSpec
    config : EngineConfig
    seeds : int
        Random masks per ratio (seeds ``0 .. seeds-1``); the criterion must hold for every one.
    grid : sequence of float, optional
        Pruning ratios in ``[0, 1]`` (default :data:`DEFAULT_GRID`, 20 ratios).
    tol : float
        Bisection stops when the bracket is at most this wide.
    simulator : {"verilator", "icarus"}
    store : Store, optional
        Points already in it are reused; new points are put in it as soon as they are run.
    cache_dir : path, optional
        Cache root for Verilog and simulator builds.
    fmax_mhz : (float, float), optional
        Fmax of the sparse and the dense engine, for the time break-even.
    build : mapping, optional
        Build sizes (:func:`build_sizes`); default sized for this layer.
    max_rounds : int
        Most RTL rounds (each one simulator process per engine).

    Returns
    -------
    BreakEven
        See the module docstring for the definitions.

    Raises
    ------
    ValueError
        For a bad grid, seed count, tolerance, or a layer the engine cannot run.
    """
    check_engine_layer(spec, config)
    seeds = _pos_int(seeds, "Seeds")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise ValueError(f"Tolerance must be a number in (0, 1), not {tol!r}")
    from sim.runner import check_simulator

    check_simulator(simulator)
    store = MemoryStore() if store is None else store
    key_tools = tools_for_key(simulator)
    points: dict[str, Point] = {}

    def measure(ratios: Iterable[float]) -> None:
        todo = []
        for r in sorted(set(ratios)):
            for s in range(seeds):
                key = point_key(spec, config, r, s, simulator, key_tools)
                if key in points:
                    continue
                got = store.get(key)
                if got is not None:     # the key has no layer name: the point is this layer's
                    points[key] = replace(got, layer=spec.name)
                else:
                    todo.append((r, s))
        if todo:
            new = run_points(spec, config, todo, simulator=simulator, cache_dir=cache_dir,
                             build=build, key_tools=key_tools)
            store.put(new)
            points.update((p.key, p) for p in new)

    predicted = predicted_breakeven(spec, config, seeds=seeds, grid=grid, tol=tol)
    measure(plan_ratios(spec, config, grid, tol, seeds))
    for _ in range(max_rounds):
        result, pending = breakeven_from_points(points.values(), spec, config, seeds=seeds,
                                                grid=grid, tol=tol, fmax_mhz=fmax_mhz,
                                                predicted=predicted)
        if result is not None:
            return result
        measure(pending)
    raise RuntimeError(f"Layer {spec.name!r}: no break-even after {max_rounds} RTL rounds")
