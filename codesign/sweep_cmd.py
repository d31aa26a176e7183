"""``codesign sweep``: break-even ratios of every layer, measured in RTL on a Dask cluster.

Layers come from zoo models (``--model``, default: the default CNN ``vggsmall`` and ``lstm``) or
bundles (``--bundle``); engines, lanes and bit widths are lists (``--engine bcr,unstructured
--lanes 4,8 --bits 8``). A zoo layer runs with ``--bits`` weight and activation bits; a bundle
layer keeps its own weight bits (its quantization record) and runs with ``--bits`` activation
bits (an unquantized bundle layer: ``--bits`` for both). Ratios are ``--ratios 0,0.5,0.9`` or ``--grid N`` evenly spaced ones from
0 to ``--top``. Points go to ``--store`` (default ``OUT/points.sqlite``) as they finish, so a
rerun continues where a killed one stopped. ``--scheduler tcp://HOST:PORT`` uses a running Dask
cluster instead of a local one. Bad input (including a scheduler that cannot be reached) is a
:class:`codesign.cli.UserError`: one line on stderr, exit status 2; failed simulations exit 1.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import click

from codesign.options import (
    MAX_LANES,
    OUT_DIR,
    fmax_pair_arg,
    outputs_problem,
    positive_pair,
    whole_number,
)

__all__ = ["sweep", "sweep_groups"]


def _user_error(message: str) -> Exception:
    from codesign.cli import UserError  # imported here: codesign.cli imports this module

    return UserError(" ".join(str(message).split()))


#: Most random masks per ratio, and grid ratios, a sweep takes (each is an RTL run per layer
#: and configuration; 10**8 grid points filled 4.5 GB before the first run).
MAX_SWEEP_SEEDS = 100
MAX_GRID = 1000


def _int_list(text: str, option: str, lo: int, hi: int) -> list[int]:
    out = []
    for part in text.split(","):
        value = whole_number(part)
        if value is None or not lo <= value <= hi:
            raise _user_error(f"{option} must be a comma-separated list of integers from {lo} "
                              f"to {hi}, not {text!r}")
        out.append(value)
    return list(dict.fromkeys(out))


def _ratios(text: str) -> list[float]:
    out = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            v = -1.0
        if not 0.0 <= v <= 1.0:
            raise _user_error(f"--ratios must be comma-separated pruned fractions in [0, 1], "
                              f"not {text!r}")
        out.append(v)
    return list(dict.fromkeys(out))


ENGINE_CHOICES = ("unstructured", "bcr", "pattern")
#: run_sweep's message when no layer of a group runs on the chosen engines.
NO_LAYER = "no layer can run on the chosen engines"


def _parent(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return out


def _none_runnable(groups: list[tuple[list, list]]) -> str | None:
    """Why no layer of ``groups`` can run on its configurations (the first reason, lower-case,
    and how many more), or None when one can."""
    from sim.breakeven import check_engine_layer

    reasons = []
    for entries, configs in groups:
        for model, specs in entries:
            for spec in specs:
                for config in configs:
                    try:
                        check_engine_layer(spec, config)
                        return None
                    except ValueError as exc:
                        reasons.append(f"{model}: {str(exc)[:1].lower()}{str(exc)[1:]}")
    if not reasons:
        return "no layer was chosen"
    more = f" (and {len(reasons) - 1} more like it)" if len(reasons) > 1 else ""
    return reasons[0] + more


def sweep_groups(models: list, bundles: list, engines: list[str], lanes: list[int],
                 bits: list[int], *, block: tuple[int, int] = (8, 16), index_bits: int = 4
                 ) -> list[tuple[list, list]]:
    """The sweeps to run: ``[(entries, configs)]``, each entry ``(model, specs)`` measured on
    every configuration of its group.

    ``models`` holds zoo ``(model, specs)``: their layers run with ``bits`` as weight and
    activation bits. ``bundles`` holds ``(model, specs, layer_bits)`` with ``layer_bits`` mapping
    layer name to its weight bits (``None``: not quantized): each layer runs with its own weight
    bits and ``bits`` as activation bits (an unquantized layer as a zoo layer). Entries with the
    same configurations share a group, in first-seen order.
    """
    from sim.breakeven import EngineConfig

    def configs(weight_bits: int | None) -> tuple:
        return tuple(EngineConfig(e, lanes=p, weight_bits=b if weight_bits is None else
                                  weight_bits, act_bits=b, block=block, index_bits=index_bits)
                     for e in engines for p in lanes for b in bits)

    groups: dict[tuple, list] = {}
    for model, specs in models:
        groups.setdefault(configs(None), []).append((model, list(specs)))
    for model, specs, layer_bits in bundles:
        by_bits: dict[int | None, list] = {}
        for spec in specs:
            by_bits.setdefault(layer_bits.get(spec.name), []).append(spec)
        for wb, part in by_bits.items():
            groups.setdefault(configs(wb), []).append((model, part))
    return [(entries, list(cfgs)) for cfgs, entries in groups.items()]


@click.command()
@click.option("--model", "models", multiple=True,
              help="Zoo model (repeatable). Default: vggsmall and lstm, unless --bundle is given.")
@click.option("--bundle", "bundles", multiple=True, type=click.Path(path_type=Path),
              help="Bundle directory (repeatable).")
@click.option("--layers", default=None, help="Only these layers (comma-separated names).")
@click.option("--engine", "engines", default="unstructured,bcr,pattern", show_default=True,
              help="Sparse engines, comma-separated.")
@click.option("--lanes", default="8", show_default=True, help="Lanes, comma-separated.")
@click.option("--bits", default="8", show_default=True,
              help="Weight and activation bits, comma-separated (bundle layers: activation "
                   "bits; their weights keep each layer's own bits).")
@click.option("--block", default="8x16", show_default=True, help="BCR block ROWSxCOLS.")
@click.option("--index-bits", default=4, show_default=True, type=int,
              help="Unstructured relative-index width.")
@click.option("--ratios", default=None, help="Ratios to sweep, e.g. 0,0.25,0.5,0.75,0.9.")
@click.option("--grid", default=20, show_default=True, type=int,
              help="Without --ratios: this many evenly spaced ratios from 0 to --top.")
@click.option("--top", default=0.95, show_default=True, type=float, help="Largest grid ratio.")
@click.option("--seeds", default=3, show_default=True, type=int, help="Random masks per ratio.")
@click.option("--tol", default=0.01, show_default=True, type=float, help="Bisection tolerance.")
@click.option("--workers", default=None, type=int,
              help="Local Dask worker processes (default: one per core).")
@click.option("--scheduler", default=None, help="Use the Dask cluster at tcp://HOST:PORT.")
@click.option("--simulator", default="verilator", show_default=True,
              type=click.Choice(["verilator", "icarus"]))
@click.option("--chunk", default=64, show_default=True, type=int, help="Most points per task.")
@click.option("--fmax", default=None, help="Fmax of the sparse and dense engines, SPARSE,DENSE, "
              "for the time break-even: each in MHz or a report of `codesign synth`.")
@click.option("--store", "store_path", default=None, type=click.Path(path_type=Path),
              help="Results store (SQLite). Default: OUT/points.sqlite.")
@click.option("--cache", "cache_dir", default=None, type=OUT_DIR,
              help="Simulator build cache shared by the workers (default ./.sim_cache).")
@click.option("--out", required=True, type=OUT_DIR, help="Output folder.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def sweep(models, bundles, layers, engines, lanes, bits, block, index_bits, ratios, grid, top,
          seeds, tol, workers, scheduler, simulator, chunk, fmax, store_path, cache_dir, out,
          progress) -> None:
    """Measure break-even pruning ratios in RTL: layers x ratios x engines, on Dask."""
    from codesign.sweep import SchedulerError, connect
    from sim.breakeven import default_grid

    # a model or bundle given twice is swept once (its layers were run and reported twice)
    models = tuple(dict.fromkeys(models))
    first: dict[Path, Path] = {}
    for b in bundles:
        first.setdefault(Path(b).resolve(), b)
    bundles = tuple(first.values())

    eng = [e.strip() for e in engines.split(",")]
    bad = [e for e in eng if e not in ENGINE_CHOICES]
    if bad or not eng:
        raise _user_error(f"--engine must be a comma-separated list of "
                          f"{', '.join(ENGINE_CHOICES)}, not {engines!r}")
    lane_list = _int_list(lanes, "--lanes", 1, MAX_LANES)
    bit_list = _int_list(bits, "--bits", 2, 16)
    block_pair = positive_pair(block)
    if block_pair is None:
        raise _user_error(f"--block must look like 8x16 (positive), not {block!r}")
    if not 1 <= index_bits <= 16:
        raise _user_error(f"--index-bits must be an integer from 1 to 16, not {index_bits}")
    for name, v, lo, hi in (("--seeds", seeds, 1, MAX_SWEEP_SEEDS), ("--chunk", chunk, 1, None),
                            ("--grid", grid, 2, MAX_GRID)):
        if v < lo or (hi is not None and v > hi):
            allowed = f">= {lo}" if hi is None else f"from {lo} to {hi}"
            raise _user_error(f"{name} must be an integer {allowed}, not {v}")
    if workers is not None and workers < 1:
        raise _user_error(f"--workers must be a positive integer, not {workers}")
    if workers is not None and scheduler is not None:
        raise _user_error("--workers starts a local cluster; it cannot be combined with "
                          "--scheduler")
    if not 0 < tol < 1:
        raise _user_error(f"--tol must be in (0, 1), not {tol}")
    if not 0 < top <= 1:
        raise _user_error(f"--top must be in (0, 1], not {top}")
    ratio_grid = _ratios(ratios) if ratios is not None else list(default_grid(grid, top))
    try:
        fmax_pair = None if fmax is None else fmax_pair_arg(fmax, eng, lane_list, bit_list)
    except ValueError as exc:
        raise _user_error(str(exc)) from None

    stack = contextlib.ExitStack()
    client = None
    if scheduler is not None:  # checked before the (slow) model loading
        try:
            client = stack.enter_context(connect(scheduler))
        except SchedulerError as exc:
            raise _user_error(str(exc)) from None
    with stack:
        _run(chosen_models=models, bundles=bundles, layers=layers, eng=eng, lane_list=lane_list,
             bit_list=bit_list, block=block_pair, index_bits=index_bits,
             ratio_grid=ratio_grid, seeds=seeds, tol=tol, workers=workers, scheduler=scheduler,
             simulator=simulator, chunk=chunk, fmax_pair=fmax_pair, store_path=store_path,
             cache_dir=cache_dir, out=Path(out), progress=progress, client=client)


def _run(*, chosen_models, bundles, layers, eng, lane_list, bit_list, block, index_bits,
         ratio_grid, seeds, tol, workers, scheduler, simulator, chunk, fmax_pair, store_path,
         cache_dir, out, progress, client) -> None:
    from codesign.report import print_table
    from codesign.store import SQLiteStore, StoreError
    from codesign.sweep import (
        DEFAULT_MODELS,
        SweepError,
        SweepResult,
        breakeven_table,
        bundle_layers,
        model_layers,
        run_sweep,
        summary_table,
        write_outputs,
    )
    from ir import Bundle

    models = chosen_models
    try:
        from_bundles: list[tuple[str, list, dict]] = []
        notes: list[str] = []
        for b in bundles:
            name, specs = bundle_layers(b, notes)
            layer_bits = {x.name: (x.quant.bits if x.quant is not None else None)
                          for x in Bundle.load(b).layers}
            from_bundles.append((name, specs, layer_bits))
        if not models and not bundles:
            models = DEFAULT_MODELS
        from_models = [(m, model_layers(m, notes)) for m in models]
    except SweepError as exc:
        raise _user_error(str(exc)) from None
    if layers is not None:
        names = {n.strip() for n in layers.split(",")}
        known = {s.name for _, specs in from_models for s in specs} | {
            s.name for _, specs, _ in from_bundles for s in specs}
        if names - known:
            raise _user_error(f"unknown layer(s) {', '.join(sorted(names - known))}; known: "
                              f"{', '.join(sorted(known))}")
        from_models = [(m, [s for s in specs if s.name in names]) for m, specs in from_models]
        from_bundles = [(m, [s for s in specs if s.name in names], lb)
                        for m, specs, lb in from_bundles]
    try:
        groups = sweep_groups(from_models, from_bundles, eng, lane_list, bit_list, block=block,
                              index_bits=index_bits)
    except ValueError as exc:      # e.g. a bundle layer's bits outside what the engines take
        raise _user_error(str(exc)) from None
    why = _none_runnable(groups)
    if why is not None:      # a user error, found before the store is opened
        raise _user_error(f"{NO_LAYER}: {why}")
    problem = outputs_problem(out, ["breakeven.csv", "points.csv",
                                    *(["points.sqlite"] if store_path is None else [])],
                              folders=["plots"])
    if problem is not None:      # before the RTL runs, not after them
        raise _user_error(f"--out: {problem}")
    try:
        store = SQLiteStore(store_path or out / "points.sqlite")
    except StoreError as exc:
        raise _user_error(str(exc)) from None
    result = SweepResult()
    runnable = 0
    try:
        parts_dir = (tempfile.TemporaryDirectory(prefix=".parts.", dir=_parent(out))
                     if len(groups) > 1 else contextlib.nullcontext(""))
        with parts_dir as parts:
            for i, (entries, configs) in enumerate(groups):
                # one group writes the outputs itself; several are merged below
                dest = out if len(groups) == 1 else Path(parts) / str(i)
                try:
                    got = run_sweep(entries, configs, dest, store=store, grid=ratio_grid,
                                    seeds=seeds, tol=tol, simulator=simulator, workers=workers,
                                    scheduler=scheduler, cache_dir=cache_dir, chunk=chunk,
                                    fmax_mhz=fmax_pair, progress=progress, echo=click.echo,
                                    client=client)
                except SweepError as exc:
                    if len(groups) > 1 and str(exc) == NO_LAYER:
                        continue
                    raise
                runnable += 1
                result.results += got.results
                result.skipped += got.skipped
                result.ran += got.ran
                result.reused += got.reused
                for k, v in got.phases.items():
                    result.phases[k] = result.phases.get(k, 0.0) + v
            if len(groups) > 1:
                if not runnable:
                    raise SweepError(NO_LAYER)
                write_outputs(result.results, out)
    except SweepError as exc:
        click.echo(f"codesign: error: {exc}", err=True)
        sys.exit(1)
    except StoreError as exc:      # a damaged record in a store a rerun reads
        raise _user_error(str(exc)) from None
    finally:
        store.close()
    for note in notes + result.skipped:
        click.echo(f"skipped: {note}")
    table = breakeven_table(result.results)
    print_table(table[["model", "layer", "shape", "engine", "lanes", "weight_bits",
                       "breakeven_ratio", "storage_breakeven", "time_breakeven",
                       "predicted_ratio", "rtl_runs"]], title="break-even ratios (RTL)")
    for m in dict.fromkeys(c.model for c, _ in result.results):
        print_table(summary_table(result.results, m), title=f"summary: {m}")
    click.echo(f"{result.ran} points run, {result.reused} reused from the store; wrote "
               f"{out / 'breakeven.csv'}, {out / 'points.csv'}, {out / 'plots'}")
    click.echo("wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.phases.items()))
