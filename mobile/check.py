"""Check a built kernel against its reference on random inputs.

int8 kernels must equal the ``ir.golden`` integer model bit for bit; fp32 kernels must be within
:data:`mobile.reference.FP32_RTOL` of float64 numpy (relative to the absolute-value computation,
see :mod:`mobile.reference`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ir import golden
from mobile.build import Kernel
from mobile.gen_conv import conv_geometry
from mobile.reference import FP32_RTOL, conv2d_f64, fp32_close, gru_f64, lstm_f64

__all__ = ["CheckResult", "check_kernel", "random_inputs", "reference"]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`check_kernel`.

    ``ok``; ``mismatches`` (int8: outputs differing from the golden model) or ``worst``
    (fp32: the largest relative error); ``message``, one line for people.
    """

    ok: bool
    kind: str
    dtype: str
    target: str
    mismatches: int
    worst: float
    message: str


def random_inputs(kernel: Kernel, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random inputs of the kernel's shapes: standard normal (fp32), full int8 range (int8);
    RNN activations within ``act_bits`` and the cell within ``cell_bits`` of its config."""
    rng = np.random.default_rng(seed)
    cfg = (kernel.params or {}).get("config")
    out = []
    for a in kernel.source.inputs:
        if np.dtype(a.dtype) == np.float32:
            out.append(rng.standard_normal(a.shape).astype(np.float32))
            continue
        bits = 8
        if cfg is not None:
            bits = cfg.cell_bits if a.name == "c" else cfg.act_bits
        hi = 2 ** (bits - 1) - 1
        out.append(rng.integers(-hi, hi + 1, a.shape).astype(a.dtype))
    return tuple(out)


def _masked(p: dict[str, Any], w: str, m: str) -> np.ndarray:
    weight = np.asarray(p[w])
    mask = p.get(m)
    return weight if mask is None else np.where(np.asarray(mask).astype(bool), weight, 0)


def _requant(p: dict[str, Any], acc: np.ndarray) -> np.ndarray:
    rq = p.get("requant")
    if rq is None:
        return acc
    out = golden.requantize(acc, int(rq[0]), int(rq[1]), int(rq[2]))
    return golden.relu(out) if len(rq) == 4 and rq[3] else out


def reference(kernel: Kernel, inputs: tuple[Any, ...]
              ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...] | None]:
    """``(outputs, scales)``: the golden outputs (int8) or float64 outputs with the scales of
    :func:`mobile.reference.fp32_close` (fp32)."""
    p, src = kernel.params or {}, kernel.source
    if not p:
        raise ValueError("the kernel has no parameters (build it with build_kernel)")
    kind, fp = src.kind, src.dtype == "fp32"
    if kind in ("dense", "csr", "bcr"):
        w, (x,) = _masked(p, "weight", "mask"), inputs
        b = p.get("bias")
        b = np.zeros(w.shape[0]) if b is None else np.asarray(b)
        if not fp:
            return (_requant(p, golden.linear(w.astype(np.int64), x, b.astype(np.int64))),), None
        w64 = w.astype(np.float64)
        return (w64 @ x + b,), (np.abs(w64) @ np.abs(x) + np.abs(b),)
    if kind in ("conv", "pattern"):
        w, (x,) = _masked(p, "weight", "mask"), inputs
        g = conv_geometry(w.shape, p.get("image", (8, 8)), p.get("stride", 1),
                          p.get("padding", 0))
        s, pad = (g["sh"], g["sw"]), (g["ph"], g["pw"])
        b = p.get("bias")
        b = np.zeros(w.shape[0]) if b is None else np.asarray(b)
        if not fp:
            acc = golden.conv2d(w.astype(np.int64), x, b.astype(np.int64), s, pad)
            return (_requant(p, acc),), None
        return ((conv2d_f64(w, x, b, s, pad),),
                (conv2d_f64(np.abs(w), np.abs(x), np.abs(b), s, pad),))
    wi, wh = _masked(p, "weight_ih", "mask_ih"), _masked(p, "weight_hh", "mask_hh")
    bi = np.zeros(wi.shape[0]) if p.get("bias_ih") is None else np.asarray(p["bias_ih"])
    bh = np.zeros(wi.shape[0]) if p.get("bias_hh") is None else np.asarray(p["bias_hh"])
    if not fp:
        cfg = p["config"]
        ints = [w.astype(np.int64) for w in (wi, wh, bi, bh)]
        if kind == "lstm":
            return golden.lstm_step(*inputs, *ints, config=cfg), None
        return (golden.gru_step(*inputs, *ints, config=cfg),), None
    x, h = inputs[0], inputs[1]
    gate = np.abs(wi) @ np.abs(x) + np.abs(wh) @ np.abs(h) + np.abs(bi) + np.abs(bh)
    per_unit = 1.0 + gate.reshape(-1, len(h)).max(axis=0)
    if kind == "lstm":
        per_unit = per_unit + np.abs(inputs[2])
        return lstm_f64(*inputs, wi, wh, bi, bh), (per_unit, per_unit)
    return (gru_f64(x, h, wi, wh, bi, bh),), (per_unit,)


def check_kernel(kernel: Kernel, seed: int = 0, vectors: int = 1) -> CheckResult:
    """Run ``kernel`` on ``vectors`` random input sets and compare with :func:`reference`."""
    src = kernel.source
    mismatches, worst, total = 0, 0.0, 0
    for v in range(vectors):
        ins = random_inputs(kernel, seed + v)
        got = kernel(*ins)
        ref, scales = reference(kernel, ins)
        for k, (g, r) in enumerate(zip(got, ref, strict=True)):
            total += r.size
            if scales is None:
                mismatches += int(np.count_nonzero(g.astype(np.int64) != r.astype(np.int64)))
            else:
                worst = max(worst, fp32_close(g, r, scales[k])[1])
    if src.dtype == "int8":
        ok = mismatches == 0
        what = (f"bit-exact against ir.golden ({total} outputs)" if ok else
                f"{mismatches} of {total} outputs differ from ir.golden")
    else:
        ok = worst <= FP32_RTOL
        what = (f"max relative error {worst:.2e} ({'within' if ok else 'ABOVE'} "
                f"{FP32_RTOL:g}, {total} outputs)")
    msg = f"{src.kind} {src.dtype} on {kernel.target}: {'PASS' if ok else 'FAIL'}, {what}"
    return CheckResult(ok, src.kind, src.dtype, kernel.target, mismatches, worst, msg)
