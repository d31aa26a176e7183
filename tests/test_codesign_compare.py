"""codesign.compare: one RNN layer on the FPGA engines (RTL) and the ARM kernels (qemu), the
same integer step on both; what it checks, what it reports, which layers it refuses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from mobile_bundle import make_bundle

from codesign.compare import (
    ArmResult,
    FpgaResult,
    check_compare_layer,
    compare_rnn_layer,
    comparison_rows,
    format_comparison,
    matching_mhz,
)
from ir import Bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return Bundle.load(make_bundle(tmp_path_factory.mktemp("cmp") / "bundle"))


@pytest.fixture(scope="module")
def lstm_cmp(bundle, tmp_path_factory):
    placed = []

    def synth(gates, verilog):
        placed.append((gates, verilog))
        return {"bcr": 25.0, "dense": 40.0}[gates], "test", None, None, ""

    cmp = compare_rnn_layer(bundle.layer("lstm"), lanes=4, steps=3, synth=synth,
                            device="ecp5-85k",
                            mobile_cache=tmp_path_factory.mktemp("mc"))
    return cmp, placed


def test_bcr_lstm_runs_both_gate_engines_and_three_kernels(lstm_cmp):
    cmp, placed = lstm_cmp
    assert cmp.ok and cmp.op == "lstm" and cmp.block == (4, 8)
    assert [f.gates for f in cmp.fpga] == ["bcr", "dense"]
    assert [a.matvec for a in cmp.arm] == ["bcr", "csr", "dense"]
    # the Verilog that was placed is the Verilog that was simulated
    assert [(g, str(v)) for g, v in placed] == [(f.gates, f.verilog) for f in cmp.fpga]
    bcr, dense = cmp.fpga
    # paid once: the first step's copy of h (12), and the BCR engine's setup stage
    from hw.rnn import bcr_setup_cycles, lstm_cycles

    assert dense.setup_cycles == 12
    assert bcr.setup_cycles == 12 + bcr_setup_cycles(10, 12, (4, 8))
    assert dense.rtl_cycles == lstm_cycles(10, 12, 3, 4) and dense.cycles_match
    assert dense.cycles_per_step == (dense.rtl_cycles - 12) / 3
    assert bcr.cycles_per_step == (bcr.rtl_cycles - bcr.setup_cycles) / 3
    assert bcr.us_per_step == pytest.approx(bcr.cycles_per_step / 25.0)
    for a in cmp.arm:
        assert a.check_ok and a.sequence_match and a.instructions > 0
        assert set(a.cycles) == {"neoverse-n1", "cortex-a57"}
        assert "PASS" in a.check


def test_matching_clock_is_arm_cycles_over_fpga_time(lstm_cmp):
    cmp, _ = lstm_cmp
    a, f = cmp.arm[0], cmp.fpga[1]
    mhz = matching_mhz(a, f)
    for label, cycles in a.cycles.items():
        # at this clock the ARM step takes exactly the FPGA step's microseconds
        assert cycles / mhz[label] == pytest.approx(f.us_per_step)
    unplaced = dataclasses.replace(f, fmax_mhz=None, note="does not fit")
    with pytest.raises(ValueError, match="no time per step"):
        matching_mhz(a, unplaced)


def test_report_lines_and_rows(lstm_cmp):
    cmp, _ = lstm_cmp
    text = "\n".join(format_comparison(cmp))
    assert "layer lstm: lstm, input 10, hidden 12, bcr 4x8" in text
    assert "BCR gates: RTL == golden, cycles == model" in text
    assert "at 25.00 MHz (test)" in text and "the dense gates' speed" in text
    assert "bcr products: golden PASS, sequence == RTL" in text
    assert text.count("FPGA BCR gates (") == 3 and text.count("FPGA dense gates (") == 3
    # 10 + 1 + 2 + 12 + 5: what is left of the dense-gated step at unlimited lanes
    assert "of each step, 30 cycles are the input load and the element-wise pipeline" in text
    from hw.rnn import lstm_cycles

    def step(lanes):
        return lstm_cycles(10, 12, 2, lanes) - lstm_cycles(10, 12, 1, lanes)

    assert step(48) - 30 == step(48 * 4) - 30 > 0
    rows = comparison_rows(cmp)
    assert [r["platform"] for r in rows] == ["fpga", "fpga", "arm", "arm", "arm"]
    assert rows[2]["match_mhz_dense_neoverse-n1"] == pytest.approx(
        matching_mhz(cmp.arm[0], cmp.fpga[1])["neoverse-n1"], abs=1e-3)
    js = cmp.to_json()
    assert js["ok"] and len(js["matching_mhz"]) == 6


def test_a_wrong_side_fails_the_comparison(lstm_cmp):
    cmp, _ = lstm_cmp
    bad_arm = dataclasses.replace(cmp.arm[0], sequence_match=False)
    assert not dataclasses.replace(cmp, arm=[bad_arm, *cmp.arm[1:]]).ok
    bad_rtl = dataclasses.replace(cmp.fpga[0], rtl_cycles=cmp.fpga[0].rtl_cycles + 1)
    assert not dataclasses.replace(cmp, fpga=[bad_rtl, cmp.fpga[1]]).ok
    assert "cycles" in "\n".join(format_comparison(
        dataclasses.replace(cmp, fpga=[bad_rtl, cmp.fpga[1]]))) and "!= model" in "\n".join(
        format_comparison(dataclasses.replace(cmp, fpga=[bad_rtl, cmp.fpga[1]])))


def test_the_arm_sequence_is_checked_against_the_rtl(bundle, tmp_path, monkeypatch):
    """A kernel that passes its own random check but drifts on the sequence is caught."""
    import mobile.build as mb

    real = mb.Kernel.__call__

    def drifting(self, *inputs):
        outs = real(self, *inputs)
        if len(inputs) == 2:                    # the GRU step: nudge one unit of h
            h = outs[0].copy()
            h[0] = h[0] + 1 if h[0] < 100 else h[0] - 1
            return (h,)
        return outs

    import mobile.check as mc

    monkeypatch.setattr(mc, "check_kernel", lambda k, seed=0: mc.CheckResult(
        True, k.source.kind, "int8", k.target, 0, 0.0, "PASS (skipped)"))
    import codesign.compare as cc

    monkeypatch.setattr(mb.Kernel, "__call__", drifting)
    monkeypatch.setattr(cc, "np", np)
    cmp = compare_rnn_layer(bundle.layer("gru"), lanes=4, steps=2, fmax={"dense": 30.0},
                            mobile_cache=tmp_path)
    assert [f.gates for f in cmp.fpga] == ["dense"] and cmp.fpga[0].outputs_match
    assert not cmp.arm[0].sequence_match and not cmp.ok
    assert "sequence DIFFERS from RTL" in "\n".join(format_comparison(cmp))


def test_layers_it_refuses(bundle):
    with pytest.raises(ValueError, match="layer 'fc2' is linear; compare runs lstm and gru"):
        check_compare_layer(bundle.layer("fc2"), 4)
    with pytest.raises(ValueError, match="--lanes must be a positive multiple of 4"):
        check_compare_layer(bundle.layer("lstm"), 6)
    lay = bundle.layer("gru")
    wide = dataclasses.replace(lay, quant=dataclasses.replace(lay.quant, bits=12))
    with pytest.raises(ValueError, match="has 12-bit weights; compare runs the int8 step"):
        check_compare_layer(wide, 4)
    from types import SimpleNamespace

    unsigned = SimpleNamespace(name="gru", op="gru", quant=SimpleNamespace(bits=8, signed=False))
    with pytest.raises(ValueError, match="has unsigned weights"):
        check_compare_layer(unsigned, 4)
    huge = dataclasses.replace(lay, quant=dataclasses.replace(lay.quant, scale=1e6))
    with pytest.raises(ValueError, match="give no int8 fixed-point step") as exc:
        check_compare_layer(huge, 4)
    assert "--dtype" not in str(exc.value) and "compare runs the int8 step only" in str(exc.value)
    with pytest.raises(ValueError, match="has no quantized weights"):
        check_compare_layer(dataclasses.replace(lay, quant=None, tensors={
            k: v for k, v in lay.tensors.items() if not k.startswith("qweight")}), 4)


def test_result_types_name_themselves():
    f = FpgaResult("bcr", 8, 2, 110, 110, 10, True, "x.v", (8, 16), 50.0)
    assert f.name == "BCR gates" and f.cycles_per_step == 50 and f.us_per_step == 1.0
    a = ArmResult("sparse", "csr", True, "ok", False, 10, {"m": 1.0}, 0)
    assert a.name == "csr products" and not a.ok


def test_one_bcr_engine_runs_a_smaller_layer(bundle, lstm_cmp, tmp_path):
    """bench/fpga_mobile.py builds one BCR-gated engine per cell and size: bigger memories
    than the layer needs change neither its outputs nor its cycles; smaller are refused."""
    from codesign.compare import bcr_memory_needs

    lay = bundle.layer("lstm")
    blocks, words = bcr_memory_needs(lay, 4)
    cmp = compare_rnn_layer(lay, lanes=4, steps=3, fmax={"dense": 40.0, "bcr": 25.0},
                            bcr_memory=(blocks + 3, words + 17), mobile_cache=tmp_path)
    ref, _ = lstm_cmp
    assert cmp.ok and cmp.fpga[0].rtl_cycles == ref.fpga[0].rtl_cycles
    assert cmp.fpga[0].verilog != ref.fpga[0].verilog       # another build
    with pytest.raises(ValueError, match=r"memories \(1 blocks, 1 value words\) are smaller "
                                         r"than the layer needs"):
        compare_rnn_layer(lay, lanes=4, steps=3, fmax={"dense": 40.0}, bcr_memory=(1, 1),
                          mobile_cache=tmp_path)


@pytest.mark.parametrize("mhz", [0, -3.0, float("nan"), float("inf")])
def test_a_given_fmax_must_be_a_clock(bundle, mhz):
    with pytest.raises(ValueError, match="Fmax of the dense-gated engine must be a positive"):
        compare_rnn_layer(bundle.layer("gru"), lanes=4, fmax={"dense": mhz})


def test_serial_cycles_are_a_steady_step_without_its_gate_product():
    from codesign.compare import serial_cycles
    from hw.dense import dense_cycles
    from hw.rnn import lstm_cycles

    for isz, hsz, lanes in ((10, 12, 4), (28, 64, 8), (1, 1, 4)):
        step = lstm_cycles(isz, hsz, 3, lanes) - lstm_cycles(isz, hsz, 2, lanes)
        assert serial_cycles(isz, hsz) == step - dense_cycles(4 * hsz, isz + hsz, lanes)
    assert serial_cycles(28, 64) == 28 + 1 + 2 + 64 + 5
