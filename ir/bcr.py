"""Block column-row (BCR) compact form.

A ``rows x cols`` matrix is cut into blocks of ``block = (br, bc)`` (edge blocks are smaller where
``br`` or ``bc`` does not divide). In a block, the *kept rows* are the rows with at least one mask
entry in the block and the *kept columns* likewise; the block is stored as its kept row indices,
kept column indices and the dense ``kept rows x kept columns`` sub-block. Blocks without any mask
entry store nothing. A mask is *BCR* when in every block its entries are exactly the full product
of the kept rows and kept columns (:func:`bcr_violations` lists the blocks where they are not).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BCRMatrix", "encode_bcr", "bcr_violations", "is_bcr_mask"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _clog2(n: int) -> int:
    """Bits to index ``range(n)``: ``ceil(log2(n))``, 0 for ``n <= 1``."""
    return max(int(n) - 1, 0).bit_length()


def _check_block(block: Any) -> tuple[int, int]:
    msg = f"Block must be a pair of positive integers, not {block!r}"
    if not isinstance(block, (tuple, list)) or len(block) != 2 or not all(map(_is_int, block)):
        raise TypeError(msg)
    if min(block) < 1:
        raise ValueError(msg)
    return int(block[0]), int(block[1])


def _as_mask(mask: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype.kind not in "biu":
        raise TypeError(f"Mask must be a boolean or 0/1 integer array, not dtype {mask.dtype}")
    if mask.dtype.kind != "b" and np.any((mask != 0) & (mask != 1)):
        raise ValueError("Mask must contain only 0 and 1")
    if shape is None and mask.ndim != 2:
        raise ValueError(f"Mask must be a 2-D array, not shape {mask.shape}")
    if shape is not None and mask.shape != shape:
        raise ValueError(f"Mask shape {mask.shape} does not match weight shape {shape}")
    return mask.astype(bool)


def _blocked(a: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """``a`` zero-padded to whole blocks, as ``(grid_rows, grid_cols, br, bc)``."""
    (rows, cols), (br, bc) = a.shape, block
    gr, gc = -(-rows // br), -(-cols // bc)
    padded = np.zeros((gr * br, gc * bc), dtype=a.dtype)
    padded[:rows, :cols] = a
    return padded.reshape(gr, br, gc, bc).transpose(0, 2, 1, 3)


def _product(kept_rows: np.ndarray, kept_cols: np.ndarray) -> np.ndarray:
    return kept_rows[..., :, None] & kept_cols[..., None, :]


@dataclass(frozen=True, eq=False)
class BCRMatrix:
    """A matrix in BCR compact form.

    Stored blocks are the blocks with at least one kept entry, in row-major block order; block
    ``k`` covers matrix rows ``block_row[k] * br + [0, br)`` and columns
    ``block_col[k] * bc + [0, bc)``. All index arrays are 1-D int64.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the dense matrix.
    block : tuple of int
        ``(br, bc)``, the block size.
    block_row, block_col : numpy.ndarray
        Block coordinates of each stored block, length ``n_blocks``.
    row_ptr : numpy.ndarray
        Length ``n_blocks + 1``; block ``k``'s kept rows are
        ``row_index[row_ptr[k]:row_ptr[k + 1]]``, increasing, each in ``[0, br)``
        (within the block). At least one per stored block.
    row_index : numpy.ndarray
        Kept row indices of all stored blocks, concatenated.
    col_ptr, col_index : numpy.ndarray
        The same for kept columns, each in ``[0, bc)``.
    value_ptr : numpy.ndarray
        Length ``n_blocks + 1``; ``value_ptr[k + 1] - value_ptr[k] = nr_k * nc_k`` where
        ``nr_k``, ``nc_k`` are block ``k``'s kept row and column counts.
    values : numpy.ndarray
        1-D, dtype of the encoded matrix; ``values[value_ptr[k]:value_ptr[k + 1]]`` is block
        ``k``'s ``nr_k x nc_k`` sub-block in row-major order (it may contain zeros).

    Notes
    -----
    With ``grid = (ceil(rows / br), ceil(cols / bc))`` and ``clog2(n) = ceil(log2(n))`` (0 for
    ``n = 1``), ``index_bits = n_blocks * (clog2(grid[0]) + clog2(grid[1]) + bitlen(br) +
    bitlen(bc)) + len(row_index) * clog2(br) + len(col_index) * clog2(bc)``, ``bitlen(n) =
    floor(log2(n)) + 1``: per stored block its coordinates and its kept row and column counts,
    then one in-block index per kept row and column. Blocks with nothing kept cost nothing;
    ``value_ptr`` follows from the counts and is not counted.
    """

    shape: tuple[int, int]
    block: tuple[int, int]
    block_row: np.ndarray
    block_col: np.ndarray
    row_ptr: np.ndarray
    row_index: np.ndarray
    col_ptr: np.ndarray
    col_index: np.ndarray
    value_ptr: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "block", _check_block(self.block))
        for name in ("block_row", "block_col", "row_ptr", "row_index", "col_ptr", "col_index",
                     "value_ptr"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        n = len(self.block_row)
        if len(self.block_col) != n or any(len(p) != n + 1 for p in
                                           (self.row_ptr, self.col_ptr, self.value_ptr)):
            raise ValueError("Block arrays must have n_blocks entries and pointers n_blocks + 1")
        nr, nc = np.diff(self.row_ptr), np.diff(self.col_ptr)
        if self.row_ptr[-1] != len(self.row_index) or self.col_ptr[-1] != len(self.col_index) \
                or self.value_ptr[-1] != len(self.values) \
                or np.any(np.diff(self.value_ptr) != nr * nc) or np.any(nr < 1) or np.any(nc < 1):
            raise ValueError("Pointers do not match the kept rows, columns and values")
        gr, gc = self.grid
        if np.any(self.block_row >= gr) or np.any(self.block_col >= gc) \
                or np.any(self.block_row < 0) or np.any(self.block_col < 0):
            raise ValueError(f"Block coordinates must lie in the {gr} x {gc} block grid")
        if np.any(self.row_index < 0) or np.any(self.row_index >= self.block[0]) \
                or np.any(self.col_index < 0) or np.any(self.col_index >= self.block[1]):
            raise ValueError(f"Kept indices must lie in a block of {self.block}")

    @property
    def grid(self) -> tuple[int, int]:
        """Blocks per column and per row: ``(ceil(rows / br), ceil(cols / bc))``."""
        return -(-self.shape[0] // self.block[0]), -(-self.shape[1] // self.block[1])

    @property
    def block_count(self) -> int:
        """Stored (non-empty) blocks."""
        return len(self.block_row)

    @property
    def value_count(self) -> int:
        """Stored values: the sum of the sub-block sizes."""
        return len(self.values)

    @property
    def index_bits(self) -> int:
        """Metadata bits; see the class notes for the formula."""
        (gr, gc), (br, bc) = self.grid, self.block
        per_block = _clog2(gr) + _clog2(gc) + br.bit_length() + bc.bit_length()
        return (self.block_count * per_block + len(self.row_index) * _clog2(br)
                + len(self.col_index) * _clog2(bc))

    def blocks(self) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(block_r, block_c, rows_abs, cols_abs, sub)`` per stored block, in order.

        ``rows_abs`` and ``cols_abs`` are absolute matrix indices (int64) of the kept rows and
        columns; ``sub`` is the ``len(rows_abs) x len(cols_abs)`` sub-block (a view of
        ``values``).
        """
        br, bc = self.block
        for k in range(self.block_count):
            r, c = int(self.block_row[k]), int(self.block_col[k])
            rows = r * br + self.row_index[self.row_ptr[k]:self.row_ptr[k + 1]]
            cols = c * bc + self.col_index[self.col_ptr[k]:self.col_ptr[k + 1]]
            sub = self.values[self.value_ptr[k]:self.value_ptr[k + 1]]
            yield r, c, rows, cols, sub.reshape(len(rows), len(cols))

    def decode(self) -> np.ndarray:
        """The dense matrix, of ``shape`` and the dtype of ``values``."""
        (gr, gc), (br, bc) = self.grid, self.block
        kept_rows = np.zeros((gr, gc, br), dtype=bool)
        kept_cols = np.zeros((gr, gc, bc), dtype=bool)
        nr, nc = np.diff(self.row_ptr), np.diff(self.col_ptr)
        kept_rows[np.repeat(self.block_row, nr), np.repeat(self.block_col, nr),
                  self.row_index] = True
        kept_cols[np.repeat(self.block_row, nc), np.repeat(self.block_col, nc),
                  self.col_index] = True
        dense = np.zeros((gr, gc, br, bc), dtype=self.values.dtype)
        dense[_product(kept_rows, kept_cols)] = self.values
        out = dense.transpose(0, 2, 1, 3).reshape(gr * br, gc * bc)
        return np.ascontiguousarray(out[:self.shape[0], :self.shape[1]])


def encode_bcr(w: Any, block: tuple[int, int], mask: Any = None) -> BCRMatrix:
    """Encode a 2-D integer or float matrix in BCR compact form (dtype kept).

    ``mask`` (boolean or 0/1, shape of ``w``) defaults to ``w != 0``; it decides the kept rows
    and columns of each block, and ``w`` must be zero outside it. The mask need not be BCR: each
    block keeps the full product of its kept rows and columns, zeros included.
    """
    block = _check_block(block)
    w = np.asarray(w)
    if w.dtype.kind not in "iuf":
        raise TypeError(f"Weight must be an integer or floating-point array, not dtype {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"Weight must be a 2-D array, not shape {w.shape}")
    mask = (w != 0) if mask is None else _as_mask(mask, w.shape)
    outside = np.argwhere((w != 0) & ~mask)
    if len(outside):
        r, c = (int(v) for v in outside[0])
        raise ValueError(f"Weight is non-zero outside the mask at ({r}, {c})")
    mb = _blocked(mask, block)
    kept_rows, kept_cols = mb.any(axis=3), mb.any(axis=2)
    block_row, block_col = np.nonzero(kept_rows.any(axis=2))
    nr = kept_rows.sum(axis=2)[block_row, block_col]
    nc = kept_cols.sum(axis=2)[block_row, block_col]

    def offsets(counts: np.ndarray) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    return BCRMatrix(
        shape=w.shape, block=block, block_row=block_row, block_col=block_col,
        row_ptr=offsets(nr), row_index=np.nonzero(kept_rows)[2],
        col_ptr=offsets(nc), col_index=np.nonzero(kept_cols)[2],
        value_ptr=offsets(nr * nc), values=_blocked(w, block)[_product(kept_rows, kept_cols)])


def bcr_violations(mask: Any, block: tuple[int, int]) -> list[tuple[int, int]]:
    """Blocks ``(block_r, block_c)``, row-major, whose mask entries are not the full product of
    their kept rows and kept columns. ``mask`` is a 2-D boolean or 0/1 array."""
    block = _check_block(block)
    mb = _blocked(_as_mask(mask), block)
    full = _product(mb.any(axis=3), mb.any(axis=2))
    return [(int(r), int(c)) for r, c in np.argwhere((full != mb).any(axis=(2, 3)))]


def is_bcr_mask(mask: Any, block: tuple[int, int]) -> bool:
    """Whether every block of the 2-D ``mask`` keeps a full rows x columns product."""
    return not bcr_violations(mask, block)
