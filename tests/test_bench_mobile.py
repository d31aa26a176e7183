"""bench/mobile.py: layer shapes, masks, option parsing and the speedup/target table (the timed
run itself is the benchmark, not a test)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.mobile import (
    arm_side,
    lstm_workload,
    make_convs,
    make_lstm,
    parse_bcr,
    pattern_impl,
    speedup_table,
    vgg16_convs,
)
from ir.bcr import bcr_violations
from ir.pattern import pattern_violations


def test_vgg16_conv_shapes():
    convs = vgg16_convs(224)
    assert len(convs) == 13
    assert convs[0] == ("conv1_1", 3, 64, 224) and convs[1] == ("conv1_2", 64, 64, 224)
    assert convs[4] == ("conv3_1", 128, 256, 56) and convs[-1] == ("conv5_3", 512, 512, 14)
    assert [c[3] for c in vgg16_convs(32)] == [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]


def test_arm_side_shrinks_to_the_mac_budget():
    assert arm_side(64, 64, 224, 8, 40e6) == 8
    assert arm_side(256, 512, 28, 8, 40e6) == 5          # 256*512*9*25 = 29.5M <= 40M
    assert arm_side(512, 512, 14, 8, 40e6) == 4          # never below 4x4
    assert arm_side(512, 512, 2, 8, 40e6) == 2           # never above the layer's own side


def test_parse_bcr():
    assert parse_bcr("64x128:16x52") == ((64, 128), (16, 52))
    for bad in ("64x128", "64x128:65x52", "ax1:1x1", "8x8:0x1"):
        with pytest.raises(ValueError, match=r"^--bcr must be ROWSxCOLS:KEPT_ROWSxKEPT_COLS"):
            parse_bcr(bad)


def test_masks_have_the_promised_structure():
    rng = np.random.default_rng(0)
    d = make_lstm(rng, (16, 32), (4, 12), hidden=64, inputs=96)
    assert d["w_ih"].shape == (256, 96) and d["w_hh"].shape == (256, 64)
    assert d["density"] == pytest.approx(4 * 12 / (16 * 32))
    for m in d["bcr"]:
        assert not bcr_violations(m, (16, 32))
    csr_nnz = sum(int(m.sum()) for m in d["csr"])
    bcr_nnz = sum(int(m.sum()) for m in d["bcr"])
    assert abs(csr_nnz - bcr_nnz) <= 2
    cell = lstm_workload(d, d["bcr"])
    assert cell.weight.shape == (256, 160) and cell.weight.dtype == np.float32
    assert np.count_nonzero(cell.weight) == bcr_nnz
    layers, library = make_convs(rng, 32, 0.5, {"conv1_2", "conv3_1"})
    assert [ly["name"] for ly in layers] == ["conv1_2", "conv3_1"]
    assert library.shape == (8, 3, 3) and (library.reshape(8, 9).sum(1) == 4).all()
    for ly in layers:
        kept = ly["mask"].reshape(-1, 9).any(1)
        assert kept.mean() == pytest.approx(0.5, abs=1e-3)
        assert not pattern_violations(ly["mask"], library)


def _row(layer, impl, ms, status="ok"):
    return {"layer": layer, "impl": impl, "status": status, "median_ms": ms, "min_ms": ms / 2,
            "max_rel_err": 1e-7, "density": 1.0}


def _rest(impls, skip=("conv1_1", "conv1_2")):
    """Rows of 0.5 ms for every other VGG-16 conv, one per implementation."""
    return [_row(name, impl, 0.5) for name, *_ in vgg16_convs(32) if name not in skip
            for impl in impls]


def test_speedup_table_uses_fastest_ok_peer_and_totals():
    rows = [_row("lstm", "onnxruntime", 2.0), _row("lstm", "mnn", 1.0, "wrong"),
            _row("lstm", "torch", 1.6), _row("lstm", "ours BCR", 0.2),
            _row("lstm", "ours CSR", 0.8),
            _row("conv1_1", "litert", 3.0), _row("conv1_1", "ours pattern", 1.0),
            _row("conv1_2", "litert", 5.0), _row("conv1_2", "ours pattern", 3.0),
            _row("conv1_1", "tvm", 1.0, "error"), _row("conv1_2", "tvm", 9.0),
            *_rest(("litert", "ours pattern", "tvm"))]
    df, verdicts = speedup_table(rows)
    bcr = df[(df.layer == "lstm") & (df.impl == "ours BCR")].iloc[0]
    assert bcr.fastest_peer == "torch"           # mnn's wrong output does not count
    assert bcr.vs_peer == pytest.approx(8.0) and bcr.vs_csr == pytest.approx(4.0)
    assert bcr.vs_peer_min == pytest.approx(8.0)
    total = df[df.layer == "VGG-16 total"].set_index("impl")
    assert total.loc["ours pattern", "median_ms"] == pytest.approx(4.0 + 11 * 0.5)
    assert total.loc["tvm", "status"] == "incomplete"
    assert total.loc["ours pattern", "vs_peer"] == pytest.approx(13.5 / 9.5)
    assert verdicts == {"bcr_vs_peer": (pytest.approx(8.0), 6.0, True),
                        "bcr_vs_csr": (pytest.approx(4.0), 3.0, True),
                        "pattern_vs_peer": (pytest.approx(13.5 / 9.5), 2.5, False)}


def test_a_subset_of_convs_is_no_vgg16_total():
    """--layers conv5_3,conv5_2: their sum was labelled 'VGG-16 total' and the VGG-16 pattern
    target judged (MET) on 2 of 13 layers."""
    rows = [_row("conv5_3", "mnn", 4.0), _row("conv5_3", "ours pattern", 1.0),
            _row("conv5_2", "mnn", 4.0), _row("conv5_2", "ours pattern", 1.0)]
    df, verdicts = speedup_table(rows)
    assert "VGG-16 total" not in set(df.layer)
    total = df[df.layer == "total of 2 of 13 convs"].set_index("impl")
    assert total.loc["ours pattern", "vs_peer"] == pytest.approx(4.0)
    assert verdicts["pattern_vs_peer"] == (None, 2.5, False)


def test_vs_csr_without_any_peer():
    """With no peer ok, vs_csr was never computed and bcr_vs_csr said n/a, NOT MET."""
    df, verdicts = speedup_table([_row("lstm", "mnn", 1.0, "error"), _row("lstm", "ours BCR", 0.1),
                                  _row("lstm", "ours CSR", 0.6)])
    assert df[df.impl == "ours BCR"].iloc[0].vs_csr == pytest.approx(6.0)
    assert verdicts["bcr_vs_csr"] == (pytest.approx(6.0), 3.0, True)


def test_several_connectivity_rates_share_the_library():
    rng = np.random.default_rng(1)
    layers, library = make_convs(rng, 32, [0.72, 0.5], {"conv2_1"})
    (ly,) = layers
    assert list(ly["masks"]) == [0.72, 0.5] and ly["mask"] is ly["masks"][0.72]
    for rate, m in ly["masks"].items():
        assert m.reshape(-1, 9).any(1).mean() == pytest.approx(1 - rate, abs=2e-3)
        assert not pattern_violations(m, library)
    assert pattern_impl(0.72, True) == "ours pattern"
    assert pattern_impl(0.5, False) == "ours pattern 4.5x"
    assert pattern_impl(0.72, False) == "ours pattern 8.0x"


def test_speedup_table_judges_every_pattern_rate():
    rows = [_row("conv1_1", "mnn", 4.0), _row("conv1_1", "ours pattern", 1.0),
            _row("conv1_1", "ours pattern 4.5x", 2.0)]
    rows += [_row(name, impl, ms) for name, *_ in vgg16_convs(32) if name != "conv1_1"
             for impl, ms in (("mnn", 4.0), ("ours pattern", 1.0), ("ours pattern 4.5x", 2.0))]
    df, verdicts = speedup_table(rows)
    assert verdicts["pattern_vs_peer"] == (pytest.approx(4.0), 2.5, True)
    assert verdicts["pattern_vs_peer (4.5x)"] == (pytest.approx(2.0), 2.5, False)
