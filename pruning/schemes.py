"""Pruning scheme configs: one small frozen dataclass per scheme, validated at construction.

A config says *how much* to prune and with which structure; :mod:`pruning.projections` maps
each config type to its projection. ``config.to_ir(...)`` gives the :mod:`ir.schemes` record
that the bundle stores for a layer pruned with it.

Sparsities are *pruned fractions* in ``[0, 1)`` (0.75 = three quarters removed), the same
convention as the ratios of :mod:`ir.schemes`. A compression ratio ``r`` (``85`` meaning 85x
fewer weights) converts with :func:`sparsity_from_ratio`.

Errors: a parameter of the wrong type raises :class:`TypeError`, a value out of range raises
:class:`ValueError`; both say what was given and what is allowed, e.g.
``"Sparsity must be a number in [0, 1), not 1.2"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from ir import schemes as irs
from ir.pattern import candidate_patterns

__all__ = [
    "SchemeConfig", "DenseConfig", "UnstructuredConfig", "FilterConfig", "ColumnConfig",
    "PatternConfig", "BCRConfig", "NMConfig", "CONFIG_KINDS", "sparsity_from_ratio",
    "ratio_from_sparsity", "kept_count",
]

SCOPES = ("layer", "global")


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers, so messages read ``1.2``, not ``np.float64(1.2)``."""
    return value.item() if isinstance(value, np.generic) else value


def _fraction(name: str, value: Any) -> float:
    value = _plain(value)
    msg = f"{name} must be a number in [0, 1), not {value!r}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(msg)
    if not (math.isfinite(float(value)) and 0.0 <= float(value) < 1.0):
        raise ValueError(msg)
    return float(value)


def _int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    value = _plain(value)
    allowed = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"
    if lo == 1 and hi is None:
        allowed = "a positive integer"
    msg = f"{name} must be {allowed}, not {value!r}"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(msg)
    if value < lo or (hi is not None and value > hi):
        raise ValueError(msg)
    return int(value)


def kept_count(sparsity: float, n: int) -> int:
    """How many of ``n`` items a pruned fraction ``sparsity`` keeps.

    ``floor((1 - sparsity) * n + 1/2)``: rounded half up, after snapping ``(1 - sparsity) * n``
    to 9 decimals so that float noise (``(1 - 0.65) * 10 = 3.5000000000000004``) cannot decide
    a half. The result is in ``[0, n]``; callers that need at least one clamp it themselves.
    """
    return min(n, max(0, math.floor(round((1.0 - sparsity) * n, 9) + 0.5)))


def sparsity_from_ratio(ratio: Any) -> float:
    """The pruned fraction ``1 - 1/ratio`` of a compression ratio ``ratio > 1`` (85 -> 0.98824).

    Raises
    ------
    TypeError, ValueError
        ``"Compression ratio must be a finite number greater than 1, not 0.5"`` unless
        ``ratio`` is a real number with ``1 < ratio < inf``.
    """
    ratio = _plain(ratio)
    msg = f"Compression ratio must be a finite number greater than 1, not {ratio!r}"
    if isinstance(ratio, bool) or not isinstance(ratio, Real):
        raise TypeError(msg)
    if not (math.isfinite(float(ratio)) and float(ratio) > 1.0):
        raise ValueError(msg)
    return 1.0 - 1.0 / float(ratio)


def ratio_from_sparsity(sparsity: Any) -> float:
    """The compression ratio ``1 / (1 - sparsity)`` of a pruned fraction in ``[0, 1)``."""
    return 1.0 / (1.0 - _fraction("Sparsity", sparsity))


@dataclass(frozen=True)
class SchemeConfig:
    """Base class of the configs. ``kind`` is the :mod:`ir.schemes` kind it produces."""

    kind: ClassVar[str] = ""

    def to_ir(self, **ctx: Any) -> irs.Scheme:
        """The :mod:`ir.schemes` record of a layer pruned with this config."""
        raise NotImplementedError


@dataclass(frozen=True)
class DenseConfig(SchemeConfig):
    """No pruning."""

    kind: ClassVar[str] = "dense"

    def to_ir(self, **ctx: Any) -> irs.Dense:
        return irs.Dense()


@dataclass(frozen=True)
class UnstructuredConfig(SchemeConfig):
    """Keep the largest-magnitude weights, per layer (``scope="layer"``) or across every layer
    with a global config (``scope="global"``; see :func:`pruning.projections.project_global`).

    ``index_bits`` is the relative-index width of the CSR/CSC storage recorded in the bundle.
    ``connected=True`` keeps no weight off every input-to-output path of the model
    (:mod:`pruning.connectivity`): the budget that a magnitude mask spends on such dead weights
    goes to the next largest live ones. It needs every prunable layer of the model unstructured
    and connected, in one chain (checked by :func:`pruning.plan.resolve`).
    """

    kind: ClassVar[str] = "unstructured"
    sparsity: float
    scope: str = "layer"
    index_bits: int = 4
    connected: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", _fraction("Sparsity", self.sparsity))
        if self.scope not in SCOPES or not isinstance(self.scope, str):
            # a wrong type is a TypeError, as for every config parameter
            error = ValueError if isinstance(self.scope, str) else TypeError
            raise error(f"Scope must be 'layer' or 'global', not {self.scope!r}")
        object.__setattr__(self, "index_bits", _int("Index bits", self.index_bits, 1, 16))
        if not isinstance(self.connected, bool):
            raise TypeError(f"Connected must be true or false, not {self.connected!r}")

    def to_ir(self, **ctx: Any) -> irs.Unstructured:
        return irs.Unstructured(sparsity=self.sparsity, index_bits=self.index_bits)


@dataclass(frozen=True)
class FilterConfig(SchemeConfig):
    """Prune whole rows of the 2-D weight view (output filters or neurons) by L2 norm."""

    kind: ClassVar[str] = "filter"
    sparsity: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", _fraction("Sparsity", self.sparsity))

    def to_ir(self, **ctx: Any) -> irs.Filter:
        return irs.Filter(sparsity=self.sparsity)


@dataclass(frozen=True)
class ColumnConfig(SchemeConfig):
    """Prune whole columns of the 2-D weight view by L2 norm."""

    kind: ClassVar[str] = "column"
    sparsity: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", _fraction("Sparsity", self.sparsity))

    def to_ir(self, **ctx: Any) -> irs.Column:
        return irs.Column(sparsity=self.sparsity)


@dataclass(frozen=True)
class PatternConfig(SchemeConfig):
    """3x3 kernel patterns plus connectivity pruning (3x3 convolutions only).

    Parameters
    ----------
    library_size : int
        Patterns in the library, from 1 to the number of candidates (56 for ``keep=4``).
    connectivity : float
        Pruned fraction of whole kernels, in ``[0, 1)``.
    keep : int
        Weights kept per kernel, from 1 to 9; the centre is always one of them, so there are
        ``C(8, keep - 1)`` candidate patterns.
    """

    kind: ClassVar[str] = "pattern"
    library_size: int = 8
    connectivity: float = 0.0
    keep: int = 4

    def __post_init__(self) -> None:
        keep = _int("Pattern size", self.keep, 1, 9)
        object.__setattr__(self, "keep", keep)
        object.__setattr__(self, "library_size",
                           _int("Library size", self.library_size, 1, math.comb(8, keep - 1)))
        object.__setattr__(self, "connectivity", _fraction("Connectivity", self.connectivity))

    def candidates(self) -> np.ndarray:
        """The ``(C(8, keep - 1), 3, 3)`` uint8 candidate patterns (centre kept)."""
        return candidate_patterns(self.keep)

    def to_ir(self, *, library: Any = None, **ctx: Any) -> irs.Pattern:
        """The record, with ``library`` (``(K, 3, 3)`` 0/1, see
        :func:`pruning.projections.select_pattern_library`) as its patterns."""
        if library is None:
            raise ValueError("A pattern config needs its library: to_ir(library=...)")
        return irs.Pattern(patterns=tuple(tuple(int(v) for v in np.asarray(p).reshape(9))
                                          for p in library),
                           connectivity=self.connectivity)


@dataclass(frozen=True)
class BCRConfig(SchemeConfig):
    """Block column-row: in each ``block = (rows, cols)`` tile of the 2-D view, prune columns
    (``col_sparsity``) and rows (``row_sparsity``) so the kept weights form a dense sub-block.
    Edge tiles are smaller where the block size does not divide the matrix."""

    kind: ClassVar[str] = "bcr"
    block: tuple[int, int] = (8, 16)
    row_sparsity: float = 0.0
    col_sparsity: float = 0.0

    def __post_init__(self) -> None:
        msg = f"Block must be a pair of positive integers, not {self.block!r}"
        if not isinstance(self.block, (tuple, list)) or len(self.block) != 2 or any(
                isinstance(v, bool) or not isinstance(v, Integral) for v in self.block):
            raise TypeError(msg)
        if min(self.block) < 1:
            raise ValueError(msg)
        object.__setattr__(self, "block", (int(self.block[0]), int(self.block[1])))
        object.__setattr__(self, "row_sparsity", _fraction("Row sparsity", self.row_sparsity))
        object.__setattr__(self, "col_sparsity", _fraction("Column sparsity", self.col_sparsity))

    def to_ir(self, **ctx: Any) -> irs.BCR:
        return irs.BCR(block=self.block, row_ratio=self.row_sparsity,
                       col_ratio=self.col_sparsity)


@dataclass(frozen=True)
class NMConfig(SchemeConfig):
    """At most ``n`` kept in every group of ``m`` consecutive weights along a row of the 2-D view
    (a short last group also keeps at most ``n``)."""

    kind: ClassVar[str] = "nm"
    n: int = 2
    m: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", _int("N", self.n, 1))
        object.__setattr__(self, "m", _int("M", self.m, 1))
        if self.n > self.m:
            raise ValueError(f"N must not exceed M, not {self.n}:{self.m}")

    @property
    def sparsity(self) -> float:
        """The nominal pruned fraction ``1 - n/m``."""
        return 1.0 - self.n / self.m

    def to_ir(self, **ctx: Any) -> irs.NM:
        return irs.NM(n=self.n, m=self.m)


CONFIG_KINDS: dict[str, type[SchemeConfig]] = {
    cls.kind: cls for cls in (DenseConfig, UnstructuredConfig, FilterConfig, ColumnConfig,
                              PatternConfig, BCRConfig, NMConfig)
}
