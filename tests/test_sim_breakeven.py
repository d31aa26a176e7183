"""Tests of sim.breakeven: specs, masks of each scheme, the search, keys, and break-evens in RTL.

The RTL tests run one small layer (10 x 48, the builds the sweep tests share) on Verilator.
"""

from __future__ import annotations

import numpy as np
import pytest

from ir.bcr import is_bcr_mask
from ir.pattern import pattern_violations
from sim import breakeven as be
from sim.breakeven import (
    EngineConfig,
    LayerSpec,
    MemoryStore,
    Point,
    draw_layer,
    find_breakeven,
    min_ratio,
    point_key,
    search,
)

SMALL = LayerSpec("fc", "linear", (10, 48))
GRID = (0.0, 0.25, 0.5, 0.75, 0.95)
CONV = LayerSpec("conv", "conv2d", (16, 8, 3, 3), image=(6, 6), padding=1)


# ---------------------------------------------------------------------------- specs and configs

def test_layer_spec_shapes_and_positions():
    assert SMALL.matrix_shape == (10, 48) and SMALL.positions == 1
    assert CONV.matrix_shape == (16, 72)
    assert CONV.out_size == (6, 6) and CONV.positions == 36
    s2 = LayerSpec("c", "conv2d", (4, 2, 3, 3), image=(7, 7), stride=2)
    assert s2.out_size == (3, 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "x", "op": "lstm", "shape": (4, 4)}, "Layer 'x': op must be 'linear' or 'conv2d', "
                                                   "not 'lstm'"),
    ({"name": "x", "op": "linear", "shape": (4, 4, 1)},
     "Layer 'x': a linear shape has 2 positive integers, not (4, 4, 1)"),
    ({"name": "x", "op": "linear", "shape": (0, 4)}, "Layer 'x': shape must be an integer >= 1, "
                                                     "not 0"),
    ({"name": "x", "op": "conv2d", "shape": (4, 4, 3, 3), "image": (2, 2)},
     "Layer 'x': a 3x3 kernel does not fit the (2, 2) input with padding 0"),
    ({"name": "", "op": "linear", "shape": (4, 4)}, "Layer name must be a non-empty string, "
                                                    "not ''"),
])
def test_layer_spec_errors(kwargs, message):
    with pytest.raises(ValueError) as exc:
        LayerSpec(**kwargs)
    assert str(exc.value) == message


@pytest.mark.parametrize("kwargs, message", [
    ({"engine": "dense"}, "Engine must be one of unstructured, bcr, pattern, not 'dense'"),
    ({"engine": "bcr", "lanes": 0}, "Lanes must be an integer >= 1, not 0"),
    ({"engine": "bcr", "weight_bits": 17}, "Weight bits must be an integer from 2 to 16, not 17"),
    ({"engine": "bcr", "block": (8,)}, "Block must be a pair of positive integers, not (8,)"),
])
def test_engine_config_errors(kwargs, message):
    with pytest.raises(ValueError) as exc:
        EngineConfig(**kwargs)
    assert str(exc.value) == message


def test_from_layer_of_zoo_layers():
    from pruning.export import export_model
    from pruning.zoo import build

    cnn = export_model(build("tinycnn"), "tinycnn")
    conv2 = LayerSpec.from_layer(cnn.layer("conv2"), image=(4, 4))
    assert (conv2.op, conv2.shape, conv2.stride, conv2.padding) == ("conv2d", (16, 8, 3, 3), 1, 1)
    assert LayerSpec.from_layer(cnn.layer("fc2")).shape == (10, 48)
    rnn = LayerSpec.from_layer(export_model(build("lstm"), "lstm").layer("rnn"))
    assert (rnn.op, rnn.shape) == ("linear", (4 * 64, 1 + 64))   # [W_ih | W_hh]


def test_pattern_engine_needs_a_3x3_conv_with_image():
    with pytest.raises(ValueError, match="the pattern engine runs 3x3 conv2d layers"):
        draw_layer(SMALL, EngineConfig("pattern"), 0.6, 0)
    with pytest.raises(ValueError, match="needs the conv2d input size"):
        draw_layer(LayerSpec("c", "conv2d", (4, 4, 3, 3)), EngineConfig("pattern"), 0.6, 0)


# ------------------------------------------------------------------------------------- masks

def test_unstructured_mask_keeps_exactly_the_rounded_count():
    cfg = EngineConfig("unstructured")
    for r in (0.0, 0.3, 0.75, 0.95, 1.0):
        d = draw_layer(SMALL, cfg, r, 1)
        assert int(d.mask.sum()) == int(np.floor((1 - r) * 480 + 0.5))
        assert np.all((d.qweight != 0) == d.mask)          # kept weights are non-zero
        assert np.all(d.x != 0)


def test_bcr_mask_is_bcr_with_the_even_split():
    cfg = EngineConfig("bcr", block=(4, 8))
    d = draw_layer(LayerSpec("m", "linear", (12, 40)), cfg, 0.75, 0)
    assert is_bcr_mask(d.mask, (4, 8))
    assert be.bcr_kept(0.75, 4, 8) == (2, 4)               # 1 - sqrt(0.25) = 0.5 per side
    blocks = d.mask.reshape(3, 4, 5, 8)
    assert np.all(blocks.sum(axis=(1, 3)) == 2 * 4)


def test_pattern_mask_keeps_library_patterns_and_connectivity():
    cfg = EngineConfig("pattern")
    lib = be.pattern_library(8)
    assert lib.shape == (8, 3, 3) and np.all(lib[:, 1, 1] == 1)
    assert min_ratio(CONV, cfg) == pytest.approx(5 / 9)
    d = draw_layer(CONV, cfg, 0.8, 2)
    assert pattern_violations(d.mask, lib) == []
    kernels = 16 * 8
    kept = int(np.floor((1 - (1 - 9 * 0.2 / 4)) * kernels + 0.5))
    assert int(d.mask.sum()) == 4 * kept
    assert d.x.shape == (8, 6, 6)


def test_draws_are_deterministic_and_differ_by_seed():
    cfg = EngineConfig("unstructured")
    a, b = draw_layer(SMALL, cfg, 0.5, 0), draw_layer(SMALL, cfg, 0.5, 0)
    assert np.array_equal(a.qweight, b.qweight) and np.array_equal(a.x, b.x)
    assert not np.array_equal(a.mask, draw_layer(SMALL, cfg, 0.5, 1).mask)


# ------------------------------------------------------------------------------------ search

def test_search_brackets_then_bisects():
    grid = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    seen = []

    def verdict(r):
        seen.append(r)
        return r >= 0.237

    ratio, pending, visited = search(grid, 0.01, verdict)
    assert pending == [] and 0.237 <= ratio <= 0.237 + 0.01
    assert set(grid) <= set(visited)


def test_search_uses_the_last_failure_and_the_ends():
    # holds at 0.1, fails at 0.2, holds from 0.3: the bracket is (0.2, 0.3]
    ratio, _, _ = search([0.0, 0.1, 0.2, 0.3, 0.4], 0.2, lambda r: r in (0.1, 0.3, 0.4))
    assert ratio == 0.3
    assert search([0.0, 0.5], 0.01, lambda r: True)[0] == 0.0
    assert search([0.0, 0.5], 0.01, lambda r: r < 0.5)[0] is None


def test_search_reports_what_it_still_needs():
    ratio, pending, _ = search([0.0, 0.5, 1.0], 0.1, lambda r: None if r == 0.5 else r > 0.7)
    assert ratio is None and pending == [0.5]
    known = {0.0: False, 0.5: False, 1.0: True}
    ratio, pending, _ = search([0.0, 0.5, 1.0], 0.1, lambda r: known.get(r))
    assert ratio is None and pending == [0.75]


def test_point_keys_depend_on_what_determines_the_point():
    cfg = EngineConfig("bcr")
    tools = (("cocotb", "2.1.0"),)
    k = point_key(SMALL, cfg, 0.5, 0, "verilator", tools)
    assert k == point_key(LayerSpec("renamed", "linear", (10, 48)), cfg, 0.5, 0, "verilator",
                          tools)
    others = {point_key(SMALL, cfg, 0.55, 0, "verilator", tools),
              point_key(SMALL, cfg, 0.5, 1, "verilator", tools),
              point_key(SMALL, EngineConfig("bcr", lanes=4), 0.5, 0, "verilator", tools),
              point_key(SMALL, cfg, 0.5, 0, "icarus", tools),
              point_key(SMALL, cfg, 0.5, 0, "verilator", (("cocotb", "2.2.0"),))}
    assert k not in others and len(others) == 5


def test_point_json_round_trip():
    p = Point(key="k", layer="fc", op="linear", shape=(10, 48), engine="bcr", lanes=8,
              weight_bits=8, act_bits=8, ratio=0.5, seed=1, nnz=240, numel=480,
              sparse_cycles=100, dense_cycles=98, sparse_model_cycles=100, dense_model_cycles=98,
              sparse_storage_bits=3000, dense_storage_bits=3840, positions=1,
              simulator="verilator", tools=(("cocotb", "2.1.0"),), block=(8, 16))
    assert Point.from_json(p.to_json()) == p
    assert p.sparsity == 0.5
    with pytest.raises(ValueError, match="Unknown point field 'bogus'"):
        Point.from_json({**p.to_json(), "bogus": 1})


# --------------------------------------------------------------------------------------- RTL

@pytest.mark.parametrize("engine", ["unstructured", "bcr"])
def test_rtl_breakeven_equals_the_cycle_model_prediction(engine, sim_cache_dir,
                                                         require_simulator, monkeypatch):
    require_simulator("verilator")
    cfg = EngineConfig(engine)
    store = MemoryStore()
    res = find_breakeven(SMALL, cfg, seeds=2, grid=GRID, tol=0.05, store=store,
                         cache_dir=sim_cache_dir, fmax_mhz=(100.0, 100.0))
    assert res.ratio is not None and res.ratio == res.predicted_ratio
    assert res.time_ratio == res.ratio                      # same Fmax: time = cycles
    assert res.storage_ratio is not None
    assert res.rtl_runs == 2 * len(res.points) and len(store) >= len(res.points)
    ratios = sorted({p.ratio for p in res.points})
    assert set(GRID) <= set(ratios) and res.ratio in ratios
    for p in res.points:
        assert (p.sparse_cycles, p.dense_cycles) == (p.sparse_model_cycles, p.dense_model_cycles)
        assert p.simulator == "verilator" and dict(p.tools)["cocotb"]
    # the break-even is the smallest measured ratio from which every seed is no slower
    worst = {r: max(p.sparse_cycles - p.dense_cycles for p in res.points if p.ratio == r)
             for r in ratios}
    assert all(worst[r] <= 0 for r in ratios if r >= res.ratio)
    assert worst[max(r for r in ratios if r < res.ratio)] > 0

    # a second search with the same store runs nothing in RTL
    def no_rtl(*a, **k):
        raise AssertionError("ran the simulator although every point was stored")

    monkeypatch.setattr(be, "run_points", no_rtl)
    again = find_breakeven(SMALL, cfg, seeds=2, grid=GRID, tol=0.05, store=store,
                           cache_dir=sim_cache_dir)
    assert again.ratio == res.ratio and again.points == res.points


#: A small 3x3 conv for the pattern engine; its dense im2col matrix (16 x 36) takes the same dense
#: build as SMALL (16 x 64 after rounding), so only the pattern engine is built for it.
PCONV = LayerSpec("pconv", "conv2d", (16, 4, 3, 3), image=(5, 5), padding=1)


def test_rtl_pattern_breakeven_equals_the_cycle_model_prediction(sim_cache_dir,
                                                                  require_simulator):
    require_simulator("verilator")
    cfg = EngineConfig("pattern")
    assert (be.build_sizes([PCONV], cfg)["dense"]
            == be.build_sizes([SMALL], EngineConfig("unstructured"))["dense"])
    res = find_breakeven(PCONV, cfg, seeds=2, grid=GRID, tol=0.05, store=MemoryStore(),
                         cache_dir=sim_cache_dir)
    # four weights per kept kernel in one step per lane: faster than dense from the smallest
    # reachable ratio (every kernel kept), in RTL as the cycle models predict
    assert res.ratio is not None and res.ratio == res.predicted_ratio == min_ratio(PCONV, cfg)
    assert res.storage_ratio is not None
    assert res.rtl_runs == 2 * len(res.points) > 0
    ratios = sorted({p.ratio for p in res.points})
    assert ratios[0] == min_ratio(PCONV, cfg) and {0.75, 0.95} <= set(ratios)
    for p in res.points:
        assert (p.sparse_cycles, p.dense_cycles) == (p.sparse_model_cycles, p.dense_model_cycles)
        assert p.sparse_cycles <= p.dense_cycles and p.positions == 25


def test_pattern_plan_starts_at_the_smallest_reachable_ratio():
    cfg = EngineConfig("pattern")
    ratios = be.plan_ratios(CONV, cfg, GRID, 0.05, seeds=2)
    assert ratios[0] == min_ratio(CONV, cfg) and all(r >= ratios[0] for r in ratios)
    # four multipliers per pattern lane: already faster than dense at the smallest ratio
    assert be.predicted_breakeven(CONV, cfg, seeds=2, grid=GRID) == min_ratio(CONV, cfg)


def test_build_sizes_fit_every_layer():
    specs = [SMALL, LayerSpec("big", "linear", (100, 300))]
    sizes = be.build_sizes(specs, EngineConfig("bcr"))
    assert sizes["dense"] == sizes["sparse"] == {"max_rows": 128, "max_cols": 512}
    p = be.build_sizes([CONV], EngineConfig("pattern"))["sparse"]
    assert p == {"max_filters": 16, "max_channels": 8, "max_height": 6, "max_width": 6,
                 "library_size": 8}


@pytest.mark.parametrize("engine, source", [("unstructured", "ir/csr.py"),
                                            ("unstructured", "sim/unstructured.py"),
                                            ("bcr", "ir/bcr.py"), ("bcr", "sim/bcr.py"),
                                            ("pattern", "ir/pattern.py"),
                                            ("pattern", "sim/pattern.py"),
                                            ("bcr", "sim/dense.py")])
def test_a_change_to_an_encoder_or_run_wrapper_changes_the_key(monkeypatch, engine, source):
    """The key hashed hw/ and the benches only: an edit to the encoder that makes the memory
    image, or to the wrapper that runs it, reused the stale stored points."""
    import pathlib

    real = pathlib.Path.read_bytes
    monkeypatch.setattr(be, "_digests", {})
    original = be._source_digest(engine)
    monkeypatch.setattr(be, "_digests", {})
    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda self: real(self) + (
        b"\n# edited\n" if self.as_posix().endswith(source) else b""))
    assert be._source_digest(engine) != original


def test_a_point_reused_from_the_store_takes_the_asking_layers_name(require_simulator):
    """The key has no layer name: a second layer of the same shape got the first one's points
    under the first one's name (the loop's points.csv listed them all under it)."""
    require_simulator("verilator")
    from sim.breakeven import EngineConfig, LayerSpec, MemoryStore, find_breakeven

    store, config = MemoryStore(), EngineConfig("bcr")
    got = {name: find_breakeven(LayerSpec(name, "linear", (16, 32)), config, seeds=1,
                                grid=[0, 0.5, 0.9], store=store)
           for name in ("features.17", "features.20")}
    assert {p.layer for p in got["features.20"].points} == {"features.20"}
    assert {p.layer for p in got["features.17"].points} == {"features.17"}
    assert got["features.17"].ratio == got["features.20"].ratio
