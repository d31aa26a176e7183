"""References every generated kernel is checked against.

int8 kernels: the integer golden model of ``ir.golden`` (``linear``, ``conv2d``, ``lstm_step``,
``gru_step``), compared bit for bit. fp32 kernels: float64 numpy, compared with
:func:`fp32_close`: ``|y - ref| <= rtol * scale`` per element, where ``scale`` is the same
computation on absolute values (``|W| |x| + |b|`` for a product; 1 plus that for the RNN
states, whose outputs are bounded by 1), a relative error that stays meaningful under
cancellation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FP32_RTOL", "conv2d_f64", "fp32_close", "lstm_f64", "gru_f64"]

#: Relative tolerance of fp32 kernels against the float64 reference.
FP32_RTOL = 1e-5


def conv2d_f64(w: np.ndarray, x: np.ndarray, b: np.ndarray | None, stride: tuple[int, int],
               padding: tuple[int, int]) -> np.ndarray:
    """Float64 cross-correlation of ``x`` (c, h, w) with ``w`` (o, c, kh, kw), plus ``b``."""
    w = np.asarray(w, dtype=np.float64)
    xp = np.pad(np.asarray(x, dtype=np.float64),
                ((0, 0), (padding[0],) * 2, (padding[1],) * 2))
    win = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(1, 2))
    win = win[:, ::stride[0], ::stride[1]]
    out = np.einsum("cyxij,ocij->oyx", win, w)
    if b is not None:
        out = out + np.asarray(b, dtype=np.float64)[:, None, None]
    return out


def fp32_close(y: np.ndarray, ref: np.ndarray, scale: np.ndarray,
               rtol: float = FP32_RTOL) -> tuple[bool, float]:
    """``(ok, worst)``: ``worst = max |y - ref| / scale`` (scale floored at the smallest
    normal float32) and ``ok = worst <= rtol``. A NaN error (a NaN output, or an infinite one
    against an infinite reference) counts as infinite: a kernel that overflowed never passes,
    and ``max`` over several checks, which skips NaN, cannot hide it."""
    s = np.maximum(np.asarray(scale, dtype=np.float64), np.finfo(np.float32).tiny)
    with np.errstate(invalid="ignore"):
        err = np.abs(np.asarray(y, dtype=np.float64) - ref) / s
    err = np.where(np.isnan(err), np.inf, err)
    worst = float(err.max()) if err.size else 0.0
    return worst <= rtol, worst


def _sig(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def lstm_f64(x, h, c, w_ih, w_hh, b_ih, b_hh) -> tuple[np.ndarray, np.ndarray]:
    """Float64 ``torch.nn.LSTMCell`` step (gates i, f, g, o); returns ``(h', c')``."""
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    gates = f64(w_ih) @ f64(x) + f64(w_hh) @ f64(h) + f64(b_ih) + f64(b_hh)
    i, f, g, o = np.split(gates, 4)
    c2 = _sig(f) * f64(c) + _sig(i) * np.tanh(g)
    return _sig(o) * np.tanh(c2), c2


def gru_f64(x, h, w_ih, w_hh, b_ih, b_hh) -> np.ndarray:
    """Float64 ``torch.nn.GRUCell`` step (gates r, z, n); returns ``h'``."""
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    a = f64(w_ih) @ f64(x) + f64(b_ih)
    bb = f64(w_hh) @ f64(h) + f64(b_hh)
    ar, az, an = np.split(a, 3)
    br, bz, bn = np.split(bb, 3)
    r, z = _sig(ar + br), _sig(az + bz)
    n = np.tanh(an + r * bn)
    return (1 - z) * n + z * f64(h)
