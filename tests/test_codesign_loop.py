"""codesign.loop: the re-planning rule, plans, cycles; the whole loop in RTL on TinyCNN."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from codesign.loop import (
    DEFAULT_CAP,
    Decision,
    decide,
    eligible,
    initial_plan,
    layer_cycles,
    output_positions,
    plan_from,
)
from pruning.plan import resolve
from pruning.zoo import build


def be(ratio, runs=12, storage=None):
    return SimpleNamespace(ratio=ratio, storage_ratio=storage, rtl_runs=runs)


OPS = {"a": "linear", "b": "linear", "c": "conv2d", "d": "linear", "e": "linear"}


def test_decide_keeps_pushes_and_leaves_dense():
    targets = {"a": 0.9, "b": 0.5, "c": None, "d": 0.5, "e": 0.5}
    bes = {"a": be(0.6), "b": be(0.7012), "d": be(None), "e": be(DEFAULT_CAP - 0.01)}
    got = {d.layer: d for d in decide(targets, bes, OPS, margin=0.02)}
    assert got["a"] == Decision("a", "linear", 0.9, 0.6, None, 12, "kept", 0.9)
    assert got["b"].action == "pushed" and got["b"].sparsity == pytest.approx(0.722)
    assert got["b"].sparsity >= 0.7012 + 0.02
    assert got["c"].action == "not run" and got["c"].sparsity is None
    assert got["d"].action == "dense" and got["d"].sparsity is None  # never breaks even
    assert got["e"].action == "dense"  # break-even + margin above the cap


def test_decide_target_equal_to_break_even_is_kept():
    (d,) = decide({"a": 0.75}, {"a": be(0.75)}, OPS)
    assert d.action == "kept" and d.sparsity == 0.75


def test_initial_plan_picks_the_layers_each_engine_runs():
    m = build("tinycnn", seed=0)
    assert initial_plan(m, "bcr", 0.8, bits=8) == {
        "conv1": None, "conv2": 0.8, "fc1": 0.8, "fc2": 0.8}  # conv1 is 8x9 < 8x16 block
    assert initial_plan(m, "pattern", 0.8, bits=8) == {
        "conv1": 0.8, "conv2": 0.8, "fc1": None, "fc2": None}
    assert initial_plan(m, "unstructured", 0.5, bits=8) == dict.fromkeys(
        ["conv1", "conv2", "fc1", "fc2"], 0.5)
    with pytest.raises(ValueError, match="unknown engine 'dense'; allowed: bcr, "
                                         "unstructured, pattern"):
        initial_plan(m, "dense", 0.8, bits=8)
    with pytest.raises(ValueError, match="the pattern engine can run no layer of this model"):
        initial_plan(build("lstm", seed=0, dataset="mnist1d"), "pattern", 0.8, bits=8)


def test_eligible_pattern_needs_3x3_stride_1_2_pad_0_1():
    from torch import nn

    assert eligible(nn.Conv2d(4, 4, 3, padding=1), "pattern")
    assert not eligible(nn.Conv2d(4, 4, 5, padding=1), "pattern")
    assert not eligible(nn.Conv2d(4, 4, 3, padding=2), "pattern")
    assert not eligible(nn.Conv2d(4, 4, 3, groups=2), "unstructured")
    assert not eligible(nn.Linear(4, 4), "pattern")


def test_plan_from_resolves_to_the_engine_scheme_or_dense():
    m = build("tinycnn", seed=0)
    plan = plan_from({"conv1": None, "conv2": 0.75, "fc1": 0.9, "fc2": 0.5}, "bcr", bits=6,
                     block=(4, 8))
    plans = resolve(plan, m)
    assert plans["conv1"].config.kind == "dense" and plans["conv1"].bits == 6
    assert plans["fc1"].config.kind == "bcr" and plans["fc1"].config.block == (4, 8)
    assert plans["conv2"].config.row_sparsity == pytest.approx(0.5)
    u = resolve(plan_from({"fc1": 0.9}, "unstructured", bits=8, index_bits=3), m)["fc1"].config
    assert (u.kind, u.sparsity, u.scope, u.index_bits) == ("unstructured", 0.9, "layer", 3)
    p = resolve(plan_from({"conv2": 0.8}, "pattern", bits=8), m)["conv2"].config
    assert p.kind == "pattern" and p.connectivity == pytest.approx(1 - 9 * 0.2 / 4)


def test_output_positions_of_tinycnn():
    positions, images = output_positions(build("tinycnn", seed=0))
    assert positions == {"conv1": 64, "conv2": 16}
    assert images == {"conv1": (8, 8), "conv2": (4, 4)}


def _bundle_layer(kind: str, rng: np.random.Generator):
    from ir import Bundle
    from pruning.export import export
    from pruning.plan import Plan

    m = build("tinycnn", seed=0)
    rule = {"bcr": {"scheme": "bcr", "block": [8, 16], "sparsity": 0.75, "bits": 8},
            "unstructured": {"scheme": "unstructured", "sparsity": 0.7, "scope": "layer",
                             "bits": 8},
            "pattern": {"scheme": "pattern", "library_size": 4, "connectivity": 0.5,
                        "bits": 8}}[kind]
    name = "conv2" if kind == "pattern" else "fc1"
    plans = resolve(Plan.from_dict({"layers": {name: rule}}), m)
    bundle = export(m, plans)
    assert isinstance(bundle, Bundle)
    return bundle.layer(name)


@pytest.mark.parametrize("kind", ["bcr", "unstructured", "pattern"])
def test_layer_cycles_follow_the_engine_cycle_models(kind):
    from hw.dense import dense_cycles

    layer = _bundle_layer(kind, np.random.default_rng(0))
    if kind == "pattern":
        sparse = layer_cycles(layer, "pattern", 4, positions=16)
        assert sparse < layer_cycles(layer, "dense", 4, positions=16)
        assert layer_cycles(layer, "dense", 4, positions=16) == 16 * dense_cycles(16, 72, 4)
    else:
        assert layer_cycles(layer, "dense", 4) == dense_cycles(48, 64, 4)
        assert layer_cycles(layer, kind, 4, positions=3) == 3 * layer_cycles(layer, kind, 4)
