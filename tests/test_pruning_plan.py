"""Compression plans: reading TOML/JSON, precedence, resolution and every error message."""

from __future__ import annotations

import json
import math

import pytest
from torch import nn

from pruning.plan import LayerPlan, Plan, PlanError, Rule, load_plan, resolve
from pruning.schemes import BCRConfig, DenseConfig, NMConfig, PatternConfig, UnstructuredConfig
from pruning.zoo import build

TOML = """
[default]
scheme = "unstructured"
ratio = 4
bits = 4

[types.conv2d]
ratio = 2

[layers.conv2]
scheme = "pattern"
ratio = 9

[layers.fc1]
scheme = "bcr"
block = [8, 16]
row_sparsity = 0.5
col_sparsity = 0.75
bits = 6

[layers.fc2]
bits = false
"""


@pytest.fixture(scope="module")
def tiny():
    return build("tinycnn")


def test_toml_and_json_resolve_with_precedence(tmp_path, tiny):
    path = tmp_path / "plan.toml"
    path.write_text(TOML)
    plan = load_plan(path)
    (tmp_path / "plan.json").write_text(json.dumps(plan.to_json()))
    assert load_plan(tmp_path / "plan.json") == plan
    got = resolve(plan, tiny)
    assert list(got) == ["conv1", "conv2", "fc1", "fc2"]
    assert got["conv1"] == LayerPlan("conv1", "conv2d", UnstructuredConfig(0.5), 4)
    assert got["conv2"] == LayerPlan("conv2", "conv2d", PatternConfig(connectivity=0.75), 4)
    assert got["fc1"] == LayerPlan("fc1", "linear", BCRConfig((8, 16), 0.5, 0.75), 6)
    assert got["fc2"] == LayerPlan("fc2", "linear", UnstructuredConfig(0.75), None)
    assert got["fc1"].to_json() == {"name": "fc1", "op": "linear", "bits": 6, "scheme": {
        "kind": "bcr", "block": [8, 16], "row_sparsity": 0.5, "col_sparsity": 0.75}}


def test_a_ratio_and_the_amount_keys_replace_one_another(tiny):
    """A layer rule giving connectivity (or row/col sparsity) under a type rule's ratio was
    'give either a ratio (or sparsity) or connectivity ..., not both' though it set no ratio."""
    got = resolve(Plan.from_dict({
        "types": {"conv2d": {"scheme": "pattern", "ratio": 8},
                  "linear": {"scheme": "bcr", "block": [4, 4], "row_sparsity": 0.5,
                             "col_sparsity": 0.5}},
        "layers": {"conv1": {"connectivity": 0.0, "library_size": 4},
                   "fc1": {"ratio": 16}, "fc2": {"row_sparsity": 0.25}}}), tiny)
    assert got["conv1"].config == PatternConfig(library_size=4, connectivity=0.0)
    assert got["conv2"].config.connectivity == pytest.approx(1 - 9 / 32)     # the type's ratio
    assert got["fc1"].config == BCRConfig((4, 4), 0.75, 0.75)                  # ratio replaces
    assert got["fc2"].config == BCRConfig((4, 4), 0.25, 0.5)                   # merged keys


def test_rho_is_inherited_like_bits_and_recorded(tmp_path, tiny):
    path = tmp_path / "plan.toml"
    path.write_text('[default]\nscheme = "unstructured"\nratio = 4\nrho = 0.02\n\n'
                    '[types.linear]\nrho = 0.005\n\n[layers.fc2]\nscheme = "nm"\nn = 2\nm = 4\n')
    plan = load_plan(path)
    assert Plan.from_dict(plan.to_json()) == plan
    got = resolve(plan, tiny)
    assert {n: p.rho for n, p in got.items()} == {"conv1": 0.02, "conv2": 0.02, "fc1": 0.005,
                                                  "fc2": 0.005}
    assert got["fc1"].to_json()["rho"] == 0.005
    assert "rho" not in resolve(Plan.uniform("unstructured", ratio=4), tiny)["fc1"].to_json()


def test_ratio_conversions(tiny):
    got = resolve(Plan.from_dict({"layers": {
        "conv2": {"scheme": "pattern", "ratio": 4.5}, "fc1": {"scheme": "bcr", "ratio": 16},
        "fc2": {"scheme": "nm", "n": 1, "m": 4, "bits": 8}}}), tiny)
    assert list(got) == ["conv2", "fc1", "fc2"]                  # conv1: no rule, left alone
    assert got["conv2"].config.connectivity == 0.5               # 4/9 * (1 - 0.5) = 1/4.5
    assert math.isclose(4 / 9 * (1 - got["conv2"].config.connectivity), 1 / 4.5)
    assert got["fc1"].config == BCRConfig((8, 16), 0.75, 0.75)    # (1 - 0.75)^2 = 1/16
    assert got["fc2"].config == NMConfig(1, 4) and got["fc2"].bits == 8
    only_bits = resolve(Plan.from_dict({"default": {"bits": 8}}), tiny)
    assert all(p.config == DenseConfig() and p.bits == 8 for p in only_bits.values())
    assert Plan.uniform("unstructured", sparsity=0.9).default == Rule("unstructured", None, 0.9)


def test_rnn_plans_check_both_matrices():
    lstm = build("lstm", hidden_size=8)
    got = resolve(Plan.from_dict({"types": {"lstm": {"scheme": "bcr", "block": [8, 1],
                                                     "ratio": 4}}}), lstm)
    assert got["rnn"].op == "lstm" and got["rnn"].config.block == (8, 1)
    with pytest.raises(PlanError) as exc:
        resolve(Plan.uniform("bcr", ratio=4), lstm)
    assert str(exc.value) == "layer 'rnn': BCR block 8x16 is larger than the 32x1 weight_ih matrix"


@pytest.mark.parametrize("data, message", [
    ({"layers": {"fc3": {"scheme": "unstructured", "ratio": 4}}},
     "layer 'fc3': no such layer in the model; prunable layers: conv1, conv2, fc1, fc2"),
    ({"layers": {"fc1": {"scheme": "unstructured", "ratio": 0.5}}},
     "layer 'fc1': ratio must be a compression ratio greater than 1 (85 keeps 1/85 of the "
     "weights), not 0.5"),
    ({"layers": {"fc1": {"scheme": "unstructured", "ratio": 1}}},
     "layer 'fc1': ratio must be a compression ratio greater than 1 (85 keeps 1/85 of the "
     "weights), not 1"),
    ({"layers": {"fc1": {"scheme": "unstructured", "ratio": 1e13}}},  # sparsity rounds to 1
     "layer 'fc1': ratio must be at most 1e+12, not 10000000000000.0"),
    ({"layers": {"fc1": {"scheme": "unstructured", "sparsity": 1.0}}},
     "layer 'fc1': sparsity must be a number in [0, 1), not 1.0"),
    ({"layers": {"fc1": {"scheme": "unstructured", "sparsity": -0.1}}},
     "layer 'fc1': sparsity must be a number in [0, 1), not -0.1"),
    ({"layers": {"conv1": {"scheme": "bcr", "ratio": 4}}},
     "layer 'conv1': BCR block 8x16 is larger than the 8x9 weight matrix"),
    ({"layers": {"fc1": {"scheme": "pattern"}}},
     "layer 'fc1': the pattern scheme needs a 3x3 convolution, not a linear layer"),
    ({"layers": {"fc1": {"scheme": "unstructured", "ratio": 4, "bits": 17}}},
     "layer 'fc1': bits must be an integer from 2 to 16 (or false for float weights), not 17"),
    ({"default": {"scheme": "unstructured", "ratio": 4, "bits": 1}},
     "default: bits must be an integer from 2 to 16 (or false for float weights), not 1"),
    ({"types": {"conv": {"scheme": "unstructured", "ratio": 4}}},
     "unknown layer type 'conv'; allowed: conv2d, linear, lstm, gru"),
    ({"types": {"conv2d": {"scheme": "unstrutured", "ratio": 4}}},
     "layer type 'conv2d': unknown scheme 'unstrutured'; allowed: dense, unstructured, filter, "
     "column, pattern, bcr, nm"),
    ({"layers": {"fc1": {"scheme": "bcr", "blok": [2, 2]}}},
     "layer 'fc1': unknown key 'blok' for scheme 'bcr'; allowed: scheme, ratio, sparsity, bits, "
     "rho, block, row_sparsity, col_sparsity"),
    ({"layers": {"fc1": {"scheme": "unstructured", "ratio": 4, "rho": 0}}},
     "layer 'fc1': rho must be a positive number (the layer's initial ADMM penalty), not 0"),
    ({"types": {"linear": {"rho": "high"}}},
     "layer type 'linear': rho must be a positive number (the layer's initial ADMM penalty), "
     "not 'high'"),
    ({"layers": {"fc1": {"scheme": "unstructured", "ratio": 4, "sparsity": 0.5}}},
     "layer 'fc1': give either ratio or sparsity, not both"),
    ({"layers": {"fc1": {"scheme": "nm", "ratio": 2}}},
     "layer 'fc1': scheme 'nm' takes no ratio or sparsity (set n and m)"),
    ({"layers": {"fc1": {"scheme": "unstructured"}}},
     "layer 'fc1': scheme 'unstructured' needs a ratio or a sparsity"),
    ({"layers": {"fc1": {"scheme": "bcr", "block": [0, 2]}}},
     "layer 'fc1': Block must be a pair of positive integers, not [0, 2]"),
    ({"layers": {"fc1": {"scheme": "bcr", "ratio": 4, "row_sparsity": 0.5}}},
     "layer 'fc1': give either a ratio (or sparsity) or row_sparsity and col_sparsity for the "
     "BCR scheme, not both"),
    ({"layers": {"fc1": {"scheme": "unstructured", "scope": "global", "ratio": 4},
                 "fc2": {"scheme": "unstructured", "scope": "global", "ratio": 8}}},
     "layers 'fc1', 'fc2': global unstructured pruning needs one sparsity for all its layers"),
    ({"layer": {}}, "unknown plan key 'layer'; allowed: default, types, layers"),
    ({"layers": {"fc1": 3}}, "layer 'fc1': must be a table of keys, not int"),
])
def test_plan_errors(tiny, data, message):
    with pytest.raises(PlanError) as exc:
        resolve(Plan.from_dict(data), tiny)
    assert str(exc.value) == message


def test_errors_that_depend_on_the_model():
    with pytest.raises(PlanError) as exc:
        resolve(Plan.uniform("pattern"), build("lenet5"))
    assert str(exc.value) == ("layer 'conv1': the pattern scheme needs a 3x3 convolution, not a "
                              "5x5 convolution")
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.LSTM(4, 4, num_layers=2))
    with pytest.raises(PlanError) as exc:
        resolve(Plan.from_dict({"layers": {"1": {"bits": 8}}}), seq)
    assert str(exc.value) == "layer '1': ReLU is not a prunable layer (Conv2d, Linear, LSTM, GRU)"
    with pytest.raises(PlanError) as exc:
        resolve(Plan.from_dict({"types": {"lstm": {"bits": 8}}}), seq)
    assert str(exc.value) == ("layer '2': only single-layer, unidirectional LSTM without "
                              "projection is supported")


def test_unreadable_plans(tmp_path):
    with pytest.raises(PlanError) as exc:
        load_plan(tmp_path / "missing.toml")
    assert str(exc.value) == f"cannot read plan {tmp_path / 'missing.toml'}: No such file or directory"
    bad = tmp_path / "bad.toml"
    bad.write_text("[default\nscheme = 1\n")
    with pytest.raises(PlanError, match=r"^cannot read plan .*bad.toml: Expected ']'"):
        load_plan(bad)
    with pytest.raises(PlanError) as exc:
        load_plan(tmp_path / "plan.yaml")
    assert str(exc.value) == (f"cannot read plan {tmp_path / 'plan.yaml'}: the file name must end "
                              "in .toml or .json")
    # RecursionError and ValueError (int() refuses over 4,300 digits) were tracebacks
    for name, text in (("deep.json", "[" * 100_000), ("deep.toml", "a = " + "[" * 100_000),
                       ("big.json", '{"default": {"ratio": ' + "9" * 5000 + "}}"),
                       ("big.toml", "x = " + "9" * 5000)):
        (tmp_path / name).write_text(text)
        with pytest.raises(PlanError, match=rf"^cannot read plan .*{name}: (nested too deeply|"
                                            r"Exceeds the limit \(4300 digits\))"):
            load_plan(tmp_path / name)


def test_readme_plan_example_resolves_on_vggsmall(tmp_path):
    """The plan.toml the README's commands use stays valid and means what its comments say."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 3     # vggsmall's plan.toml, the LSTM's rnn_plan.toml, vgg_plan.toml
    (tmp_path / "plan.toml").write_text(blocks[0])
    plans = resolve(load_plan(tmp_path / "plan.toml"), build("vggsmall"))
    assert set(plans) == {"features.0", "features.3", "features.7", "features.10", "features.14",
                          "fc1", "fc2"}
    assert all(p.bits == 4 for p in plans.values())
    assert plans["features.0"].config == PatternConfig(connectivity=0.0)
    assert plans["features.14"].config == PatternConfig(connectivity=0.5)
    assert plans["fc1"].config == UnstructuredConfig(sparsity=0.875)


def test_readme_rnn_plan_resolves_on_the_mnist5k_lstm(tmp_path):
    """The rnn_plan.toml of the README's `codesign compare` example: BCR 16x16 at 4x on the
    LSTM, unstructured 2x on its head, 8-bit weights."""
    import re
    from pathlib import Path

    from pruning.schemes import BCRConfig

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)[1]
    (tmp_path / "rnn_plan.toml").write_text(block)
    plans = resolve(load_plan(tmp_path / "rnn_plan.toml"), build("lstm", dataset="mnist5k"))
    assert set(plans) == {"rnn", "fc"} and all(p.bits == 8 for p in plans.values())
    assert isinstance(plans["rnn"].config, BCRConfig) and plans["rnn"].config.block == (16, 16)
    assert plans["fc"].config == UnstructuredConfig(sparsity=0.5)


def test_readme_vgg_plan_for_compare(tmp_path):
    """The vgg_plan.toml of the README's conv `codesign compare` example: pattern 4x on every
    convolution, unstructured 4x on the linear layers, 8-bit weights."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)[2]
    (tmp_path / "vgg_plan.toml").write_text(block)
    plans = resolve(load_plan(tmp_path / "vgg_plan.toml"), build("vggsmall"))
    assert all(p.bits == 8 for p in plans.values())
    assert {n for n, p in plans.items() if isinstance(p.config, PatternConfig)} == {
        "features.0", "features.3", "features.7", "features.10", "features.14"}
    assert plans["fc1"].config == UnstructuredConfig(sparsity=0.75)
