"""The full break-even sweep of the default CNN (VGGSmall) and the LSTM on 1 and 2 Dask workers.

Every layer of ``vggsmall`` (the zoo's default CNN, :data:`pruning.zoo.DEFAULT_CNN`) and ``lstm``
on the unstructured, BCR and pattern engines (pattern: 3x3 convolutions only), 8 lanes, 8-bit
weights and activations, ``--grid`` ratios (default 20: 0.00 to 0.95) plus the bisection ratios,
``--seeds`` masks per ratio, all in Verilator. The simulator builds are made first (timed apart,
as a warm cache is the normal case); each timed sweep then starts from an empty store on a fresh
``LocalCluster``. Both sweeps must give the same break-even table. Prints wall time and speedup,
saves ``bench/results/sweep.csv`` and the break-even table ``bench/results/sweep_breakeven.csv``.

Targets (issue 5): <= 10 minutes with 2 workers; >= 1.8x from one worker to two. The machine's
load (``os.getloadavg``) is printed with the numbers. On a shared virtual machine the speed of
the same sweep drifts by 10-20% within minutes, so ``--repeats R`` times every worker count R
times, alternating the order (1, 2, then 2, 1, ...) so that a drift hits both counts alike, and
the speedup is taken from the median wall times (each repeat's own ratio is printed too). The
cycle-model cache is cleared before each timed sweep, so every sweep pays its own planning.

Usage: ``python bench/sweep.py [--grid 20] [--seeds 3] [--workers 1,2] [--chunk 64] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from codesign.atomic import write_csv
from codesign.options import folder_problem, int_arg, list_arg
from codesign.store import SQLiteStore
from codesign.sweep import DEFAULT_MODELS, breakeven_table, connect, model_layers, run_sweep
from sim.breakeven import (
    EngineConfig,
    _model_at,
    build_sizes,
    check_engine_layer,
    default_grid,
    prebuild,
)

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int_arg(2), default=20, help="grid ratios per layer (0 to 0.95)")
    ap.add_argument("--seeds", type=int_arg(1), default=3)
    ap.add_argument("--workers", type=list_arg(int_arg(1)), default="1,2",
                    help="worker counts to time")
    ap.add_argument("--cache", default=None, help="simulator cache (default ./.sim_cache)")
    ap.add_argument("--chunk", type=int_arg(1), default=64, help="most points per Dask task")
    ap.add_argument("--repeats", type=int_arg(1), default=3,
                    help="timed sweeps per worker count, in alternating order")
    args = ap.parse_args(argv)
    counts = args.workers
    cache = Path(args.cache or ".sim_cache").resolve()
    problem = folder_problem(cache)
    if problem is not None:
        ap.error(f"--cache: {problem}")
    models = [(m, model_layers(m)) for m in DEFAULT_MODELS]
    configs = [EngineConfig(e) for e in ("unstructured", "bcr", "pattern")]
    grid = default_grid(args.grid)

    t0 = time.perf_counter()
    builds = []
    for cfg in configs:
        specs = []
        for _, layer_specs in models:
            for s in layer_specs:
                try:
                    check_engine_layer(s, cfg)
                    specs.append(s)
                except ValueError:
                    pass
        sizes = build_sizes(specs, cfg)
        builds += [(cfg, sizes, "sparse"), (cfg, sizes, "dense")]
    with connect(None, max(counts)) as client:
        client.gather([client.submit(prebuild, cfg, sizes, which, simulator="verilator",
                                     cache_dir=str(cache), pure=False)
                       for cfg, sizes, which in builds])
    build_s = time.perf_counter() - t0
    print(f"builds: {len(builds)} (sparse and dense per engine) in {build_s:.1f} s, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    rows, tables = [], []
    for rep in range(args.repeats):
        for n in (counts if rep % 2 == 0 else counts[::-1]):
            _model_at.cache_clear()          # every sweep plans from scratch
            work = Path(tempfile.mkdtemp(prefix=f"sweep-bench-{n}-"))
            try:
                load0 = os.getloadavg()[0]
                t = time.perf_counter()
                with SQLiteStore(work / "points.sqlite") as store:
                    res = run_sweep(models, configs, work / "out", store=store, grid=grid,
                                    seeds=args.seeds, workers=n, cache_dir=cache,
                                    progress=False, chunk=args.chunk,
                                    echo=lambda s: print(s, flush=True))
                wall = time.perf_counter() - t
                tables.append(breakeven_table(res.results))
                rows.append({"repeat": rep, "workers": n, "layer_engine_pairs": len(res.results),
                             "points": res.ran, "rtl_runs": 2 * res.ran,
                             "ratios_per_pair_min": min(len({p.ratio for p in be.points})
                                                        for _, be in res.results),
                             "wall_s": round(wall, 1), "load_avg_start": round(load0, 2),
                             "load_avg_end": round(os.getloadavg()[0], 2)})
                rows[-1].update({f"{k}_s": round(v, 1) for k, v in res.phases.items()})
                print(f"repeat {rep}, {n} worker(s): {res.ran} points in {wall:.1f} s ("
                      + ", ".join(f"{k} {v:.1f} s" for k, v in res.phases.items()) + ")",
                      flush=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    df = pd.DataFrame(rows)
    df["builds_s"] = round(build_s, 1)
    # speedups over the fewest workers, whatever order they ran in: per repeat and of medians
    base_n = min(counts)
    base = df[df.workers == base_n].set_index("repeat").wall_s
    df["speedup_in_repeat"] = (df.repeat.map(base) / df.wall_s).round(2)
    med = df.groupby("workers").wall_s.median()
    summary = pd.DataFrame({"workers": med.index, "runs": df.groupby("workers").size().values,
                            "median_wall_s": med.values.round(1),
                            "min_wall_s": df.groupby("workers").wall_s.min().values,
                            "max_wall_s": df.groupby("workers").wall_s.max().values,
                            "speedup_of_medians": (med[base_n] / med).values.round(2)})
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "sweep.csv"
    write_csv(df, out)
    write_csv(summary, RESULTS / "sweep_summary.csv")
    first = tables[0]
    write_csv(first, RESULTS / "sweep_breakeven.csv")
    same = all(t.drop(columns=["rtl_runs", "points"]).equals(
        first.drop(columns=["rtl_runs", "points"])) for t in tables)
    print(df.to_string(index=False))
    print(summary.to_string(index=False))
    print(first[["model", "layer", "shape", "engine", "breakeven_ratio", "storage_breakeven",
                 "predicted_ratio", "rtl_runs"]].to_string(index=False))
    print(f"same break-evens with every worker count: {same}")
    print(f"saved {out} and {RESULTS / 'sweep_summary.csv'}")
    print(f"reproduce: python bench/sweep.py {' '.join(argv)}".rstrip())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
