"""Export a torch model's prunable layers into an ``ir`` bundle, and load one back.

Prunable layers are ``nn.Conv2d``, ``nn.Linear``, and single-layer unidirectional ``nn.LSTM`` and
``nn.GRU``; they are exported in ``model.named_modules()`` order under their module names.
A layer's mask is taken from ``masks`` (module name -> 0/1 tensor, or ``{"ih": ..., "hh": ...}``
for RNNs) or is all ones; weights are multiplied by the mask before export.

Quantization in :func:`export_model` is symmetric per layer with ``scale = max|W| / (2**(bits-1)
- 1)`` and round half to even. :func:`export` exports a compression plan instead: scheme records,
masks and the error-minimising scales of :mod:`pruning.quantize`, with integer weights
``n = pruning.quantize.to_integers(w, scale, bits, mask)`` and float weights stored as exactly
``float32(n) * float32(scale)``, so a model holding quantized weights (as
:func:`pruning.compress.compress` leaves it) is reproduced bit for bit; :func:`apply_bundle`
writes a bundle's weights back into a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ir import Bundle, Dense, Layer, QuantSpec, Scheme
from pruning.plan import conv_problem

__all__ = ["export_model", "layer_from_module", "quantize_symmetric", "export", "apply_bundle"]


def quantize_symmetric(w: np.ndarray, bits: int, scale: float | None = None) -> tuple[np.ndarray, float]:
    """Quantize ``w`` to ``bits``-bit symmetric levels; return (integers, scale)."""
    qmax = 2 ** (bits - 1) - 1
    if scale is None:
        peak = float(np.max(np.abs(w))) if w.size else 0.0
        scale = peak / qmax if peak > 0 else 1.0
    q = np.clip(np.rint(w / scale), -qmax, qmax)
    dtype = np.int8 if bits <= 8 else np.int16
    return q.astype(dtype), float(scale)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _describe(name: str, module: nn.Module) -> tuple[str, dict[str, Any], dict[str, Any],
                                                     dict[str, Any]]:
    """(op, shape record, weight parts by suffix, biases by tensor key) of a prunable module."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        if isinstance(module, nn.Conv2d):
            op = "conv2d"
            problem = conv_problem(module)
            if problem is not None:
                raise ValueError(f"layer {name!r}: {problem}")
            shape = {"out_channels": module.out_channels, "in_channels": module.in_channels,
                     "kernel": list(module.kernel_size), "stride": list(module.stride),
                     "padding": list(module.padding), "groups": module.groups}
        else:
            op = "linear"
            shape = {"out_features": module.out_features, "in_features": module.in_features}
        return op, shape, {"": module.weight}, {"bias": module.bias}
    if isinstance(module, (nn.LSTM, nn.GRU)):
        if module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0):
            raise ValueError(f"layer {name!r}: only single-layer, unidirectional {type(module).__name__} "
                             "without projection is supported")
        op = "lstm" if isinstance(module, nn.LSTM) else "gru"
        shape = {"input_size": module.input_size, "hidden_size": module.hidden_size,
                 "gate_order": ["i", "f", "g", "o"] if op == "lstm" else ["r", "z", "n"]}
        return op, shape, {"_ih": module.weight_ih_l0, "_hh": module.weight_hh_l0}, {
            "bias_ih": getattr(module, "bias_ih_l0", None),
            "bias_hh": getattr(module, "bias_hh_l0", None)}
    raise TypeError(f"layer {name!r}: {type(module).__name__} is not a prunable layer")


def layer_from_module(name: str, module: nn.Module, scheme: Scheme | None = None,
                      mask: object = None, bits: int | None = None,
                      scale: float | None = None) -> Layer:
    """One ``ir.Layer`` from a torch module (see the module docstring for what is supported)."""
    scheme = scheme if scheme is not None else Dense()
    tensors: dict[str, np.ndarray] = {}
    op, shape, parts, biases = _describe(name, module)
    weights = {s: _np(w) for s, w in parts.items()}
    if scale is None and bits is not None:
        peak = max(float(np.max(np.abs(w))) for w in weights.values())
        scale = peak / (2 ** (bits - 1) - 1) if peak > 0 else 1.0
    for suffix, w in weights.items():
        m = mask.get(suffix.lstrip("_"), None) if isinstance(mask, Mapping) else mask
        m = np.ones(w.shape, np.uint8) if m is None else np.asarray(
            m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else m).astype(np.uint8)
        w = (w * m).astype(np.float32)
        tensors["weight" + suffix] = w
        tensors["mask" + suffix] = m
        if bits is not None:
            tensors["qweight" + suffix] = quantize_symmetric(w, bits, scale)[0]
    for key, b in biases.items():
        if b is not None:
            tensors[key] = _np(b)
    quant = QuantSpec(bits=bits, scale=float(scale)) if bits is not None else None
    return Layer(name=name, op=op, shape=shape, scheme=scheme, quant=quant, tensors=tensors)


def export_model(model: nn.Module, model_name: str, bits: int | None = None,
                 schemes: Mapping[str, Scheme] | None = None,
                 masks: Mapping[str, object] | None = None,
                 scales: Mapping[str, float] | None = None) -> Bundle:
    """Export every prunable layer of ``model`` into a bundle (dense unless ``schemes`` says)."""
    schemes, masks, scales = schemes or {}, masks or {}, scales or {}
    layers = [layer_from_module(name, mod, schemes.get(name), masks.get(name), bits,
                                scales.get(name))
              for name, mod in model.named_modules()
              if isinstance(mod, (nn.Conv2d, nn.Linear, nn.LSTM, nn.GRU))]
    return Bundle(model=model_name, layers=tuple(layers))


_PRUNABLE = (nn.Conv2d, nn.Linear, nn.LSTM, nn.GRU)


def _mask_np(mask: Any) -> np.ndarray:
    """A 0/1 (or bool) tensor or array as a uint8 numpy array."""
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return (arr != 0).astype(np.uint8)


def export(model: nn.Module, plan: Any, *, masks: Mapping[str, Mapping[str, Any]] | None = None,
           scales: Mapping[str, float | None] | None = None,
           libraries: Mapping[str, np.ndarray] | None = None,
           model_name: str | None = None) -> Bundle:
    """Export ``model`` compressed by ``plan`` as a bundle.

    Parameters
    ----------
    model : torch.nn.Module
        Its prunable layers are exported in ``named_modules()`` order; layers the plan does not
        reach are exported dense and float.
    plan : pruning.plan.Plan or mapping of layer name to LayerPlan
        A plan (resolved against ``model``) or the result of :func:`pruning.plan.resolve`.
    masks : mapping, optional
        Per planned layer, ``{"": mask}`` or ``{"ih": ..., "hh": ...}`` (0/1 or bool), e.g.
        ``Projection.masks`` from :mod:`pruning.admm`. Without it the model's weights are
        projected (:func:`pruning.admm.project_weights`, ``mode="joint"``, pattern libraries
        chosen on them unless ``libraries`` is given) and the bundle holds that projection.
    scales : mapping, optional
        Quantization scale per quantized layer; missing ones are
        :func:`pruning.quantize.best_scale` of the kept weights.
    libraries : mapping, optional
        The pattern library of each pattern layer, for its ``ir`` scheme record. A missing one
        is the set of patterns its mask uses (with ``masks``) or is chosen on the weights.
    model_name : str, optional
        The bundle's model name (default: the model's class name).

    Returns
    -------
    ir.Bundle
        Per planned layer: the scheme record (``config.to_ir``), masks, quant record, integer
        weights (``to_integers``), float weights ``float32(n) * float32(scale)`` (or masked float
        weights), biases. Invalid results raise :class:`ir.BundleError`.
    """
    from pruning.admm import project_weights, select_libraries
    from pruning.plan import Plan, resolve, weight_params
    from pruning.quantize import best_scale, to_integers

    plans = resolve(plan, model) if isinstance(plan, Plan) else dict(plan)
    libraries = dict(libraries or {})
    missing = {n: p for n, p in plans.items() if p.config.kind == "pattern" and n not in libraries}
    if masks is not None:                   # the patterns the masks use form the library
        for n in list(missing):
            kernels = _mask_np(masks[n][""]).reshape(-1, 9)
            used = np.unique(kernels[kernels.any(axis=1)], axis=0)
            if len(used):
                libraries[n] = used.reshape(-1, 3, 3)
                del missing[n]
    libraries |= select_libraries(model, missing)
    modules = {n: m for n, m in model.named_modules() if isinstance(m, _PRUNABLE)}
    if masks is None:
        current = {n: {s: p.detach() for s, p in weight_params(modules[n]).items()} for n in plans}
        proj = project_weights(plans, current, mode="joint", libraries=libraries)
        masks, scales = proj.masks, {**proj.scales, **(scales or {})}
    scales = dict(scales or {})
    layers = []
    for name, module in modules.items():
        lp = plans.get(name)
        if lp is None:
            layers.append(layer_from_module(name, module))
            continue
        op, shape, parts, biases = _describe(name, module)
        ws = {s: _np(p) for s, p in weight_params(module).items()}
        ms = {s: _mask_np(masks[name][s]) for s in ws}
        q = scales.get(name)
        if lp.bits is not None and q is None:
            q = best_scale(list(ws.values()), lp.bits, list(ms.values()))
        tensors: dict[str, np.ndarray] = {}
        for s, w in ws.items():
            key = f"_{s}" if s else ""
            tensors["mask" + key] = ms[s]
            if lp.bits is None:
                tensors["weight" + key] = (w * ms[s]).astype(np.float32)
            else:
                n = to_integers(w, q, lp.bits, ms[s])
                tensors["qweight" + key] = n
                tensors["weight" + key] = n.astype(np.float32) * np.float32(q)
        tensors |= {k: _np(b) for k, b in biases.items() if b is not None}
        scheme = lp.config.to_ir(library=libraries.get(name))
        quant = QuantSpec(bits=lp.bits, scale=float(q)) if lp.bits is not None else None
        layers.append(Layer(name=name, op=op, shape=shape, scheme=scheme, quant=quant,
                            tensors=tensors))
    return Bundle(model=model_name or type(model).__name__, layers=tuple(layers))


def apply_bundle(model: nn.Module, bundle: Bundle, *, dequantize: bool = True) -> nn.Module:
    """Write ``bundle``'s weights and biases into ``model`` in place, and return it.

    A quantized layer gets ``float32(qweight) * float32(scale)`` (``dequantize=True``) or its
    stored float weights; a float layer its float weights. Every bundle layer must be a module
    of ``model`` with the same tensor shapes; ``ValueError`` names the layer otherwise.
    """
    modules = dict(model.named_modules())
    with torch.no_grad():
        for layer in bundle.layers:
            module = modules.get(layer.name)
            if module is None or not isinstance(module, _PRUNABLE):
                raise ValueError(f"layer {layer.name!r}: no such prunable layer in the model")
            op, _, parts, biases = _describe(layer.name, module)
            if op != layer.op:      # an LSTM's bundle layer on a Linear was a KeyError
                raise ValueError(f"layer {layer.name!r}: the bundle has a {layer.op} layer, the "
                                 f"model a {op} ({type(module).__name__})")
            for key, param in biases.items():
                if (param is None) != (key not in layer.tensors):
                    have = "has" if key in layer.tensors else "has no"
                    raise ValueError(f"layer {layer.name!r}: the bundle {have} {key}, the model "
                                     f"{'has' if param is not None else 'has no'} bias")
            values = {}
            for suffix, param in parts.items():
                w = layer.tensors["weight" + suffix]
                if layer.quant is not None and dequantize:
                    w = (layer.tensors["qweight" + suffix].astype(np.float32)
                         * np.float32(layer.quant.scale))
                values[param] = w
            values |= {b: layer.tensors[k] for k, b in biases.items()
                       if b is not None and k in layer.tensors}
            for param, value in values.items():
                if tuple(param.shape) != value.shape:
                    raise ValueError(f"layer {layer.name!r}: bundle tensor of shape "
                                     f"{list(value.shape)} does not fit {list(param.shape)}")
                param.copy_(torch.from_numpy(np.array(value)).to(param.dtype))
    return model
