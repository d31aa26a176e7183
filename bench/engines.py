"""Engine cycles in RTL: each sparse engine against the dense engine with the same lanes and bits.

For each layer shape and pruning ratio (50% to 95%), a random BCR layer whose every block keeps
the same kept-rows x kept-columns sub-block (as the BCR projection does; kept rows a multiple of
the lanes where the block allows) runs on the BCR engine, a random unstructured layer of the same
sparsity (4-bit relative indices, every activation non-zero: the unstructured engine's worst
case) runs on the unstructured engine, and the same shape runs on the dense engine, all on
Verilator. Printed and saved to ``bench/results/engines.csv``: RTL cycles, the
cycle models (which must equal them), outputs checked against ``ir.golden.linear``, speedup over
dense, the fraction of the ideal ``1 / (1 - r)`` it reaches, the dense engine's utilisation
(MACs / lanes / cycles) and simulated cycles per second. ``--slices S`` runs the BCR rows on
``S`` slices of ``lanes`` lanes each (:class:`hw.bcr.BCRMatVec` ``slices``), and the rnn
rows' BCR gates likewise: ``S`` times the multipliers of the dense engine they are compared
with, so their speedup can pass the ideal.

Two more groups of rows, on the same lanes and bits:

* ``pattern``: the pattern-convolution engine on a 3x3 conv 32->32 over 16x16 (kernels kept
  100/50/25%) against the dense engine running the same convolution as im2col products
  (:func:`pattern_engine.measure`, as ``bench/pattern_engine.py`` prints it);
* ``lstm_bcr_gates``: an LSTM cell with input = hidden = 256 (the ``lstm_h256`` gate matrix,
  1024 x 512) over 2 steps, its W_ih and W_hh BCR-pruned per block as :mod:`pruning` prunes
  them, gate products on the BCR engine (:class:`hw.rnn.LSTMEngine` ``gates="bcr"``) against
  the same cell with dense gates; outputs checked against ``ir.golden.lstm_step`` every step,
  cycles against :func:`hw.rnn.rnn_bcr_cycles` / :func:`hw.rnn.lstm_cycles`; ``ideal`` counts
  the gate products only (the copy and element-wise stages are not pruned).

Simulated cycles per second (``sim_cycles_per_s``) is the engine's cycles divided by the
simulator's wall time from ``start`` to ``done`` (the bench waits on ``done`` without touching
the design), so memory loading by cocotb is not in it. The default ``--profile speed`` builds
each engine with :func:`sim.runner.use_build_profile` ``("speed")``: ports-only VPI, -O3, and
the clock generated inside the simulation (``--clock gpi``: cocotb's C++ clock instead).

Targets (issue 4): BCR at 90% sparsity >= 8.5x fewer cycles than dense; dense cycles
<= 1.05 x MACs / lanes; >= 500,000 simulated cycles per second on Verilator.

Usage: ``python bench/engines.py [--quick] [--lanes 8] [--slices 1] [--simulator verilator]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from codesign.atomic import write_csv
from codesign.options import MAX_LANES, SEED_ARG, block_arg, int_arg, names_arg
from hw.bcr import MAX_SLICES, bcr_cycles
from hw.dense import dense_cycles
from hw.unstructured import unstructured_cycles
from ir.bcr import encode_bcr
from ir.csr import encode_csc_lanes
from ir.golden import linear
from sim.bcr import exact_bcr_layer, kept_shape, run_bcr_batch
from sim.dense import run_dense_batch
from sim.unstructured import random_sparse_layer, run_unstructured_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pattern_engine  # noqa: E402  (bench/pattern_engine.py, reused for the pattern rows)

# Only for that import: left on sys.path, bench/ shadows packages of the same name as its
# scripts (bench/mobile.py: the mobile package) for whatever imports them later.
sys.path.remove(str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).resolve().parent / "results"
RATIOS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: (name, rows, cols): a square FC layer, VGG-16's conv4 (256 x 2304 im2col view) and the
#: stacked gate matrix of an LSTM step (4*hidden x (input + hidden)), hidden = input = 256.
SHAPES = (("fc1024", 1024, 1024), ("vgg_conv3x3_256", 256, 2304), ("lstm_h256", 1024, 512))
QUICK_SHAPES = (("fc256", 256, 256),)
INDEX_BITS = 4


def rnn_rows(rng, lanes: int, bits: int, block: tuple[int, int], simulator: str, size: int,
             steps: int = 2, slices: int = 1) -> list[dict]:
    """LSTM (input = hidden = ``size``) on dense gates vs BCR gates (``slices`` slices of
    ``lanes`` lanes) at each of :data:`RATIOS`."""
    from hw.rnn import bcr_gate_matrix, lstm_cycles, rnn_bcr_cycles
    from ir.golden import RNNQuantConfig
    from sim.rnn import LSTMJob, bcr_pruned, random_job, rnn_mismatches, run_lstm_batch

    cfg = RNNQuantConfig.from_scales(0.02, 2**-6, weight_bits=bits, act_bits=bits)
    base = random_job(rng, cfg, size, size, steps)
    lanes_d = -(-lanes // 4) * 4
    drun = run_lstm_batch([LSTMJob(*base)], cfg, lanes_d, simulator, size, size, steps)[0]
    d_ok = not rnn_mismatches("lstm", [base], [drun], cfg, lanes_d)
    jobs, metas = [], []
    for r in RATIOS:
        nr, nc = kept_shape(block, lanes, r)
        jobs.append(bcr_pruned(rng, base, block, 0, 0, bits=bits, exact=(nr, nc)))
        metas.append((r, f"{nr}x{nc}"))
    bruns = run_lstm_batch([LSTMJob(*j) for j in jobs], cfg, lanes, simulator, size, size,
                           steps, gates="bcr", block=block, slices=slices)
    bad = {k for k, _, _ in rnn_mismatches("lstm", jobs, bruns, cfg, lanes, gates="bcr",
                                           block=block, slices=slices)}
    rows = []
    gate_rows, gate_cols = 4 * size, 2 * size
    for k, ((r, kept), job, run) in enumerate(zip(metas, jobs, bruns, strict=True)):
        matrix = bcr_gate_matrix("lstm", job[3], job[4], block, job[-2], job[-1])
        density = (int(job[-2].sum()) + int(job[-1].sum())) / (gate_rows * gate_cols)
        speedup = drun.cycles / run.cycles
        rows.append({
            "layer": f"lstm_h{size} x{steps} steps", "rows": gate_rows, "cols": gate_cols,
            "lanes": lanes, "bits": bits, "engine": "lstm_bcr_gates",
            "block": f"{block[0]}x{block[1]}", "slices": slices, "kept_per_block": kept,
            "target_sparsity": r,
            "sparsity": round(1 - density, 4), "rtl_cycles": run.cycles,
            "model_cycles": rnn_bcr_cycles(matrix, size, size, steps, lanes, slices),
            "cycles_match": k not in bad, "outputs_match": k not in bad,
            "dense_cycles": drun.cycles, "dense_model": lstm_cycles(size, size, steps, lanes_d),
            "dense_outputs_match": d_ok, "dense_lanes": lanes_d,
            "cycles_per_step": round(run.cycles / steps), "dense_cycles_per_step":
            round(drun.cycles / steps), "speedup": round(speedup, 2),
            "ideal": round(1 / density, 2), "of_ideal": round(speedup * density, 3),
            "sim_cycles_per_s": round(run.cycles / run.run_seconds) if run.run_seconds else None,
            "dense_sim_cycles_per_s": round(drun.cycles / drun.run_seconds)
            if drun.run_seconds else None})
    return rows


def pattern_rows(lanes: int, bits: int, seed: int, simulator: str, quick: bool) -> list[dict]:
    """The pattern engine's rows (see :func:`pattern_engine.measure`) in this table's columns."""
    df = pattern_engine.measure(8 if quick else 32, 6 if quick else 16, lanes, bits, seed,
                                simulator)
    rows = []
    for r in df.to_dict("records"):
        rows.append({
            "layer": r["layer"], "lanes": lanes, "bits": bits, "engine": "pattern",
            "block": "-", "kept_per_block": f"{r['kernels_kept']:.0%} kernels",
            "target_sparsity": round(1 - r["density"], 2), "sparsity": round(1 - r["density"], 4),
            "rtl_cycles": r["pattern_cycles"], "model_cycles": r["pattern_model"],
            "cycles_match": r["pattern_cycles"] == r["pattern_model"],
            "outputs_match": r["pattern_outputs_match"], "dense_cycles": r["dense_cycles"],
            "dense_model": r["dense_model"], "dense_outputs_match": r["dense_outputs_match"],
            "speedup": r["speedup"], "speedup_per_multiplier": r["speedup_per_multiplier"],
            "ideal": r["ideal"], "of_ideal": round(r["speedup_per_multiplier"] / r["ideal"], 3),
            "sim_cycles_per_s": r["sim_cycles_per_s"],
            "dense_sim_cycles_per_s": r["dense_sim_cycles_per_s"]})
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small shape, for a smoke run")
    ap.add_argument("--lanes", type=int_arg(1, MAX_LANES), default=8)
    ap.add_argument("--bits", type=int_arg(2, 16), default=8)
    ap.add_argument("--block", type=block_arg, default="16x16", help="BCR block RxC")
    ap.add_argument("--slices", type=int_arg(1, MAX_SLICES), default=1,
                    help="BCR engine slices (pipelines of --lanes lanes each) for the matvec "
                         "and rnn rows")
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    ap.add_argument("--seed", type=SEED_ARG, default=0)
    ap.add_argument("--groups", type=names_arg(("matvec", "pattern", "rnn")),
                    default="matvec,pattern,rnn",
                    help="comma-separated row groups: matvec (dense/BCR/unstructured), pattern, "
                         "rnn")
    ap.add_argument("--profile", default="speed", choices=("speed", "default"),
                    help="Verilator build profile (sim.runner.use_build_profile): speed = "
                         "ports-only VPI and -O3 (slower builds, faster runs)")
    ap.add_argument("--clock", default="internal", choices=("internal", "gpi"),
                    help="speed profile's clock (sim.runner.SPEED_CLOCK): internal = generated "
                         "inside the simulation (Verilator --timing), gpi = cocotb's C++ clock")
    args = ap.parse_args(argv)
    args.groups = set(args.groups)
    if "rnn" in args.groups and args.bits < 3:    # the cell's fixed point needs 3 bits
        ap.error(f"--bits {args.bits}: the rnn group needs at least 3 bits (its cell state "
                 "has no fractional bit left at 2); leave rnn out of --groups")
    import sim.runner

    sim.runner.use_build_profile(args.profile)
    sim.runner.SPEED_CLOCK = args.clock
    block = args.block
    lanes, bits = args.lanes, args.bits
    rng = np.random.default_rng(args.seed)
    rows_out = []
    shapes = (QUICK_SHAPES if args.quick else SHAPES) if "matvec" in args.groups else ()
    for name, rows, cols in shapes:
        x = rng.integers(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1), size=(1, cols))
        dense_w = rng.integers(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1), size=(rows, cols))
        t0 = time.perf_counter()
        drun = run_dense_batch([(dense_w, x)], lanes, bits, bits, args.simulator,
                               max_rows=rows, max_cols=cols)[0]
        d_wall = time.perf_counter() - t0
        d_cycles = drun.cycles[0]
        d_ok = np.array_equal(drun.outputs, linear(dense_w, x))
        d_rate = d_cycles / drun.run_seconds[0] if drun.run_seconds[0] > 0 else float("nan")
        jobs, metas = [], []
        for r in RATIOS:
            nr, nc = kept_shape(block, lanes, r)
            qw, mask = exact_bcr_layer(rng, (rows, cols), block, nr, nc, bits=bits)
            jobs.append((qw, mask, x))
            metas.append((r, nr, nc, qw, mask))
        t0 = time.perf_counter()
        bruns = run_bcr_batch(jobs, block, lanes, bits, bits, args.simulator,
                              max_rows=rows, max_cols=cols, slices=args.slices)
        b_wall = time.perf_counter() - t0
        ujobs = [(random_sparse_layer(rng, (rows, cols), 1.0 - r, bits=bits), x) for r in RATIOS]
        t0 = time.perf_counter()
        uruns = run_unstructured_batch(ujobs, lanes, bits, bits, INDEX_BITS, args.simulator,
                                       max_rows=rows, max_cols=cols)
        u_wall = time.perf_counter() - t0
        points = []
        for (r, nr, nc, qw, mask), brun in zip(metas, bruns, strict=True):
            model = bcr_cycles(encode_bcr(qw, block, mask=mask), lanes, args.slices)
            points.append(("bcr", r, f"{nr}x{nc}", qw, mask != 0, brun, model, b_wall))
        for r, (qw, _), urun in zip(RATIOS, ujobs, uruns, strict=True):
            model = unstructured_cycles(encode_csc_lanes(qw, lanes, INDEX_BITS), x[0], lanes)
            points.append(("unstructured", r, "-", qw, qw != 0, urun, model, u_wall))
        for engine, r, kept, qw, mask, run, model, wall in points:
            sparsity = 1.0 - float(mask.mean())
            speedup = d_cycles / run.cycles[0]
            rows_out.append({
                "layer": name, "rows": rows, "cols": cols, "lanes": lanes, "bits": bits,
                "engine": engine, "block": f"{block[0]}x{block[1]}" if engine == "bcr" else "-",
                "slices": args.slices if engine == "bcr" else 1,
                "kept_per_block": kept, "target_sparsity": r, "sparsity": round(sparsity, 4),
                "rtl_cycles": run.cycles[0], "model_cycles": model,
                "cycles_match": run.cycles[0] == model,
                "outputs_match": bool(np.array_equal(run.outputs, linear(qw, x))),
                "dense_cycles": d_cycles, "dense_model": dense_cycles(rows, cols, lanes),
                "dense_outputs_match": d_ok,
                "dense_utilisation": round(rows * cols / lanes / d_cycles, 4),
                "speedup": round(speedup, 2), "ideal": round(1 / (1 - sparsity), 2),
                "of_ideal": round(speedup * (1 - sparsity), 3),
                "dense_sim_cycles_per_s": round(d_rate),
                "sim_cycles_per_s": round(run.cycles[0] / run.run_seconds[0])
                if run.run_seconds[0] > 0 else None,
                "dense_wall_s": round(d_wall, 1), "batch_wall_s": round(wall, 1),
            })
    if "pattern" in args.groups:
        rows_out += pattern_rows(lanes, bits, args.seed, args.simulator, args.quick)
    if "rnn" in args.groups:
        rows_out += rnn_rows(rng, lanes, bits, block, args.simulator, 32 if args.quick else 256,
                             slices=args.slices)
    df = pd.DataFrame(rows_out)
    df["simulator"] = args.simulator
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("engines_quick.csv" if args.quick else "engines.csv")
    write_csv(df, out)
    cols_show = ["layer", "engine", "slices", "target_sparsity", "sparsity", "kept_per_block",
                 "rtl_cycles", "cycles_match", "outputs_match", "dense_cycles", "speedup", "ideal",
                 "of_ideal", "dense_utilisation", "sim_cycles_per_s", "dense_sim_cycles_per_s"]
    cols_show = [c for c in cols_show if c in df.columns]
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(df[cols_show].to_string(index=False))
    at90 = df[(df.target_sparsity == 0.9) & (df.engine == "bcr")]
    rates = pd.concat([df.sim_cycles_per_s, df.dense_sim_cycles_per_s]).dropna()
    if len(at90):
        print(f"\ntargets: BCR at 90% >= 8.5x over dense: measured {at90.speedup.min():.2f}x-"
              f"{at90.speedup.max():.2f}x; dense cycles <= 1.05 x MACs/lanes: utilisation "
              f"{df.dense_utilisation.min():.3f} (>= 0.952 needed)")
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    if args.simulator == "verilator":
        print(f"Verilator >= 500,000 simulated cycles/s: {rates.min():,.0f}-{rates.max():,.0f}/s "
              f"(median {rates.median():,.0f}/s; build profile {args.profile}"
              f"{', clock ' + args.clock if args.profile == 'speed' else ''}; {load})")
    else:   # the target and the build profile are Verilator's
        print(f"Icarus simulated cycles/s: {rates.min():,.0f}-{rates.max():,.0f}/s (median "
              f"{rates.median():,.0f}/s; {load}); the 500,000/s target is Verilator's")
    print(f"saved {out}\nreproduce: python bench/engines.py {' '.join(argv)}".rstrip())
    ok = bool(df.cycles_match.all() and df.outputs_match.all() and df.dense_outputs_match.all())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
