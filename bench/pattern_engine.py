"""Pattern-convolution engine against the dense engine doing the same 3x3 convolution, in RTL.

A VGG-style 3x3 layer (stride 1, padding 1) with 4-of-9 kernel patterns from an 8-pattern
library and connectivity pruning (a fraction of whole kernels removed) runs on the pattern
engine; the dense engine with the same lanes and bits runs the unpruned-shape layer as im2col
matrix-vector products, one per output position, all in one Verilator process. Outputs are checked
against ``ir.golden.conv2d`` (pattern) and ``ir.golden.linear`` (dense im2col), cycles against both
cycle models. A pattern lane has 4 multipliers and a dense lane 1, so the table also gives the
speedup per multiplier (at equal multiplier count). Printed and saved to ``bench/results/pattern_engine.csv``.

Usage: ``python bench/pattern_engine.py [--channels 32] [--image 16] [--lanes 8]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from codesign.atomic import write_csv
from codesign.options import MAX_LANES, SEED_ARG, int_arg
from hw.dense import dense_cycles
from hw.pattern import pattern_cycles
from ir.golden import conv2d, linear
from ir.pattern import candidate_patterns, encode_pattern
from sim.dense import run_dense_batch
from sim.pattern import random_pattern_layer, run_pattern_batch

RESULTS = Path(__file__).resolve().parent / "results"
KEEP = (1.0, 0.5, 0.25)
#: Multipliers per pattern-engine lane (weights kept per pattern); a dense lane has one, so
#: ``speedup_per_multiplier`` compares the two at equal multiplier counts.
KEPT = 4


def im2col(qx: np.ndarray, padding: int = 1) -> np.ndarray:
    """``(H*W, C*9)`` patches of a stride-1 3x3 convolution in PyTorch's weight order."""
    c, h, w = qx.shape
    xp = np.pad(qx, ((0, 0), (padding, padding), (padding, padding)))
    cols = [xp[:, y:y + 3, x:x + 3].reshape(-1) for y in range(h) for x in range(w)]
    return np.stack(cols)


def measure(channels: int = 32, image: int = 16, lanes: int = 8, bits: int = 8, seed: int = 0,
            simulator: str = "verilator") -> pd.DataFrame:
    """One row per kernel keep rate: pattern cycles against the dense engine's im2col run (both
    in RTL, both checked), the speedup per multiplier and the simulated cycles per second."""
    rng = np.random.default_rng(seed)
    c, n = channels, image
    library = candidate_patterns()[rng.choice(56, 8, replace=False)]
    amax = 2 ** (bits - 1) - 1
    qx = rng.integers(-amax, amax + 1, size=(c, n, n))
    layers = [random_pattern_layer(rng, (c, c), library, keep, bits=bits) for keep in KEEP]
    pruns = run_pattern_batch([(qw, m, library, qx, 1, 1) for qw, m in layers], lanes, bits, bits,
                              simulator)
    dense_w = rng.integers(-amax, amax + 1, size=(c, c * 9))
    cols = im2col(qx)
    drun = run_dense_batch([(dense_w, cols)], lanes, bits, bits, simulator)[0]
    d_ok = bool(np.array_equal(drun.outputs, linear(dense_w, cols)))
    d_cycles = int(sum(drun.cycles))
    d_model = n * n * dense_cycles(c, c * 9, lanes)
    d_rate = d_cycles / sum(drun.run_seconds) if sum(drun.run_seconds) > 0 else float("nan")
    rows = []
    for keep, (qw, mask), run in zip(KEEP, layers, pruns, strict=True):
        model = pattern_cycles(encode_pattern(qw, library, mask=mask), (n, n), lanes)
        density = float(np.asarray(mask).mean())
        rows.append({
            "layer": f"conv3x3 {c}->{c} {n}x{n}", "lanes": lanes, "bits": bits,
            "kernels_kept": keep, "density": round(density, 4),
            "pattern_cycles": run.cycles, "pattern_model": model,
            "pattern_outputs_match": bool(np.array_equal(
                run.outputs, conv2d(qw, qx, stride=1, padding=1))),
            "dense_cycles": d_cycles, "dense_model": d_model, "dense_outputs_match": d_ok,
            # a layer that keeps no kernel (few channels, low keep rate) takes 0 cycles: no
            # ratio to state (it was a ZeroDivisionError after the RTL runs)
            "speedup": round(d_cycles / run.cycles, 2) if run.cycles else None,
            "speedup_per_multiplier": round(d_cycles / run.cycles / KEPT, 2) if run.cycles
            else None,
            "ideal": round(1 / density, 2) if density else None,
            "sim_cycles_per_s": round(run.cycles / run.run_seconds) if run.run_seconds > 0
            else None,
            "dense_sim_cycles_per_s": round(d_rate)})
    return pd.DataFrame(rows)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int_arg(1, 512), default=32, help="input and output channels")
    ap.add_argument("--image", type=int_arg(1, 128), default=16, help="input height and width")
    ap.add_argument("--lanes", type=int_arg(1, MAX_LANES), default=8)
    ap.add_argument("--bits", type=int_arg(2, 16), default=8)
    ap.add_argument("--seed", type=SEED_ARG, default=0)
    args = ap.parse_args(argv)
    df = measure(args.channels, args.image, args.lanes, args.bits, args.seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "pattern_engine.csv"
    write_csv(df, out)
    print(df.to_string(index=False))
    print(f"saved {out}\nreproduce: python bench/pattern_engine.py {' '.join(argv)}".rstrip())
    ok = (df.pattern_outputs_match.all() and df.dense_outputs_match.all()
          and (df.pattern_cycles == df.pattern_model).all()
          and (df.dense_cycles == df.dense_model).all())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
