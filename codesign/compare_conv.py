"""``codesign compare`` on a conv2d layer: the dense engine and the layer's sparse engine in RTL
against the layer's int8 convolution kernels on aarch64, over random input feature maps; see
:mod:`codesign.compare` for what is checked and how the two sides are compared.

The FPGA engines:

* a **pattern**-pruned 3x3 layer (stride 1 or 2, padding 0 or 1, the same both ways) runs the
  whole convolution on :class:`hw.pattern.PatternConv`, which reads the feature map from its
  activation memory;
* any other layer's sparse engine, and the **dense** engine always, run the convolution as its
  im2col products: one matrix-vector product of the ``out x in*kh*kw`` weight matrix per output
  position (:func:`im2col` gathers the window; the engines are :mod:`hw.dense`, :mod:`hw.bcr`
  for a BCR layer, :mod:`hw.unstructured` for any other sparse scheme). Every position runs in
  RTL, and a feature map's cycles are the sum of its positions' products. Gathering the windows
  is not counted: this is the dense engine at its best.

The ARM kernels are :func:`mobile.layers.layer_kernels` of the layer at the same input size: the
pattern kernel for a pattern layer, and the dense direct convolution.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from codesign.compare import (
    Comparison,
    FpgaResult,
    Synth,
    _check_fmax,
    check_compare_layer,
    with_clock,
)
from codesign.compare_linear import (
    _linear_model,
    _run_linear_engine,
    arm_kernel,
    engine_problem,
    matrix_engine_params,
    matrix_engines,
)

__all__ = ["compare_conv_layer", "conv_engines", "conv_engine_params", "conv_engine_problem",
           "im2col", "pattern_engine_problem"]


def pattern_engine_problem(layer: Any) -> str | None:
    """Why the pattern engine cannot run the pattern layer's convolution, or None: it runs 3x3
    kernels with stride 1 or 2 and padding 0 or 1, the same in both directions."""
    shp = layer.shape
    (sh, sw), (ph, pw) = tuple(shp.stride), tuple(shp.padding)
    if tuple(shp.kernel) != (3, 3):
        return f"its kernel is {shp.kernel[0]}x{shp.kernel[1]}, the pattern engine's 3x3"
    if sh != sw or sh not in (1, 2):
        return f"stride {sh}x{sw}: the pattern engine runs stride 1 or 2, the same both ways"
    if ph != pw or ph not in (0, 1):
        return f"padding {ph}x{pw}: the pattern engine runs padding 0 or 1, the same both ways"
    return None


def conv_engines(layer: Any) -> list[str]:
    """The FPGA engines of a conv2d layer, sparse first: ``["pattern", "dense"]`` for a
    pattern layer, else :func:`codesign.compare_linear.matrix_engines` of its scheme (run on
    the im2col products)."""
    from ir import Pattern

    if isinstance(layer.scheme, Pattern):
        return ["pattern", "dense"]
    return matrix_engines(layer.scheme)


def _conv_weight(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(qweight, mask)``: int64 ``(O, C, kh, kw)`` integer weights zero outside the mask (the
    weights :func:`mobile.layers.layer_kernels` gives the ARM kernels), boolean mask."""
    mask = np.asarray(layer.tensors["mask"]) != 0
    return np.where(mask, np.asarray(layer.tensors["qweight"], dtype=np.int64), 0), mask


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]) -> np.ndarray:
    """The windows of a ``(C, H, W)`` feature map as rows: ``(Ho * Wo, C * kh * kw)``, output
    positions row-major, each row ordered as the ``(O, C, kh, kw)`` weight reshaped to
    ``(O, C * kh * kw)`` (zero padding included), so ``row @ w2.T`` is that position's
    outputs."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(np.asarray(x, dtype=np.int64), ((0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    c, ho, wo = win.shape[:3]
    return np.ascontiguousarray(win.transpose(1, 2, 0, 3, 4).reshape(ho * wo, c * kh * kw))


def _out_size(layer: Any, image: tuple[int, int]) -> tuple[int, int]:
    shp = layer.shape
    return tuple((n + 2 * p - k) // s + 1 for n, p, k, s in
                 zip(image, shp.padding, shp.kernel, shp.stride, strict=True))


def conv_engine_params(layer: Any, engine: str, lanes: int, image: tuple[int, int],
                       slices: int = 1) -> dict[str, Any]:
    """Constructor keywords (besides ``lanes``) of ``engine`` sized to the conv2d ``layer`` on
    ``image``: the pattern engine's library, kept weights, channels, filters and input size;
    a matrix engine's :func:`codesign.compare_linear.matrix_engine_params` of the ``out x
    in*kh*kw`` matrix (the BCR engine's on ``slices`` slices). Also the keywords of
    :mod:`sim`'s ``emit_*``."""
    qw, mask = _conv_weight(layer)
    if engine == "pattern":
        lib = np.asarray(layer.scheme.library())
        o, c = qw.shape[:2]
        return {"weight_bits": layer.quant.bits, "act_bits": 8, "library_size": len(lib),
                "kept": int(lib[0].sum()), "max_channels": c, "max_filters": o,
                "max_height": int(image[0]), "max_width": int(image[1])}
    o = qw.shape[0]
    return matrix_engine_params(qw.reshape(o, -1), mask.reshape(o, -1), layer.scheme,
                                layer.quant.bits, engine, lanes, slices)


def conv_engine_problem(layer: Any, engine: str, lanes: int, image: tuple[int, int],
                        slices: int = 1) -> str | None:
    """Why ``engine`` sized to the conv2d ``layer`` on ``image`` cannot be built, or None."""
    if engine == "pattern":
        problem = pattern_engine_problem(layer)
        if problem is not None:
            return problem
    return engine_problem(engine, lanes, conv_engine_params(layer, engine, lanes, image,
                                                            slices))


def _run_pattern(layer: Any, qw: np.ndarray, mask: np.ndarray, x: np.ndarray, lanes: int,
                 params: dict[str, Any], simulator: str, cache_dir: str | Path | None
                 ) -> tuple[np.ndarray, list[int], list[int], Path]:
    """Every feature map of ``x`` on the pattern engine: ``(int32 outputs (maps, O, Ho, Wo),
    RTL cycles per map, model cycles per map, the Verilog that ran)``."""
    from hw.pattern import pattern_cycles
    from ir.pattern import encode_pattern
    from sim.pattern import emit_pattern, run_pattern_batch

    lib = np.asarray(layer.scheme.library())
    stride, pad = int(layer.shape.stride[0]), int(layer.shape.padding[0])
    build = {k: params[k] for k in ("library_size", "max_channels", "max_filters",
                                    "max_height", "max_width")}
    runs = run_pattern_batch([(qw, mask, lib, m, stride, pad) for m in x], lanes,
                             params["weight_bits"], params["act_bits"], simulator,
                             cache_dir=cache_dir, **build)
    verilog, _ = emit_pattern(lanes, cache_dir=cache_dir, **params)
    model = pattern_cycles(encode_pattern(qw, lib, mask), _out_size(layer, x.shape[2:]), lanes)
    return (np.stack([r.outputs for r in runs]), [r.cycles for r in runs], [model] * len(x),
            Path(verilog))


def _conv_fpga(engine: str, layer: Any, qw: np.ndarray, mask: np.ndarray, x: np.ndarray,
               want: np.ndarray, bias: np.ndarray | None, *, lanes: int, simulator: str,
               cache_dir: str | Path | None, slices: int = 1
               ) -> tuple[FpgaResult, np.ndarray]:
    """One engine on every feature map, checked: ``(result without a clock, the RTL's outputs
    plus the bias)``; ``want`` is ``ir.golden.conv2d`` with the bias."""
    from ir.golden import wrap32

    shp = layer.shape
    image = tuple(x.shape[2:])
    ho, wo = _out_size(layer, image)
    params = conv_engine_params(layer, engine, lanes, image, slices)
    o = qw.shape[0]
    w2, m2 = qw.reshape(o, -1), mask.reshape(o, -1)
    if engine == "pattern":
        outputs, cycles, model, verilog = _run_pattern(layer, qw, mask, x, lanes, params,
                                                       simulator, cache_dir)
        serial = _run_serial_pattern(layer, qw, mask, image)
    else:
        cols = np.concatenate([im2col(m, shp.kernel, shp.stride, shp.padding) for m in x])
        out2, cyc, verilog = _run_linear_engine(engine, w2, m2, cols, lanes, params, simulator,
                                                cache_dir)
        per = ho * wo
        outputs = out2.reshape(len(x), ho, wo, o).transpose(0, 3, 1, 2)
        mod = _linear_model(engine, w2, m2, cols, lanes, params)
        cycles = [int(sum(cyc[i * per:(i + 1) * per])) for i in range(len(x))]
        model = [int(sum(mod[i * per:(i + 1) * per])) for i in range(len(x))]
        ones = np.ones((1, w2.shape[1]), np.int64)
        serial = per * _linear_model(engine, w2, m2, ones, max(1, o), params)[0]
    with_bias = wrap32(outputs.astype(np.int64)
                       + (0 if bias is None else bias[None, :, None, None]))
    result = FpgaResult(engine, lanes, len(x), int(sum(cycles)), int(sum(model)), 0,
                        bool(np.array_equal(with_bias, want)), str(verilog),
                        tuple(layer.scheme.block) if engine == "bcr" else None, unit="image",
                        cycles_each=tuple(int(c) for c in cycles),
                        model_each=tuple(int(m) for m in model), serial_cycles=int(serial),
                        multipliers=lanes * params.get("kept", 1) * params.get("slices", 1),
                        slices=params.get("slices"))
    return result, with_bias


def _run_serial_pattern(layer: Any, qw: np.ndarray, mask: np.ndarray,
                        image: tuple[int, int]) -> int:
    """The pattern engine's cycle model with one lane per filter."""
    from hw.pattern import pattern_cycles
    from ir.pattern import encode_pattern

    lib = np.asarray(layer.scheme.library())
    return pattern_cycles(encode_pattern(qw, lib, mask), _out_size(layer, image),
                          max(1, qw.shape[0]))


def compare_conv_layer(layer: Any, *, image: tuple[int, int] = (16, 16), lanes: int = 8,
                       maps: int = 1, seed: int = 0, simulator: str = "verilator",
                       synth: Synth | None = None, fmax: dict[str, float] | None = None,
                       device: str | None = None, cache_dir: str | Path | None = None,
                       mobile_cache: Path | None = None, slices: int = 1,
                       echo: Callable[[str], None] = lambda s: None) -> Comparison:
    """Run one conv2d bundle layer on the FPGA engines and the ARM kernels (module docstring).

    Parameters
    ----------
    layer : ir.Layer
        Checked by :func:`codesign.compare.check_compare_layer` at ``image``.
    image : (int, int)
        The input height and width.
    lanes, maps, seed, simulator
        Engine lanes, how many random int8 feature maps (uniform in [-127, 127], drawn from
        ``seed``) run on both sides, the RTL simulator.
    slices : int, optional
        Slices of the BCR engine of a BCR layer (default 1).
    synth, fmax, device, cache_dir, mobile_cache, echo
        As :func:`codesign.compare_linear.compare_linear_layer` (``fmax`` keys: ``"dense"``
        and the sparse engine's or ``"sparse"``).

    Returns
    -------
    Comparison
        ``op == "conv2d"``, ``unit == "image"``; ``ok`` when every RTL output plus the bias
        equals ``ir.golden.conv2d``, every feature map's cycles equal the cycle model, every
        kernel passes its check and equals the RTL on every feature map.

    Raises
    ------
    ValueError
        The layer is refused, ``maps`` is below 1, or a given Fmax is no positive finite
        number.
    """
    from ir.golden import conv2d
    from mobile.layers import layer_kernels

    image = (int(image[0]), int(image[1]))
    check_compare_layer(layer, lanes, image=image, slices=slices)
    if isinstance(maps, bool) or not isinstance(maps, int) or maps < 1:
        raise ValueError(f"maps must be a positive integer, not {maps!r}")
    _check_fmax(fmax, "{} engine")
    kernels = layer_kernels(layer, "int8", image)
    qw, mask = _conv_weight(layer)
    bias = kernels[-1][2]["bias"]
    bias = None if bias is None else np.asarray(bias, dtype=np.int64)
    shp = layer.shape
    x = np.random.default_rng(seed).integers(-127, 128, size=(maps, qw.shape[1], *image),
                                             dtype=np.int64)
    want = conv2d(qw, x, bias, stride=tuple(shp.stride), padding=tuple(shp.padding))
    fpga, rtl = [], []
    for engine in conv_engines(layer):
        how = "the convolution" if engine == "pattern" else "im2col products"
        echo(f"  FPGA {engine} engine: RTL ({simulator}), {how}, {maps} feature map"
             f"{'s' if maps != 1 else ''} ...")
        result, with_bias = _conv_fpga(engine, layer, qw, mask, x, want, bias, lanes=lanes,
                                       simulator=simulator, cache_dir=cache_dir, slices=slices)
        rtl.append(with_bias)
        fpga.append(with_clock(result, fmax, synth, device, echo))
    arm = [arm_kernel(role, kind, params, x, rtl, seed=seed, mobile_cache=mobile_cache,
                      echo=echo, unit="image") for role, kind, params in kernels]
    block = tuple(layer.scheme.block) if "bcr" in conv_engines(layer) else None
    return Comparison(layer.name, "conv2d", qw.shape[1], qw.shape[0], layer.scheme.kind,
                      float(np.count_nonzero(mask)) / max(1, mask.size), layer.quant.bits,
                      maps, fpga, arm, None if device is None else device, seed, block,
                      simulator, image=image, kernel=tuple(shp.kernel),
                      stride=tuple(shp.stride), padding=tuple(shp.padding))
