"""3x3 kernel patterns (PatDNN) and the filter-kernel-weight (FKW) encoding.

Kernel positions are numbered row-major, ``pos = 3 * row + col`` (the centre is 4). A *pattern*
is a ``3 x 3`` 0/1 array; a *library* is a ``(K, 3, 3)`` uint8 array of distinct patterns that all
keep the same number ``n`` of positions; pattern ids are library indices. In a pattern-pruned
convolution weight ``(O, I, 3, 3)`` (``I`` = input channels per group) every kernel is either all
pruned (connectivity pruning) or keeps exactly one library pattern.
"""

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

__all__ = ["PatternConv", "candidate_patterns", "match_pattern", "encode_pattern",
           "pattern_violations"]

_WEIGHTS = 1 << np.arange(9, dtype=np.int64)   # kernel mask -> 9-bit code, bit = position


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _clog2(n: int) -> int:
    """Bits to index ``range(n)``: ``ceil(log2(n))``, 0 for ``n <= 1``."""
    return max(int(n) - 1, 0).bit_length()


def candidate_patterns(k: int = 4, keep_centre: bool = True) -> np.ndarray:
    """All 3x3 patterns keeping ``k`` positions, as a ``(P, 3, 3)`` uint8 library.

    With ``keep_centre`` only patterns keeping the centre are listed (``C(8, k - 1)`` of them, 56
    for ``k = 4``), else all ``C(9, k)``. Order: lexicographic in the increasing tuple of kept
    positions, so for ``k = 4`` the first is ``{0, 1, 2, 4}`` and the last ``{4, 6, 7, 8}``.
    """
    msg = f"Pattern size must be an integer from 1 to 9, not {k!r}"
    if not _is_int(k):
        raise TypeError(msg)
    if not 1 <= k <= 9:
        raise ValueError(msg)
    if not isinstance(keep_centre, bool):
        raise TypeError(f"Keep centre must be a bool, not {keep_centre!r}")
    combos = [c for c in combinations(range(9), int(k)) if 4 in c or not keep_centre]
    out = np.zeros((len(combos), 9), dtype=np.uint8)
    for p, c in enumerate(combos):
        out[p, list(c)] = 1
    return out.reshape(-1, 3, 3)


def _as_01(a: Any, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biu":
        raise TypeError(f"{what} must be a boolean or 0/1 integer array, not dtype {a.dtype}")
    if a.dtype.kind != "b" and np.any((a != 0) & (a != 1)):
        raise ValueError(f"{what} must contain only 0 and 1")
    return a.astype(np.uint8)


def _as_library(library: Any) -> np.ndarray:
    lib = _as_01(library, "Pattern library")
    if lib.ndim != 3 or lib.shape[1:] != (3, 3) or lib.shape[0] < 1:
        raise ValueError(f"Pattern library must have shape (K, 3, 3) with K >= 1, not {lib.shape}")
    sizes = lib.reshape(len(lib), 9).sum(axis=1)
    if sizes[0] == 0 or np.any(sizes != sizes[0]):
        raise ValueError("Pattern library patterns must all keep the same, non-zero number of "
                         f"positions, not {sorted(set(sizes.tolist()))}")
    codes = lib.reshape(len(lib), 9).astype(np.int64) @ _WEIGHTS
    if len(np.unique(codes)) != len(codes):
        raise ValueError("Pattern library patterns must be distinct")
    return lib


def _match_table(lib: np.ndarray, subset: bool) -> np.ndarray:
    """Pattern id for every 9-bit kernel-mask code (-1: none, and for the all-zero mask)."""
    codes = lib.reshape(len(lib), 9).astype(np.int64) @ _WEIGHTS
    allc = np.arange(512, dtype=np.int64)[:, None]
    hit = (allc & ~codes[None, :]) == 0 if subset else allc == codes[None, :]
    table = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    table[0] = -1
    return table


def match_pattern(kernel_mask: Any, library: Any, subset: bool = False) -> int:
    """Id of the library pattern equal to the 3x3 ``kernel_mask``, or -1 if none is.

    With ``subset``, the lowest id whose pattern contains every kept position of the mask. An
    all-zero mask (a pruned kernel) gives -1.
    """
    lib = _as_library(library)
    m = _as_01(kernel_mask, "Kernel mask")
    if m.shape != (3, 3):
        raise ValueError(f"Kernel mask must have shape (3, 3), not {m.shape}")
    return int(_match_table(lib, subset)[int(m.reshape(9).astype(np.int64) @ _WEIGHTS)])


def _kernel_ids(mask4d: np.ndarray, lib: np.ndarray, subset: bool) -> np.ndarray:
    codes = mask4d.reshape(*mask4d.shape[:2], 9).astype(np.int64) @ _WEIGHTS
    return _match_table(lib, subset)[codes]


def _as_kernels(a: Any, what: str) -> np.ndarray:
    if a.ndim != 4 or a.shape[2:] != (3, 3):
        raise ValueError(f"{what} must have shape (O, I, 3, 3), not {a.shape}")
    return a


def pattern_violations(mask4d: Any, library: Any) -> list[tuple[int, int]]:
    """Kernels ``(filter, channel)``, row-major, of the ``(O, I, 3, 3)`` boolean or 0/1 mask that
    keep something but do not keep exactly one library pattern."""
    lib = _as_library(library)
    mask4d = _as_kernels(_as_01(mask4d, "Mask"), "Mask")
    ids = _kernel_ids(mask4d, lib, subset=False)
    bad = (ids < 0) & mask4d.reshape(*mask4d.shape[:2], 9).any(axis=2)
    return [(int(o), int(i)) for o, i in np.argwhere(bad)]


@dataclass(frozen=True, eq=False)
class PatternConv:
    """A pattern-pruned 3x3 convolution weight in FKW form.

    Filters are stored in the order ``filter_order`` (kept-kernel count descending, ties by
    filter index, for load balance); within a filter, kept kernels are sorted by pattern id, then
    input channel. All index arrays are int64.

    Parameters
    ----------
    shape : tuple of int
        ``(O, I, 3, 3)`` of the dense weight.
    library : numpy.ndarray
        ``(K, 3, 3)`` uint8 pattern library, each pattern keeping ``n`` positions.
    filter_order : numpy.ndarray
        ``(O,)`` permutation: stored filter ``f`` is output filter ``filter_order[f]``.
    kernel_ptr : numpy.ndarray
        ``(O + 1,)`` offsets: stored filter ``f`` owns kernels ``kernel_ptr[f]:kernel_ptr[f + 1]``.
    channel : numpy.ndarray
        ``(n_kernels,)`` input channel of each kept kernel.
    pattern_id : numpy.ndarray
        ``(n_kernels,)`` library index of each kept kernel's pattern.
    values : numpy.ndarray
        ``(n_kernels, n)``, dtype of the weight: the kernel's weights at its pattern's kept
        positions in increasing position (row-major) order; ``positions[pattern_id[k]]`` gives
        those positions.

    Notes
    -----
    ``index_bits = n_kernels * (clog2(K) + clog2(I)) + (O + 1) * max(1, bitlen(n_kernels))
    + O * clog2(O)``: per kept kernel its pattern id and input channel, per filter one kernel
    offset, and the filter permutation; ``clog2(n) = ceil(log2(n))`` (0 for ``n = 1``),
    ``bitlen(n) = ceil(log2(n + 1))``.
    """

    shape: tuple[int, int, int, int]
    library: np.ndarray
    filter_order: np.ndarray
    kernel_ptr: np.ndarray
    channel: np.ndarray
    pattern_id: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "library", _as_library(self.library))
        for name in ("filter_order", "kernel_ptr", "channel", "pattern_id"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        object.__setattr__(self, "values", np.asarray(self.values))
        if len(self.shape) != 4 or self.shape[2:] != (3, 3):
            raise ValueError(f"Shape must be (O, I, 3, 3), not {self.shape}")
        o, i = self.shape[:2]
        n = len(self.channel)
        if not np.array_equal(np.sort(self.filter_order), np.arange(o)):
            raise ValueError(f"Filter order must be a permutation of range({o})")
        if self.kernel_ptr.shape != (o + 1,) or self.kernel_ptr[0] != 0 \
                or self.kernel_ptr[-1] != n or np.any(np.diff(self.kernel_ptr) < 0):
            raise ValueError(f"Kernel pointers must be {o + 1} non-decreasing offsets from 0 to {n}")
        if self.pattern_id.shape != (n,) or np.any(self.pattern_id < 0) \
                or np.any(self.pattern_id >= len(self.library)):
            raise ValueError(f"Pattern ids must be {n} library indices")
        if np.any(self.channel < 0) or np.any(self.channel >= i):
            raise ValueError(f"Channels must be from 0 to {i - 1}")
        if self.values.shape != (n, self.positions.shape[1]):
            raise ValueError(f"Values must have shape {(n, self.positions.shape[1])}")

    @property
    def positions(self) -> np.ndarray:
        """``(K, n)`` int64: kept positions (``3 * row + col``) of each pattern, increasing."""
        lib = self.library.reshape(len(self.library), 9)
        return np.nonzero(lib)[1].reshape(len(lib), -1).astype(np.int64)

    @property
    def kernel_count(self) -> int:
        """Kept (not connectivity-pruned) kernels."""
        return len(self.channel)

    @property
    def pattern_counts(self) -> np.ndarray:
        """``(O, K)`` int64: kept kernels per stored filter (``filter_order``) and pattern."""
        filt = np.repeat(np.arange(self.shape[0]), np.diff(self.kernel_ptr))
        counts = np.zeros((self.shape[0], len(self.library)), dtype=np.int64)
        np.add.at(counts, (filt, self.pattern_id), 1)
        return counts

    @property
    def value_count(self) -> int:
        """Stored values: ``n_kernels * n``."""
        return int(self.values.size)

    @property
    def index_bits(self) -> int:
        """Metadata bits; see the class notes for the formula."""
        o, i = self.shape[:2]
        n = self.kernel_count
        return (n * (_clog2(len(self.library)) + _clog2(i)) + (o + 1) * max(1, n.bit_length())
                + o * _clog2(o))

    def decode(self) -> np.ndarray:
        """The dense ``(O, I, 3, 3)`` weight, of the dtype of ``values``."""
        o, i = self.shape[:2]
        filt = self.filter_order[np.repeat(np.arange(o), np.diff(self.kernel_ptr))]
        out = np.zeros((o, i, 9), dtype=self.values.dtype)
        out[filt[:, None], self.channel[:, None], self.positions[self.pattern_id]] = self.values
        return out.reshape(self.shape)


def encode_pattern(w: Any, library: Any, mask: Any = None) -> PatternConv:
    """Encode an ``(O, I, 3, 3)`` integer or float weight in FKW form (dtype kept).

    With ``mask`` (boolean or 0/1, shape of ``w``), every kernel mask must be all-zero or equal
    to a library pattern, and ``w`` must be zero outside the mask. Without it, each kernel with a
    non-zero weight takes the lowest-id pattern containing its non-zeros.

    Raises
    ------
    ValueError
        Naming the first ``(filter, channel)`` (row-major) whose mask matches no library pattern
        or whose weight is non-zero outside the mask.
    """
    lib = _as_library(library)
    w = np.asarray(w)
    if w.dtype.kind not in "iuf":
        raise TypeError(f"Weight must be an integer or floating-point array, not dtype {w.dtype}")
    _as_kernels(w, "Weight")
    o, i = w.shape[:2]
    if mask is None:
        mask, subset = (w != 0), True
    else:
        mask, subset = _as_01(mask, "Mask").astype(bool), False
        if mask.shape != w.shape:
            raise ValueError(f"Mask shape {mask.shape} does not match weight shape {w.shape}")
        outside = np.argwhere(((w != 0) & ~mask).reshape(o, i, 9).any(axis=2))
        if len(outside):
            f, c = (int(v) for v in outside[0])
            raise ValueError(f"Weight is non-zero outside the mask in kernel (filter {f}, "
                             f"channel {c})")
    ids = _kernel_ids(mask, lib, subset)
    kept = mask.reshape(o, i, 9).any(axis=2)
    bad = np.argwhere(kept & (ids < 0))
    if len(bad):
        f, c = (int(v) for v in bad[0])
        raise ValueError(f"Kernel (filter {f}, channel {c}) matches no library pattern")
    per_filter = kept.sum(axis=1)
    filter_order = np.argsort(-per_filter, kind="stable")
    rank = np.empty(o, dtype=np.int64)
    rank[filter_order] = np.arange(o)
    filt, chan = np.nonzero(kept)
    pid = ids[filt, chan]
    order = np.lexsort((chan, pid, rank[filt]))
    filt, chan, pid = filt[order], chan[order], pid[order]
    positions = np.nonzero(lib.reshape(len(lib), 9))[1].reshape(len(lib), -1)
    values = w.reshape(o, i, 9)[filt[:, None], chan[:, None], positions[pid]]
    kernel_ptr = np.concatenate([[0], np.cumsum(per_filter[filter_order])])
    return PatternConv(w.shape, lib, filter_order, kernel_ptr, chan, pid, values)
