"""FPGA against a mobile ARM core on RNN steps: the same int8 LSTM/GRU step, both checked.

For each cell of ``--cells``, each size of ``--sizes`` (input = hidden) and each weight density
(dense, and BCR with ``--block`` blocks keeping ``--keeps`` rows x columns of each block, the
gate matrices ``W_ih`` and ``W_hh`` pruned apart, as :mod:`pruning` prunes an RNN layer), a
random 8-bit layer goes through :func:`codesign.compare.compare_rnn_layer`:

* FPGA: the cell engine with dense gates and, for BCR layers, with BCR gates (``--lanes``
  lanes, the BCR gates on ``--slices`` slices of that many lanes each; one BCR-gated engine
  per cell and size, its memories sized for the densest of ``--keeps``, runs every density,
  as one built engine would), run in RTL (Verilator) for ``--steps`` steps, every ``h`` and
  the final ``c`` checked against ``ir.golden`` and the cycles against the cycle model; the
  same Verilog synthesised and placed on ``--device`` (Yosys + nextpnr with ``--router``,
  ``--seeds`` seeds from ``--first-seed``, Fmax the median; one run per distinct Verilog):
  microseconds per step.
* ARM: the layer's int8 step kernels (dense; BCR and CSR for BCR layers) built for aarch64
  (``-mcpu=cortex-a76``), checked against ``ir.golden`` and against the RTL's sequence under
  qemu, and costed: exact instructions and llvm-mca cycles per step (Neoverse-N1 model
  optimistic, Cortex-A57 pessimistic).

Printed side by side and saved (after every layer) as ``bench/results/fpga_mobile.csv`` (one
row per layer and implementation) and ``fpga_mobile_summary.csv`` (one row per layer): each
platform's time per step, its sparse speedup over its own dense implementation, and the
matching ARM clock: the clock at which the fastest ARM kernel takes the fastest FPGA engine's
time (an ARM core above it is faster). The ARM side is a model, so no phone milliseconds are
claimed.

Usage: ``python bench/fpga_mobile.py [--quick] [--cells lstm,gru] [--sizes 64,128]
[--block 16x16] [--keeps 8x8,8x4] [--lanes 8] [--slices 1] [--device ecp5-85k] [--seeds 1]
[--first-seed 1] [--router router1] [--pnr-timeout 1800] [--steps 4] [--fmax DENSE,BCR]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, Python puts bench/ first on sys.path, where bench/mobile.py would shadow the
# ``mobile`` package: drop it, and make the repository's packages importable instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from codesign.atomic import write_csv  # noqa: E402
from codesign.compare import (  # noqa: E402
    bcr_memory_needs,
    compare_rnn_layer,
    comparison_frame,
    format_comparison,
)
from codesign.compare_cmd import MAX_COMPARE_SLICES, parse_fmax  # noqa: E402
from codesign.options import (  # noqa: E402
    MAX_LANES,
    MAX_PLACEMENT_SEED,
    SEED_ARG,
    int_arg,
    list_arg,
    names_arg,
)
from ir import BCR, Dense, Layer, QuantSpec  # noqa: E402
from mobile.cost import MCA_MODELS  # noqa: E402
from sim.bcr import exact_bcr_layer  # noqa: E402
from synth_reports.flow import DoesNotFit, read_sidecar, synth_engine  # noqa: E402
from synth_reports.pnr import ROUTERS  # noqa: E402
from synth_reports.tools import TIMEOUT_S, SynthError  # noqa: E402

RESULTS = HERE / "results"
CELLS = ("lstm", "gru")
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
DEVICES = ("up5k", "hx8k", "ecp5-25k", "ecp5-85k")


def pair_arg(text: str) -> tuple[int, int]:
    """``"16x32"`` -> ``(16, 32)``, both positive."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
        if a < 1 or b < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"must look like 16x32 (two positive integers), not "
                                         f"{text!r}") from None
    return a, b


def fmax_arg(text: str) -> dict[str, float]:
    try:
        return parse_fmax(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--fmax ")) from None


def make_layer(cell: str, size: int, block: tuple[int, int] | None,
               kept: tuple[int, int] | None, seed: int) -> Layer:
    """A random 8-bit ``cell`` layer, input = hidden = ``size``: PyTorch's uniform init,
    quantized symmetric per layer; BCR-pruned (every block keeping exactly ``kept`` rows x
    columns, ``W_ih`` and ``W_hh`` apart) when ``block`` is given, else dense."""
    rng = np.random.default_rng(seed)
    g = len(GATES[cell])
    s = 1.0 / np.sqrt(size)
    t: dict[str, np.ndarray] = {}
    weights = {k: rng.uniform(-s, s, (g * size, size)).astype(np.float32) for k in ("ih", "hh")}
    scale = float(max(np.abs(w).max() for w in weights.values()) / 127)
    for k, w in weights.items():
        if block is None:
            mask = np.ones(w.shape, dtype=np.uint8)
        else:
            _, m = exact_bcr_layer(rng, w.shape, block, *kept, bits=8)
            mask = m.astype(np.uint8)
        t[f"weight_{k}"] = (w * mask).astype(np.float32)
        t[f"mask_{k}"] = mask
        t[f"qweight_{k}"] = (np.clip(np.rint(w / scale), -127, 127) * mask).astype(np.int8)
        t[f"bias_{k}"] = rng.uniform(-s, s, g * size).astype(np.float32)
    scheme = Dense() if block is None else BCR(block=block, row_ratio=1 - kept[0] / block[0],
                                               col_ratio=1 - kept[1] / block[1])
    name = f"{cell}{size}" + ("" if block is None else f"_bcr{kept[0]}x{kept[1]}")
    return Layer(name, cell, {"input_size": size, "hidden_size": size,
                              "gate_order": list(GATES[cell])}, scheme, QuantSpec(8, scale), t)


class Placer:
    """``synth`` callback of :func:`compare_rnn_layer`: one Yosys + nextpnr run per distinct
    Verilog (an engine of a cell and size is the same Verilog at every density)."""

    def __init__(self, device: str, seeds: int, work: Path, router: str = "router1",
                 pnr_timeout_s: float = TIMEOUT_S, first_seed: int = 1) -> None:
        self.device, self.seeds, self.work, self.router = device, seeds, work, router
        self.first_seed = first_seed
        self.pnr_timeout_s = pnr_timeout_s
        self.done: dict[str, tuple] = {}

    def __call__(self, gates: str, verilog: str) -> tuple:
        text, meta = read_sidecar(verilog)
        key = meta["verilog_sha256"]
        if key in self.done:
            return self.done[key]
        folder = self.work / f"{len(self.done):03d}_{meta['toplevel']}"
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            rep = synth_engine(verilog, self.device, folder,
                               seeds=tuple(range(self.first_seed,
                                                 self.first_seed + self.seeds)),
                               router=self.router,
                               pnr_timeout_s=self.pnr_timeout_s)
            spread = rep.seed_text()
            if self.router != "router1":
                spread += f", {self.router}"
            result = (rep.fmax_mhz, f"nextpnr on {self.device}, {spread}",
                      asdict(rep.resources), None, "")
        except (DoesNotFit, SynthError) as exc:
            result = (None, "", None, None, str(exc).splitlines()[0])
        print(f"    placed {meta['toplevel']} in {time.perf_counter() - t0:.0f} s: "
              + (f"{result[0]:.2f} MHz" if result[0] else result[4]), flush=True)
        self.done[key] = result
        return result


def _band(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else \
        f"{fmt.format(lo)}-{fmt.format(hi)}"


def summary_row(cmp) -> dict:
    """One row per layer: FPGA us/step (dense and BCR gates), ARM cycles/step (dense, BCR,
    CSR; band), each side's best sparse speedup, the matching clock of best against best."""
    models = [lbl for lbl, _ in MCA_MODELS]
    row = {"cell": cmp.op, "size": cmp.hidden_size, "density": round(cmp.density, 4),
           "ok": cmp.ok}
    f_by = {f.gates: f for f in cmp.fpga}
    a_by = {a.matvec: a for a in cmp.arm}
    for gates, f in f_by.items():
        row[f"fpga_{gates}_cycles"] = f.cycles_per_step
        row[f"fpga_{gates}_mhz"] = None if f.fmax_mhz is None else round(f.fmax_mhz, 2)
        row[f"fpga_{gates}_us"] = None if f.us_per_step is None else round(f.us_per_step, 3)
    for mv, a in a_by.items():
        for m in models:
            row[f"arm_{mv}_{m}"] = a.cycles[m]
    timed = [f for f in cmp.fpga if f.us_per_step]
    if "dense" in f_by and "bcr" in f_by and f_by["dense"].us_per_step and \
            f_by["bcr"].us_per_step:
        row["fpga_speedup"] = round(f_by["dense"].us_per_step / f_by["bcr"].us_per_step, 3)
    dense = a_by.get("dense")
    for m in models:
        best = min(cmp.arm, key=lambda a, m=m: a.cycles[m])
        row[f"arm_best_{m}"] = best.matvec
        row[f"arm_speedup_{m}"] = round(dense.cycles[m] / best.cycles[m], 3)
        if timed:
            fbest = min(timed, key=lambda f: f.us_per_step)
            row["fpga_best"] = fbest.gates
            row[f"match_mhz_{m}"] = round(best.cycles[m] / fbest.us_per_step, 1)
    return row


def print_summary(df: pd.DataFrame) -> None:
    """The side-by-side table."""
    n1, a57 = (lbl for lbl, _ in MCA_MODELS)
    lines = ["| cell | size | density | FPGA dense gates us | FPGA BCR gates us | FPGA speedup "
             "| ARM dense cycles | ARM BCR cycles | ARM CSR cycles | ARM speedup (best) "
             "| ARM clock matching the FPGA, MHz |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def arm(r, mv):
        if f"arm_{mv}_{n1}" not in r or pd.isna(r[f"arm_{mv}_{n1}"]):
            return "-"
        return _band([r[f"arm_{mv}_{n1}"], r[f"arm_{mv}_{a57}"]], "{:,.0f}")

    def us(r, g):
        v = r.get(f"fpga_{g}_us")
        if v is None or pd.isna(v):
            return "-" if pd.isna(r.get(f"fpga_{g}_cycles", np.nan)) else "not placed"
        return f"{v:,.2f} ({r[f'fpga_{g}_mhz']:.1f} MHz)"

    for _, r in df.iterrows():
        sp = r.get("fpga_speedup")
        fsp = "-" if sp is None or pd.isna(sp) else f"{sp:.2f}x"
        asp = _band([r[f"arm_speedup_{n1}"], r[f"arm_speedup_{a57}"]], "{:.2f}") + "x"
        best = r[f"arm_best_{n1}"] + ("" if r[f"arm_best_{n1}"] == r[f"arm_best_{a57}"]
                                      else "/" + r[f"arm_best_{a57}"])
        m = r.get(f"match_mhz_{n1}")
        match = "-" if m is None or pd.isna(m) else (
            _band([r[f"match_mhz_{n1}"], r[f"match_mhz_{a57}"]], "{:,.0f}")
            + f" ({best} vs {r['fpga_best']})")
        lines.append(f"| {r['cell']} | {r['size']} | {r['density']:.3f} | {us(r, 'dense')} | "
                     f"{us(r, 'bcr')} | {fsp} | {arm(r, 'dense')} | {arm(r, 'bcr')} | "
                     f"{arm(r, 'csr')} | {asp} ({best}) | {match} |")
    print("\n".join(lines))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="one LSTM of size 32, dense and one BCR density")
    ap.add_argument("--cells", type=names_arg(CELLS), default=list(CELLS))
    ap.add_argument("--sizes", type=list_arg(int_arg(4, 512)), default=[64, 128],
                    help="input = hidden sizes")
    ap.add_argument("--block", type=pair_arg, default=(16, 16), help="BCR block, rows x cols")
    ap.add_argument("--keeps", type=list_arg(pair_arg), default=[(8, 8), (8, 4)],
                    help="kept rows x columns per block, one BCR layer each")
    ap.add_argument("--lanes", type=int_arg(4, MAX_LANES), default=8)
    ap.add_argument("--slices", type=int_arg(1, MAX_COMPARE_SLICES), default=1,
                    help="slices of the BCR gate engine, each with --lanes lanes")
    ap.add_argument("--device", choices=DEVICES, default="ecp5-85k")
    ap.add_argument("--seeds", type=int_arg(1, 20), default=1,
                    help="nextpnr placement seeds per engine (Fmax: their median)")
    ap.add_argument("--first-seed", type=int_arg(0, MAX_PLACEMENT_SEED - 19), default=1,
                    help="the first placement seed: --seeds N runs seeds S..S+N-1")
    ap.add_argument("--router", choices=ROUTERS, default="router1",
                    help="nextpnr's router (router2: faster on the BCR-gated cells)")
    ap.add_argument("--pnr-timeout", type=int_arg(1, 86400), default=TIMEOUT_S,
                    help="seconds one nextpnr run may take; a seed past it is stopped and "
                         "the next one runs (an engine whose every seed stops: not placed)")
    ap.add_argument("--steps", type=int_arg(2, 64), default=4)
    ap.add_argument("--fmax", type=fmax_arg, default=None,
                    help="DENSE[,BCR] MHz instead of synthesising (a quick look)")
    ap.add_argument("--seed", type=SEED_ARG, default=0)
    args = ap.parse_args(argv)
    if args.lanes % 4:
        ap.error(f"argument --lanes: must be a multiple of 4 (the dense-gated engine's), not "
                 f"{args.lanes}")
    for kept in args.keeps:
        if kept[0] > args.block[0] or kept[1] > args.block[1]:
            ap.error(f"argument --keeps: {kept[0]}x{kept[1]} does not fit the "
                     f"{args.block[0]}x{args.block[1]} block")
    for size in args.sizes:
        if size < args.block[1] or len(GATES["gru"]) * size < args.block[0]:
            ap.error(f"argument --sizes: a {args.block[0]}x{args.block[1]} block does not fit "
                     f"the gate matrices of size {size} (at least {args.block[1]} columns and "
                     f"{-(-args.block[0] // 3)} hidden units)")
    cells, sizes, keeps = args.cells, args.sizes, args.keeps
    if args.quick:
        cells, sizes, keeps = ["lstm"], [32], keeps[:1]
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, summary = [], []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_fpga_mobile_") as tmp:
        placer = None if args.fmax else Placer(args.device, args.seeds, Path(tmp), args.router,
                                               args.pnr_timeout, args.first_seed)
        for cell in cells:
            for size in sizes:
                layers = [make_layer(cell, size, None if kept is None else args.block, kept,
                                     args.seed) for kept in [None, *keeps]]
                # one BCR-gated engine per cell and size, its memories sized for the densest
                # layer, runs every density (as a built engine would): one placement
                needs = [bcr_memory_needs(lay, args.lanes, args.slices) for lay in layers[1:]]
                memory = tuple(max(n[k] for n in needs) for k in (0, 1)) if needs else None
                for layer in layers:
                    print(f"{layer.name}:", flush=True)
                    cmp = compare_rnn_layer(layer, lanes=args.lanes, steps=args.steps,
                                            seed=args.seed, synth=placer, fmax=args.fmax,
                                            device=None if args.fmax else args.device,
                                            mobile_cache=ROOT / ".mobile_cache",
                                            bcr_memory=memory, slices=args.slices,
                                            echo=lambda s: print(s, flush=True))
                    for line in format_comparison(cmp):
                        print("  " + line, flush=True)
                    rows.append(comparison_frame(cmp))
                    summary.append(summary_row(cmp))
                    # saved after every layer: a long run stopped halfway keeps what it measured
                    write_csv(pd.concat(rows, ignore_index=True), RESULTS / "fpga_mobile.csv")
                    write_csv(pd.DataFrame(summary), RESULTS / "fpga_mobile_summary.csv")
    sdf = pd.DataFrame(summary)
    sliced = "" if args.slices == 1 else f" (BCR gates: {args.slices} slices of {args.lanes})"
    where = (f"FPGA: {args.lanes} lanes{sliced} on the {args.device}"
             + (" (given Fmax)" if args.fmax else "")
             + "; ARM: aarch64 int8 kernels, cycles per step from llvm-mca, Neoverse-N1 .. "
               "Cortex-A57")
    print(f"\n{where}; block {args.block[0]}x{args.block[1]}, {args.steps} steps, "
          f"{time.perf_counter() - t_start:.0f} s:")
    print_summary(sdf)
    ok = bool(sdf.ok.all())
    print(f"\nRTL and ARM kernels checked against ir.golden, cycles against the cycle models, "
          f"ARM sequences against the RTL's: {'all match' if ok else 'MISMATCH'}")
    print(f"saved {RESULTS / 'fpga_mobile.csv'} and {RESULTS / 'fpga_mobile_summary.csv'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
