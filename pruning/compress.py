"""Compression end to end: a trained model and a plan in, an ``ir`` bundle out.

:func:`compress` resolves the plan, chooses pattern libraries on the trained weights, runs ADMM
(:mod:`pruning.admm`), projects hard, retrains with the masks (and quantization) held, and
exports the bundle (:func:`pruning.export.export`). The model is modified in place and ends as
the compressed, quantized model: the bundle's ``qweight * scale`` are exactly its weights, so the
bundle's integer model gives exactly its predictions.

Quantization (``quant``):

* ``"joint"``: one ADMM run whose Z-step is the pruning projection followed by the projection of
  the kept weights onto the ``bits``-bit levels (ADMM-NN's joint constraints), then one
  quantization-aware masked retraining;
* ``"two-phase"``: ADMM pruning, hard prune, masked float retraining; then ADMM quantization on
  the fixed masks, hard quantization and quantization-aware masked retraining (each phase with
  ``admm_iters`` iterations and ``retrain_epochs`` epochs).
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ir import Bundle, Layer
from pruning.admm import (
    ADMMIteration,
    RhoSchedule,
    admm,
    hard_project,
    masked_retrain,
    select_libraries,
)
from pruning.export import export
from pruning.plan import LayerPlan, Plan, resolve
from pruning.train import Distill, evaluate

__all__ = ["QUANT_MODES", "CompressResult", "compress", "layer_row", "totals"]

QUANT_MODES = ("joint", "two-phase")


def _scheme_text(layer: Layer) -> str:
    rec = layer.scheme.to_json()
    kind = rec.pop("kind")
    if kind == "pattern":
        return f"pattern(k={len(rec['patterns'])},conn={rec['connectivity']:.3g})"
    if kind == "bcr":
        return f"bcr({rec['block'][0]}x{rec['block'][1]})"
    if kind == "nm":
        return f"nm({rec['n']}:{rec['m']})"
    return kind


def layer_row(layer: Layer) -> dict[str, Any]:
    """One table row of a bundle layer: layer, op, scheme, sparsity, ratio (``None`` when
    nothing is kept), bits (32: float), nnz, numel, weight and index bits."""
    st = layer.stats
    return {"layer": layer.name, "op": layer.op, "scheme": _scheme_text(layer),
            "sparsity": round(1.0 - st.density, 4),
            "ratio": round(st.numel / st.nnz, 2) if st.nnz else None,
            "bits": layer.quant.bits if layer.quant is not None else 32,
            "nnz": st.nnz, "numel": st.numel, "weight_bits": st.weight_bits,
            "index_bits": st.index_bits}


def totals(bundle: Bundle) -> dict[str, Any]:
    """Whole-model figures: weights, kept weights, pruning ratio, and storage reduction against
    32-bit dense weights, for weights only and with index bits (``None`` where a count is 0)."""
    numel = sum(x.stats.numel for x in bundle.layers)
    nnz = sum(x.stats.nnz for x in bundle.layers)
    wbits = sum(x.stats.weight_bits for x in bundle.layers)
    ibits = sum(x.stats.index_bits for x in bundle.layers)
    return {"numel": numel, "nnz": nnz, "pruning_ratio": numel / nnz if nnz else None,
            "dense_bits": 32 * numel, "weight_bits": wbits, "index_bits": ibits,
            "storage_reduction_weights": 32 * numel / wbits if wbits else None,
            "storage_reduction_with_index": 32 * numel / (wbits + ibits) if wbits + ibits
            else None}


@dataclass(frozen=True)
class CompressResult:
    """What :func:`compress` produced.

    Attributes
    ----------
    bundle : ir.Bundle
        The compressed model.
    plans : dict of str to LayerPlan
        The resolved plan.
    accuracy_before, accuracy_projected, accuracy_after : float or None
        Test accuracy of the trained model, right after the (last) hard projection, and after
        retraining; ``None`` without a test loader.
    rows : tuple of dict
        :func:`layer_row` of every bundle layer.
    history : tuple of ADMMIteration
        Every ADMM iteration of every phase, with ``||W - Z|| / ||W||`` per layer.
    seconds : float
        Wall-clock time.
    """

    bundle: Bundle
    plans: dict[str, LayerPlan]
    accuracy_before: float | None
    accuracy_projected: float | None
    accuracy_after: float | None
    rows: tuple[dict[str, Any], ...]
    history: tuple[ADMMIteration, ...]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def totals(self) -> dict[str, Any]:
        """:func:`totals` of the bundle."""
        return totals(self.bundle)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (plan, settings, accuracies, rows, totals, ADMM history)."""
        return {"model": self.bundle.model, "settings": self.settings,
                "plan": [p.to_json() for p in self.plans.values()],
                "accuracy": {"before": self.accuracy_before,
                             "projected": self.accuracy_projected, "after": self.accuracy_after},
                "layers": list(self.rows), "totals": self.totals(),
                "admm": [{"phase": h.phase, "iteration": h.iteration, "loss": h.loss,
                          "seconds": round(h.seconds, 3), "rho": h.rho, "residual": h.residual}
                         for h in self.history],
                "seconds": round(self.seconds, 3)}


def compress(model: nn.Module, plan: Plan | Mapping[str, LayerPlan], train_loader: Iterable,
             test_loader: Iterable | None = None, *, epochs_admm: int = 1, admm_iters: int = 10,
             retrain_epochs: int = 3, rho: float = 1e-2, rho_factor: float = 1.5,
             rho_max: float = 1.0, layer_rho: Mapping[str, float] | None = None,
             quant: str = "joint", optimizer: str = "adam", lr: float = 1e-3,
             retrain_lr: float | None = None, weight_decay: float = 0.0, seed: int = 0,
             progress: bool = True, model_name: str | None = None,
             retrain_schedule: str = "constant", distill: float | None = None,
             distill_weight: float = 0.5, ramp: int = 0,
             label_smoothing: float = 0.0, rescale_dual: bool = False) -> CompressResult:
    """Compress a trained ``model`` in place by ``plan`` and export it.

    Parameters
    ----------
    model : torch.nn.Module
        The trained dense model; on return it holds the compressed (and quantized) weights.
    plan : Plan or mapping of layer name to LayerPlan
        Resolved against ``model`` (:func:`pruning.plan.resolve`) unless already resolved.
    train_loader, test_loader : iterable of (inputs, labels)
        Training batches; test batches for the accuracies (optional).
    epochs_admm : int
        W-step epochs per ADMM iteration.
    admm_iters, retrain_epochs : int
        ADMM iterations and masked retraining epochs (per phase, see the module docstring).
    rho, rho_factor, rho_max : float
        The :class:`pruning.admm.RhoSchedule` (``rho_max`` raised to ``rho`` if below it);
        ``layer_rho`` overrides ``rho`` per layer.
    quant : {"joint", "two-phase"}
        How quantization is combined with pruning.
    optimizer, lr, retrain_lr, weight_decay
        Optimizer name (``pruning.train.OPTIMIZERS``) and settings for the W-steps and the
        retraining (``retrain_lr`` defaults to ``lr``).
    seed : int
        Seeds every training run.
    progress : bool
        Show progress bars on stderr.
    model_name : str, optional
        The bundle's model name.
    retrain_schedule : {"constant", "cosine"}
        Learning-rate schedule of each masked retraining (``pruning.train.train``'s).
    distill : float, optional
        Knowledge distillation from the trained dense model (a frozen copy taken on entry) at
        this temperature, in every W-step and retraining (``pruning.train.Distill``); ``None``:
        plain cross-entropy.
    distill_weight : float
        Weight of the distillation term (the label loss gets ``1 - distill_weight``).
    ramp : int
        Gradual pruning inside ADMM over this many iterations (``pruning.admm.admm``'s
        ``ramp``); 0: the plan's sparsity from the first iteration.
    rescale_dual : bool
        :func:`pruning.admm.admm`'s: rescale the scaled dual ``U`` when rho grows.
    label_smoothing : float
        Label smoothing in [0, 1) of the cross-entropy of every W-step and retraining
        (``torch.nn.functional.cross_entropy``'s); 0: plain cross-entropy.

    Returns
    -------
    CompressResult

    Raises
    ------
    pruning.plan.PlanError
        If the plan does not fit the model. ``ValueError`` for bad settings.
    """
    if quant not in QUANT_MODES:
        raise ValueError(f"unknown quantization mode {quant!r}; known: {', '.join(QUANT_MODES)}")
    for key, value in (("epochs_admm", epochs_admm), ("admm_iters", admm_iters),
                       ("retrain_epochs", retrain_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, not {value!r}")
    if retrain_schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown retrain_schedule {retrain_schedule!r}; known: constant, cosine")
    if distill is not None and (isinstance(distill, bool) or not isinstance(distill, int | float)
                                or not math.isfinite(distill) or distill <= 0):
        raise ValueError(f"distill must be a positive temperature or None, not {distill!r}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, int | float) \
            or not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be a number in [0, 1), not {label_smoothing!r}")
    start = time.perf_counter()
    plans = resolve(plan, model) if isinstance(plan, Plan) else dict(plan)
    teacher = None
    if distill is not None:
        teacher = Distill(copy.deepcopy(model).requires_grad_(False), float(distill),
                          distill_weight)
    schedule = RhoSchedule(rho, rho_factor, max(rho_max, rho))
    settings = {"epochs_admm": epochs_admm, "admm_iters": admm_iters,
                "retrain_epochs": retrain_epochs, "rho": rho, "rho_factor": rho_factor,
                "rho_max": rho_max, "quant": quant, "optimizer": optimizer, "lr": lr,
                "retrain_lr": retrain_lr if retrain_lr is not None else lr,
                "weight_decay": weight_decay, "seed": seed, "retrain_schedule": retrain_schedule,
                "distill": distill, "distill_weight": distill_weight if distill else None,
                "ramp": ramp, "label_smoothing": label_smoothing, "rescale_dual": rescale_dual}
    common = {"optimizer": optimizer, "weight_decay": weight_decay, "progress": progress,
              "loss_fn": functools.partial(nn.functional.cross_entropy,
                                           label_smoothing=float(label_smoothing))
              if label_smoothing else None}
    acc = (lambda: evaluate(model, test_loader)) if test_loader is not None else (lambda: None)
    before = acc()
    libraries = select_libraries(model, plans)
    phases = ["joint"] if quant == "joint" else ["prune"] + (
        ["quant"] if any(p.bits is not None for p in plans.values()) else [])
    history: list[ADMMIteration] = []
    masks = None
    projected = None
    for i, mode in enumerate(phases):
        result = admm(model, plans, train_loader, iterations=admm_iters, epochs=epochs_admm,
                      rho=schedule, layer_rho=layer_rho, mode=mode, libraries=libraries,
                      masks=masks, lr=lr, seed=seed + 1000 * i, distill=teacher, ramp=ramp,
                      rescale_dual=rescale_dual, **common)
        history += result.history
        proj = hard_project(model, plans, mode=mode, libraries=libraries, masks=masks)
        masks = proj.masks
        projected = acc()
        masked_retrain(model, plans, proj, train_loader, retrain_epochs,
                       lr=retrain_lr if retrain_lr is not None else lr,
                       seed=seed + 1000 * i + 500, schedule=retrain_schedule, distill=teacher,
                       **common)
    bundle = export(model, plans, masks=masks, scales=proj.scales, libraries=libraries,
                    model_name=model_name)
    return CompressResult(bundle=bundle, plans=plans, accuracy_before=before,
                          accuracy_projected=projected, accuracy_after=acc(),
                          rows=tuple(layer_row(x) for x in bundle.layers),
                          history=tuple(history), seconds=time.perf_counter() - start,
                          settings=settings)
