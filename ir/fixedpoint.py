"""Fixed-point number rules shared by every golden-model layer, engine and generated kernel.

All integer-path functions use integer arithmetic only (numpy ``int64``/``uint64``); floats
appear only at the float/integer boundary (:func:`quantize`, :func:`dequantize`,
:func:`quantize_multiplier`) and when a lookup table's contents are computed once (a ROM).

Exact rules
-----------
Value ranges
    A ``b``-bit *input* is accepted anywhere in its two's complement range
    ``[-2**(b-1), 2**(b-1) - 1]`` (unsigned: ``[0, 2**b - 1]``). Every value this module
    *produces* at ``b`` signed bits is in the symmetric range ``[-(2**(b-1) - 1), 2**(b-1) - 1]``
    (the code ``-2**(b-1)`` is never produced, so negation never overflows).
Rounding of the integer path (:func:`round_shift`)
    A right shift by ``s > 0`` is ``(x + 2**(s-1)) >> s`` with ``>>`` an arithmetic shift
    (floor): round half *up*, towards +inf, for negatives too (``-2.5 -> -2``, ``-2.6 -> -3``,
    ``2.5 -> 3``). ``s == 0`` is the identity; ``s < 0`` is an exact left shift by ``-s``.
Saturation (:func:`saturate`)
    Clip to the symmetric signed range above, or to ``[0, 2**b - 1]`` when unsigned.
Quantization (:func:`quantize`)
    ``q = saturate(rint(x / scale), bits)`` in float64, ``rint`` rounding half to even (as
    ``numpy.rint`` and ``torch.round``); NaN is rejected, +-inf saturate.
Requantization (:func:`requantize`)
    ``saturate(round_shift(acc * multiplier, shift), out_bits)`` with ``acc`` in int32 range,
    ``0 <= multiplier < 2**15`` (``MULTIPLIER_BITS`` = 15, so it fits a signed 16-bit DSP
    operand) and ``0 <= shift <= 62``; ``|acc * multiplier| < 2**46`` so int64 is exact.
    :func:`quantize_multiplier` gives ``multiplier * 2**-shift`` within a relative ``2**-15`` of
    the real factor.
Activation lookup tables (:class:`ActivationLUT`)
    The input is a signed fixed-point integer with ``in_frac`` fractional bits. It is saturated
    to ``index_bits`` two's complement bits and used directly as the ROM address (offset binary:
    ``address = q + 2**(index_bits-1)``). Entry ``k`` holds ``floor(f(v) * 2**out_frac + 1/2)``
    for ``v = (k - 2**(index_bits-1)) / 2**in_frac``, saturated to ``out_bits``, with
    ``out_frac = out_bits - 1``. Sigmoid is unsigned in ``[0, 2**out_frac]`` (1.0 is
    representable); tanh is signed and symmetric, so its extremes are ``+-(1 - 2**-out_frac)``.
    At every input code the entry is within ``2**-(out_frac+1)`` of the true function
    (tanh: within ``2**-out_frac`` where the saturation at ``1 - 2**-out_frac`` bites).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "MULTIPLIER_BITS",
    "MAX_SHIFT",
    "ActivationLUT",
    "check_int",
    "check_int_array",
    "int_range",
    "round_shift",
    "saturate",
    "quantize",
    "dequantize",
    "quantize_multiplier",
    "requantize",
    "relu",
    "sigmoid_lut",
    "tanh_lut",
]

MULTIPLIER_BITS = 15
MAX_SHIFT = 62
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def check_int(value: object, what: str, lo: int, hi: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[lo, hi]``.

    Raises ``ValueError("<what> must be an integer from <lo> to <hi>, not <value>")`` otherwise
    (``bool`` is not accepted as an integer).
    """
    try:
        if isinstance(value, bool | np.bool_):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or not lo <= number <= hi:
        raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value!r}")
    return number


def int_range(bits: int, signed: bool = True, *, symmetric: bool = False) -> tuple[int, int]:
    """Return ``(lo, hi)`` of ``bits``-bit integers: two's complement, symmetric or unsigned."""
    if not signed:
        return 0, 2**bits - 1
    hi = 2 ** (bits - 1) - 1
    return (-hi if symmetric else -hi - 1), hi


def check_int_array(
    a: object, name: str, bits: int | None = None, signed: bool = True
) -> np.ndarray:
    """Return ``a`` as an int64 array after checking its dtype and (optionally) value range.

    Parameters
    ----------
    a : array_like
        Must have an integer dtype (``bool`` and floats are rejected).
    name : str
        Used in error messages.
    bits : int, optional
        If given, every value must fit in ``bits``-bit two's complement (or unsigned) integers.
    """
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, not {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > 2**63 - 1:
        raise ValueError(f"{name} values must fit in int64, found {int(arr.max())}")
    arr = arr.astype(np.int64)
    if bits is not None and arr.size:
        lo, hi = int_range(bits, signed)
        bad = arr[(arr < lo) | (arr > hi)]
        if bad.size:
            kind = "signed" if signed else "unsigned"
            raise ValueError(
                f"{name} values must fit in {bits}-bit {kind} integers [{lo}, {hi}], "
                f"found {int(bad.flat[0])}"
            )
    return arr


def round_shift(x: object, shift: int) -> np.ndarray:
    """Arithmetic shift right by ``shift`` with round half up; ``shift < 0`` shifts left exactly.

    Parameters
    ----------
    x : array_like of int
        Values with ``|x| < 2**62`` (and ``|x| * 2**-shift < 2**62`` for left shifts).
    shift : int
        From -62 to 62.

    Returns
    -------
    numpy.ndarray of int64
        ``floor(x / 2**shift + 1/2)`` for ``shift > 0``, ``x * 2**-shift`` otherwise.
    """
    s = check_int(shift, "Shift", -MAX_SHIFT, MAX_SHIFT)
    v = check_int_array(x, "x")
    limit = 2**62 if s >= 0 else 2 ** (62 + s)
    if v.size and max(-int(v.min()), int(v.max())) >= limit:   # np.abs(-2**63) wraps
        raise ValueError(f"x values must have magnitude below {limit} for shift {s}")
    if s > 0:
        return (v + (1 << (s - 1))) >> s
    return v << -s


def saturate(x: object, bits: int, signed: bool = True) -> np.ndarray:
    """Clip integers to ``bits`` bits: symmetric ``+-(2**(bits-1) - 1)`` or ``[0, 2**bits - 1]``.

    Returns an int64 array. ``bits`` is an integer from 2 to 32.
    """
    b = check_int(bits, "Bits", 2, 32)
    lo, hi = int_range(b, signed, symmetric=True)
    return np.clip(check_int_array(x, "x"), lo, hi)


def relu(q: object) -> np.ndarray:
    """Integer ReLU: ``max(q, 0)``, same shape, int64."""
    return np.maximum(check_int_array(q, "q"), 0)


def _check_scale(scale: object, what: str) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if s.size == 0 or not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"{what} must be positive and finite, not {scale!r}")
    return s


def quantize(x: object, scale: object, bits: int, signed: bool = True) -> np.ndarray:
    """Quantize floats: ``saturate(rint(x / scale), bits, signed)``.

    Parameters
    ----------
    x : array_like of float
        NaN is rejected; +-inf saturate.
    scale : float or array_like of float
        Positive, finite, broadcastable against ``x`` (e.g. per channel).
    bits : int
        From 2 to 32. Signed range is symmetric: ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``.
    signed : bool
        If False the range is ``[0, 2**bits - 1]``.

    Returns
    -------
    numpy.ndarray of int64
        Rounded half to even (``numpy.rint``), computed in float64.
    """
    b = check_int(bits, "Bits", 2, 32)
    s = _check_scale(scale, "Scale")
    xf = np.asarray(x, dtype=np.float64)
    if np.any(np.isnan(xf)):
        raise ValueError("x must not contain NaN")
    lo, hi = int_range(b, signed, symmetric=True)
    return np.clip(np.rint(xf / s), lo, hi).astype(np.int64)


def dequantize(q: object, scale: object) -> np.ndarray:
    """Return ``q * scale`` as float64 (``q`` must be integers)."""
    return check_int_array(q, "q").astype(np.float64) * _check_scale(scale, "Scale")


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Approximate a real factor by ``multiplier * 2**-shift`` for :func:`requantize`.

    Parameters
    ----------
    real : float
        Finite, ``0 <= real < 32767.5``.

    Returns
    -------
    multiplier : int
        ``2**14 <= multiplier < 2**15`` (15 bits) unless ``real == 0`` (then 0) or the
        factor is so small that ``shift`` is capped at 62 (then fewer bits, possibly 0).
    shift : int
        From 0 to 62. ``|multiplier * 2**-shift - real| <= 2**-15 * real`` whenever
        ``shift < 62``; the multiplier is ``real * 2**shift`` rounded half up.
    """
    try:
        r = float(real)
    except OverflowError:       # an int past 1.8e308
        r = math.inf
    if not (math.isfinite(r) and 0 <= r < 2**MULTIPLIER_BITS - 0.5):
        raise ValueError(f"Real multiplier must be finite and in [0, 32767.5), not {real!r}")
    if r == 0:
        return 0, 0
    _, exponent = math.frexp(r)  # r = mantissa * 2**exponent, 0.5 <= mantissa < 1
    shift = min(MULTIPLIER_BITS - exponent, MAX_SHIFT)
    multiplier = math.floor(math.ldexp(r, shift) + 0.5)
    if multiplier == 2**MULTIPLIER_BITS:  # mantissa rounded up to 1.0
        multiplier, shift = multiplier // 2, shift - 1
    return multiplier, shift


def requantize(
    acc: object, multiplier: int, shift: int, out_bits: int, signed: bool = True
) -> np.ndarray:
    """Rescale int32 accumulators: ``saturate(round_shift(acc * multiplier, shift), out_bits)``.

    Parameters
    ----------
    acc : array_like of int
        Values in int32 range.
    multiplier : int
        From 0 to ``2**15 - 1`` (see :func:`quantize_multiplier`).
    shift : int
        From 0 to 62; rounding is half up (towards +inf), see :func:`round_shift`.
    out_bits : int
        From 2 to 16; signed output is symmetric, unsigned is ``[0, 2**out_bits - 1]``.

    Returns
    -------
    numpy.ndarray of int32
    """
    a = check_int_array(acc, "acc", 32)
    m = check_int(multiplier, "Multiplier", 0, 2**MULTIPLIER_BITS - 1)
    s = check_int(shift, "Shift", 0, MAX_SHIFT)
    b = check_int(out_bits, "Output bits", 2, 16)
    return saturate(round_shift(a * m, s), b, signed).astype(np.int32)


@dataclass(frozen=True, eq=False)
class ActivationLUT:
    """A fixed-point activation ROM (see the module docstring for the exact rules).

    Attributes
    ----------
    function : str
        ``"sigmoid"`` or ``"tanh"``.
    in_frac : int
        Fractional bits of the input fixed-point integer.
    index_bits : int
        Address width: inputs saturate to ``[-2**(index_bits-1), 2**(index_bits-1) - 1]``.
    out_bits : int
        Output width; ``out_frac = out_bits - 1`` fractional bits.
    table : numpy.ndarray of int32
        ``2**index_bits`` read-only entries, entry 0 for the most negative input.
    """

    function: str
    in_frac: int
    index_bits: int
    out_bits: int
    table: np.ndarray

    @property
    def out_frac(self) -> int:
        """Fractional bits of the output."""
        return self.out_bits - 1

    @property
    def in_min(self) -> int:
        """Smallest input code with its own entry; smaller inputs saturate to it."""
        return -(2 ** (self.index_bits - 1))

    @property
    def in_max(self) -> int:
        """Largest input code with its own entry; larger inputs saturate to it."""
        return 2 ** (self.index_bits - 1) - 1

    def apply(self, q: object) -> np.ndarray:
        """Look up integer inputs ``q`` (any shape): ``table[clip(q, in_min, in_max) - in_min]``.

        Returns an int32 array of the same shape.
        """
        v = check_int_array(q, "q")
        return self.table[np.clip(v, self.in_min, self.in_max) - self.in_min]


def _build_lut(function: str, in_frac: int, index_bits: int, out_bits: int) -> ActivationLUT:
    # checked before the cache: True and 1.0 hash like 1 and would hit a table built for it
    return _cached_lut(function, check_int(in_frac, "Input fractional bits", 0, 16),
                       check_int(index_bits, "Index bits", 2, 16),
                       check_int(out_bits, "Output bits", 2, 16))


@lru_cache(maxsize=64)
def _cached_lut(function: str, in_frac: int, index_bits: int, out_bits: int) -> ActivationLUT:
    half = 2 ** (index_bits - 1)
    v = np.arange(-half, half, dtype=np.float64) / 2.0**in_frac
    if function == "sigmoid":
        f, lo, hi = 0.5 * (1.0 + np.tanh(0.5 * v)), 0, 2 ** (out_bits - 1)
    else:
        f = np.tanh(v)
        lo, hi = int_range(out_bits, True, symmetric=True)
    table = np.clip(np.floor(f * 2.0 ** (out_bits - 1) + 0.5), lo, hi).astype(np.int32)
    table.flags.writeable = False
    return ActivationLUT(function, in_frac, index_bits, out_bits, table)


def sigmoid_lut(in_frac: int, index_bits: int, out_bits: int) -> ActivationLUT:
    """Sigmoid ROM: unsigned output in ``[0, 2**(out_bits-1)]`` with ``out_bits - 1`` frac bits.

    ``in_frac`` is from 0 to 16, ``index_bits`` and ``out_bits`` from 2 to 16. Tables are cached.
    """
    return _build_lut("sigmoid", in_frac, index_bits, out_bits)


def tanh_lut(in_frac: int, index_bits: int, out_bits: int) -> ActivationLUT:
    """Tanh ROM: signed symmetric ``out_bits`` output with ``out_bits - 1`` fractional bits.

    ``in_frac`` is from 0 to 16, ``index_bits`` and ``out_bits`` from 2 to 16. Tables are cached.
    """
    return _build_lut("tanh", in_frac, index_bits, out_bits)
