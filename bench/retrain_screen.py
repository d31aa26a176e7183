"""Benchmark: masked-retraining variants from one ADMM hard-pruned LeNet-5, paired seed by seed.

A script, not a test. ``bench/compression.py`` changes a whole recipe at a time, so two of its
runs differ in the ADMM phase as well as in the recovery. This screen isolates the recovery: for
every seed it trains the dense model and runs ADMM up to the hard prune *once*
(``bench/compression.py``'s ``dense_model`` and ``run_admm`` with no retraining, every option of
that bench passing through after ``--``), then retrains copies of that same hard-pruned model,
each variant on identical batches (a fresh loader with the seed's generator):

* ``standard:E``: the library's masked retraining (``pruning.admm.masked_retrain``) for ``E``
  epochs; ``standard:6`` has the bench's own retraining settings at its default
  ``--retrain-epochs`` (its batches start afresh rather than after the W-steps', so it is not
  the bench's ADMM row digit for digit);
* ``regrow:E``: RigL-style dynamic sparse retraining (Evci et al., "Rigging the Lottery",
  ICML 2020) for ``E`` epochs. Every ``--regrow-every`` optimizer steps, until ``--regrow-stop``
  of the steps, each layer drops the fraction ``f_t = alpha/2 * (1 + cos(pi t / T_end))`` of its
  kept weights with the smallest magnitude and regrows as many pruned positions with the largest
  gradient magnitude (at zero); every layer keeps its count, so the pruning ratio is unchanged.
  The mask is re-applied after every step, as in the masked retraining.
* ``dropout:E``: the masked retraining for ``E`` epochs with dropout (probability
  ``--dropout``) on the input of every linear layer while training; evaluation runs without it.

Every variant uses the bench's retraining settings (``--retrain-lr``, ``--retrain-schedule``,
``--optimizer``, ``--weight-decay``, ``--label-smoothing``, ``--distill``). Prints, per variant,
the accuracy on the test digits (or on the validation digits with ``--val``), the accuracy on
the training digits (does the 1%-weight model still fit them?), the drop from the dense model,
and the paired change against the first variant with its standard error; saves one row per seed
and variant as CSV (``bench/results/retrain_screen.csv``).

Example (the twelve test seeds of the README)::

    python bench/retrain_screen.py --seeds 6 --first-seed K --variants standard:6,standard:18,\\
regrow:18 --csv bench/results/screen_sK.csv -- --ratios 100 --bits '' --scope global \\
        --retrain-schedule cosine --peer-recipe mirror --retrain-lr 0.012 --connected \\
        --label-smoothing 0.1 --lr 0.005 --rho-scale fc1=0.2
"""

from __future__ import annotations

import argparse
import copy
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import torch
from torch import nn

from bench import compression as bc
from codesign.options import SEED_ARG, file_problem, int_arg, whole_number
from pruning.admm import Projection, layer_weights, masked_retrain
from pruning.errors import reports_divergence
from pruning.plan import resolve
from pruning.train import evaluate, train

HERE = Path(__file__).resolve().parent
KINDS = ("standard", "regrow", "dropout")


@dataclass(frozen=True)
class Variant:
    """One recovery: ``kind`` (one of ``KINDS``) for ``epochs`` epochs."""

    kind: str
    epochs: int

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.epochs}"


def parse_variants(text: str) -> list[Variant]:
    """``"standard:6,regrow:18"`` -> variants; ``ValueError`` naming the bad item and the form."""
    out: list[Variant] = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        kind, _, epochs = item.partition(":")
        count = whole_number(epochs)
        if kind not in KINDS or count is None or count < 1:
            raise ValueError(f"--variants: {item!r} is not kind:epochs with a kind of "
                             f"{', '.join(KINDS)} and a whole number of epochs >= 1")
        out.append(Variant(kind, count))
    if not out:
        raise ValueError("--variants: give at least one, e.g. standard:6,regrow:6")
    if len({v.name for v in out}) != len(out):
        raise ValueError("--variants: a variant is listed twice")
    return out


@dataclass(frozen=True)
class Regrow:
    """RigL-style schedule: every ``every`` steps until ``stop`` of them, drop and regrow
    ``alpha/2 * (1 + cos(pi t / T_end))`` of each layer's kept weights."""

    every: int = 25
    alpha: float = 0.3
    stop: float = 0.75

    def __post_init__(self) -> None:
        if self.every < 1 or not 0 < self.alpha < 1 or not 0 < self.stop <= 1:
            raise ValueError("regrowth needs --regrow-every >= 1, 0 < --regrow-alpha < 1 and "
                             f"0 < --regrow-stop <= 1, not {self.every}, {self.alpha}, "
                             f"{self.stop}")

    def fraction(self, step: int, total: int) -> float:
        """The fraction of kept weights swapped at ``step`` (1-based) of ``total``; 0 when
        ``step`` is not an update step."""
        end = self.stop * total
        if step % self.every or step >= end:
            return 0.0
        return self.alpha / 2 * (1 + math.cos(math.pi * step / end))


def regrow_step(weight: torch.Tensor, grad: torch.Tensor | None, mask: torch.Tensor,
                fraction: float) -> int:
    """Swap ``fraction`` of the kept entries of ``mask`` in place: drop the kept entries of
    ``weight`` with the smallest magnitude, keep as many pruned entries with the largest
    ``|grad|`` (chosen among those pruned before the drop), zero the new ones in ``weight``.
    The kept count is unchanged. Returns the number swapped."""
    m = mask.view(-1)
    kept = int(m.sum())
    k = min(int(fraction * kept), m.numel() - kept)
    if k <= 0 or grad is None:
        return 0
    w, g = weight.detach().view(-1), grad.detach().view(-1).abs()
    grow = torch.topk(torch.where(m, torch.full_like(g, -1.0), g), k).indices
    drop = torch.topk(torch.where(m, -w.abs(), torch.full_like(w, -math.inf)), k).indices
    m[drop] = False
    m[grow] = True
    w[grow] = 0.0
    return k


def regrow_retrain(model: nn.Module, plans: dict, masks: dict, loader, epochs: int,
                   schedule_: Regrow, **kw) -> int:
    """Dynamic sparse retraining of ``model`` in place (float layers); ``masks`` are updated in
    place. ``kw`` goes to :func:`pruning.train.train`. Returns the number of swaps."""
    params = layer_weights(model, plans)
    total = len(loader) * epochs
    state = {"step": 0, "swapped": 0}

    def mask_fn(_: nn.Module) -> None:
        state["step"] += 1
        frac = schedule_.fraction(state["step"], total)
        for n, ps in params.items():
            for s, p in ps.items():
                if frac:
                    state["swapped"] += regrow_step(p, p.grad, masks[n][s], frac)
                p.masked_fill_(~masks[n][s], 0.0)

    train(model, loader, epochs, mask_fn=mask_fn, **kw)
    return state["swapped"]


def linear_input_dropout(model: nn.Module, p: float) -> list:
    """Dropout with probability ``p`` on the input of every ``nn.Linear`` of ``model`` in
    training mode (none in evaluation mode); returns the hook handles (``.remove()`` them)."""
    def hook(mod: nn.Module, inp: tuple) -> tuple:
        return (nn.functional.dropout(inp[0], p, mod.training),)

    return [m.register_forward_pre_hook(hook) for m in model.modules()
            if isinstance(m, nn.Linear)]


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, argparse.Namespace | None,
                                         list[str]]:
    """This screen's options, then ``bench/compression.py``'s (after ``--``; ``None`` with
    ``--merge``)."""
    own, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else \
        (argv, [])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                epilog="Options after -- are bench/compression.py's (recipe, "
                                       "--ratios with one ratio, --val, --dense-epochs, ...).")
    p.add_argument("--seeds", type=int_arg(1), default=3)
    p.add_argument("--first-seed", type=SEED_ARG, default=0)
    p.add_argument("--variants", default="standard:6,regrow:6",
                   help="kind:epochs,... with kind standard, regrow or dropout; the first is "
                        "the reference of the paired changes")
    p.add_argument("--regrow-every", type=int_arg(1), default=25, help="steps between mask updates")
    p.add_argument("--regrow-alpha", type=float, default=0.3,
                   help="initial fraction of kept weights swapped (cosine decay)")
    p.add_argument("--regrow-stop", type=float, default=0.75,
                   help="fraction of the steps after which the mask stays fixed")
    p.add_argument("--dropout", type=float, default=0.25,
                   help="dropout:E variants: probability on the input of every linear layer")
    p.add_argument("--csv", type=Path, default=HERE / "results" / "retrain_screen.csv")
    p.add_argument("--merge", type=Path, nargs="+", metavar="CSV",
                   help="only report: merge the CSVs of separate runs of the same variants (e.g. "
                        "seed blocks run in parallel) into --csv and print the table over all "
                        "their seeds")
    args = p.parse_args(own)
    problem = file_problem(args.csv)     # before the run, not after it
    if problem is not None:
        p.error(f"--csv: {problem}")
    if args.merge:
        return args, None, rest
    try:
        args.variant_list = parse_variants(args.variants)
        args.regrow = Regrow(args.regrow_every, args.regrow_alpha, args.regrow_stop)
    except ValueError as e:
        p.error(str(e))
    if not 0 < args.dropout < 1:
        p.error(f"--dropout must be in (0, 1), not {args.dropout:g}")
    own_after = [w for w in rest if w.split("=", 1)[0] in ("--csv", "--merge", "--seeds",
                                                             "--first-seed")]
    if own_after:       # compression.py would take them and the screen ignore them
        p.error(f"{own_after[0].split('=', 1)[0]} is this screen's option: give it before --, "
                "not after")
    bargs = bc.parse_args(rest)
    if len(bargs.ratio_list) != 1:
        p.error(f"give one ratio after -- (--ratios 100), not "
                f"{','.join(map('{:g}'.format, bargs.ratios))}")
    if bargs.stage_list:
        p.error("--stages is not supported: every stage but the last would lose its retraining")
    bargs.batch_size = int(bc.zoo.RECIPES[bc.MODEL]["batch_size"])
    return args, bargs, rest


def hard_pruned(seed: int, state: dict, bargs: argparse.Namespace) -> tuple[nn.Module, dict,
                                                                             dict]:
    """ADMM to the bench's ratio with no retraining: the hard-pruned model, its plans and
    masks (a kept weight is one the projection left non-zero)."""
    ratio = bargs.ratio_list[0]
    no_retrain = copy.copy(bargs)
    no_retrain.retrain_epochs = 0
    model, row, _ = bc.run_admm(seed, state, ratio, no_retrain)
    plans = resolve(bc.pruning_plan(model, ratio, bargs.scope, bargs.profile_map,
                                    bargs.connected, bargs.rho_map), model)
    masks = {n: {s: p.detach() != 0 for s, p in ps.items()}
             for n, ps in layer_weights(model, plans).items()}
    return model, plans, masks


def run_variant(v: Variant, seed: int, state: dict, model: nn.Module, plans: dict, masks: dict,
                args: argparse.Namespace, bargs: argparse.Namespace) -> dict:
    """Retrain a copy of the hard-pruned ``model`` as ``v`` says; one CSV row."""
    m = copy.deepcopy(model)
    mk = {n: {s: t.clone() for s, t in ps.items()} for n, ps in masks.items()}
    tr, te = bc.loaders(seed, bargs.batch_size, bargs.augmentation)
    kw = {"optimizer": bargs.optimizer, "lr": bargs.rlr, "seed": seed + 500,
          "weight_decay": bargs.weight_decay, "schedule": bargs.retrain_schedule,
          "loss_fn": bc.task_loss(bargs), "distill": bc.teacher(seed, state, bargs)}
    start = time.perf_counter()
    swapped = 0
    if v.kind in ("standard", "dropout"):
        hooks = linear_input_dropout(m, args.dropout) if v.kind == "dropout" else []
        proj = Projection(weights={}, masks=mk, scales={n: None for n in plans})
        masked_retrain(m, plans, proj, tr, v.epochs, progress=False, **kw)
        for h in hooks:
            h.remove()
    else:
        swapped = regrow_retrain(m, plans, mk, tr, v.epochs, args.regrow, **kw)
    nnz = bc.layer_nnz(m)
    kept = {n: int(sum(int(t.sum()) for t in ps.values())) for n, ps in masks.items()}
    if any(nnz[n] > kept[n] for n in kept):
        raise RuntimeError(f"{v.name}: a layer holds more weights than its count: {nnz}, {kept}")
    train_digits = bc.loaders(seed, 500)[0]
    return {"seed": seed, "variant": v.name, "accuracy": evaluate(m, te),
            "train_accuracy": evaluate(m, train_digits), "nnz": sum(nnz.values()),
            "swapped": swapped, "seconds": time.perf_counter() - start}


def summarise(df: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per variant: accuracy, training-digit accuracy, drop and the paired change against the
    first variant (mean, standard error, seeds higher / lower)."""
    acc = df.pivot(index="seed", columns="variant", values="accuracy") * 100
    rows = []
    for name in order:
        g = df[df.variant == name]
        d = acc[name] - acc[order[0]]
        se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
        rows.append({"variant": name,
                     "accuracy %": f"{g.accuracy.mean() * 100:.2f} +- "
                                   f"{g.accuracy.std(ddof=0) * 100:.2f}",
                     "train digits %": f"{g.train_accuracy.mean() * 100:.2f}",
                     "drop pp": f"{g.drop_pp.mean():.2f}",
                     f"vs {order[0]} pp": "-" if name == order[0] else
                     f"{d.mean():+.2f} (s.e. {se:.2f}; {int((d > 0).sum())} up, "
                     f"{int((d < 0).sum())} down)"})
    return pd.DataFrame(rows)


@reports_divergence("retrain_screen.py")
def main(argv: list[str]) -> int:
    args, bargs, _ = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.csv)
    old_val, old_threads = bc.VAL_PER_CLASS["n"], torch.get_num_threads()
    old_kwargs = dict(bc.MODEL_KWARGS)
    bc.VAL_PER_CLASS["n"] = bargs.val
    bc.MODEL_KWARGS.clear()
    bc.MODEL_KWARGS.update(bargs.model_kwargs)
    torch.set_num_threads(bargs.threads)
    try:
        return screen(argv, args, bargs)
    finally:
        bc.VAL_PER_CLASS["n"] = old_val
        bc.MODEL_KWARGS.clear()
        bc.MODEL_KWARGS.update(old_kwargs)
        torch.set_num_threads(old_threads)


def screen(argv: list[str], args: argparse.Namespace, bargs: argparse.Namespace) -> int:
    """Run the screen and print its table (``main`` after parsing)."""
    dense_epochs = bargs.dense_epochs if bargs.dense_epochs is not None else \
        int(bc.zoo.RECIPES[bc.MODEL]["epochs"])
    wall = time.perf_counter()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    order = [v.name for v in args.variant_list]
    where = f"validation ({10 * bargs.val:,} held-out training digits)" if bargs.val else \
        "test (1,000 digits)"
    print(f"LeNet-5{' (ReLU after the convolutions)' if bargs.conv_relu else ''} "
          f"{bargs.ratio_list[0]:g}x, seeds {seeds}, variants {order}, evaluated on "
          f"{where}; dense {dense_epochs} epochs", flush=True)
    records = []
    for seed in seeds:
        state, dense_acc, _ = bc.dense_model(seed, dense_epochs, bargs.batch_size,
                                             bargs.augmentation, bargs.label_smoothing)
        model, plans, masks = hard_pruned(seed, state, bargs)
        for v in args.variant_list:
            row = run_variant(v, seed, state, model, plans, masks, args, bargs)
            row["dense_accuracy"] = dense_acc
            records.append(row)
            print(f"[seed {seed}] dense {dense_acc:.2%}  {v.name}: {row['accuracy']:.2%} "
                  f"(training digits {row['train_accuracy']:.2%}, {row['nnz']} weights, "
                  f"{row['swapped']} swapped; {row['seconds']:.0f} s)", flush=True)
    df = pd.DataFrame.from_records(records)
    df["drop_pp"] = (df.dense_accuracy - df.accuracy) * 100
    df["evaluated_on"] = f"val{bargs.val}" if bargs.val else "test"
    command = " ".join(["python", "bench/retrain_screen.py", *map(shlex.quote, argv)])
    df["command"] = command
    bc.write_csv(df, args.csv)
    report(df, order, f"wall time {(time.perf_counter() - wall) / 60:.1f} min", args.csv,
           [command])
    return 0


def report(df: pd.DataFrame, order: list[str], timing: str, csv: Path,
           commands: list[str]) -> None:
    """Print the per-variant table over every seed of ``df``."""
    where = "test (1,000 digits)" if df.evaluated_on.iloc[0] == "test" else \
        f"validation ({10 * int(df.evaluated_on.iloc[0][3:]):,} held-out training digits)"
    seeds = sorted(int(s) for s in df.seed.unique())
    print(f"\n== {where}, {len(seeds)} seed(s) {seeds}; dense "
          f"{df.groupby('seed').dense_accuracy.first().mean():.2%}")
    print(summarise(df, order).to_string(index=False))
    print(f"\n{timing}; CSV {csv}")
    for c in commands:
        print(f"reproduce: {c}")


def merge(paths: list[Path], out: Path) -> int:
    """``--merge``: one table over the CSVs of separate runs with the same variants."""
    frames = bc.read_csvs(paths, ("seed", "variant", "accuracy", "train_accuracy", "seconds",
                                  "dense_accuracy", "drop_pp", "evaluated_on", "command"))
    orders = {tuple(f.variant.drop_duplicates()) for f in frames}
    if len(orders) != 1:
        raise SystemExit("--merge: the CSVs screen different variants")
    df = pd.concat(frames, ignore_index=True)
    if df.duplicated(["seed", "variant"]).any() or df.evaluated_on.nunique() != 1:
        raise SystemExit("--merge: the CSVs repeat a (seed, variant) row or mix test and "
                         "validation runs")
    if len({bc.setup_of(c) for c in df.command}) > 1:    # e.g. scope profile with global
        raise SystemExit("--merge: the CSVs are runs of different commands (apart from "
                         "--seeds, --first-seed and --csv)")
    bc.write_csv(df, out)
    minutes = max(f.seconds.sum() for f in frames) / 60
    report(df, list(orders.pop()), f"retraining {minutes:.1f} min in the longest run (dense "
           "training and ADMM not counted)", out, sorted(set(df.command)))
    print("(merged from " + ", ".join(map(str, paths)) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
