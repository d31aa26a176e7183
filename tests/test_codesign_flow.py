"""The demo flow end to end: bundle -> Verilog -> RTL simulation, checked."""

from __future__ import annotations

import json

from codesign.cli import main
from ir import Bundle


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--lanes", "4"]) == 0
    text = capsys.readouterr().out
    assert "outputs match golden model: yes" in text
    result = json.loads((out / "demo.json").read_text())
    assert result["outputs_match"] and result["cycles_match"]
    assert result["rtl_cycles"] == [result["model_cycles"]] * 4
    bundle = Bundle.load(out / "bundle")
    assert [x.name for x in bundle.layers] == ["conv1", "conv2", "fc1", "fc2"]
    assert [x.scheme.kind for x in bundle.layers] == ["dense", "pattern", "bcr", "unstructured"]
    assert all(x.quant is not None and x.quant.bits == 8 for x in bundle.layers)
    assert bundle.layer("fc1").stats.density == 0.25
    assert result["accuracy_compressed"] > 0.8  # TinyCNN on 8x8 digits, well above chance
    assert "accuracy (digits test)" in text
    assert sorted(p.suffix for p in (out / "verilog").iterdir()) == [".json", ".v"]
