"""Fuzz every engine: many random layers per engine in RTL.

Each engine runs ``--layers`` random layers (default 1,000) in ONE simulator process (its build is
the one of its test file, so the cache is shared with the tests): dense lanes=3, 16/12 bits,
20x40; BCR lanes=4, block 6x5, 16/12 bits, 40x32; unstructured lanes=4, 16/12 bits, 2-bit
relative indices, 40x32. Layers have random shapes up to the build's (awkward ones included),
densities (exactly 0 and 1 included), weight and activation widths up to the build's, extreme
and all-minimum weights, and activations that are uniform, all zero, extreme or partly zero, with
1 to 3 vectors per layer. Every layer is checked against ``ir.golden.linear`` (outputs) and the
engine's cycle model (cycles).

The pattern engine (lanes=3, 12/10 bits, 8 patterns of 4, up to 10 filters x 6 channels, 11x9
inputs) runs random 3x3 convolutions (a random library per layer, random kernel keep rate,
stride 1/2, padding 0/1) checked against ``ir.golden.conv2d`` and ``pattern_cycles``. The RNN
cells run random sequences (random input/hidden sizes and lengths up to the build's, random
state, biases or none, extreme values) checked step by step against ``ir.golden.lstm_step`` /
``gru_step`` and the cycle models: ``lstm``/``gru`` on dense gates (8 lanes, a 5/8-bit config,
up to 6 inputs, 6 hidden, 3 steps), ``lstm_bcr``/``gru_bcr`` on BCR gates (3 lanes, block 4x6,
8-bit config, up to 9 inputs, 7 hidden, 3 steps) with BCR-pruned weights (random keep rates,
exactly 0 and 1 included, or exactly kr x kc per block).

Printed per engine and saved to ``bench/results/fuzz_engines.csv``: layers, vectors, layers with
mismatched outputs, layers with mismatched cycles, wall time (generation, build and simulation).
Exits 1 on any mismatch, listing the first mismatching layers.

Usage: ``python bench/fuzz_engines.py [--layers 1000] [--simulator verilator] [--seed 0]
[--engines dense,bcr,unstructured,pattern,lstm,gru,lstm_bcr,gru_bcr]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from codesign.atomic import write_csv
from codesign.options import SEED_ARG, int_arg, names_arg
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
ENGINES = ("dense", "bcr", "unstructured", "pattern", "lstm", "gru", "lstm_bcr", "gru_bcr")

DENSE = dict(lanes=3, weight_bits=16, act_bits=12, max_rows=20, max_cols=40)
BCR = dict(lanes=4, block=(6, 5), weight_bits=16, act_bits=12, max_rows=40, max_cols=32)
UNSTRUCTURED = dict(lanes=4, weight_bits=16, act_bits=12, index_bits=2, max_rows=40, max_cols=32)
PATTERN = dict(lanes=3, weight_bits=12, act_bits=10, library_size=8, max_channels=6,
               max_filters=10, max_height=11, max_width=9)
#: RNN builds (those of tests/test_sim_rnn.py): dense gates with its "small" config, BCR gates
#: with its 8-bit config.
RNN_DENSE = dict(lanes=8, max_input=6, max_hidden=6, max_steps=3)
RNN_BCR = dict(lanes=3, max_input=9, max_hidden=7, max_steps=3, block=(4, 6))


def rnn_configs():
    """The (dense-gate, BCR-gate) fixed-point configs of the RNN fuzz builds."""
    from ir.golden import RNNQuantConfig

    small = RNNQuantConfig(multiplier=9000, shift=16, weight_bits=5, act_bits=8, act_frac=7,
                           gate_bits=3, lut_index_bits=6, lut_frac=4, cell_bits=9, cell_frac=2)
    return small, RNNQuantConfig.from_scales(0.02, 2**-6, lut_index_bits=8)


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


def _pattern_layer(rng):
    from ir.pattern import candidate_patterns
    from sim.pattern import random_pattern_layer

    p = PATTERN
    lib = candidate_patterns(4)[rng.choice(56, p["library_size"], replace=False)]
    o, c = _dim(rng, p["max_filters"]), _dim(rng, p["max_channels"])
    h, w = _dim(rng, p["max_height"]), _dim(rng, p["max_width"])
    stride = int(rng.integers(1, 3))
    pad = 0 if min(h, w) >= 3 and rng.random() < 0.4 else 1
    keep, full = _rate(rng), bool(rng.random() < 0.15)
    bits = p["weight_bits"] if full else _bits(rng, p["weight_bits"])
    qw, mask = random_pattern_layer(rng, (o, c), lib, keep, bits=bits, full=full)
    x, xk = _activations(rng, c * h * w, p["act_bits"])
    return (f"({o},{c},{h},{w}) s{stride} p{pad} keep {keep:.2f}{' extremes' if full else ''} "
            f"{bits}b, x {xk}"), (qw, mask, lib, x[0].reshape(c, h, w), stride, pad)


def _fuzz_pattern(rng, layers: int, simulator: str) -> tuple[list, list, list]:
    from hw.pattern import pattern_cycles
    from ir.golden import conv2d
    from ir.pattern import encode_pattern
    from sim.pattern import out_size, run_pattern_batch

    p = PATTERN
    cases = [_pattern_layer(rng) for _ in range(layers)]
    runs = run_pattern_batch([j for _, j in cases], p["lanes"], p["weight_bits"], p["act_bits"],
                             simulator, library_size=p["library_size"],
                             max_channels=p["max_channels"], max_filters=p["max_filters"],
                             max_height=p["max_height"], max_width=p["max_width"])
    bad = []
    for k, (run, (_, (w, mask, lib, x, s, pad))) in enumerate(zip(runs, cases, strict=True)):
        want = conv2d(w, x, stride=s, padding=pad, weight_bits=p["weight_bits"],
                      act_bits=p["act_bits"])
        ho, wo = out_size(x.shape[1], s, pad), out_size(x.shape[2], s, pad)
        model = pattern_cycles(encode_pattern(w, lib, mask), (ho, wo), p["lanes"])
        out_ok, cyc_ok = bool(np.array_equal(run.outputs, want)), run.cycles == model
        if not (out_ok and cyc_ok):
            bad.append((k, out_ok, cyc_ok))
    return [d for d, _ in cases], runs, bad


def rnn_case(rng, cell: str, gates: str):
    """One random RNN sequence for the fuzz builds: (description, job tuple)."""
    from sim.rnn import bcr_pruned, random_gru_job, random_job

    b = RNN_BCR if gates == "bcr" else RNN_DENSE
    cfg = rnn_configs()[gates == "bcr"]
    shape = (_dim(rng, b["max_input"]), _dim(rng, b["max_hidden"]), _dim(rng, b["max_steps"]))
    bias, extreme = bool(rng.random() < 0.7), bool(rng.random() < 0.15)
    draw = random_job if cell == "lstm" else random_gru_job
    job = draw(rng, cfg, *shape, bias=bias, extreme=extreme)
    desc = f"I,H,T {shape}{'' if bias else ' no bias'}{' extremes' if extreme else ''}"
    if gates == "bcr":
        br, bc = b["block"]
        if rng.random() < 0.25:
            kr, kc = int(rng.integers(1, br + 1)), int(rng.integers(1, bc + 1))
            job = bcr_pruned(rng, job, b["block"], 0, 0, bits=cfg.weight_bits, exact=(kr, kc))
            desc += f" exact {kr}x{kc} per block"
        else:
            rk, ck = _rate(rng), _rate(rng)
            job = bcr_pruned(rng, job, b["block"], rk, ck, bits=cfg.weight_bits)
            desc += f" keep {rk:.2f}/{ck:.2f}"
    return desc, job


def _fuzz_rnn(engine: str, rng, layers: int, simulator: str) -> tuple[list, list, list]:
    """(descriptions, runs, bad (index, outputs_ok, cycles_ok)) of ``layers`` sequences."""
    from sim.rnn import GRUJob, LSTMJob, rnn_mismatches, run_gru_batch, run_lstm_batch

    cell, _, kind = engine.partition("_")
    gates = kind or "dense"
    b = RNN_BCR if gates == "bcr" else RNN_DENSE
    cfg = rnn_configs()[gates == "bcr"]
    cases = [rnn_case(rng, cell, gates) for _ in range(layers)]
    job_type, run_batch = (LSTMJob, run_lstm_batch) if cell == "lstm" else (GRUJob,
                                                                            run_gru_batch)
    kw = {"gates": "bcr", "block": b["block"]} if gates == "bcr" else {}
    runs = run_batch([job_type(*j) for _, j in cases], cfg, b["lanes"], simulator,
                     b["max_input"], b["max_hidden"], b["max_steps"], **kw)
    bad = rnn_mismatches(cell, [j for _, j in cases], runs, cfg, b["lanes"], gates=gates,
                         block=b.get("block"))
    return [d for d, _ in cases], runs, bad


def fuzz(engine: str, layers: int, simulator: str, seed: int) -> dict:
    """Run ``layers`` random layers on ``engine`` in one simulator process; return the row."""
    rng = np.random.default_rng([seed, ENGINES.index(engine)])
    t0 = time.perf_counter()
    if engine in ("pattern", "lstm", "gru", "lstm_bcr", "gru_bcr"):
        if engine == "pattern":
            descs, runs, bad = _fuzz_pattern(rng, layers, simulator)
            cycles = [r.cycles for r in runs]
        else:
            descs, runs, bad = _fuzz_rnn(engine, rng, layers, simulator)
            cycles = [r.cycles for r in runs]
        failures = [f"  {engine} layer {k} [{descs[k]}]:" + ("" if o else " outputs differ")
                    + ("" if c else " cycles differ from the model") for k, o, c in bad]
        return dict(engine=engine, simulator=simulator, seed=seed, layers=len(descs),
                    vectors=len(descs), simulated_cycles=int(sum(cycles)),
                    mismatched_outputs=sum(not o for _, o, _ in bad),
                    mismatched_cycles=sum(not c for _, _, c in bad),
                    wall_s=round(time.perf_counter() - t0, 2), failures=failures)
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
    ap.add_argument("--layers", type=int_arg(1), default=1000, help="random layers per engine")
    ap.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    ap.add_argument("--seed", type=SEED_ARG, default=0)
    ap.add_argument("--engines", type=names_arg(ENGINES), default=",".join(ENGINES),
                    help="comma-separated subset of " + ", ".join(ENGINES))
    args = ap.parse_args(argv)
    engines = args.engines

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
    write_csv(pd.DataFrame([{k: v for k, v in r.items() if k != "failures"} for r in rows]), out)
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
