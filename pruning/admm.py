"""The ADMM engine: constrained training, hard projection and masked retraining.

For the constrained layers ``i`` of a resolved plan (:func:`pruning.plan.resolve`) ADMM solves
``min loss(W)`` subject to ``W_i in S_i`` by alternating

* **W-step** (:func:`admm`): some epochs of any torch optimizer on
  ``loss(W) + sum_i (rho_i / 2) * ||W_i - Z_i + U_i||_F^2`` (:func:`penalty`);
* **Z-step**: ``Z_i = Proj_{S_i}(W_i + U_i)`` (:func:`project_weights`);
* **U-step**: ``U_i += W_i - Z_i``;

with ``rho_i`` grown by a :class:`RhoSchedule` after every iteration. ``S_i`` is the layer's
pruning set (``mode="prune"``), its quantization levels on fixed masks (``"quant"``) or both
(``"joint"``: the pruning projection, then the kept weights projected onto the ``bits``-bit
levels of their error-minimising scale, as ADMM-NN does). An RNN layer's ``weight_ih`` and
``weight_hh`` are each projected onto the scheme (each gate-stacked matrix on its own) and share
one quantization scale. Pattern layers use one library per layer, chosen once on the trained
weights (:func:`select_libraries`) and passed to every projection.

After ADMM, :func:`hard_project` sets ``W <- Proj(W)`` and returns the masks and scales;
:func:`masked_retrain` then trains with the masks re-applied after every optimizer step (so
neither momentum nor weight decay revives a pruned weight) and, for quantized layers, with
straight-through quantization: float shadow weights take the optimizer's updates and the model
always holds their projection onto the fixed levels, so it ends exactly quantized.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from numbers import Real

import numpy as np
import torch
from torch import nn

from pruning.connectivity import connected_masks
from pruning.plan import LayerPlan, connected_chain, prunable_layers, weight_params
from pruning.projections import mask_of, masks_global, select_pattern_library
from pruning.quantize import best_scale, quantize_fixed
from pruning.schemes import DenseConfig, PatternConfig, UnstructuredConfig, kept_count
from pruning.train import Distill, EpochStats, make_optimizer, train

__all__ = ["MODES", "RhoSchedule", "ramped_plans", "penalty", "penalty_grad", "Projection", "project_weights",
           "select_libraries", "ADMMIteration", "ADMMResult", "admm", "hard_project",
           "masked_retrain", "layer_weights"]

log = logging.getLogger(__name__)
MODES = ("joint", "prune", "quant")
Weights = Mapping[str, Mapping[str, torch.Tensor]]     # layer -> "" / "ih" / "hh" -> tensor


@dataclass(frozen=True)
class RhoSchedule:
    """Progressive penalty: ``rho(k) = min(maximum, initial * factor**k)`` at iteration ``k``
    (from 0). ``initial > 0``, ``factor >= 1``, ``maximum >= initial``."""

    initial: float = 1e-2
    factor: float = 1.5
    maximum: float = 1.0

    def __post_init__(self) -> None:
        for key, lo in (("initial", 0.0), ("factor", 1.0), ("maximum", self.initial)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                    or v < lo or (key == "initial" and v == 0):
                raise ValueError(f"Rho {key} must be a finite number "
                                 f"{'> 0' if key == 'initial' else f'>= {lo:g}'}, not {v!r}")

    def at(self, k: int, initial: float | None = None) -> float:
        """``rho`` at iteration ``k``, from ``initial`` (default: this schedule's)."""
        start = self.initial if initial is None else initial
        try:
            grown = start * self.factor ** k
        except OverflowError:   # a float power past 1.8e308 raises rather than giving inf
            grown = math.inf
        return min(max(self.maximum, start), grown)


def penalty(weights: Sequence[torch.Tensor], z: Sequence[torch.Tensor],
            u: Sequence[torch.Tensor], rho: float | Sequence[float]) -> torch.Tensor:
    """``sum_i (rho_i / 2) * ||W_i - Z_i + U_i||_F^2``, differentiable in the ``W_i``.

    ``rho`` is one number for every term or one per term; the sequences have equal lengths and
    each ``Z_i``, ``U_i`` has ``W_i``'s shape. Its gradient is :func:`penalty_grad`.
    """
    one = isinstance(rho, Real) or (isinstance(rho, torch.Tensor) and rho.dim() == 0)
    rhos = [float(rho)] * len(weights) if one else list(rho)   # np.float32 is no float
    if not len(weights) == len(z) == len(u) == len(rhos):
        raise ValueError(f"Got {len(weights)} weights, {len(z)} Z, {len(u)} U and "
                         f"{len(rhos)} rho values; they must match")
    total = torch.zeros((), dtype=torch.float32)
    for w, zi, ui, r in zip(weights, z, u, rhos, strict=True):
        total = total + (r / 2) * (w - zi.detach() + ui.detach()).square().sum()
    return total


def penalty_grad(weights: Sequence[torch.Tensor], z: Sequence[torch.Tensor],
                 u: Sequence[torch.Tensor], rho: float | Sequence[float]) -> list[torch.Tensor]:
    """The gradient of :func:`penalty` in each ``W_i``: ``rho_i * (W_i - Z_i + U_i)``."""
    one = isinstance(rho, Real) or (isinstance(rho, torch.Tensor) and rho.dim() == 0)
    rhos = [float(rho)] * len(weights) if one else list(rho)   # np.float32 is no float
    return [r * (w.detach() - zi + ui) for w, zi, ui, r in zip(weights, z, u, rhos, strict=True)]


@dataclass(frozen=True)
class Projection:
    """Projected weights, their bool masks and scales (``None``: float), per layer and part."""

    weights: dict[str, dict[str, torch.Tensor]]
    masks: dict[str, dict[str, torch.Tensor]]
    scales: dict[str, float | None]


def project_weights(plans: Mapping[str, LayerPlan], weights: Weights, *, mode: str = "joint",
                    libraries: Mapping[str, np.ndarray] | None = None,
                    masks: Weights | None = None) -> Projection:
    """Project every layer of ``plans`` (pure; ``weights`` has a part dict for each).

    ``mode="prune"``: each part zeroed outside :func:`pruning.projections.mask_of` of the
    layer's config (global unstructured layers together, :func:`~pruning.projections.masks_global`;
    connected unstructured layers together along their chain,
    :func:`pruning.connectivity.connected_masks`);
    ``"joint"``: then a layer with ``bits`` rounded to the levels of
    :func:`~pruning.quantize.best_scale` of its kept weights (one scale for all its parts);
    ``"quant"``: the given ``masks`` are kept and only the quantization is applied.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    libraries = libraries or {}
    if mode == "quant":
        if masks is None:
            raise ValueError("mode 'quant' needs the masks of the pruned model")
        out_m = {n: {s: masks[n][s].bool() for s in weights[n]} for n in plans}
    else:
        out_m, glob = _connected(plans, weights), []
        for name, lp in plans.items():
            cfg = lp.config
            if name in out_m:
                continue
            if isinstance(cfg, UnstructuredConfig) and cfg.scope == "global":
                glob += [(name, s) for s in weights[name]]
                continue
            ctx = {"library": libraries[name]} if isinstance(cfg, PatternConfig) and \
                name in libraries else {}
            out_m[name] = {s: mask_of(cfg, w, **ctx) for s, w in weights[name].items()}
        if glob:
            found = masks_global([plans[n].config for n, _ in glob],
                                 [weights[n][s] for n, s in glob])
            for (n, s), m in zip(glob, found, strict=True):
                out_m.setdefault(n, {})[s] = m
    out_w, scales = {}, {}
    for name, lp in plans.items():
        ws, ms = weights[name], out_m[name]
        q = None
        if lp.bits is not None and mode != "prune":
            q = best_scale([ws[s].detach() for s in ws], lp.bits, [ms[s] for s in ws])
            out_w[name] = {s: quantize_fixed(ws[s].detach(), q, lp.bits, ms[s]) for s in ws}
        else:
            out_w[name] = {s: torch.where(ms[s], ws[s].detach(), torch.zeros((), dtype=ws[s].dtype))
                           for s in ws}
        scales[name] = q
    return Projection(out_w, {n: dict(out_m[n]) for n in plans}, scales)


def _connected(plans: Mapping[str, LayerPlan], weights: Weights) -> dict[str, dict[str, torch.Tensor]]:
    """Masks of the connected unstructured layers (:mod:`pruning.connectivity`), projected
    together along their chain; empty when no layer of ``plans`` is connected."""
    chain = connected_chain(plans)
    conn = [n for n, p in plans.items()
            if isinstance(p.config, UnstructuredConfig) and p.config.connected]
    if not conn:
        return {}
    if chain is None or set(conn) != set(chain):
        missing = sorted(set(chain or ()) - set(conn)) or conn
        raise ValueError(f"connected pruning projects a whole chain of layers at once; layers "
                         f"{', '.join(map(repr, missing))} are missing from it (resolve the plan "
                         "against the whole model)")
    configs = [plans[n].config for n in chain]
    ws = [weights[n][""] for n in chain]
    if configs[0].scope == "global":
        kept: int | list[int] = kept_count(configs[0].sparsity, sum(w.numel() for w in ws))
    else:
        kept = [kept_count(c.sparsity, w.numel()) for c, w in zip(configs, ws, strict=True)]
    masks = connected_masks(ws, kept)
    return {n: {"": m.to(w.device)} for n, m, w in zip(chain, masks, ws, strict=True)}


def ramped_plans(plans: Mapping[str, LayerPlan], k: int, ramp: int) -> dict[str, LayerPlan]:
    """``plans`` with the sparsity of every unstructured layer ramped for ADMM iteration ``k``.

    Gradual pruning (Zhu and Gupta's cubic schedule) inside ADMM: at iteration ``k`` (from 0) of
    a ramp of ``ramp`` iterations an unstructured layer of sparsity ``s`` is projected with
    sparsity ``s * (1 - (1 - (k + 1) / ramp)**3)``, reaching ``s`` at iteration ``ramp - 1`` and
    staying there; ``ramp <= 1`` or ``k >= ramp - 1`` returns the plans unchanged. Other schemes
    are never ramped.
    """
    if ramp <= 1 or k >= ramp - 1:
        return dict(plans)
    frac = 1 - (1 - (k + 1) / ramp) ** 3
    return {n: replace(p, config=replace(p.config, sparsity=p.config.sparsity * frac))
            if isinstance(p.config, UnstructuredConfig) else p for n, p in plans.items()}


def layer_weights(model: nn.Module, plans: Iterable[str]) -> dict[str, dict[str, nn.Parameter]]:
    """The constrained parameters of the named layers of ``model`` (see ``weight_params``)."""
    layers = prunable_layers(model)
    return {name: weight_params(layers[name]) for name in plans}


def select_libraries(model: nn.Module, plans: Mapping[str, LayerPlan]) -> dict[str, np.ndarray]:
    """One pattern library per pattern layer, chosen on its current (trained) weights."""
    params = layer_weights(model, plans)
    return {n: select_pattern_library(params[n][""].detach(), p.config.library_size,
                                      p.config.keep)
            for n, p in plans.items() if isinstance(p.config, PatternConfig)}


@dataclass(frozen=True)
class ADMMIteration:
    """One ADMM iteration: its ``rho`` and residual ``||W - Z|| / ||W||`` per layer, the mean
    W-step loss (task + penalty) of its last epoch, and its wall-clock time."""

    phase: str
    iteration: int
    rho: dict[str, float]
    residual: dict[str, float]
    loss: float
    seconds: float


@dataclass(frozen=True)
class ADMMResult:
    """What :func:`admm` did: the iterations and the last ``Z`` (its masks and scales)."""

    history: tuple[ADMMIteration, ...]
    z: Projection


def _active(plans: Mapping[str, LayerPlan], mode: str) -> dict[str, LayerPlan]:
    """Layers whose set is not everything: not dense-and-float (quant mode: quantized only)."""
    return {n: p for n, p in plans.items()
            if (p.bits is not None and mode != "prune")
            or (mode != "quant" and not isinstance(p.config, DenseConfig))}


@contextmanager
def _bars(enabled: bool, label: str, iterations: int,
          inner: bool = True) -> Iterator[Callable[..., None]]:
    """Rich progress on stderr: a bar over iterations (or epochs) and, with ``inner``, one over
    the optimizer steps of each ADMM iteration's W-step."""
    if not enabled:
        yield lambda *a, **k: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cols = (TextColumn("{task.description:<20}"), BarColumn(bar_width=20), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*cols, console=Console(stderr=True)) as bar:
        outer = bar.add_task(label, total=iterations, info="")
        steps = bar.add_task("  W-step", total=None, info="") if inner else None

        def update(what: str, k: int = 0, total: int | None = None, info: str = "") -> None:
            if what == "start" and steps is not None:
                bar.reset(steps, total=total, description=f"  iteration {k}/{iterations}")
            elif what == "step" and steps is not None:
                bar.advance(steps)
            else:
                bar.update(outer, advance=1, info=info)
        yield update


def admm(model: nn.Module, plans: Mapping[str, LayerPlan], loader: Iterable, *, iterations: int,
         epochs: int = 1, rho: RhoSchedule | float = RhoSchedule(),
         layer_rho: Mapping[str, float] | None = None, mode: str = "joint",
         libraries: Mapping[str, np.ndarray] | None = None, masks: Weights | None = None,
         optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.9,
         weight_decay: float = 0.0, seed: int = 0, progress: bool = True,
         loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
         distill: Distill | None = None, ramp: int = 0,
         rescale_dual: bool = False) -> ADMMResult:
    """Run ``iterations`` ADMM iterations on ``model`` in place (see the module docstring).

    Parameters
    ----------
    plans : mapping of layer name to LayerPlan
        The constrained layers; dense float layers (and, in ``"quant"`` mode, float layers) are
        left unconstrained.
    loader : iterable of (inputs, labels)
        Training batches for the W-steps.
    iterations, epochs : int
        ADMM iterations, and W-step epochs in each.
    rho : RhoSchedule or float
        The schedule (a float is ``RhoSchedule(initial=rho)``). A layer's initial value is
        ``layer_rho[name]`` if given, else its plan's ``rho`` if set, else the schedule's.
    mode : {"joint", "prune", "quant"}
        The constraint set; ``"quant"`` needs ``masks``, which also stay applied in the W-step.
    optimizer, lr, momentum, weight_decay
        One optimizer (``pruning.train.make_optimizer``) for all W-steps.
    seed : int
        Iteration ``k`` trains with seed ``seed + k``.
    progress : bool
        Show rich progress bars on stderr.
    loss_fn : callable, optional
        The task loss (``pruning.train.train``'s; default cross-entropy).
    distill : pruning.train.Distill, optional
        Knowledge distillation in the W-steps (``pruning.train.train``'s ``distill``): the task
        loss becomes the distillation loss from the teacher.
    ramp : int
        Gradual pruning: over the first ``ramp`` iterations the Z-step's sparsity of unstructured
        layers rises along a cubic schedule to the plan's (:func:`ramped_plans`); the initial
        ``Z`` uses the first iteration's sparsity. 0 (default): the plan's sparsity throughout.
        In ``"quant"`` mode (fixed masks) it has no effect.
    rescale_dual : bool
        Keep the unscaled dual ``Y_i = rho_i * U_i`` when ``rho_i`` grows: ``U_i`` is multiplied
        by ``rho_i(k-1) / rho_i(k)`` before iteration ``k`` (Boyd et al., "Distributed
        optimization ... ADMM", 2011, section 3.4.1, for a varying penalty). False (default): the
        issue's ``U_i += W_i - Z_i`` alone, as ADMM-NN's code does, so ``Y_i`` grows with rho.

    Returns
    -------
    ADMMResult
        Per iteration ``rho`` and ``||W - Z|| / ||W||`` per layer (also logged at INFO level).
    """
    sched = rho if isinstance(rho, RhoSchedule) else RhoSchedule(   # maximum raised to rho,
        initial=float(rho), maximum=max(float(rho), RhoSchedule.maximum))   # as a plan's rho
    for key, value in (("iterations", iterations), ("epochs", epochs), ("ramp", ramp)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, not {value!r}")
    layer_rho = dict(layer_rho or {})
    active = _active(plans, mode)
    params = layer_weights(model, active)
    # quant mode: the masks of every pruned layer stay applied in the W-step, float layers'
    # too (only the quantized ones are constrained; the others would regrow pruned weights)
    held = layer_weights(model, {n: plans[n] for n in (masks or {}) if n in plans}) \
        if mode == "quant" else {}
    held_masks = {n: {s: torch.as_tensor(masks[n][s]).to(torch.bool) for s in held[n]}
                  for n in held}
    current = {n: {s: p.detach() for s, p in ps.items()} for n, ps in params.items()}
    z = project_weights(ramped_plans(active, 0, ramp), current, mode=mode, libraries=libraries,
                        masks=masks)
    u = {n: {s: torch.zeros_like(p) for s, p in ps.items()} for n, ps in params.items()}
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    history: list[ADMMIteration] = []
    try:
        steps: int | None = len(loader) * epochs  # type: ignore[arg-type]
    except TypeError:
        steps = None
    previous: dict[str, float] = {}
    with _bars(progress and iterations > 0, f"ADMM ({mode})", iterations) as bar:
        for k in range(iterations):
            start = time.perf_counter()
            rhos = {n: sched.at(k, layer_rho.get(n, active[n].rho)) for n in active}
            if rescale_dual and previous:
                for n in active:
                    if rhos[n] != previous[n]:
                        for s in u[n]:
                            u[n][s] = u[n][s] * (previous[n] / rhos[n])
            previous = rhos
            order = [(n, s) for n in active for s in params[n]]
            ws = [params[n][s] for n, s in order]
            zs = [z.weights[n][s] for n, s in order]
            us = [u[n][s] for n, s in order]
            rs = [rhos[n] for n, _ in order]
            bar("start", k + 1, steps)

            def regularizer(_: nn.Module, ws=ws, zs=zs, us=us, rs=rs) -> torch.Tensor:
                bar("step")
                return penalty(ws, zs, us, rs)

            def keep_masks(_: nn.Module) -> None:
                for n, ps in held.items():
                    for s, param in ps.items():
                        param.masked_fill_(~held_masks[n][s], 0.0)

            with torch.enable_grad():        # even if the caller disabled gradients
                stats = train(model, loader, epochs, opt, seed=seed + k, regularizer=regularizer,
                              mask_fn=keep_masks if mode == "quant" else None, loss_fn=loss_fn,
                              distill=distill)
            w = {n: {s: p.detach() for s, p in ps.items()} for n, ps in params.items()}
            z = project_weights(ramped_plans(active, k + 1, ramp),
                                {n: {s: w[n][s] + u[n][s] for s in w[n]} for n in w},
                                mode=mode, libraries=libraries, masks=masks)
            residual = {}
            for n in active:
                diff = sum(float((w[n][s] - z.weights[n][s]).double().square().sum()) for s in w[n])
                norm = sum(float(w[n][s].double().square().sum()) for s in w[n])
                residual[n] = math.sqrt(diff / norm) if norm > 0 else 0.0
                for s in w[n]:
                    u[n][s] = u[n][s] + w[n][s] - z.weights[n][s]
            it = ADMMIteration(mode, k + 1, rhos, residual, stats[-1].loss if stats else 0.0,
                               time.perf_counter() - start)
            history.append(it)
            worst = max(residual.values(), default=0.0)
            log.info("ADMM %s iteration %d/%d: rho %s, ||W-Z||/||W|| %s", mode, k + 1,
                     iterations, {n: f"{r:.3g}" for n, r in rhos.items()},
                     {n: f"{r:.4f}" for n, r in residual.items()})
            bar("done", info=f"loss {it.loss:.4f}  max ||W-Z||/||W|| {worst:.4f}")
    return ADMMResult(tuple(history), z)


def hard_project(model: nn.Module, plans: Mapping[str, LayerPlan], *, mode: str = "joint",
                 libraries: Mapping[str, np.ndarray] | None = None,
                 masks: Weights | None = None) -> Projection:
    """Set every planned layer's weights to their projection (``W <- Proj(W)``, see
    :func:`project_weights`) and return it: the masks and scales for retraining and export."""
    params = layer_weights(model, plans)
    proj = project_weights(plans, {n: {s: p.detach() for s, p in ps.items()}
                                   for n, ps in params.items()},
                           mode=mode, libraries=libraries, masks=masks)
    with torch.no_grad():
        for n, ps in params.items():
            for s, p in ps.items():
                p.copy_(proj.weights[n][s])
    return proj


def masked_retrain(model: nn.Module, plans: Mapping[str, LayerPlan], projection: Projection,
                   loader: Iterable, epochs: int, *, optimizer: str | torch.optim.Optimizer = "adam",
                   lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                   seed: int = 0, progress: bool = True,
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                   schedule: str = "constant", distill: Distill | None = None
                   ) -> list[EpochStats]:
    """Retrain ``model`` in place keeping the projection's masks (and scales).

    After every optimizer step (``mask_fn`` of :func:`pruning.train.train`): a float layer's
    pruned weights are set to zero; a quantized layer (``projection.scales[name]`` not ``None``)
    adds the step's change to its float shadow weights, zeroes their pruned entries and holds
    ``quantize_fixed(shadow, scale, bits, mask)`` (straight-through estimator, fixed scale). So
    at every forward pass and on return the weights lie in the layer's set: no pruned weight is
    revived by momentum or weight decay, and quantized weights are exactly ``n * scale``.
    The model's weights must already be the projection (:func:`hard_project`).
    ``schedule`` (``"constant"`` or ``"cosine"``) and ``distill`` are
    :func:`pruning.train.train`'s.
    """
    params = layer_weights(model, plans)
    masks = {n: {s: projection.masks[n][s].bool() for s in ps} for n, ps in params.items()}
    shadow = {n: {s: p.detach().clone() for s, p in ps.items()} for n, ps in params.items()
              if projection.scales.get(n) is not None}
    last = {n: {s: t.clone() for s, t in ps.items()} for n, ps in shadow.items()}

    def reapply(_: nn.Module) -> None:
        for n, ps in params.items():
            q = projection.scales.get(n)
            for s, p in ps.items():
                if q is None:
                    p.masked_fill_(~masks[n][s], 0.0)
                    continue
                sh = shadow[n][s]
                sh.add_(p.detach() - last[n][s]).masked_fill_(~masks[n][s], 0.0)
                new = quantize_fixed(sh, q, plans[n].bits, masks[n][s])
                p.copy_(new)
                last[n][s] = new

    with _bars(progress and epochs > 0, "retrain (masked)", epochs, inner=False) as bar, \
            torch.enable_grad():
        return train(model, loader, epochs, optimizer, lr=lr, seed=seed, mask_fn=reapply,
                     momentum=momentum, weight_decay=weight_decay, loss_fn=loss_fn,
                     schedule=schedule, distill=distill,
                     callback=lambda st: bar("done", info=f"loss {st.loss:.4f}  "
                                                          f"train acc {st.accuracy:.2%}"))
