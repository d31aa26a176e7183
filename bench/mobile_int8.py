"""int8 sparse kernels on a modelled ARM core: BCR and CSR against dense, layer by layer.

For each layer (``--linear`` matrices, and ``--cells`` LSTM/GRU steps of input = hidden =
``--sizes``) and each BCR setting (``--block`` blocks keeping ``--keeps`` rows x columns of
each block, every block exactly so; an RNN's ``W_ih`` and ``W_hh`` apart, as
:mod:`pruning` prunes them), random 8-bit weights, and three int8 kernels built for aarch64
(``-mcpu=cortex-a76``): our BCR kernel, CSR with the same mask, and dense on the same layer.
Every kernel is checked bit for bit against ``ir.golden`` (:func:`mobile.check.check_kernel`)
and costed on one call (:func:`mobile.cost.kernel_cost`: exact executed instructions under
qemu, llvm-mca cycles on the Neoverse-N1 and Cortex-A57 models). The ARM side is a model, so
the figures are cycles and sparse/dense ratios, not phone milliseconds.

Printed as a table and saved as ``bench/results/mobile_int8.csv`` (one row per layer, setting
and kernel).

Usage: ``python bench/mobile_int8.py [--linear 256x256] [--cells lstm,gru] [--sizes 64,128]
[--block 16x16] [--keeps 8x16,8x8,8x4] [--seed 1]``
"""

from __future__ import annotations

import argparse
import sys
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

from bench.fpga_mobile import CELLS, make_layer, pair_arg  # noqa: E402
from codesign.atomic import write_csv  # noqa: E402
from codesign.options import int_arg, list_arg, names_arg  # noqa: E402
from mobile.build import build_kernel  # noqa: E402
from mobile.check import check_kernel, random_inputs  # noqa: E402
from mobile.cost import MCA_MODELS, kernel_cost  # noqa: E402
from mobile.layers import layer_kernels  # noqa: E402
from sim.bcr import exact_bcr_layer  # noqa: E402

RESULTS = HERE / "results"
KERNELS = ("bcr", "csr", "dense")


def linear_requests(shape: tuple[int, int], block: tuple[int, int] | None,
                    kept: tuple[int, int] | None, seed: int) -> dict[str, tuple[str, dict]]:
    """``{kernel: (kind, params)}`` of a random int8 ``shape`` layer: dense only when
    ``block`` is None, else BCR (every block keeping ``kept``), CSR and dense on its weights."""
    rng = np.random.default_rng(seed)
    if block is None:
        w = rng.integers(-127, 128, shape)
        m = np.ones(shape, dtype=bool)
    else:
        w, m = exact_bcr_layer(rng, shape, block, *kept, bits=8)
    base = {"weight": w, "mask": m, "bias": rng.integers(-3000, 3000, shape[0]),
            "dtype": "int8"}
    out = {"dense": ("dense", base)}
    if block is not None:
        out = {"bcr": ("bcr", {**base, "block": block}), "csr": ("csr", base), **out}
    return out


def rnn_requests(cell: str, size: int, block: tuple[int, int] | None,
                 kept: tuple[int, int] | None, seed: int) -> dict[str, tuple[str, dict]]:
    """The same for one int8 step of a random ``cell`` layer (bench/fpga_mobile.py's
    :func:`~bench.fpga_mobile.make_layer`), through :func:`mobile.layers.layer_kernels`."""
    layer = make_layer(cell, size, block, kept, seed)
    return {p["matvec"]: (kind, p) for _, kind, p in layer_kernels(layer, "int8")}


def measure(layer: str, kept: str, density: float, requests: dict[str, tuple[str, dict]],
            cache: Path | None) -> list[dict]:
    """Build, check and cost each kernel of ``requests`` on aarch64: one row each (``kept``:
    the BCR setting, rows x columns kept per block, or ``"all"``)."""
    rows = []
    for name in KERNELS:
        if name not in requests:
            continue
        kind, params = requests[name]
        k = build_kernel(kind, target="aarch64", cache_dir=cache, **params)
        check = check_kernel(k, seed=0)
        cost = kernel_cost(k, random_inputs(k, seed=1))
        rows.append({"layer": layer, "kept": kept, "density": round(density, 4), "kernel": name,
                     "check": bool(check.ok), "instructions": cost.instructions,
                     **{f"cycles_{lbl}": cost.cycles[lbl] for lbl, _ in MCA_MODELS},
                     "text_bytes": int(k.text_bytes)})
    dense = rows[-1]
    for r in rows:
        r["vs_dense_instructions"] = round(r["instructions"] / dense["instructions"], 3)
        for lbl, _ in MCA_MODELS:
            r[f"vs_dense_{lbl}"] = round(r[f"cycles_{lbl}"] / dense[f"cycles_{lbl}"], 3)
    return rows


def table(frame: pd.DataFrame) -> str:
    """Markdown: one line per layer and BCR setting, each kernel's cycles band and its ratio."""
    lbls = [lbl for lbl, _ in MCA_MODELS]

    def band(r, pre):
        values = [r[f"{pre}{lbl}"] for lbl in lbls]
        lo, hi = min(values), max(values)
        fmt = "{:,.0f}" if pre == "cycles_" else "{:.2f}"
        return f"{fmt.format(lo)}-{fmt.format(hi)}"

    lines = ["| layer | kept per block | density | dense cycles | BCR cycles | BCR / dense | CSR cycles "
             "| CSR / dense | instructions BCR / CSR / dense |", "|---" * 9 + "|"]
    for (layer, kept, dens), g in frame.groupby(["layer", "kept", "density"], sort=False):
        rec = {r["kernel"]: r for _, r in g.iterrows()}
        cell = [layer, kept, f"{dens:.3f}", band(rec["dense"], "cycles_")]
        for k in ("bcr", "csr"):
            cell += ([band(rec[k], "cycles_"), band(rec[k], "vs_dense_")] if k in rec
                     else ["-", "-"])
        cell.append(" / ".join(f"{rec[k]['instructions']:,}" if k in rec else "-"
                               for k in KERNELS))
        lines.append("| " + " | ".join(cell) + " |")
    return "\n".join(lines)


def _maybe_none(item):
    """``list_arg(item)``, or no entries for ``""``."""
    convert = list_arg(item)
    return lambda text: [] if text.strip() == "" else convert(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--linear", type=_maybe_none(pair_arg), default=[(256, 256)],
                    help="linear layers, rows x cols, comma-separated ('' for none)")
    ap.add_argument("--cells", type=names_arg(CELLS), default=list(CELLS))
    ap.add_argument("--sizes", type=_maybe_none(int_arg(4, 512)), default=[64, 128],
                    help="RNN input = hidden sizes ('' for none)")
    ap.add_argument("--block", type=pair_arg, default=(16, 16))
    ap.add_argument("--keeps", type=list_arg(pair_arg), default=[(8, 16), (8, 8), (8, 4)],
                    help="kept rows x columns per block, one BCR layer each")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    br, bc = args.block
    for kr, kc in args.keeps:
        if kr > br or kc > bc:
            ap.error(f"--keeps: {kr}x{kc} does not fit the {br}x{bc} block")
    layers = [(f"linear {r}x{c}", (r, c), None) for r, c in args.linear]
    layers += [(f"{cell} {n}", n, cell) for cell in args.cells for n in args.sizes]
    if not layers:
        ap.error("no layers: give --linear or --sizes")
    for name, shape, cell in layers:
        rows, cols = (4 * shape, shape) if cell else shape
        if rows < br or cols < bc:
            ap.error(f"a {br}x{bc} block does not fit {name}")
    out: list[dict] = []
    for name, shape, cell in layers:
        for kept in [None, *args.keeps]:
            blk = None if kept is None else args.block
            reqs = (rnn_requests(cell, shape, blk, kept, args.seed) if cell
                    else linear_requests(shape, blk, kept, args.seed))
            density = 1.0 if kept is None else kept[0] * kept[1] / (br * bc)
            label = "all" if kept is None else f"{kept[0]}x{kept[1]}"
            rows = measure(name, label, density, reqs, None)
            out.extend(rows)
            print(f"{name}, kept {label}, density {density:.3f}: "
                  + ", ".join(f"{r['kernel']} {r['instructions']:,} instructions "
                              f"({'ok' if r['check'] else 'FAIL'})" for r in rows), flush=True)
    frame = pd.DataFrame(out)
    print()
    print(table(frame))
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_csv(frame, RESULTS / "mobile_int8.csv")
    ok = bool(frame.check.all())
    print(f"\nevery kernel checked against ir.golden: {'all match' if ok else 'MISMATCH'}; "
          f"cycles: llvm-mca {' .. '.join(lbl for lbl, _ in MCA_MODELS)} (a band, not phone time)")
    print(f"saved {RESULTS / 'mobile_int8.csv'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
