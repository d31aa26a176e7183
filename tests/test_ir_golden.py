"""Tests of ir.golden: int32 accumulators (linear, conv2d) and the integer LSTM/GRU steps."""

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ir.golden import (
    RNNQuantConfig,
    conv2d,
    dequantize,
    gru_step,
    linear,
    lstm_step,
    quantize,
    quantize_multiplier,
    requantize,
    wrap32,
)


@pytest.fixture(autouse=True)
def _no_grad():
    """Float references need no autograd; scoped so that other test modules keep it."""
    with torch.no_grad():
        yield


F64 = torch.float64


def raises(message):
    return pytest.raises(ValueError, match=re.escape(message))


def t64(a):
    return torch.tensor(np.asarray(a), dtype=F64)


def wrap_int(v: int) -> int:
    return ((v + 2**31) % 2**32) - 2**31


# --- linear -----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [None, 1, 5])
@pytest.mark.parametrize("out_features, in_features", [(1, 1), (7, 13), (16, 64)])
def test_linear_equals_torch_float64_exactly(batch, out_features, in_features):
    rng = np.random.default_rng(out_features * 100 + in_features)
    w = rng.integers(-128, 128, (out_features, in_features), dtype=np.int8)
    x_shape = (in_features,) if batch is None else (batch, in_features)
    x = rng.integers(-128, 128, x_shape, dtype=np.int16)
    b = rng.integers(-(2**20), 2**20, out_features, dtype=np.int32)
    out = linear(w, x, b)
    assert out.dtype == np.int32
    assert out.shape == x_shape[:-1] + (out_features,)
    assert out.tolist() == torch.nn.functional.linear(t64(x), t64(w), t64(b)).tolist()
    assert linear(w, x).tolist() == torch.nn.functional.linear(t64(x), t64(w)).tolist()


def test_linear_wraps_like_an_int32_accumulator():
    w = np.full((2, 4), 32767, dtype=np.int16)
    w[1] = -32768
    x = np.array([32767, 32767, 32767, 32766], dtype=np.int16)
    exact = [sum(int(a) * int(b) for a, b in zip(row, x, strict=True)) for row in w]
    assert abs(exact[0]) > 2**31 and abs(exact[1]) > 2**31
    assert linear(w, x, weight_bits=16, act_bits=16).tolist() == [wrap_int(v) for v in exact]
    # Bias is added inside the accumulator: INT32_MAX + 1 wraps to INT32_MIN.
    assert linear(np.array([[1]]), np.array([1]), np.array([2**31 - 1])).tolist() == [-(2**31)]


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(np.int64, (3, 6), elements=st.integers(-(2**40), 2**40)),
    hnp.arrays(np.int64, (6,), elements=st.integers(-(2**40), 2**40)),
    st.permutations(range(6)),
)
def test_linear_is_exact_sum_mod_2_32_in_any_order(w, x, order):
    expected = [wrap_int(sum(int(a) * int(b) for a, b in zip(row, x, strict=True))) for row in w]
    assert linear(w, x).tolist() == expected
    assert linear(w[:, order], x[order]).tolist() == expected


def test_linear_accepts_any_integer_dtype():
    rng = np.random.default_rng(3)
    w = rng.integers(-100, 100, (4, 5))
    x = rng.integers(0, 100, 5)
    expected = linear(w, x).tolist()
    for wd, xd in [(np.int8, np.uint8), (np.int16, np.int32), (np.int64, np.uint64)]:
        assert linear(w.astype(wd), x.astype(xd)).tolist() == expected


def test_linear_errors():
    w, x = np.zeros((3, 4), dtype=np.int8), np.zeros(4, dtype=np.int8)
    with raises("Weight bits must be an integer from 2 to 16, not 1"):
        linear(w, x, weight_bits=1)
    with raises("Activation bits must be an integer from 2 to 16, not 17"):
        linear(w, x, act_bits=17)
    with raises("qweight values must fit in 4-bit signed integers [-8, 7], found 8"):
        linear(np.full((3, 4), 8), x, weight_bits=4)
    with raises("qx values must fit in 8-bit signed integers [-128, 127], found -129"):
        linear(w, np.full(4, -129), act_bits=8)
    with raises("qweight must have an integer dtype, not float64"):
        linear(w.astype(float), x)
    with raises("qx must have an integer dtype, not bool"):
        linear(w, x.astype(bool))
    with raises("qweight must be 2-D (out, in), not 1-D"):
        linear(x, x)
    with raises("qx must be 1-D (in,) or 2-D (batch, in), not 3-D"):
        linear(w, np.zeros((1, 1, 4), dtype=np.int8))
    with raises("qx has 5 features but qweight expects 4"):
        linear(w, np.zeros(5, dtype=np.int8))
    with raises("bias must have shape (3,), not (4,)"):
        linear(w, x, np.zeros(4, dtype=np.int32))
    with raises(
        "bias values must fit in 32-bit signed integers [-2147483648, 2147483647], found 2147483648"
    ):
        linear(w, x, np.array([0, 0, 2**31]))


# --- conv2d -----------------------------------------------------------------------------------

CONV_CASES = [
    # (batch, c_in, c_out, (h, w), (kh, kw), stride, padding, groups)
    (None, 1, 1, (5, 5), (3, 3), 1, 0, 1),
    (2, 3, 4, (7, 9), (3, 2), (2, 1), (1, 2), 1),
    (1, 6, 4, (6, 5), (1, 3), 2, 1, 2),
    (3, 4, 8, (5, 8), (3, 3), (1, 3), (2, 0), 4),  # depthwise-style, channel multiplier 2
    (None, 4, 6, (4, 4), (4, 4), 1, 0, 2),  # kernel covers the whole input
    (2, 2, 2, (3, 7), (5, 1), (3, 2), (1, 1), 1),
]


@pytest.mark.parametrize("batch, c_in, c_out, hw, k, stride, padding, groups", CONV_CASES)
def test_conv2d_equals_torch_float64_exactly(batch, c_in, c_out, hw, k, stride, padding, groups):
    rng = np.random.default_rng(c_in * 10 + c_out)
    w = rng.integers(-128, 128, (c_out, c_in // groups, *k))
    x_shape = (c_in, *hw) if batch is None else (batch, c_in, *hw)
    x = rng.integers(-128, 128, x_shape)
    b = rng.integers(-(2**20), 2**20, c_out)
    out = conv2d(w, x, b, stride=stride, padding=padding, groups=groups)
    ref = torch.nn.functional.conv2d(
        t64(x), t64(w), t64(b), stride=stride, padding=padding, groups=groups
    )
    assert out.dtype == np.int32
    assert out.shape == tuple(ref.shape)
    assert out.tolist() == ref.tolist()


def test_conv2d_wraps_like_an_int32_accumulator():
    w = np.full((1, 2, 3, 3), 32767)
    x = np.full((2, 4, 4), -32768)
    out = conv2d(w, x, padding=1, weight_bits=16, act_bits=16)
    # Each output sums 32767 * -32768 over 2 channels x (number of in-bounds taps).
    taps = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]) * 2
    assert out.tolist() == [[[wrap_int(32767 * -32768 * int(n)) for n in row] for row in taps]]


def test_conv2d_errors():
    w, x = np.zeros((4, 2, 3, 3), dtype=np.int8), np.zeros((4, 5, 5), dtype=np.int8)
    with raises("Stride must be a positive integer or a pair of them, not 0"):
        conv2d(w, x, stride=0, groups=2)
    with raises("Stride must be a positive integer or a pair of them, not (1, 2, 3)"):
        conv2d(w, x, stride=(1, 2, 3), groups=2)
    with raises("Padding must be a non-negative integer or a pair of them, not (1, -1)"):
        conv2d(w, x, padding=(1, -1), groups=2)
    with raises("Groups must be an integer from 1 to 2147483648, not 0"):
        conv2d(w, x, groups=0)
    with raises("Groups (3) must divide qx channels (4) and qweight outputs (4)"):
        conv2d(w, x, groups=3)
    with raises(
        "qweight must have 4 input channels per group (qx has 4 channels in 1 groups), not 2"
    ):
        conv2d(w, x)
    with raises("qweight must be 4-D (out, in/groups, kh, kw), not 2-D"):
        conv2d(w[:, :, 0, 0], x)
    with raises("qx must be 3-D (in, h, w) or 4-D (batch, in, h, w), not 2-D"):
        conv2d(w, x[0])
    with raises("Kernel (3, 3) does not fit the padded input (2, 2)"):
        conv2d(w, x[:, :2, :2], groups=2)
    with raises("Weight bits must be an integer from 2 to 16, not 1"):
        conv2d(w, x, groups=2, weight_bits=1)
    with raises("bias must have shape (4,), not (2,)"):
        conv2d(w, x, np.zeros(2, dtype=np.int32), groups=2)


# --- quantized path: float model -> integers -> golden -> dequantize --------------------------


def _bound(w: np.ndarray, x: np.ndarray, sw: float, sx: float) -> np.ndarray:
    """Per-product bound |w x - w_q x_q| <= |w| sx/2 + |x| sw/2 + sw sx/4 (no clipping)."""
    return np.abs(w) * sx / 2 + np.abs(x) * sw / 2 + sw * sx / 4


def test_quantized_linear_is_within_rounding_bound_of_torch():
    rng = np.random.default_rng(4)
    w, x = rng.normal(size=(32, 48)), rng.normal(size=(4, 48))
    for bits in (4, 8, 12):
        qmax = 2 ** (bits - 1) - 1
        sw, sx = np.abs(w).max() / qmax, np.abs(x).max() / qmax
        acc = linear(quantize(w, sw, bits), quantize(x, sx, bits))
        err = np.abs(acc * (sw * sx) - torch.nn.functional.linear(t64(x), t64(w)).numpy())
        bound = np.array([[_bound(w[o], x[n], sw, sx).sum() for o in range(32)] for n in range(4)])
        assert np.all(err <= bound + 1e-9)
        # And through requantize to an 8-bit output: + |y| 2**-15 (multiplier) + sy/2 (rounding).
        y = acc * (sw * sx)
        sy = np.abs(y).max() / 127
        m, s = quantize_multiplier(sw * sx / sy)
        y_q = requantize(acc, m, s, 8) * sy
        y_ref = torch.nn.functional.linear(t64(x), t64(w)).numpy()
        assert np.all(np.abs(y_q - y_ref) <= bound + np.abs(y) * 2**-15 + sy / 2 + 1e-9)


def test_quantized_conv2d_is_within_rounding_bound_of_torch():
    rng = np.random.default_rng(5)
    w, x = rng.normal(size=(6, 2, 3, 3)), rng.normal(size=(2, 4, 6, 7))
    sw, sx = np.abs(w).max() / 127, np.abs(x).max() / 127
    acc = conv2d(quantize(w, sw, 8), quantize(x, sx, 8), stride=(1, 2), padding=1, groups=2)
    ref = torch.nn.functional.conv2d(t64(x), t64(w), stride=(1, 2), padding=1, groups=2)

    # Bound per output: the same convolution applied to the per-product bound terms.
    def conv(a, b):
        return torch.nn.functional.conv2d(t64(a), t64(b), stride=(1, 2), padding=1, groups=2)

    ones_x, ones_w = np.ones_like(x), np.ones_like(w)
    bound = conv(np.abs(x), ones_w) * sw / 2 + conv(ones_x, np.abs(w)) * sx / 2
    bound = bound + conv(ones_x, ones_w) * sw * sx / 4
    assert np.all(np.abs(dequantize(acc, sw * sx) - ref.numpy()) <= bound.numpy() + 1e-9)


# --- recurrent cells --------------------------------------------------------------------------


def _quantized_cell(kind: str, bits: int, seed: int, input_size=10, hidden=16, batch=3):
    """A float torch cell, its integer twin (same quantized weights) and 8 quantized inputs."""
    torch.manual_seed(seed)
    cell = (torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell)(input_size, hidden).double()
    w_ih, w_hh = cell.weight_ih.numpy().copy(), cell.weight_hh.numpy().copy()
    qmax = 2 ** (bits - 1) - 1
    sw = max(np.abs(w_ih).max(), np.abs(w_hh).max()) / qmax  # one scale shared by W_ih, W_hh
    cfg = RNNQuantConfig.from_scales(sw, 1 / qmax, weight_bits=bits, act_bits=bits)
    acc_scale = sw * 2.0**-cfg.act_frac
    q = {
        "qweight_ih": quantize(w_ih, sw, bits),
        "qweight_hh": quantize(w_hh, sw, bits),
        "bias_ih": quantize(cell.bias_ih.numpy(), acc_scale, 32),
        "bias_hh": quantize(cell.bias_hh.numpy(), acc_scale, 32),
    }
    cell.weight_ih.copy_(t64(q["qweight_ih"] * sw))
    cell.weight_hh.copy_(t64(q["qweight_hh"] * sw))
    cell.bias_ih.copy_(t64(q["bias_ih"] * acc_scale))
    cell.bias_hh.copy_(t64(q["bias_hh"] * acc_scale))
    xs = np.random.default_rng(seed).uniform(-1, 1, (8, batch, input_size))
    qxs = quantize(xs, 2.0**-cfg.act_frac, bits)
    return cell, cfg, q, qxs


def _run(kind: str, bits: int, seed: int) -> tuple[float, RNNQuantConfig]:
    """Max |golden - torch| over 8 steps, of h (and c for LSTM), in real units."""
    cell, cfg, q, qxs = _quantized_cell(kind, bits, seed)
    hidden = cell.hidden_size
    h = np.zeros((qxs.shape[1], hidden), dtype=np.int32)
    c = np.zeros_like(h)
    th, tc = torch.zeros(h.shape, dtype=F64), torch.zeros(h.shape, dtype=F64)
    err = 0.0
    for qx in qxs:
        x = t64(qx * 2.0**-cfg.act_frac)
        if kind == "lstm":
            h, c = lstm_step(qx, h, c, **q, config=cfg)
            th, tc = cell(x, (th, tc))
            err = max(err, np.abs(c * 2.0**-cfg.cell_frac - tc.numpy()).max())
        else:
            h = gru_step(qx, h, **q, config=cfg)
            th = cell(x, th)
        assert h.dtype == np.int32 and np.abs(h).max() <= 2 ** (bits - 1) - 1
        err = max(err, np.abs(h * 2.0**-cfg.act_frac - th.numpy()).max())
    return err, cfg


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rnn_step_tracks_torch_cell_and_more_bits_is_better(kind, seed):
    """Tolerance: 2**-act_frac + 2**-lut_frac + 2**-gate_frac over 8 steps.

    A first-order budget of one step of each rounding point (ROM input, ROM output, new state),
    with W_hh at torch's default init (|w| <= 1/sqrt(hidden)), so errors do not grow from step
    to step; at 8 bits this is 0.039 (observed ~0.016), at 12 bits 0.0024 (observed ~0.001).
    """
    errors = {}
    for bits in (8, 12):
        err, cfg = _run(kind, bits, seed)
        tol = 2.0**-cfg.act_frac + 2.0**-cfg.lut_frac + 2.0**-cfg.gate_frac
        assert err <= tol, (bits, err, tol)
        errors[bits] = err
    assert errors[12] < errors[8] / 4


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_rnn_step_batch_equals_rows(kind):
    cell, cfg, q, qxs = _quantized_cell(kind, 8, seed=7)
    rng = np.random.default_rng(7)
    h = rng.integers(-127, 128, (3, 16))
    c = rng.integers(-(2**15), 2**15, (3, 16))
    if kind == "lstm":
        hb, cb = lstm_step(qxs[0], h, c, **q, config=cfg)
        rows = [lstm_step(qxs[0][n], h[n], c[n], **q, config=cfg) for n in range(3)]
        assert hb.tolist() == [r[0].tolist() for r in rows]
        assert cb.tolist() == [r[1].tolist() for r in rows]
    else:
        hb = gru_step(qxs[0], h, **q, config=cfg)
        assert hb.tolist() == [
            gru_step(qxs[0][n], h[n], **q, config=cfg).tolist() for n in range(3)
        ]


def test_lstm_zero_weights_halve_the_cell_exactly():
    """All pre-activations 0: i = f = o = 1/2 exactly, g = 0, so c' = round(c / 2), h' = tanh/2."""
    cfg = RNNQuantConfig(multiplier=16384, shift=14)
    c = np.arange(-(2**15) + 1, 2**15, 97)
    zeros = np.zeros(c.size, dtype=np.int64)
    w_ih, w_hh = (
        np.zeros((4 * c.size, 3), dtype=np.int8),
        np.zeros((4 * c.size, c.size), dtype=np.int8),
    )
    h_new, c_new = lstm_step(np.ones(3, np.int8), zeros, c, w_ih, w_hh, config=cfg)
    assert c_new.tolist() == ((c + 1) >> 1).tolist()  # round half up
    t = cfg.tanh.apply((c_new + 16) >> 5)  # cell_frac 11 -> lut_frac 6
    assert h_new.tolist() == ((64 * t + 128) >> 8).tolist()  # o = 64 / 2**7; shift 2*7 - 6
    h0, c0 = lstm_step(np.ones(3, np.int8), zeros, zeros, w_ih, w_hh, config=cfg)
    assert h0.tolist() == c0.tolist() == zeros.tolist()


def test_gru_zero_weights_halve_the_state_exactly():
    """All pre-activations 0: r = z = 1/2 and n = 0, so h' = round(h / 2)."""
    cfg = RNNQuantConfig(multiplier=16384, shift=14)
    h = np.arange(-128, 128)
    w_ih, w_hh = (
        np.zeros((3 * h.size, 2), dtype=np.int8),
        np.zeros((3 * h.size, h.size), dtype=np.int8),
    )
    assert (
        gru_step(np.array([5, -5]), h, w_ih, w_hh, config=cfg).tolist() == ((h + 1) >> 1).tolist()
    )


def test_gru_update_gate_saturated_keeps_h_and_closed_takes_n():
    """Huge z bias: z = 1.0 exactly (the sigmoid ROM holds 1.0) so h' = h; huge negative: h' = n.

    With act_frac = gate_frac = 7 the tanh output is already in the activation format.
    """
    cfg = RNNQuantConfig(multiplier=16384, shift=14, act_frac=7)  # acc -> pre: x 1
    hidden = 4
    h = np.array([-128, -1, 1, 127])
    w_ih, w_hh = (
        np.zeros((3 * hidden, 1), dtype=np.int8),
        np.zeros((3 * hidden, hidden), dtype=np.int8),
    )
    # n_bias 20 at lut_frac 6 is 0.3125: round(128 * tanh(0.3125)) = 39; tanh saturates at 127.
    # h' = h, except that -128 (a valid input) saturates to -127 (outputs are symmetric).
    kept = [-127, -1, 1, 127]
    for z_bias, n_bias, expected in [
        (2**20, 0, kept),
        (-(2**20), 2**20, [127] * 4),
        (-(2**20), 20, [39] * 4),
    ]:
        bias = np.zeros(3 * hidden, dtype=np.int64)
        bias[hidden : 2 * hidden] = z_bias
        bias[2 * hidden :] = n_bias
        out = gru_step(np.zeros(1, np.int8), h, w_ih, w_hh, bias, config=cfg)
        assert out.tolist() == expected
    assert cfg.tanh.apply(np.array([20])).tolist() == [39]


def test_rnn_config_from_scales():
    cfg = RNNQuantConfig.from_scales(0.01, 1 / 127)
    assert (cfg.act_frac, cfg.gate_frac, cfg.lut_index_bits, cfg.lut_frac) == (6, 7, 10, 6)
    assert (cfg.cell_bits, cfg.cell_frac) == (16, 11)
    assert (cfg.multiplier, cfg.shift) == quantize_multiplier(0.01)
    assert RNNQuantConfig.from_scales(0.01, 2.0**-7).act_frac == 7  # exact powers of two kept
    cfg12 = RNNQuantConfig.from_scales(1e-3, 2.0**-11, weight_bits=12, act_bits=12, lut_int_bits=2)
    assert (cfg12.lut_index_bits, cfg12.lut_frac, cfg12.cell_bits) == (14, 11, 24)
    assert cfg12.multiplier * 2.0**-cfg12.shift == pytest.approx(1e-3, rel=2**-15)
    with raises("Weight scale must be a positive finite number, not 0.0"):
        RNNQuantConfig.from_scales(0.0, 0.1)
    with raises("Activation scale must be a positive finite number, not inf"):
        RNNQuantConfig.from_scales(0.1, float("inf"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weight_bits": 1}, "Weight bits must be an integer from 2 to 16, not 1"),
        ({"act_bits": 17}, "Activation bits must be an integer from 2 to 16, not 17"),
        ({"act_frac": -1}, "Activation fractional bits must be an integer from 0 to 16, not -1"),
        ({"gate_bits": 1}, "Gate bits must be an integer from 2 to 16, not 1"),
        ({"lut_index_bits": 20}, "LUT index bits must be an integer from 2 to 16, not 20"),
        ({"lut_frac": 17}, "LUT fractional bits must be an integer from 0 to 16, not 17"),
        ({"cell_bits": 33}, "Cell bits must be an integer from 2 to 32, not 33"),
        ({"cell_frac": 32}, "Cell fractional bits must be an integer from 0 to 31, not 32"),
        ({"multiplier": 2**15}, "Multiplier must be an integer from 0 to 32767, not 32768"),
        ({"shift": 63}, "Shift must be an integer from 0 to 62, not 63"),
        ({"act_bits": 8.0}, "Activation bits must be an integer from 2 to 16, not 8.0"),
    ],
)
def test_rnn_config_errors(kwargs, message):
    args = {"multiplier": 16384, "shift": 14} | kwargs
    with raises(message):
        RNNQuantConfig(**args)


def test_rnn_step_errors():
    cfg = RNNQuantConfig(multiplier=16384, shift=14, weight_bits=4)
    x, h = np.zeros(3, np.int8), np.zeros(2, np.int8)
    w_ih, w_hh = np.zeros((8, 3), np.int8), np.zeros((8, 2), np.int8)
    with raises("qweight_hh must have shape (4*hidden, hidden), not (6, 2)"):
        lstm_step(x, h, h, w_ih, w_hh[:6], config=cfg)
    with raises("qweight_hh must have shape (3*hidden, hidden), not (8, 2)"):
        gru_step(x, h, w_ih, w_hh, config=cfg)
    with raises("qweight_ih must have shape (8, 3), not (8, 2)"):
        lstm_step(x, h, h, w_hh, w_hh, config=cfg)
    with raises("qh must have shape (2,), not (3,)"):
        lstm_step(x, x, h, w_ih, w_hh, config=cfg)
    with raises("qh must have shape (5, 2), not (2,)"):
        lstm_step(np.zeros((5, 3), np.int8), h, h, w_ih, w_hh, config=cfg)
    with raises("qc must have shape (2,), not (1, 2)"):
        lstm_step(x, h, h[None], w_ih, w_hh, config=cfg)
    with raises("qx must be 1-D (input,) or 2-D (batch, input), not 0-D"):
        lstm_step(np.int8(0), h, h, w_ih, w_hh, config=cfg)
    with raises("qweight_ih values must fit in 4-bit signed integers [-8, 7], found 9"):
        lstm_step(x, h, h, np.full((8, 3), 9), w_hh, config=cfg)
    with raises("qx values must fit in 8-bit signed integers [-128, 127], found 128"):
        lstm_step(np.full(3, 128), h, h, w_ih, w_hh, config=cfg)
    with raises("qc values must fit in 16-bit signed integers [-32768, 32767], found 32768"):
        lstm_step(x, h, np.full(2, 2**15), w_ih, w_hh, config=cfg)
    with raises("bias_hh must have shape (8,), not (6,)"):
        lstm_step(x, h, h, w_ih, w_hh, None, np.zeros(6, np.int32), config=cfg)
    with raises("config must be an RNNQuantConfig, not dict"):
        gru_step(x, h, w_ih[:6], w_hh[:6], config={})


def test_wrap32():
    assert wrap32(np.array([2**31, -(2**31) - 1, 2**32 + 5, -1])).tolist() == [
        -(2**31),
        2**31 - 1,
        5,
        -1,
    ]
    assert wrap32(np.array([2**64 - 1], dtype=np.uint64)).tolist() == [-1]
