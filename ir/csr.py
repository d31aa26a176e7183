"""Compressed sparse column / row with relative indices, as in EIE and ESE.

Each major line (a column for CSC, a row for CSR) stores its non-zeros in increasing minor
position. Instead of the absolute position, an entry stores its *relative index*: the number of
zeros skipped since the previous stored entry of the same line (for the first entry, since
position 0). A relative index is ``index_bits`` wide, so it is at most ``M = 2**index_bits - 1``;
a longer run of zeros is broken by *padding entries* (value 0, relative index ``M``), each
standing for the zero at the position right after its ``M`` skipped zeros. Zero weights are never
stored otherwise, so ``values`` holds exactly the non-zeros of the matrix plus the padding.

Absolute positions follow from ``pos[0] = rel[0]`` and ``pos[k] = pos[k - 1] + rel[k] + 1``
within a line. ``encode_csc_lanes`` splits the rows across ``P`` lanes (lane ``p`` owns rows
``p, p + P, ...``) and encodes each lane's rows as their own CSC matrix, as EIE's processing
elements do.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = ["CSCMatrix", "CSRMatrix", "CSCLanes", "encode_csc", "encode_csr", "encode_csc_lanes"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_index_bits(index_bits: Any) -> int:
    msg = f"Index bits must be an integer from 1 to 16, not {index_bits!r}"
    if not _is_int(index_bits):
        raise TypeError(msg)
    if not 1 <= index_bits <= 16:
        raise ValueError(msg)
    return int(index_bits)


def _as_weight(w: Any) -> np.ndarray:
    w = np.asarray(w)
    if w.dtype.kind not in "iuf":
        raise TypeError(f"Weight must be an integer or floating-point array, not dtype {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"Weight must be a 2-D array, not shape {w.shape}")
    return w


def _pointer_bits(value_count: int) -> int:
    return max(1, int(value_count).bit_length())


def _encode_lines(wm: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode the rows of ``wm`` (major x minor): returns ``(values, rel_index, ptr)``."""
    span = 1 << index_bits                       # a padding entry covers M zeros + itself
    major, minor = np.nonzero(wm)                # sorted by major, then minor
    first = np.ones(len(major), dtype=bool)
    first[1:] = major[1:] != major[:-1]
    prev = np.full(len(major), -1, dtype=np.int64)
    prev[1:] = minor[:-1]
    prev[first] = -1
    gap = minor - prev - 1
    counts = gap // span + 1                     # padding entries + the entry itself
    end = np.cumsum(counts, dtype=np.int64)
    values = np.zeros(int(end[-1]) if len(end) else 0, dtype=wm.dtype)
    rel = np.full(len(values), span - 1, dtype=np.int64)
    values[end - 1] = wm[major, minor]
    rel[end - 1] = gap % span
    starts = np.searchsorted(major, np.arange(wm.shape[0] + 1))
    ptr = np.concatenate([[0], end])[starts].astype(np.int64)
    return values, rel, ptr


@dataclass(frozen=True, eq=False)
class _RelativeCompressed:
    shape: tuple[int, int]
    rel_index_bits: int
    values: np.ndarray
    rel_index: np.ndarray
    ptr: np.ndarray

    _major: ClassVar[int]

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 2 or min(shape) < 0:
            raise ValueError(f"Shape must be a pair of non-negative integers, not {self.shape!r}")
        bits = _check_index_bits(self.rel_index_bits)
        values = np.asarray(self.values)
        rel = np.asarray(self.rel_index, dtype=np.int64)
        ptr = np.asarray(self.ptr, dtype=np.int64)
        n_lines, n_pos = shape[self._major], shape[1 - self._major]
        if values.ndim != 1 or rel.shape != values.shape:
            raise ValueError("Values and relative indices must be 1-D arrays of the same length")
        if ptr.shape != (n_lines + 1,) or ptr[0] != 0 or ptr[-1] != len(values) \
                or np.any(np.diff(ptr) < 0):
            raise ValueError(f"Pointers must be {n_lines + 1} non-decreasing offsets from 0 to "
                             f"{len(values)}")
        if np.any(rel < 0) or np.any(rel >= 1 << bits):
            raise ValueError(f"Relative indices must be from 0 to {(1 << bits) - 1}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "rel_index_bits", bits)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "rel_index", rel)
        object.__setattr__(self, "ptr", ptr)
        if np.any(self.absolute_index() >= n_pos):
            raise ValueError(f"Relative indices run past the end of a line of length {n_pos}")

    @property
    def value_count(self) -> int:
        """Stored values, padding entries included."""
        return len(self.values)

    @property
    def padding_count(self) -> int:
        """Stored padding entries (stored values equal to zero)."""
        return int(np.count_nonzero(self.values == 0))

    @property
    def pointer_bits(self) -> int:
        """Width of one pointer: ``max(1, ceil(log2(value_count + 1)))``."""
        return _pointer_bits(self.value_count)

    @property
    def index_bits(self) -> int:
        """Metadata bits: ``value_count * rel_index_bits + len(ptr) * pointer_bits``."""
        return self.value_count * self.rel_index_bits + len(self.ptr) * self.pointer_bits

    def line_index(self) -> np.ndarray:
        """Major index (column for CSC, row for CSR) of every stored entry, int64."""
        return np.repeat(np.arange(len(self.ptr) - 1, dtype=np.int64), np.diff(self.ptr))

    def absolute_index(self) -> np.ndarray:
        """Absolute minor index (row for CSC, column for CSR) of every stored entry, int64."""
        steps = np.cumsum(self.rel_index + 1)
        base = np.concatenate([[0], steps])[self.ptr[:-1]]
        return steps - np.repeat(base, np.diff(self.ptr)) - 1

    def decode(self) -> np.ndarray:
        """The dense matrix, of ``shape`` and the dtype of ``values``."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        idx = (self.line_index(), self.absolute_index())
        out[idx if self._major == 0 else idx[::-1]] = self.values
        return out


class CSCMatrix(_RelativeCompressed):
    """A matrix in compressed sparse column form with relative row indices.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the dense matrix.
    rel_index_bits : int
        Width of one relative index, from 1 to 16.
    values : numpy.ndarray
        1-D, dtype of the encoded matrix, length ``value_count``. Column ``j`` owns
        ``values[ptr[j]:ptr[j + 1]]`` in increasing row order; padding entries are 0, every other
        entry is non-zero.
    rel_index : numpy.ndarray
        1-D int64, same length as ``values``, each in ``[0, 2**rel_index_bits - 1]``: zeros
        skipped in the column since the previous entry (first entry: since row 0), so that
        ``row[k] = row[k - 1] + rel_index[k] + 1`` with ``row[-1] = -1`` in each column.
    ptr : numpy.ndarray
        1-D int64 of length ``cols + 1``, non-decreasing, ``ptr[0] == 0``,
        ``ptr[cols] == value_count``.

    Notes
    -----
    ``index_bits = value_count * rel_index_bits + (cols + 1) * pointer_bits`` with
    ``pointer_bits = max(1, ceil(log2(value_count + 1)))``.
    """

    _major = 1


class CSRMatrix(_RelativeCompressed):
    """A matrix in compressed sparse row form with relative column indices.

    The same layout as :class:`CSCMatrix` with rows and columns exchanged: row ``i`` owns
    ``values[ptr[i]:ptr[i + 1]]`` in increasing column order, ``rel_index`` counts zeros skipped
    in the row, and ``ptr`` has length ``rows + 1``.

    Notes
    -----
    ``index_bits = value_count * rel_index_bits + (rows + 1) * pointer_bits`` with
    ``pointer_bits = max(1, ceil(log2(value_count + 1)))``.
    """

    _major = 0


def encode_csc(w: Any, index_bits: int = 4) -> CSCMatrix:
    """Encode a 2-D integer or float matrix as :class:`CSCMatrix` (dtype kept).

    ``index_bits`` (1 to 16) is the width of one relative row index.
    """
    bits = _check_index_bits(index_bits)
    w = _as_weight(w)
    values, rel, ptr = _encode_lines(w.T, bits)
    return CSCMatrix(w.shape, bits, values, rel, ptr)


def encode_csr(w: Any, index_bits: int = 4) -> CSRMatrix:
    """Encode a 2-D integer or float matrix as :class:`CSRMatrix` (dtype kept).

    ``index_bits`` (1 to 16) is the width of one relative column index.
    """
    bits = _check_index_bits(index_bits)
    w = _as_weight(w)
    values, rel, ptr = _encode_lines(w, bits)
    return CSRMatrix(w.shape, bits, values, rel, ptr)


@dataclass(frozen=True, eq=False)
class CSCLanes:
    """A matrix whose rows are interleaved over ``P`` lanes, each lane in CSC form.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the dense matrix.
    lane_matrices : tuple of CSCMatrix
        ``P`` matrices; lane ``p`` holds rows ``p, p + P, p + 2P, ...`` of the matrix, so its
        shape is ``(len(range(p, rows, P)), cols)`` and its relative indices count lane rows:
        lane row ``r`` is matrix row ``r * P + p``. Each lane has its own ``ptr`` (length
        ``cols + 1``), so the lanes can be read from separate memories.

    Notes
    -----
    ``value_count`` and ``index_bits`` are the sums over the lanes.
    """

    shape: tuple[int, int]
    lane_matrices: tuple[CSCMatrix, ...]

    @property
    def lanes(self) -> int:
        """Number of lanes ``P``."""
        return len(self.lane_matrices)

    @property
    def lane_value_counts(self) -> np.ndarray:
        """Stored values (padding included) per lane, int64: the lanes' work."""
        return np.array([m.value_count for m in self.lane_matrices], dtype=np.int64)

    @property
    def value_count(self) -> int:
        """Stored values over all lanes, padding included."""
        return int(self.lane_value_counts.sum())

    @property
    def index_bits(self) -> int:
        """Metadata bits over all lanes: the sum of each lane's ``index_bits``."""
        return sum(m.index_bits for m in self.lane_matrices)

    def decode(self) -> np.ndarray:
        """The dense matrix, of ``shape`` and the lanes' value dtype."""
        dtype = self.lane_matrices[0].values.dtype
        out = np.zeros(self.shape, dtype=dtype)
        for p, m in enumerate(self.lane_matrices):
            out[p::self.lanes] = m.decode()
        return out


def encode_csc_lanes(w: Any, lanes: int, index_bits: int = 4) -> CSCLanes:
    """Split the rows of ``w`` over ``lanes`` lanes (row ``r`` to lane ``r % lanes``) and encode
    each lane's rows as a :class:`CSCMatrix` with ``index_bits``-wide relative indices."""
    if not _is_int(lanes) or lanes < 1:
        raise (TypeError if not _is_int(lanes) else ValueError)(
            f"Lanes must be a positive integer, not {lanes!r}")
    bits = _check_index_bits(index_bits)
    w = _as_weight(w)
    lanes = int(lanes)
    return CSCLanes(w.shape, tuple(encode_csc(w[p::lanes], bits) for p in range(lanes)))
