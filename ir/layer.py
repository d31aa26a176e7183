"""Layer records: the frozen dataclasses a bundle is made of, and their validation.

A :class:`Layer` holds its name, op, shape, scheme, quantization and tensors. Constructing one
validates everything (tensor names, shapes and dtypes, 0/1 masks that obey the declared scheme,
pruned weights that are zero, quantized weights within their bit width) and raises
:class:`BundleError` naming the layer and the field. Statistics are computed from the tensors,
never typed by hand.

Tensor names (keys of ``Layer.tensors``, stored in the safetensors file as ``{name}.{key}``):

=============  =============================================================================
op             tensors
=============  =============================================================================
conv2d/linear  ``weight`` float32, ``mask`` uint8, ``qweight`` int8/int16 (when quantized),
               ``bias`` float32 (optional)
lstm/gru       ``weight_ih``, ``weight_hh``, ``mask_ih``, ``mask_hh``, ``qweight_ih``,
               ``qweight_hh`` (when quantized), ``bias_ih``, ``bias_hh`` (optional, together)
=============  =============================================================================

Shapes are PyTorch's: conv2d ``(out, in/groups, kh, kw)``, linear ``(out, in)``, RNN weights
``(G*hidden, input)`` and ``(G*hidden, hidden)`` with the G gates stacked in PyTorch's order
(LSTM ``i, f, g, o``; GRU ``r, z, n``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

from ir.schemes import BCR, NM, Column, Dense, Filter, Pattern, Scheme, Unstructured, matrix_view

__all__ = [
    "BundleError", "ConvShape", "LinearShape", "RNNShape", "QuantSpec", "Stats", "Layer",
    "OPS", "GATE_ORDER", "check_layer_name",
]

OPS = ("conv2d", "gru", "linear", "lstm")
GATE_ORDER = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
_QDTYPES = (np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32))


class BundleError(ValueError):
    """A bundle or layer that is not valid. The message names the layer and the field."""


def _err(layer: str, fieldname: str, problem: str) -> BundleError:
    return BundleError(f"layer {layer!r}: field {fieldname!r}: {problem}")


def check_layer_name(name: Any) -> str:
    """Return ``name`` if it is a usable layer name, else raise :class:`BundleError`.

    Allowed: a non-empty string without a path separator (``/``, ``\\``) or control character.
    Dots are allowed (PyTorch module names such as ``features.0``).
    """
    if not isinstance(name, str) or not name:
        raise BundleError(f"layer name must be a non-empty string, not {name!r}")
    if "/" in name or "\\" in name:
        raise BundleError(f"layer name {name!r} contains a path separator")
    if re.search(r"[\x00-\x1f\x7f]", name):
        raise BundleError(f"layer name {name!r} contains a control character")
    return name


def _int(layer: str, fieldname: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise _err(layer, fieldname, f"must be {kind}, not {value!r}")
    return value


def _pair(layer: str, fieldname: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _err(layer, fieldname, f"must be a pair of integers, not {value!r}")
    return (_int(layer, fieldname, value[0], minimum), _int(layer, fieldname, value[1], minimum))


@dataclass(frozen=True)
class ConvShape:
    """A 2-D convolution: PyTorch ``Conv2d``'s hyper-parameters."""

    out_channels: int
    in_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1

    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)


@dataclass(frozen=True)
class LinearShape:
    """A fully connected layer: ``out_features x in_features``."""

    out_features: int
    in_features: int

    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)


@dataclass(frozen=True)
class RNNShape:
    """One LSTM or GRU layer (single direction): sizes and PyTorch's gate order."""

    input_size: int
    hidden_size: int
    gate_order: tuple[str, ...]


def _parse_shape(name: str, op: str, rec: Any) -> ConvShape | LinearShape | RNNShape:
    if isinstance(rec, (ConvShape, LinearShape, RNNShape)):
        rec = shape_to_json(rec)
    if not isinstance(rec, dict):
        raise _err(name, "shape", f"must be an object, not {type(rec).__name__}")
    need = {"conv2d": ("out_channels", "in_channels", "kernel", "stride", "padding", "groups"),
            "linear": ("out_features", "in_features"),
            "lstm": ("input_size", "hidden_size", "gate_order"),
            "gru": ("input_size", "hidden_size", "gate_order")}[op]
    for key in need:
        if key not in rec:
            raise _err(name, "shape", f"{key!r} is missing")
    extra = sorted(set(rec) - set(need))
    if extra:
        raise _err(name, "shape", f"unknown key {extra[0]!r}; allowed: {', '.join(need)}")
    if op == "conv2d":
        shape = ConvShape(_int(name, "shape.out_channels", rec["out_channels"]),
                          _int(name, "shape.in_channels", rec["in_channels"]),
                          _pair(name, "shape.kernel", rec["kernel"]),
                          _pair(name, "shape.stride", rec["stride"]),
                          _pair(name, "shape.padding", rec["padding"], 0),
                          _int(name, "shape.groups", rec["groups"]))
        if shape.in_channels % shape.groups or shape.out_channels % shape.groups:
            raise _err(name, "shape.groups", f"{shape.groups} does not divide in_channels "
                       f"{shape.in_channels} and out_channels {shape.out_channels}")
        return shape
    if op == "linear":
        return LinearShape(_int(name, "shape.out_features", rec["out_features"]),
                           _int(name, "shape.in_features", rec["in_features"]))
    order = tuple(rec["gate_order"]) if isinstance(rec["gate_order"], (list, tuple)) else None
    if order != GATE_ORDER[op]:
        raise _err(name, "shape.gate_order", f"must be {list(GATE_ORDER[op])} (PyTorch's order) "
                   f"for {op}, not {rec['gate_order']!r}")
    return RNNShape(_int(name, "shape.input_size", rec["input_size"]),
                    _int(name, "shape.hidden_size", rec["hidden_size"]), order)


def shape_to_json(shape: ConvShape | LinearShape | RNNShape) -> dict[str, Any]:
    """The JSON record of a shape (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in shape.__dict__.items()}


@dataclass(frozen=True)
class QuantSpec:
    """Per-layer fixed-point weight quantization: ``weight ~= qweight * scale``.

    Signed levels are ``{0, +-1, ..., +-(2**(bits-1) - 1)}`` (symmetric, as ADMM-NN's equal-interval
    levels); unsigned ``{0, ..., 2**bits - 1}``. ``act_bits``/``act_scale`` optionally record the
    activation format the integer model uses.
    """

    bits: int
    scale: float
    signed: bool = True
    act_bits: int | None = None
    act_scale: float | None = None

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1) - 1) if self.signed else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2 ** self.bits - 1

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _parse_quant(name: str, rec: Any) -> QuantSpec | None:
    if rec is None or isinstance(rec, QuantSpec):
        q = rec
    elif not isinstance(rec, dict):
        raise _err(name, "quant", f"must be null or an object, not {type(rec).__name__}")
    else:
        allowed = ("bits", "scale", "signed", "act_bits", "act_scale")
        extra = sorted(set(rec) - set(allowed))
        if extra:
            raise _err(name, "quant", f"unknown key {extra[0]!r}; allowed: {', '.join(allowed)}")
        for key in ("bits", "scale"):
            if key not in rec:
                raise _err(name, "quant", f"{key!r} is missing")
        q = QuantSpec(rec["bits"], rec["scale"], rec.get("signed", True), rec.get("act_bits"),
                      rec.get("act_scale"))
    if q is None:
        return None
    for key, lo, hi in (("bits", 2, 16), ("act_bits", 2, 16)):
        v = getattr(q, key)
        if key == "act_bits" and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise _err(name, f"quant.{key}", f"must be an integer from {lo} to {hi}, not {v!r}")
    for key in ("scale", "act_scale"):
        v = getattr(q, key)
        if key == "act_scale" and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise _err(name, f"quant.{key}", f"must be a positive finite number, not {v!r}")
    if not isinstance(q.signed, bool):
        raise _err(name, "quant.signed", f"must be true or false, not {q.signed!r}")
    return q


@dataclass(frozen=True)
class Stats:
    """Storage statistics of one layer, computed from its masks.

    ``weight_bits`` = stored values (padding included) x bits per value (quant bits, or 32 for
    float); ``index_bits`` = metadata bits of the scheme's storage format (see ``ir.csr``,
    ``ir.bcr``, ``ir.pattern``; filter/column: one index per kept row/column; N:M: log2(M) bits per
    kept weight).
    """

    nnz: int
    numel: int
    weight_bits: int
    index_bits: int

    @property
    def density(self) -> float:
        return self.nnz / self.numel if self.numel else 0.0

    @property
    def storage_bits(self) -> int:
        return self.weight_bits + self.index_bits

    def to_json(self) -> dict[str, Any]:
        return {"nnz": self.nnz, "numel": self.numel, "density": round(self.density, 9),
                "weight_bits": self.weight_bits, "index_bits": self.index_bits}


def _bits_for(n: int) -> int:
    """Bits to store an index in ``range(n)`` (at least 1)."""
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def _storage(scheme: Scheme, mask: np.ndarray) -> tuple[int, int]:
    """(stored values, index bits) of one weight tensor's mask under ``scheme``."""
    m2 = matrix_view(mask).astype(np.uint8)
    nnz = int(np.count_nonzero(m2))
    if isinstance(scheme, Dense):
        return mask.size, 0
    if isinstance(scheme, Unstructured):
        from ir.csr import encode_csr

        enc = encode_csr(m2, index_bits=scheme.index_bits)
        return int(enc.value_count), int(enc.index_bits)
    if isinstance(scheme, Filter):
        kept = int(np.count_nonzero(m2.any(axis=1)))
        return kept * m2.shape[1], kept * _bits_for(m2.shape[0])
    if isinstance(scheme, Column):
        kept = int(np.count_nonzero(m2.any(axis=0)))
        return kept * m2.shape[0], kept * _bits_for(m2.shape[1])
    if isinstance(scheme, NM):
        return nnz, nnz * _bits_for(scheme.m)
    if isinstance(scheme, BCR):
        from ir.bcr import encode_bcr

        enc = encode_bcr(m2, scheme.block, mask=m2)
        return int(enc.value_count), int(enc.index_bits)
    if isinstance(scheme, Pattern):
        from ir.pattern import encode_pattern

        enc = encode_pattern(mask.astype(np.uint8), scheme.library(), mask=mask.astype(np.uint8))
        return int(enc.value_count), int(enc.index_bits)
    raise TypeError(f"no storage rule for scheme {scheme.kind!r}")


def _tensor_spec(op: str, shape: Any, quantized: bool) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """Expected (required tensor -> shape, optional tensor -> shape) for a layer."""
    if op in ("conv2d", "linear"):
        ws = shape.weight_shape()
        out = ws[0]
        req = {"weight": ws, "mask": ws}
        if quantized:
            req["qweight"] = ws
        return req, {"bias": (out,)}
    g = len(GATE_ORDER[op])
    h, i = shape.hidden_size, shape.input_size
    req = {"weight_ih": (g * h, i), "weight_hh": (g * h, h), "mask_ih": (g * h, i),
           "mask_hh": (g * h, h)}
    if quantized:
        req |= {"qweight_ih": (g * h, i), "qweight_hh": (g * h, h)}
    return req, {"bias_ih": (g * h,), "bias_hh": (g * h,)}


@dataclass(frozen=True, eq=False)
class Layer:
    """One compressed layer. Construction validates it; see the module docstring.

    Parameters
    ----------
    name : str
        Unique within the bundle; no path separator or control character.
    op : {"conv2d", "linear", "lstm", "gru"}
    shape : ConvShape | LinearShape | RNNShape or its JSON record
    scheme : ir.schemes.Scheme
    quant : QuantSpec or None
    tensors : mapping of tensor key (``weight``, ``mask``, ...) to numpy array
    break_even : float or None
        The measured break-even pruning ratio (pruned fraction in [0, 1]), once known.
    """

    name: str
    op: str
    shape: ConvShape | LinearShape | RNNShape
    scheme: Scheme
    quant: QuantSpec | None
    tensors: Mapping[str, np.ndarray] = field(repr=False)
    break_even: float | None = None

    def __post_init__(self) -> None:
        name = check_layer_name(self.name)
        if self.op not in OPS:
            raise _err(name, "op", f"unknown op {self.op!r}; allowed: {', '.join(OPS)}")
        object.__setattr__(self, "shape", _parse_shape(name, self.op, self.shape))
        object.__setattr__(self, "quant", _parse_quant(name, self.quant))
        if not isinstance(self.scheme, Scheme):
            raise _err(name, "scheme", f"must be a scheme record, not {type(self.scheme).__name__}")
        if self.break_even is not None:
            be = self.break_even
            if isinstance(be, bool) or not isinstance(be, (int, float)) or not 0 <= be <= 1:
                raise _err(name, "break_even", f"must be null or a number in [0, 1], not {be!r}")
        object.__setattr__(self, "tensors", MappingProxyType(self._checked_tensors()))

    def _checked_tensors(self) -> dict[str, np.ndarray]:
        name = self.name
        req, optional = _tensor_spec(self.op, self.shape, self.quant is not None)
        expected = req | optional
        tensors = dict(self.tensors)
        for key in req:
            if key not in tensors:
                raise _err(name, key, f"tensor '{name}.{key}' is missing")
        for key in sorted(tensors):
            if key not in expected:
                why = (" (the layer has no quant record)"
                       if key.startswith("qweight") and self.quant is None else "")
                raise _err(name, key, f"unexpected tensor '{name}.{key}'{why}")
        if self.op in ("lstm", "gru") and (("bias_ih" in tensors) != ("bias_hh" in tensors)):
            raise _err(name, "bias_hh" if "bias_ih" in tensors else "bias_ih",
                       "bias_ih and bias_hh must be present together")
        out: dict[str, np.ndarray] = {}
        for key, arr in tensors.items():
            if not isinstance(arr, np.ndarray):
                raise _err(name, key, f"must be a numpy array, not {type(arr).__name__}")
            want = expected[key]
            if tuple(arr.shape) != tuple(want):
                raise _err(name, key, f"shape {list(arr.shape)} does not match the layer; "
                           f"expected {list(want)}")
            if key.startswith("mask"):
                if arr.dtype != np.uint8:
                    raise _err(name, key, f"dtype {arr.dtype} not allowed; expected uint8")
                if np.any(arr > 1):
                    raise _err(name, key, "mask values must be 0 or 1")
            elif key.startswith("qweight"):
                if arr.dtype not in _QDTYPES:
                    raise _err(name, key, f"dtype {arr.dtype} not allowed; expected int8, int16 "
                               "or int32")
                q = self.quant
                lo, hi = int(arr.min(initial=0)), int(arr.max(initial=0))
                if lo < q.qmin or hi > q.qmax:
                    bad = lo if lo < q.qmin else hi
                    raise _err(name, key, f"value {bad} is outside the {q.bits}-bit range "
                               f"[{q.qmin}, {q.qmax}]")
            elif arr.dtype != np.float32:
                raise _err(name, key, f"dtype {arr.dtype} not allowed; expected float32")
            elif not np.all(np.isfinite(arr)):
                raise _err(name, key, "contains NaN or infinity")
            arr = np.array(arr, copy=True, order="C")
            arr.setflags(write=False)
            out[key] = arr
        for suffix in self._suffixes():
            mask = out["mask" + suffix]
            if isinstance(self.scheme, BCR):     # as pruning.plan rules; also bounds the padding
                (rows, cols), (br, bc) = matrix_view(mask).shape, self.scheme.block
                if br > rows or bc > cols:
                    raise _err(name, "scheme", f"BCR block {br}x{bc} is larger than the "
                               f"{rows}x{cols} matrix of '{name}.weight{suffix}'")
            for wkey in ("weight" + suffix, "qweight" + suffix):
                if wkey in out and np.any(out[wkey][mask == 0] != 0):
                    raise _err(name, wkey, f"non-zero where '{name}.mask{suffix}' is 0")
            problem = self.scheme.violation(mask if isinstance(self.scheme, Pattern)
                                            else matrix_view(mask))
            if problem is not None:
                raise _err(name, "mask" + suffix, f"breaks scheme {self.scheme.kind!r}: {problem}")
        return out

    def _suffixes(self) -> tuple[str, ...]:
        return ("_ih", "_hh") if self.op in ("lstm", "gru") else ("",)

    @property
    def weight_keys(self) -> tuple[str, ...]:
        """The weight tensor keys: ``("weight",)`` or ``("weight_ih", "weight_hh")``."""
        return tuple("weight" + s for s in self._suffixes())

    @cached_property
    def stats(self) -> Stats:
        """Storage statistics computed from the masks (see :class:`Stats`)."""
        bits = self.quant.bits if self.quant is not None else 32
        nnz = numel = values = index = 0
        for s in self._suffixes():
            mask = self.tensors["mask" + s]
            v, i = _storage(self.scheme, mask)
            nnz += int(np.count_nonzero(mask))
            numel += mask.size
            values += v
            index += i
        return Stats(nnz=nnz, numel=numel, weight_bits=values * bits, index_bits=index)

    def to_json(self) -> dict[str, Any]:
        """The manifest record of this layer."""
        return {"name": self.name, "op": self.op, "shape": shape_to_json(self.shape),
                "scheme": self.scheme.to_json(),
                "quant": self.quant.to_json() if self.quant is not None else None,
                "stats": self.stats.to_json(), "break_even": self.break_even}
