"""Benchmark: what the closed loop buys. Loop plan vs a uniform plan of the same compression.

A script, not a test. For the default CNN (``pruning.zoo.DEFAULT_CNN``, VGG-style on mnist5k) and
each sparse engine:

1. train the dense model once (``pruning.zoo.RECIPES``); every compression starts from it;
2. **loop** (:func:`codesign.loop.run_loop`): a first plan with the engine's scheme at
   ``--target`` sparsity on every layer the engine runs, break-evens measured in RTL
   (:func:`sim.breakeven.find_breakeven`), re-plan (layers below their break-even pushed above
   it, or left dense), compress again;
3. **uniform**: the same layers at one sparsity chosen so that the overall kept fraction over
   those layers equals the loop plan's, compressed with the same settings; all of them run on the
   sparse engine (what a flow without break-evens does); ``uniform_best`` also gives the uniform
   plan the better of sparse and dense engine per layer, as an upper bound for it.

Cycles are engine cycles for one input image (conv layers: one matrix-vector product per output
position on the matrix engines), from the cycle models that equal the RTL counts (tests). The
target is >= 1.3x fewer cycles for the loop at equal accuracy (+-0.3 pp).

Usage::

    python bench/loop.py                          # vggsmall, bcr and unstructured engines
    python bench/loop.py --engines unstructured --target 0.5
    python bench/loop.py --quick                  # smoke run (numbers meaningless)
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

from codesign.loop import (
    initial_plan,
    layer_cycles,
    model_cycles,
    output_positions,
    plan_from,
    run_loop,
)
from pruning import data as pdata
from pruning import zoo
from pruning.compress import compress
from pruning.plan import prunable_layers
from pruning.train import train
from sim.breakeven import EngineConfig

HERE = Path(__file__).resolve().parent
TARGET_SPEEDUP = 1.3
TOLERANCE_PP = 0.3


def kept_fraction(sparsities: dict[str, float | None], numel: dict[str, int]) -> float:
    """Overall kept fraction over the layers in ``sparsities`` (``None``: dense, all kept)."""
    kept = sum(numel[n] * (1.0 if s is None else 1.0 - s) for n, s in sparsities.items())
    return kept / sum(numel[n] for n in sparsities)


def run_engine(model: Any, engine: str, args: argparse.Namespace, loaders: tuple,
               numel: dict[str, int]) -> dict[str, Any]:
    train_loader, test_loader = loaders

    def compress_fn(m: Any, plan: Any) -> Any:
        return compress(m, plan, train_loader, test_loader, admm_iters=args.admm_iters,
                        retrain_epochs=args.retrain_epochs, lr=args.lr, seed=args.seed,
                        progress=False, model_name=args.model)

    cfg = EngineConfig(engine, lanes=args.lanes, weight_bits=args.bits, act_bits=8)
    targets = initial_plan(model, engine, args.target, bits=args.bits)
    start = time.perf_counter()
    loop = run_loop(model, targets, compress_fn, cfg, bits=args.bits, seeds=args.seeds,
                    tolerance=args.tolerance, echo=lambda s: print(s, flush=True))
    loop_seconds = time.perf_counter() - start
    final = {d.layer: d.sparsity for d in loop.decisions}
    eligible = [n for n, s in targets.items() if s is not None]
    keep = kept_fraction({n: final[n] for n in eligible}, numel)
    uniform_s = round(1.0 - keep, 4)
    print(f"uniform plan: {engine} at {uniform_s:.2%} on {len(eligible)} layers ...", flush=True)
    uniform = compress_fn(copy.deepcopy(model), plan_from(
        {n: (uniform_s if n in eligible else None) for n in targets}, engine, bits=args.bits))
    positions, _ = output_positions(model)
    loop_cycles = dict(loop.cycles_after)
    uni_cycles = model_cycles(uniform.bundle, engine, args.lanes, positions)
    best = {n: min(c, layer_cycles(uniform.bundle.layer(n), "dense", args.lanes,
                                   positions.get(n, 1)))
            for n, (_, c) in uni_cycles.items()}
    total = {k: sum(c for _, c in v.values()) for k, v in
             (("loop", loop_cycles), ("uniform", uni_cycles))}
    total["uniform_best"] = sum(best.values())
    acc_loop, acc_uni = loop.final.accuracy_after, uniform.accuracy_after
    per_layer = [{"engine": engine, "layer": d.layer, "target": d.target,
                  "break_even": d.break_even, "rtl_runs": d.rtl_runs, "action": d.action,
                  "loop_sparsity": d.sparsity, "uniform_sparsity": uniform_s if d.layer in
                  eligible else None,
                  "loop_engine": loop_cycles.get(d.layer, ("-", 0))[0],
                  "loop_cycles": loop_cycles.get(d.layer, ("-", 0))[1],
                  "uniform_cycles": uni_cycles.get(d.layer, ("-", 0))[1]}
                 for d in loop.decisions]
    return {"summary": {
        "model": args.model, "engine": engine, "lanes": args.lanes, "bits": args.bits,
        "first_target": args.target, "kept_fraction": round(keep, 4),
        "accuracy_dense": loop.first.accuracy_before, "accuracy_first": loop.first.accuracy_after,
        "accuracy_loop": acc_loop, "accuracy_uniform": acc_uni,
        "equal_accuracy": abs(acc_loop - acc_uni) * 100 <= TOLERANCE_PP,
        "cycles_loop": total["loop"], "cycles_uniform": total["uniform"],
        "cycles_uniform_best": total["uniform_best"],
        "speedup_vs_uniform": round(total["uniform"] / max(1, total["loop"]), 3),
        "speedup_vs_uniform_best": round(total["uniform_best"] / max(1, total["loop"]), 3),
        "rtl_runs": sum(b.rtl_runs for b in loop.breakevens.values()),
        "loop_seconds": round(loop_seconds, 1)}, "layers": per_layer}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=zoo.DEFAULT_CNN)
    p.add_argument("--engines", default="bcr,unstructured")
    p.add_argument("--target", type=float, default=0.5, help="First plan's sparsity.")
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--seeds", type=int, default=3, help="Random masks per ratio (break-even).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--admm-iters", type=int, default=5)
    p.add_argument("--retrain-epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tolerance", type=float, default=0.5)
    p.add_argument("--quick", action="store_true", help="Tiny settings: a smoke run.")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.admm_iters, args.retrain_epochs, args.seeds = "tinycnn", 1, 1, 1
    recipe = zoo.RECIPES[args.model]
    dataset = zoo.default_dataset(args.model)
    model = zoo.build(args.model, seed=args.seed)
    train_loader = pdata.loader(dataset, "train", batch_size=int(recipe["batch_size"]),
                                seed=args.seed)
    test_loader = pdata.loader(dataset, "test", batch_size=512)
    epochs = 1 if args.quick else int(recipe["epochs"])
    print(f"training dense {args.model} on {dataset} for {epochs} epochs ...", flush=True)
    train(model, train_loader, epochs, lr=float(recipe["lr"]), seed=args.seed)
    numel = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
    rows, layers = [], []
    for engine in args.engines.split(","):
        r = run_engine(model, engine.strip(), args, (train_loader, test_loader), numel)
        rows.append(r["summary"])
        layers += r["layers"]
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "loop.csv", index=False)
    pd.DataFrame(layers).to_csv(args.out / "loop_layers.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(pd.DataFrame(layers).to_string(index=False))
        print()
        print(table.T.to_string(header=False))
    print(f"target: loop >= {TARGET_SPEEDUP}x fewer cycles than uniform at equal accuracy "
          f"(+-{TOLERANCE_PP} pp)")
    print(f"saved {args.out / 'loop.csv'} and {args.out / 'loop_layers.csv'}")
    print("command: python bench/loop.py " + shlex.join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
