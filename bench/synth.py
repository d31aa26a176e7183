"""Engines synthesised and placed: resources, Fmax, and what Fmax does to the RTL speedups.

Two tables, printed and saved under ``bench/results/``:

``synth.csv``: each engine as ``codesign verilog`` emits it (``--lanes``, 8-bit weights and
activations; the matrix engines sized for a ``--rows`` x ``--cols`` layer, BCR blocks 8x16,
4-bit relative indices; the pattern engine for 16 -> 16 channels on images up to 8x8; the LSTM
cell with input = hidden = 32 on dense gates) on each of ``--devices``: Yosys, then nextpnr in
the four-pin harness (:func:`synth_reports.flow.synth_engine`, ``--seeds`` seeds from
``--first-seed``, Fmax their median, nextpnr's ``--router``) on an iCE40 or ECP5 part; ``xc7`` is
Yosys's 7-series estimate, resources only. An engine that does not fit a part says why in its
row.

``synth_time.csv``: a ``--rows`` x ``--cols`` layer at each sparsity of ``--ratios`` on the BCR
and unstructured engines and dense on the dense engine, all in RTL (Verilator; outputs checked
against ``ir.golden.linear`` and cycles against the cycle models); cycles become microseconds at
each engine's own Fmax on ``--time-device``. Speedup over dense in cycles and in time side by
side, and the break-even sparsity of each (linear interpolation between the grid's points):
below it the sparse engine is slower than the dense one.

Usage: ``python bench/synth.py [--quick] [--lanes 8] [--seeds 3] [--first-seed 1]
[--devices up5k,ecp5-85k,xc7] [--time-device ecp5-85k] [--rows 64 --cols 64] [--router router1]
[--pnr-timeout 1800]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from codesign.atomic import write_csv
from codesign.flow import emit_engine
from codesign.options import (
    MAX_LANES,
    MAX_PLACEMENT_SEED,
    SEED_ARG,
    float_arg,
    int_arg,
    list_arg,
    names_arg,
)
from hw.bcr import bcr_cycles
from hw.dense import dense_cycles
from hw.unstructured import unstructured_cycles
from ir.bcr import encode_bcr
from ir.csr import encode_csc_lanes
from ir.golden import linear
from sim.bcr import exact_bcr_layer, kept_shape, run_bcr_batch
from sim.dense import run_dense_batch
from sim.unstructured import random_sparse_layer, run_unstructured_batch
from synth_reports.flow import TARGET_DEVICES, DoesNotFit, seed_words, synth_engine
from synth_reports.pnr import ROUTERS
from synth_reports.tools import TIMEOUT_S, SynthError

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = (8, 16)
BITS = 8
INDEX_BITS = 4          # relative-index bits of the unstructured engine, as bench/engines.py
RATIOS = tuple(round(0.05 * k, 2) for k in range(1, 20))
QUICK_RATIOS = (0.5, 0.75, 0.9)
DEVICES_DEFAULT = ["up5k", "ecp5-85k", "xc7"]
ENGINES = ("dense", "bcr", "unstructured", "pattern", "lstm")


def engine_specs(rows: int, cols: int) -> list[tuple[str, dict]]:
    """(label, :func:`codesign.flow.emit_engine` arguments) of every engine in the first table."""
    return [
        ("dense", dict(engine="dense", rows=rows, cols=cols)),
        ("bcr", dict(engine="bcr", rows=rows, cols=cols, block=BLOCK)),
        ("unstructured", dict(engine="unstructured", rows=rows, cols=cols,
                              index_bits=INDEX_BITS)),
        ("pattern", dict(engine="pattern", rows=16, cols=16, image=8)),
        ("lstm", dict(engine="lstm", rows=32, cols=32, steps=16)),
    ]


def synth_rows(specs: list[tuple[str, dict]], devices: list[str], lanes: int, seeds: int,
               work: Path, router: str = "router1",
               pnr_timeout_s: float = TIMEOUT_S, first_seed: int = 1) -> list[dict]:
    """One row per engine and device: resources, and Fmax where the part was placed and routed
    (``xc7``: Yosys's estimate of resources only); an engine that does not fit says why."""
    out = []
    for label, spec in specs:
        spec = dict(spec)
        engine = spec.pop("engine")
        rows, cols = spec.pop("rows"), spec.pop("cols")
        folder = work / label
        v, _ = emit_engine(engine, rows, cols, lanes, BITS, BITS, f"{label}_engine", folder,
                           **spec)
        for device in devices:
            row = {"engine": label, "device": device, "rows": rows, "cols": cols,
                   "lanes": lanes, "bits": BITS}
            t0 = time.perf_counter()
            (folder / device).mkdir()
            try:
                rep = synth_engine(v, device, folder / device,
                                   seeds=tuple(range(first_seed, first_seed + seeds)),
                                   router=router,
                                   pnr_timeout_s=pnr_timeout_s)
            except DoesNotFit as exc:
                row["note"] = str(exc).removeprefix(f"{label}_engine ")
                rep = None
            except SynthError as exc:          # a tool failed on this one: say so, go on
                row["note"] = str(exc)
                rep = None
            if rep is not None:
                r = rep.resources
                row.update({"luts": r.luts, "ffs": r.ffs, "carries": r.carries,
                            "brams": r.brams, "dsps": r.dsps, "lutram": r.lutram})
                if rep.runs:
                    fm = [x.fmax_mhz for x in rep.runs]
                    util = rep.runs[0].utilization
                    cell = "ICESTORM_LC" if "ICESTORM_LC" in util else "TRELLIS_COMB"
                    row.update({"harness_use": round(util[cell][0] / util[cell][1], 3),
                                "fmax_mhz": round(rep.fmax_mhz, 2),
                                "fmax_min": round(min(fm), 2), "fmax_max": round(max(fm), 2),
                                "seeds": len(fm), "router": router})
                    if rep.timed_out:
                        row["note"] = rep.seed_text()
            row["synth_s"] = round(time.perf_counter() - t0, 1)
            print(f"  {label} on {device}: "
                  + (f"Fmax {row['fmax_mhz']} MHz" if "fmax_mhz" in row else
                     row.get("note", "resources only")) + f" ({row['synth_s']} s)", flush=True)
            out.append(row)
    return out


def _break_even(ratios: list[float], speedups: list[float]) -> str:
    """The first sparsity where ``speedup`` reaches 1, linearly between grid points, as text:
    ``"0.5701"``, ``"<= 0.05"`` when the first point already reaches it, ``"none (> 0.95)"``
    when no point does."""
    if speedups[0] >= 1:
        return f"<= {ratios[0]:g}"
    for (r0, s0), (r1, s1) in zip(zip(ratios, speedups, strict=True),
                                  zip(ratios[1:], speedups[1:], strict=True), strict=False):
        if s0 < 1 <= s1:
            return f"{r0 + (1 - s0) * (r1 - r0) / (s1 - s0):.4f}"
    return f"none (> {ratios[-1]:g})"


def time_rows(rows: int, cols: int, lanes: int, ratios: tuple[float, ...], fmax: dict,
              seed: int, simulator: str) -> list[dict]:
    """RTL cycles of the layer on the dense, BCR and unstructured engines, with time at Fmax."""
    rng = np.random.default_rng(seed)
    hi = 2 ** (BITS - 1)
    x = rng.integers(-hi + 1, hi, size=(1, cols))
    dense_w = rng.integers(-hi + 1, hi, size=(rows, cols))
    drun = run_dense_batch([(dense_w, x)], lanes, BITS, BITS, simulator, max_rows=rows,
                           max_cols=cols)[0]
    d_cycles = drun.cycles[0]
    d_ok = np.array_equal(drun.outputs, linear(dense_w, x)) and \
        d_cycles == dense_cycles(rows, cols, lanes)
    bjobs = []
    for r in ratios:
        nr, nc = kept_shape(BLOCK, lanes, r)
        qw, mask = exact_bcr_layer(rng, (rows, cols), BLOCK, nr, nc, bits=BITS)
        bjobs.append((qw, mask, x))
    bruns = run_bcr_batch(bjobs, BLOCK, lanes, BITS, BITS, simulator, max_rows=rows,
                          max_cols=cols)
    ujobs = [(random_sparse_layer(rng, (rows, cols), 1.0 - r, bits=BITS), x) for r in ratios]
    uruns = run_unstructured_batch(ujobs, lanes, BITS, BITS, INDEX_BITS, simulator,
                                   max_rows=rows, max_cols=cols)
    out = []
    d_us = d_cycles / fmax["dense"]
    for engine, jobs, runs in (("bcr", bjobs, bruns), ("unstructured", ujobs, uruns)):
        for r, job, run in zip(ratios, jobs, runs, strict=True):
            qw = job[0]
            model = (bcr_cycles(encode_bcr(qw, BLOCK, mask=job[1]), lanes) if engine == "bcr"
                     else unstructured_cycles(encode_csc_lanes(qw, lanes, INDEX_BITS), x[0],
                                              lanes))
            cyc = run.cycles[0]
            us = cyc / fmax[engine]
            out.append({"layer": f"fc{rows}x{cols}", "engine": engine, "target_sparsity": r,
                        "sparsity": round(1 - float((qw != 0).mean()), 4), "rtl_cycles": cyc,
                        "cycles_match": cyc == model,
                        "outputs_match": bool(np.array_equal(run.outputs, linear(qw, x))),
                        "dense_cycles": d_cycles, "dense_ok": d_ok,
                        "fmax_mhz": fmax[engine], "dense_fmax_mhz": fmax["dense"],
                        "us": round(us, 3), "dense_us": round(d_us, 3),
                        "speedup_cycles": round(d_cycles / cyc, 3),
                        "speedup_time": round(d_us / us, 3)})
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="one seed, three sparsities, dense/BCR/unstructured on ecp5-85k only")
    ap.add_argument("--lanes", type=int_arg(1, MAX_LANES), default=8)
    ap.add_argument("--rows", type=int_arg(8, 256), default=64)
    ap.add_argument("--cols", type=int_arg(16, 256), default=64)
    ap.add_argument("--engines", type=names_arg(ENGINES), default=list(ENGINES),
                    help=f"comma-separated engines of the first table (default all: "
                         f"{','.join(ENGINES)}); the time table needs dense, bcr, unstructured")
    ap.add_argument("--devices", type=names_arg(TARGET_DEVICES), default=None,
                    help=f"comma-separated parts (default {','.join(DEVICES_DEFAULT)}; "
                         "--quick: --time-device only)")
    ap.add_argument("--time-device", choices=[d for d in TARGET_DEVICES if d != "xc7"],
                    default="ecp5-85k", help="whose Fmax turns the RTL cycles into time")
    ap.add_argument("--seeds", type=int_arg(1, 20), default=3,
                    help="nextpnr placement seeds per engine (Fmax: their median)")
    ap.add_argument("--first-seed", type=int_arg(0, MAX_PLACEMENT_SEED - 19), default=1,
                    help="the first placement seed: --seeds N runs seeds S..S+N-1")
    ap.add_argument("--router", choices=ROUTERS, default="router1",
                    help="nextpnr's router")
    ap.add_argument("--pnr-timeout", type=int_arg(1, 86400), default=TIMEOUT_S,
                    help="seconds one nextpnr run may take; a seed past it is stopped and "
                         "the next one runs (an engine whose every seed stops: its note says so)")
    ap.add_argument("--ratios", type=list_arg(float_arg(0, 1, high_open=True)),
                    help="sparsities of the time table (default 0.05, 0.10, ..., 0.95)")
    ap.add_argument("--seed", type=SEED_ARG, default=0, help="random layers")
    ap.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    args = ap.parse_args(argv)
    if args.devices is None:
        args.devices = [args.time_device] if args.quick else list(DEVICES_DEFAULT)
    if args.time_device not in args.devices:
        ap.error(f"--time-device {args.time_device} must be one of --devices "
                 f"({','.join(args.devices)})")
    ratios = tuple(sorted(args.ratios)) if args.ratios else \
        (QUICK_RATIOS if args.quick else RATIOS)
    seeds = 1 if args.quick else args.seeds
    RESULTS.mkdir(parents=True, exist_ok=True)
    wanted = [e for e in args.engines
              if not args.quick or e in ("dense", "bcr", "unstructured")]
    specs = [s for s in engine_specs(args.rows, args.cols) if s[0] in wanted]
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        srows = synth_rows(specs, args.devices, args.lanes, seeds, Path(tmp), args.router,
                           args.pnr_timeout, args.first_seed)
    sdf = pd.DataFrame(srows)
    write_csv(sdf, RESULTS / "synth.csv")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(f"\nEngines, {args.lanes} lanes, {BITS}-bit (Yosys; nextpnr Fmax the median of "
              f"{seed_words(range(args.first_seed, args.first_seed + seeds))}; xc7: Yosys estimate, no Fmax):")
        print(sdf.drop(columns=[c for c in ("note",) if c in sdf]).to_string(index=False))
        for _, r in sdf.iterrows():
            if isinstance(r.get("note"), str):
                print(f"  {r.engine} on {r.device}: {r.note}")
    on = sdf[sdf.device == args.time_device]
    fmax = {r.engine: r.fmax_mhz for _, r in on.iterrows() if pd.notna(r.get("fmax_mhz"))}
    if not {"dense", "bcr", "unstructured"} <= fmax.keys():
        print(f"no time table: it needs the dense, BCR and unstructured engines placed on the "
              f"{args.time_device}")
        return 0 if {"dense", "bcr", "unstructured"} - set(wanted) else 1
    tdf = pd.DataFrame(time_rows(args.rows, args.cols, args.lanes, ratios, fmax, args.seed,
                                 args.simulator))
    tdf["simulator"] = args.simulator
    tdf["device"] = args.time_device
    write_csv(tdf, RESULTS / "synth_time.csv")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(f"\n{args.rows}x{args.cols} layer, {args.lanes} lanes, RTL cycles "
              f"({args.simulator}) at each engine's Fmax on the {args.time_device}:")
        print(tdf.drop(columns=["layer", "dense_ok", "simulator", "device"])
              .to_string(index=False))
    ok = bool(tdf.cycles_match.all() and tdf.outputs_match.all() and tdf.dense_ok.all())
    print()
    for engine, g in tdf.groupby("engine"):
        rs = list(g.sparsity)
        bc = _break_even(rs, list(g.speedup_cycles))
        bt = _break_even(rs, list(g.speedup_time))
        print(f"{engine}: break-even sparsity {bc} in cycles, {bt} in time (Fmax "
              f"{fmax[engine]:.2f} vs dense {fmax['dense']:.2f} MHz)")
    print(f"outputs and cycles checked against ir.golden and the cycle models: "
          f"{'all match' if ok else 'MISMATCH'}")
    print(f"saved {RESULTS / 'synth.csv'} and {RESULTS / 'synth_time.csv'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
