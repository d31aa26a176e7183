"""Data-free pruning: layer by layer on synthetic inputs, never a sample of the user's data.

For every planned layer ``i``, in the order the model runs them (:func:`layer_order`),
:func:`prune_data_free` minimises the reconstruction error of the layer's *scope*

    ``||F_i(X; W_i) - F_i(X; W_i^0)||^2 / ||F_i(X; W_i^0)||^2``   subject to  ``W_i in S_i``

with the ADMM engine of :mod:`pruning.admm` (W-step: a torch optimizer on this loss plus the
penalty ``(rho/2)||W - Z + U||^2``; Z-step: the scheme's projection; U update; rho schedule), then
projects hard and *polishes* the kept weights on the fixed mask. ``W_i^0`` are the trained
weights; ``X`` are the scope's inputs on synthetic batches (:mod:`pruning.synthetic`) taken from
the already pruned prefix of the model (``inputs="prefix"``, default) or from the original model
(``"original"``).

Scopes (:data:`SCOPES`): ``"output"``, the layer's own output; ``"activation"``, the output
after the modules that follow the layer in its ``nn.Sequential`` up to and including the next
activation (BatchNorm, dropout; a layer followed by none is measured at its output);
``"block"``, the output of the smallest enclosing module that is neither a ``Sequential`` nor the
model (a residual block; none: the layer's output). Modules of the scope other than the layer
are frozen and run in eval mode (BatchNorm uses its stored statistics).

Global unstructured pruning (``scope = "global"`` in the plan) shares one kept fraction among
the layers. Pruned one at a time, the layers cannot trade weights during the optimisation, so
:func:`global_split` fixes the split first: each layer keeps as many weights as the global
magnitude projection of the trained weights keeps in it (the exact projection onto "at most k
weights in all", :func:`pruning.projections.masks_global`), and is then pruned per layer.

Polish (:data:`POLISH`): ``"lstsq"`` is the closed form (:func:`least_squares_refit`), exact for
the ``"output"`` scope of a float linear layer or convolution (``groups=1``): with the mask
fixed, each output's kept weights (and its bias) solve a linear least-squares problem (with a
small ridge toward the trained weights, ``ridge``);
``"masked"`` trains the kept weights on the same loss with the mask (and quantization) held
(:func:`pruning.admm.masked_retrain`), keeping the hard projection if that does not lower the
error; ``"auto"`` takes ``"lstsq"`` where it is exact, else
``"masked"``; ``"none"`` keeps the hard projection.

The W-step reuses :func:`pruning.admm.admm` unchanged: the layer's scope is wrapped in a small
module whose output is flattened, the "labels" of each batch are its sample indices, and the
loss looks up the reference outputs by index. This module takes no dataset and never imports
:mod:`pruning.data`; :func:`reconstruction_errors` measures the error on any batches the caller
passes (the benchmark passes real held-out digits).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ir import Bundle
from pruning.admm import (
    ADMMIteration,
    Projection,
    RhoSchedule,
    admm,
    hard_project,
    masked_retrain,
    select_libraries,
)
from pruning.export import export
from pruning.plan import LayerPlan, Plan, prunable_layers, resolve, weight_params
from pruning.projections import masks_global
from pruning.schemes import DenseConfig, UnstructuredConfig
from pruning.synthetic import SyntheticSpec, synthetic_batches
from pruning.train import DEFAULT_THREADS

__all__ = ["SCOPES", "INPUTS", "TARGETS", "POLISH", "LayerRecord", "DataFreeResult", "layer_order",
           "scope_of", "global_split", "capture_inputs", "reconstruction_loss", "least_squares_refit",
           "reconstruct_layer", "reconstruction_errors", "prune_data_free", "prune_layerwise",
           "magnitude_prune"]

SCOPES: tuple[str, ...] = ("output", "activation", "block")
INPUTS: tuple[str, ...] = ("prefix", "original")
TARGETS: tuple[str, ...] = ("same", "original")
POLISH: tuple[str, ...] = ("auto", "lstsq", "masked", "none")
_DEFAULT_RHO = RhoSchedule(1e-2, 1.5, 1.0)
_FOLLOWERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Identity)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish,
                nn.Sigmoid, nn.Tanh)


class _Stop(Exception):
    """Raised by a capture hook to skip the rest of a forward pass."""


def _modules(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def layer_order(model: nn.Module, names: Sequence[str], example: torch.Tensor) -> list[str]:
    """``names`` in the order a forward pass on ``example`` first calls them (eval mode, no
    gradients); names the pass never calls keep their relative order at the end."""
    modules = _modules(model)
    seen: list[str] = []
    hooks = [modules[n].register_forward_pre_hook(
        lambda _m, _a, n=n: seen.append(n) if n not in seen else None) for n in names]
    try:
        with _eval(model):
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen + [n for n in names if n not in seen]


def scope_of(model: nn.Module, name: str, scope: str) -> tuple[str, list[str], str]:
    """Where layer ``name``'s reconstruction is measured.

    Returns ``(input_name, module_names, used)``: the module whose input is the scope's input,
    the modules run in sequence to get the scope's output, and the scope actually used (a layer
    with nothing to add falls back to ``"output"``).
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")
    modules = _modules(model)
    parent_name = name.rpartition(".")[0]
    if scope == "activation" and isinstance(modules.get(parent_name, model), nn.Sequential):
        parent = modules.get(parent_name, model)
        keys = list(parent._modules)
        here = keys.index(name.rpartition(".")[2])
        chain = [name]
        for key in keys[here + 1:]:
            child = parent._modules[key]
            if not isinstance(child, _FOLLOWERS + _ACTIVATIONS):
                break
            chain.append(f"{parent_name}.{key}" if parent_name else key)
            if isinstance(child, _ACTIVATIONS):
                break
        if len(chain) > 1:
            return name, chain, "activation"
    if scope == "block":
        parts = name.split(".")
        for k in range(len(parts) - 1, 0, -1):
            anc = ".".join(parts[:k])
            if not isinstance(modules[anc], nn.Sequential):
                return anc, [anc], "block"
    return name, [name], "output"


def capture_inputs(model: nn.Module, name: str, batches: Sequence[torch.Tensor]
                   ) -> list[torch.Tensor]:
    """The input of module ``name`` on each batch (eval mode, no gradients; the forward pass
    stops at the module)."""
    module = _modules(model)[name]
    got: list[torch.Tensor] = []

    def hook(_m: nn.Module, args: tuple) -> None:
        got.append(args[0].detach().clone())
        raise _Stop

    handle = module.register_forward_pre_hook(hook)
    try:
        with _eval(model):
            for x in batches:
                try:
                    model(x)
                except _Stop:
                    pass
    finally:
        handle.remove()
    if len(got) != len(batches):
        raise ValueError(f"module {name!r} is not called by the model's forward pass")
    return got


def _run(model: nn.Module, chain: Sequence[str], x: torch.Tensor) -> torch.Tensor:
    modules = _modules(model)
    for n in chain:
        x = modules[n](x)
    return x


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||output - target||_F^2 / ||target||_F^2`` (the relative squared error of the batch;
    the denominator is a constant). Differentiable in ``output``; its gradient is
    ``2 (output - target) / ||target||_F^2``."""
    denom = target.detach().double().square().sum().clamp_min(1e-30).float()
    return (output - target.detach()).square().sum() / denom


class _Probe(nn.Module):
    """The scope's modules as one model with flattened output, always in eval mode."""

    def __init__(self, parts: Sequence[nn.Module]) -> None:
        super().__init__()
        self.core = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.core(x).flatten(1)

    def train(self, mode: bool = True) -> _Probe:
        self.training = mode
        self.core.eval()
        return self


@contextmanager
def _only(probe: nn.Module, layer: nn.Module) -> Iterator[None]:
    """Only ``layer``'s parameters require gradients inside the probe while active."""
    mine = {id(p) for p in layer.parameters()}
    saved = [(p, p.requires_grad) for p in probe.parameters()]
    for p, _ in saved:
        p.requires_grad_(id(p) in mine)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def least_squares_refit(layer: nn.Module, inputs: Sequence[torch.Tensor],
                        targets: Sequence[torch.Tensor], mask: torch.Tensor,
                        ridge: float = 1e-8, prior: tuple[torch.Tensor, torch.Tensor | None]
                        | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The closed-form kept weights (and bias) of a linear layer or convolution on a fixed mask.

    Minimises ``sum ||layer(X; W, b) - T||^2`` over the weights where ``mask`` is true and the
    bias (if the layer has one); pruned weights stay 0. With ``A`` the inputs (a convolution's
    unfolded patches) and a column of ones for the bias, output ``o`` solves
    ``(A_K^T A_K + lam I) [w_K; b] = A_K^T t_o + lam [p_K; q]`` over its kept columns ``K``
    (float64), ``lam = ridge * mean(diag(A_K^T A_K))``: the ridge pulls toward ``prior``
    ``(p, q)`` (weights, bias; default 0) in directions the inputs do not determine. The
    default tiny ridge only guards a singular ``A_K``. Returns ``(weight, bias)``.
    ``ValueError`` for other layers (grouped convolutions included).
    """
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError("the closed form needs a convolution with groups=1")

        def rows(x: torch.Tensor) -> torch.Tensor:
            p = nn.functional.unfold(x, layer.kernel_size, dilation=layer.dilation,
                                     padding=layer.padding, stride=layer.stride)
            return p.transpose(1, 2).reshape(-1, p.shape[1])

        def outs(t: torch.Tensor) -> torch.Tensor:
            return t.flatten(2).transpose(1, 2).reshape(-1, t.shape[1])
    elif isinstance(layer, nn.Linear):
        def rows(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, x.shape[-1])

        def outs(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(-1, t.shape[-1])
    else:
        raise ValueError(f"the closed form needs a Linear or Conv2d layer, not "
                         f"{type(layer).__name__}")
    w = layer.weight.detach()
    m2 = mask.reshape(w.shape[0], -1).bool()
    bias = layer.bias is not None
    d = m2.shape[1] + int(bias)
    gram = torch.zeros(d, d, dtype=torch.float64)
    cross = torch.zeros(d, w.shape[0], dtype=torch.float64)
    for x, t in zip(inputs, targets, strict=True):
        a = rows(x.detach()).double()
        if bias:
            a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], 1)
        gram += a.T @ a
        cross += a.T @ outs(t.detach()).double()
    new_w = torch.zeros(m2.shape, dtype=torch.float64)
    new_b = torch.zeros(w.shape[0], dtype=torch.float64)
    pw = prior[0].detach().reshape(m2.shape).double() if prior is not None else \
        torch.zeros(m2.shape, dtype=torch.float64)
    pb = prior[1].detach().double() if prior is not None and prior[1] is not None else \
        torch.zeros(w.shape[0], dtype=torch.float64)
    for o in range(w.shape[0]):
        keep = torch.nonzero(m2[o]).flatten()
        if bias:
            keep = torch.cat([keep, torch.tensor([d - 1])])
        if keep.numel() == 0:
            continue
        g = gram[keep][:, keep]
        lam = ridge * float(g.diagonal().mean().clamp_min(1e-30))
        x0 = torch.cat([pw[o], pb[o:o + 1]])[keep] if bias else pw[o][keep]
        sol = torch.linalg.solve(g + lam * torch.eye(len(keep), dtype=g.dtype),
                                 cross[keep, o] + lam * x0)
        if bias:
            new_b[o] = sol[-1]
            sol = sol[:-1]
            keep = keep[:-1]
        new_w[o, keep] = sol
    return (new_w.reshape(w.shape).to(w.dtype),
            new_b.to(layer.bias.dtype) if bias else None)


@dataclass(frozen=True)
class LayerRecord:
    """What the data-free pass did to one layer. Errors are ``||F - F^0|| / ||F^0||`` on the
    synthetic inputs: after the magnitude projection of the trained weights, after ADMM and the
    hard projection, and at the end (after the polish)."""

    name: str
    scope: str
    polish: str
    samples: int
    error_magnitude: float
    error_admm: float
    error_final: float
    history: tuple[ADMMIteration, ...]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "scope": self.scope, "polish": self.polish,
                "samples": self.samples, "error_magnitude": self.error_magnitude,
                "error_admm": self.error_admm, "error_final": self.error_final,
                "residual": [h.residual for h in self.history],
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class DataFreeResult:
    """What :func:`prune_data_free` produced: the resolved plan, the masks and scales of every
    planned layer (``projection``), the pattern libraries, one record per processed layer (in
    processing order) and the settings."""

    plans: dict[str, LayerPlan]
    projection: Projection
    libraries: dict[str, np.ndarray]
    layers: tuple[LayerRecord, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def export(self, model: nn.Module, model_name: str | None = None) -> Bundle:
        """The bundle of ``model`` (the pruned model) with these masks, scales and libraries."""
        return export(model, self.plans, masks=self.projection.masks,
                      scales=self.projection.scales, libraries=self.libraries,
                      model_name=model_name)

    def summary(self) -> dict[str, Any]:
        return {"settings": self.settings, "plan": [p.to_json() for p in self.plans.values()],
                "layers": [r.to_json() for r in self.layers], "seconds": round(self.seconds, 3)}


def _relative_error(probe: nn.Module, inputs: Sequence[torch.Tensor],
                    targets: Sequence[torch.Tensor]) -> float:
    num = den = 0.0
    with _eval(probe):
        for x, t in zip(inputs, targets, strict=True):
            out = probe(x).double()
            num += float((out - t.flatten(1).double()).square().sum())
            den += float(t.double().square().sum())
    return math.sqrt(num / den) if den > 0 else 0.0


def reconstruct_layer(model: nn.Module, reference: nn.Module, lp: LayerPlan,
                      inputs: Sequence[torch.Tensor], *, scope: str = "output",
                      iterations: int = 10, epochs: int = 1,
                      rho: RhoSchedule | float = _DEFAULT_RHO,
                      optimizer: str = "adam", lr: float = 1e-3, polish: str = "auto",
                      polish_epochs: int = 5, seed: int = 0, progress: bool = False,
                      targets: Sequence[torch.Tensor] | None = None, ridge: float = 1e-8
                      ) -> tuple[Projection, np.ndarray | None, LayerRecord]:
    """Prune one layer of ``model`` in place by reconstruction (see the module docstring).

    ``inputs`` are the scope's inputs (:func:`capture_inputs` of ``scope_of(...)[0]``); the
    targets are ``reference``'s scope (the original model) on the same inputs unless
    ``targets`` gives them (one tensor per input batch, the scope's output shape). Returns the
    layer's projection (keyed by its name), its pattern library (or ``None``) and its record.
    """
    if polish not in POLISH:
        raise ValueError(f"unknown polish {polish!r}; known: {', '.join(POLISH)}")
    start = time.perf_counter()
    name = lp.name
    _, chain, used = scope_of(model, name, scope)
    targets = list(targets) if targets is not None else _targets(reference, chain, inputs)
    targets_flat = torch.cat([t.flatten(1) for t in targets])
    mods = _modules(model)
    layer = mods[name]
    probe = _Probe([mods[n] for n in chain])
    inner = next(n for n, m in probe.named_modules() if m is layer)
    plans = {inner: LayerPlan(inner, lp.op, lp.config, lp.bits, rho=lp.rho)}
    starts = np.cumsum([0] + [len(x) for x in inputs])
    loader = [(x, torch.arange(int(a), int(a) + len(x)))
              for x, a in zip(inputs, starts, strict=False)]

    def loss_fn(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(out, targets_flat[idx])

    libraries = select_libraries(probe, plans)
    w0 = {k: v.detach().clone() for k, v in layer.named_parameters()}
    with _only(probe, layer):
        hard_project(probe, plans, libraries=libraries)
        err_mag = _relative_error(probe, inputs, targets)
        with torch.no_grad():
            for k, p in layer.named_parameters():
                p.copy_(w0[k])
        result = admm(probe, plans, loader, iterations=iterations, epochs=epochs, rho=rho,
                      mode="joint", libraries=libraries, optimizer=optimizer, lr=lr, seed=seed,
                      progress=progress, loss_fn=loss_fn)
        proj = hard_project(probe, plans, libraries=libraries)
        err_admm = _relative_error(probe, inputs, targets)
        how = polish
        exact = used == "output" and lp.bits is None and (
            isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv2d) and layer.groups == 1))
        if how == "auto":
            how = "lstsq" if exact else "masked"
        if how == "lstsq":
            if not exact:
                raise ValueError(f"layer {name!r}: the closed-form polish needs the 'output' "
                                 "scope of a float Linear or Conv2d (groups=1) layer")
            new_w, new_b = least_squares_refit(layer, inputs, targets, proj.masks[inner][""],
                                               ridge=ridge,
                                               prior=(w0["weight"], w0.get("bias")))
            with torch.no_grad():
                layer.weight.copy_(new_w)
                if new_b is not None:
                    layer.bias.copy_(new_b)
        elif how == "masked" and polish_epochs > 0:
            kept = {k: v.detach().clone() for k, v in layer.named_parameters()}
            masked_retrain(probe, plans, proj, loader, polish_epochs, optimizer=optimizer, lr=lr,
                           seed=seed + 500, progress=False, loss_fn=loss_fn)
            if _relative_error(probe, inputs, targets) > err_admm:   # keep the better weights
                with torch.no_grad():
                    for k, p in layer.named_parameters():
                        p.copy_(kept[k])
        err_final = _relative_error(probe, inputs, targets) if how != "none" else err_admm
    rename = Projection({name: proj.weights[inner]}, {name: proj.masks[inner]},
                        {name: proj.scales[inner]})
    record = LayerRecord(name, used, how, int(starts[-1]), err_mag, err_admm, err_final,
                         result.history, time.perf_counter() - start)
    return rename, libraries.get(inner), record


def _targets(reference: nn.Module, chain: Sequence[str],
             inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with _eval(reference):
        return [_run(reference, chain, x) for x in inputs]


def _check(scope: str, inputs: str, targets: str, polish: str, iterations: int, epochs: int,
           polish_epochs: int, threads: int | None) -> None:
    if targets not in TARGETS:
        raise ValueError(f"unknown targets {targets!r}; known: {', '.join(TARGETS)}")
    if inputs not in INPUTS:
        raise ValueError(f"unknown input source {inputs!r}; known: {', '.join(INPUTS)}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")
    if polish not in POLISH:
        raise ValueError(f"unknown polish {polish!r}; known: {', '.join(POLISH)}")
    for key, value in (("iterations", iterations), ("epochs", epochs),
                       ("polish_epochs", polish_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, not {value!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads <= 0):
        raise ValueError(f"Threads must be a positive integer, not {threads!r}")


def prune_data_free(model: nn.Module, plan: Plan | Mapping[str, LayerPlan], *,
                    synthetic: SyntheticSpec | None = None,
                    input_shape: Sequence[int] | None = None, scope: str = "output",
                    inputs: str = "prefix", targets: str = "same", iterations: int = 10, epochs: int = 1,
                    rho: float = 1e-2, rho_factor: float = 1.5, rho_max: float = 1.0,
                    optimizer: str = "adam", lr: float = 1e-3, polish: str = "auto",
                    polish_epochs: int = 5, ridge: float = 1e-2, seed: int = 0,
                    progress: bool = False,
                    callback: Callable[[LayerRecord], object] | None = None,
                    threads: int | None = DEFAULT_THREADS) -> DataFreeResult:
    """Prune the trained ``model`` in place layer by layer on synthetic inputs.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model; on return its planned layers hold the pruned (and quantized)
        weights. Nothing else of it changes (BatchNorm statistics included).
    plan : Plan or mapping of layer name to LayerPlan
        The schemes, resolved against ``model`` unless already resolved.
    synthetic : SyntheticSpec, optional
        The synthetic inputs (default ``SyntheticSpec()``) (:mod:`pruning.synthetic`); drawn once, used for every layer.
    input_shape : sequence of int, optional
        One input sample's shape (default: the model's ``input_shape`` attribute).
    scope : {"output", "activation", "block"}
        Where each layer's reconstruction error is measured (module docstring).
    inputs : {"prefix", "original"}
        Each scope's inputs come from the model pruned so far, or from the original model.
    targets : {"same", "original"}
        The reference output: the original scope on the same inputs (``F_i(X; W_i^0)``, the
        default), or the original model's own activations there (``F_i(X^0; W_i^0)`` with
        ``X^0`` from the original prefix: each layer then also corrects the error its pruned
        prefix passes on). The same with ``inputs="original"``.
    iterations, epochs : int
        ADMM iterations per layer and W-step passes over the synthetic batches in each.
    rho, rho_factor, rho_max : float
        The :class:`pruning.admm.RhoSchedule` of every layer.
    optimizer, lr
        The W-step (and masked polish) optimizer.
    polish : {"auto", "lstsq", "masked", "none"}, polish_epochs : int
        How the kept weights are refitted after the hard projection (module docstring).
    ridge : float
        The closed form's ridge toward the trained weights (:func:`least_squares_refit`). A
        near-zero ridge fits the synthetic inputs exactly, also along directions they barely
        excite; on VGGSmall such weights retrained clearly worse on real digits than with 1e-2
        (a one-seed trial during development, not a benchmark).
    seed : int
        Seeds the W-steps (the synthetic batches have ``synthetic.seed``).
    progress : bool
        ADMM progress bars on stderr.
    callback : callable, optional
        Called with each layer's :class:`LayerRecord` when it is done.
    threads : int or None
        Torch intra-op threads for the run (restored afterwards; see
        :data:`pruning.train.DEFAULT_THREADS`); ``None`` keeps the current setting.

    Returns
    -------
    DataFreeResult
        ``result.export(model)`` gives the bundle.
    """
    _check(scope, inputs, targets, polish, iterations, epochs, polish_epochs, threads)
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("give input_shape: the model has no input_shape attribute")
    synthetic = synthetic if synthetic is not None else SyntheticSpec()
    batches = synthetic_batches(synthetic, shape, model)
    result = prune_layerwise(model, plan, batches, scope=scope, inputs=inputs, targets=targets,
                             iterations=iterations, epochs=epochs, rho=rho,
                             rho_factor=rho_factor, rho_max=rho_max, optimizer=optimizer, lr=lr,
                             polish=polish, polish_epochs=polish_epochs, ridge=ridge, seed=seed,
                             progress=progress, callback=callback, threads=threads)
    settings = {"synthetic": synthetic.__dict__.copy(), "input_shape": list(shape),
                **result.settings}
    return DataFreeResult(result.plans, result.projection, result.libraries, result.layers,
                          settings, result.seconds)


def prune_layerwise(model: nn.Module, plan: Plan | Mapping[str, LayerPlan],
                    batches: Sequence[torch.Tensor], *, scope: str = "output",
                    inputs: str = "prefix", targets: str = "same", iterations: int = 10, epochs: int = 1,
                    rho: float = 1e-2, rho_factor: float = 1.5, rho_max: float = 1.0,
                    optimizer: str = "adam", lr: float = 1e-3, polish: str = "auto",
                    polish_epochs: int = 5, ridge: float = 1e-2, seed: int = 0,
                    progress: bool = False,
                    callback: Callable[[LayerRecord], object] | None = None,
                    threads: int | None = DEFAULT_THREADS) -> DataFreeResult:
    """The layer-wise engine of :func:`prune_data_free` on given input ``batches`` (model
    inputs): the synthetic batches there; real calibration inputs make the data-driven
    layer-wise variant the benchmark compares against. Arguments as :func:`prune_data_free`."""
    _check(scope, inputs, targets, polish, iterations, epochs, polish_epochs, threads)
    if not batches:
        raise ValueError("the layer-wise pass needs at least one input batch")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _prune(model, plan, list(batches), scope, inputs, targets, iterations, epochs, rho,
                      rho_factor, rho_max, optimizer, lr, polish, polish_epochs, ridge, seed,
                      progress, callback)
    finally:
        torch.set_num_threads(old_threads)


def _prune(model: nn.Module, plan: Plan | Mapping[str, LayerPlan],
           batches: list[torch.Tensor], scope: str, inputs: str, targets: str, iterations: int,
           epochs: int,
           rho: float, rho_factor: float, rho_max: float, optimizer: str, lr: float, polish: str,
           polish_epochs: int, ridge: float, seed: int, progress: bool,
           callback: Callable[[LayerRecord], object] | None) -> DataFreeResult:
    start = time.perf_counter()
    plans = resolve(plan, model) if isinstance(plan, Plan) else dict(plan)
    conn = [n for n, p in plans.items() if getattr(p.config, "connected", False)]
    if conn:
        raise ValueError(f"layer {conn[0]!r}: connected pruning projects the whole chain of "
                         "layers at once; the data-free mode prunes one layer at a time (plan "
                         "these layers without connected)")
    plans = global_split(model, plans)
    reference = copy.deepcopy(model).eval()
    schedule = RhoSchedule(rho, rho_factor, max(rho_max, rho))
    active = [n for n, p in plans.items()
              if not (isinstance(p.config, DenseConfig) and p.bits is None)]
    order = layer_order(model, active, batches[0])
    weights: dict[str, dict[str, torch.Tensor]] = {}
    masks: dict[str, dict[str, torch.Tensor]] = {}
    scales: dict[str, float | None] = {}
    libraries: dict[str, np.ndarray] = {}
    records = []
    for k, name in enumerate(order):
        if plans[name].op not in ("conv2d", "linear"):
            raise ValueError(f"layer {name!r}: the data-free mode prunes Conv2d and Linear "
                             f"layers, not {plans[name].op}")
        source, chain, _ = scope_of(model, name, scope)
        x0 = capture_inputs(reference, source, batches)
        xs = capture_inputs(model, source, batches) if inputs == "prefix" else x0
        ts = _targets(reference, chain, x0 if targets == "original" else xs)
        proj, library, record = reconstruct_layer(
            model, reference, plans[name], xs, scope=scope, iterations=iterations,
            epochs=epochs, rho=schedule, optimizer=optimizer, lr=lr, polish=polish,
            polish_epochs=polish_epochs, seed=seed + 1000 * k, progress=progress, targets=ts,
            ridge=ridge)
        weights |= proj.weights
        masks |= proj.masks
        scales |= proj.scales
        if library is not None:
            libraries[name] = library
        records.append(record)
        if callback is not None:
            callback(record)
    for name in plans:           # dense float layers (an RNN's too: its ih and hh parts)
        if name not in masks:
            parts = {k: w.detach() for k, w in
                     weight_params(prunable_layers(model)[name]).items()}
            masks[name] = {k: torch.ones_like(w, dtype=torch.bool) for k, w in parts.items()}
            weights[name] = {k: w.clone() for k, w in parts.items()}
            scales[name] = None
    settings = {"samples": sum(len(x) for x in batches), "scope": scope, "targets": targets, "inputs": inputs, "iterations": iterations, "epochs": epochs,
                "rho": rho, "rho_factor": rho_factor, "rho_max": rho_max,
                "optimizer": optimizer, "lr": lr, "polish": polish,
                "polish_epochs": polish_epochs, "ridge": ridge, "seed": seed}
    return DataFreeResult(plans, Projection(weights, masks, scales), libraries, tuple(records),
                          settings, time.perf_counter() - start)


def global_split(model: nn.Module, plans: Mapping[str, LayerPlan]) -> dict[str, LayerPlan]:
    """``plans`` with every global unstructured layer made per-layer, at the sparsity the
    global magnitude projection of ``model``'s weights gives it.

    The per-layer sparsity ``1 - k_i / n_i`` keeps exactly the ``k_i`` weights that
    :func:`pruning.projections.masks_global` keeps in layer ``i`` (a layer it would empty keeps
    one weight: a per-layer sparsity is below 1). Other plans are returned unchanged.
    """
    glob = [n for n, p in plans.items()
            if isinstance(p.config, UnstructuredConfig) and p.config.scope == "global"]
    if not glob:
        return dict(plans)
    layers = prunable_layers(model)
    parts = [(n, w.detach()) for n in glob for w in weight_params(layers[n]).values()]
    masks = masks_global([plans[n].config for n, _ in parts], [w for _, w in parts])
    kept = dict.fromkeys(glob, 0)
    numel = dict.fromkeys(glob, 0)
    for (n, w), m in zip(parts, masks, strict=True):
        kept[n] += int(m.sum())
        numel[n] += w.numel()
    return {n: dataclasses.replace(p, config=dataclasses.replace(
                p.config, scope="layer", sparsity=1.0 - max(1, kept[n]) / numel[n]))
            if n in kept else p for n, p in plans.items()}


def magnitude_prune(model: nn.Module, plan: Plan | Mapping[str, LayerPlan]) -> Projection:
    """The baseline without optimisation: each planned layer set to its scheme's projection of
    the trained weights (pattern libraries chosen on them), in place; returns the projection."""
    plans = resolve(plan, model) if isinstance(plan, Plan) else dict(plan)
    return hard_project(model, plans, libraries=select_libraries(model, plans))


def reconstruction_errors(model: nn.Module, reference: nn.Module, names: Sequence[str],
                          batches: Sequence[torch.Tensor], scope: str = "output"
                          ) -> dict[str, float]:
    """``||F_i(X_i; W_i) - F_i(X_i; W_i^0)|| / ||F_i(X_i; W_i^0)||`` per layer on ``batches``.

    ``X_i`` is the scope input in ``model`` (the pruned prefix), ``F_i(.; W^0)`` the same scope
    in ``reference`` (the original model). The caller chooses the batches (real held-out inputs
    in the benchmark); this module reads none itself.
    """
    out = {}
    for name in names:
        source, chain, _ = scope_of(model, name, scope)
        xs = capture_inputs(model, source, batches)
        mods = _modules(model)
        probe = _Probe([mods[n] for n in chain])
        out[name] = _relative_error(probe, xs, _targets(reference, chain, xs))
    return out
