"""Flow steps the command line chains: emit an engine, build a demo bundle, simulate a layer.

Each step is a plain function of its inputs that writes its outputs atomically; the closed loop
(compress -> measure break-even -> re-plan) is assembled from these as the project grows.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["emit_dense", "run_demo", "write_json"]


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as sorted, indented JSON to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
    return path


ENGINES = ("dense", "bcr")


def emit_engine(engine: str, rows: int, cols: int, lanes: int, weight_bits: int, act_bits: int,
                name: str, out: Path, block: tuple[int, int] = (8, 16)) -> tuple[Path, Path]:
    """Emit a matrix-vector engine sized for ``rows x cols``; return the (.v, .json) paths.

    ``engine`` is one of :data:`ENGINES`; ``block`` is the BCR block size.
    """
    from hw.emit import emit_verilog

    params = {"engine": engine, "rows": rows, "cols": cols, "lanes": lanes,
              "weight_bits": weight_bits, "act_bits": act_bits}
    if engine == "dense":
        from hw.dense import DenseMatVec

        component = DenseMatVec(lanes, weight_bits=weight_bits, act_bits=act_bits,
                                max_rows=rows, max_cols=cols)
    elif engine == "bcr":
        from hw.bcr import BCRMatVec

        component = BCRMatVec(lanes, block=block, weight_bits=weight_bits, act_bits=act_bits,
                              max_rows=rows, max_cols=cols)
        params["block"] = list(block)
    else:
        raise ValueError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    v, j = emit_verilog(component, name, out, params)
    return Path(v), Path(j)


def emit_dense(rows: int, cols: int, lanes: int, weight_bits: int, act_bits: int, name: str,
               out: Path) -> tuple[Path, Path]:
    """Emit the dense matrix-vector engine sized for ``rows x cols``; return (.v, .json) paths."""
    return emit_engine("dense", rows, cols, lanes, weight_bits, act_bits, name, out)


def layer_matrix(layer) -> tuple[np.ndarray, np.ndarray]:
    """The integer 2-D weight view of a quantized conv2d/linear layer and its mask.

    ``ValueError`` (naming the layer) for an RNN layer or a layer without integer weights.
    """
    from ir.schemes import matrix_view

    if layer.op not in ("linear", "conv2d"):
        raise ValueError(f"layer {layer.name!r} is {layer.op}; the matrix-vector engines run "
                         "linear and conv2d layers")
    if layer.quant is None:
        raise ValueError(f"layer {layer.name!r} has no quantized weights; the engines need "
                         "integer weights (compress with --bits)")
    return (matrix_view(np.asarray(layer.tensors["qweight"], dtype=np.int64)),
            matrix_view(layer.tensors["mask"]))


def simulate_layer(layer, engine: str, lanes: int = 8, act_bits: int = 8,
                   simulator: str = "verilator", vectors: int = 4, seed: int = 0
                   ) -> dict[str, Any]:
    """Run a bundle layer's matrix-vector product on an engine's RTL and check it.

    The layer's integer 2-D weight view (for conv2d: one output position per vector, i.e. the
    product with a random im2col column) multiplies ``vectors`` random ``act_bits`` activation
    vectors. Returns a dict with ``outputs_match`` (against ``ir.golden.linear``), the RTL
    ``cycles``, the engine's ``model_cycles`` and the dense engine's cycle model for the same
    lanes, ``dense_cycles``.
    """
    from hw.dense import dense_cycles
    from ir.golden import linear

    qw, mask = layer_matrix(layer)
    rows, cols = qw.shape
    bits = layer.quant.bits
    rng = np.random.default_rng(seed)
    amax = 2 ** (act_bits - 1) - 1
    xs = rng.integers(-amax, amax + 1, size=(vectors, cols), dtype=np.int64)
    if engine == "dense":
        from sim.dense import run_dense

        outputs, cycles = run_dense(qw, xs, lanes, bits, act_bits, simulator)
        model = dense_cycles(rows, cols, lanes)
    elif engine == "bcr":
        from hw.bcr import bcr_cycles
        from ir.bcr import encode_bcr
        from sim.bcr import run_bcr

        if layer.scheme.kind != "bcr":
            raise ValueError(f"layer {layer.name!r} has scheme {layer.scheme.kind!r}; the bcr "
                             "engine runs layers pruned with the bcr scheme")
        block = tuple(layer.scheme.block)
        outputs, cycles = run_bcr(qw, mask, block, xs, lanes, bits, act_bits, simulator)
        model = bcr_cycles(encode_bcr(qw, block, mask=mask), lanes)
    else:
        raise ValueError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    golden = linear(qw, xs)
    return {"layer": layer.name, "engine": engine, "rows": rows, "cols": cols, "lanes": lanes,
            "weight_bits": bits, "act_bits": act_bits, "simulator": simulator,
            "vectors": vectors, "outputs_match": bool(np.array_equal(outputs, golden)),
            "cycles": [int(c) for c in cycles], "model_cycles": int(model),
            "dense_cycles": int(dense_cycles(rows, cols, lanes))}


#: The demo's plan: every scheme the hardware will run, on TinyCNN's four layers.
DEMO_PLAN = {
    "default": {"scheme": "dense", "bits": 8},
    "layers": {
        "conv2": {"scheme": "pattern", "library_size": 8, "connectivity": 0.25},
        "fc1": {"scheme": "bcr", "block": [8, 16], "row_sparsity": 0.5, "col_sparsity": 0.5},
        "fc2": {"scheme": "unstructured", "sparsity": 0.6},
    },
}


def compress_demo_model(seed: int = 0, epochs: int = 10, admm_iters: int = 3,
                        retrain_epochs: int = 3, progress: bool = False):
    """Train TinyCNN on scikit-learn's digits and ADMM-compress it by :data:`DEMO_PLAN`.

    Returns the :class:`pruning.compress.CompressResult` (bundle, accuracies, table rows).
    """
    from pruning.compress import compress
    from pruning.data import loader
    from pruning.plan import Plan
    from pruning.train import train
    from pruning.zoo import RECIPES, build

    recipe = RECIPES["tinycnn"]
    model = build("tinycnn", seed=seed)
    train_loader = loader("digits", "train", batch_size=int(recipe["batch_size"]), seed=seed)
    test_loader = loader("digits", "test", batch_size=256)
    train(model, train_loader, epochs=epochs, lr=float(recipe["lr"]), seed=seed)
    return compress(model, Plan.from_dict(DEMO_PLAN), train_loader, test_loader,
                    admm_iters=admm_iters, retrain_epochs=retrain_epochs,
                    lr=float(recipe["lr"]), seed=seed, progress=progress, model_name="tinycnn")


def run_demo(out: Path, simulator: str = "verilator", lanes: int = 8, seed: int = 0,
             echo: Callable[[str], None] = print) -> bool:
    """The end-to-end demo; returns True when outputs and cycles match the references.

    1. Compression: trains TinyCNN on scikit-learn's digits, ADMM-compresses it with
       :data:`DEMO_PLAN` (pattern, BCR and unstructured pruning, 8-bit weights), saves the bundle
       to ``out/bundle`` and prints its table and the accuracy before and after.
    2. Hardware: emits the dense engine for the bundle's ``fc1`` layer into ``out/verilog``,
       simulates that layer on ``simulator`` for a batch of random 8-bit activations, and checks
       the outputs against ``ir.golden.linear`` and the cycles against ``hw.dense.dense_cycles``.
    """
    from codesign.report import layer_table, print_table
    from hw.dense import dense_cycles
    from ir import Bundle
    from ir.golden import linear
    from sim.dense import run_dense

    out = Path(out)
    bits = 8
    echo("compressing TinyCNN (scikit-learn digits) with ADMM: pattern, BCR, unstructured, "
         f"{bits}-bit weights ...")
    result = compress_demo_model(seed=seed)
    result.bundle.save(out / "bundle")
    bundle = Bundle.load(out / "bundle")
    print_table(layer_table(bundle), title=f"bundle {out / 'bundle'}")
    totals = result.totals()
    echo(f"accuracy (digits test): dense {result.accuracy_before:.2%}, compressed "
         f"{result.accuracy_after:.2%}; kept {totals['nnz']:,} of {totals['numel']:,} weights "
         f"({totals['pruning_ratio']:.2f}x); storage {totals['storage_reduction_weights']:.1f}x "
         f"smaller (weights only), {totals['storage_reduction_with_index']:.1f}x with index")

    layer = bundle.layer("fc1")
    qw = np.asarray(layer.tensors["qweight"], dtype=np.int64)
    rows, cols = qw.shape
    emit_dense(rows, cols, lanes, bits, bits, "dense_fc1", out / "verilog")
    rng = np.random.default_rng(seed)
    qmax = 2 ** (bits - 1) - 1
    xs = rng.integers(-qmax, qmax + 1, size=(4, cols), dtype=np.int64)
    echo(f"simulating layer fc1 ({rows}x{cols}, {layer.scheme.kind}, density "
         f"{layer.stats.density:.2f}) on the dense engine, {lanes} lanes, {bits}-bit, "
         f"{simulator}, {len(xs)} input vectors ...")
    outputs, cycles = run_dense(qw, xs, lanes=lanes, weight_bits=bits, act_bits=bits,
                                simulator=simulator)
    golden = linear(qw, xs)
    model_cycles = dense_cycles(rows, cols, lanes)
    outputs_match = bool(np.array_equal(np.asarray(outputs), golden))
    cycles_match = all(int(c) == model_cycles for c in cycles)
    macs = rows * cols
    echo(f"outputs match golden model: {'yes' if outputs_match else 'NO'}")
    echo(f"cycles per vector: RTL {list(map(int, cycles))}, cycle model {model_cycles} "
         f"({'match' if cycles_match else 'MISMATCH'}); ideal MACs/lanes {macs / lanes:.1f}, "
         f"utilisation {macs / lanes / model_cycles:.1%}")
    write_json(out / "demo.json", {
        "accuracy_dense": result.accuracy_before, "accuracy_compressed": result.accuracy_after,
        "layer": "fc1", "rows": rows, "cols": cols, "lanes": lanes, "bits": bits,
        "simulator": simulator, "rtl_cycles": [int(c) for c in cycles],
        "model_cycles": model_cycles, "outputs_match": outputs_match,
        "cycles_match": cycles_match})
    echo(f"wrote {out / 'bundle'}, {out / 'verilog'}, {out / 'demo.json'}")
    return outputs_match and cycles_match
