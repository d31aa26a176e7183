"""Integer golden model: the bit-exact reference for every hardware engine and C kernel.

Number-format rules (ranges, round-half-up shifts, saturation, quantization, requantization,
activation ROMs) live in :mod:`ir.fixedpoint` and are re-exported here.

Exact rules
-----------
Accumulators
    ``linear`` and ``conv2d`` return ``numpy.int32`` accumulators equal to the *exact* integer
    sum of products plus bias, wrapped to 32-bit two's complement (``((v + 2**31) mod 2**32) -
    2**31``). This is what a hardware int32 accumulator produces whatever the summation order:
    the sum is computed in ``uint64`` modular arithmetic, exact modulo ``2**64`` and therefore
    modulo ``2**32``. Inputs may have any integer dtype; when ``weight_bits``/``act_bits`` are
    given, values must fit those two's complement widths. Bias is int32-range and is added
    inside the accumulator. Convolution padding is zeros.
Recurrent cells (``lstm_step``, ``gru_step``; PyTorch gate order LSTM i, f, g, o, GRU r, z, n)
    Formats (all set by :class:`RNNQuantConfig`, ``G = gate_bits - 1``):

    * ``x`` and ``h``: signed ``act_bits`` integers with ``act_frac`` fractional bits (one format).
    * ``c``: signed ``cell_bits`` integers with ``cell_frac`` fractional bits.
    * weights: ``weight_bits`` integers with one scale ``sw`` shared by ``W_ih`` and ``W_hh``;
      biases: int32 at the accumulator scale ``sw * 2**-act_frac``.
    * gate pre-activations: ``pre = requantize(acc, multiplier, shift, lut_index_bits)``, a
      fixed-point integer with ``lut_frac`` fractional bits (``multiplier * 2**-shift`` ~
      ``sw * 2**(lut_frac - act_frac)``), looked up in the sigmoid/tanh ROMs
      (``lut_index_bits`` address, ``gate_bits`` output, ``G`` fractional bits).

    LSTM (``acc = W_ih x + W_hh h + b_ih + b_hh``, int32 wrapping)::

        c' = saturate(round_shift((f * c << G) + (i * g << cell_frac), 2*G), cell_bits)
        t  = tanh(round_shift(c', cell_frac - lut_frac))
        h' = saturate(round_shift(o * t, 2*G - act_frac), act_bits)

    GRU (``a = W_ih x + b_ih``, ``b = W_hh h + b_hh``, int32 wrapping, split into r, z, n)::

        r, z = sigmoid(pre(a_r + b_r)), sigmoid(pre(a_z + b_z))
        n    = tanh(pre(wrap32(a_n + round_shift(r * b_n, G))))
        h'   = saturate(round_shift(((2**G - z) * n << act_frac) + (z * h << G), 2*G), act_bits)

    ``pre`` is ``RNNQuantConfig.preactivation``; ``round_shift`` by a negative amount is an
    exact left shift, so each new state is rounded exactly once (half up) and saturated
    symmetrically. Every intermediate fits in int64 within the config's limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ir.fixedpoint import (
    MAX_SHIFT,
    MULTIPLIER_BITS,
    ActivationLUT,
    check_int,
    check_int_array,
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

__all__ = [
    "ActivationLUT",
    "RNNQuantConfig",
    "conv2d",
    "dequantize",
    "gru_step",
    "int_range",
    "linear",
    "lstm_step",
    "quantize",
    "quantize_multiplier",
    "relu",
    "requantize",
    "round_shift",
    "saturate",
    "sigmoid_lut",
    "tanh_lut",
    "wrap32",
]


def wrap32(v: object) -> np.ndarray:
    """Wrap integers to int32 two's complement (keep the low 32 bits), returning ``numpy.int32``."""
    u = np.asarray(v).astype(np.uint64)  # modular for signed and unsigned inputs alike
    return (u & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)


def _bits(bits: int | None, what: str) -> int | None:
    return None if bits is None else check_int(bits, f"{what} bits", 2, 16)


def _bias(bias: object, n_out: int, name: str = "bias") -> np.ndarray | None:
    if bias is None:
        return None
    b = check_int_array(bias, name, 32)
    if b.shape != (n_out,):
        raise ValueError(f"{name} must have shape {(n_out,)}, not {b.shape}")
    return b


def linear(
    qweight: object,
    qx: object,
    bias: object = None,
    *,
    weight_bits: int | None = None,
    act_bits: int | None = None,
) -> np.ndarray:
    """Integer fully connected layer: ``wrap32(qweight @ qx + bias)``.

    Parameters
    ----------
    qweight : array_like of int, shape (out, in)
    qx : array_like of int, shape (in,) or (batch, in)
    bias : array_like of int, shape (out,), optional
        int32-range values added in the accumulator.
    weight_bits, act_bits : int, optional
        From 2 to 16; if given, ``qweight``/``qx`` must fit these two's complement widths.

    Returns
    -------
    numpy.ndarray of int32, shape (out,) or (batch, out)
        Exact sum wrapped to int32 (see the module docstring).
    """
    w = check_int_array(qweight, "qweight", _bits(weight_bits, "Weight"))
    x = check_int_array(qx, "qx", _bits(act_bits, "Activation"))
    if w.ndim != 2:
        raise ValueError(f"qweight must be 2-D (out, in), not {w.ndim}-D")
    if x.ndim not in (1, 2):
        raise ValueError(f"qx must be 1-D (in,) or 2-D (batch, in), not {x.ndim}-D")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"qx has {x.shape[-1]} features but qweight expects {w.shape[1]}")
    b = _bias(bias, w.shape[0])
    acc = x.astype(np.uint64) @ w.T.astype(np.uint64)
    if b is not None:
        acc = acc + b.astype(np.uint64)
    return wrap32(acc)


def _pair(value: object, what: str, lo: int) -> tuple[int, int]:
    items = value if isinstance(value, tuple | list) else (value, value)
    kind = "a positive" if lo == 1 else "a non-negative"
    msg = f"{what} must be {kind} integer or a pair of them, not {value!r}"
    if len(items) != 2:
        raise ValueError(msg)
    try:
        return check_int(items[0], what, lo, 2**31), check_int(items[1], what, lo, 2**31)
    except ValueError:
        raise ValueError(msg) from None


def conv2d(
    qweight: object,
    qx: object,
    bias: object = None,
    stride: int | tuple[int, int] = (1, 1),
    padding: int | tuple[int, int] = (0, 0),
    groups: int = 1,
    *,
    weight_bits: int | None = None,
    act_bits: int | None = None,
) -> np.ndarray:
    """Integer 2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``).

    Parameters
    ----------
    qweight : array_like of int, shape (out, in / groups, kh, kw)
    qx : array_like of int, shape (in, h, w) or (batch, in, h, w)
    bias : array_like of int, shape (out,), optional
        int32-range values added in the accumulator.
    stride, padding : int or (int, int)
        Stride >= 1 and zero padding >= 0, (rows, columns).
    groups : int
        Divides both ``in`` and ``out``.
    weight_bits, act_bits : int, optional
        From 2 to 16; if given, ``qweight``/``qx`` must fit these two's complement widths.

    Returns
    -------
    numpy.ndarray of int32, shape (out, oh, ow) or (batch, out, oh, ow)
        ``oh = (h + 2*padding[0] - kh) // stride[0] + 1`` (likewise ``ow``); exact sums wrapped
        to int32.
    """
    w = check_int_array(qweight, "qweight", _bits(weight_bits, "Weight"))
    x = check_int_array(qx, "qx", _bits(act_bits, "Activation"))
    sh, sw = _pair(stride, "Stride", 1)
    ph, pw = _pair(padding, "Padding", 0)
    g = check_int(groups, "Groups", 1, 2**31)
    if w.ndim != 4:
        raise ValueError(f"qweight must be 4-D (out, in/groups, kh, kw), not {w.ndim}-D")
    if x.ndim not in (3, 4):
        raise ValueError(f"qx must be 3-D (in, h, w) or 4-D (batch, in, h, w), not {x.ndim}-D")
    batched = x.ndim == 4
    x = x if batched else x[None]
    n, c_in, height, width = x.shape
    c_out, c_per_group, kh, kw = w.shape
    if c_in % g or c_out % g:
        raise ValueError(
            f"Groups ({g}) must divide qx channels ({c_in}) and qweight outputs ({c_out})"
        )
    if c_per_group != c_in // g:
        raise ValueError(
            f"qweight must have {c_in // g} input channels per group (qx has {c_in} channels "
            f"in {g} groups), not {c_per_group}"
        )
    if kh > height + 2 * ph or kw > width + 2 * pw:
        raise ValueError(
            f"Kernel ({kh}, {kw}) does not fit the padded input ({height + 2 * ph}, {width + 2 * pw})"
        )
    b = _bias(bias, c_out)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).astype(np.uint64)
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    # windows: (n, c_in, oh, ow, kh, kw) -> split channels into groups.
    oh, ow = windows.shape[2], windows.shape[3]
    windows = windows.reshape(n, g, c_per_group, oh, ow, kh, kw)
    wg = w.astype(np.uint64).reshape(g, c_out // g, c_per_group, kh, kw)
    acc = np.einsum("ngcyxij,gocij->ngoyx", windows, wg).reshape(n, c_out, oh, ow)
    if b is not None:
        acc = acc + b.astype(np.uint64)[:, None, None]
    out = wrap32(acc)
    return out if batched else out[0]


@dataclass(frozen=True)
class RNNQuantConfig:
    """Integer formats of an LSTM/GRU step (rules in the module docstring).

    Attributes
    ----------
    multiplier, shift : int
        Accumulator -> LUT input rescale, ``multiplier * 2**-shift ~ sw * 2**(lut_frac -
        act_frac)``; multiplier from 0 to ``2**15 - 1``, shift from 0 to 62.
    weight_bits : int
        Weight width, 2 to 16.
    act_bits, act_frac : int
        Format of ``x`` and ``h``: 2 to 16 bits, 0 to 16 fractional bits.
    gate_bits : int
        Sigmoid/tanh ROM output width, 2 to 16; ``gate_frac = gate_bits - 1``.
    lut_index_bits, lut_frac : int
        ROM address width (2 to 16) and fractional bits of its input (0 to 16).
    cell_bits, cell_frac : int
        Format of ``c`` (LSTM): 2 to 32 bits, 0 to 31 fractional bits.

    Notes
    -----
    Gate accumulators are int32 and wrap (see the module docstring); pick widths so that
    ``(input + hidden) * 2**(weight_bits-1) * 2**(act_bits-1) + |bias|`` stays below ``2**31``.
    """

    multiplier: int
    shift: int
    weight_bits: int = 8
    act_bits: int = 8
    act_frac: int = 6
    gate_bits: int = 8
    lut_index_bits: int = 10
    lut_frac: int = 6
    cell_bits: int = 16
    cell_frac: int = 11

    def __post_init__(self) -> None:
        check_int(self.multiplier, "Multiplier", 0, 2**MULTIPLIER_BITS - 1)
        check_int(self.shift, "Shift", 0, MAX_SHIFT)
        check_int(self.weight_bits, "Weight bits", 2, 16)
        check_int(self.act_bits, "Activation bits", 2, 16)
        check_int(self.act_frac, "Activation fractional bits", 0, 16)
        check_int(self.gate_bits, "Gate bits", 2, 16)
        check_int(self.lut_index_bits, "LUT index bits", 2, 16)
        check_int(self.lut_frac, "LUT fractional bits", 0, 16)
        check_int(self.cell_bits, "Cell bits", 2, 32)
        check_int(self.cell_frac, "Cell fractional bits", 0, 31)

    @classmethod
    def from_scales(
        cls,
        weight_scale: float,
        act_scale: float,
        *,
        weight_bits: int = 8,
        act_bits: int = 8,
        gate_bits: int | None = None,
        lut_index_bits: int | None = None,
        lut_int_bits: int = 3,
        cell_bits: int | None = None,
        cell_int_bits: int = 4,
    ) -> RNNQuantConfig:
        """Derive a config from float scales.

        ``act_frac = floor(-log2(act_scale))``: the finest power-of-two step not finer than
        ``act_scale``, so the range ``act_scale`` covers stays representable. Defaults:
        ``gate_bits = act_bits``, ``lut_index_bits = min(act_bits + 2, 16)``,
        ``lut_frac = lut_index_bits - 1 - lut_int_bits`` (ROM input range ``+-2**lut_int_bits``),
        ``cell_bits = min(2 * act_bits, 32)``, ``cell_frac = cell_bits - 1 - cell_int_bits``
        (cell range ``+-2**cell_int_bits``), and ``(multiplier, shift) =
        quantize_multiplier(weight_scale * 2**(lut_frac - act_frac))``.
        """
        for value, what in ((weight_scale, "Weight scale"), (act_scale, "Activation scale")):
            # numpy scalars too (np.float32 is no float), not bools
            if isinstance(value, bool | np.bool_) or not isinstance(
                    value, int | float | np.integer | np.floating) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"{what} must be a positive finite number, not {value!r}")
        weight_scale, act_scale = float(weight_scale), float(act_scale)
        act_frac = math.floor(-math.log2(act_scale) + 1e-9)
        gate_bits = act_bits if gate_bits is None else gate_bits
        lut_index_bits = min(act_bits + 2, 16) if lut_index_bits is None else lut_index_bits
        cell_bits = min(2 * act_bits, 32) if cell_bits is None else cell_bits
        lut_frac = lut_index_bits - 1 - lut_int_bits
        multiplier, shift = quantize_multiplier(weight_scale * 2.0 ** (lut_frac - act_frac))
        return cls(
            multiplier,
            shift,
            weight_bits,
            act_bits,
            act_frac,
            gate_bits,
            lut_index_bits,
            lut_frac,
            cell_bits,
            cell_bits - 1 - cell_int_bits,
        )

    @property
    def gate_frac(self) -> int:
        """Fractional bits of the sigmoid/tanh ROM outputs."""
        return self.gate_bits - 1

    @property
    def sigmoid(self) -> ActivationLUT:
        """The sigmoid ROM of this config."""
        return sigmoid_lut(self.lut_frac, self.lut_index_bits, self.gate_bits)

    @property
    def tanh(self) -> ActivationLUT:
        """The tanh ROM of this config."""
        return tanh_lut(self.lut_frac, self.lut_index_bits, self.gate_bits)

    def preactivation(self, acc: np.ndarray) -> np.ndarray:
        """Requantize int32 accumulators into the ROM input format."""
        return requantize(acc, self.multiplier, self.shift, self.lut_index_bits)


def _rnn_inputs(gates, qx, qh, qweight_ih, qweight_hh, bias_ih, bias_hh, config):
    if not isinstance(config, RNNQuantConfig):
        raise ValueError(f"config must be an RNNQuantConfig, not {type(config).__name__}")
    w_hh = check_int_array(qweight_hh, "qweight_hh", config.weight_bits)
    if w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise ValueError(f"qweight_hh must have shape ({gates}*hidden, hidden), not {w_hh.shape}")
    hidden = w_hh.shape[1]
    x = check_int_array(qx, "qx", config.act_bits)
    if x.ndim not in (1, 2):
        raise ValueError(f"qx must be 1-D (input,) or 2-D (batch, input), not {x.ndim}-D")
    w_ih = check_int_array(qweight_ih, "qweight_ih", config.weight_bits)
    if w_ih.shape != (gates * hidden, x.shape[-1]):
        raise ValueError(
            f"qweight_ih must have shape {(gates * hidden, x.shape[-1])}, not {w_ih.shape}"
        )
    h = check_int_array(qh, "qh", config.act_bits)
    if h.shape != x.shape[:-1] + (hidden,):
        raise ValueError(f"qh must have shape {x.shape[:-1] + (hidden,)}, not {h.shape}")
    a = linear(w_ih, x, _bias(bias_ih, gates * hidden, "bias_ih"))
    b = linear(w_hh, h, _bias(bias_hh, gates * hidden, "bias_hh"))
    return h, hidden, a, b


def lstm_step(
    qx: object,
    qh: object,
    qc: object,
    qweight_ih: object,
    qweight_hh: object,
    bias_ih: object = None,
    bias_hh: object = None,
    *,
    config: RNNQuantConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """One integer LSTM step (``torch.nn.LSTMCell`` semantics, gates i, f, g, o).

    Parameters
    ----------
    qx : array_like of int, shape (input,) or (batch, input)
        ``act_bits`` integers with ``act_frac`` fractional bits.
    qh : array_like of int, shape (hidden,) or (batch, hidden)
        Same format as ``qx``.
    qc : array_like of int, same shape as ``qh``
        ``cell_bits`` integers with ``cell_frac`` fractional bits.
    qweight_ih, qweight_hh : array_like of int, shapes (4*hidden, input), (4*hidden, hidden)
        ``weight_bits`` integers sharing one scale.
    bias_ih, bias_hh : array_like of int, shape (4*hidden,), optional
        int32 at the accumulator scale.
    config : RNNQuantConfig

    Returns
    -------
    h, c : numpy.ndarray of int32
        New hidden state (act format) and cell state (cell format), as in the module docstring.
    """
    h, hidden, a, b = _rnn_inputs(4, qx, qh, qweight_ih, qweight_hh, bias_ih, bias_hh, config)
    c = check_int_array(qc, "qc", config.cell_bits)
    if c.shape != h.shape:
        raise ValueError(f"qc must have shape {h.shape}, not {c.shape}")
    pre = config.preactivation(wrap32(a.astype(np.int64) + b))
    i, f, g, o = (pre[..., k * hidden : (k + 1) * hidden] for k in range(4))
    i, f, o = (config.sigmoid.apply(v).astype(np.int64) for v in (i, f, o))
    g = config.tanh.apply(g).astype(np.int64)
    gf = config.gate_frac
    c_sum = (f * c << gf) + (i * g << config.cell_frac)
    c_new = saturate(round_shift(c_sum, 2 * gf), config.cell_bits)
    tc = config.tanh.apply(round_shift(c_new, config.cell_frac - config.lut_frac))
    h_new = saturate(round_shift(o * tc, 2 * gf - config.act_frac), config.act_bits)
    return h_new.astype(np.int32), c_new.astype(np.int32)


def gru_step(
    qx: object,
    qh: object,
    qweight_ih: object,
    qweight_hh: object,
    bias_ih: object = None,
    bias_hh: object = None,
    *,
    config: RNNQuantConfig,
) -> np.ndarray:
    """One integer GRU step (``torch.nn.GRUCell`` semantics, gates r, z, n).

    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` and ``h' = (1 - z) * n + z * h``, with
    the integer rules of the module docstring.

    Parameters
    ----------
    qx : array_like of int, shape (input,) or (batch, input)
        ``act_bits`` integers with ``act_frac`` fractional bits.
    qh : array_like of int, shape (hidden,) or (batch, hidden)
        Same format as ``qx``.
    qweight_ih, qweight_hh : array_like of int, shapes (3*hidden, input), (3*hidden, hidden)
        ``weight_bits`` integers sharing one scale.
    bias_ih, bias_hh : array_like of int, shape (3*hidden,), optional
        int32 at the accumulator scale.
    config : RNNQuantConfig

    Returns
    -------
    numpy.ndarray of int32
        New hidden state in the activation format.
    """
    h, hidden, a, b = _rnn_inputs(3, qx, qh, qweight_ih, qweight_hh, bias_ih, bias_hh, config)
    a, b = a.astype(np.int64), b.astype(np.int64)
    gf = config.gate_frac
    rz = config.sigmoid.apply(
        config.preactivation(wrap32(a[..., : 2 * hidden] + b[..., : 2 * hidden]))
    )
    r, z = rz[..., :hidden].astype(np.int64), rz[..., hidden:].astype(np.int64)
    n_acc = wrap32(a[..., 2 * hidden :] + round_shift(r * b[..., 2 * hidden :], gf))
    n = config.tanh.apply(config.preactivation(n_acc)).astype(np.int64)
    h_sum = ((2**gf - z) * n << config.act_frac) + (z * h << gf)
    return saturate(round_shift(h_sum, 2 * gf), config.act_bits).astype(np.int32)
