"""Tests of ir.fixedpoint: rounding, saturation, quantization, requantization, activation ROMs."""

import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ir.fixedpoint import (
    ActivationLUT,
    dequantize,
    int_range,
    quantize,
    quantize_multiplier,
    relu,
    requantize,
    round_shift,
    saturate,
    sigmoid_lut,
    tanh_lut,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def raises(message):
    return pytest.raises(ValueError, match=re.escape(message))


def round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


# --- round_shift / saturate -------------------------------------------------------------------


def test_round_shift_ties_round_half_up_for_negatives_too():
    x = np.array([5, -5, 6, -6, 7, -7, 1, -1, 0])
    # 2.5 -> 3, -2.5 -> -2, 3 -> 3, -3 -> -3, 3.5 -> 4, -3.5 -> -3, 0.5 -> 1, -0.5 -> 0
    assert round_shift(x, 1).tolist() == [3, -2, 3, -3, 4, -3, 1, 0, 0]
    assert round_shift(np.array([-6, -10, -11]), 2).tolist() == [-1, -2, -3]  # -1.5, -2.5, -2.75
    assert round_shift(x, 0).tolist() == x.tolist()
    assert round_shift(x, -3).tolist() == (x * 8).tolist()
    assert round_shift(x, 1).dtype == np.int64


@settings(deadline=None)
@given(st.integers(-(2**61), 2**61), st.integers(0, 62))
def test_round_shift_matches_exact_rational_rounding(x, shift):
    assert int(round_shift(np.array([x]), shift)[0]) == round_half_up(Fraction(x, 2**shift))


def test_round_shift_rejects_overflow_and_bad_shift():
    with raises("x values must have magnitude below 4611686018427387904 for shift 3"):
        round_shift(np.array([2**62]), 3)
    with raises("x values must have magnitude below 1024 for shift -52"):
        round_shift(np.array([1024]), -52)
    with raises("Shift must be an integer from -62 to 62, not 63"):
        round_shift(np.array([1]), 63)
    with raises("x must have an integer dtype, not float64"):
        round_shift(np.array([1.0]), 1)


def test_saturate_is_symmetric_signed_or_unsigned():
    x = np.array([-200, -128, -127, 0, 127, 128, 300])
    assert saturate(x, 8).tolist() == [-127, -127, -127, 0, 127, 127, 127]
    assert saturate(x, 8, signed=False).tolist() == [0, 0, 0, 0, 127, 128, 255]
    assert saturate(np.array([INT32_MIN]), 32).tolist() == [-INT32_MAX]
    assert int_range(8) == (-128, 127)
    assert int_range(8, symmetric=True) == (-127, 127)
    assert int_range(4, signed=False) == (0, 15)
    assert relu(np.array([-3, 0, 4])).tolist() == [0, 0, 4]


# --- quantize ---------------------------------------------------------------------------------


def test_quantize_rounds_half_to_even_like_torch():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, -0.51])
    assert quantize(x, 1.0, 8).tolist() == [0, 2, 2, 0, -2, -2, 0, -1]
    assert quantize(x, 1.0, 8).tolist() == torch.round(torch.tensor(x)).tolist()


def test_quantize_matches_torch_and_saturates_symmetrically():
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000) * 3
    for bits in (2, 4, 8, 16):
        ref = torch.clamp(
            torch.round(torch.tensor(x) / 0.01), -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
        )
        assert quantize(x, 0.01, bits).tolist() == ref.tolist()
    assert quantize([1e9, -1e9, np.inf, -np.inf], 1.0, 8).tolist() == [127, -127, 127, -127]
    assert quantize([-3.0, 2.0, 300.0], 1.0, 8, signed=False).tolist() == [0, 2, 255]
    assert quantize([1.0], 1e-300, 32).tolist() == [INT32_MAX]
    assert quantize(np.ones((2, 3)), np.array([[0.5], [0.25]]), 8).tolist() == [[2] * 3, [4] * 3]
    assert quantize([1.0], 1.0, 8).dtype == np.int64


def test_quantize_dequantize_error_is_at_most_half_a_step():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, 10_000)
    scale = 1 / 127
    assert np.abs(dequantize(quantize(x, scale, 8), scale) - x).max() <= scale / 2 + 1e-15


def test_quantize_errors():
    with raises("Bits must be an integer from 2 to 32, not 1"):
        quantize([1.0], 1.0, 1)
    with raises("Bits must be an integer from 2 to 32, not True"):
        quantize([1.0], 1.0, True)
    with raises("Scale must be positive and finite, not 0.0"):
        quantize([1.0], 0.0, 8)
    with raises("Scale must be positive and finite, not nan"):
        quantize([1.0], float("nan"), 8)
    with raises("x must not contain NaN"):
        quantize([1.0, float("nan")], 1.0, 8)


# --- quantize_multiplier / requantize ---------------------------------------------------------


@settings(deadline=None)
@given(st.floats(1e-12, 32767.49))
def test_quantize_multiplier_is_15_bit_and_accurate(real):
    m, s = quantize_multiplier(real)
    assert 2**14 <= m < 2**15 and 0 <= s <= 62
    assert abs(m * 2.0**-s - real) <= real * 2**-15


def test_quantize_multiplier_edges():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1.0) == (16384, 14)
    assert quantize_multiplier(0.5) == (16384, 15)
    assert quantize_multiplier(32767.0) == (32767, 0)
    assert quantize_multiplier(1 - 2**-17) == (16384, 14)  # mantissa rounds up to 2**15
    assert quantize_multiplier(2.0**-60) == (4, 62)  # shift capped: fewer multiplier bits
    assert quantize_multiplier(2.0**-70) == (0, 62)
    for bad in (-1.0, 32767.5, float("inf"), float("nan")):
        with raises(f"Real multiplier must be finite and in [0, 32767.5), not {bad!r}"):
            quantize_multiplier(bad)


@settings(deadline=None)
@given(
    st.lists(st.integers(INT32_MIN, INT32_MAX), min_size=1, max_size=8),
    st.integers(0, 2**15 - 1),
    st.integers(0, 62),
    st.integers(2, 16),
    st.booleans(),
)
def test_requantize_matches_exact_reference(acc, multiplier, shift, bits, signed):
    lo, hi = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    expected = [min(max(round_half_up(Fraction(a * multiplier, 2**shift)), lo), hi) for a in acc]
    out = requantize(np.array(acc, dtype=np.int64), multiplier, shift, bits, signed)
    assert out.dtype == np.int32
    assert out.tolist() == expected


def test_requantize_ties_negatives_and_extremes():
    acc = np.array([3, -3, 5, -5, -1, 1, 0], dtype=np.int32)
    # x 1 / 2: 1.5 -> 2, -1.5 -> -1, 2.5 -> 3, -2.5 -> -2, -0.5 -> 0, 0.5 -> 1
    assert requantize(acc, 1, 1, 8).tolist() == [2, -1, 3, -2, 0, 1, 0]
    extremes = np.array([INT32_MAX, INT32_MIN], dtype=np.int32)
    assert requantize(extremes, 32767, 0, 8).tolist() == [127, -127]
    assert requantize(extremes, 32767, 62, 8).tolist() == [0, 0]
    assert requantize(extremes, 32767, 46, 16).tolist() == [1, -1]  # |acc*m| just under 2**46
    assert requantize(extremes, 16384, 15, 16, signed=False).tolist() == [65535, 0]
    assert requantize(np.array([-300, 300]), 1, 0, 8, signed=False).tolist() == [0, 255]


def test_requantize_errors():
    with raises(
        "acc values must fit in 32-bit signed integers [-2147483648, 2147483647], found 2147483648"
    ):
        requantize(np.array([2**31]), 1, 0, 8)
    with raises("acc must have an integer dtype, not float32"):
        requantize(np.array([1.0], dtype=np.float32), 1, 0, 8)
    with raises("Multiplier must be an integer from 0 to 32767, not 32768"):
        requantize(np.array([1]), 32768, 0, 8)
    with raises("Shift must be an integer from 0 to 62, not -1"):
        requantize(np.array([1]), 1, -1, 8)
    with raises("Output bits must be an integer from 2 to 16, not 17"):
        requantize(np.array([1]), 1, 0, 17)


def test_requantize_with_quantize_multiplier_tracks_float_rescale():
    rng = np.random.default_rng(2)
    acc = rng.integers(-(2**20), 2**20, 5000)
    real = 3.7e-5
    m, s = quantize_multiplier(real)
    out = requantize(acc, m, s, 16)
    # |out - acc*real| <= 1/2 (rounding) + |acc*real| * 2**-15 (multiplier error).
    assert np.all(np.abs(out - acc * real) <= 0.5 + np.abs(acc * real) * 2**-15)


# --- activation ROMs --------------------------------------------------------------------------

LUT_PARAMS = [(6, 10, 8), (4, 8, 8), (10, 14, 12), (8, 12, 16), (0, 4, 4)]


def _true(lut: ActivationLUT, v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-v)) if lut.function == "sigmoid" else np.tanh(v)


@pytest.mark.parametrize("make", [sigmoid_lut, tanh_lut])
@pytest.mark.parametrize("in_frac, index_bits, out_bits", LUT_PARAMS)
def test_lut_shape_monotone_and_error_at_every_code(make, in_frac, index_bits, out_bits):
    lut = make(in_frac, index_bits, out_bits)
    assert lut.table.shape == (2**index_bits,) and lut.table.dtype == np.int32
    assert np.all(np.diff(lut.table) >= 0)
    codes = np.arange(lut.in_min, lut.in_max + 1)
    assert lut.apply(codes).tolist() == lut.table.tolist()
    err = np.abs(lut.apply(codes) / 2.0**lut.out_frac - _true(lut, codes / 2.0**in_frac))
    # Documented: half an output step; tanh a full step where it saturates at 1 - 2**-out_frac.
    bound = 2.0 ** -(lut.out_frac + 1) if lut.function == "sigmoid" else 2.0**-lut.out_frac
    assert err.max() <= bound + 1e-12
    if lut.function == "sigmoid":
        assert lut.table.min() >= 0 and lut.table.max() <= 2**lut.out_frac
        assert int(lut.apply(np.array([0]))[0]) == 2 ** (lut.out_frac - 1)  # sigmoid(0) = 1/2
        # sigmoid(-v) = 1 - sigmoid(v) holds on the table (no ties at irrational values).
        k = np.arange(1, lut.in_max + 1)
        assert (lut.apply(-k) + lut.apply(k)).tolist() == [2**lut.out_frac] * k.size
    else:
        assert np.abs(lut.table).max() <= 2**lut.out_frac - 1
        assert int(lut.apply(np.array([0]))[0]) == 0
        k = np.arange(1, lut.in_max + 1)
        assert lut.apply(-k).tolist() == (-lut.apply(k)).tolist()


@pytest.mark.parametrize("make", [sigmoid_lut, tanh_lut])
def test_lut_saturates_outside_its_range(make):
    lut = make(6, 10, 8)
    assert (lut.in_min, lut.in_max) == (-512, 511)
    big = np.array([511, 512, 10_000, 2**40], dtype=np.int64)
    assert lut.apply(big).tolist() == [lut.table[-1]] * 4
    assert lut.apply(-big - 1).tolist() == [lut.table[0]] * 4
    top = 2**lut.out_frac if lut.function == "sigmoid" else 2**lut.out_frac - 1
    assert lut.table[-1] == top  # sigmoid(8) rounds to 1.0; tanh(8) saturates at 1 - 2**-7
    assert lut.table[0] == (0 if lut.function == "sigmoid" else -top)


@pytest.mark.parametrize("make", [sigmoid_lut, tanh_lut])
def test_lut_error_for_real_inputs(make):
    """A real v rounded to the ROM grid is off by at most slope * half a grid step + entry error."""
    lut = make(6, 10, 8)
    v = np.linspace(-8, 7.99, 20_001)
    q = np.floor(v * 2**lut.in_frac + 0.5).astype(np.int64)
    slope = 0.25 if lut.function == "sigmoid" else 1.0
    entry = 2.0 ** -(lut.out_frac + 1) if lut.function == "sigmoid" else 2.0**-lut.out_frac
    err = np.abs(lut.apply(q) / 2.0**lut.out_frac - _true(lut, v))
    assert err.max() <= entry + slope * 2.0 ** -(lut.in_frac + 1) + 1e-12


def test_lut_cached_read_only_and_validated():
    lut = sigmoid_lut(6, 10, 8)
    assert sigmoid_lut(6, 10, 8) is lut
    with pytest.raises(ValueError):
        lut.table[0] = 1
    with raises("Index bits must be an integer from 2 to 16, not 17"):
        tanh_lut(6, 17, 8)
    with raises("Output bits must be an integer from 2 to 16, not 1"):
        sigmoid_lut(6, 10, 1)
    with raises("Input fractional bits must be an integer from 0 to 16, not -1"):
        sigmoid_lut(-1, 10, 8)
    with raises("q must have an integer dtype, not float64"):
        lut.apply(np.array([0.5]))


def test_contract_edges_found_by_fuzzing():
    from ir.fixedpoint import quantize_multiplier, round_shift, sigmoid_lut, tanh_lut
    from ir.golden import RNNQuantConfig

    # np.abs(-2**63) wraps to a negative number: the range check let it through
    for shift in (-1, 0, 3):
        with pytest.raises(ValueError, match="x values must have magnitude below"):
            round_shift(np.array([-2**63]), shift)
    # the argument check ran inside the cache: after (1, 10, 8), True and 1.0 hit its entry
    sigmoid_lut(1, 10, 8)
    tanh_lut(1, 10, 8)
    for lut in (sigmoid_lut, tanh_lut):
        for bad in (True, 1.0):
            with pytest.raises(ValueError, match="Input fractional bits must be an integer"):
                lut(bad, 10, 8)
    # an int too large for a float: OverflowError, where inf and nan were ValueErrors
    with pytest.raises(ValueError, match=r"Real multiplier must be finite and in \[0, 32767.5\)"):
        quantize_multiplier(10**400)
    # numpy scalar scales were refused as not positive finite numbers
    got = RNNQuantConfig.from_scales(np.float32(0.01), np.float64(1 / 64))
    assert got == RNNQuantConfig.from_scales(float(np.float32(0.01)), 1 / 64)
    with pytest.raises(ValueError, match="Weight scale must be a positive finite number"):
        RNNQuantConfig.from_scales(np.bool_(True), 1 / 64)
