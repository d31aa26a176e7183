"""Simulated engine cycles per second on Verilator: default builds against builds without
``--public-flat-rw``.

cocotb's Verilator runner always passes ``--public-flat-rw``, which keeps every internal signal
visible to VPI and so stops Verilator from optimising them away. The benches only touch
top-level ports (memory write ports, ``start``, ``done``, ``cycles``), so the ``fast`` flavour
adds ``--no-public-flat-rw`` (after it on the command line, so it wins) and a Verilator control
file that makes only signals with the engines' port names public (``PORT_PATTERNS``). For each
engine (dense 1024x1024; BCR at 50% of a 1024x1024 layer; the LSTM cell with input = hidden =
256 on dense and on BCR gates) this script runs one long computation per build flavour, checks
the outputs against the golden model and the cycles against the cycle model, and reports the
engine's cycles divided by the simulator's wall time from ``start`` to ``done`` (memory loading
by cocotb is not counted), with the load average. Saved to ``bench/results/sim_speed.csv``.

The ``speed`` flavour is :func:`sim.runner.use_build_profile` ``("speed")``: ports-only VPI
(a control file generated from the top module's ports), Verilator ``-O3 --x-assign fast
--x-initial fast --noassert``, the model's C++ at ``-O3`` and the clock generated inside the
simulation (:func:`sim.runner.clock_wrapper`, Verilator ``--timing``); ``speed-gpi`` is the same
build driven by cocotb's C++ clock (``sim.runner.SPEED_CLOCK = "gpi"``), as before.

Usage: ``python bench/sim_speed.py [--size 1024] [--lanes 8] [--flavours default,fast,speed-gpi,speed]
[--engines dense,bcr,lstm]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import sim.runner
from codesign.atomic import write_csv
from codesign.options import MAX_LANES, SEED_ARG, int_arg, names_arg
from hw.bcr import bcr_cycles
from hw.dense import dense_cycles
from ir.bcr import encode_bcr
from ir.golden import RNNQuantConfig, linear
from sim.bcr import exact_bcr_layer, run_bcr_batch
from sim.dense import run_dense_batch
from sim.rnn import LSTMJob, bcr_pruned, random_job, rnn_mismatches, run_lstm_batch

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_ARGS = tuple(sim.runner.VERILATOR_BUILD_ARGS)
#: Signal names the benches drive or read (memory ports are ``<port>__addr|data|en``).
PORT_PATTERNS = ("clk", "rst", "start", "busy", "done", "cycles", "rows", "cols", "blocks",
                 "input_size", "hidden_size", "steps", "*_wr__*", "*_rd__*", "*_rd1__*",
                 "*_rd2__*", "*_rd3__*")
VLT = RESULTS / "public_ports.vlt"
FLAVOURS = {"default": DEFAULT_ARGS,
            "fast": DEFAULT_ARGS + ("--no-public-flat-rw", str(VLT)),
            # sim.runner's "speed" build profile: ports-only VPI, Verilator -O3, C++ -O3, with
            # cocotb's GPI clock ("speed-gpi") or the clock inside the simulation ("speed")
            "speed-gpi": DEFAULT_ARGS,
            "speed": DEFAULT_ARGS}


def write_control_file() -> None:
    """The ``fast`` flavour's Verilator control file (ports public, nothing else)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = ["`verilator_config"] + [f'public_flat_rw -module "*" -var "{p}"'
                                     for p in PORT_PATTERNS]
    VLT.write_text("\n".join(lines) + "\n")


def _rate(cycles: int, seconds: float) -> float:
    return cycles / seconds if seconds > 0 else float("nan")


def measure(flavour: str, size: int, lanes: int, rng, engines: set[str]) -> list[dict]:
    """One row per engine for one build flavour."""
    sim.runner.VERILATOR_BUILD_ARGS = FLAVOURS[flavour]
    sim.runner.SPEED_CLOCK = "gpi" if flavour == "speed-gpi" else "internal"
    sim.runner.use_build_profile("speed" if flavour.startswith("speed") else "default")
    rows = []
    if "dense" in engines:
        rows += _dense(size, lanes, rng)
    if "bcr" in engines:
        rows += _bcr(size, lanes, rng)
    if "lstm" in engines:
        rows += _lstm(size, lanes, rng)
    args = FLAVOURS[flavour] + ((*sim.runner.SPEED_ARGS, sim.runner.SPEED_MAKEFLAGS)
                                if flavour.startswith("speed") else ())
    args += ("clock: " + ("cocotb GPI" if flavour != "speed" else "internal (--timing)"),)
    return [{"flavour": flavour, "build_args": " ".join(args), "engine": e,
             "layer": lay, "lanes": lanes, "cycles": c, "run_s": round(s, 3),
             "sim_cycles_per_s": round(_rate(c, s)), "checked": ok,
             "load_average": round(os.getloadavg()[0], 1)} for e, lay, c, s, ok in rows]


def _dense(size, lanes, rng):
    rows = []
    w = rng.integers(-127, 128, (size, size))
    x = rng.integers(-127, 128, (1, size))
    d = run_dense_batch([(w, x)], lanes, 8, 8, max_rows=size, max_cols=size)[0]
    ok = np.array_equal(d.outputs, linear(w, x)) and d.cycles[0] == dense_cycles(size, size,
                                                                                   lanes)
    rows.append(("dense", f"{size}x{size}", d.cycles[0], d.run_seconds[0], ok))
    return rows


def _bcr(size, lanes, rng):
    rows = []
    x = rng.integers(-127, 128, (1, size))
    qw, mask = exact_bcr_layer(rng, (size, size), (16, 16), 8, 16)
    b = run_bcr_batch([(qw, mask, x)], (16, 16), lanes, 8, 8, max_rows=size, max_cols=size)[0]
    ok = (np.array_equal(b.outputs, linear(qw, x))
          and b.cycles[0] == bcr_cycles(encode_bcr(qw, (16, 16), mask), lanes))
    rows.append(("bcr", f"{size}x{size} 50%", b.cycles[0], b.run_seconds[0], ok))
    return rows


def _lstm(size, lanes, rng):
    rows = []
    cfg = RNNQuantConfig.from_scales(0.02, 2**-6)
    h = size // 4
    job = random_job(rng, cfg, h, h, 2)
    r = run_lstm_batch([LSTMJob(*job)], cfg, lanes, "verilator", h, h, 2)[0]
    ok = not rnn_mismatches("lstm", [job], [r], cfg, lanes)
    rows.append(("lstm dense gates", f"I=H={h}, 2 steps", r.cycles, r.run_seconds, ok))
    bjob = bcr_pruned(rng, job, (16, 16), 0, 0, bits=8, exact=(8, 16))
    r = run_lstm_batch([LSTMJob(*bjob)], cfg, lanes, "verilator", h, h, 2, gates="bcr",
                       block=(16, 16))[0]
    ok = not rnn_mismatches("lstm", [bjob], [r], cfg, lanes, gates="bcr", block=(16, 16))
    rows.append(("lstm bcr gates", f"I=H={h}, 2 steps, 50%", r.cycles, r.run_seconds, ok))
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int_arg(64, 2048), default=1024,
                    help="a multiple of 64 (16x16 BCR blocks in the size/4 LSTM)")
    ap.add_argument("--lanes", type=int_arg(1, MAX_LANES), default=8,
                    help="a multiple of 4 when lstm is measured (its dense gates take 4 a step)")
    ap.add_argument("--flavours", type=names_arg(tuple(FLAVOURS)),
                    default="default,fast,speed-gpi,speed")
    ap.add_argument("--engines", type=names_arg(("dense", "bcr", "lstm")), default="dense,bcr,lstm")
    ap.add_argument("--rounds", type=int_arg(1, 10), default=1,
                    help="run the --flavours list this many times, back to back (a flavour "
                         "against another under the same load)")
    ap.add_argument("--seed", type=SEED_ARG, default=0)
    args = ap.parse_args(argv)
    if args.size % 64:
        ap.error(f"--size must be a multiple of 64, not {args.size}")
    if "lstm" in args.engines and args.lanes % 4:    # after the dense and BCR runs, it failed
        ap.error(f"--lanes must be a multiple of 4 when --engines has lstm, not {args.lanes}")
    write_control_file()
    rows = []
    for k in range(args.rounds):
        for flavour in args.flavours:
            rows += [r | {"round": k + 1} for r in measure(
                flavour, args.size, args.lanes, np.random.default_rng(args.seed),
                set(args.engines))]
    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "sim_speed.csv"
    write_csv(df, out)
    with pd.option_context("display.width", 200):
        print(df.drop(columns=["build_args"]).to_string(index=False))
    print(f"{os.cpu_count()} cores; load average now {os.getloadavg()}")
    print(f"saved {out}\nreproduce: python bench/sim_speed.py {' '.join(argv)}".rstrip())
    return 0 if df.checked.all() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
