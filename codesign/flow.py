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


def emit_dense(rows: int, cols: int, lanes: int, weight_bits: int, act_bits: int, name: str,
               out: Path) -> tuple[Path, Path]:
    """Emit the dense matrix-vector engine sized for ``rows x cols``; return (.v, .json) paths."""
    from hw.dense import DenseMatVec
    from hw.emit import emit_verilog

    engine = DenseMatVec(lanes=lanes, weight_bits=weight_bits, act_bits=act_bits,
                         max_rows=rows, max_cols=cols)
    params = {"engine": "dense", "rows": rows, "cols": cols, "lanes": lanes,
              "weight_bits": weight_bits, "act_bits": act_bits}
    v, j = emit_verilog(engine, name, out, params)
    return Path(v), Path(j)


def run_demo(out: Path, simulator: str = "verilator", lanes: int = 8, seed: int = 0,
             echo: Callable[[str], None] = print) -> bool:
    """The end-to-end demo; returns True when outputs and cycles match the references.

    Builds a bundle from a randomly initialised TinyCNN (8-bit weights), saves it to
    ``out/bundle``, prints its table, emits the dense engine for its ``fc1`` layer, simulates the
    layer on ``simulator`` for a batch of random 8-bit activations, and checks the outputs against
    ``ir.golden.linear`` and the cycle count against ``hw.dense.dense_cycles``.
    """
    from codesign.report import layer_table, print_table
    from hw.dense import dense_cycles
    from ir import Bundle
    from ir.golden import linear
    from pruning.export import export_model
    from pruning.zoo import build
    from sim.dense import run_dense

    out = Path(out)
    bits = 8
    model = build("tinycnn", seed=seed)
    bundle = export_model(model, "tinycnn", bits=bits)
    bundle.save(out / "bundle")
    bundle = Bundle.load(out / "bundle")
    print_table(layer_table(bundle), title=f"bundle {out / 'bundle'}")

    layer = bundle.layer("fc1")
    qw = np.asarray(layer.tensors["qweight"], dtype=np.int64)
    rows, cols = qw.shape
    emit_dense(rows, cols, lanes, bits, bits, "dense_fc1", out / "verilog")
    rng = np.random.default_rng(seed)
    qmax = 2 ** (bits - 1) - 1
    xs = rng.integers(-qmax, qmax + 1, size=(4, cols), dtype=np.int64)
    echo(f"simulating layer fc1 ({rows}x{cols}) on the dense engine, {lanes} lanes, "
         f"{bits}-bit, {simulator}, {len(xs)} input vectors ...")
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
        "layer": "fc1", "rows": rows, "cols": cols, "lanes": lanes, "bits": bits,
        "simulator": simulator, "rtl_cycles": [int(c) for c in cycles],
        "model_cycles": model_cycles, "outputs_match": outputs_match,
        "cycles_match": cycles_match})
    echo(f"wrote {out / 'bundle'}, {out / 'verilog'}, {out / 'demo.json'}")
    return outputs_match and cycles_match
