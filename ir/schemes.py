"""Sparsity-scheme records: what structure a layer's mask is declared to have.

A scheme is a small frozen dataclass: its parameters, its JSON form (``{"kind": ..., ...}``) and
``violation(mask2d)``, which says in words how a mask breaks the structure (``None`` when it does
not). The bundle loader uses it to refuse a mask that does not match its declared scheme; the
pruning package uses the same records as its per-layer scheme configs.

All checks work on the *2-D weight view* of a tensor (see :func:`matrix_view`): ``conv2d`` as
``out x (in/groups * kh * kw)``, ``linear`` as is, and each RNN weight (``weight_ih``,
``weight_hh``, gates stacked as PyTorch does) as its own matrix. The pattern scheme alone looks at
the 4-D kernels of a 3x3 convolution.

Ratios in scheme parameters are *pruned fractions* in ``[0, 1)`` (0.75 = three quarters removed).
They document the target; the structure check is what is enforced, since edge blocks and rounding
make exact counts differ from the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "Scheme", "Dense", "Unstructured", "Filter", "Column", "NM", "BCR", "Pattern",
    "SCHEME_KINDS", "scheme_from_json", "matrix_view", "SchemeError",
]


class SchemeError(ValueError):
    """A scheme record whose parameters are not allowed."""


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SchemeError(f"{name} must be a number in [0, 1), not {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise SchemeError(f"{name} must be a number in [0, 1), not {value!r}")
    return float(value)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SchemeError(f"{name} must be a positive integer, not {value!r}")
    return value


def matrix_view(weight: np.ndarray) -> np.ndarray:
    """Return the 2-D weight view: ``weight.reshape(weight.shape[0], -1)``.

    For ``conv2d`` this is ``out x (in/groups * kh * kw)`` in PyTorch's memory order; 2-D
    tensors are returned unchanged.
    """
    if weight.ndim == 2:
        return weight
    return weight.reshape(weight.shape[0], -1) if weight.shape[0] else \
        weight.reshape(0, int(np.prod(weight.shape[1:])))


@dataclass(frozen=True)
class Scheme:
    """Base class of the scheme records. ``kind`` names the scheme in JSON."""

    kind: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON record: ``{"kind": kind, **parameters}``."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in (f.name for f in fields(self)):
            value = getattr(self, name)
            out[name] = [list(v) for v in value] if name == "patterns" else (
                list(value) if isinstance(value, tuple) else value)
        return out

    def violation(self, mask: np.ndarray) -> str | None:
        """Say how ``mask`` (0/1, the 2-D view unless stated) breaks the scheme, or ``None``."""
        return None


@dataclass(frozen=True)
class Dense(Scheme):
    """No pruning: every weight is kept."""

    kind: ClassVar[str] = "dense"

    def violation(self, mask: np.ndarray) -> str | None:
        missing = int(mask.size - np.count_nonzero(mask))
        return None if missing == 0 else f"{missing} weights are pruned in a dense layer"


@dataclass(frozen=True)
class Unstructured(Scheme):
    """Any mask. Stored as CSR/CSC with relative indices of ``index_bits`` bits."""

    kind: ClassVar[str] = "unstructured"
    sparsity: float = 0.0
    index_bits: int = 4

    def __post_init__(self) -> None:
        _check_fraction("Sparsity", self.sparsity)
        if isinstance(self.index_bits, bool) or not isinstance(self.index_bits, int) \
                or not 1 <= self.index_bits <= 16:
            raise SchemeError(f"Index bits must be an integer from 1 to 16, not {self.index_bits!r}")


@dataclass(frozen=True)
class Filter(Scheme):
    """Whole rows of the 2-D view (output filters / neurons) kept or pruned."""

    kind: ClassVar[str] = "filter"
    sparsity: float = 0.0

    def __post_init__(self) -> None:
        _check_fraction("Sparsity", self.sparsity)

    def violation(self, mask: np.ndarray) -> str | None:
        m = matrix_view(mask).astype(bool)
        bad = np.flatnonzero(m.any(axis=1) & ~m.all(axis=1))
        return None if bad.size == 0 else f"row {int(bad[0])} is partly pruned"


@dataclass(frozen=True)
class Column(Scheme):
    """Whole columns of the 2-D view kept or pruned."""

    kind: ClassVar[str] = "column"
    sparsity: float = 0.0

    def __post_init__(self) -> None:
        _check_fraction("Sparsity", self.sparsity)

    def violation(self, mask: np.ndarray) -> str | None:
        m = matrix_view(mask).astype(bool)
        bad = np.flatnonzero(m.any(axis=0) & ~m.all(axis=0))
        return None if bad.size == 0 else f"column {int(bad[0])} is partly pruned"


@dataclass(frozen=True)
class NM(Scheme):
    """At most ``n`` kept in every group of ``m`` consecutive weights along a row of the 2-D view.

    A row whose length is not a multiple of ``m`` ends with a shorter group, also limited to ``n``.
    """

    kind: ClassVar[str] = "nm"
    n: int = 2
    m: int = 4

    def __post_init__(self) -> None:
        _check_positive_int("N", self.n)
        _check_positive_int("M", self.m)
        if self.n > self.m:
            raise SchemeError(f"N must not exceed M, not {self.n}:{self.m}")

    def violation(self, mask: np.ndarray) -> str | None:
        m = matrix_view(mask).astype(np.int64)
        rows, cols = m.shape
        # group sums by cumulative sums at the group starts: no padding to a multiple of m,
        # which for a large m (a manifest may say m = 10**12) would not fit in memory
        starts = np.arange(0, cols, min(self.m, cols), dtype=np.int64) if cols else \
            np.zeros(0, dtype=np.int64)
        counts = np.add.reduceat(m, starts, axis=1) if cols and rows else \
            np.zeros((rows, len(starts)), dtype=np.int64)
        bad = np.argwhere(counts > self.n)
        if bad.size == 0:
            return None
        r, g = (int(v) for v in bad[0])
        return f"row {r}, group {g} keeps {int(counts[r, g])} of {self.m}, more than {self.n}"


@dataclass(frozen=True)
class BCR(Scheme):
    """Block column-row: in every block of the 2-D view the kept weights form a full
    (kept rows) x (kept columns) sub-block. Edge blocks are smaller where ``block`` does not divide.
    """

    kind: ClassVar[str] = "bcr"
    block: tuple[int, int] = (8, 16)
    row_ratio: float = 0.0
    col_ratio: float = 0.0

    def __post_init__(self) -> None:
        block = tuple(self.block) if isinstance(self.block, (list, tuple)) else self.block
        if not isinstance(block, tuple) or len(block) != 2:
            raise SchemeError(f"Block must be a pair of positive integers, not {self.block!r}")
        for v in block:
            _check_positive_int("Block size", v)
        object.__setattr__(self, "block", block)
        _check_fraction("Row ratio", self.row_ratio)
        _check_fraction("Column ratio", self.col_ratio)

    def violation(self, mask: np.ndarray) -> str | None:
        from ir.bcr import bcr_violations

        bad = bcr_violations(matrix_view(mask), self.block)
        if not bad:
            return None
        br, bc = bad[0]
        return (f"block ({br}, {bc}) of size {self.block[0]}x{self.block[1]} keeps entries that "
                "are not a full rows x columns product")


@dataclass(frozen=True)
class Pattern(Scheme):
    """3x3 kernel patterns with connectivity pruning.

    ``patterns`` is the library: a tuple of 3x3 0/1 patterns (tuples of 9 ints, row-major), all
    with the same number of ones. Every 3x3 kernel of the weight is either all pruned
    (connectivity) or keeps exactly one library pattern. ``connectivity`` is the pruned fraction
    of kernels.
    """

    kind: ClassVar[str] = "pattern"
    patterns: tuple[tuple[int, ...], ...] = ()
    connectivity: float = 0.0

    def __post_init__(self) -> None:
        try:
            rows = [np.asarray(p).reshape(-1).tolist() for p in self.patterns]
        except (TypeError, ValueError):
            raise SchemeError("Patterns must be a list of 3x3 0/1 patterns") from None
        if not rows:
            raise SchemeError("Patterns must be a non-empty list of 3x3 0/1 patterns")
        for p in rows:      # before any int(): it made 0.9 a 0, 1.7 a 1 and "1" a 1
            if len(p) != 9 or any(isinstance(v, str | bytes) or v not in (0, 1) for v in p):
                raise SchemeError(f"Pattern {list(p)} is not a 3x3 0/1 pattern")
        pats = tuple(tuple(int(v) for v in p) for p in rows)
        if len({sum(p) for p in pats}) != 1 or sum(pats[0]) == 0:
            raise SchemeError("Patterns must all keep the same, non-zero number of weights")
        if len(set(pats)) != len(pats):
            raise SchemeError("Patterns must be distinct")
        object.__setattr__(self, "patterns", pats)
        _check_fraction("Connectivity", self.connectivity)

    def library(self) -> np.ndarray:
        """The library as a ``(K, 3, 3)`` uint8 array."""
        return np.asarray(self.patterns, dtype=np.uint8).reshape(-1, 3, 3)

    def violation(self, mask: np.ndarray) -> str | None:
        if mask.ndim != 4 or mask.shape[2:] != (3, 3):
            return f"pattern pruning needs 3x3 convolution kernels, not shape {list(mask.shape)}"
        from ir.pattern import pattern_violations

        bad = pattern_violations(mask, self.library())
        if not bad:
            return None
        o, i = bad[0]
        return f"kernel (filter {o}, channel {i}) matches no library pattern"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "patterns": [[list(p[0:3]), list(p[3:6]), list(p[6:9])]
                                                for p in self.patterns],
                "connectivity": self.connectivity}


SCHEME_KINDS: dict[str, type[Scheme]] = {
    cls.kind: cls for cls in (Dense, Unstructured, Filter, Column, NM, BCR, Pattern)
}


def scheme_from_json(record: Any) -> Scheme:
    """Build a scheme from its JSON record; :class:`SchemeError` names what is wrong."""
    if not isinstance(record, dict):
        raise SchemeError(f"must be an object with a 'kind', not {type(record).__name__}")
    kind = record.get("kind")
    if not isinstance(kind, str) or kind not in SCHEME_KINDS:
        allowed = ", ".join(sorted(SCHEME_KINDS))
        raise SchemeError(f"unknown scheme kind {kind!r}; allowed: {allowed}")
    cls = SCHEME_KINDS[kind]
    params = {k: v for k, v in record.items() if k != "kind"}
    known = {f.name for f in fields(cls)}
    extra = sorted(set(params) - known)
    if extra:
        allowed = ", ".join(sorted(known)) or "none"
        raise SchemeError(f"unknown parameter {extra[0]!r} for scheme {kind!r}; allowed: {allowed}")
    try:
        return cls(**params)
    except TypeError as exc:  # a wrongly typed parameter that the dataclass itself rejects
        raise SchemeError(str(exc)) from None

