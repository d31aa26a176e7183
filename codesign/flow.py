"""Flow steps the command line chains: emit an engine, build a demo bundle, simulate a layer.

Each step is a plain function of its inputs that writes its outputs atomically; the closed loop
(compress -> measure break-even -> re-plan) is assembled from these as the project grows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from codesign.atomic import atomic_write

__all__ = ["emit_dense", "run_demo", "write_json"]


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as sorted, indented JSON to ``path`` atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


ENGINES = ("dense", "bcr", "unstructured", "pattern", "lstm", "gru")


def emit_engine(engine: str, rows: int, cols: int, lanes: int, weight_bits: int, act_bits: int,
                name: str, out: Path, block: tuple[int, int] = (8, 16),
                index_bits: int = 4, library_size: int = 8, image: int = 32,
                steps: int = 16, weight_scale: float = 2.0 ** -6, gates: str = "dense",
                act_scale: float | None = None, kept: int = 4, slices: int = 1
                ) -> tuple[Path, Path]:
    """Emit a matrix-vector engine sized for ``rows x cols``; return the (.v, .json) paths.

    ``engine`` is one of :data:`ENGINES`; ``block`` is the BCR block size, ``index_bits`` the
    unstructured engine's relative-index width. For ``pattern``, ``rows`` and ``cols`` are the
    output and input channels, ``library_size`` the pattern library size, ``kept`` the weights
    each pattern keeps and ``image`` the largest input height and width. For ``lstm``/``gru``, ``rows`` and ``cols`` are the hidden
    and input sizes, ``steps`` the longest sequence, ``gates`` the gate-product engine
    (``"dense"`` or ``"bcr"`` with ``block``), and the fixed-point format (sigmoid/tanh ROMs,
    gate requantization) is :func:`rnn_config` of ``weight_scale`` and ``act_scale``.
    ``slices`` (``bcr``, and ``lstm``/``gru`` with BCR gates) builds the BCR engine with that
    many pipelines of ``lanes`` lanes each over disjoint block rows (:class:`hw.bcr.BCRMatVec`),
    recorded in the sidecar when more than 1; ``ValueError`` (:func:`slices_problem`) for
    another engine.
    """
    from hw.emit import emit_verilog

    problem = slices_problem(engine, gates, slices)
    if problem is not None:
        raise ValueError(problem)
    params = {"engine": engine, "rows": rows, "cols": cols, "lanes": lanes,
              "weight_bits": weight_bits, "act_bits": act_bits}
    if engine == "dense":
        from hw.dense import DenseMatVec

        component = DenseMatVec(lanes, weight_bits=weight_bits, act_bits=act_bits,
                                max_rows=rows, max_cols=cols)
    elif engine == "bcr":
        from hw.bcr import BCRMatVec

        component = BCRMatVec(lanes, block=block, weight_bits=weight_bits, act_bits=act_bits,
                              max_rows=rows, max_cols=cols, slices=slices)
        params["block"] = list(block)
    elif engine == "unstructured":
        from hw.unstructured import UnstructuredMatVec

        component = UnstructuredMatVec(lanes, weight_bits=weight_bits, act_bits=act_bits,
                                       index_bits=index_bits, max_rows=rows, max_cols=cols)
        params["index_bits"] = index_bits
    elif engine == "pattern":
        from hw.pattern import PatternConv

        component = PatternConv(lanes, weight_bits=weight_bits, act_bits=act_bits,
                                library_size=library_size, kept=kept, max_channels=cols,
                                max_filters=rows, max_height=image, max_width=image)
        params.update(library_size=library_size, kept=kept, image=image)
    elif engine in ("lstm", "gru"):
        from hw.rnn import RNNEngine

        config = rnn_config(weight_scale, weight_bits, act_bits, act_scale)
        extra = ({"gates": "bcr", "block": block, "slices": slices} if gates == "bcr"
                 else {"gates": gates})
        component = RNNEngine(config, cell=engine, lanes=lanes, max_input=cols,
                              max_hidden=rows, max_steps=steps, **extra)
        params.update(hidden_size=rows, input_size=cols, steps=steps, weight_scale=weight_scale,
                      act_frac=config.act_frac, gate_multiplier=config.multiplier,
                      gate_shift=config.shift, gates=gates)
        if gates == "bcr":
            params.update(block=list(block), gate_read=component.gate_read)
    else:
        raise ValueError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    if slices > 1:
        params["slices"] = slices
    v, j = emit_verilog(component, name, out, params)
    return Path(v), Path(j)


def slices_problem(engine: str, gates: str, slices: int) -> str | None:
    """Why ``slices`` cannot be given to ``engine`` (for ``lstm``/``gru``, ``gates`` is the
    gate engine, ``"dense"`` or ``"bcr"``), or None: only the BCR engine, alone or as the gates
    of an RNN engine, is split into slices. The message names the command-line options."""
    if (slices == 1 or engine not in ENGINES or engine == "bcr"
            or (engine in ("lstm", "gru") and gates == "bcr")):
        return None
    if engine in ("lstm", "gru"):
        return (f"--slices splits the BCR engine into pipelines; the {engine} engine with "
                f"{gates} gates has none (give --gates bcr, or a BCR-pruned --layer)")
    return (f"--slices splits the BCR engine into pipelines; --engine {engine} has none "
            "(give it to --engine bcr, or to lstm/gru with BCR gates)")


def rnn_config(weight_scale: float, weight_bits: int, act_bits: int,
               act_scale: float | None = None):
    """The integer LSTM/GRU format of the RNN engines: ``ir.golden.RNNQuantConfig.from_scales``
    of the weight scale and the activation scale (default ``2**-(act_bits - 2)``, i.e. ``x``
    and ``h`` in ``[-2, 2)``)."""
    from ir.golden import RNNQuantConfig

    act = 2.0 ** -(act_bits - 2) if act_scale is None else act_scale
    try:
        return RNNQuantConfig.from_scales(weight_scale, act, weight_bits=weight_bits,
                                          act_bits=act_bits)
    except ValueError as exc:    # name the scales: the bare message named neither
        raise ValueError(f"weight scale {weight_scale:g} (quant.scale) and activation scale "
                         f"{act:g} (quant.act_scale) give no {act_bits}-bit fixed-point format: "
                         f"{exc}") from None


def rnn_layer_gates(layer, gates: str = "auto") -> str:
    """The gate engine for an lstm/gru bundle layer: ``"bcr"`` for ``"auto"`` when the layer is
    BCR-pruned, else ``"dense"``; ``ValueError`` for BCR gates on a layer without the BCR
    scheme."""
    if gates not in ("auto", "dense", "bcr"):
        raise ValueError(f"gates must be auto, dense or bcr, not {gates!r}")
    bcr = layer.scheme.kind == "bcr"
    if gates == "bcr" and not bcr:
        raise ValueError(f"layer {layer.name!r} has scheme {layer.scheme.kind!r}; BCR gates run "
                         "layers pruned with the bcr scheme")
    return "bcr" if gates == "auto" and bcr else ("dense" if gates == "auto" else gates)


def check_rnn_layer(layer, engine: str) -> None:
    if layer.op != engine:
        raise ValueError(f"layer {layer.name!r} is {layer.op}; the {engine} engine runs "
                         f"{engine} layers")
    if layer.quant is None:
        raise ValueError(f"layer {layer.name!r} has no quantized weights; the engines need "
                         "integer weights (compress with --bits)")


def simulate_rnn_layer(layer, engine: str, gates: str = "auto", lanes: int = 8,
                       act_bits: int = 8, simulator: str = "verilator", steps: int = 8,
                       seed: int = 0, slices: int = 1) -> dict[str, Any]:
    """Run a bundle's lstm/gru layer over a random sequence on the RNN engine's RTL.

    The engine is sized by the layer (input and hidden sizes, weight bits and scale, the BCR
    block with BCR gates; activations ``act_bits`` wide in :func:`rnn_config`'s format), the
    sequence is ``steps`` random inputs from a zero state, and the biases are rounded to the
    accumulator scale. Returns the :func:`simulate_layer` keys (``rows``/``cols`` are the hidden
    and input sizes, ``vectors`` the steps) plus ``gates``; ``outputs_match`` compares every
    step's ``h`` (and the final ``c``) with ``ir.golden.lstm_step``/``gru_step`` iterated,
    ``dense_cycles`` is the dense-gated engine's cycle model on the same lanes. BCR gates run
    on ``slices`` slices of ``lanes`` lanes each (``model_cycles``:
    :func:`hw.rnn.rnn_bcr_cycles` on as many); ``ValueError`` for ``slices`` > 1 with dense
    gates.
    """
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles, rnn_cycles
    from sim.rnn import (
        GRUJob,
        LSTMJob,
        golden_gru_sequence,
        golden_sequence,
        run_gru_batch,
        run_lstm_batch,
    )

    check_rnn_layer(layer, engine)
    gates = rnn_layer_gates(layer, gates)
    problem = slices_problem(engine, gates, slices)
    if problem is not None:
        raise ValueError(problem)
    isz, hsz = layer.shape.input_size, layer.shape.hidden_size
    bits, sw = layer.quant.bits, layer.quant.scale
    try:
        cfg = rnn_config(sw, bits, act_bits, layer.quant.act_scale)
    except ValueError as exc:
        raise ValueError(f"layer {layer.name!r}: its {exc}") from None
    t = layer.tensors
    w_ih = np.asarray(t["qweight_ih"], dtype=np.int64)
    w_hh = np.asarray(t["qweight_hh"], dtype=np.int64)
    acc_scale = sw * 2.0 ** -cfg.act_frac
    biases = [None if k not in t else np.clip(np.rint(np.asarray(t[k], np.float64) / acc_scale),
                                              -2**31, 2**31 - 1).astype(np.int64)
              for k in ("bias_ih", "bias_hh")]
    rng = np.random.default_rng(seed)
    amax = 2 ** (act_bits - 1) - 1
    x = rng.integers(-amax, amax + 1, size=(steps, isz), dtype=np.int64)
    h0 = np.zeros(hsz, dtype=np.int64)
    kw: dict[str, Any] = {"gates": gates}
    masks: tuple = ()
    if gates == "bcr":
        kw.update(block=tuple(layer.scheme.block), slices=slices)
        masks = (t["mask_ih"], t["mask_hh"])
    if engine == "lstm":
        job = LSTMJob(x, h0, h0, w_ih, w_hh, *biases, *masks)
        run = run_lstm_batch([job], cfg, lanes, simulator, isz, hsz, steps, **kw)[0]
        want_hs, want_c = golden_sequence(x, h0, h0, w_ih, w_hh, *biases, cfg)
        match = np.array_equal(run.h_seq, want_hs) and np.array_equal(run.c, want_c)
    else:
        job = GRUJob(x, h0, w_ih, w_hh, *biases, *masks)
        run = run_gru_batch([job], cfg, lanes, simulator, isz, hsz, steps, **kw)[0]
        want_hs = golden_gru_sequence(x, h0, w_ih, w_hh, *biases, cfg)
        match = np.array_equal(run.h_seq, want_hs)
    if gates == "bcr":
        matrix = bcr_gate_matrix(engine, w_ih, w_hh, kw["block"], *masks)
        model = rnn_bcr_cycles(matrix, isz, hsz, steps, lanes, slices, cell=engine)
    else:
        model = rnn_cycles(engine, isz, hsz, steps, lanes)
    return {"layer": layer.name, "engine": engine, "gates": gates, "rows": hsz, "cols": isz,
            "lanes": lanes, "slices": slices, "weight_bits": bits, "act_bits": act_bits,
            "simulator": simulator, "vectors": steps, "outputs_match": bool(match), "cycles": [int(run.cycles)],
            "model_cycles": [int(model)],
            "dense_cycles": int(rnn_cycles(engine, isz, hsz, steps, lanes))}


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


def simulate_pattern_layer(layer, lanes: int = 8, act_bits: int = 8,
                           simulator: str = "verilator", image: int = 8, seed: int = 0,
                           vectors: int = 1) -> dict[str, Any]:
    """Run a pattern-pruned 3x3 conv2d layer on the pattern engine's RTL for ``vectors``
    random ``image x image`` inputs (one build, one simulator process) and check each against
    ``ir.golden.conv2d`` and the cycle model.

    ``dense_cycles`` is the dense engine with the same lanes running the layer as im2col
    matrix-vector products, one per output position.
    """
    from hw.dense import dense_cycles
    from hw.pattern import pattern_cycles
    from ir.golden import conv2d
    from ir.pattern import encode_pattern
    from sim.pattern import run_pattern_batch

    shape = layer.shape
    if layer.op != "conv2d" or layer.scheme.kind != "pattern":
        raise ValueError(f"layer {layer.name!r} is a {layer.op} with scheme "
                         f"{layer.scheme.kind!r}; the pattern engine runs pattern-pruned conv2d "
                         "layers")
    if layer.quant is None:
        raise ValueError(f"layer {layer.name!r} has no quantized weights; the engines need "
                         "integer weights (compress with --bits)")
    stride, padding = shape.stride[0], shape.padding[0]
    if (shape.groups != 1 or shape.stride[0] != shape.stride[1] or stride not in (1, 2)
            or shape.padding[0] != shape.padding[1] or padding not in (0, 1)):
        raise ValueError(f"layer {layer.name!r}: the pattern engine runs groups 1, stride 1 or 2 "
                         "and padding 0 or 1 in both directions")
    qw = np.asarray(layer.tensors["qweight"], dtype=np.int64)
    mask = layer.tensors["mask"]
    library = layer.scheme.library()
    bits = layer.quant.bits
    rng = np.random.default_rng(seed)
    amax = 2 ** (act_bits - 1) - 1
    qxs = rng.integers(-amax, amax + 1, size=(vectors, shape.in_channels, image, image),
                       dtype=np.int64)
    runs = run_pattern_batch([(qw, mask, library, qx, stride, padding) for qx in qxs], lanes,
                             bits, act_bits, simulator)
    goldens = [conv2d(qw, qx, stride=stride, padding=padding) for qx in qxs]
    ho, wo = goldens[0].shape[1:]
    model = pattern_cycles(encode_pattern(qw, library, mask=mask), (ho, wo), lanes)
    return {"layer": layer.name, "engine": "pattern", "rows": shape.out_channels,
            "cols": shape.in_channels * 9, "lanes": lanes, "weight_bits": bits,
            "act_bits": act_bits, "simulator": simulator, "vectors": vectors, "image": image,
            "outputs_match": all(np.array_equal(r.outputs, g)
                                 for r, g in zip(runs, goldens, strict=True)),
            "cycles": [int(r.cycles) for r in runs], "model_cycles": [int(model)] * vectors,
            "dense_cycles": int(ho * wo * dense_cycles(shape.out_channels, shape.in_channels * 9,
                                                       lanes))}


def simulate_layer(layer, engine: str, lanes: int = 8, act_bits: int = 8,
                   simulator: str = "verilator", vectors: int = 4, seed: int = 0,
                   slices: int = 1) -> dict[str, Any]:
    """Run a bundle layer's matrix-vector product on an engine's RTL and check it.

    The layer's integer 2-D weight view (for conv2d: one output position per vector, i.e. the
    product with a random im2col column) multiplies ``vectors`` random ``act_bits`` activation
    vectors. Returns a dict with ``outputs_match`` (against ``ir.golden.linear``), the RTL
    ``cycles``, the engine's ``model_cycles`` and the dense engine's cycle model for the same
    lanes, ``dense_cycles`` (the unstructured engine's cycles depend on which activations are
    zero, so ``model_cycles`` is a list, one per vector, for every engine). ``lstm``/``gru``
    run :func:`simulate_rnn_layer` with ``vectors`` steps (gates chosen by the layer's scheme).
    The BCR engine (and BCR gates) run on ``slices`` slices of ``lanes`` lanes each, its
    ``model_cycles`` :func:`hw.bcr.bcr_cycles` on as many; the dict records ``slices`` (1 on
    the dense and unstructured engines, which have none: ``ValueError`` for more, see
    :func:`slices_problem`). ``dense_cycles`` stays one dense engine of ``lanes`` lanes.
    """
    from hw.dense import dense_cycles
    from ir.golden import linear

    if engine in ("lstm", "gru"):
        return simulate_rnn_layer(layer, engine, lanes=lanes, act_bits=act_bits,
                                  simulator=simulator, steps=vectors, seed=seed, slices=slices)
    problem = slices_problem(engine, "dense", slices)
    if problem is not None:
        raise ValueError(problem)
    if engine == "pattern":
        return simulate_pattern_layer(layer, lanes, act_bits, simulator, seed=seed,
                                      vectors=vectors)
    qw, mask = layer_matrix(layer)
    rows, cols = qw.shape
    bits = layer.quant.bits
    rng = np.random.default_rng(seed)
    amax = 2 ** (act_bits - 1) - 1
    xs = rng.integers(-amax, amax + 1, size=(vectors, cols), dtype=np.int64)
    if engine == "dense":
        from sim.dense import run_dense

        outputs, cycles = run_dense(qw, xs, lanes, bits, act_bits, simulator)
        model = [dense_cycles(rows, cols, lanes)] * vectors
    elif engine == "bcr":
        from hw.bcr import bcr_cycles
        from ir.bcr import encode_bcr
        from sim.bcr import run_bcr

        if layer.scheme.kind != "bcr":
            raise ValueError(f"layer {layer.name!r} has scheme {layer.scheme.kind!r}; the bcr "
                             "engine runs layers pruned with the bcr scheme")
        block = tuple(layer.scheme.block)
        outputs, cycles = run_bcr(qw, mask, block, xs, lanes, bits, act_bits, simulator,
                                  slices=slices)
        model = [bcr_cycles(encode_bcr(qw, block, mask=mask), lanes, slices)] * vectors
    elif engine == "unstructured":
        from hw.unstructured import unstructured_cycles
        from ir.csr import encode_csc_lanes
        from sim.unstructured import run_unstructured

        index_bits = getattr(layer.scheme, "index_bits", 4)
        outputs, cycles = run_unstructured(qw, xs, lanes, bits, act_bits, index_bits, simulator)
        enc = encode_csc_lanes(qw, lanes, index_bits)
        model = [unstructured_cycles(enc, x, lanes) for x in xs]
    else:
        raise ValueError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    golden = linear(qw, xs)
    return {"layer": layer.name, "engine": engine, "rows": rows, "cols": cols, "lanes": lanes,
            "slices": slices, "weight_bits": bits, "act_bits": act_bits, "simulator": simulator,
            "vectors": vectors, "outputs_match": bool(np.array_equal(outputs, golden)),
            "cycles": [int(c) for c in cycles], "model_cycles": [int(m) for m in model],
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


#: (layer, engine) pairs the demo runs in RTL: fc1 (BCR-pruned) on the dense and BCR engines,
#: fc2 (unstructured) on the unstructured engine, conv2 (3x3 patterns) on the pattern engine
#: (one 8x8 input; its dense figure is the dense engine running im2col per output position).
DEMO_RUNS = (("fc1", "dense"), ("fc1", "bcr"), ("fc2", "unstructured"), ("conv2", "pattern"))


def train_demo_model(seed: int = 0, epochs: int = 10):
    """TinyCNN trained on scikit-learn's digits: ``(model, train_loader, test_loader)``."""
    from pruning.data import loader
    from pruning.train import train
    from pruning.zoo import RECIPES, build

    recipe = RECIPES["tinycnn"]
    model = build("tinycnn", seed=seed)
    train_loader = loader("digits", "train", batch_size=int(recipe["batch_size"]), seed=seed)
    test_loader = loader("digits", "test", batch_size=256)
    train(model, train_loader, epochs=epochs, lr=float(recipe["lr"]), seed=seed)
    return model, train_loader, test_loader


def demo_compress_fn(train_loader, test_loader, seed: int = 0, admm_iters: int = 3,
                     retrain_epochs: int = 3, progress: bool = False):
    """``compress_fn(model, plan) -> CompressResult`` with the demo's training settings."""
    from pruning.compress import compress
    from pruning.zoo import RECIPES

    def compress_fn(model, plan):
        return compress(model, plan, train_loader, test_loader, admm_iters=admm_iters,
                        retrain_epochs=retrain_epochs, lr=float(RECIPES["tinycnn"]["lr"]),
                        seed=seed, progress=progress, model_name="tinycnn")
    return compress_fn


def compress_demo_model(seed: int = 0, epochs: int = 10, admm_iters: int = 3,
                        retrain_epochs: int = 3, progress: bool = False, trained=None):
    """Train TinyCNN on scikit-learn's digits and ADMM-compress it by :data:`DEMO_PLAN`.

    ``trained`` is a :func:`train_demo_model` result to start from (a copy is compressed).
    Returns the :class:`pruning.compress.CompressResult` (bundle, accuracies, table rows).
    """
    import copy

    from pruning.plan import Plan

    model, train_loader, test_loader = trained or train_demo_model(seed, epochs)
    compress_fn = demo_compress_fn(train_loader, test_loader, seed, admm_iters, retrain_epochs,
                                   progress)
    return compress_fn(copy.deepcopy(model), Plan.from_dict(DEMO_PLAN))


#: The demo loop: the unstructured engine, a first plan at 30% sparsity on every layer it runs;
#: a pushed plan may lose 2 pp (the digits test set has 360 images: one image is 0.28 pp).
DEMO_LOOP = {"engine": "unstructured", "sparsity": 0.3, "block": (8, 16), "tolerance": 2.0}


def run_demo(out: Path, simulator: str = "verilator", lanes: int = 8, seed: int = 0,
             echo: Callable[[str], None] = print) -> bool:
    """The end-to-end demo; returns True when outputs and cycles match the references.

    1. Compression: trains TinyCNN on scikit-learn's digits, ADMM-compresses it with
       :data:`DEMO_PLAN` (pattern, BCR and unstructured pruning, 8-bit weights), saves the bundle
       to ``out/bundle`` and prints its table and the accuracy before and after.
    2. Hardware: for each of :data:`DEMO_RUNS` emits the engine into ``out/verilog``, simulates
       the layer on ``simulator`` for random 8-bit activations, checks the outputs against
       ``ir.golden.linear`` and the cycles against the engine's cycle model, and prints the
       cycles against the dense engine's.
    3. The loop (:func:`demo_loop`): break-evens of the layers measured in RTL, the plan
       changed by them, compressed again, the before/after table, the loop's layers in RTL.
    4. Mobile: generated C for fc1, fc2 and conv2 (and their dense baselines), checked against
       the golden model and timed on the host, then under qemu-aarch64 with the modelled
       sparse/dense ratio (:func:`codesign.mobile_cmd.demo_stage`), into ``out/mobile``.
    """
    from codesign.report import layer_table, print_table
    from ir import Bundle

    out = Path(out)
    bits = 8
    echo("compressing TinyCNN (scikit-learn digits) with ADMM: pattern, BCR, unstructured, "
         f"{bits}-bit weights ...")
    trained = train_demo_model(seed)
    result = compress_demo_model(seed=seed, trained=trained)
    result.bundle.save(out / "bundle")
    bundle = Bundle.load(out / "bundle")
    print_table(layer_table(bundle), title=f"bundle {out / 'bundle'}")
    totals = result.totals()
    echo(f"accuracy (digits test): dense {result.accuracy_before:.2%}, compressed "
         f"{result.accuracy_after:.2%}; kept {totals['nnz']:,} of {totals['numel']:,} weights "
         f"({totals['pruning_ratio']:.2f}x); storage {totals['storage_reduction_weights']:.1f}x "
         f"smaller (weights only), {totals['storage_reduction_with_index']:.1f}x with index")

    runs = []
    for name, engine in DEMO_RUNS:
        layer = bundle.layer(name)
        if engine == "pattern":
            rows, cols = layer.shape.out_channels, layer.shape.in_channels
        else:
            rows, cols = layer_matrix(layer)[0].shape
        block = tuple(layer.scheme.block) if engine == "bcr" else (8, 16)
        emit_engine(engine, rows, cols, lanes, bits, bits, f"{engine}_{name}", out / "verilog",
                    block=block, image=8)
        echo(f"simulating {name} ({rows}x{cols}, {layer.scheme.kind}, density "
             f"{layer.stats.density:.2f}) on the {engine} engine, {lanes} lanes, {bits}-bit, "
             f"{simulator} ...")
        r = simulate_layer(layer, engine, lanes=lanes, act_bits=bits, simulator=simulator,
                           vectors=4, seed=seed)
        r["cycles_match"] = r["cycles"] == r["model_cycles"]
        runs.append(r)
    table = pd.DataFrame([{
        "layer": r["layer"], "engine": r["engine"], "shape": f"{r['rows']}x{r['cols']}",
        "outputs_match": "yes" if r["outputs_match"] else "NO",
        "rtl_cycles": r["cycles"][0],
        "cycle_model": "match" if r["cycles_match"] else "MISMATCH",
        "dense_cycles": r["dense_cycles"],
        "speedup_vs_dense": round(r["dense_cycles"] / max(1, r["cycles"][0]), 2)}
        for r in runs])
    print_table(table, title="engines in RTL simulation (first input vector)")
    ok = all(r["outputs_match"] and r["cycles_match"] for r in runs)
    echo(f"outputs match golden model: {'yes' if ok else 'NO'}")

    loop = demo_loop(trained, out, lanes=lanes, simulator=simulator, seed=seed, echo=echo)
    ok = ok and loop["ok"]

    from codesign.mobile_cmd import demo_stage  # 4. generated C for mobile CPUs

    mobile_ok = demo_stage(out / "bundle", out / "mobile", echo=echo)
    ok = ok and mobile_ok
    write_json(out / "demo.json", {
        "accuracy_dense": result.accuracy_before, "accuracy_compressed": result.accuracy_after,
        "lanes": lanes, "bits": bits, "simulator": simulator, "runs": runs, "loop": loop,
        "mobile_ok": mobile_ok, "ok": ok})
    echo(f"wrote {out / 'bundle'}, {out / 'verilog'}, {out / 'loop'}, {out / 'mobile'}, "
         f"{out / 'demo.json'}")
    return ok


def demo_loop(trained, out: Path, lanes: int = 8, simulator: str = "verilator", seed: int = 0,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The demo's closed loop (:data:`DEMO_LOOP`): TinyCNN's layers on a sparse engine, their
    break-evens measured in RTL, the plan changed by them, compressed again; prints the before
    and after table, saves the loop's bundle to ``out/loop/bundle`` and checks its layers once
    in RTL. Returns a JSON-ready summary with ``ok``."""
    from codesign.loop import check_in_rtl, initial_plan, run_loop
    from codesign.report import print_table
    from sim.breakeven import EngineConfig

    model, train_loader, test_loader = trained
    bits = 8
    engine, block = DEMO_LOOP["engine"], tuple(DEMO_LOOP["block"])
    echo(f"closing the loop: {engine} scheme at {DEMO_LOOP['sparsity']:.0%} sparsity, then each "
         f"layer's break-even on the {engine} engine ({lanes} lanes, {bits}-bit) in RTL ...")
    config = EngineConfig(engine, lanes=lanes, weight_bits=bits, act_bits=bits, block=block)
    targets = initial_plan(model, engine, DEMO_LOOP["sparsity"], bits=bits, block=block)
    res = run_loop(model, targets, demo_compress_fn(train_loader, test_loader, seed), config,
                   bits=bits, seeds=2, tolerance=DEMO_LOOP["tolerance"], simulator=simulator,
                   echo=echo)
    res.final.bundle.save(out / "loop" / "bundle")
    print_table(pd.DataFrame(res.table()), title="the loop: plan before and after the "
                                                 "break-evens (cycles per input image)")
    before = sum(c for _, c in res.cycles_before.values())
    after = sum(c for _, c in res.cycles_after.values())
    echo(f"accuracy: first plan {res.first.accuracy_after:.2%}, after the loop "
         f"{res.final.accuracy_after:.2%}; engine cycles per image {before:,} -> {after:,}")
    rtl = check_in_rtl(res.final.bundle, res.cycles_after, lanes, simulator=simulator, seed=seed)
    ok = all(r["outputs_match"] and r["cycles_match"] for r in rtl)
    echo(f"loop's layers in RTL match golden model and cycle models: {'yes' if ok else 'NO'}")
    return {"engine": engine, "decisions": [d.to_json() for d in res.decisions],
            "accuracy_first": res.first.accuracy_after, "accuracy_final": res.final.accuracy_after,
            "cycles_before": before, "cycles_after": after, "rtl": rtl, "ok": ok}
