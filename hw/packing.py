"""Memory images: lane values and fields packed into the engines' memory words, and back.

numpy only (no amaranth), so that the cocotb benches, which run inside every simulator process,
start without importing the hardware generators. :mod:`hw.dense`, :mod:`hw.bcr` and
:mod:`hw.unstructured` re-export these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["pack_words", "unpack_words", "pack_fields", "pack_entry_words"]


def _check_int(value: Any, what: str, lo: int, hi: int | None = None) -> int:
    """Return ``value`` if it is an int in ``[lo, hi]``; raise TypeError/ValueError otherwise."""
    if hi is None:
        if lo == 1:
            msg = f"{what} must be a positive integer, not {value!r}"
        else:
            msg = f"{what} must be an integer of at least {lo}, not {value!r}"
    else:
        msg = f"{what} must be an integer between {lo} and {hi}, not {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(msg)
    if value < lo or (hi is not None and value > hi):
        raise ValueError(msg)
    return int(value)


def pack_words(values: np.ndarray | Sequence[Sequence[int]], bits: int) -> list[int]:
    """Concatenate lane values into memory words, lane 0 in the least significant bits.

    Parameters
    ----------
    values : array-like of int, shape ``(n, lanes)``
        Signed lane values; each must fit in ``bits`` bits (two's complement).
    bits : int
        Width of one lane field.

    Returns
    -------
    list of int
        ``n`` non-negative words of ``lanes * bits`` bits.
    """
    bits = _check_int(bits, "Field width", 1)
    arr = np.asarray(values, dtype=np.int64)
    if arr.ndim != 2:
        raise ValueError(f"Lane values must be 2-dimensional, not of shape {arr.shape}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"Lane values must lie in [{lo}, {hi}] for {bits}-bit fields")
    mask = (1 << bits) - 1
    # a 64-bit mask does not fit int64 (arr & mask overflowed): Python ints for that width
    fields = (arr & mask).tolist() if bits < 64 else \
        [[v & mask for v in row] for row in arr.tolist()]
    words = []
    for row in fields:
        word = 0
        for p in reversed(range(len(row))):
            word = (word << bits) | row[p]
        words.append(word)
    return words


def unpack_words(words: Iterable[int], bits: int, lanes: int) -> np.ndarray:
    """Split memory words into signed lane values (inverse of :func:`pack_words`).

    Returns
    -------
    numpy.ndarray
        ``int64`` array of shape ``(n, lanes)``.
    """
    bits = _check_int(bits, "Field width", 1, 64)
    lanes = _check_int(lanes, "Lanes", 1)
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    out = []
    for word in words:
        word = int(word)
        row = []
        for _ in range(lanes):
            f = word & mask
            row.append(f - (1 << bits) if f & sign else f)
            word >>= bits
        out.append(row)
    return np.array(out, dtype=np.int64).reshape(-1, lanes)


def pack_fields(values: Any, widths: Any) -> list[int]:
    """Concatenate unsigned fields into words, field 0 in the least significant bits.

    Parameters
    ----------
    values : array-like of int, shape ``(n, fields)``
    widths : int or sequence of int
        Width of every field, or of each field.

    Raises
    ------
    ValueError
        If a value is negative or does not fit its field.
    """
    arr = np.asarray(values, dtype=np.int64)
    if arr.ndim != 2:
        raise ValueError(f"Field values must be 2-dimensional, not of shape {arr.shape}")
    ws = [int(widths)] * arr.shape[1] if np.ndim(widths) == 0 else [int(w) for w in widths]
    if len(ws) != arr.shape[1]:
        raise ValueError(f"{len(ws)} field widths do not match {arr.shape[1]} fields")
    words = []
    for row in arr.tolist():
        word, shift = 0, 0
        for v, w in zip(row, ws, strict=True):
            if v < 0 or v >= 1 << w:
                raise ValueError(f"Field value {v} does not fit in {w} unsigned bits")
            word |= v << shift
            shift += w
        words.append(word)
    return words


def pack_entry_words(values: Any, rel_index: Any, weight_bits: int, index_bits: int
                     ) -> list[int]:
    """Entry words: ``value`` (two's complement, ``weight_bits``) in the low bits, then
    ``rel`` (unsigned, ``index_bits``).

    Raises
    ------
    ValueError
        If a value or index does not fit.
    """
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    r = np.asarray(rel_index, dtype=np.int64).reshape(-1)
    if v.shape != r.shape:
        raise ValueError(f"{len(v)} values do not match {len(r)} relative indices")
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"Entry values must lie in [{lo}, {hi}] for {weight_bits} bits")
    if r.size and (r.min() < 0 or r.max() >= 1 << index_bits):
        raise ValueError(f"Relative indices must lie in [0, {(1 << index_bits) - 1}] for "
                         f"{index_bits} bits")
    mask = (1 << weight_bits) - 1
    return [(int(a) & mask) | (int(b) << weight_bits) for a, b in zip(v, r, strict=True)]
