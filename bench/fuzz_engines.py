"""Fuzz the dense, BCR and unstructured engines: many random layers per engine in RTL.

Each engine runs ``--layers`` random layers (default 1,000) in ONE simulator process (its build is
the one of its test file, so the cache is shared with the tests): dense lanes=3, 16/12 bits,
20x40; BCR lanes=4, block 6x5, 16/12 bits, 40x32; unstructured lanes=4, 16/12 bits, 2-bit
relative indices, 40x32. Layers have random shapes up to the build's (awkward ones included),
densities (exactly 0 and 1 included), weight and activation widths up to the build's, extreme
and all-minimum weights, and activations that are uniform, all zero, extreme or partly zero, with
1 to 3 vectors per layer. Every layer is checked against ``ir.golden.linear`` (outputs) and the
engine's cycle model (cycles).

Printed per engine and saved to ``bench/results/fuzz_engines.csv``: layers, vectors, layers with
mismatched outputs, layers with mismatched cycles, wall time (generation, build and simulation).
Exits 1 on any mismatch, listing the first mismatching layers.

Usage: ``python bench/fuzz_engines.py [--layers 1000] [--simulator verilator] [--seed 0]
[--engines dense,bcr,unstructured]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hw.bcr import bcr_cycles
from hw.dense import dense_cycles
from hw.unstructured import unstructured_cycles
from ir.bcr import encode_bcr
from ir.csr import encode_csc_lanes
from ir.golden import linear
from sim.bcr import exact_bcr_layer, random_bcr_layer, run_bcr_batch
from sim.dense import run_dense_batch
from sim.unstructured import random_sparse_layer, run_unstructured_batch

RESULTS = Path(__file__).resolve().parent / "results"
ENGINES = ("dense", "bcr", "unstructured")

DENSE = dict(lanes=3, weight_bits=16, act_bits=12, max_rows=20, max_cols=40)
BCR = dict(lanes=4, block=(6, 5), weight_bits=16, act_bits=12, max_rows=40, max_cols=32)
UNSTRUCTURED = dict(lanes=4, weight_bits=16, act_bits=12, index_bits=2, max_rows=40, max_cols=32)


def _dim(rng, maximum):
    """1, the maximum or uniform in [1, maximum] (20% / 10% / 70%)."""
    u = rng.random()
    return 1 if u < 0.2 * 0.5 else maximum if u < 0.2 else int(rng.integers(1, maximum + 1))


def _rate(rng):
    """Exactly 0 (10%), exactly 1 (10%) or uniform."""
    u = rng.random()
    return 0.0 if u < 0.1 else 1.0 if u < 0.2 else float(rng.random())


def _bits(rng, build_bits):
    return int(rng.integers(2, build_bits + 1))


def _activations(rng, cols, build_bits):
    batch = int(rng.integers(1, 4))
    kind = rng.choice(["uniform", "zeros", "extremes", "min", "sparse"], p=[.4, .1, .15, .05, .3])
    blo, bhi = -(1 << (build_bits - 1)), (1 << (build_bits - 1)) - 1
    if kind == "zeros":
        return np.zeros((batch, cols), dtype=np.int64), kind
    if kind == "extremes":
        return rng.choice([blo, bhi], (batch, cols)).astype(np.int64), kind
    if kind == "min":
        return np.full((batch, cols), blo, dtype=np.int64), kind
    bits = _bits(rng, build_bits)
    x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (batch, cols))
    if kind == "sparse":
        x[rng.random((batch, cols)) < rng.random()] = 0
    return x.astype(np.int64), f"{kind} {bits}b"


def _dense_layer(rng):
    p = DENSE
    shape = (_dim(rng, p["max_rows"]), _dim(rng, p["max_cols"]))
    density = _rate(rng)
    kind = rng.choice(["uniform", "extremes", "min"], p=[.8, .15, .05])
    blo, bhi = -(1 << (p["weight_bits"] - 1)), (1 << (p["weight_bits"] - 1)) - 1
    if kind == "extremes":
        w, bits = rng.choice([blo, bhi], shape), p["weight_bits"]
    elif kind == "min":
        w, bits = np.full(shape, blo), p["weight_bits"]
    else:
        bits = _bits(rng, p["weight_bits"])
        w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), shape)
    w = np.where(rng.random(shape) < density, w, 0).astype(np.int64)
    x, xk = _activations(rng, shape[1], p["act_bits"])
    return f"{shape} density {density:.2f} w {kind} {bits}b, x {xk} x{len(x)}", w, x


def _bcr_layer(rng):
    p = BCR
    (br, bc) = p["block"]
    shape = (_dim(rng, p["max_rows"]), _dim(rng, p["max_cols"]))
    bits = _bits(rng, p["weight_bits"])
    if rng.random() < 0.25:
        kr, kc = int(rng.integers(1, br + 1)), int(rng.integers(1, bc + 1))
        w, mask = exact_bcr_layer(rng, shape, (br, bc), kr, kc, bits=bits)
        desc = f"exact {kr}x{kc} per block"
    else:
        rk, ck = _rate(rng), _rate(rng)
        full = bool(rng.random() < 0.15)
        w, mask = random_bcr_layer(rng, shape, (br, bc), rk, ck, bits=bits, full=full)
        desc = f"keep {rk:.2f}/{ck:.2f}{' extremes' if full else ''}"
    x, xk = _activations(rng, shape[1], p["act_bits"])
    return f"{shape} {desc} {bits}b, x {xk} x{len(x)}", w, mask, x


def _unstructured_layer(rng):
    p = UNSTRUCTURED
    shape = (_dim(rng, p["max_rows"]), _dim(rng, p["max_cols"]))
    density = _rate(rng)
    full = bool(rng.random() < 0.15)
    bits = _bits(rng, p["weight_bits"])
    w = random_sparse_layer(rng, shape, density, bits=bits, full=full)
    x, xk = _activations(rng, shape[1], p["act_bits"])
    return (f"{shape} density {density:.2f}{' extremes' if full else ''} {bits}b, "
            f"x {xk} x{len(x)}"), w, x


def fuzz(engine: str, layers: int, simulator: str, seed: int) -> dict:
    """Run ``layers`` random layers on ``engine`` in one simulator process; return the row."""
    rng = np.random.default_rng([seed, ENGINES.index(engine)])
    t0 = time.perf_counter()
    if engine == "dense":
        p = DENSE
        cases = [_dense_layer(rng) for _ in range(layers)]
        runs = run_dense_batch([(w, x) for _, w, x in cases], p["lanes"], p["weight_bits"],
                               p["act_bits"], simulator, p["max_rows"], p["max_cols"])
        models = [[dense_cycles(*w.shape, p["lanes"])] * len(x) for _, w, x in cases]
        triples = [(d, w, x) for d, w, x in cases]
    elif engine == "bcr":
        p = BCR
        cases = [_bcr_layer(rng) for _ in range(layers)]
        runs = run_bcr_batch([(w, m, x) for _, w, m, x in cases], p["block"], p["lanes"],
                             p["weight_bits"], p["act_bits"], simulator, p["max_rows"],
                             p["max_cols"])
        models = [[bcr_cycles(encode_bcr(w, p["block"], m), p["lanes"])] * len(x)
                  for _, w, m, x in cases]
        triples = [(d, w, x) for d, w, _, x in cases]
    else:
        p = UNSTRUCTURED
        cases = [_unstructured_layer(rng) for _ in range(layers)]
        runs = run_unstructured_batch([(w, x) for _, w, x in cases], p["lanes"],
                                      p["weight_bits"], p["act_bits"], p["index_bits"],
                                      simulator, p["max_rows"], p["max_cols"])
        models = []
        for _, w, x in cases:
            csc = encode_csc_lanes(w, p["lanes"], p["index_bits"])
            models.append([unstructured_cycles(csc, v, p["lanes"]) for v in x])
        triples = cases
    bad_out, bad_cyc, failures = 0, 0, []
    for k, (run, model, (desc, w, x)) in enumerate(zip(runs, models, triples, strict=True)):
        expected = linear(w, x, weight_bits=p["weight_bits"], act_bits=p["act_bits"])
        out_ok = np.array_equal(run.outputs, expected)
        cyc_ok = run.cycles == model
        bad_out += not out_ok
        bad_cyc += not cyc_ok
        if not (out_ok and cyc_ok):
            failures.append(f"  {engine} layer {k} [{desc}]:"
                            + ("" if out_ok else " outputs differ")
                            + ("" if cyc_ok else f" cycles {run.cycles} != model {model}"))
    wall = time.perf_counter() - t0
    return dict(engine=engine, simulator=simulator, seed=seed, layers=len(cases),
                vectors=sum(len(x) for _, _, x in triples),
                simulated_cycles=sum(sum(r.cycles) for r in runs),
                mismatched_outputs=bad_out, mismatched_cycles=bad_cyc,
                wall_s=round(wall, 2), failures=failures)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=1000, help="random layers per engine")
    ap.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engines", default=",".join(ENGINES),
                    help="comma-separated subset of " + ", ".join(ENGINES))
    args = ap.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        ap.error(f"unknown engines {unknown}; choose from {', '.join(ENGINES)}")
    if args.layers < 1:
        ap.error("--layers must be at least 1")

    rows = []
    print(f"{'engine':<13}{'layers':>7}{'vectors':>9}{'bad outputs':>13}{'bad cycles':>12}"
          f"{'wall s':>9}", flush=True)
    for engine in engines:
        row = fuzz(engine, args.layers, args.simulator, args.seed)
        rows.append(row)
        print(f"{engine:<13}{row['layers']:>7}{row['vectors']:>9}{row['mismatched_outputs']:>13}"
              f"{row['mismatched_cycles']:>12}{row['wall_s']:>9.1f}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "fuzz_engines.csv"
    pd.DataFrame([{k: v for k, v in r.items() if k != "failures"} for r in rows]).to_csv(
        out, index=False)
    print(f"saved {out}")
    failures = [f for r in rows for f in r["failures"]]
    if failures:
        print(f"{len(failures)} mismatching layers (first 20):")
        print("\n".join(failures[:20]))
        return 1
    print("no mismatches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
