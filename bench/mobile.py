"""Generated sparse kernels against dense layers in five inference runtimes, on this host.

One run, one machine, one thread for everyone:

- **LSTM step**, hidden 1024, input 1024 (PyTorch gate order; a 4096 x 2048 gate product plus
  the element-wise cell). Ours: the generated step (:func:`mobile.build.build_kernel` ``"lstm"``)
  with BCR matrix-vector products at about 10x (block 64 x 128: 16 of 64 rows x 52 of 128
  columns kept per block, masks from :func:`pruning.projections.bcr_mask`), the same step with
  CSR products at the same density (unstructured magnitude masks), and with dense products.
- **VGG-16's 13 3x3 conv layers** (shapes of :class:`pruning.zoo.VGG16`, ImageNet 224 x 224
  input, or ``--image`` for a scaled-down run), stride 1, padding 1, with bias. Ours: the
  generated pattern convolution (4-of-9 patterns from an 8-pattern library chosen by
  :func:`pruning.projections.select_pattern_library`, plus connectivity pruning of
  ``--connectivity`` of the kernels, masks from the pattern projection; by default 72%, about
  8x fewer weights as PatDNN's VGG-16, and 50%, 4.5x, side by side), and the generated dense
  direct convolution (the same tiled loop with all 9 taps and every channel).
- **Dense peers** (:mod:`bench.peers`): onnxruntime, MNN, LiteRT (XNNPACK), TVM (untuned: see
  :mod:`bench.peers`) and PyTorch get the same layers with dense (unpruned) weights.

Every output, ours and the peers', is checked against a float64 numpy reference before its
time counts (column ``max_rel_err``: ``max|y - ref| / max|ref|``). Times are medians of many
calls, each call timed alone: peers from Python (``bench.peers.time_calls``; that adds their
Python call overhead, a few microseconds), ours by the kernel's own C timing loop
(:func:`time_kernel`). Speedups (``vs_peer``, ``vs_csr``) are of medians against the fastest
dense peer of the layer (and of the VGG total) and, for the LSTM, against our CSR step. On a
loaded shared host the median includes other processes' time slices; ``min_ms`` and
``vs_peer_min`` (fastest call against the fastest peer's fastest call) show the uncontended
figure beside it.

Then the modelled ARM table (:func:`mobile.cost.kernel_cost`: qemu-counted instructions and an
llvm-mca cycle band, Neoverse-N1 optimistic / Cortex-A57 pessimistic) for the same kernels built
for aarch64: sparse/dense ratios only, never phone milliseconds. Tracing every executed basic block
under qemu is slow, so the ARM conv layers run on a small image
(``--arm-image``, default 8 x 8, shrunk to at most ``--arm-macs`` dense multiply-adds, 4 x 4 at
least), each distinct shape once; the LSTM runs at full size.

Tables are printed and saved as ``bench/results/mobile.csv`` and ``mobile_arm.csv``.

Usage: ``python bench/mobile.py [--image 224] [--connectivity 0.72,0.5] [--peers onnxruntime,...]
[--layers lstm,conv,conv1_1,...] [--no-arm]``
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, Python puts bench/ first on sys.path, where this file would shadow the
# ``mobile`` package: drop it, and make the repository's packages importable instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peers import PEERS, TOLERANCE, Conv3x3, LstmCell, reference, relative_error, run_peer  # noqa: E402
from codesign.atomic import write_csv  # noqa: E402
from codesign.options import SEED_ARG, float_arg, int_arg  # noqa: E402
from pruning.projections import bcr_mask, mask_of, select_pattern_library  # noqa: E402
from pruning.schemes import PatternConfig, UnstructuredConfig  # noqa: E402
from pruning.zoo import VGG16  # noqa: E402

RESULTS = HERE / "results"
HIDDEN = INPUT = 1024
#: Default BCR block (rows, cols) and kept (rows, cols) per block: 16 x 52 of 64 x 128 -> 9.85x.
BCR_BLOCK, BCR_KEPT = (64, 128), (16, 52)
#: Targets from issue 7 (speedups of our kernels).
TARGETS = {"bcr_vs_peer": 6.0, "bcr_vs_csr": 3.0, "pattern_vs_peer": 2.5}
#: Default connectivity rates (fraction of 3x3 kernels removed). 0.72 keeps 1 kernel in 3.6:
#: with 4-of-9 patterns (2.25x) that is about 8x fewer weights, the VGG-16 pattern +
#: connectivity rate PatDNN reports without accuracy loss (arXiv 2001.00138); 0.5 (4.5x) is
#: the earlier, milder setting, kept beside it.
CONNECTIVITY = (0.72, 0.5)


def vgg16_convs(image: int) -> list[tuple[str, int, int, int]]:
    """``(name, in, out, side)`` of VGG-16's 13 3x3 convs for a square ``image`` input."""
    out, cin, side, block, k = [], 3, image, 1, 1
    for item in VGG16.CONFIG:
        if item == "M":
            side //= 2
            block, k = block + 1, 1
            continue
        out.append((f"conv{block}_{k}", cin, int(item), side))
        cin, k = int(item), k + 1
    return out


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def parse_bcr(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``"16x128:4x52"`` -> ``((16, 128), (4, 52))``; ValueError naming the format."""
    try:
        block, kept = (tuple(int(v) for v in part.split("x")) for part in text.split(":"))
        if len(block) != 2 or len(kept) != 2 or not all(
                1 <= k <= b for k, b in zip(kept, block, strict=True)):
            raise ValueError
    except ValueError:
        raise ValueError(f"--bcr must be ROWSxCOLS:KEPT_ROWSxKEPT_COLS with 1 <= kept <= block, "
                         f"like 16x128:4x52, not {text!r}") from None
    return block, kept


def make_lstm(rng: np.random.Generator, block: tuple[int, int] = BCR_BLOCK,
              kept: tuple[int, int] = BCR_KEPT, hidden: int = HIDDEN, inputs: int = INPUT
              ) -> dict:
    """Dense weights (PyTorch's uniform init), inputs, BCR masks and same-density
    unstructured (CSR) masks of an LSTM step."""
    s = 1.0 / np.sqrt(hidden)
    w_ih = rng.uniform(-s, s, (4 * hidden, inputs)).astype(np.float32)
    w_hh = rng.uniform(-s, s, (4 * hidden, hidden)).astype(np.float32)
    bias = rng.uniform(-s, s, 4 * hidden).astype(np.float32)
    x, h, c = (rng.standard_normal(n).astype(np.float32) for n in (inputs, hidden, hidden))
    rs, cs = 1 - kept[0] / block[0], 1 - kept[1] / block[1]
    bcr = [bcr_mask(torch.from_numpy(w), block, rs, cs).numpy() for w in (w_ih, w_hh)]
    density = float(sum(m.sum() for m in bcr)) / sum(m.size for m in bcr)
    csr = [mask_of(UnstructuredConfig(sparsity=1 - density), torch.from_numpy(w)).numpy()
           for w in (w_ih, w_hh)]
    return {"w_ih": w_ih, "w_hh": w_hh, "bias": bias, "x": x, "h": h, "c": c, "bcr": bcr,
            "csr": csr, "density": density, "block": block, "kept": kept}


def lstm_workload(d: dict, masks: list[np.ndarray] | None = None, name: str = "lstm"
                  ) -> LstmCell:
    """The step as a :class:`bench.peers.LstmCell` (weights masked when ``masks`` is given)."""
    w_ih, w_hh = d["w_ih"], d["w_hh"]
    if masks is not None:
        w_ih, w_hh = w_ih * masks[0], w_hh * masks[1]
    return LstmCell(name, np.concatenate([w_ih, w_hh], axis=1).astype(np.float32), d["bias"],
                    d["x"], d["h"], d["c"])


def make_convs(rng: np.random.Generator, image: int, connectivity: float | list[float],
               names: set[str] | None) -> tuple[list[dict], np.ndarray]:
    """Per conv layer: dense weight, bias, input and pattern mask (``mask``: the first
    ``connectivity``; ``masks``: connectivity -> mask for each); and the shared library."""
    rates = [connectivity] if isinstance(connectivity, float | int) else list(connectivity)
    shapes = [s for s in vgg16_convs(image) if names is None or s[0] in names]
    layers = []
    for name, cin, cout, side in shapes:
        layers.append({"name": name, "w": _he(rng, (cout, cin, 3, 3), cin * 9),
                       "b": (rng.standard_normal(cout) * 0.01).astype(np.float32),
                       "x": rng.standard_normal((cin, side, side)).astype(np.float32),
                       "side": side})
    if not layers:
        return [], np.zeros((0, 3, 3), np.uint8)
    # One library for the model (as ADMM selects it), voted by a sample of every layer's kernels.
    sample = [torch.from_numpy(ly["w"][: max(1, 4096 // ly["w"].shape[1])]) for ly in layers]
    library = select_pattern_library(sample, 8, 4)
    for ly in layers:
        ly["masks"] = {}
        for rate in rates:
            config = PatternConfig(library_size=8, connectivity=rate, keep=4)
            ly["masks"][rate] = mask_of(config, torch.from_numpy(ly["w"]),
                                        library=library).numpy()
        ly["mask"] = ly["masks"][rates[0]]
    return layers, library


def pattern_impl(rate: float, first: bool) -> str:
    """Row name of our pattern kernel at connectivity ``rate``: ``ours pattern`` for the
    headline rate, ``ours pattern 4.5x`` (its weight reduction) for the others."""
    return "ours pattern" if first else f"ours pattern {9 / 4 / (1 - rate):.1f}x"


def conv_workload(ly: dict, masked: bool = False) -> Conv3x3:
    w = ly["w"] * ly["mask"] if masked else ly["w"]
    return Conv3x3(ly["name"], w.astype(np.float32), ly["b"], ly["x"])


# ------------------------------------------------------------------------------ our kernels

def time_kernel(kernel, inputs: tuple, warmup: int, repeats: int) -> tuple[float, float]:
    """``(median, min)`` milliseconds per call of a built host kernel.

    The kernel's own C timing loop (``mk_time``, what :func:`mobile.harness.time_host` uses)
    with one call per sample, so ours are sampled call by call like the peers.
    """
    lib = kernel.library()
    (ptrs, _keep), _ = kernel.argv(inputs)
    warm = (ctypes.c_double * max(1, warmup))()
    lib.mk_time(ptrs, 1, max(1, warmup), warm)
    samples = (ctypes.c_double * repeats)()
    lib.mk_time(ptrs, 1, repeats, samples)
    t = np.frombuffer(samples, dtype=np.float64) * 1e3
    return float(np.median(t)), float(t.min())


def our_lstm_rows(d: dict, repeats: int, target: str = "host") -> list[dict]:
    """Build, check and time the generated LSTM steps (BCR, CSR, dense)."""
    rows = []
    for impl, matvec, masks in (("ours BCR", "bcr", d["bcr"]), ("ours CSR", "csr", d["csr"]),
                                ("ours dense", "dense", None)):
        ref_w = lstm_workload(d, masks)
        nnz = int(sum(m.sum() for m in masks)) if masks is not None else ref_w.weight.size
        row = {"layer": "lstm", "impl": impl, "density": round(nnz / ref_w.weight.size, 4)}
        try:
            from mobile.build import build_kernel
            z = np.zeros_like(d["bias"])
            extra = {"block": d["block"]} if matvec == "bcr" else {}
            t0 = time.perf_counter()
            k = build_kernel("lstm", weight_ih=d["w_ih"], weight_hh=d["w_hh"],
                             mask_ih=None if masks is None else masks[0],
                             mask_hh=None if masks is None else masks[1],
                             bias_ih=d["bias"], bias_hh=z, dtype="fp32", matvec=matvec,
                             cache_dir=ROOT / ".mobile_cache", **extra)
            row["build_s"] = round(time.perf_counter() - t0, 2)
            h2, c2 = k(d["x"], d["h"], d["c"])
            row["max_rel_err"] = relative_error(np.concatenate([h2, c2]), reference(ref_w))
            row["median_ms"], row["min_ms"] = time_kernel(k, (d["x"], d["h"], d["c"]), 2,
                                                          repeats)
            row["status"] = "ok" if row["max_rel_err"] <= TOLERANCE else "wrong"
            row["note"] = f"generated C, gcc -O3 -march=x86-64-v3, {k.text_bytes} B .text"
        except Exception as e:  # noqa: BLE001 - a failing kernel is a row, not a crash
            row.update(status="error", note=f"{type(e).__name__}: {str(e)[:300]}")
        rows.append(row)
    return rows


def our_conv_rows(layers: list[dict], library: np.ndarray, repeats: int) -> list[dict]:
    """Build, check and time the generated pattern (at every connectivity rate of
    ``ly["masks"]``) and dense convolutions of every layer."""
    rows = []
    for ly in layers:
        side = ly["side"]
        masks = ly.get("masks") or {None: ly["mask"]}
        runs = [(pattern_impl(rate, i == 0), "pattern", m)
                for i, (rate, m) in enumerate(masks.items())] + [("ours dense", "conv", None)]
        for impl, kind, mask in runs:
            masked = kind == "pattern"
            ref_w = conv_workload({**ly, "mask": mask}, masked=masked)
            density = float(mask.mean()) if masked else 1.0
            row = {"layer": ly["name"], "impl": impl, "density": round(density, 4)}
            try:
                from mobile.build import build_kernel
                extra = {"library": library} if masked else {}
                t0 = time.perf_counter()
                k = build_kernel(kind, weight=ly["w"], mask=mask,
                                 bias=ly["b"], dtype="fp32", image=(side, side), stride=1,
                                 padding=1, cache_dir=ROOT / ".mobile_cache", **extra)
                row["build_s"] = round(time.perf_counter() - t0, 2)
                (y,) = k(ly["x"])
                row["max_rel_err"] = relative_error(y, reference(ref_w))
                row["median_ms"], row["min_ms"] = time_kernel(k, (ly["x"],), 2, repeats)
                row["status"] = "ok" if row["max_rel_err"] <= TOLERANCE else "wrong"
                row["note"] = f"generated C, gcc -O3 -march=x86-64-v3, {k.text_bytes} B .text"
            except Exception as e:  # noqa: BLE001
                row.update(status="error", note=f"{type(e).__name__}: {str(e)[:300]}")
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------ tables

#: The row of the whole network's conv time, on which the pattern target is judged.
TOTAL = "VGG-16 total"


def speedup_table(rows: list[dict]) -> tuple[pd.DataFrame, dict]:
    """Add ``vs_peer`` (fastest ok dense peer of the layer / this) and ``vs_csr`` (LSTM)
    columns, plus a ``VGG-16 total`` line per implementation that ran every conv layer ok.
    Returns the table and the target verdicts."""
    df = pd.DataFrame(rows)
    convs = [n for n in dict.fromkeys(df["layer"]) if n != "lstm"]
    # a --layers subset is no VGG-16 total, and the VGG-16 target is not judged on it
    label = TOTAL if len(convs) == len(vgg16_convs(32)) else \
        f"total of {len(convs)} of {len(vgg16_convs(32))} convs"
    totals = []
    for impl, g in df[df["layer"].isin(convs)].groupby("impl", sort=False):
        ok = len(g) == len(convs) and (g["status"] == "ok").all()
        totals.append({"layer": label, "impl": impl,
                       "status": "ok" if ok else "incomplete",
                       "median_ms": float(g["median_ms"].sum()) if ok else None,
                       "min_ms": float(g["min_ms"].sum()) if ok else None,
                       "max_rel_err": float(g["max_rel_err"].max()) if ok else None,
                       "note": f"sum over {len(convs)} conv layers"})
    if convs and totals:
        df = pd.concat([df, pd.DataFrame(totals)], ignore_index=True)
    df["vs_peer"] = np.nan
    df["vs_csr"] = np.nan
    df["vs_peer_min"] = np.nan
    df["fastest_peer"] = ""
    verdicts = {}
    for layer, g in df.groupby("layer", sort=False):
        idx = g.index[g["status"] == "ok"]
        if layer == "lstm":     # ours against ours: whether or not a peer ran
            csr = g[(g["impl"] == "ours CSR") & (g["status"] == "ok")]
            if not csr.empty:
                df.loc[idx, "vs_csr"] = float(csr["median_ms"].iloc[0]) / df.loc[idx, "median_ms"]
        peers_ok = g[g["impl"].isin(PEERS) & (g["status"] == "ok")]
        if peers_ok.empty:
            continue
        best = peers_ok.loc[peers_ok["median_ms"].idxmin()]
        df.loc[idx, "vs_peer"] = best["median_ms"] / df.loc[idx, "median_ms"]
        df.loc[idx, "vs_peer_min"] = peers_ok["min_ms"].min() / df.loc[idx, "min_ms"]
        df.loc[g.index, "fastest_peer"] = best["impl"]
    extra = [i for i in dict.fromkeys(df["impl"]) if i.startswith("ours pattern ")]
    checks = [("bcr_vs_peer", "lstm", "ours BCR", "vs_peer"),
              ("bcr_vs_csr", "lstm", "ours BCR", "vs_csr"),
              ("pattern_vs_peer", TOTAL, "ours pattern", "vs_peer")]
    checks += [(f"pattern_vs_peer ({i[13:]})", TOTAL, i, "vs_peer") for i in extra]
    for key, layer, impl, col in checks:
        sel = df[(df["layer"] == layer) & (df["impl"] == impl)][col]
        val = float(sel.iloc[0]) if len(sel) and not np.isnan(sel.iloc[0]) else None
        target = TARGETS[key.split(" ")[0]]
        verdicts[key] = (val, target, val is not None and val >= target)
    return df, verdicts


def arm_side(cin: int, cout: int, side: int, arm_image: int, arm_macs: float) -> int:
    """Image side for a traced conv: at most ``arm_image`` and the layer's own side, shrunk
    until the dense layer has at most ``arm_macs`` multiply-adds (4 at least)."""
    s = min(arm_image, side)
    while s > 4 and cout * cin * 9 * s * s > arm_macs:
        s -= 1
    return s


def arm_rows(d: dict | None, layers: list[dict], library: np.ndarray, arm_image: int,
             arm_macs: float = 40e6) -> list[dict]:
    """Modelled aarch64 sparse/dense ratios of the same kernels.

    The LSTM runs at full size; each distinct conv shape (in, out, traced side) once, at the
    side :func:`arm_side` gives, with the weights and masks of its first layer (the row names
    every layer of that shape).
    """
    from mobile.build import build_kernel
    from mobile.cost import cost_ratio, kernel_cost

    cache = ROOT / ".mobile_cache"
    rows = []

    def add(layer, impl, sparse, dense_cost, inputs, note):
        row = {"layer": layer, "impl": impl, "note": note}
        try:
            cs = kernel_cost(sparse, inputs)
            r = cost_ratio(cs, dense_cost)
            row.update(instructions_sparse=cs.instructions,
                       instructions_dense=dense_cost.instructions,
                       instr_speedup=1 / r["instructions"], speedup_n1=1 / r["neoverse-n1"],
                       speedup_a57=1 / r["cortex-a57"])
        except Exception as e:  # noqa: BLE001 - one failing trace is a row, not a crash
            row["note"] = f"{note}; {type(e).__name__}: {str(e)[:300]}"
        rows.append(row)

    if d is not None:
        base = {"weight_ih": d["w_ih"], "weight_hh": d["w_hh"], "bias_ih": d["bias"],
                "bias_hh": np.zeros_like(d["bias"]), "dtype": "fp32", "target": "aarch64",
                "cache_dir": cache}
        inputs = (d["x"], d["h"], d["c"])
        dense = kernel_cost(build_kernel("lstm", matvec="dense", **base), inputs)
        bcr = build_kernel("lstm", matvec="bcr", block=d["block"], mask_ih=d["bcr"][0],
                           mask_hh=d["bcr"][1], **base)
        add("lstm", "ours BCR / ours dense", bcr, dense, inputs, "full size")
        csr = build_kernel("lstm", matvec="csr", mask_ih=d["csr"][0], mask_hh=d["csr"][1],
                           **base)
        add("lstm", "ours CSR / ours dense", csr, dense, inputs, "full size")
    shapes: dict[tuple[int, int, int], list[dict]] = {}
    for ly in layers:
        cout, cin = ly["w"].shape[:2]
        shapes.setdefault((cin, cout, arm_side(cin, cout, ly["side"], arm_image, arm_macs)),
                          []).append(ly)
    for (cin, cout, side), group in shapes.items():
        ly = group[0]
        x = ly["x"][:, :side, :side].copy()
        common = {"weight": ly["w"], "bias": ly["b"], "dtype": "fp32", "image": (side, side),
                  "stride": 1, "padding": 1, "target": "aarch64", "cache_dir": cache}
        name = ",".join(g["name"] for g in group)
        try:
            dense = kernel_cost(build_kernel("conv", **common), (x,))
        except Exception as e:  # noqa: BLE001
            rows.append({"layer": name, "impl": "ours pattern / ours dense",
                         "note": f"dense: {type(e).__name__}: {str(e)[:300]}"})
            continue
        pat = build_kernel("pattern", mask=ly["mask"], library=library, **common)
        add(name, "ours pattern / ours dense", pat, dense, (x,),
            f"{cin}->{cout}, image {side}x{side}")
    return rows


def _fmt(df: pd.DataFrame) -> str:
    return df.to_string(index=False, float_format=lambda v: f"{v:.3g}", na_rep="-")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=int_arg(32, 1024), default=224,
                    help="VGG-16 input side, a multiple of 32 (224: ImageNet)")
    ap.add_argument("--connectivity", default=",".join(f"{c:g}" for c in CONNECTIVITY),
                    help="comma-separated fractions of 3x3 kernels removed by connectivity "
                         "pruning; the first is the headline 'ours pattern' row, the others "
                         "get rows named by their weight reduction")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers")
    ap.add_argument("--layers", default="all",
                    help="comma-separated: lstm, conv (all 13 conv layers) and/or conv names "
                         "(conv1_1 ... conv5_3)")
    ap.add_argument("--repeats", type=int_arg(1), default=30, help="timed calls per layer (at most)")
    ap.add_argument("--max-seconds", type=float_arg(0, low_open=True), default=3.0,
                    help="stop timing a peer's layer after this long (5 calls at least)")
    ap.add_argument("--bcr", default="64x128:16x52",
                    help="BCR block and kept rows x columns per block, ROWSxCOLS:KRxKC")
    ap.add_argument("--arm-image", type=int_arg(4, 1024), default=8,
                    help="largest conv image side traced for the ARM table")
    ap.add_argument("--arm-macs", type=float_arg(0, low_open=True), default=40e6,
                    help="shrink a traced conv's image until its dense layer has at most this "
                         "many multiply-adds (4x4 at least)")
    ap.add_argument("--no-arm", action="store_true", help="skip the modelled ARM table")
    ap.add_argument("--seed", type=SEED_ARG, default=0)
    args = ap.parse_args(argv)
    if args.image % 32:
        ap.error(f"--image must be a positive multiple of 32, not {args.image}")
    try:
        rates = [float(v) for v in args.connectivity.split(",")]
        if not rates or not all(0 <= r < 1 for r in rates) or len(set(rates)) != len(rates):
            raise ValueError
    except ValueError:
        ap.error(f"--connectivity must be distinct fractions in [0, 1), comma-separated, not "
                 f"{args.connectivity!r}")
    names = [pattern_impl(r, i == 0) for i, r in enumerate(rates)]
    if len(set(names)) != len(names):    # 0.5 and 0.5001 were two rows 'ours pattern 4.5x'
        ap.error(f"--connectivity rates {args.connectivity!r} give rows of the same name "
                 f"({', '.join(names)}); give rates that differ in their weight reduction")
    peers = [p for p in args.peers.split(",") if p]
    bad = sorted(set(peers) - set(PEERS))
    if bad:
        ap.error(f"unknown peer(s) {', '.join(bad)}; known: {', '.join(PEERS)}")
    known = ["lstm"] + [s[0] for s in vgg16_convs(args.image)]
    wanted = set(known) if args.layers == "all" else set(args.layers.split(","))
    if "conv" in wanted:
        wanted = (wanted - {"conv"}) | set(known[1:])
    if wanted - set(known):
        ap.error(f"unknown layer(s) {', '.join(sorted(wanted - set(known)))}; "
                 f"known: {', '.join(known)}")
    rng = np.random.default_rng(args.seed)
    load0 = os.getloadavg()
    t_start = time.time()
    try:
        block, kept = parse_bcr(args.bcr)
    except ValueError as e:
        ap.error(str(e))
    d = make_lstm(rng, block, kept) if "lstm" in wanted else None
    layers, library = make_convs(rng, args.image, rates, wanted - {"lstm"})
    rows: list[dict] = []
    peer_work = ([lstm_workload(d)] if d is not None else []) + [conv_workload(ly)
                                                                 for ly in layers]
    for peer in peers:
        print(f"... {peer}", file=sys.stderr, flush=True)
        for r in run_peer(peer, peer_work, warmup=2, repeats=args.repeats,
                          max_seconds=args.max_seconds):
            rows.append({"layer": r.workload, "impl": peer, "status": r.status,
                         "median_ms": r.median_ms, "min_ms": r.min_ms,
                         "max_rel_err": r.max_rel_err,
                         "density": 1.0, "build_s": r.build_s, "repeats": r.repeats,
                         "note": f"{r.version} {r.note}".strip()})
    print("... ours", file=sys.stderr, flush=True)
    if d is not None:
        rows += our_lstm_rows(d, args.repeats)
    rows += our_conv_rows(layers, library, args.repeats)
    df, verdicts = speedup_table(rows)
    load1 = os.getloadavg()
    df["load_start"], df["load_end"] = round(load0[0], 2), round(load1[0], 2)
    cols = ["layer", "impl", "status", "median_ms", "vs_peer", "vs_csr", "fastest_peer",
            "min_ms", "vs_peer_min",
            "max_rel_err", "density", "build_s", "note", "load_start", "load_end"]
    df = df[[c for c in cols if c in df.columns]]
    write_csv(df, RESULTS / "mobile.csv")
    print(f"Mobile benchmark: 1 thread, VGG-16 image {args.image}x{args.image}, pattern "
          f"4-of-9 x {'/'.join(f'{1 - r:.2f}' for r in rates)} kernels kept, BCR {args.bcr} "
          f"(block:kept); load average {load0[0]:.2f} -> {load1[0]:.2f}; "
          f"{time.time() - t_start:.0f} s")
    if d is not None:
        print(f"LSTM density: BCR {d['density']:.4f} ({1 / d['density']:.2f}x), CSR the same")
    print(_fmt(df.drop(columns=["note", "load_start", "load_end"])))
    for key, (val, target, ok) in verdicts.items():
        got = "n/a" if val is None else f"{val:.2f}x"
        print(f"target {key}: {got} (target >= {target}x): {'MET' if ok else 'NOT MET'}")
    if not args.no_arm:
        print("... ARM model (qemu + llvm-mca)", file=sys.stderr, flush=True)
        try:
            arm = pd.DataFrame(arm_rows(d, layers, library, args.arm_image,
                                        args.arm_macs))
        except Exception as e:  # noqa: BLE001 - the host table is saved already
            print(f"ARM model failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        write_csv(arm, RESULTS / "mobile_arm.csv")
        print("Modelled aarch64 speedup of ours sparse over ours dense (llvm-mca band: N1 "
              "optimistic, A57 pessimistic; instructions exact from qemu):")
        print(_fmt(arm))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
