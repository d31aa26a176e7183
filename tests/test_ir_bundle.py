"""The bundle: round trip, determinism, atomic save, and every BundleError with its message."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from ir import BCR, NM, Bundle, BundleError, Dense, Filter, Layer, Pattern, QuantSpec, Unstructured

RNG = np.random.default_rng(0)


def linear_layer(name="fc1", out=6, inp=8, bits=4, scheme=None, mask=None) -> Layer:
    mask = np.ones((out, inp), np.uint8) if mask is None else mask
    w = (RNG.standard_normal((out, inp)).astype(np.float32) * mask).astype(np.float32)
    q = np.clip(np.rint(w / 0.2), -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1).astype(np.int8)
    return Layer(name=name, op="linear", shape={"out_features": out, "in_features": inp},
                 scheme=scheme or Dense(), quant=QuantSpec(bits=bits, scale=0.2),
                 tensors={"weight": w, "mask": mask, "qweight": q * mask.astype(np.int8),
                          "bias": np.zeros(out, np.float32)})


def conv_layer(name="conv1") -> Layer:
    lib = np.zeros((2, 3, 3), np.uint8)
    lib[0].flat[[1, 3, 4, 5]] = 1
    lib[1].flat[[0, 4, 7, 8]] = 1
    mask = np.zeros((4, 2, 3, 3), np.uint8)
    for o in range(4):
        for i in range(2):
            if (o + i) % 3:
                mask[o, i] = lib[(o * 2 + i) % 2]
    w = (RNG.standard_normal(mask.shape).astype(np.float32) * mask).astype(np.float32)
    return Layer(name=name, op="conv2d",
                 shape={"out_channels": 4, "in_channels": 2, "kernel": [3, 3], "stride": [1, 1],
                        "padding": [1, 1], "groups": 1},
                 scheme=Pattern(patterns=tuple(tuple(p.reshape(-1)) for p in lib),
                                connectivity=0.3),
                 quant=None, tensors={"weight": w, "mask": mask})


def lstm_layer(name="lstm") -> Layer:
    h, i = 4, 3
    t = {"weight_ih": RNG.standard_normal((4 * h, i)).astype(np.float32),
         "weight_hh": RNG.standard_normal((4 * h, h)).astype(np.float32),
         "mask_ih": np.ones((4 * h, i), np.uint8), "mask_hh": np.ones((4 * h, h), np.uint8),
         "bias_ih": np.zeros(4 * h, np.float32), "bias_hh": np.zeros(4 * h, np.float32)}
    return Layer(name=name, op="lstm",
                 shape={"input_size": i, "hidden_size": h, "gate_order": ["i", "f", "g", "o"]},
                 scheme=Dense(), quant=None, tensors=t)


def bcr_layer() -> Layer:
    mask = np.zeros((6, 8), np.uint8)
    mask[np.ix_([0, 2], [1, 3])] = 1
    mask[np.ix_([4], [0, 1, 2])] = 1
    mask[np.ix_([1, 2], [5, 6])] = 1
    return linear_layer("fc_bcr", scheme=BCR(block=(4, 4), row_ratio=0.5, col_ratio=0.5),
                        mask=mask)


@pytest.fixture
def bundle() -> Bundle:
    return Bundle("toy", (conv_layer(), linear_layer(), bcr_layer(), lstm_layer()))


@pytest.fixture
def saved(tmp_path, bundle) -> Path:
    return bundle.save(tmp_path / "b")


def test_round_trip(saved, bundle):
    loaded = Bundle.load(saved)
    assert loaded.manifest() == bundle.manifest()
    for a, b in zip(bundle.layers, loaded.layers, strict=True):
        assert a.tensors.keys() == b.tensors.keys()
        for key in a.tensors:
            assert a.tensors[key].dtype == b.tensors[key].dtype
            np.testing.assert_array_equal(a.tensors[key], b.tensors[key])
        assert a.stats == b.stats


def test_save_is_deterministic_and_atomic(tmp_path, bundle):
    a = bundle.save(tmp_path / "a")
    b = bundle.save(tmp_path / "b")
    for f in ("manifest.json", "weights.safetensors"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    bundle.save(tmp_path / "a")  # replaces an existing bundle
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    (tmp_path / "notabundle").mkdir()
    (tmp_path / "notabundle" / "keep.txt").write_text("x")
    with pytest.raises(BundleError, match="exists and is not a bundle"):
        bundle.save(tmp_path / "notabundle")
    assert (tmp_path / "notabundle" / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "notabundle"]


def test_stats_computed_from_tensors(bundle):
    fc = bundle.layer("fc1")
    assert fc.stats.nnz == 48 and fc.stats.weight_bits == 48 * 4 and fc.stats.index_bits == 0
    b = bundle.layer("fc_bcr")
    assert b.stats.nnz == 4 + 3 + 4
    assert b.stats.index_bits > 0 and b.stats.density == pytest.approx(11 / 48)
    assert bundle.layer("lstm").stats.numel == 16 * 3 + 16 * 4


def test_break_even_and_with_layer(bundle):
    import dataclasses

    new = dataclasses.replace(bundle.layer("fc1"), break_even=0.62)
    b2 = bundle.with_layer(new)
    assert b2.layer("fc1").break_even == 0.62
    assert b2.manifest()["layers"][1]["break_even"] == 0.62
    with pytest.raises(KeyError, match="no layer 'nope'"):
        bundle.layer("nope")


# -- every BundleError, with its message ------------------------------------------------------

def edit_manifest(path: Path, fn) -> None:
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m))


def edit_tensors(path: Path, fn) -> None:
    t = load_file(str(path / "weights.safetensors"))
    fn(t)
    save_file(t, str(path / "weights.safetensors"))


def expect(path: Path, message: str) -> None:
    """Bundle.load(path) fails with exactly ``message``; every message names the bundle folder,
    so one that does not start with it here is a content error, and gets the folder prefixed."""
    if not message.startswith(str(path)):
        message = f"{path}: {message}"
    with pytest.raises(BundleError, match="^" + re.escape(message) + "$"):
        Bundle.load(path)


def test_missing_files(tmp_path, saved):
    expect(tmp_path / "nope", f"{tmp_path / 'nope'}: not a bundle directory")
    (saved / "weights.safetensors").unlink()
    expect(saved, f"{saved}: weights.safetensors is missing")
    (saved / "manifest.json").unlink()
    expect(saved, f"{saved}: manifest.json is missing")


def test_bad_json_and_schema(saved):
    edit_manifest(saved, lambda m: m.update(schema=2))
    expect(saved, "manifest: field 'schema': unknown schema version 2; this version reads schema 1")
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest.json is not valid JSON"):
        Bundle.load(saved)


def test_manifest_too_deep_or_with_a_huge_number(saved):
    """A RecursionError and a ValueError (int() refuses over 4,300 digits) were tracebacks."""
    (saved / "manifest.json").write_text("[" * 100_000)
    expect(saved, "manifest.json is not valid JSON: nested too deeply")
    (saved / "manifest.json").write_text('{"schema": ' + "9" * 5000 + "}")
    with pytest.raises(BundleError, match=r"manifest.json is not valid JSON: Exceeds the limit"):
        Bundle.load(saved)


def test_bfloat16_tensor_is_named(saved):
    """torch saves bfloat16 weights as BF16, which numpy cannot read: a TypeError traceback."""
    import torch
    from safetensors.torch import load_file as load_torch
    from safetensors.torch import save_file as save_torch

    tensors = load_torch(str(saved / "weights.safetensors"))
    tensors["fc1.weight"] = tensors["fc1.weight"].to(torch.bfloat16)
    save_torch(tensors, str(saved / "weights.safetensors"))
    expect(saved, "weights.safetensors: tensor 'fc1.weight' is BF16, which this format does not "
                  "hold; weights are float32 (convert bfloat16 weights with .float() before "
                  "exporting)")


def test_unknown_op_and_scheme(saved):
    edit_manifest(saved, lambda m: m["layers"][1].update(op="dense"))
    expect(saved, "layer 'fc1': field 'op': unknown op 'dense'; allowed: conv2d, gru, linear, lstm")


def test_unknown_scheme_kind(saved):
    edit_manifest(saved, lambda m: m["layers"][1].update(scheme={"kind": "random"}))
    expect(saved, "layer 'fc1': field 'scheme': unknown scheme kind 'random'; allowed: "
                  "bcr, column, dense, filter, nm, pattern, unstructured")


@pytest.mark.parametrize("block, rows_cols", [([10**12, 4], "6x8"), ([4, 9], "6x8")])
def test_bcr_block_larger_than_matrix(saved, block, rows_cols):
    # as pruning.plan rules; a huge block read from a file must not reach the BCR encoder
    edit_manifest(saved, lambda m: m["layers"][2]["scheme"].update(block=block))
    expect(saved, f"layer 'fc_bcr': field 'scheme': BCR block {block[0]}x{block[1]} is larger "
                  f"than the {rows_cols} matrix of 'fc_bcr.weight'")


def test_unknown_scheme_kind_not_a_string(saved):
    edit_manifest(saved, lambda m: m["layers"][1].update(scheme={"kind": ["bcr"]}))
    expect(saved, "layer 'fc1': field 'scheme': unknown scheme kind ['bcr']; allowed: "
                  "bcr, column, dense, filter, nm, pattern, unstructured")


def test_tensor_missing(saved):
    edit_tensors(saved, lambda t: t.pop("fc1.mask"))
    expect(saved, "layer 'fc1': field 'mask': tensor 'fc1.mask' is missing")


def test_tensor_wrong_shape(saved):
    edit_tensors(saved, lambda t: t.update({"fc1.bias": np.zeros(5, np.float32)}))
    expect(saved, "layer 'fc1': field 'bias': shape [5] does not match the layer; expected [6]")


def test_tensor_wrong_dtype(saved):
    edit_tensors(saved, lambda t: t.update({"fc1.weight": t["fc1.weight"].astype(np.float64)}))
    expect(saved, "layer 'fc1': field 'weight': dtype float64 not allowed; expected float32")


def test_mask_not_binary(saved):
    edit_tensors(saved, lambda t: t["fc1.mask"].__setitem__((0, 0), 2))
    expect(saved, "layer 'fc1': field 'mask': mask values must be 0 or 1")


def test_mask_breaks_bcr(saved):
    def fn(t):
        t["fc_bcr.mask"][0, 0] = 1  # row 0 / col 0 now kept in block (0, 0): not a full product
    edit_tensors(saved, fn)
    expect(saved, "layer 'fc_bcr': field 'mask': breaks scheme 'bcr': block (0, 0) of size 4x4 "
                  "keeps entries that are not a full rows x columns product")


def test_mask_breaks_pattern(saved):
    def fn(t):
        t["conv1.mask"][0, 1] = 1  # all nine kept
    edit_tensors(saved, fn)
    expect(saved, "layer 'conv1': field 'mask': breaks scheme 'pattern': kernel (filter 0, "
                  "channel 1) matches no library pattern")


def test_pruned_weight_not_zero(saved):
    def fn(t):
        i = np.argwhere(t["fc_bcr.mask"] == 0)[0]
        t["fc_bcr.weight"][tuple(i)] = 1.0
    edit_tensors(saved, fn)
    expect(saved, "layer 'fc_bcr': field 'weight': non-zero where 'fc_bcr.mask' is 0")


def test_qweight_out_of_range(saved):
    edit_tensors(saved, lambda t: t["fc1.qweight"].__setitem__((0, 0), 8))
    expect(saved, "layer 'fc1': field 'qweight': value 8 is outside the 4-bit range [-7, 7]")


def test_bad_layer_names(saved):
    edit_manifest(saved, lambda m: m["layers"][1].update(name="../evil"))
    expect(saved, "layer name '../evil' contains a path separator")
    edit_manifest(saved, lambda m: m["layers"][1].update(name="a\nb"))
    expect(saved, "layer name 'a\\nb' contains a control character")


def test_duplicate_names(saved):
    edit_manifest(saved, lambda m: m["layers"].append(dict(m["layers"][1])))
    expect(saved, "layer 'fc1': field 'name': duplicate layer name")
    with pytest.raises(BundleError, match="duplicate layer name"):
        Bundle("x", (linear_layer(), linear_layer()))


def test_stats_must_match(saved):
    edit_manifest(saved, lambda m: m["layers"][1]["stats"].update(nnz=3))
    expect(saved, "layer 'fc1': field 'stats.nnz': recorded 3 but the tensors give 48")


def test_unexpected_tensor(saved):
    edit_tensors(saved, lambda t: t.update({"ghost.weight": np.zeros(2, np.float32)}))
    expect(saved, "weights.safetensors: tensor 'ghost.weight' belongs to no layer in the manifest")


def test_quant_and_shape_fields(saved):
    edit_manifest(saved, lambda m: m["layers"][1]["quant"].update(bits=1))
    expect(saved, "layer 'fc1': field 'quant.bits': must be an integer from 2 to 16, not 1")
    edit_manifest(saved, lambda m: m["layers"][1]["quant"].update(bits=4) or
                  m["layers"][3]["shape"].update(gate_order=["f", "i", "g", "o"]))
    expect(saved, "layer 'lstm': field 'shape.gate_order': must be ['i', 'f', 'g', 'o'] "
                  "(PyTorch's order) for lstm, not ['f', 'i', 'g', 'o']")


def test_other_scheme_checks():
    m = np.ones((4, 8), np.uint8)
    m[1, 3] = 0
    with pytest.raises(BundleError, match=re.escape("breaks scheme 'filter': row 1 is partly "
                                                    "pruned")):
        linear_layer("f", out=4, scheme=Filter(sparsity=0.5), mask=m)
    with pytest.raises(BundleError, match=re.escape("breaks scheme 'nm': row 0, group 0 keeps 4 "
                                                    "of 4, more than 2")):
        linear_layer("n", out=4, scheme=NM(n=2, m=4), mask=m)
    with pytest.raises(BundleError, match=re.escape("breaks scheme 'dense': 1 weights are pruned")):
        linear_layer("d", out=4, mask=m)
    ok = linear_layer("u", out=4, scheme=Unstructured(sparsity=0.1), mask=m)
    assert ok.stats.nnz == 31


def test_saved_files_have_the_umask_modes(tmp_path, bundle):
    old = os.umask(0o027)
    try:
        path = bundle.save(tmp_path / "b")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o750
    assert {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()} == {
        "manifest.json": 0o640, "weights.safetensors": 0o640}   # safetensors alone gave 0600
