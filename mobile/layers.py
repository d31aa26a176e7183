"""Bundle layers -> generator parameters: which kernels a layer gets and with what arrays.

Per layer (``op`` and scheme), the generated kernels are:

=======================  ===============================================================
layer                    kernels (role: kind)
=======================  ===============================================================
linear, BCR              sparse: ``bcr`` (the layer's block), csr: ``csr``, dense: ``dense``
linear, other sparse     sparse: ``csr``, dense: ``dense``
linear, dense scheme     dense: ``dense``
conv2d, pattern          sparse: ``pattern``, dense: ``conv``
conv2d, other            dense: ``conv`` (no sparse convolution generator for the scheme)
lstm/gru, BCR            sparse: cell on ``bcr`` products, csr: on ``csr``, dense: on ``dense``
lstm/gru, other sparse   sparse: cell on ``csr`` products, dense: on ``dense``
=======================  ===============================================================

dtype ``int8`` uses the layer's integer weights (``qweight``, at most 8 bits) and int32 biases
``round(bias / (scale * act_scale))``; RNN steps use ``RNNQuantConfig.from_scales(scale,
act_scale)`` and biases ``round(bias / (scale * 2**-act_frac))``, the scale of its accumulators
(the same as ``act_scale`` when that is a power of two). ``act_scale`` is the layer's, else ``2**-6`` (8-bit activations with 6 fractional
bits, as ``codesign verilog``). ``fp32`` uses the float weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ir import BCR, Dense, Layer, Pattern
from ir.golden import RNNQuantConfig

__all__ = ["layer_kernels", "layer_dtype", "DEFAULT_ACT_SCALE"]

DEFAULT_ACT_SCALE = 2.0 ** -6


def layer_dtype(layer: Layer, dtype: str = "auto") -> str:
    """``fp32``/``int8`` as asked; ``auto``: int8 when the layer has integer weights of at
    most 8 bits, else fp32. ``ValueError`` for int8 on a layer without them."""
    q = layer.quant
    fits = q is not None and q.bits <= 8 and q.signed
    if dtype == "auto":
        return "int8" if fits else "fp32"
    if dtype == "int8" and not fits:
        why = "has no quantized weights" if q is None else f"has {q.bits}-bit weights"
        raise ValueError(f"layer {layer.name!r} {why}; int8 kernels need signed weights of at "
                         "most 8 bits (use --dtype fp32)")
    if dtype not in ("fp32", "int8"):
        raise ValueError(f"dtype must be auto, fp32 or int8, not {dtype!r}")
    return dtype


def _bias(layer: Layer, key: str, dtype: str) -> np.ndarray | None:
    b = layer.tensors.get(key)
    if b is None or dtype == "fp32":
        return b
    q = layer.quant
    act = q.act_scale or DEFAULT_ACT_SCALE
    return np.clip(np.rint(b.astype(np.float64) / (q.scale * act)), -2**31, 2**31 - 1
                   ).astype(np.int32)


def _w(layer: Layer, suffix: str, dtype: str) -> np.ndarray:
    return layer.tensors[("qweight" if dtype == "int8" else "weight") + suffix]


def layer_kernels(layer: Layer, dtype: str = "auto", image: tuple[int, int] = (16, 16)
                  ) -> list[tuple[str, str, dict[str, Any]]]:
    """``[(role, kind, params), ...]`` for :func:`mobile.build.build_kernel`, sparse first.

    ``image`` is the (h, w) input of a convolution layer. ``ValueError`` naming the layer for
    what cannot be generated (grouped convolution, int8 without integer weights or with scales
    that have no fixed-point step, a kernel larger than the padded image). Cheap: callers
    check every layer with it before building any.
    """
    dt = layer_dtype(layer, dtype)
    scheme = layer.scheme
    if layer.op == "linear":
        base = {"weight": _w(layer, "", dt), "mask": layer.tensors["mask"],
                "bias": _bias(layer, "bias", dt), "dtype": dt}
        out = []
        if isinstance(scheme, BCR):
            out.append(("sparse", "bcr", {**base, "block": tuple(scheme.block)}))
            out.append(("csr", "csr", base))
        elif not isinstance(scheme, Dense):
            out.append(("sparse", "csr", base))
        return out + [("dense", "dense", base)]
    if layer.op == "conv2d":
        shp = layer.shape
        if shp.groups != 1:
            raise ValueError(f"layer {layer.name!r} is a grouped convolution (groups "
                             f"{shp.groups}); mobile generates groups=1 only")
        (kh, kw), (ph, pw) = shp.kernel, shp.padding
        if kh > image[0] + 2 * ph or kw > image[1] + 2 * pw:
            raise ValueError(f"layer {layer.name!r}: its {kh}x{kw} kernel does not fit the "
                             f"{image[0]}x{image[1]} input image (padding {ph}x{pw}); the "
                             f"image must be at least {max(1, kh - 2 * ph)}x"
                             f"{max(1, kw - 2 * pw)}")
        base = {"weight": _w(layer, "", dt), "mask": layer.tensors["mask"],
                "bias": _bias(layer, "bias", dt), "dtype": dt, "image": tuple(image),
                "stride": tuple(shp.stride), "padding": tuple(shp.padding)}
        out = []
        if isinstance(scheme, Pattern) and tuple(shp.kernel) == (3, 3):
            out.append(("sparse", "pattern", {**base, "library": scheme.library()}))
        return out + [("dense", "conv", base)]
    base = {"weight_ih": _w(layer, "_ih", dt), "weight_hh": _w(layer, "_hh", dt),
            "mask_ih": layer.tensors["mask_ih"], "mask_hh": layer.tensors["mask_hh"],
            "bias_ih": _bias(layer, "bias_ih", dt), "bias_hh": _bias(layer, "bias_hh", dt),
            "dtype": dt}
    if dt == "int8":
        q = layer.quant
        act = q.act_scale or DEFAULT_ACT_SCALE
        try:
            cfg = RNNQuantConfig.from_scales(q.scale, act, weight_bits=q.bits, act_bits=8)
        except ValueError as exc:
            raise ValueError(f"layer {layer.name!r}: its weight scale {q.scale:g} (quant.scale) "
                             f"and activation scale {act:g} (quant.act_scale) give no int8 "
                             f"fixed-point step: {exc}; use --dtype fp32") from None
        base["config"] = cfg
        # The integer cell reads x and h with act_frac fractional bits, so its accumulators
        # are at scale * 2**-act_frac (its gate multiplier says so), not scale * act_scale
        # when act_scale is no power of two; the RNN engines round the biases the same way.
        for key in ("bias_ih", "bias_hh"):
            b = layer.tensors.get(key)
            if b is not None:
                acc_scale = q.scale * 2.0 ** -cfg.act_frac
                base[key] = np.clip(np.rint(b.astype(np.float64) / acc_scale), -2**31,
                                    2**31 - 1).astype(np.int32)
    out = []
    if isinstance(scheme, BCR):
        out.append(("sparse", layer.op, {**base, "matvec": "bcr", "block": tuple(scheme.block)}))
        out.append(("csr", layer.op, {**base, "matvec": "csr"}))
    elif not isinstance(scheme, Dense):
        out.append(("sparse", layer.op, {**base, "matvec": "csr"}))
    return out + [("dense", layer.op, {**base, "matvec": "dense"})]
