"""The demo flow end to end: bundle -> Verilog -> RTL simulation, checked."""

from __future__ import annotations

import json
import re

import pytest

from codesign.cli import main
from ir import Bundle


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--lanes", "4"]) == 0
    text = capsys.readouterr().out
    assert "outputs match golden model: yes" in text
    result = json.loads((out / "demo.json").read_text())
    assert result["ok"]
    assert [(r["layer"], r["engine"]) for r in result["runs"]] == [
        ("fc1", "dense"), ("fc1", "bcr"), ("fc2", "unstructured"), ("conv2", "pattern")]
    for r in result["runs"]:
        assert r["outputs_match"] and r["cycles"] == r["model_cycles"]
    dense, bcr = result["runs"][0], result["runs"][1]
    assert bcr["cycles"][0] < dense["cycles"][0]  # fc1 keeps a quarter of its weights
    bundle = Bundle.load(out / "bundle")
    assert [x.name for x in bundle.layers] == ["conv1", "conv2", "fc1", "fc2"]
    assert [x.scheme.kind for x in bundle.layers] == ["dense", "pattern", "bcr", "unstructured"]
    assert all(x.quant is not None and x.quant.bits == 8 for x in bundle.layers)
    assert bundle.layer("fc1").stats.density == 0.25
    assert result["accuracy_compressed"] > 0.8  # TinyCNN on 8x8 digits, well above chance
    assert "accuracy (digits test)" in text
    assert sorted(p.name for p in (out / "verilog").iterdir()) == [
        "bcr_fc1.json", "bcr_fc1.v", "dense_fc1.json", "dense_fc1.v", "pattern_conv2.json",
        "pattern_conv2.v", "unstructured_fc2.json", "unstructured_fc2.v"]
    # the loop stage: break-evens measured in RTL, recorded in the loop's bundle
    loop = result["loop"]
    assert loop["ok"] and loop["engine"] == "unstructured"
    assert "the loop: plan before and after the break-evens" in text
    decisions = {d["layer"]: d for d in loop["decisions"]}
    assert set(decisions) == {"conv1", "conv2", "fc1", "fc2"}
    for d in decisions.values():
        assert d["rtl_runs"] > 0 and d["target"] == 0.3
        if d["break_even"] is not None and d["break_even"] > 0.3:
            assert d["action"] in ("pushed", "dense")  # a layer below its break-even moves
    assert loop["cycles_after"] <= loop["cycles_before"]
    looped = Bundle.load(out / "loop" / "bundle")
    assert all(x.break_even is not None for x in looped.layers)


def test_simulate_rnn_layer_gru_icarus():
    """A GRU built by hand as an ir layer (BCR masks from the pruning projection, int8
    weights), run by simulate_rnn_layer on Icarus with BCR and with dense gates."""
    import numpy as np
    import torch

    from codesign.flow import simulate_rnn_layer
    from ir import BCR, Layer, QuantSpec
    from pruning.projections import bcr_mask

    rng = np.random.default_rng(0)
    tensors = {}
    for part, cols in (("ih", 6), ("hh", 4)):
        w = rng.normal(size=(12, cols)).astype(np.float32)
        m = bcr_mask(torch.from_numpy(w), (4, 4), 0.5, 0.5).numpy()
        q = np.where(m, np.clip(np.rint(w / 0.02), -127, 127), 0).astype(np.int8)
        tensors |= {f"weight_{part}": q.astype(np.float32) * np.float32(0.02),
                    f"qweight_{part}": q, f"mask_{part}": m.astype(np.uint8),
                    f"bias_{part}": rng.normal(size=12).astype(np.float32)}
    layer = Layer(name="g", op="gru", shape={"input_size": 6, "hidden_size": 4,
                                            "gate_order": ["r", "z", "n"]},
                  scheme=BCR(block=(4, 4), row_ratio=0.5, col_ratio=0.5),
                  quant=QuantSpec(bits=8, scale=0.02), tensors=tensors)
    for gates in ("auto", "dense"):
        r = simulate_rnn_layer(layer, "gru", gates, lanes=4, simulator="icarus", steps=3)
        assert r["outputs_match"] and r["cycles"] == r["model_cycles"]
        assert r["gates"] == ("bcr" if gates == "auto" else "dense") and r["slices"] == 1
        if gates == "auto":
            one = r["cycles"][0]
    assert r["cycles"] == [r["dense_cycles"]]
    # two slices of the BCR gates: the gate matrix (16 x 12 in 4x4 blocks) has 4 block rows
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles

    r = simulate_rnn_layer(layer, "gru", lanes=4, simulator="icarus", steps=3, slices=2)
    assert r["outputs_match"] and r["slices"] == 2 and r["gates"] == "bcr"
    matrix = bcr_gate_matrix("gru", tensors["qweight_ih"], tensors["qweight_hh"], (4, 4),
                             tensors["mask_ih"], tensors["mask_hh"])
    assert r["cycles"] == r["model_cycles"] == [rnn_bcr_cycles(matrix, 6, 4, 3, 4, 2,
                                                               cell="gru")]
    assert r["cycles"][0] < one
    with pytest.raises(ValueError, match="^--slices splits the BCR engine into pipelines; the "
                                         "gru engine with dense gates has none"):
        simulate_rnn_layer(layer, "gru", "dense", lanes=4, simulator="icarus", slices=2)


def test_emit_engine_slices(tmp_path):
    """slices=1 emits what emit_engine emitted before it had slices (no slices in the sidecar,
    no slice_blocks port); slices=2 a different module, recorded in the sidecar."""
    from codesign.flow import emit_engine, simulate_layer

    def emit(engine, folder, **kw):
        v, j = emit_engine(engine, 24, 20, 4, 8, 8, engine, tmp_path / folder, steps=4,
                           block=(4, 4) if engine != "bcr" else (8, 16), **kw)
        return v.read_text(), json.loads(j.read_text())["parameters"]

    for engine, kw in (("bcr", {}), ("lstm", {"gates": "bcr"})):
        default, one, two = (emit(engine, folder, **kw, **extra) for folder, extra in (
            ("default", {}), ("one", {"slices": 1}), ("two", {"slices": 2})))
        assert one == default and "slices" not in one[1] and "slice_blocks" not in one[0]
        assert two[1] == {**one[1], "slices": 2} and "slice_blocks" in two[0]
    for engine, gates, text in (
            ("dense", "dense", "--engine dense has none (give it to --engine bcr, or to "
                               "lstm/gru with BCR gates)"),
            ("gru", "dense", "the gru engine with dense gates has none (give --gates bcr, or a "
                             "BCR-pruned --layer)")):
        with pytest.raises(ValueError, match=re.escape(
                f"--slices splits the BCR engine into pipelines; {text}")):
            emit_engine(engine, 8, 8, 4, 8, 8, "x", tmp_path / "no", gates=gates, slices=2)
    with pytest.raises(ValueError, match="--engine unstructured has none"):
        simulate_layer(None, "unstructured", slices=3)        # refused before the layer is read
    assert not (tmp_path / "no").exists()
