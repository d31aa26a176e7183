"""Break-even sweeps on Dask: layers x ratios x engine configurations, resumable.

:func:`run_sweep` plans every RTL point (:mod:`sim.breakeven`), skips the ones already in the
store, and runs the rest on a Dask cluster: a ``LocalCluster`` with one single-threaded worker
process per core by default, or a running cluster given by its scheduler address
(``tcp://HOST:PORT``; for SLURM start one with dask-jobqueue, see the README).

* **Builds.** The points of one engine configuration share one simulator build of the sparse
  engine and one of the dense engine, sized for the largest layer of the sweep
  (:func:`sim.breakeven.build_sizes`); each build is its own task, and the point tasks that use
  it depend on it, so it is built once (the cache directory must be shared by all workers).
  Every build finishes before the first point task is submitted (else a queued build could wait
  behind another configuration's points and push its own into the tail).
* **Tasks.** A task runs up to ``chunk`` points of one layer on one configuration: one simulator
  process for the sparse engine and one for the dense engine.
* **Store.** The client writes each task's points to the store (:class:`codesign.store.
  SQLiteStore`, keyed by a hash of everything that determines a point) as soon as the task
  finishes. A rerun skips stored points; a sweep killed at any moment loses only the tasks in
  flight; a key is stored once.
* **Rounds.** The first round runs the grid and the bisection ratios the cycle models choose; the
  break-even is then computed from the RTL cycles alone, and further rounds run only if the RTL
  asked for ratios the models did not foresee.
* **Outputs** (in ``out``, each written to a temporary name and renamed): ``breakeven.csv`` (one
  row per layer and configuration), ``points.csv`` (every point behind them), one PNG per layer
  (``plots/<model>_<layer>.png``: sparse and dense cycles against the ratio, break-even
  marked) and ``summary_<model>.csv`` (break-even ratio per layer and engine).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from codesign.atomic import atomic_write, write_csv
from sim.breakeven import (
    BreakEven,
    EngineConfig,
    LayerSpec,
    Point,
    breakeven_from_points,
    build_sizes,
    check_engine_layer,
    plan_ratios,
    point_key,
    predicted_breakeven,
    run_points,
    tools_for_key,
)

__all__ = ["SweepError", "SchedulerError", "Combo", "SweepResult", "model_layers", "bundle_layers", "run_sweep",
           "connect", "DEFAULT_MODELS", "write_outputs"]

#: The default sweep: the zoo's default CNN (``pruning.zoo.DEFAULT_CNN``, VGGSmall) and its LSTM.
DEFAULT_MODELS = ("vggsmall", "lstm")


class SweepError(RuntimeError):
    """A sweep that cannot start or finish; the message says why."""


class SchedulerError(SweepError):
    """The Dask scheduler address is malformed or cannot be reached."""


@dataclass(frozen=True)
class Combo:
    """One layer of one model on one engine configuration."""

    model: str
    spec: LayerSpec
    config: EngineConfig


@dataclass
class SweepResult:
    """What :func:`run_sweep` measured and wrote.

    Attributes
    ----------
    results : list of (Combo, BreakEven)
    skipped : list of str
        Layer/engine pairs that cannot run (e.g. the pattern engine on a linear layer).
    reused, ran : int
        Points found in the store, and points run now.
    outputs : list of pathlib.Path
    phases : dict of str to float
        Wall seconds spent in each phase (``plan``, ``cluster``, ``run``, ``outputs``).
    """

    results: list[tuple[Combo, BreakEven]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reused: int = 0
    ran: int = 0
    outputs: list[Path] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- layers

def _specs_of_bundle(bundle: Any, images: dict[str, tuple[int, int]],
                     skipped: list[str] | None) -> list[LayerSpec]:
    specs = []
    for layer in bundle.layers:
        try:
            specs.append(LayerSpec.from_layer(layer, images.get(layer.name)))
        except ValueError as exc:           # e.g. a grouped convolution
            if skipped is not None:
                skipped.append(f"{bundle.model}: {exc}")
    return specs


def _zoo_images(model: Any) -> dict[str, tuple[int, int]]:
    """Input (H, W) of every Conv2d of a zoo model, from one forward pass on zeros."""
    import torch

    images: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Conv2d):
            hooks.append(mod.register_forward_hook(
                lambda m, inp, out, name=name: images.__setitem__(name, tuple(inp[0].shape[-2:]))))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *model.input_shape))
    finally:
        for h in hooks:
            h.remove()
    return {k: (int(v[0]), int(v[1])) for k, v in images.items()}


def model_layers(name: str, skipped: list[str] | None = None) -> list[LayerSpec]:
    """The layers of a zoo model (:mod:`pruning.zoo`) as specs, with each conv's input size.

    Layers no engine can run (grouped convolutions) are left out and described in ``skipped``.

    Raises
    ------
    SweepError
        For an unknown model name (the message lists the known ones).
    """
    from pruning.export import export_model
    from pruning.zoo import build

    try:
        model = build(name)
    except ValueError as exc:
        raise SweepError(str(exc)) from None
    return _specs_of_bundle(export_model(model, name), _zoo_images(model), skipped)


def bundle_layers(path: str | os.PathLike, skipped: list[str] | None = None
                  ) -> tuple[str, list[LayerSpec]]:
    """The model name and layer specs of a bundle. Conv input sizes come from the zoo model of
    the same name when there is one (else the pattern engine skips those layers); layers no
    engine can run are described in ``skipped``."""
    from ir import Bundle, BundleError

    try:
        bundle = Bundle.load(path)
    except (BundleError, OSError) as exc:
        raise SweepError(f"cannot load bundle: {exc}") from None
    images: dict[str, tuple[int, int]] = {}
    from pruning.zoo import MODELS, build

    if bundle.model in MODELS:
        images = _zoo_images(build(bundle.model))
    return bundle.model, _specs_of_bundle(bundle, images, skipped)


# ------------------------------------------------------------------------------------- cluster

#: Dask settings of the local cluster. Its tasks are long waits on simulator processes, and on
#: a machine with one worker per core every core-second of Dask's own background work (the
#: event loop's 20 ms tick, the 0.5 s system monitor and the nannies' 0.1 s memory monitor, the
#: workers' 10 ms stack profiler) is taken from the simulators. Measured with two workers each
#: running 2 s subprocesses for 20 s: all processes of the cluster 2.3-2.7 core-s with Dask's
#: defaults, 0.36 with these (none of the four alone did much).
LOCAL_CLUSTER_CONFIG = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.worker.profile.enabled": False,
}


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None,
            timeout: float = 10.0) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` (``tcp://HOST:PORT``) or to a new
    ``LocalCluster`` of ``workers`` single-threaded worker processes (default: one per core),
    with :data:`LOCAL_CLUSTER_CONFIG` (a running cluster keeps its own configuration).

    Raises
    ------
    SweepError
        When the scheduler cannot be reached or the address is malformed.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if not isinstance(scheduler, str) or "://" not in scheduler or \
                not scheduler.split("://", 1)[1]:
            raise SchedulerError(f"--scheduler must look like tcp://HOST:PORT, not {scheduler!r}")
        try:
            client = Client(scheduler, timeout=timeout)
        except ValueError as exc:
            raise SchedulerError(f"bad Dask scheduler address {scheduler!r}: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); "
                                 "start one with `dask scheduler`, or leave out --scheduler "
                                 "for a local cluster") from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    n = workers or os.cpu_count() or 1
    with dask.config.set(LOCAL_CLUSTER_CONFIG), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster) as client:
        yield client


# ---------------------------------------------------------------------------------------- tasks

def _build_task(config: EngineConfig, sizes: dict[str, dict[str, int]], which: str,
                simulator: str, cache_dir: str) -> str:
    """Emit and build one engine (``which`` = "sparse" or "dense") into the shared cache."""
    from sim.breakeven import prebuild

    return prebuild(config, sizes, which, simulator=simulator, cache_dir=cache_dir)


def _points_task(spec: LayerSpec, config: EngineConfig, requests: list[tuple[float, int]],
                 simulator: str, cache_dir: str, sizes: dict[str, dict[str, int]],
                 key_tools: tuple[tuple[str, str], ...], *builds: str) -> list[dict[str, Any]]:
    points = run_points(spec, config, requests, simulator=simulator, cache_dir=cache_dir,
                        build=sizes, key_tools=key_tools)
    return [p.to_json() for p in points]


# ---------------------------------------------------------------------------------------- sweep

#: A task's fixed cost (two simulator launches of about 0.5 s: Python, cocotb and the bench
#: start in each), in the units of :func:`_task_cost` (one weight written into an engine's
#: memory, about 10 us).
LAUNCH_COST = 100_000


def _split(reqs: list[tuple[float, int]], chunk: int) -> list[list[tuple[float, int]]]:
    """``reqs`` in the fewest parts of at most ``chunk`` points, their sizes as even as can be
    (69 points in chunks of 64 make 35 + 34, not 64 + 5: a balanced tail on the workers)."""
    parts = -(-len(reqs) // chunk)
    size, extra = divmod(len(reqs), parts)
    out, i = [], 0
    for p in range(parts):
        n = size + (p < extra)
        out.append(reqs[i:i + n])
        i += n
    return out


def _task_cost(spec: LayerSpec, points: int) -> int:
    """Dask priority of a task (largest first, for a short tail): its launches plus the weights
    it writes into the sparse and the dense engines' memories, which dominate a point's time."""
    return LAUNCH_COST + points * (spec.numel + 4096)


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("points"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), disable=not enabled)


def run_sweep(models: Sequence[tuple[str, Sequence[LayerSpec]]], configs: Sequence[EngineConfig],
              out: str | os.PathLike, *, store: Any, grid: Sequence[float] | None = None,
              seeds: int = 3, tol: float = 0.01, simulator: str = "verilator",
              workers: int | None = None, scheduler: str | None = None,
              cache_dir: str | os.PathLike | None = None, chunk: int = 64,
              fmax_mhz: tuple[float, float] | None = None, progress: bool = True,
              echo: Callable[[str], None] = print, max_rounds: int = 10,
              client: Any = None) -> SweepResult:
    """Measure the break-even of every layer of ``models`` on every configuration, on Dask.

    Parameters
    ----------
    models : sequence of (str, sequence of LayerSpec)
        Model names and their layers.
    configs : sequence of EngineConfig
    out : path
        Output folder (see the module docstring).
    store : sim.breakeven.Store
        Usually a :class:`codesign.store.SQLiteStore`; points are put in it as tasks finish.
    grid, seeds, tol, simulator, fmax_mhz
        As :func:`sim.breakeven.find_breakeven`.
    workers : int, optional
        Local worker processes (default: one per core); ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running Dask scheduler.
    cache_dir : path, optional
        Simulator cache shared by the workers (default ``./.sim_cache``).
    chunk : int
        Most points per task.
    progress : bool
        Show a progress bar with an ETA.
    echo : callable
        Where to print one-line messages.
    client : distributed.Client, optional
        A connected client to use (then ``workers`` and ``scheduler`` only label the output).

    Returns
    -------
    SweepResult

    Raises
    ------
    SweepError
        For an unreachable scheduler, or tasks that failed (after the others finished and were
        stored).
    """
    from distributed import as_completed, wait

    from sim.runner import check_simulator, default_cache_dir

    check_simulator(simulator)
    if chunk < 1:
        raise SweepError(f"--chunk must be a positive integer, not {chunk}")
    cache = str(Path(cache_dir).resolve() if cache_dir is not None else default_cache_dir())
    result = SweepResult()
    combos: list[Combo] = []
    for model, specs in models:
        for config in configs:
            for spec in specs:
                try:
                    check_engine_layer(spec, config)
                except ValueError as exc:
                    result.skipped.append(f"{model}: {exc}")
                    continue
                combos.append(Combo(model, spec, config))
    if not combos:
        raise SweepError("no layer can run on the chosen engines")
    sizes = {}
    for config in configs:
        specs = [c.spec for c in combos if c.config == config]
        if specs:
            sizes[config] = build_sizes(specs, config)
    with contextlib.ExitStack() as stack:
        # a remote scheduler is checked at once; a local cluster starts only if points must run
        if client is None and scheduler is not None:
            client = stack.enter_context(connect(scheduler))
        t0 = time.perf_counter()
        key_tools = tools_for_key(simulator)
        predicted = {c: predicted_breakeven(c.spec, c.config, seeds=seeds, grid=grid, tol=tol)
                     for c in combos}
        wanted = {c: plan_ratios(c.spec, c.config, grid, tol, seeds) for c in combos}
        _lap(result.phases, "plan", t0)
        measured: dict[Combo, dict[str, Point]] = {c: {} for c in combos}
        done: dict[Combo, BreakEven] = {}
        builds: dict[tuple[EngineConfig, str], Any] = {}
        for _ in range(max_rounds):
            todo: dict[Combo, list[tuple[float, int]]] = {}
            # a point is run once a round however many layers want it (same shape and engine:
            # resnet18's four layer1 convolutions); the others get it under their own name
            owner: dict[str, Combo] = {}
            sharers: dict[str, list[Combo]] = {}
            for c in combos:
                if c in done:
                    continue
                for r in wanted[c]:
                    for s in range(seeds):
                        key = point_key(c.spec, c.config, r, s, simulator, key_tools)
                        if key in measured[c]:
                            continue
                        got = store.get(key)
                        if got is not None:     # the key has no layer name: relabel
                            measured[c][key] = replace(got, layer=c.spec.name)
                            result.reused += 1
                        elif key in owner:
                            sharers.setdefault(key, []).append(c)
                        else:
                            owner[key] = c
                            todo.setdefault(c, []).append((r, s))
            total = sum(len(v) for v in todo.values())
            if total:
                echo(f"{result.reused} points in the store; running {total} points of "
                     f"{len(todo)} layer/engine pairs on "
                     f"{scheduler or f'{workers or os.cpu_count()} local workers'}")
                if client is None:
                    t0 = time.perf_counter()
                    client = stack.enter_context(connect(scheduler, workers))
                    _lap(result.phases, "cluster", t0)
                t0 = time.perf_counter()
                futures = {}
                # every build first, finished before any point task is submitted: a Dask
                # scheduler queues tasks without dependencies (builds) but hands a ready point
                # task to a worker at once, so a build submitted beside point tasks can wait
                # behind all of them and take its own configuration's points into the tail
                for c in todo:
                    for which in ("sparse", "dense"):
                        bkey = (c.config, which)
                        if bkey not in builds:
                            builds[bkey] = client.submit(
                                _build_task, c.config, sizes[c.config], which, simulator,
                                cache, pure=False)
                wait(list(builds.values()))     # a failed build fails its point tasks below
                for c, reqs in todo.items():
                    deps = [builds[(c.config, which)] for which in ("sparse", "dense")]
                    for part in _split(reqs, chunk):
                        f = client.submit(_points_task, c.spec, c.config, part, simulator, cache,
                                          sizes[c.config], key_tools, *deps, pure=False,
                                          priority=_task_cost(c.spec, len(part)))
                        futures[f] = (c, part)
                failures = []
                with _progress(progress) as bar:
                    task = bar.add_task("break-even sweep", total=total)
                    for fut in as_completed(list(futures)):
                        c, part = futures[fut]
                        try:
                            recs = fut.result()
                        except Exception as exc:  # a task's error: keep going, report at the end
                            failures.append(f"{c.model}/{c.spec.name} on {c.config.label}: "
                                            f"{type(exc).__name__}: {exc}")
                            bar.advance(task, len(part))
                            continue
                        pts = [Point.from_json(r) for r in recs]
                        store.put(pts)
                        measured[c].update((p.key, p) for p in pts)
                        for p in pts:
                            for other in sharers.get(p.key, ()):
                                measured[other][p.key] = replace(p, layer=other.spec.name)
                        result.ran += len(pts)
                        bar.advance(task, len(part))
                _lap(result.phases, "run", t0)
                if failures:
                    raise SweepError(f"{len(failures)} task(s) failed (the other points are "
                                     "stored; rerun to retry):\n" + "\n".join(failures))
            pending_any = False
            for c in combos:
                if c in done:
                    continue
                be, pending = breakeven_from_points(
                    measured[c].values(), c.spec, c.config, seeds=seeds, grid=grid, tol=tol,
                    fmax_mhz=fmax_mhz, predicted=predicted[c])
                if be is not None:
                    done[c] = be
                else:
                    wanted[c] = pending
                    pending_any = True
            if not pending_any:
                break
        else:
            raise SweepError(f"no break-even after {max_rounds} rounds of RTL runs")
    result.results = [(c, done[c]) for c in combos]
    t0 = time.perf_counter()
    result.outputs = write_outputs(result.results, Path(out))
    _lap(result.phases, "outputs", t0)
    return result


def _lap(phases: dict[str, float], name: str, since: float) -> None:
    phases[name] = phases.get(name, 0.0) + time.perf_counter() - since


# -------------------------------------------------------------------------------------- outputs

def _fmt(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


def breakeven_table(results: Sequence[tuple[Combo, BreakEven]]) -> pd.DataFrame:
    """One row per layer and configuration (the contents of ``breakeven.csv``)."""
    rows = []
    for c, be in results:
        cfg = c.config
        rows.append({
            "model": c.model, "layer": c.spec.name, "op": c.spec.op,
            "shape": "x".join(map(str, c.spec.shape)),
            "image": "x".join(map(str, c.spec.image)) if c.spec.image else "",
            "engine": cfg.engine, "lanes": cfg.lanes, "weight_bits": cfg.weight_bits,
            "act_bits": cfg.act_bits,
            "block": f"{cfg.block[0]}x{cfg.block[1]}" if cfg.engine == "bcr" else "",
            "index_bits": cfg.index_bits if cfg.engine == "unstructured" else "",
            "library_size": cfg.library_size if cfg.engine == "pattern" else "",
            "breakeven_ratio": _fmt(be.ratio), "storage_breakeven": _fmt(be.storage_ratio),
            "time_breakeven": _fmt(be.time_ratio),
            "fmax_sparse_mhz": be.fmax_mhz[0] if be.fmax_mhz else "",
            "fmax_dense_mhz": be.fmax_mhz[1] if be.fmax_mhz else "",
            "predicted_ratio": _fmt(be.predicted_ratio), "rtl_runs": be.rtl_runs, "points": len(be.points),
            "simulator": be.points[0].simulator if be.points else ""})
    return pd.DataFrame(rows)


def points_table(results: Sequence[tuple[Combo, BreakEven]]) -> pd.DataFrame:
    """Every point behind the break-evens (the contents of ``points.csv``)."""
    rows = []
    for c, be in results:
        for p in be.points:
            rec = p.to_json()
            rec["tools"] = "; ".join(f"{a} {b}" for a, b in p.tools)
            rec["shape"] = "x".join(map(str, p.shape))
            for k in ("block", "image"):
                rec[k] = "x".join(map(str, rec[k])) if rec[k] else ""
            rows.append({"model": c.model, **rec})
    df = pd.DataFrame(rows)
    for col in ("index_bits", "library_size"):
        if col in df:
            df[col] = df[col].astype("Int64")
    return df


def _plot_layer(path: Path, model: str, layer: str,
                entries: Sequence[tuple[Combo, BreakEven]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    dense_done = set()
    for i, (c, be) in enumerate(entries):
        col = colors[i % len(colors)]
        by: dict[float, list[Point]] = {}
        for p in be.points:
            by.setdefault(p.ratio, []).append(p)
        rs = sorted(by)
        ax.scatter([p.ratio for p in be.points], [p.sparse_cycles for p in be.points], s=8,
                   color=col, alpha=0.5)
        ax.plot(rs, [max(p.sparse_cycles for p in by[r]) for r in rs], color=col,
                label=f"{c.config.label} (worst seed)")
        dkey = (c.config.lanes, c.config.weight_bits, c.config.act_bits)
        if dkey not in dense_done:
            dense_done.add(dkey)
            ax.plot(rs, [max(p.dense_cycles for p in by[r]) for r in rs], color="black",
                    linestyle="--", label=f"dense p{dkey[0]} w{dkey[1]}a{dkey[2]}")
        if be.ratio is not None:
            ax.axvline(be.ratio, color=col, linestyle=":")
            ax.annotate(f"{be.ratio:.3f}", (be.ratio, ax.get_ylim()[1]), color=col,
                        fontsize=8, ha="left", va="top", rotation=90)
    ax.set_yscale("log")
    ax.set_xlabel("pruning ratio (pruned fraction)")
    ax.set_ylabel("cycles per layer (RTL)")
    ax.set_title(f"{model} {layer}: sparse vs dense cycles, break-even dotted")
    ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.93, bottom=0.11)  # tight_layout: 1.5x the time
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)


def _safe(name: str) -> str:
    from hw.emit import sanitize_identifier

    return sanitize_identifier(name)


def summary_table(results: Sequence[tuple[Combo, BreakEven]], model: str) -> pd.DataFrame:
    """Per layer of ``model``: its shape and the break-even ratios on each configuration (cycles,
    storage, and time when the sweep was given the engines' Fmax)."""
    rows: dict[str, dict[str, Any]] = {}
    for c, be in results:
        if c.model != model:
            continue
        row = rows.setdefault(c.spec.name, {"layer": c.spec.name,
                                             "shape": "x".join(map(str, c.spec.shape))})
        row[c.config.label] = "-" if be.ratio is None else f"{be.ratio:.3f}"
        row[f"{c.config.label} storage"] = ("-" if be.storage_ratio is None
                                            else f"{be.storage_ratio:.3f}")
        if be.fmax_mhz is not None:
            row[f"{c.config.label} time"] = ("-" if be.time_ratio is None
                                             else f"{be.time_ratio:.3f}")
    return pd.DataFrame(list(rows.values())).fillna("n/a")


def write_outputs(results: Sequence[tuple[Combo, BreakEven]], out: Path) -> list[Path]:
    """Write ``breakeven.csv``, ``points.csv``, ``summary_<model>.csv`` and one PNG per layer
    (``plots/<model>_<layer>.png``; names sanitised, a colliding one suffixed ``_2``, ...)."""
    out = Path(out)
    written = []
    table = breakeven_table(results)
    written.append(write_csv(table, out / "breakeven.csv"))
    pts = points_table(results)
    written.append(write_csv(pts, out / "points.csv"))
    models = list(dict.fromkeys(c.model for c, _ in results))
    stems = _distinct([f"summary_{_safe(m)}" for m in models])
    for model, stem in zip(models, stems, strict=True):
        written.append(write_csv(summary_table(results, model), out / f"{stem}.csv"))
    pairs = list(dict.fromkeys((c.model, c.spec.name) for c, _ in results))
    stems = _distinct([f"{_safe(model)}_{_safe(layer)}" for model, layer in pairs])
    for (model, layer), stem in zip(pairs, stems, strict=True):
        entries = [(c, be) for c, be in results if c.model == model and c.spec.name == layer]
        path = out / "plots" / f"{stem}.png"
        _plot_layer(path, model, layer, entries)
        written.append(path)
    return written


def _distinct(stems: list[str]) -> list[str]:
    """``stems`` with a later repeat given the first free ``_2``, ``_3``, ... suffix: sanitised
    names can collide (models ``a.b`` and ``a_b``), and one file must not replace another."""
    taken, out = set(stems), []
    for stem in stems:
        if stem in out:
            k = 2
            while f"{stem}_{k}" in taken:
                k += 1
            stem = f"{stem}_{k}"
            taken.add(stem)
        out.append(stem)
    return out

