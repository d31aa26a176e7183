"""codesign.compare_conv: a conv2d layer on the FPGA engines (the pattern engine's whole
convolution, the matrix engines' im2col products, in RTL) and the ARM convolution kernels
(qemu), the same integer convolution on both; what it checks, reports and refuses."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from mobile_bundle import make_bundle

from codesign.compare import (
    check_compare_layer,
    compare_conv_layer,
    comparison_frame,
    format_comparison,
)
from codesign.compare_conv import conv_engine_params, conv_engines, im2col
from ir import BCR, Bundle, Layer, QuantSpec, Unstructured


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return Bundle.load(make_bundle(tmp_path_factory.mktemp("cmpconv") / "bundle"))


@pytest.fixture(scope="module")
def pattern_cmp(bundle, tmp_path_factory):
    placed = []

    def synth(engine, verilog):
        placed.append((engine, str(verilog)))
        return {"pattern": 30.0, "dense": 40.0}[engine], "test", None, None, ""

    cmp = compare_conv_layer(bundle.layer("conv"), image=(9, 7), lanes=4, maps=2, seed=1,
                             synth=synth, device="ecp5-85k",
                             mobile_cache=tmp_path_factory.mktemp("mcc"))
    return cmp, placed


def _conv_layer(name, scheme, shape, stride, padding, seed, keep=0.4):
    """An int8 conv2d layer of ``shape`` (O, C, kh, kw) with a random mask (BCR: whole rows
    and columns of blocks of the (O, C*kh*kw) view) and a bias."""
    rng = np.random.default_rng(seed)
    o = shape[0]
    if isinstance(scheme, BCR):
        m2 = np.zeros((o, int(np.prod(shape[1:]))), dtype=np.uint8)
        br, bc = scheme.block
        for r0 in range(0, m2.shape[0], br):
            for c0 in range(0, m2.shape[1], bc):
                rr = r0 + np.flatnonzero(rng.random(min(br, m2.shape[0] - r0)) < 0.6)
                cc = c0 + np.flatnonzero(rng.random(min(bc, m2.shape[1] - c0)) < 0.5)
                m2[np.ix_(rr, cc)] = 1
        mask = m2.reshape(shape)
    else:
        mask = (rng.random(shape) < keep).astype(np.uint8)
    q = rng.integers(-127, 128, shape).astype(np.int8) * mask.astype(np.int8)
    scale = 0.01
    tensors = {"weight": (q * scale).astype(np.float32), "mask": mask, "qweight": q,
               "bias": rng.standard_normal(o).astype(np.float32)}
    return Layer(name, "conv2d", {"out_channels": o, "in_channels": shape[1],
                                  "kernel": list(shape[2:]), "stride": list(stride),
                                  "padding": list(padding), "groups": 1},
                 scheme, QuantSpec(8, scale, act_scale=2.0 ** -6), tensors)


def _golden(layer, image, maps, seed):
    from ir.golden import conv2d
    from mobile.layers import layer_kernels

    mask = layer.tensors["mask"] != 0
    qw = np.where(mask, layer.tensors["qweight"].astype(np.int64), 0)
    x = np.random.default_rng(seed).integers(-127, 128, size=(maps, qw.shape[1], *image))
    bias = layer_kernels(layer, "int8", image)[-1][2]["bias"]
    return qw, mask, conv2d(qw, x, bias, stride=tuple(layer.shape.stride),
                            padding=tuple(layer.shape.padding))


@pytest.mark.parametrize("shape, stride, padding", [
    ((3, 2, 3, 3), (1, 1), (1, 1)), ((4, 3, 3, 2), (2, 1), (0, 1)), ((2, 1, 5, 5), (2, 2), (2, 2)),
    ((5, 4, 1, 1), (1, 1), (0, 0))])
def test_im2col_rows_times_the_weight_matrix_are_the_convolution(shape, stride, padding):
    from ir.golden import conv2d

    rng = np.random.default_rng(sum(shape))
    w = rng.integers(-8, 8, shape)
    x = rng.integers(-8, 8, (shape[1], 9, 8))
    cols = im2col(x, shape[2:], stride, padding)
    want = conv2d(w, x, stride=stride, padding=padding)
    assert cols.shape == (want.shape[1] * want.shape[2], int(np.prod(shape[1:])))
    got = (cols @ w.reshape(shape[0], -1).T).T.reshape(want.shape)
    assert np.array_equal(got, want)


def test_pattern_conv_runs_the_pattern_and_dense_engines_and_two_kernels(bundle, pattern_cmp):
    from hw.dense import dense_cycles
    from hw.pattern import pattern_cycles
    from ir.pattern import encode_pattern

    cmp, placed = pattern_cmp
    layer = bundle.layer("conv")
    assert cmp.ok and cmp.op == "conv2d" and cmp.unit == "image"
    assert (cmp.input_size, cmp.hidden_size, cmp.steps, cmp.image) == (5, 6, 2, (9, 7))
    assert (cmp.kernel, cmp.stride, cmp.padding) == ((3, 3), (1, 1), (1, 1))
    assert [f.gates for f in cmp.fpga] == ["pattern", "dense"]
    assert [f.name for f in cmp.fpga] == ["pattern engine", "dense engine"]
    assert [a.matvec for a in cmp.arm] == ["pattern", "conv"]
    assert [a.name for a in cmp.arm] == ["pattern kernel", "conv kernel"]
    assert placed == [(f.gates, f.verilog) for f in cmp.fpga]
    pattern, dense = cmp.fpga
    qw, mask, _ = _golden(layer, (9, 7), 2, 1)
    lib = np.asarray(layer.scheme.library())
    want = pattern_cycles(encode_pattern(qw, lib, mask), (9, 7), 4)
    assert pattern.cycles_each == pattern.model_each == (want, want)
    assert dense.cycles_each == dense.model_each == (63 * dense_cycles(6, 45, 4),) * 2
    assert pattern.multipliers == 16 and dense.multipliers == 4
    assert pattern.serial_cycles == pattern_cycles(encode_pattern(qw, lib, mask), (9, 7), 6)
    assert dense.serial_cycles == 63 * dense_cycles(6, 45, 6)
    assert pattern.us_per_unit == pytest.approx(want / 30.0)
    for a in cmp.arm:
        assert a.check_ok and a.sequence_match and a.instructions > 0 and a.unit == "image"


def test_pattern_conv_report_json_and_csv(pattern_cmp):
    cmp, _ = pattern_cmp
    text = "\n".join(format_comparison(cmp))
    assert text.startswith("layer conv: conv2d, 5 -> 6 channels, 3x3 kernel, stride 1x1, "
                           "padding 1x1, input 9x7, pattern, density ")
    assert "2 random int8 input feature maps" in text
    assert "pattern engine (16 multipliers): RTL == golden, cycles == model" in text
    assert "dense engine (4 multipliers): RTL == golden, cycles == model" in text
    assert "one im2col product per output position" in text
    assert "a feature map still takes: pattern engine " in text
    assert "pattern kernel: golden PASS, outputs == RTL" in text
    assert "cycles/image" in text and "us/image" in text
    assert "FPGA pattern engine (" in text and "vs ARM conv kernel:" in text
    data = cmp.to_json()
    assert data["maps"] == 2 and data["in_channels"] == 5 and data["out_channels"] == 6
    assert data["image"] == (9, 7) and "steps" not in data and "hidden_size" not in data
    assert data["fpga"][0]["maps"] == 2 and "cycles_per_image" in data["fpga"][0]
    assert data["fpga"][0]["multipliers"] == 16
    assert {m["fpga"] for m in data["matching_mhz"]} == {"pattern engine", "dense engine"}
    json.dumps(data)
    df = comparison_frame(cmp)
    assert list(df.platform) == ["fpga", "fpga", "arm", "arm"]
    assert set(df.image) == {"9x7"} and set(df.maps) == {2} and df.check.all()
    assert "cycles_per_image" in df and "match_mhz_pattern_neoverse-n1" in df


@pytest.mark.parametrize("scheme, shape, stride, padding, image, engines, kernels", [
    (BCR(block=(4, 8)), (6, 3, 3, 3), (2, 2), (0, 0), (7, 8), ["bcr", "dense"], ["conv"]),
    (Unstructured(sparsity=0.6), (5, 2, 3, 2), (1, 2), (1, 0), (6, 5),
     ["unstructured", "dense"], ["conv"]),
])
def test_other_convs_run_the_matrix_engines_on_im2col(tmp_path, scheme, shape, stride, padding,
                                                       image, engines, kernels):
    layer = _conv_layer("c", scheme, shape, stride, padding, seed=len(engines) + shape[0])
    assert conv_engines(layer) == engines
    cmp = compare_conv_layer(layer, image=image, lanes=4, maps=2, seed=2,
                             fmax={"dense": 40.0, "sparse": 30.0}, mobile_cache=tmp_path)
    assert cmp.ok, "\n".join(format_comparison(cmp))
    assert [f.gates for f in cmp.fpga] == engines and [a.matvec for a in cmp.arm] == kernels
    assert all(f.multipliers == 4 for f in cmp.fpga)
    assert cmp.block == (tuple(scheme.block) if isinstance(scheme, BCR) else None)
    ho = (image[0] + 2 * padding[0] - shape[2]) // stride[0] + 1
    wo = (image[1] + 2 * padding[1] - shape[3]) // stride[1] + 1
    from hw.dense import dense_cycles

    dense = cmp.fpga[-1]
    assert dense.cycles_each == (ho * wo * dense_cycles(shape[0], int(np.prod(shape[1:])), 4),) * 2
    params = conv_engine_params(layer, engines[0], 4, image)
    assert (params["max_rows"], params["max_cols"]) == (shape[0], int(np.prod(shape[1:])))


def test_conv_rtl_outputs_are_checked(bundle, tmp_path, monkeypatch):
    """A pattern engine whose outputs are wrong fails the comparison, and no ARM kernel then
    matches every engine."""
    import codesign.compare_conv as cc

    real = cc._run_pattern

    def wrong(*args, **kw):
        outputs, cycles, model, verilog = real(*args, **kw)
        outputs = outputs.copy()
        outputs[0, 1, 2, 3] += 1
        return outputs, [cycles[0] + 1], model, verilog

    monkeypatch.setattr(cc, "_run_pattern", wrong)
    cmp = compare_conv_layer(bundle.layer("conv"), image=(6, 6), lanes=4, fmax={"dense": 40.0},
                             mobile_cache=tmp_path)
    pattern, dense = cmp.fpga
    assert not pattern.outputs_match and not pattern.cycles_match and not cmp.ok
    assert dense.outputs_match and dense.cycles_match
    assert not any(a.sequence_match for a in cmp.arm)
    text = "\n".join(format_comparison(cmp))
    assert "pattern engine (16 multipliers): RTL DIFFERS from golden, cycles" in text
    assert "(per image [" in text and "outputs DIFFER from RTL" in text


def test_conv_layers_it_refuses(bundle, monkeypatch):
    from types import SimpleNamespace

    conv = bundle.layer("conv")
    check_compare_layer(conv, 6, image=(16, 16))    # any lanes
    with pytest.raises(ValueError, match="layer 'p' is pool; compare runs lstm, gru, linear and "
                                         "conv2d layers"):
        check_compare_layer(SimpleNamespace(name="p", op="pool"), 4)
    wide = dataclasses.replace(conv, quant=dataclasses.replace(conv.quant, bits=12))
    with pytest.raises(ValueError, match="has 12-bit weights; compare runs the int8 "
                                         "convolution on both sides"):
        check_compare_layer(wide, 4)
    strided = dataclasses.replace(conv, shape=dataclasses.replace(conv.shape, stride=(3, 3)))
    with pytest.raises(ValueError, match=r"^layer 'conv' \(6x5x3x3 on 16x16\) does not fit the "
                                         r"pattern engine with 4 lanes: stride 3x3: the pattern "
                                         r"engine runs stride 1 or 2"):
        check_compare_layer(strided, 4)
    padded = dataclasses.replace(conv, shape=dataclasses.replace(conv.shape, padding=(1, 0)))
    with pytest.raises(ValueError, match="padding 1x0: the pattern engine runs padding 0 or 1, "
                                         "the same both ways"):
        check_compare_layer(padded, 4)
    unpadded = dataclasses.replace(conv, shape=dataclasses.replace(conv.shape, padding=(0, 0)))
    with pytest.raises(ValueError, match="does not fit the 2x2 input image"):
        check_compare_layer(unpadded, 4, image=(2, 2))
    import hw.emit

    monkeypatch.setattr(hw.emit, "MAX_MEMORY_BITS", 20_000)
    with pytest.raises(ValueError, match=r"^layer 'conv' \(6x5x3x3 on 64x64\) does not fit the "
                                         r"pattern engine with 4 lanes: its memories hold"):
        check_compare_layer(conv, 4, image=(64, 64))
    monkeypatch.setattr(hw.emit, "MAX_MEMORY_BITS", 1 << 26)
    with pytest.raises(ValueError, match="maps must be a positive integer, not 0"):
        compare_conv_layer(conv, lanes=4, maps=0)


def test_layer_folder_json_is_relative(bundle, pattern_cmp, tmp_path):
    from codesign.compare_cmd import write_layer

    cmp, _ = pattern_cmp
    work = tmp_path / "conv"
    work.mkdir()
    write_layer(cmp, work, work)
    data = json.loads((work / "compare.json").read_text())
    assert all(Path(work / f["verilog"]).is_file() for f in data["fpga"])


def test_bcr_conv_on_slices(tmp_path):
    """A BCR conv's engine on 2 slices (6 filters: two block rows of 4): the im2col products
    on the sliced engine, its multipliers both slices' lanes."""
    from hw.bcr import bcr_cycles
    from ir.bcr import encode_bcr

    layer = _conv_layer("c", BCR(block=(4, 8)), (6, 3, 3, 3), (2, 2), (0, 0), seed=8)
    cmp = compare_conv_layer(layer, image=(5, 5), lanes=4, maps=1, slices=2,
                             fmax={"dense": 40.0, "sparse": 30.0}, mobile_cache=tmp_path)
    assert cmp.ok, "\n".join(format_comparison(cmp))
    bcr, dense = cmp.fpga
    assert (bcr.slices, bcr.multipliers, dense.slices, dense.multipliers) == (2, 8, None, 4)
    qw = np.where(layer.tensors["mask"] != 0, layer.tensors["qweight"], 0).reshape(6, -1)
    enc = encode_bcr(qw.astype(np.int64), (4, 8), qw != 0)
    assert bcr.cycles_each == (4 * bcr_cycles(enc, 4, 2),)         # 2x2 output positions
    params = conv_engine_params(layer, "bcr", 4, (5, 5), 2)
    assert params["slices"] == 2
    assert "BCR engine (2 slices x 4 lanes) (8 multipliers): RTL == golden" in "\n".join(
        format_comparison(cmp))
