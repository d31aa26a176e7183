"""Benchmark: ADMM compression of LeNet-5 (Caffe variant) on the 1,000 held-out mnist5k digits.

A script, not a test. For every seed:

1. train the dense LeNet-5 once (``pruning.zoo.RECIPES["lenet5"]``); ADMM and the peer both start
   from this checkpoint;
2. for every overall pruning ratio (default 85x, 100x, 150x):

   * **ADMM** (``pruning.compress.compress``, float weights): unstructured pruning with the
     authors' per-layer profile (conv1 80%, conv2 92%, fc1 99.1%, fc2 93% pruned, i.e. 71.2x)
     with every layer's kept fraction scaled by the same factor to reach the overall ratio
     (``--scope profile``, the default), or one global magnitude threshold (``--scope global``);
     ``admm_iters`` W-step epochs, hard prune, ``retrain_epochs`` of masked retraining;
   * **peer**: ``torch.nn.utils.prune.l1_unstructured`` on the dense checkpoint with exactly
     ADMM's kept count in every layer, then fine-tuning with the same optimizer, learning rate,
     batch size and number of optimizer steps as ADMM (W-steps + retraining);
   * **quantized ADMM**: the ADMM-pruned model, then ADMM quantization on its fixed masks
     (``pruning.admm.admm(mode="quant")``), hard quantization, quantization-aware masked
     retraining, export to an ``ir`` bundle; storage reduction against 32-bit dense weights from
     the bundle's stats: weights only (``nnz x bits``, the bundle exported with 16-bit indexes,
     which need no padding entries), the CSR values including padding entries, and with index
     bits (for these two the CSR relative-index width of each layer is chosen to minimise its
     weight + index bits).

Training options, applied identically to ADMM and to the peer (and to the dense model where it
applies), so the comparison stays fair: ``--augment`` (random affine augmentation of the 4,000
training digits, new transforms every epoch, the same batches for both sides: dense training,
W-steps, retraining, peer fine-tuning, quantization); ``--distill T`` (knowledge distillation from
the dense model in every compression phase of both sides); ``--retrain-schedule cosine`` (the
retraining and the peer's matching last epochs); ``--optimizer``, ``--weight-decay`` (every
compression phase of both sides), ``--retrain-lr`` (the retraining's initial lr, and the peer's
matching last epochs', with ``--peer-recipe mirror``); ``--ramp`` (gradual pruning inside
ADMM, an ADMM option with no peer counterpart); ``--rho-scale`` (per-layer ``rho_i`` of ADMM's
pruning penalty, the plan's ``rho`` key; with ``--scope global`` it also shifts ADMM's per-layer
allocation, which the peer then copies). ``--merge`` prints one report over the CSVs of separate runs
(one seed each, run in parallel).

Prints a mean +- std table over seeds, the targets beside the measured values and the published
figures (quoted, not measured), and saves one row per seed and run as CSV
(``bench/results/compression.csv``).

Usage::

    python bench/compression.py              # 3 seeds
    python bench/compression.py --seeds 1    # one seed
    python bench/compression.py --quick      # smoke run (minutes; numbers meaningless)
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from codesign.atomic import write_csv
from codesign.options import (
    LR_ARG,
    SEED_ARG,
    file_problem,
    float_arg,
    int_arg,
    list_arg,
    parse_quick,
)
from pruning import data as pdata
from pruning import zoo
from pruning.admm import admm, hard_project, masked_retrain
from pruning.compress import compress, layer_row, totals
from pruning.errors import reports_divergence
from pruning.export import export
from pruning.plan import MAX_RATIO, Plan, Rule, prunable_layers, resolve
from pruning.train import OPTIMIZERS, Distill, evaluate, train

HERE = Path(__file__).resolve().parent
MODEL = "lenet5"
DATASET = "mnist5k"
#: The authors' LeNet-5 per-layer sparsity profile (REFERENCES.md: authors' TF code), 71.2x.
#: argparse types: an overall pruning ratio (a compression above 1), a positive finite number.
RATIO = float_arg(1, MAX_RATIO, low_open=True)
POSITIVE = float_arg(0, low_open=True)
PROFILE = {"conv1": 0.80, "conv2": 0.92, "fc1": 0.991, "fc2": 0.93}

TARGET_DROP_PP = 0.3          # >= 100x pruning with <= 0.3 pp accuracy drop
TARGET_RATIO = 100.0
TARGET_STORAGE = 2000.0       # >= 2,000x weights-only storage reduction
TARGET_GAP_PP = 1.0           # ADMM >= 1 pp above magnitude + fine-tune at 99% sparsity
NOT_MEASURED = "not measured"  # the "met" column of a target this run did not measure

PUBLISHED = [
    ("ADMM-NN (Ren et al., ASPLOS 2019)", "85x pruning LeNet-5, no accuracy loss; 1,910x "
     "model-size reduction with quantization (weights only)", "arXiv 1812.11677, abstract"),
    ("ADMM pruning (Zhang et al., ECCV 2018)", "LeNet-5 keeps 1.4% of 430.5K weights (about 71x) "
     "at 99.2%", "authors' admm-pruning README"),
    ("Progressive ADMM (Ye et al.)", "246x LeNet-5", "arXiv 1903.09769, abstract"),
    ("ADMM-NN-S (Ma et al.)", "348x LeNet-5", "arXiv 1907.02124, abstract"),
    ("Authors' LeNet-5 per-layer profile", "conv1 80%, conv2 92%, fc1 99.1%, fc2 93% pruned; "
     "ADMM 30 iterations, rho 1e-4, Adam 1e-3", "authors' TF code"),
]


# ----------------------------------------------------------------------------------- settings
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int_arg(1), default=3, help="number of seeds (0, 1, ...)")
    p.add_argument("--first-seed", type=SEED_ARG, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 seed, 100x only, a few epochs (numbers meaningless), for "
                        "the options not given")
    p.add_argument("--ratios", type=list_arg(RATIO), default="85,100,150",
                   help="overall pruning ratios")
    p.add_argument("--scope", choices=("profile", "global"), default="profile",
                   help="per-layer sparsities: the authors' profile scaled to the ratio, or one "
                        "global magnitude threshold")
    p.add_argument("--connected", action="store_true",
                   help="ADMM prunes with connected unstructured projections (no kept weight off "
                        "every input-to-output path, pruning.connectivity); the peer stays "
                        "torch.nn.utils.prune's magnitude pruning at ADMM's per-layer counts")
    p.add_argument("--label-smoothing", type=float_arg(0, 1, high_open=True), default=0.0,
                   help="label smoothing of the cross-entropy in every training phase: the dense "
                        "model, and every compression phase of ADMM *and* of the peer")
    p.add_argument("--conv-relu", action="store_true",
                   help="LeNet-5 with a ReLU after each convolution (zoo conv_relu=True, as "
                        "many PyTorch ports; the same 430,500 weights) for the dense model, ADMM "
                        "and the peer alike; default: Caffe's, none")
    p.add_argument("--dense-epochs", type=int_arg(0), default=None,
                   help="default: RECIPES['lenet5']['epochs']")
    p.add_argument("--admm-iters", type=int_arg(0), default=12)
    p.add_argument("--admm-epochs", type=int_arg(0), default=1, help="W-step epochs per iteration")
    p.add_argument("--retrain-epochs", type=int_arg(0), default=6)
    p.add_argument("--stages", default="",
                   help="progressive pruning: intermediate ratios (e.g. 10,30), each a full "
                        "ADMM + retraining from the previous one (the peer prunes and "
                        "fine-tunes at the same steps); empty: one step")
    p.add_argument("--ramp", type=int_arg(0), default=0,
                   help="gradual pruning: ADMM iterations over which the Z-step's sparsity "
                        "rises (cubic) to the target (0: the target from the start)")
    p.add_argument("--rescale-dual", action="store_true",
                   help="ADMM keeps rho * U when rho grows (U scaled by rho_old / rho_new, "
                        "Boyd et al. 2011, 3.4.1); default: U += W - Z alone, as ADMM-NN")
    p.add_argument("--rho", type=POSITIVE, default=1e-2, help="initial rho")
    p.add_argument("--rho-factor", type=float_arg(1), default=1.5)
    p.add_argument("--rho-max", type=POSITIVE, default=1.0,
                   help="at least --rho")
    p.add_argument("--rho-scale", default="",
                   help="per-layer factors on --rho (layer=factor,...; e.g. fc1=0.3): the plan's "
                        "per-layer rho, ADMM only (with --scope global it also moves weights "
                        "between layers: a smaller rho_i lets the layer keep more)")
    p.add_argument("--lr", type=LR_ARG, default=1e-3,
                   help="lr of the W-steps, the retraining and the peer")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                   help="optimizer of every compression phase of ADMM *and* of the peer "
                        "(sgd: momentum 0.9)")
    p.add_argument("--weight-decay", type=float_arg(0), default=0.0,
                   help="weight decay of every compression phase of both sides")
    p.add_argument("--retrain-lr", type=LR_ARG, default=None,
                   help="initial lr of the masked retraining (ADMM, quantization) and of the "
                        "peer's matching last epochs (needs --peer-recipe mirror; default --lr)")
    p.add_argument("--bits", default="conv1=3,conv2=2,fc1=2,fc2=3",
                   help="per-layer weight bits for the storage rows (layer=bits,...)")
    p.add_argument("--quant-iters", type=int_arg(0), default=3, help="ADMM quantization iterations")
    p.add_argument("--quant-retrain", type=int_arg(0), default=2,
                   help="quantization-aware retraining epochs")
    p.add_argument("--augment", default="none",
                   help="random affine augmentation of the training digits in every training "
                        "phase (dense, W-steps, retraining, peer, quantization): "
                        "'rotate,scale,shear,shift' (degrees, fraction, factor, pixels), or "
                        "'none'")
    p.add_argument("--distill", type=float_arg(0), default=0.0,
                   help="knowledge-distillation temperature from the dense model in every "
                        "compression phase of ADMM *and* of the peer (0: off)")
    p.add_argument("--distill-weight", type=float_arg(0, 1), default=0.7,
                   help="weight of the distillation term (the label loss gets 1 - weight)")
    p.add_argument("--retrain-schedule", choices=("constant", "cosine"), default="constant",
                   help="lr schedule of the masked retraining (ADMM, quantization) and of the "
                        "peer's matching last epochs")
    p.add_argument("--profile", default=",".join(f"{k}={v}" for k, v in PROFILE.items()),
                   help="per-layer pruned fractions whose kept fractions --scope profile scales "
                        "to each ratio (layer=sparsity,...)")
    p.add_argument("--peer-recipe", choices=("mirror", "single"), default="single",
                   help="the peer's fine-tuning: 'mirror' repeats ADMM's phases (one Adam as "
                        "long as the W-steps at constant lr, then a fresh Adam as long as the "
                        "retraining with its schedule); 'single' is one Adam run over all the "
                        "steps with the retraining schedule")
    p.add_argument("--val", type=int_arg(0), default=0, metavar="N",
                   help="validation mode for choosing a recipe: hold out N digits per class of "
                        "the 4,000 training digits (a fixed split), train on the rest and report "
                        "accuracies on the held-out digits; the test digits are never read "
                        "(0: off, train on all 4,000 and report on the 1,000 test digits)")
    p.add_argument("--threads", type=int_arg(1), default=1, help="torch threads")
    p.add_argument("--csv", type=Path, default=HERE / "results" / "compression.csv")
    p.add_argument("--merge", type=Path, nargs="+", metavar="CSV",
                   help="only report: merge the CSVs of separate runs (e.g. one seed each, run "
                        "in parallel) into --csv and print the tables over all their seeds")
    args = parse_quick(p, argv, {"seeds": 1, "ratios": [100.0], "dense_epochs": 2,
                                 "admm_iters": 2, "retrain_epochs": 1, "quant_iters": 1,
                                 "quant_retrain": 1})
    problem = file_problem(args.csv)     # before the run, not after it
    if problem is not None:
        p.error(f"--csv: {problem}")
    args.ratio_list = args.ratios
    args.model_kwargs = {"conv_relu": True} if args.conv_relu else {}
    try:
        args.stage_list = sorted(list_arg(RATIO)(args.stages)) if args.stages.strip() else []
    except argparse.ArgumentTypeError as exc:
        p.error(f"argument --stages: {exc}")
    if args.augment.strip().lower() in ("none", "", "0"):
        args.augmentation = None
    else:
        try:
            args.augmentation = pdata.Augment(*(float(v) for v in args.augment.split(",")))
        except (TypeError, ValueError) as exc:
            p.error(f"--augment: {exc} (expected 'rotate,scale,shear,shift' or 'none')")
    try:
        args.profile_map = {k.strip(): float(v) for k, v in
                            (item.split("=") for item in args.profile.split(",") if item.strip())}
    except ValueError:
        p.error(f"--profile: expected layer=sparsity,..., not {args.profile!r}")
    if set(args.profile_map) != set(PROFILE) or not all(0 <= v < 1 for v in
                                                         args.profile_map.values()):
        p.error(f"--profile: one sparsity in [0, 1) for each of {', '.join(PROFILE)}")
    if args.val:
        try:        # at start, not when the first run loads its data
            validation_split(pdata.load(DATASET, "train").labels, args.val)
        except ValueError as exc:
            p.error(str(exc))
    if args.retrain_lr is not None and args.peer_recipe != "mirror":
        p.error("--retrain-lr needs --peer-recipe mirror (the peer's last epochs get it too)")
    args.rlr = args.retrain_lr if args.retrain_lr is not None else args.lr
    args.bit_map = {}
    for item in filter(str.strip, args.bits.split(",")):
        name, _, value = (part.strip() for part in item.partition("="))
        if name not in PROFILE or value not in {str(b) for b in range(2, 9)}:
            p.error(f"--bits {item!r}: expected layer=bits with a layer of {', '.join(PROFILE)} "
                    "and bits from 2 to 8")
        args.bit_map[name] = int(value)
    if args.rho_max < args.rho:
        p.error(f"--rho-max must be at least --rho ({args.rho:g}), not {args.rho_max:g}")
    args.rho_map = {}
    for item in filter(str.strip, args.rho_scale.split(",")):
        name, _, value = item.partition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = -1.0
        if name.strip() not in PROFILE or not (factor > 0 and math.isfinite(factor)):
            p.error(f"--rho-scale {item!r}: expected layer=factor with a layer of "
                    f"{', '.join(PROFILE)} and a positive factor")
        args.rho_map[name.strip()] = factor * args.rho
    return args


def command(argv: list[str]) -> str:
    return " ".join(["python", "bench/compression.py", *map(shlex.quote, argv)])


# ------------------------------------------------------------------------------------- pieces
#: Seed of the fixed validation split (``--val``); the same digits for every run seed.
VAL_SEED = 20260
#: ``--val`` per class: held-out training digits per class (0: off, evaluate on the test split).
VAL_PER_CLASS = {"n": 0}
#: Keyword arguments of every LeNet-5 the bench builds (``--conv-relu`` sets ``conv_relu``).
MODEL_KWARGS: dict[str, object] = {}


def validation_split(labels: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed (training, validation) indices into the training split: ``per_class`` digits of each
    class held out, drawn with ``VAL_SEED`` (the same split for every run seed); both sorted."""
    g = torch.Generator().manual_seed(VAL_SEED)
    train, val = [], []
    for c in range(int(labels.max()) + 1):
        idx = torch.nonzero(labels == c).flatten()
        if per_class >= len(idx):
            raise ValueError(f"--val {per_class}: class {c} has only {len(idx)} training digits")
        idx = idx[torch.randperm(len(idx), generator=g)]
        val.append(idx[:per_class])
        train.append(idx[per_class:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def loaders(seed: int, batch_size: int,
            augmentation: pdata.Augment | None = None) -> tuple[Any, Any]:
    """Fresh loaders (own shuffling and augmentation generators), so every run sees the same
    batches: ADMM and the peer train on identical (augmented) batches.

    With ``--val N`` (``VAL_PER_CLASS["n"]``) the test split is never read: N digits per class
    of the training split are held out (:func:`validation_split`) and are the evaluation set,
    the rest is the training set."""
    per_class = VAL_PER_CLASS["n"]
    if per_class:
        full = pdata.load(DATASET, "train")
        tr_idx, va_idx = validation_split(full.labels, per_class)
        train_set = pdata.OfflineDataset(DATASET, "train", full.inputs[tr_idx],
                                         full.labels[tr_idx])
        val_set = pdata.OfflineDataset(DATASET, "val", full.inputs[va_idx], full.labels[va_idx])
        train_loader: Any = torch.utils.data.DataLoader(
            train_set, batch_size=batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(seed), num_workers=0)
        test_loader: Any = torch.utils.data.DataLoader(val_set, batch_size=500, shuffle=False)
    else:
        train_loader = pdata.loader(DATASET, "train", batch_size=batch_size, seed=seed)
        test_loader = pdata.loader(DATASET, "test", batch_size=500, shuffle=False)
    if augmentation is not None:
        train_loader = pdata.AugmentedLoader(train_loader, augmentation, seed=seed)
    return train_loader, test_loader


def teacher(seed: int, state: dict, args: argparse.Namespace) -> Distill | None:
    """The dense model as the distillation teacher (``--distill``), or ``None``."""
    if not args.distill:
        return None
    return Distill(from_state(seed, state).requires_grad_(False), args.distill,
                   args.distill_weight)


def task_loss(args: argparse.Namespace) -> Any:
    """The cross-entropy of every compression phase (``--label-smoothing``), or ``None``."""
    if not args.label_smoothing:
        return None
    return functools.partial(nn.functional.cross_entropy, label_smoothing=args.label_smoothing)


def numels(model: nn.Module) -> dict[str, int]:
    return {n: m.weight.numel() for n, m in prunable_layers(model).items()}


def pruning_plan(model: nn.Module, ratio: float, scope: str,
                 profile: dict[str, float] | None = None, connected: bool = False,
                 rho: dict[str, float] | None = None) -> Plan:
    """Unstructured plan reaching ``ratio`` overall: the scaled profile (default ``PROFILE``),
    or global; ``connected``: connected unstructured projections (``pruning.connectivity``);
    ``rho``: per-layer initial ADMM penalties (the plan's ``rho`` key)."""
    rho = rho or {}
    if scope == "global":
        plan = Plan.uniform("unstructured", ratio=ratio, scope="global",
                            **({"connected": True} if connected else {}))
        return Plan(default=plan.default, layers={n: Rule(rho=r) for n, r in rho.items()})
    profile = profile or PROFILE
    sizes = numels(model)
    kept = {n: sizes[n] * (1 - s) for n, s in profile.items()}
    factor = sum(sizes.values()) / ratio / sum(kept.values())
    rules = {}
    for n in profile:
        keep = (1 - profile[n]) * factor
        if not 0 < keep <= 1:
            raise SystemExit(f"ratio {ratio:g}x: layer {n} would keep {keep:.3%} of its weights")
        rules[n] = Rule("unstructured", sparsity=round(1 - keep, 9),
                        params=(("scope", "layer"),) + ((("connected", True),) if connected
                                                        else ()), rho=rho.get(n))
    return Plan(layers=rules)


def dense_model(seed: int, epochs: int, batch_size: int,
                augmentation: pdata.Augment | None = None, label_smoothing: float = 0.0
                ) -> tuple[dict[str, torch.Tensor], float, float]:
    recipe = zoo.RECIPES[MODEL]
    model = zoo.build(MODEL, seed=seed, **MODEL_KWARGS)
    tr, te = loaders(seed, batch_size, augmentation)
    start = time.perf_counter()
    train(model, tr, epochs, recipe["optimizer"], lr=recipe["lr"], seed=seed,
          schedule=recipe["schedule"],
          loss_fn=functools.partial(nn.functional.cross_entropy, label_smoothing=label_smoothing)
          if label_smoothing else None)
    return copy.deepcopy(model.state_dict()), evaluate(model, te), time.perf_counter() - start


def from_state(seed: int, state: dict[str, torch.Tensor]) -> nn.Module:
    model = zoo.build(MODEL, seed=seed, **MODEL_KWARGS)
    model.load_state_dict(state)
    return model


def layer_nnz(model: nn.Module) -> dict[str, int]:
    return {n: int(torch.count_nonzero(m.weight)) for n, m in prunable_layers(model).items()}


def stage_ratios(ratio: float, args: argparse.Namespace) -> list[float]:
    """The ratios of the progressive steps towards ``ratio``: the ``--stages`` below it, then
    ``ratio`` itself."""
    return [r for r in args.stage_list if r < ratio] + [ratio]


def run_admm(seed: int, state: dict, ratio: float, args: argparse.Namespace) -> tuple[nn.Module,
                                                                                     dict]:
    """ADMM to ``ratio``; with ``--stages``, progressive (Ye et al., arXiv 1903.09769): one full
    ADMM + masked retraining per stage ratio, each starting from the previous stage's pruned
    model. ``row["stage_kept"]`` holds each stage's per-layer kept counts for the peer."""
    model = from_state(seed, state)
    tr, te = loaders(seed, args.batch_size, args.augmentation)
    stage_kept, seconds = [], 0.0
    for r in stage_ratios(ratio, args):
        plans = resolve(pruning_plan(model, r, args.scope, args.profile_map, args.connected,
                                     args.rho_map),
                        model)
        res = compress(model, plans, tr, te, epochs_admm=args.admm_epochs,
                       admm_iters=args.admm_iters, retrain_epochs=args.retrain_epochs,
                       rho=args.rho, rho_factor=args.rho_factor, rho_max=args.rho_max,
                       lr=args.lr, retrain_lr=args.rlr, optimizer=args.optimizer,
                       weight_decay=args.weight_decay, seed=seed,
                       progress=False, model_name=MODEL, retrain_schedule=args.retrain_schedule,
                       distill=args.distill or None, distill_weight=args.distill_weight,
                       ramp=args.ramp, label_smoothing=args.label_smoothing,
                       rescale_dual=args.rescale_dual)
        stage_kept.append({row["layer"]: row["nnz"] for row in res.rows})
        seconds += res.seconds
    t = res.totals()
    steps = len(stage_kept) * (args.admm_iters * args.admm_epochs + args.retrain_epochs) * len(tr)
    last = res.history[-1].residual if res.history else {}
    row = {"method": "admm", "accuracy": res.accuracy_after,
           "accuracy_no_retrain": res.accuracy_projected, "ratio": t["pruning_ratio"],
           "nnz": t["nnz"], "numel": t["numel"], "steps": steps, "seconds": seconds,
           "max_residual": max(last.values(), default=float("nan")),
           "stages": len(stage_kept)}
    row |= {f"nnz_{r['layer']}": r["nnz"] for r in res.rows}
    return model, row, stage_kept


def run_peer(seed: int, state: dict, stage_kept: list[dict[str, int]],
             args: argparse.Namespace) -> dict:
    """torch.nn.utils.prune.l1_unstructured with ADMM's per-layer kept counts, then fine-tune
    with ADMM's recipe step for step: one optimizer run as long as the W-steps (constant lr), then
    a fresh optimizer as long as the retraining (its lr and schedule), on the same (augmented)
    batches, with the same optimizer, weight decay and distillation loss. With ``--stages``
    this is iterative magnitude pruning: one prune + fine-tune per stage, with the kept counts
    of ADMM's stage (each prune ranks the current weights, earlier-pruned zeros first)."""
    model = from_state(seed, state)
    tr, te = loaders(seed, args.batch_size, args.augmentation)
    distill = teacher(seed, state, args)
    start = time.perf_counter()
    layers = prunable_layers(model)
    w_epochs = args.admm_iters * args.admm_epochs
    stats = []
    for i, kept in enumerate(stage_kept):
        for n, m in layers.items():
            if i:
                tprune.remove(m, "weight")
            tprune.l1_unstructured(m, "weight", amount=m.weight.numel() - kept[n])
        if i == 0:
            acc0 = evaluate(model, te)
        if args.peer_recipe == "single":
            stats += train(model, tr, w_epochs + args.retrain_epochs, args.optimizer,
                           lr=args.lr, seed=seed, schedule=args.retrain_schedule,
                           distill=distill, weight_decay=args.weight_decay,
                           loss_fn=task_loss(args))
        else:
            stats += train(model, tr, w_epochs, args.optimizer, lr=args.lr, seed=seed,
                           distill=distill, weight_decay=args.weight_decay,
                           loss_fn=task_loss(args))
            stats += train(model, tr, args.retrain_epochs, args.optimizer, lr=args.rlr,
                           seed=seed + 500, schedule=args.retrain_schedule, distill=distill,
                           weight_decay=args.weight_decay, loss_fn=task_loss(args))
    for m in layers.values():
        tprune.remove(m, "weight")
    kept = stage_kept[-1]
    nnz = layer_nnz(model)
    if any(nnz[n] > kept[n] for n in kept):
        raise RuntimeError(f"peer revived pruned weights: {nnz} vs {kept}")
    total = sum(numels(model).values())
    row = {"method": "magnitude+finetune", "accuracy": evaluate(model, te),
           "accuracy_no_retrain": acc0, "ratio": total / sum(nnz.values()),
           "nnz": sum(nnz.values()), "numel": total, "steps": sum(s.steps for s in stats),
           "seconds": time.perf_counter() - start}
    return row | {f"nnz_{n}": v for n, v in nnz.items()}


def quant_plan(model: nn.Module, ratio: float, args: argparse.Namespace,
               index_bits: dict[str, int] | None = None) -> dict:
    """The pruning plan of ``ratio`` with the per-layer bits (and CSR index widths)."""
    base = pruning_plan(model, ratio, args.scope, args.profile_map, args.connected)
    names = list(prunable_layers(model))
    rules = {}
    for n in names:
        rule = base.layers.get(n) or base.default
        params = dict(rule.params) | ({"index_bits": index_bits[n]} if index_bits else {})
        rules[n] = Rule(rule.scheme, rule.ratio, rule.sparsity, args.bit_map.get(n),
                        tuple(params.items()))
    return resolve(Plan(layers=rules), model)


def best_index_bits(model: nn.Module, plans: dict, masks: dict,
                    scales: dict) -> tuple[dict[str, int], int]:
    """Per layer, the CSR relative-index width (1..16) minimising weight + index bits; and the
    bundle's weight bits with 16-bit indexes (no padding entries in LeNet-5's rows: the
    weights alone, ``nnz * bits``)."""
    best: dict[str, tuple[int, int]] = {}
    unpadded = 0
    for b in range(1, 17):
        trial = {n: type(p)(p.name, p.op, type(p.config)(p.config.sparsity, p.config.scope, b),
                            p.bits) for n, p in plans.items()}
        bundle = export(model, trial, masks=masks, scales=scales)
        for layer in bundle.layers:
            total = layer.stats.weight_bits + layer.stats.index_bits
            if layer.name not in best or total < best[layer.name][1]:
                best[layer.name] = (b, total)
        if b == 16:
            unpadded = totals(bundle)["weight_bits"]
    return {n: b for n, (b, _) in best.items()}, unpadded


def run_quant(seed: int, model: nn.Module, ratio: float, args: argparse.Namespace,
              state: dict) -> dict:
    """ADMM quantization of the ADMM-pruned ``model`` on its fixed masks, then the bundle."""
    tr, te = loaders(seed, args.batch_size, args.augmentation)
    distill = teacher(seed, state, args)
    start = time.perf_counter()
    plans = quant_plan(model, ratio, args)
    masks = {n: {"": m.weight.detach() != 0} for n, m in prunable_layers(model).items()
             if n in plans}
    admm(model, plans, tr, iterations=args.quant_iters, epochs=args.admm_epochs,
         rho=args.rho, mode="quant", masks=masks, lr=args.lr, seed=seed + 7000, progress=False,
         distill=distill, optimizer=args.optimizer, weight_decay=args.weight_decay,
         loss_fn=task_loss(args))
    proj = hard_project(model, plans, mode="quant", masks=masks)
    acc0 = evaluate(model, te)
    masked_retrain(model, plans, proj, tr, args.quant_retrain, lr=args.rlr, seed=seed + 7500,
                   progress=False, schedule=args.retrain_schedule, distill=distill,
                   optimizer=args.optimizer, weight_decay=args.weight_decay,
                   loss_fn=task_loss(args))
    index, unpadded = best_index_bits(model, plans, proj.masks, proj.scales)
    plans = quant_plan(model, ratio, args, index)
    bundle = export(model, plans, masks=proj.masks, scales=proj.scales, model_name=MODEL)
    t = totals(bundle)
    rows = [layer_row(x) for x in bundle.layers]
    row = {"method": "admm+quant", "accuracy": evaluate(model, te), "accuracy_no_retrain": acc0,
           "ratio": t["pruning_ratio"], "nnz": t["nnz"], "numel": t["numel"],
           "steps": (args.quant_iters * args.admm_epochs + args.quant_retrain) * len(tr),
           "seconds": time.perf_counter() - start,
           "storage_weights": t["storage_reduction_weights"],
           "storage_weights_unpadded": t["dense_bits"] / unpadded,
           "storage_with_index": t["storage_reduction_with_index"],
           "weight_bits": t["weight_bits"], "index_bits": t["index_bits"],
           "bits": ",".join(f"{r['layer']}={r['bits']}" for r in rows),
           "csr_index_bits": ",".join(f"{n}={b}" for n, b in index.items())}
    return row | {f"nnz_{r['layer']}": r["nnz"] for r in rows}


# ------------------------------------------------------------------------------------ report
def _ms(values: pd.Series, fmt: str) -> str:
    v = values.dropna().astype(float)
    if v.empty:
        return "-"
    if len(v) == 1:
        return format(v.iloc[0], fmt)
    return f"{format(v.mean(), fmt)} +- {format(v.std(ddof=1), fmt)}"


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    dense = df[df.method == "dense"]
    out.append({"run": "dense", "target x": "-", "pruning x": "1.0",
                "accuracy %": _ms(dense.accuracy * 100, ".2f"), "drop pp": "-",
                "no-retrain acc %": "-", "storage x (weights)": "-",
                "storage x (CSR values)": "-", "storage x (+index)": "-", "steps": "-"})
    for (method, target), g in df[df.method != "dense"].groupby(["method", "target_ratio"],
                                                                  sort=False):
        out.append({"run": method, "target x": f"{target:g}",
                    "pruning x": _ms(g.ratio, ".1f"),
                    "accuracy %": _ms(g.accuracy * 100, ".2f"),
                    "drop pp": _ms(g.drop_pp, ".2f"),
                    "no-retrain acc %": _ms(g.accuracy_no_retrain * 100, ".1f"),
                    "storage x (weights)": _ms(g.get("storage_weights_unpadded",
                                                     pd.Series(dtype=float)), ",.0f"),
                    "storage x (CSR values)": _ms(g.get("storage_weights",
                                                        pd.Series(dtype=float)), ",.0f"),
                    "storage x (+index)": _ms(g.get("storage_with_index",
                                                    pd.Series(dtype=float)), ",.0f"),
                    "steps": f"{int(g.steps.iloc[0])}"})
    return pd.DataFrame(out)


def targets(df: pd.DataFrame) -> pd.DataFrame:
    def mean(method: str, target: float, col: str) -> float:
        g = df[(df.method == method) & (df.target_ratio == target)]
        return float(g[col].mean()) if len(g) else float("nan")

    def verdict(measured: bool, met: bool) -> str:
        return ("yes" if met else "no") if measured else NOT_MEASURED

    rows = []
    ratios = sorted(df.target_ratio.dropna().unique())
    high = [r for r in ratios if r >= TARGET_RATIO and math.isfinite(mean("admm", r, "drop_pp"))]
    drops = ", ".join(f"{r:g}x: {mean('admm', r, 'drop_pp'):.2f} pp" for r in high)
    rows.append({"target": f">= {TARGET_RATIO:g}x pruning with <= {TARGET_DROP_PP} pp drop",
                 "measured (mean over seeds)": f"ADMM drop {drops}" if high
                 else f"- (no ADMM run at >= {TARGET_RATIO:g}x)",
                 "met": verdict(bool(high), any(mean("admm", r, "drop_pp") <= TARGET_DROP_PP
                                                for r in high))})
    q = df[df.method == "admm+quant"]
    if len(q):
        by = q.groupby("target_ratio")[["storage_weights_unpadded", "storage_weights",
                                        "drop_pp"]].mean()
        text = ", ".join(f"{r:g}x: {v.storage_weights_unpadded:,.0f}x "
                         f"(CSR incl. padding {v.storage_weights:,.0f}x; drop {v.drop_pp:.2f} pp)"
                         for r, v in by.iterrows())
        met = bool((by.storage_weights_unpadded >= TARGET_STORAGE).any())
    else:
        text, met = "- (no quantized run: --bits '')", False
    rows.append({"target": f">= {TARGET_STORAGE:,.0f}x weights-only storage reduction",
                 "measured (mean over seeds)": text, "met": verdict(bool(len(q)), met)})
    gap = mean("admm", 100.0, "accuracy") - mean("magnitude+finetune", 100.0, "accuracy")
    rows.append({"target": f"ADMM >= {TARGET_GAP_PP:g} pp above magnitude+finetune at 99% "
                           "sparsity (100x)",
                 "measured (mean over seeds)": f"{gap * 100:+.2f} pp" if math.isfinite(gap)
                 else "- (no 100x run)",
                 "met": verdict(math.isfinite(gap), gap * 100 >= TARGET_GAP_PP)})
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------- main
@reports_divergence("compression.py")
def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.csv)
    args.batch_size = int(zoo.RECIPES[MODEL]["batch_size"])
    VAL_PER_CLASS["n"] = args.val
    MODEL_KWARGS.clear()
    MODEL_KWARGS.update(args.model_kwargs)
    dense_epochs = args.dense_epochs if args.dense_epochs is not None else \
        int(zoo.RECIPES[MODEL]["epochs"])
    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    records: list[dict] = []
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    peer_epochs = args.admm_iters * args.admm_epochs + args.retrain_epochs
    split = (f"{4000 - 10 * args.val:,} train / {10 * args.val:,} validation held out of the "
             "training digits, test digits not read" if args.val else "4,000 train / 1,000 test")
    print(f"LeNet-5{' with ReLU after its convolutions' if args.conv_relu else ''} on "
          f"{DATASET} ({split}), seeds {seeds}, ratios "
          f"{args.ratio_list}, scope {args.scope}; dense {dense_epochs} epochs; ADMM "
          f"{args.admm_iters} iterations x {args.admm_epochs} epoch, rho {args.rho:g} x"
          f"{args.rho_factor:g}/iteration (max {args.rho_max:g}; per layer "
          f"{ {n: f'{r:g}' for n, r in args.rho_map.items()} or 'the same'}), "
          f"{args.retrain_epochs} retrain "
          f"epochs ({args.retrain_schedule} lr from {args.rlr:g}), {args.optimizer} lr {args.lr:g}, "
          f"weight decay {args.weight_decay:g}, batch {args.batch_size}; "
          f"augmentation {args.augmentation}; connected {args.connected}; label smoothing "
          f"{args.label_smoothing:g}; distillation "
          f"{f'T={args.distill:g} weight {args.distill_weight:g}' if args.distill else 'off'}; "
          f"profile {args.profile_map if args.scope == 'profile' else '-'}; "
          f"progressive stages {args.stage_list or 'none'} (each runs all of the above); "
          f"peer {peer_epochs} epochs per stage ({args.peer_recipe}); "
          f"quantization {args.bit_map}, {args.quant_iters} ADMM iterations + "
          f"{args.quant_retrain} retrain epochs", flush=True)
    for seed in seeds:
        state, dense_acc, secs = dense_model(seed, dense_epochs, args.batch_size,
                                             args.augmentation, args.label_smoothing)
        print(f"[seed {seed}] dense {dense_acc:.2%} ({secs:.0f} s)", flush=True)
        records.append({"seed": seed, "method": "dense", "target_ratio": None,
                        "accuracy": dense_acc, "ratio": 1.0, "seconds": secs,
                        "steps": dense_epochs * math.ceil((4000 - 10 * args.val)
                                                          / args.batch_size)})
        for ratio in args.ratio_list:
            model, row, stage_kept = run_admm(seed, state, ratio, args)
            records.append({"seed": seed, "target_ratio": ratio} | row)
            print(f"[seed {seed}] ADMM {ratio:g}x: {row['ratio']:.1f}x, {row['accuracy']:.2%} "
                  f"(hard-pruned {row['accuracy_no_retrain']:.2%}, max ||W-Z||/||W|| "
                  f"{row['max_residual']:.3f}; {row['seconds']:.0f} s)", flush=True)
            peer = run_peer(seed, state, stage_kept, args)
            if peer["steps"] != row["steps"]:
                raise RuntimeError(f"step counts differ: ADMM {row['steps']}, "
                                   f"peer {peer['steps']}")
            records.append({"seed": seed, "target_ratio": ratio} | peer)
            print(f"[seed {seed}] magnitude+finetune {ratio:g}x: {peer['ratio']:.1f}x, "
                  f"{peer['accuracy']:.2%} (pruned {peer['accuracy_no_retrain']:.2%}; "
                  f"{peer['seconds']:.0f} s)", flush=True)
            if args.bit_map:
                q = run_quant(seed, model, ratio, args, state)
                records.append({"seed": seed, "target_ratio": ratio} | q)
                print(f"[seed {seed}] ADMM {ratio:g}x + {q['bits']}: {q['accuracy']:.2%}, "
                      f"storage {q['storage_weights_unpadded']:,.0f}x weights only "
                      f"({q['storage_weights']:,.0f}x CSR values incl. padding), "
                      f"{q['storage_with_index']:,.0f}x with index ({q['csr_index_bits']}; "
                      f"{q['seconds']:.0f} s)", flush=True)
    df = pd.DataFrame.from_records(records)
    dense_by_seed = df[df.method == "dense"].set_index("seed").accuracy
    df["drop_pp"] = (df.seed.map(dense_by_seed) - df.accuracy) * 100
    df.loc[df.method == "dense", "drop_pp"] = 0.0
    df["scope"] = args.scope
    df["evaluated_on"] = f"val{args.val}" if args.val else "test"
    df["command"] = command(argv)
    write_csv(df, args.csv)
    report(df, (time.perf_counter() - wall) / 60, args.csv, [command(argv)])
    return 0


def report(df: pd.DataFrame, minutes: float, csv: Path, commands: list[str]) -> None:
    """Print the measured table, the targets and the published figures."""
    seeds = sorted(int(s) for s in df.seed.unique())
    scope = df.scope.iloc[0] if "scope" in df else "profile"
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.max_colwidth", 80):
        where = df.evaluated_on.iloc[0] if "evaluated_on" in df else "test"
        where = "test (1,000 digits)" if where == "test" else \
            f"VALIDATION ({10 * int(where[3:]):,} held-out training digits)"
        print(f"\n== measured: LeNet-5 / {DATASET} {where}, {len(seeds)} seed(s) "
              f"{seeds}, mean +- std; per-layer sparsity: "
              f"{'authors profile scaled' if scope == 'profile' else 'global magnitude'}")
        print(summarise(df).to_string(index=False))
        print("\n== targets (measured beside)")
        print(targets(df).to_string(index=False))
        print("\n== published (quoted, not measured; /work/shared/REFERENCES.md)")
        print(pd.DataFrame(PUBLISHED, columns=["work", "figure", "source"]).to_string(
            index=False))
    print(f"\nwall time {minutes:.1f} min; CSV {csv}")
    for c in commands:
        print(f"reproduce: {c}")


def read_csvs(paths: list[Path], columns: tuple[str, ...]) -> list[pd.DataFrame]:
    """The CSVs given to ``--merge``; ``SystemExit`` naming a file that is missing, unreadable
    or lacks one of ``columns`` (not a CSV this bench wrote)."""
    frames = []
    for path in paths:
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError) as e:   # missing, a directory, empty or not a CSV
            raise SystemExit(f"--merge: cannot read {path}: {e}") from None
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise SystemExit(f"--merge: {path} has no column {', '.join(missing)}; give CSVs "
                             "this bench wrote")
        frames.append(df)
    return frames


def setup_of(command: str) -> tuple[str, ...]:
    """A run's command line without ``--seeds``, ``--first-seed`` and ``--csv`` (and their
    values): the runs ``--merge`` may pool have the same one."""
    words, out = shlex.split(command), []
    skip = False
    for w in words:
        if skip:
            skip = False
            continue
        name = w.split("=", 1)[0]
        if name in ("--seeds", "--first-seed", "--csv"):
            skip = "=" not in w
            continue
        out.append(w)
    return tuple(out)


def merge(paths: list[Path], out: Path) -> int:
    """``--merge``: one report over the CSVs of runs made separately (e.g. one seed each, in
    parallel); they must be runs of the same command apart from the seeds and the CSV path."""
    frames = read_csvs(paths, ("seed", "method", "target_ratio", "accuracy", "seconds",
                               "command"))
    df = pd.concat(frames, ignore_index=True)
    if df.duplicated(["seed", "method", "target_ratio"]).any():
        raise SystemExit("--merge: the CSVs repeat a (seed, method, ratio) row")
    setups = {setup_of(c) for c in df.command}
    if len(setups) > 1:      # e.g. a validation-split run pooled with test runs
        a, b = sorted(setups)[:2]
        raise SystemExit("--merge: the CSVs are runs of different commands (apart from "
                         f"--seeds, --first-seed and --csv): {shlex.join(a)!r} and "
                         f"{shlex.join(b)!r}")
    commands = sorted(set(df.command))
    minutes = max(f.seconds.sum() for f in frames) / 60
    write_csv(df, out)
    report(df, minutes, out, commands)
    print("(merged from " + ", ".join(map(str, paths)) + "; wall time: the longest run's "
          "summed run times)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
