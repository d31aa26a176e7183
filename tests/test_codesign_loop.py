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


def test_decide_uses_the_sparsity_the_first_compression_reached():
    """A pattern layer planned at 0.3 has sparsity 5/9 (4 of 9 weights kept), which is the
    pattern engine's break-even: it was pushed (and conv1 of tinycnn then left dense, 67 ->
    704 cycles) though it already broke even."""
    (d,) = decide({"conv1": 0.3}, {"conv1": be(0.555555556)}, {"conv1": "conv2d"},
                  reached={"conv1": 1 - 4 / 9})
    assert d.action == "kept" and d.sparsity == 0.3
    (d,) = decide({"conv1": 0.3}, {"conv1": be(0.555555556)}, {"conv1": "conv2d"})
    assert d.action == "pushed"                     # without what it reached: the target


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


# -- run_loop: the search over pushes (break-evens given), then the whole loop in RTL ----------
def _fake_compress(accuracy_of):
    """A compress_fn that exports the plan's plain projection (no training) and scores it
    with ``accuracy_of(sparsities)``."""
    from pruning.compress import CompressResult, layer_row
    from pruning.export import export

    def compress_fn(model, plan):
        plans = resolve(plan, model)
        bundle = export(model, plans)
        spars = {n: (None if p.config.kind == "dense" else
                     round(1 - bundle.layer(n).stats.density, 3)) for n, p in plans.items()}
        return CompressResult(bundle=bundle, plans=plans, accuracy_before=0.9,
                              accuracy_projected=None, accuracy_after=accuracy_of(plans),
                              rows=tuple(layer_row(x) for x in bundle.layers), history=(),
                              seconds=0.0, settings={"sparsities": spars})
    return compress_fn


def test_run_loop_pushes_within_the_tolerance_and_records_break_evens(monkeypatch):
    import codesign.loop as loop_mod
    from sim.breakeven import EngineConfig

    bes = {"conv2": be(0.6), "fc1": be(0.45), "fc2": be(0.8)}
    monkeypatch.setattr(loop_mod, "measure_breakevens", lambda bundle, names, *a, **k:
                        {n: bes[n] for n in names})

    def accuracy(plans):  # every pushed layer (sparsity above 0.3) costs 0.4 pp
        pushed = sum(1 for p in plans.values() if p.config.kind == "unstructured"
                     and p.config.sparsity > 0.31)
        return 0.90 - 0.004 * pushed

    model = build("tinycnn", seed=0)
    targets = {"conv1": None, "conv2": 0.3, "fc1": 0.3, "fc2": 0.3}
    res = loop_mod.run_loop(model, targets, _fake_compress(accuracy),
                            EngineConfig("unstructured", lanes=4), bits=8, tolerance=0.5,
                            echo=lambda s: None, push_order="smallest")
    got = {d.layer: (d.action, d.sparsity) for d in res.decisions}
    # fc1 needs the smallest push (0.3 -> 0.47): it alone fits 0.5 pp; the others go dense
    assert got == {"conv1": ("not run", None), "conv2": ("dense", None),
                   "fc1": ("pushed", 0.47), "fc2": ("dense", None)}
    assert res.rejected
    assert [t["pushed"] for t in res.tried] == [[], ["fc1", "conv2", "fc2"], ["fc1"],
                                                ["fc1", "conv2"]]
    bundle = res.final.bundle
    assert bundle.layer("fc1").break_even == 0.45 and bundle.layer("fc2").break_even == 0.8
    assert bundle.layer("conv1").break_even is None
    assert bundle.layer("fc1").scheme.kind == "unstructured"
    assert bundle.layer("fc2").scheme.kind == "dense" and bundle.layer("fc2").quant.bits == 8
    assert res.cycles_after["fc2"][0] == "dense" and res.cycles_before["fc2"][0] == "unstructured"
    assert res.plan_after.to_json()["layers"]["fc1"]["sparsity"] == 0.47


def _points(gain_at):
    """Fake break-even points: at each ratio of ``gain_at``, dense 1000 and sparse 1000 - gain."""
    return tuple(SimpleNamespace(ratio=r, dense_cycles=1000, sparse_cycles=1000 - g)
                 for r, g in gain_at.items() for _ in range(2))


def test_push_gain_reads_the_points_at_or_above_the_sparsity():
    from codesign.loop import push_gain

    b = SimpleNamespace(ratio=0.5, points=_points({0.5: -10, 0.6: 40, 0.7: 90}))
    assert push_gain(b, 0.52) == 40 and push_gain(b, 0.6) == 40 and push_gain(b, 0.9) == 90
    assert push_gain(be(0.5), 0.6) == 0.0 and push_gain(None, 0.6) == 0.0


def test_run_loop_pushes_most_cycles_first_and_reports_test_accuracy(monkeypatch):
    """With the "cycles" order the push that saves the most cycles is tried first; the test
    accuracy of every compression is reported but does not decide."""
    import codesign.loop as loop_mod
    from sim.breakeven import EngineConfig

    bes = {"conv2": SimpleNamespace(ratio=0.6, storage_ratio=None, rtl_runs=6,
                                    points=_points({0.6: 0, 0.65: 500})),
           "fc1": SimpleNamespace(ratio=0.45, storage_ratio=None, rtl_runs=6,
                                  points=_points({0.45: 0, 0.5: 20})),
           "fc2": SimpleNamespace(ratio=0.8, storage_ratio=None, rtl_runs=6,
                                  points=_points({0.8: 0, 0.85: 100}))}
    monkeypatch.setattr(loop_mod, "measure_breakevens", lambda bundle, names, *a, **k:
                        {n: bes[n] for n in names})

    def accuracy(plans):  # each push costs 0.4 pp on validation
        return 0.90 - 0.004 * sum(1 for p in plans.values() if p.config.kind == "unstructured"
                                  and p.config.sparsity > 0.31)

    tests = iter([0.5, 0.4, 0.3, 0.2, 0.1])
    res = loop_mod.run_loop(build("tinycnn", seed=0),
                            {"conv1": None, "conv2": 0.3, "fc1": 0.3, "fc2": 0.3},
                            _fake_compress(accuracy), EngineConfig("unstructured", lanes=4),
                            bits=8, tolerance=0.5, echo=lambda s: None,
                            test_fn=lambda m: next(tests))
    # gains: conv2 (pushed to 0.62) 500, fc2 (0.82) 100, fc1 (0.47) 20
    assert [t["pushed"] for t in res.tried] == [[], ["conv2", "fc2", "fc1"], ["conv2"],
                                                ["conv2", "fc2"]]
    assert {d.layer: d.action for d in res.decisions} == {
        "conv1": "not run", "conv2": "pushed", "fc1": "dense", "fc2": "dense"}
    assert [t["test_accuracy"] for t in res.tried] == [0.5, 0.4, 0.3, 0.2]
    assert res.test_first == 0.5 and res.test_final == 0.3
    with pytest.raises(ValueError, match="unknown push order 'big'; allowed: cycles, smallest"):
        loop_mod.run_loop(build("tinycnn", seed=0), {"fc1": 0.3}, _fake_compress(accuracy),
                          EngineConfig("unstructured", lanes=4), bits=8, push_order="big")


def test_validation_split_is_stratified_disjoint_and_deterministic():
    import torch

    from codesign.loop import loop_loaders, validation_split
    from pruning.data import load

    full = load("digits", "train")
    tr, va = validation_split("digits", 0.25, seed=3)
    assert len(tr) + len(va) == len(full) and va.split == "validation"
    counts = torch.bincount(va.labels, minlength=10)
    full_counts = torch.bincount(full.labels, minlength=10)
    assert torch.equal(counts, torch.round(0.25 * full_counts.double()).long())

    def rows(d):
        return sorted((int(y), tuple(x.flatten().tolist()))
                      for x, y in zip(d.inputs, d.labels, strict=True))

    assert sorted(rows(tr) + rows(va)) == rows(full)  # a partition of the training split
    tr2, va2 = validation_split("digits", 0.25, seed=3)
    assert torch.equal(va.inputs, va2.inputs) and torch.equal(tr.labels, tr2.labels)
    assert not torch.equal(validation_split("digits", 0.25, seed=4)[1].inputs, va.inputs)
    for bad in (1.0, -0.1, "0.2"):
        with pytest.raises(ValueError, match=r"Validation fraction must be in \[0, 1\)"):
            validation_split("digits", bad)
    train_l, val_l, test_l = loop_loaders("digits", val_fraction=0)
    assert val_l is test_l and len(train_l.dataset) == len(full)


def test_run_loop_accepts_every_push_when_accuracy_holds(monkeypatch):
    import codesign.loop as loop_mod
    from sim.breakeven import EngineConfig

    monkeypatch.setattr(loop_mod, "measure_breakevens", lambda bundle, names, *a, **k:
                        {n: be(0.5) if n == "fc1" else be(0.1) for n in names})
    res = loop_mod.run_loop(build("tinycnn", seed=0), {"fc1": 0.3, "fc2": 0.3},
                            _fake_compress(lambda plans: 0.9),
                            EngineConfig("unstructured", lanes=4), bits=8, echo=lambda s: None)
    assert {d.layer: d.action for d in res.decisions} == {"fc1": "pushed", "fc2": "kept"}
    assert not res.rejected and len(res.tried) == 2


def test_loop_in_rtl_changes_the_plan_of_a_layer_below_its_break_even():
    """The real thing: TinyCNN's fc1 at 5% sparsity on the unstructured engine; its break-even
    measured in Verilator is above 5%, so the loop pushes it past its break-even."""
    from codesign.loop import check_in_rtl, run_loop
    from pruning.compress import compress
    from pruning.data import loader
    from sim.breakeven import EngineConfig

    model = build("tinycnn", seed=0)
    tl, vl = loader("digits", "train", batch_size=64, seed=0), loader("digits", "test")

    def compress_fn(m, plan):
        return compress(m, plan, tl, vl, admm_iters=1, retrain_epochs=1, seed=0,
                        progress=False, model_name="tinycnn")

    config = EngineConfig("unstructured", lanes=4, weight_bits=8, act_bits=8)
    res = run_loop(model, {"fc1": 0.05}, compress_fn, config, bits=8, seeds=1, tolerance=100.0,
                   echo=lambda s: None)
    be_fc1 = res.breakevens["fc1"]
    assert be_fc1.rtl_runs > 0 and be_fc1.ratio is not None and be_fc1.ratio > 0.05
    (d,) = res.decisions
    assert d.action == "pushed" and d.sparsity >= be_fc1.ratio
    layer = res.final.bundle.layer("fc1")
    assert 1 - layer.stats.density >= be_fc1.ratio - 1e-9
    assert layer.break_even == be_fc1.ratio
    assert res.cycles_after["fc1"][1] < res.cycles_before["fc1"][1]
    rows = check_in_rtl(res.final.bundle, res.cycles_after, 4)
    assert rows and all(r["outputs_match"] and r["cycles_match"] for r in rows)


# -- time break-evens: the engines' Fmax (codesign synth) -------------------------------------
def test_decide_and_push_gain_use_time_when_fmax_was_given():
    """A break-even measured with Fmax decides by time: a sparse engine at 20 MHz against a
    dense one at 40 MHz must skip half the cycles to pay, so its later time break-even
    decides; push gains are microseconds saved."""
    from codesign.loop import push_gain, used_ratio

    timed = SimpleNamespace(ratio=0.5, time_ratio=0.75, fmax_mhz=(20.0, 40.0), storage_ratio=None,
                            rtl_runs=6, points=_points({0.8: 600}))
    assert used_ratio(timed) == 0.75 and used_ratio(be(0.5)) == 0.5
    (d,) = decide({"a": 0.6}, {"a": timed}, OPS)
    assert d.action == "pushed" and d.break_even == 0.75 and d.sparsity == pytest.approx(0.77)
    (d,) = decide({"a": 0.6}, {"a": be(0.5)}, OPS)
    assert d.action == "kept"                          # in cycles it already paid
    never = SimpleNamespace(ratio=0.5, time_ratio=None, fmax_mhz=(20.0, 40.0),
                            storage_ratio=None, rtl_runs=6)
    assert decide({"a": 0.6}, {"a": never}, OPS)[0].action == "dense"
    # dense 1000 cycles at 40 MHz = 25 us, sparse 400 at 20 MHz = 20 us: 5 us saved
    assert push_gain(timed, 0.8) == pytest.approx(5.0)


def test_run_loop_passes_fmax_and_reports_time(monkeypatch):
    import codesign.loop as loop_mod
    from sim.breakeven import EngineConfig

    seen = {}

    def measure(bundle, names, *a, fmax_mhz=None, **k):
        seen["fmax"] = fmax_mhz
        return {n: SimpleNamespace(ratio=0.2, time_ratio=0.6, fmax_mhz=fmax_mhz,
                                   storage_ratio=None, rtl_runs=6, points=()) for n in names}

    monkeypatch.setattr(loop_mod, "measure_breakevens", measure)
    res = loop_mod.run_loop(build("tinycnn", seed=0), {"conv1": None, "fc1": 0.3, "fc2": 0.3},
                            _fake_compress(lambda plans: 0.9),
                            EngineConfig("unstructured", lanes=4), bits=8, echo=lambda s: None,
                            fmax_mhz=(25.0, 50.0))
    assert seen["fmax"] == (25.0, 50.0) and res.fmax_mhz == (25.0, 50.0)
    assert {d.layer: d.action for d in res.decisions} == {"conv1": "not run", "fc1": "pushed",
                                                          "fc2": "pushed"}
    assert res.final.bundle.layer("fc1").break_even == 0.6     # the time break-even
    want = sum(c / (50.0 if e == "dense" else 25.0) for e, c in res.cycles_after.values())
    assert res.time_us(res.cycles_after) == pytest.approx(want) and want > 0
    assert replace_fmax(res).time_us(res.cycles_after) is None


def replace_fmax(res):
    from dataclasses import replace

    return replace(res, fmax_mhz=None)
