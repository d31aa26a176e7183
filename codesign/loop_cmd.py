"""``codesign loop``: compress -> break-even in RTL -> re-plan -> compress again.

Trains (or loads with ``--checkpoint``) a zoo model, compresses it with one sparse engine's
scheme on every layer that engine runs, measures each such layer's break-even sparsity on the
engine in RTL simulation, re-plans (:mod:`codesign.loop`) and compresses again. Prints the plan
before and after, the accuracies, and the cycles per layer and for the whole model; writes
``OUT/bundle`` (each layer's break-even in its manifest record), ``OUT/breakeven.csv``,
``OUT/points.csv`` (every RTL run pair), ``OUT/loop.json`` and the two plans as JSON. The
accept/refuse decisions use a validation split held out of the training data
(``--val-fraction``), never the test set, whose accuracy is reported beside it. The RTL
points are kept in an SQLite store (``OUT/points.sqlite`` or ``--store``) that a rerun reuses. Bad input
is one line and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from codesign.options import LANES, LEARNING_RATE, OUT_DIR, SEED, FiniteFloatRange, fmax_pair_arg
from codesign.prune_cmd import (
    DATASETS,
    DENSE_EPOCHS_HELP,
    MAX_RATIO,
    _load_checkpoint,
    _model,
    _pair,
    _save_state,
    _train_dense,
    _user_error,
    check_outputs,
    recipe_batch_size,
)

__all__ = ["loop"]


def breakeven_frame(breakevens: dict[str, Any]) -> tuple[Any, Any]:
    """(one row per layer, one row per RTL point) as DataFrames."""
    import pandas as pd

    rows, points = [], []
    for name, be in breakevens.items():
        c = be.config
        rows.append({"layer": name, "engine": c.engine, "lanes": c.lanes,
                     "weight_bits": c.weight_bits, "act_bits": c.act_bits,
                     "break_even": be.ratio, "storage_break_even": be.storage_ratio,
                     "predicted_break_even": be.predicted_ratio, "rtl_runs": be.rtl_runs})
        for p in be.points:
            rec = p.to_json() if hasattr(p, "to_json") else dict(p.__dict__)
            points.append({k: v for k, v in rec.items() if not isinstance(v, (dict, list))})
    return pd.DataFrame(rows), pd.DataFrame(points)


@click.command("loop")
@click.option("--model", "model_name", required=True, metavar="NAME",
              help="Zoo model: tinycnn, lenet5, vggsmall, resnet18, mobilenetv2.")
@click.option("--engine", type=click.Choice(["bcr", "unstructured", "pattern"]), required=True,
              help="The sparse engine (and so the pruning scheme).")
@click.option("--lanes", type=LANES, default=8, show_default=True)
@click.option("--bits", type=click.IntRange(2, 16), default=8, show_default=True,
              help="Weight bits of every layer (activations: 8 bits).")
@click.option("--ratio", type=float, help="Target compression ratio (> 1) of the first plan.")
@click.option("--sparsity", type=float, help="Target pruned fraction in [0, 1) (instead).")
@click.option("--block", metavar="RxC", default="8x16", show_default=True,
              help="BCR block size.")
@click.option("--index-bits", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Unstructured engine's relative-index width.")
@click.option("--tolerance", type=FiniteFloatRange(min=0), default=0.5, show_default=True,
              help="Accuracy (pp) a pushed plan may lose against the first compression.")
@click.option("--margin", type=FiniteFloatRange(0, 0.5), default=0.02, show_default=True,
              help="A pushed layer goes to break-even + margin.")
@click.option("--seeds", type=click.IntRange(1, 16), default=3, show_default=True,
              help="Random masks per ratio in the break-even measurement.")
@click.option("--val-fraction", type=FiniteFloatRange(0, 1, max_open=True), default=0.2,
              show_default=True,
              help="Fraction of each class of the training split held out as the validation "
                   "set the accept/refuse decisions use (0: decide on the test set).")
@click.option("--push-order", type=click.Choice(["cycles", "smallest"]), default="cycles",
              show_default=True,
              help="Order of the pushes when not all fit the tolerance: most cycles saved "
                   "first, or smallest push first.")
@click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator",
              show_default=True)
@click.option("--check-rtl/--no-check-rtl", default=True, show_default=True,
              help="Run every final layer once on its engine's RTL against the golden model.")
@click.option("--store", "store_path", type=click.Path(path_type=Path),
              help="RTL point store (SQLite; default OUT/points.sqlite): a rerun, or a "
                   "`codesign sweep` of the same model and engine, reuses its points.")
@click.option("--fmax", default=None,
              help="Fmax of the sparse and dense engines, SPARSE,DENSE (MHz, or reports of "
                   "`codesign synth`): decide by time break-evens, not cycle ones.")
@click.option("--out", type=OUT_DIR, required=True, help="Output folder.")
@click.option("--data", type=click.Choice(DATASETS), help="Dataset (default: the model's).")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Trained state dict (torch.save); loaded with weights_only=True.")
@click.option("--epochs", type=click.IntRange(min=0), help=DENSE_EPOCHS_HELP)
@click.option("--admm-iters", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--admm-epochs", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--retrain-epochs", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--lr", type=LEARNING_RATE, default=1e-3, show_default=True,
              help="Adam learning rate of ADMM and the retraining (the dense training follows "
                   "the model's zoo recipe; a model without one uses this).")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Training batch size (default: the model's zoo recipe's, or 64).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
def loop(model_name: str, engine: str, lanes: int, bits: int, ratio: float | None,
         sparsity: float | None, block: str, index_bits: int, tolerance: float, margin: float,
         seeds: int, val_fraction: float, push_order: str, simulator: str, check_rtl: bool,
         store_path: Path | None, fmax: str | None, out: Path, data: str | None,
         checkpoint: Path | None, epochs: int | None, admm_iters: int, admm_epochs: int,
         retrain_epochs: int, lr: float, batch_size: int | None, seed: int, progress: bool
         ) -> None:
    """The closed loop: compress, measure break-evens in RTL, re-plan, compress again."""
    if (ratio is None) == (sparsity is None):
        raise _user_error("give one of --ratio (a compression ratio above 1) or --sparsity "
                          "(a pruned fraction in [0, 1))")
    if ratio is not None and not ratio > 1:
        raise _user_error(f"--ratio must be a compression ratio greater than 1 (10 keeps 1/10 "
                          f"of the weights), not {ratio:g}")
    if ratio is not None and ratio > MAX_RATIO:
        raise _user_error(f"--ratio must be at most {MAX_RATIO:g}, not {ratio:g}")
    if sparsity is not None and not 0 <= sparsity < 1:
        raise _user_error(f"--sparsity must be a pruned fraction in [0, 1), not {sparsity:g}")
    target = sparsity if sparsity is not None else 1.0 - 1.0 / ratio
    blk = _pair(block, "x", "--block", "8x16")
    try:
        fmax_mhz = None if fmax is None else fmax_pair_arg(fmax, [engine], [lanes], [bits])
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    check_outputs(out, ["breakeven.csv", "points.csv", "plan_before.json", "plan_after.json",
                        "loop.json", *(["dense.pt"] if checkpoint is None else []),
                        *(["points.sqlite"] if store_path is None else [])], ["bundle"])
    model, dataset = _model(model_name, data, seed)

    import pandas as pd

    from codesign.atomic import write_csv
    from codesign.flow import write_json
    from codesign.loop import check_in_rtl, initial_plan, loop_loaders, run_loop
    from codesign.report import print_table
    from pruning.compress import compress
    from pruning.train import evaluate
    from sim.breakeven import EngineConfig

    try:
        config = EngineConfig(engine, lanes=lanes, weight_bits=bits, act_bits=8, block=blk,
                              index_bits=index_bits)
        targets = initial_plan(model, engine, target, bits=bits, block=blk,
                               index_bits=index_bits)
    except ValueError as exc:
        raise _user_error(f"{model_name}: {exc}") from None
    try:
        train_loader, val_loader, test_loader = loop_loaders(
            dataset, batch_size=batch_size or recipe_batch_size(model_name), seed=seed,
            val_fraction=val_fraction)
    except ValueError as exc:
        raise _user_error(f"--val-fraction: {exc}") from None
    if val_fraction > 0:
        click.echo(f"{dataset}: {len(train_loader.dataset)} training samples, "
                   f"{len(val_loader.dataset)} held out for the loop's decisions (validation)")
    from codesign.store import SQLiteStore, StoreError

    if checkpoint is not None:
        _load_checkpoint(model, checkpoint)
    try:    # before the training: a --store that is not a store is found in a second
        store = SQLiteStore(store_path or out / "points.sqlite")
    except StoreError as exc:
        raise _user_error(str(exc)) from None
    try:
        if checkpoint is not None:
            click.echo(f"loaded {checkpoint}: test accuracy {evaluate(model, test_loader):.2%}")
        else:
            _train_dense(model, model_name, dataset, train_loader, epochs, lr, seed)
            _save_state(model, out / "dense.pt")
    except BaseException:
        store.close()
        raise

    def compress_fn(m: Any, plan: Any) -> Any:
        return compress(m, plan, train_loader, val_loader, epochs_admm=admm_epochs,
                        admm_iters=admm_iters, retrain_epochs=retrain_epochs, lr=lr, seed=seed,
                        progress=progress, model_name=model_name)

    with store:
        try:
            result = run_loop(model, targets, compress_fn, config, bits=bits, margin=margin,
                              tolerance=tolerance, seeds=seeds, simulator=simulator, store=store,
                              echo=click.echo, push_order=push_order,
                              test_fn=lambda m: evaluate(m, test_loader), fmax_mhz=fmax_mhz)
        except StoreError as exc:     # a damaged record in a store a rerun reads
            raise _user_error(str(exc)) from None
    result.final.bundle.save(out / "bundle")
    layers, points = breakeven_frame(dict(result.breakevens))
    write_csv(layers, out / "breakeven.csv")
    write_csv(points, out / "points.csv")
    write_json(out / "plan_before.json", result.plan_before.to_json())
    write_json(out / "plan_after.json", result.plan_after.to_json())
    table = pd.DataFrame(result.table())
    print_table(table, title=f"{model_name}: plan before and after the break-evens "
                             f"({engine} engine, {lanes} lanes, {bits}-bit)")
    total_b = sum(c for _, c in result.cycles_before.values())
    total_a = sum(c for _, c in result.cycles_after.values())
    acc_d, acc_1, acc_2 = (result.first.accuracy_before, result.first.accuracy_after,
                           result.final.accuracy_after)
    split = "validation" if val_fraction > 0 else "test"
    click.echo(f"accuracy ({dataset} {split}, decides): dense {acc_d:.2%}, first plan "
               f"{acc_1:.2%}, after the loop {acc_2:.2%}")
    if val_fraction > 0:
        click.echo(f"accuracy ({dataset} test): first plan {result.test_first:.2%}, after the "
                   f"loop {result.test_final:.2%}")
    click.echo(f"engine cycles per input, whole model: first plan {total_b:,}, after the loop "
               f"{total_a:,} ({total_b / max(1, total_a):.2f}x)")
    time_b, time_a = result.time_us(result.cycles_before), result.time_us(result.cycles_after)
    if time_b is not None:
        click.echo(f"engine time per input at {fmax_mhz[0]:g} MHz sparse / {fmax_mhz[1]:g} MHz "
                   f"dense: first plan {time_b:,.2f} us, after the loop {time_a:,.2f} us "
                   f"({time_b / time_a if time_a else float('inf'):.2f}x)")
    rtl = []
    if check_rtl:
        click.echo(f"checking every final layer once in RTL ({simulator}) ...")
        rtl = check_in_rtl(result.final.bundle, result.cycles_after, lanes, simulator=simulator,
                           seed=seed)
        print_table(pd.DataFrame(rtl), title="final layers in RTL")
    write_json(out / "loop.json", {
        "model": model_name, "dataset": dataset, "engine": engine, "lanes": lanes, "bits": bits,
        "target_sparsity": target, "margin": margin, "tolerance_pp": tolerance,
        "simulator": simulator, "val_fraction": val_fraction, "push_order": push_order,
        "accuracy": {"split": split, "dense": acc_d, "first": acc_1, "final": acc_2},
        "test_accuracy": {"first": result.test_first, "final": result.test_final},
        "tried": list(result.tried), "rejected": result.rejected,
        "decisions": [d.to_json() for d in result.decisions],
        "cycles_before": {k: list(v) for k, v in result.cycles_before.items()},
        "cycles_after": {k: list(v) for k, v in result.cycles_after.items()},
        "total_cycles_before": total_b, "total_cycles_after": total_a,
        "fmax_mhz": list(fmax_mhz) if fmax_mhz else None, "time_us_before": time_b,
        "time_us_after": time_a, "rtl_check": rtl})
    click.echo(f"wrote {out / 'bundle'}, {out / 'breakeven.csv'}, {out / 'loop.json'}")
    if rtl and not all(r["outputs_match"] and r["cycles_match"] for r in rtl):
        click.echo("RTL check FAILED: outputs or cycles differ from the references", err=True)
        raise SystemExit(1)
