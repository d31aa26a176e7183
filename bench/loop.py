"""Benchmark: what the closed loop buys. Loop plan vs a uniform plan of the same compression.

A script, not a test. For the default CNN (``pruning.zoo.DEFAULT_CNN``, VGG-style on mnist5k),
each sparse engine, each first-plan target and each seed:

1. the training split is divided into train and a held-out validation split
   (:func:`codesign.loop.loop_loaders`: ``--val-fraction`` of every class, drawn with
   ``--split-seed``); the dense model is trained on train by its zoo recipe
   (``pruning.zoo.RECIPES``); every compression starts from it and trains on train only;
2. **loop** (:func:`codesign.loop.run_loop`): a first plan with the engine's scheme at the target
   sparsity on every layer the engine runs, break-evens measured in RTL
   (:func:`sim.breakeven.find_breakeven`; points kept in ``OUT/points.sqlite`` and reused by the
   other seeds and targets), re-plan (layers below their break-even pushed above it or left
   dense; pushes accepted or refused on the **validation** accuracy), compress again;
3. **uniform**: the same layers at one sparsity chosen so that the overall kept fraction over
   those layers equals the loop plan's, compressed with the same settings; all of them run on the
   sparse engine (what a flow without break-evens does); ``uniform_best`` also gives the uniform
   plan the better of sparse and dense engine per layer, as an upper bound for it.

Accuracies are reported on the **test** split (1,000 digits, never seen by a decision) and on
validation. Cycles are engine cycles for one input image (conv layers: one matrix-vector product
per output position on the matrix engines), from the cycle models that equal the RTL counts
(tests), so load does not change them. The summary averages over the seeds: mean +- std of the
test accuracies and of the per-seed cycle ratio, and the ratio of the mean cycles. The target is
>= 1.3x fewer cycles for the loop at equal accuracy, judged on the mean test accuracies
(+-0.3 pp).

Usage::

    python bench/loop.py                                # vggsmall, unstructured and bcr, 3 seeds
    python bench/loop.py --engines unstructured --targets 0.3,0.5 --seeds 0,1,2
    python bench/loop.py --quick                        # smoke run (numbers meaningless)
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from codesign.atomic import write_csv
from codesign.loop import (
    ENGINE_SCHEMES,
    initial_plan,
    layer_cycles,
    loop_loaders,
    model_cycles,
    output_positions,
    plan_from,
    run_loop,
)
from codesign.options import (
    LR_ARG,
    SEED_ARG,
    float_arg,
    folder_problem,
    int_arg,
    list_arg,
    names_arg,
    parse_quick,
)
from codesign.store import SQLiteStore
from pruning import zoo
from pruning.compress import compress
from pruning.errors import reports_divergence
from pruning.plan import prunable_layers
from pruning.train import evaluate, train
from sim.breakeven import EngineConfig

HERE = Path(__file__).resolve().parent
TARGET_SPEEDUP = 1.3
TOLERANCE_PP = 0.3


def kept_fraction(sparsities: dict[str, float | None], numel: dict[str, int]) -> float:
    """Overall kept fraction over the layers in ``sparsities`` (``None``: dense, all kept)."""
    kept = sum(numel[n] * (1.0 if s is None else 1.0 - s) for n, s in sparsities.items())
    return kept / sum(numel[n] for n in sparsities)


def run_once(model: Any, engine: str, target: float, seed: int, args: argparse.Namespace,
             loaders: tuple, numel: dict[str, int], store: Any) -> dict[str, Any]:
    """The loop and the uniform plan for one engine, target and seed: one summary row and the
    per-layer rows."""
    train_loader, val_loader, test_loader = loaders

    def compress_fn(m: Any, plan: Any) -> Any:
        return compress(m, plan, train_loader, val_loader, admm_iters=args.admm_iters,
                        retrain_epochs=args.retrain_epochs, lr=args.lr, seed=seed,
                        progress=False, model_name=args.model)

    def test_fn(m: Any) -> float:
        return evaluate(m, test_loader)

    cfg = EngineConfig(engine, lanes=args.lanes, weight_bits=args.bits, act_bits=8)
    targets = initial_plan(model, engine, target, bits=args.bits)
    start = time.perf_counter()
    loop = run_loop(model, targets, compress_fn, cfg, bits=args.bits, seeds=args.masks,
                    tolerance=args.tolerance, margin=args.margin, store=store,
                    test_fn=test_fn, push_order=args.push_order,
                    echo=lambda s: print(s, flush=True))
    loop_seconds = time.perf_counter() - start
    final = {d.layer: d.sparsity for d in loop.decisions}
    eligible = [n for n, s in targets.items() if s is not None]
    keep = kept_fraction({n: final[n] for n in eligible}, numel)
    uniform_s = round(1.0 - keep, 4)
    print(f"uniform plan: {engine} at {uniform_s:.2%} on {len(eligible)} layers ...", flush=True)
    m = copy.deepcopy(model)
    uniform = compress_fn(m, plan_from(
        {n: (uniform_s if n in eligible else None) for n in targets}, engine, bits=args.bits))
    test_uniform = test_fn(m)
    positions, _ = output_positions(model)
    loop_cycles = dict(loop.cycles_after)
    uni_cycles = model_cycles(uniform.bundle, engine, args.lanes, positions)
    best = {n: min(c, layer_cycles(uniform.bundle.layer(n), "dense", args.lanes,
                                   positions.get(n, 1)))
            for n, (_, c) in uni_cycles.items()}
    total = {k: sum(c for _, c in v.values()) for k, v in
             (("loop", loop_cycles), ("uniform", uni_cycles))}
    total["uniform_best"] = sum(best.values())
    plan = ", ".join(f"{d.layer} {d.action}" + (f" {d.sparsity:.1%}" if d.sparsity else "")
                     for d in loop.decisions)
    per_layer = [{"engine": engine, "target": target, "seed": seed, "layer": d.layer,
                  "first": d.target, "break_even": d.break_even, "rtl_runs": d.rtl_runs,
                  "action": d.action, "loop_sparsity": d.sparsity,
                  "uniform_sparsity": uniform_s if d.layer in eligible else None,
                  "loop_engine": loop_cycles.get(d.layer, ("-", 0))[0],
                  "loop_cycles": loop_cycles.get(d.layer, ("-", 0))[1],
                  "uniform_cycles": uni_cycles.get(d.layer, ("-", 0))[1]}
                 for d in loop.decisions]
    return {"summary": {
        "model": args.model, "engine": engine, "target": target, "seed": seed,
        "lanes": args.lanes, "bits": args.bits, "kept_fraction": round(keep, 4),
        "uniform_sparsity": uniform_s, "plan": plan,
        "val_dense": loop.first.accuracy_before, "test_first": loop.test_first, "test_loop": loop.test_final,
        "test_uniform": test_uniform,
        "val_first": loop.first.accuracy_after, "val_loop": loop.final.accuracy_after,
        "val_uniform": uniform.accuracy_after, "pushes_refused": loop.rejected,
        "compressions": len(loop.tried),
        "cycles_loop": total["loop"], "cycles_uniform": total["uniform"],
        "cycles_uniform_best": total["uniform_best"],
        "speedup_vs_uniform": round(total["uniform"] / max(1, total["loop"]), 4),
        "speedup_vs_uniform_best": round(total["uniform_best"] / max(1, total["loop"]), 4),
        "rtl_runs": sum(b.rtl_runs for b in loop.breakevens.values()),
        "loop_seconds": round(loop_seconds, 1)}, "layers": per_layer}


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (engine, target): mean and std over the seeds, and the verdict."""
    rows = []
    for (engine, target), g in runs.groupby(["engine", "target"], sort=False):
        acc = {k: 100 * g[f"test_{k}"] for k in ("dense", "first", "loop", "uniform")}
        gap = acc["loop"].mean() - acc["uniform"].mean()
        ratio_of_means = g["cycles_uniform"].mean() / g["cycles_loop"].mean()
        rows.append({
            "engine": engine, "target": target, "seeds": len(g),
            "kept_fraction": round(g["kept_fraction"].mean(), 4),
            "test_dense_pct": round(acc["dense"].mean(), 2),
            "test_first_pct": round(acc["first"].mean(), 2),
            "test_loop_pct": f"{acc['loop'].mean():.2f} +- {acc['loop'].std(ddof=0):.2f}",
            "test_uniform_pct": f"{acc['uniform'].mean():.2f} +- "
                                f"{acc['uniform'].std(ddof=0):.2f}",
            "test_gap_pp": round(gap, 2),
            "equal_accuracy": bool(abs(gap) <= TOLERANCE_PP),
            "cycles_loop": round(g["cycles_loop"].mean()),
            "cycles_uniform": round(g["cycles_uniform"].mean()),
            "speedup": f"{g['speedup_vs_uniform'].mean():.3f} +- "
                       f"{g['speedup_vs_uniform'].std(ddof=0):.3f}",
            "speedup_of_means": round(ratio_of_means, 3),
            "speedup_vs_uniform_best": round(g["speedup_vs_uniform_best"].mean(), 3),
            "target_met": bool(abs(gap) <= TOLERANCE_PP and ratio_of_means >= TARGET_SPEEDUP),
        })
    return pd.DataFrame(rows)


#: Zoo CNNs with a training recipe.
LOOP_MODELS = ("tinycnn", "lenet5", "vggsmall")



@reports_divergence("loop.py")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=zoo.DEFAULT_CNN, choices=LOOP_MODELS)
    p.add_argument("--engines", type=names_arg(tuple(ENGINE_SCHEMES)), default="unstructured,bcr",
                   help=f"Comma-separated, of {', '.join(ENGINE_SCHEMES)}.")
    p.add_argument("--targets", type=list_arg(float_arg(0, 1, high_open=True)), default="0.5",
                   help="First plans' sparsities, comma-separated.")
    p.add_argument("--seeds", type=list_arg(SEED_ARG), default="0,1,2",
                   help="Seeds (dense training, compression), comma-separated; the summary "
                        "averages over them.")
    p.add_argument("--lanes", type=int_arg(1, 64), default=8)
    p.add_argument("--bits", type=int_arg(2, 16), default=8)
    p.add_argument("--masks", type=int_arg(1, 16), default=3, help="Random masks per ratio (break-even).")
    p.add_argument("--admm-iters", type=int_arg(0), default=5)
    p.add_argument("--retrain-epochs", type=int_arg(0), default=3)
    p.add_argument("--lr", type=LR_ARG, default=1e-3)
    p.add_argument("--tolerance", type=float_arg(0), default=0.5,
                   help="Validation accuracy (pp) a pushed plan may lose.")
    p.add_argument("--margin", type=float_arg(0, 0.5), default=0.02)
    p.add_argument("--push-order", default="cycles", choices=("cycles", "smallest"))
    p.add_argument("--val-fraction", type=float_arg(0, 1, high_open=True), default=0.2,
                   help="Fraction of each class of the training split held out for decisions.")
    p.add_argument("--split-seed", type=SEED_ARG, default=0)
    p.add_argument("--quick", action="store_true",
                   help="Tiny settings, a smoke run: tinycnn, 1 dense epoch, 1 ADMM iteration, "
                        "1 retraining epoch, 1 mask, for the options not given.")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = parse_quick(p, argv, {"model": "tinycnn", "admm_iters": 1, "retrain_epochs": 1,
                                 "masks": 1})
    problem = folder_problem(args.out)   # before the run, not after it
    if problem is not None:
        p.error(f"--out: {problem}")
    torch.set_num_threads(1)
    seeds = args.seeds
    recipe = dict(zoo.RECIPES[args.model])
    dataset = zoo.default_dataset(args.model)
    epochs = int(recipe.pop("epochs"))
    epochs = 1 if args.quick else epochs
    batch_size = int(recipe.pop("batch_size"))
    args.out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    rows, layers = [], []
    with SQLiteStore(args.out / "points.sqlite") as store:
        for seed in seeds:
            loaders = loop_loaders(dataset, batch_size=batch_size, seed=seed,
                                   val_fraction=args.val_fraction, split_seed=args.split_seed)
            model = zoo.build(args.model, seed=seed)
            print(f"seed {seed}: training dense {args.model} on {dataset} "
                  f"({len(loaders[0].dataset)} train, {len(loaders[1].dataset)} validation) for "
                  f"{epochs} epochs ...", flush=True)
            train(model, loaders[0], epochs, seed=seed, **recipe)
            test_dense = evaluate(model, loaders[2])
            numel = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
            for engine in args.engines:
                for target in args.targets:
                    r = run_once(model, engine, target, seed, args, loaders, numel, store)
                    rows.append({**r["summary"], "test_dense": test_dense})
                    layers += r["layers"]
                    write_csv(pd.DataFrame(rows), args.out / "loop_runs.csv")
                    write_csv(pd.DataFrame(layers), args.out / "loop_layers.csv")
    runs = pd.DataFrame(rows)
    summary = summarise(runs)
    write_csv(summary, args.out / "loop.csv")
    with pd.option_context("display.width", 250, "display.max_columns", 40,
                           "display.max_colwidth", 200):
        print(pd.DataFrame(layers).to_string(index=False))
        print()
        print(runs.drop(columns=["plan"]).to_string(index=False))
        print()
        print(summary.T.to_string(header=False))
    print(f"target: loop >= {TARGET_SPEEDUP}x fewer cycles than uniform at equal test accuracy "
          f"(means over the seeds, +-{TOLERANCE_PP} pp)")
    print(f"wall time {time.perf_counter() - wall:.0f} s; saved {args.out / 'loop.csv'}, "
          f"{args.out / 'loop_runs.csv'} and {args.out / 'loop_layers.csv'}")
    print("command: python bench/loop.py " + shlex.join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
