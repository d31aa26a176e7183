"""codesign.compare (compare_rnn, compare_linear): one RNN or linear layer on the FPGA engines
(RTL) and the ARM kernels (qemu), the same integer function on both; what it checks, what it
reports, which layers it refuses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from mobile_bundle import make_bundle

from codesign.compare import (
    ArmResult,
    FpgaResult,
    check_compare_layer,
    compare_linear_layer,
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
    # 10 + 1 + 2 + 12 + 10: what is left of the dense-gated step at unlimited lanes
    assert "of each step, 35 cycles are the input load and the element-wise pipeline" in text
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
    import codesign.compare_rnn as cc

    monkeypatch.setattr(mb.Kernel, "__call__", drifting)
    monkeypatch.setattr(cc, "np", np)
    cmp = compare_rnn_layer(bundle.layer("gru"), lanes=4, steps=2, fmax={"dense": 30.0},
                            mobile_cache=tmp_path)
    assert [f.gates for f in cmp.fpga] == ["dense"] and cmp.fpga[0].outputs_match
    assert not cmp.arm[0].sequence_match and not cmp.ok
    text = "\n".join(format_comparison(cmp))
    assert "sequence DIFFERS from RTL" in text
    # the GRU's element-wise pipeline is a stage longer than the LSTM's (H + 11)
    serial = cmp.input_size + 1 + 2 + cmp.hidden_size + 11
    assert f"of each step, {serial:,} cycles are the input load" in text


def test_layers_it_refuses(bundle):
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
    assert serial_cycles(28, 64) == 28 + 1 + 2 + 64 + 10
    assert serial_cycles(28, 64, "gru") == 28 + 1 + 2 + 64 + 11


# ---- linear layers: the dense engine and the layer's sparse engine against the int8 kernels

@pytest.fixture(scope="module")
def bcr_linear(bundle, tmp_path_factory):
    placed = []

    def synth(engine, verilog):
        placed.append((engine, str(verilog)))
        return {"bcr": 25.0, "dense": 40.0}[engine], "test", None, None, ""

    cmp = compare_linear_layer(bundle.layer("fc.bcr"), lanes=4, vectors=3, synth=synth,
                               device="ecp5-85k", mobile_cache=tmp_path_factory.mktemp("mcl"))
    return cmp, placed


@pytest.fixture(scope="module")
def unstructured_linear(bundle, tmp_path_factory):
    return compare_linear_layer(bundle.layer("fc2"), lanes=4, vectors=4, seed=3,
                                fmax={"dense": 40.0, "sparse": 30.0},
                                mobile_cache=tmp_path_factory.mktemp("mcu"))


def _linear_vectors(layer, vectors, seed):
    """The vectors compare_linear_layer draws, and the golden outputs with the bias."""
    from ir.golden import linear
    from mobile.layers import layer_kernels

    mask = layer.tensors["mask"] != 0
    qw = np.where(mask, layer.tensors["qweight"].astype(np.int64), 0)
    x = np.random.default_rng(seed).integers(-127, 128, size=(vectors, qw.shape[1]))
    bias = layer_kernels(layer, "int8")[-1][2]["bias"]
    return qw, mask, x, linear(qw, x, bias)


def test_bcr_linear_runs_the_bcr_and_dense_engines_and_three_kernels(bundle, bcr_linear):
    from hw.bcr import PIPELINE_LATENCY as BCR_LATENCY
    from hw.bcr import bcr_cycles
    from hw.dense import dense_cycles
    from ir.bcr import encode_bcr

    cmp, placed = bcr_linear
    assert cmp.ok and cmp.op == "linear" and cmp.unit == "vector" and cmp.block == (8, 16)
    assert (cmp.input_size, cmp.hidden_size, cmp.steps) == (37, 20, 3)
    assert [f.gates for f in cmp.fpga] == ["bcr", "dense"]
    assert [f.name for f in cmp.fpga] == ["BCR engine", "dense engine"]
    assert [a.matvec for a in cmp.arm] == ["bcr", "csr", "dense"]
    assert [a.name for a in cmp.arm] == ["bcr kernel", "csr kernel", "dense kernel"]
    # the Verilog that was placed is the Verilog that was simulated
    assert placed == [(f.gates, f.verilog) for f in cmp.fpga]
    bcr, dense = cmp.fpga
    qw, mask, _, _ = _linear_vectors(bundle.layer("fc.bcr"), 3, 0)
    assert dense.cycles_each == dense.model_each == (dense_cycles(20, 37, 4),) * 3
    want = bcr_cycles(encode_bcr(qw, (8, 16), mask), 4)
    assert bcr.cycles_each == bcr.model_each == (want,) * 3 and bcr.rtl_cycles == 3 * want
    assert bcr.setup_cycles == dense.setup_cycles == 0 and bcr.cycles_per_unit == want
    assert bcr.us_per_unit == pytest.approx(want / 25.0) and bcr.fmax_source == "test"
    # at one lane per row: a cycle per column (dense) or per kept column of each block (BCR)
    assert dense.serial_cycles == 37 + 3
    enc = encode_bcr(qw, (8, 16), mask)
    assert bcr.serial_cycles == int(np.diff(enc.col_ptr).sum()) + BCR_LATENCY
    for a in cmp.arm:
        assert a.check_ok and a.sequence_match and a.instructions > 0 and "PASS" in a.check
        assert set(a.cycles) == {"neoverse-n1", "cortex-a57"} and a.unit == "vector"


def test_linear_engines_are_sized_to_the_layer(bundle, bcr_linear, unstructured_linear):
    import json
    from pathlib import Path

    from codesign.compare import linear_engine_params
    from hw.bcr import bcr_items
    from ir.bcr import encode_bcr
    from ir.csr import encode_csc_lanes

    qw, mask, _, _ = _linear_vectors(bundle.layer("fc.bcr"), 1, 0)
    enc = encode_bcr(qw, (8, 16), mask)
    side = json.loads(Path(bcr_linear[0].fpga[0].verilog).with_suffix(".json").read_text())
    assert side["parameters"] == {**side["parameters"], "max_rows": 20, "max_cols": 37,
                                  "max_blocks": enc.block_count,
                                  "max_value_words": bcr_items(enc, 4)}
    side = json.loads(Path(bcr_linear[0].fpga[1].verilog).with_suffix(".json").read_text())
    assert (side["parameters"]["max_rows"], side["parameters"]["max_cols"]) == (20, 37)
    fc2 = bundle.layer("fc2")
    params = linear_engine_params(fc2, "unstructured", 4)
    qw2, _, _, _ = _linear_vectors(fc2, 1, 0)
    most = int(encode_csc_lanes(qw2, 4, 4).lane_value_counts.max())
    assert params == {"weight_bits": 8, "act_bits": 8, "max_rows": 10, "max_cols": 20,
                      "index_bits": 4, "max_entries": most}
    side = json.loads(Path(unstructured_linear.fpga[0].verilog).with_suffix(".json")
                      .read_text())
    assert side["parameters"]["max_entries"] == most


def test_unstructured_linear_runs_the_unstructured_engine(bundle, unstructured_linear):
    from hw.unstructured import unstructured_cycles
    from ir.csr import encode_csc_lanes

    cmp = unstructured_linear
    assert cmp.ok and cmp.block is None and cmp.scheme == "unstructured"
    assert [f.gates for f in cmp.fpga] == ["unstructured", "dense"]
    assert [a.matvec for a in cmp.arm] == ["csr", "dense"]
    sparse, dense = cmp.fpga
    # "sparse" of a given Fmax is the layer's sparse engine
    assert (sparse.fmax_mhz, dense.fmax_mhz) == (30.0, 40.0)
    assert sparse.fmax_source == "given (--fmax)"
    qw, _, x, _ = _linear_vectors(bundle.layer("fc2"), 4, 3)
    enc = encode_csc_lanes(qw, 4, 4)
    assert sparse.cycles_each == tuple(unstructured_cycles(enc, v, 4) for v in x)
    assert sparse.cycles_match and sparse.cycles_per_unit == sum(sparse.cycles_each) / 4


def test_linear_matching_clock_is_arm_cycles_over_fpga_time(bcr_linear):
    cmp, _ = bcr_linear
    for f in cmp.fpga:
        assert f.us_per_unit == pytest.approx(f.cycles_per_unit / f.fmax_mhz)
        for a in cmp.arm:
            mhz = matching_mhz(a, f)
            for label, cycles in a.cycles.items():
                # at this clock the ARM kernel takes exactly the FPGA engine's microseconds
                assert cycles / mhz[label] == pytest.approx(f.us_per_unit)
    unplaced = dataclasses.replace(cmp.fpga[0], fmax_mhz=None, note="does not fit")
    with pytest.raises(ValueError, match="the FPGA BCR engine has no time per vector"):
        matching_mhz(cmp.arm[0], unplaced)


def test_linear_report_json_and_rows(bcr_linear):
    cmp, _ = bcr_linear
    text = "\n".join(format_comparison(cmp))
    assert ("layer fc.bcr: linear, input 37, output 20, bcr 8x16, density 0.123, 8-bit "
            "weights; 3 random int8 input vectors") in text
    assert "every output of the RTL, plus the bias, checked against ir.golden" in text
    bcr, dense = cmp.fpga
    assert (f"  BCR engine: RTL == golden, cycles == model; {bcr.cycles_per_unit:,.0f} "
            f"cycles/vector at 25.00 MHz (test) = {bcr.us_per_unit:,.2f} us/vector, "
            f"{dense.us_per_unit / bcr.us_per_unit:.2f}x the dense engine's speed") in text
    assert f"a vector still takes: BCR engine {bcr.serial_cycles}, dense engine 40 cycles" in text
    assert "bcr kernel: golden PASS, outputs == RTL" in text and "cycles/vector, " in text
    assert "the FPGA engine's time per vector" in text
    assert text.count("FPGA BCR engine (") == 3 and text.count("FPGA dense engine (") == 3
    assert "gates" not in text and "step" not in text
    rows = comparison_rows(cmp)
    assert [r["platform"] for r in rows] == ["fpga", "fpga", "arm", "arm", "arm"]
    assert rows[0]["vectors"] == 3 and rows[0]["output"] == 20 and "hidden" not in rows[0]
    assert rows[0]["cycles_per_vector"] == bcr.cycles_per_unit
    assert rows[1]["us_per_vector"] == dense.us_per_unit
    assert rows[1]["serial_cycles"] == 40
    assert rows[2]["match_mhz_bcr_neoverse-n1"] == pytest.approx(
        matching_mhz(cmp.arm[0], bcr)["neoverse-n1"], abs=1e-3)
    js = cmp.to_json()
    assert js["ok"] and js["vectors"] == 3 and js["output_size"] == 20 and "steps" not in js
    assert len(js["matching_mhz"]) == 6
    f = js["fpga"][0]
    assert f["cycles_per_vector"] == bcr.cycles_per_unit and f["vectors"] == 3
    assert list(f["cycles_each"]) == list(bcr.cycles_each) and f["unit"] == "vector"


def test_rnn_json_keeps_its_names(lstm_cmp):
    js = lstm_cmp[0].to_json()
    assert js["steps"] == 3 and js["hidden_size"] == 12 and "vectors" not in js
    f = js["fpga"][0]
    assert "cycles_per_step" in f and "us_per_step" in f and "steps" in f
    assert not {"cycles_each", "model_each", "serial_cycles"} & set(f)


def test_linear_rtl_outputs_and_cycles_are_checked(bundle, tmp_path, monkeypatch):
    """An engine whose outputs or per-vector cycles are wrong fails the comparison, and the
    ARM kernels are compared with every engine's outputs."""
    import codesign.compare_linear as cc

    real = cc._run_linear_engine

    def wrong(engine, *args, **kw):
        outputs, cycles, verilog = real(engine, *args, **kw)
        if engine == "unstructured":
            outputs = outputs.copy()
            outputs[1, 2] += 1
            cycles = cycles[::-1] if cycles[0] != cycles[-1] else [cycles[0] + 1, *cycles[1:]]
        return outputs, cycles, verilog

    monkeypatch.setattr(cc, "_run_linear_engine", wrong)
    cmp = compare_linear_layer(bundle.layer("fc2"), lanes=4, vectors=4, seed=3,
                               fmax={"dense": 40.0}, mobile_cache=tmp_path)
    sparse, dense = cmp.fpga
    assert not sparse.outputs_match and not sparse.cycles_match and not cmp.ok
    assert dense.outputs_match and dense.cycles_match
    assert sparse.fmax_mhz is None and "no time: not placed" in "\n".join(format_comparison(cmp))
    assert not any(a.sequence_match for a in cmp.arm)
    text = "\n".join(format_comparison(cmp))
    assert "unstructured engine: RTL DIFFERS from golden, cycles" in text
    assert "!= model" in text and "outputs DIFFER from RTL" in text


def test_linear_arm_outputs_are_checked_against_the_rtl(bundle, tmp_path, monkeypatch):
    """A kernel that passes its own random check but is wrong on the compared vectors is
    caught."""
    import mobile.build as mb
    import mobile.check as mc

    real = mb.Kernel.__call__

    def drifting(self, *inputs):
        outs = real(self, *inputs)
        if self.source.kind == "csr":
            y = outs[0].copy()
            y[0] += 1
            return (y,)
        return outs

    monkeypatch.setattr(mc, "check_kernel", lambda k, seed=0: mc.CheckResult(
        True, k.source.kind, "int8", k.target, 0, 0.0, "PASS (skipped)"))
    monkeypatch.setattr(mb.Kernel, "__call__", drifting)
    cmp = compare_linear_layer(bundle.layer("fc2"), lanes=4, vectors=2, fmax={"dense": 30.0},
                               mobile_cache=tmp_path)
    assert all(f.outputs_match for f in cmp.fpga)
    assert [a.sequence_match for a in cmp.arm] == [False, True] and not cmp.ok
    assert "csr kernel: golden PASS, outputs DIFFER from RTL" in "\n".join(
        format_comparison(cmp))


def test_linear_layers_it_refuses(bundle, monkeypatch):
    from codesign.compare import linear_engines
    from ir import NM, Dense

    lay = bundle.layer("fc2")
    check_compare_layer(lay, 6)             # the matrix engines take any lanes
    assert linear_engines(lay) == ["unstructured", "dense"]
    assert linear_engines(bundle.layer("fc.bcr")) == ["bcr", "dense"]
    from types import SimpleNamespace

    assert linear_engines(SimpleNamespace(scheme=Dense())) == ["dense"]
    assert linear_engines(SimpleNamespace(scheme=NM(2, 4))) == ["unstructured", "dense"]
    with pytest.raises(ValueError, match="layer 'fc2' has no quantized weights; compare runs "
                                         "the int8 product on both sides"):
        check_compare_layer(dataclasses.replace(lay, quant=None, tensors={
            k: v for k, v in lay.tensors.items() if k != "qweight"}), 4)
    wide = dataclasses.replace(lay, quant=dataclasses.replace(lay.quant, bits=12))
    with pytest.raises(ValueError, match="has 12-bit weights; compare runs the int8 product"):
        check_compare_layer(wide, 4)
    import hw.emit

    monkeypatch.setattr(hw.emit, "MAX_MEMORY_BITS", 1000)
    # the sparse engine's memories fit (checked first), the dense engine's do not
    with pytest.raises(ValueError, match=r"^layer 'fc2' \(10x20\) does not fit the dense engine "
                                         r"with 4 lanes: its memories hold 2,464 bits \(largest: "
                                         r"weights, 1,920\); at most 1,000 are built"):
        check_compare_layer(lay, 4)
    monkeypatch.setattr(hw.emit, "MAX_MEMORY_BITS", 10)
    with pytest.raises(ValueError, match=r"^layer 'fc.bcr' \(20x37\) does not fit the BCR "
                                         r"engine with 4 lanes: its memories hold"):
        check_compare_layer(bundle.layer("fc.bcr"), 4)
    with pytest.raises(ValueError, match="vectors must be a positive integer, not 0"):
        monkeypatch.setattr(hw.emit, "MAX_MEMORY_BITS", 1 << 26)
        compare_linear_layer(lay, lanes=4, vectors=0)
    with pytest.raises(ValueError, match="Fmax of the sparse engine must be a positive"):
        compare_linear_layer(lay, lanes=4, fmax={"dense": 3.0, "sparse": float("nan")})


# ------------------------------------------------------------------ --slices: sliced BCR engines
def test_bcr_lstm_gates_on_slices(bundle, lstm_cmp, tmp_path):
    """BCR gates on 2 slices: checked like one, memories sized for the larger slice, the
    slices named in the report line and the JSON and CSV; the dense gates have none."""
    import json
    from pathlib import Path

    from codesign.compare import bcr_memory_needs
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles

    lay = bundle.layer("lstm")
    cmp = compare_rnn_layer(lay, lanes=4, steps=3, slices=2, fmax={"dense": 40.0, "bcr": 25.0},
                            mobile_cache=tmp_path)
    assert cmp.ok, "\n".join(format_comparison(cmp))
    bcr, dense = cmp.fpga
    assert (bcr.slices, dense.slices) == (2, None)
    t = lay.tensors
    matrix = bcr_gate_matrix("lstm", np.asarray(t["qweight_ih"]), np.asarray(t["qweight_hh"]),
                             (4, 8), t["mask_ih"], t["mask_hh"])
    assert bcr.rtl_cycles == bcr.model_cycles == rnn_bcr_cycles(matrix, 10, 12, 3, 4, 2)
    one, _ = lstm_cmp
    assert bcr.rtl_cycles < one.fpga[0].rtl_cycles and dense.rtl_cycles == one.fpga[1].rtl_cycles
    side = json.loads(Path(bcr.verilog).with_suffix(".json").read_text())["parameters"]
    assert side["slices"] == 2
    assert (side["max_blocks"], side["max_value_words"]) == bcr_memory_needs(lay, 4, 2)
    assert bcr_memory_needs(lay, 4, 2) < bcr_memory_needs(lay, 4)
    text = "\n".join(format_comparison(cmp))
    assert "  BCR gates (2 slices x 4 lanes): RTL == golden, cycles == model" in text
    assert "  dense gates: RTL == golden" in text
    js = cmp.to_json()
    assert js["fpga"][0]["slices"] == 2 and "slices" not in js["fpga"][1]
    assert all("slices" not in f for f in one.to_json()["fpga"])       # one slice: omitted
    rows = comparison_rows(cmp)
    assert rows[0]["slices"] == 2 and "slices" not in rows[1]
    assert "slices" not in comparison_rows(one)[0]


def test_bcr_linear_engine_on_slices(bundle, bcr_linear, tmp_path):
    """fc.bcr (20 rows: 3 block rows of 8) on 3 slices: one block row each."""
    from codesign.compare import linear_engine_params
    from hw.bcr import bcr_cycles
    from ir.bcr import encode_bcr

    lay = bundle.layer("fc.bcr")
    cmp = compare_linear_layer(lay, lanes=4, vectors=2, slices=3, fmax={"dense": 40.0},
                               mobile_cache=tmp_path)
    assert cmp.ok, "\n".join(format_comparison(cmp))
    bcr, dense = cmp.fpga
    assert (bcr.slices, dense.slices) == (3, None)
    qw, mask, _, _ = _linear_vectors(lay, 1, 0)
    want = bcr_cycles(encode_bcr(qw, (8, 16), mask), 4, 3)
    assert bcr.cycles_each == bcr.model_each == (want,) * 2
    assert want < bcr_linear[0].fpga[0].cycles_each[0]
    params = linear_engine_params(lay, "bcr", 4, 3)
    assert params["slices"] == 3 and "slices" not in linear_engine_params(lay, "bcr", 4)
    assert "slices" not in linear_engine_params(lay, "dense", 4, 3)
    assert "  BCR engine (3 slices x 4 lanes): RTL == golden" in "\n".join(format_comparison(cmp))
    assert cmp.to_json()["fpga"][0]["slices"] == 3


def test_slices_must_be_a_slice_count(bundle):
    for bad in (0, 17, 2.0, True):
        with pytest.raises(ValueError, match=rf"^--slices must be an integer between 1 and 16, "
                                             rf"not {bad!r}$"):
            check_compare_layer(bundle.layer("fc.bcr"), 4, slices=bad)
