"""Compression plans: per layer, the scheme, how much to prune and the weight bits.

A :class:`Plan` holds rules: a ``default`` rule, rules per layer type (``conv2d``, ``linear``,
``lstm``, ``gru``) and rules per layer (by ``named_modules()`` name). :func:`resolve` matches the
rules to a model's prunable layers (``nn.Conv2d``, ``nn.Linear``, single-layer unidirectional
``nn.LSTM``/``nn.GRU``) and checks them against the layers' shapes, giving one
:class:`LayerPlan` per constrained layer. Every problem raises :class:`PlanError` whose message
names the layer (or the rule) and says what is allowed.

A rule has ``scheme`` (``dense``, ``unstructured``, ``filter``, ``column``, ``pattern``, ``bcr``,
``nm``), either ``ratio`` (a compression ratio above 1: 85 keeps 1/85 of the weights) or
``sparsity`` (the pruned fraction, in [0, 1)), ``bits`` (2 to 16, or ``false`` for float weights),
``rho`` (the layer's initial ADMM penalty ``rho_i``, a positive number; the run's growth factor
applies to it and its maximum is raised to it if below; default: the run's initial rho) and the
scheme's own keys:

============  ================================================================================
scheme        keys; how the ratio is used
============  ================================================================================
unstructured  ``scope`` ("layer" or "global"), ``index_bits``, ``connected`` (true: no kept
              weight off every input-to-output path; every prunable layer unstructured and
              connected, in one chain); ratio or sparsity required
filter        ratio or sparsity required (fraction of rows pruned)
column        ratio or sparsity required (fraction of columns pruned)
pattern       ``library_size``, ``keep``, ``connectivity``; a ratio sets the connectivity so
              that ``keep/9 * (1 - connectivity) = 1/ratio`` (0 when the patterns alone reach it)
bcr           ``block`` ([rows, cols]), ``row_sparsity``, ``col_sparsity``; a ratio splits
              evenly: ``row_sparsity = col_sparsity = 1 - sqrt(1/ratio)``
nm            ``n``, ``m``; no ratio (the sparsity is ``1 - n/m``)
dense         no keys; quantization only, when ``bits`` is set
============  ================================================================================

Precedence: layer rule over type rule over default. A more specific rule that sets ``scheme``
replaces the scheme, its keys and the ratio; one without ``scheme`` overrides only the keys it
sets, where a ratio (or sparsity) and the keys that also say how much to prune
(``connectivity``, ``row_sparsity``, ``col_sparsity``) replace one another. ``bits`` and ``rho`` are inherited unless set. A layer that no rule reaches is left dense and float.

TOML (JSON takes the same structure)::

    [default]
    scheme = "unstructured"
    ratio = 85
    bits = 3

    [types.conv2d]
    ratio = 8

    [layers.fc2]
    scheme = "bcr"
    block = [4, 16]
    sparsity = 0.9
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from pruning.schemes import (
    BCRConfig,
    ColumnConfig,
    DenseConfig,
    FilterConfig,
    NMConfig,
    PatternConfig,
    SchemeConfig,
    UnstructuredConfig,
)

__all__ = ["PlanError", "Rule", "Plan", "LayerPlan", "TYPES", "SCHEMES", "load_plan", "resolve",
           "prunable_layers", "layer_op", "weight_params", "conv_problem"]

TYPES = ("conv2d", "linear", "lstm", "gru")
SCHEMES = ("dense", "unstructured", "filter", "column", "pattern", "bcr", "nm")
_PARAMS: dict[str, tuple[str, ...]] = {
    "dense": (), "unstructured": ("scope", "index_bits", "connected"), "filter": (), "column": (),
    "pattern": ("library_size", "keep", "connectivity"),
    "bcr": ("block", "row_sparsity", "col_sparsity"), "nm": ("n", "m")}
_COMMON = ("scheme", "ratio", "sparsity", "bits", "rho")
#: Scheme keys that say how much to prune, in place of a ratio (see :meth:`Rule.overlay`).
_AMOUNT_KEYS = ("connectivity", "row_sparsity", "col_sparsity")
_ALL_PARAMS = tuple(sorted({p for ps in _PARAMS.values() for p in ps}))


class PlanError(ValueError):
    """A plan that cannot be read or does not fit the model; the message names the layer."""


MAX_RATIO = 1e12
"""The largest compression ratio: sparsities are rounded to 12 digits, so above it they are 1."""


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Rule:
    """One plan rule; ``None`` fields are inherited (see the module docstring).

    Parameters
    ----------
    scheme : str, optional
        One of ``SCHEMES``.
    ratio : float, optional
        Compression ratio, greater than 1. Not together with ``sparsity``.
    sparsity : float, optional
        Pruned fraction in [0, 1).
    bits : int or False, optional
        Weight bits, 2 to 16; ``False``: float weights (no quantization).
    params : tuple of (key, value)
        Scheme keys (``block``, ``n``, ...), checked against the scheme when it is known.
    rho : float, optional
        The layer's initial ADMM penalty (positive); ``None``: the run's.

    Raises
    ------
    PlanError
        With the problem alone (callers add where the rule comes from).
    """

    scheme: str | None = None
    ratio: float | None = None
    sparsity: float | None = None
    bits: int | bool | None = None
    params: tuple[tuple[str, Any], ...] = ()
    rho: float | None = None

    def __post_init__(self) -> None:
        if self.scheme is not None and self.scheme not in SCHEMES:
            raise PlanError(f"unknown scheme {self.scheme!r}; allowed: {', '.join(SCHEMES)}")
        if self.ratio is not None and self.sparsity is not None:
            raise PlanError("give either ratio or sparsity, not both")
        if self.ratio is not None and not (_number(self.ratio) and self.ratio > 1):
            raise PlanError("ratio must be a compression ratio greater than 1 (85 keeps 1/85 of "
                            f"the weights), not {self.ratio!r}")
        if self.ratio is not None and self.ratio > MAX_RATIO:   # its sparsity rounds to 1
            raise PlanError(f"ratio must be at most {MAX_RATIO:g}, not {self.ratio!r}")
        if self.sparsity is not None and not (_number(self.sparsity) and 0 <= self.sparsity < 1):
            raise PlanError(f"sparsity must be a number in [0, 1), not {self.sparsity!r}")
        bits = self.bits
        if bits is not None and bits is not False and (
                isinstance(bits, bool) or not isinstance(bits, Integral) or not 2 <= bits <= 16):
            raise PlanError("bits must be an integer from 2 to 16 (or false for float weights), "
                            f"not {bits!r}")
        if self.rho is not None and not (_number(self.rho) and self.rho > 0):
            raise PlanError(f"rho must be a positive number (the layer's initial ADMM penalty), "
                            f"not {self.rho!r}")
        params = tuple((str(k), v) for k, v in (self.params.items() if isinstance(
            self.params, Mapping) else self.params))
        object.__setattr__(self, "params", params)
        for key, _ in params:
            allowed = _PARAMS[self.scheme] if self.scheme is not None else _ALL_PARAMS
            if key not in allowed:
                what = f" for scheme {self.scheme!r}" if self.scheme else ""
                raise PlanError(f"unknown key {key!r}{what}; allowed: "
                                f"{', '.join(_COMMON + allowed)}")

    @classmethod
    def from_dict(cls, data: Any) -> Rule:
        """A rule from its TOML/JSON table (keys: see the module docstring)."""
        if not isinstance(data, Mapping):
            raise PlanError(f"must be a table of keys, not {type(data).__name__}")
        params = {k: v for k, v in data.items() if k not in _COMMON}
        return cls(scheme=data.get("scheme"), ratio=data.get("ratio"),
                   sparsity=data.get("sparsity"), bits=data.get("bits"),
                   params=tuple(params.items()), rho=data.get("rho"))

    def overlay(self, other: Rule) -> Rule:
        """``other`` applied on top of this rule (``other`` is the more specific one)."""
        bits = other.bits if other.bits is not None else self.bits
        rho = other.rho if other.rho is not None else self.rho
        if other.scheme is not None:
            return Rule(other.scheme, other.ratio, other.sparsity, bits, other.params, rho)
        inherited = dict(self.params)
        if other.ratio is not None or other.sparsity is not None:
            amount = (other.ratio, other.sparsity)
            for key in _AMOUNT_KEYS:        # a ratio replaces the amount keys it sets
                inherited.pop(key, None)
        elif any(key in _AMOUNT_KEYS for key, _ in other.params):
            amount = (None, None)           # and amount keys replace a ratio
        else:
            amount = (self.ratio, self.sparsity)
        params = tuple((inherited | dict(other.params)).items())
        return Rule(self.scheme, amount[0], amount[1], bits, params, rho)

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _COMMON if getattr(self, k) is not None}
        return out | {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}


def _where_rule(where: str, data: Any) -> Rule:
    try:
        return Rule.from_dict(data)
    except PlanError as exc:
        raise PlanError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Plan:
    """Rules for a whole model: ``default``, per type (``types``) and per layer (``layers``)."""

    default: Rule | None = None
    types: Mapping[str, Rule] = field(default_factory=dict)
    layers: Mapping[str, Rule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.types:
            if key not in TYPES:
                raise PlanError(f"unknown layer type {key!r}; allowed: {', '.join(TYPES)}")
        object.__setattr__(self, "types", MappingProxyType(dict(self.types)))
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))

    @classmethod
    def uniform(cls, scheme: str, *, ratio: float | None = None, sparsity: float | None = None,
                bits: int | None = None, **params: Any) -> Plan:
        """One default rule for every prunable layer (what ``codesign prune --scheme`` builds)."""
        try:
            return cls(default=Rule(scheme, ratio, sparsity, bits, tuple(params.items())))
        except PlanError as exc:
            raise PlanError(f"default: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """A plan from its parsed TOML/JSON (top-level keys ``default``, ``types``, ``layers``)."""
        if not isinstance(data, Mapping):
            raise PlanError("a plan must be a table with default, types and layers")
        extra = sorted(set(data) - {"default", "types", "layers"})
        if extra:
            raise PlanError(f"unknown plan key {extra[0]!r}; allowed: default, types, layers")
        default = _where_rule("default", data["default"]) if "default" in data else None
        tables = {}
        for key, label in (("types", "layer type"), ("layers", "layer")):
            table = data.get(key, {})
            if not isinstance(table, Mapping):
                raise PlanError(f"{key}: must be a table of {label} names")
            tables[key] = {str(n): _where_rule(f"{label} {n!r}", r) for n, r in table.items()}
        return cls(default=default, **tables)

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON-ready dict that :meth:`from_dict` reads back."""
        out = {"default": self.default.to_json()} if self.default is not None else {}
        return out | {"types": {k: v.to_json() for k, v in self.types.items()},
                      "layers": {k: v.to_json() for k, v in self.layers.items()}}


def load_plan(path: str | Path) -> Plan:
    """Read a plan from a ``.toml`` or ``.json`` file; :class:`PlanError` if it cannot be read."""
    path = Path(path)
    if path.suffix.lower() not in (".toml", ".json"):
        raise PlanError(f"cannot read plan {path}: the file name must end in .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except RecursionError:
        raise PlanError(f"cannot read plan {path}: nested too deeply") from None
    except (OSError, ValueError) as exc:    # decode errors of TOML, JSON, UTF-8; a huge number
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PlanError(f"cannot read plan {path}: {' '.join(reason.split())}") from None
    return Plan.from_dict(data)


# ------------------------------------------------------------------------------- the model side
def layer_op(module: nn.Module) -> str | None:
    """``"conv2d"``, ``"linear"``, ``"lstm"``, ``"gru"``, or ``None`` for other modules."""
    for cls, op in ((nn.Conv2d, "conv2d"), (nn.Linear, "linear"), (nn.LSTM, "lstm"),
                    (nn.GRU, "gru")):
        if isinstance(module, cls):
            return op
    return None


def conv_problem(module: nn.Module) -> str | None:
    """What a bundle cannot hold of a ``Conv2d`` (string padding, dilation, a padding mode other
    than zeros), or None. The bundle's convolution (``ir.golden.conv2d``) has none of these: such
    a layer exported gave other outputs (dilation: another shape; circular padding: other
    values)."""
    if not isinstance(module, nn.Conv2d):
        return None
    if isinstance(module.padding, str):
        return f"padding={module.padding!r} is not supported; use integer padding"
    if tuple(module.dilation) != (1, 1):
        return (f"dilation={tuple(module.dilation)} is not supported; the bundle's convolutions "
                "have dilation 1")
    if module.padding_mode != "zeros":
        return (f"padding_mode={module.padding_mode!r} is not supported; the bundle's "
                "convolutions pad with zeros")
    return None


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's prunable modules by name, in ``named_modules()`` order."""
    return {n: m for n, m in model.named_modules() if layer_op(m) is not None}


def weight_params(module: nn.Module) -> dict[str, nn.Parameter]:
    """The constrained weights: ``{"": weight}``, or ``{"ih": ..., "hh": ...}`` for an RNN."""
    if isinstance(module, (nn.LSTM, nn.GRU)):
        return {"ih": module.weight_ih_l0, "hh": module.weight_hh_l0}
    return {"": module.weight}


@dataclass(frozen=True)
class LayerPlan:
    """What :func:`resolve` decided for one layer.

    Attributes
    ----------
    name : str
        The module name.
    op : str
        ``"conv2d"``, ``"linear"``, ``"lstm"`` or ``"gru"``.
    config : SchemeConfig
        The scheme config (:mod:`pruning.schemes`), applied to each weight matrix of the layer.
    bits : int or None
        Weight bits, or ``None`` for float weights.
    chain : tuple of str or None
        For connected unstructured layers: every layer of the model's chain in data-flow order
        (:func:`pruning.connectivity.chain_of`), which their projection takes together.
    rho : float or None
        The layer's initial ADMM penalty, or ``None`` for the run's.
    """

    name: str
    op: str
    config: SchemeConfig
    bits: int | None
    chain: tuple[str, ...] | None = None
    rho: float | None = None

    def to_json(self) -> dict[str, Any]:
        params = {k: list(v) if isinstance(v, tuple) else v
                  for k, v in self.config.__dict__.items()}
        out = {"name": self.name, "op": self.op, "scheme": {"kind": self.config.kind, **params},
               "bits": self.bits}
        return out | ({"rho": self.rho} if self.rho is not None else {})


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return f"a {module.kernel_size[0]}x{module.kernel_size[1]} convolution"
    return f"a {layer_op(module)} layer"


def _config(name: str, module: nn.Module, rule: Rule) -> SchemeConfig:
    kind = rule.scheme or "dense"
    p = dict(rule.params)
    for key in p:
        if key not in _PARAMS[kind]:
            raise PlanError(f"layer {name!r}: unknown key {key!r} for scheme {kind!r}; allowed: "
                            f"{', '.join(_COMMON + _PARAMS[kind])}")
    s = rule.sparsity if rule.ratio is None else round(1.0 - 1.0 / rule.ratio, 12)
    if kind in ("dense", "nm") and s is not None:
        raise PlanError(f"layer {name!r}: scheme {kind!r} takes no ratio or sparsity"
                        + (" (set n and m)" if kind == "nm" else ""))
    if kind in ("unstructured", "filter", "column") and s is None:
        raise PlanError(f"layer {name!r}: scheme {kind!r} needs a ratio or a sparsity")
    if kind == "pattern":
        if not (isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (3, 3)):
            raise PlanError(f"layer {name!r}: the pattern scheme needs a 3x3 convolution, not "
                            f"{_describe(module)}")
        if s is not None and "connectivity" in p:
            raise PlanError(f"layer {name!r}: give either a ratio (or sparsity) or connectivity "
                            "for the pattern scheme, not both")
        if s is not None:
            keep = p.get("keep", 4)
            p["connectivity"] = max(0.0, round(1.0 - 9.0 * (1.0 - s) / keep, 12)) \
                if _number(keep) and keep > 0 else 0.0
    if kind == "bcr":
        given = [k for k in ("row_sparsity", "col_sparsity") if k in p]
        if s is not None and given:
            raise PlanError(f"layer {name!r}: give either a ratio (or sparsity) or row_sparsity "
                            "and col_sparsity for the BCR scheme, not both")
        if s is not None:
            p["row_sparsity"] = p["col_sparsity"] = round(1.0 - math.sqrt(1.0 - s), 12)
    if kind in ("unstructured", "filter", "column"):
        p["sparsity"] = s
    cls = {"dense": DenseConfig, "unstructured": UnstructuredConfig, "filter": FilterConfig,
           "column": ColumnConfig, "pattern": PatternConfig, "bcr": BCRConfig, "nm": NMConfig}[kind]
    try:
        config = cls(**p)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"layer {name!r}: {exc}") from None
    if isinstance(config, BCRConfig):
        br, bc = config.block
        for suffix, w in weight_params(module).items():
            rows, cols = w.shape[0], w[0].numel()
            if br > rows or bc > cols:
                what = f"weight_{suffix} matrix" if suffix else "weight matrix"
                raise PlanError(f"layer {name!r}: BCR block {br}x{bc} is larger than the "
                                f"{rows}x{cols} {what}")
    return config


def resolve(plan: Plan, model: nn.Module) -> dict[str, LayerPlan]:
    """Match ``plan`` to ``model``: one :class:`LayerPlan` per layer a rule reaches.

    Returns
    -------
    dict of str to LayerPlan
        In ``named_modules()`` order. Layers no rule reaches are absent (left dense, float).

    Raises
    ------
    PlanError
        An unknown layer name, an unsupported layer, a scheme that does not fit the layer's
        shape (a BCR block larger than a weight matrix, a pattern scheme on anything but a 3x3
        convolution), bad scheme keys, or global unstructured rules with different sparsities.
    """
    layers = prunable_layers(model)
    modules = dict(model.named_modules())
    for name, module in layers.items():     # every one is exported, planned or not
        problem = conv_problem(module)
        if problem is not None:
            raise PlanError(f"layer {name!r}: {problem}")
    for name in plan.layers:
        if name not in layers:
            if name in modules and name:
                raise PlanError(f"layer {name!r}: {type(modules[name]).__name__} is not a "
                                "prunable layer (Conv2d, Linear, LSTM, GRU)")
            raise PlanError(f"layer {name!r}: no such layer in the model; prunable layers: "
                            f"{', '.join(layers)}")
    out: dict[str, LayerPlan] = {}
    for name, module in layers.items():
        op = layer_op(module)
        rules = [r for r in (plan.default, plan.types.get(op), plan.layers.get(name)) if r]
        if not rules:
            continue
        rule = rules[0]
        for more in rules[1:]:
            try:
                rule = rule.overlay(more)
            except PlanError as exc:
                raise PlanError(f"layer {name!r}: {exc}") from None
        if isinstance(module, (nn.LSTM, nn.GRU)) and (
                module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0)):
            raise PlanError(f"layer {name!r}: only single-layer, unidirectional "
                            f"{type(module).__name__} without projection is supported")
        bits = None if rule.bits is None or rule.bits is False else int(rule.bits)
        rho = None if rule.rho is None else float(rule.rho)
        out[name] = LayerPlan(name, op, _config(name, module, rule), bits, rho=rho)
    glob = {n: p.config.sparsity for n, p in out.items()
            if isinstance(p.config, UnstructuredConfig) and p.config.scope == "global"}
    if len(set(glob.values())) > 1:
        names = sorted(glob, key=list(glob).index)
        raise PlanError(f"layers {', '.join(map(repr, names))}: global unstructured pruning "
                        "needs one sparsity for all its layers")
    _check_connected(out, model)
    return out


def connected_chain(plans: Mapping[str, LayerPlan]) -> tuple[str, ...] | None:
    """The chain of a resolved plan with connected unstructured layers (its layers in data-flow
    order, recorded by :func:`resolve`), or ``None`` when no layer is connected."""
    for p in plans.values():
        if isinstance(p.config, UnstructuredConfig) and p.config.connected:
            return p.chain
    return None


def _check_connected(out: dict[str, LayerPlan], model: nn.Module) -> None:
    """Connected unstructured pruning: every prunable layer planned unstructured, connected,
    one scope, in one chain (:func:`pruning.connectivity.chain_of`); records the chain."""
    from pruning.connectivity import ChainError, chain_of

    conn = [n for n, p in out.items()
            if isinstance(p.config, UnstructuredConfig) and p.config.connected]
    if not conn:
        return
    for name in prunable_layers(model):
        p = out.get(name)
        if p is None or not isinstance(p.config, UnstructuredConfig) or not p.config.connected:
            what = "not planned" if p is None else f"planned {p.config.kind}" + (
                "" if not isinstance(p.config, UnstructuredConfig) else " without connected")
            raise PlanError(f"layer {name!r}: connected pruning needs every prunable layer "
                            f"unstructured with connected = true; this one is {what}")
    scopes = {out[n].config.scope for n in conn}
    if len(scopes) > 1:
        raise PlanError(f"layers {', '.join(map(repr, conn))}: connected pruning needs one scope "
                        "(all 'layer' or all 'global')")
    try:
        chain = chain_of(model, conn)
    except ChainError as exc:
        raise PlanError(f"connected pruning: {exc}") from None
    for n in conn:
        out[n] = replace(out[n], chain=chain)
