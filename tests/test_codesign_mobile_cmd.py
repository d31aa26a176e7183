"""``codesign mobile``: every layer of a small bundle generated, built, checked and costed;
the instruction-cache warning; one-line errors."""

from __future__ import annotations

import json
import os
import re

import pytest
from mobile_bundle import make_bundle
from test_codesign_cli import assert_user_error, run


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("mobile") / "bundle")


def test_all_layers_on_host(capsys, bundle, tmp_path):
    code, out, err = run(capsys, "mobile", "--bundle", str(bundle), "--all", "--target", "host",
                         "--out", str(tmp_path / "m"))
    assert code == 0, err
    for layer in ("fc.bcr", "fc2", "conv", "lstm", "gru"):
        assert f"layer {layer} (host):" in out
    assert out.count("PASS, bit-exact against ir.golden") == 11
    assert "FAIL" not in out and "WARNING" not in out
    assert "sparse/dense host time ratio:" in out and "csr/dense host time ratio:" in out
    rep = json.loads((tmp_path / "m" / "fc_bcr" / "report.json").read_text())
    assert rep["ok"] and [k["kind"] for k in rep["kernels"]] == ["bcr", "csr", "dense"]
    kdir = tmp_path / "m" / "conv" / "sparse_pattern_int8_host"
    assert (kdir / "kernel.c").is_file() and (kdir / "mk_runtime.c").is_file()
    assert "-march=x86-64-v3" in (kdir / "BUILD.txt").read_text()
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "m" / "conv").stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700


def test_one_layer_on_aarch64_with_modelled_ratio(capsys, bundle, tmp_path):
    code, out, err = run(capsys, "mobile", "--bundle", str(bundle), "--layer", "conv", "--target",
                         "aarch64", "--dtype", "fp32", "--image", "8x10", "--out", str(tmp_path))
    assert code == 0, err
    assert out.count("fp32: PASS, max relative error") == 2
    assert "instructions, modelled cycles" in out
    assert "sparse/dense modelled ARM ratio: cycles" in out
    assert "(band over neoverse-n1, cortex-a57)" in out


def test_a_layer_named_twice_runs_once(capsys, bundle, tmp_path):
    code, out, err = run(capsys, "mobile", "--bundle", str(bundle), "--layer", "fc2", "--layer",
                         "fc2", "--no-cost", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert out.count("layer fc2 (host)") == 1          # it was built, checked and timed twice
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["fc2"]


def test_icache_budget_warning(capsys, bundle, tmp_path):
    code, out, _ = run(capsys, "mobile", "--bundle", str(bundle), "--layer", "fc2", "--no-cost",
                       "--icache-budget", "100", "--out", str(tmp_path))
    assert code == 0
    assert "WARNING sparse csr: code size" in out
    assert "EXCEEDS the instruction-cache budget of 100 bytes" in out


@pytest.mark.parametrize("args, message", [
    (["--layer", "nope"], "no layer 'nope' in"),
    (["--layer", "fc2", "--all"], "give --layer NAME (one or more) or --all"),
    ([], "give --layer NAME (one or more) or --all"),
    (["--layer", "fc2", "--image", "0x3"], "--image must look like 16 or 16x12"),
    (["--layer", "fc2", "--image", "\u00b3"], "--image must look like 16 or 16x12"),
    (["--layer", "fc2", "--image", "100000"], "--image sides must be at most 1024, not '100000'"),
])
def test_bad_arguments(capsys, bundle, tmp_path, args, message):
    code, _, err = run(capsys, "mobile", "--bundle", str(bundle), "--out", str(tmp_path), *args)
    assert_user_error(code, err, message)


def test_input_too_large_for_a_convolution(capsys, bundle, tmp_path, monkeypatch):
    monkeypatch.setattr("codesign.mobile_cmd.MAX_INPUT_VALUES", 5000)
    code, _, err = run(capsys, "mobile", "--bundle", str(bundle), "--out", str(tmp_path / "o"),
                       "--all", "--image", "40x30")
    assert_user_error(code, err, "--image 40x30 gives layer 'conv' 5x40x30 = 6,000 input values; "
                                 "at most 5,000")
    assert not (tmp_path / "o").exists()     # checked before any layer is built


def test_bad_target_and_missing_bundle(capsys, tmp_path):
    code, _, err = run(capsys, "mobile", "--bundle", str(tmp_path), "--all", "--target", "riscv",
                       "--out", str(tmp_path))
    assert_user_error(code, err, "Invalid value for '--target': 'riscv' is not one of 'host', "
                                 "'aarch64'")
    code, _, err = run(capsys, "mobile", "--bundle", str(tmp_path / "none"), "--all", "--out",
                       tmp_path)
    assert_user_error(code, err, f"no bundle at {tmp_path / 'none'}")


def test_layer_list_in_error(capsys, bundle, tmp_path):
    code, _, err = run(capsys, "mobile", "--bundle", str(bundle), "--layer", "x", "--out", str(tmp_path))
    assert "layers: fc.bcr, fc2, conv, lstm, gru" in err


def test_demo_stage_host_and_aarch64(bundle, tmp_path, monkeypatch):
    import codesign.mobile_cmd as mc

    monkeypatch.setattr(mc, "DEMO_LAYERS", ("fc2", "conv"))
    lines: list[str] = []
    assert mc.demo_stage(bundle, tmp_path, echo=lines.append)
    text = "\n".join(lines)
    assert "layer fc2 (host):" in text and "layer conv (aarch64):" in text
    assert "sparse/dense modelled ARM ratio" in text and "FAIL" not in text
    assert (tmp_path / "aarch64" / "conv" / "report.json").is_file()


def test_layers_whose_safe_names_collide_get_their_own_folders(capsys, bundle, tmp_path):
    from ir import Bundle

    b = Bundle.load(bundle)
    fc2 = b.layer("fc2")
    twin = type(fc2)("fc_bcr", fc2.op, fc2.shape, fc2.scheme, fc2.quant, dict(fc2.tensors))
    path = Bundle(b.model, (b.layer("fc.bcr"), twin)).save(tmp_path / "twins")
    code, out, err = run(capsys, "mobile", "--bundle", str(path), "--all", "--no-cost",
                         "--out", str(tmp_path / "m"))
    assert code == 0, err
    names = {d.name: json.loads((d / "report.json").read_text())["layer"]
             for d in (tmp_path / "m").iterdir()}
    assert names == {"fc_bcr": "fc.bcr", "fc_bcr_2": "fc_bcr"}   # "fc_bcr" no longer overwrites


def test_fp32_kernel_that_overflows_to_nan_fails(capsys, bundle, tmp_path):
    """fc2 with +-3e38 weights: the fp32 kernels' sums overflow (inf - inf = NaN). The check
    took max(0.0, nan) = 0.0 and said PASS with error 0, exit 0."""
    from dataclasses import replace

    import numpy as np

    from ir import Bundle, Dense

    b = Bundle.load(bundle)
    layer = b.layer("fc2")
    sign = np.where(np.arange(layer.tensors["weight"].size) % 2 == 0, 1, -1)
    w = (np.float32(3e38) * sign.reshape(layer.tensors["weight"].shape)).astype(np.float32)
    t = dict(layer.tensors) | {"weight": w, "mask": np.ones_like(layer.tensors["mask"]),
                               "qweight": np.where(w > 0, 127, -127).astype(np.int8)}
    b.with_layer(replace(layer, scheme=Dense(), tensors=t)).save(tmp_path / "huge")
    code, out, _ = run(capsys, "mobile", "--bundle", str(tmp_path / "huge"), "--layer", "fc2",
                       "--dtype", "fp32", "--no-cost", "--out", str(tmp_path / "o"))
    assert code == 1
    assert "dense  dense   fp32: FAIL, max relative error inf (ABOVE 1e-05" in out, out
    assert "PASS" not in out


def test_fp32_close_counts_nan_as_infinite_error():
    import numpy as np

    from mobile.reference import fp32_close

    ref = np.array([1.0, -3.2e39])
    assert fp32_close(np.array([1.0, np.nan]), ref, np.ones(2)) == (False, float("inf"))
    assert fp32_close(np.array([np.inf, 1.0]), np.array([np.inf, 1.0]), np.ones(2))[1] == \
        float("inf")
    assert fp32_close(np.array([1.0, -3.2e39]), ref, np.abs(ref)) == (True, 0.0)


def _edited(bundle, dest, **changes):
    """The bundle with layers renamed (``names``) or changed (``layers``: name -> function)."""
    from dataclasses import replace

    from ir import Bundle

    b = Bundle.load(bundle)
    names, edit = changes.get("names", {}), changes.get("layers", {})
    layers = tuple(replace(edit.get(x.name, lambda y: y)(x), name=names.get(x.name, x.name))
                   for x in b.layers)
    Bundle(model=b.model, layers=layers).save(dest)
    return dest


def test_layer_errors_are_found_before_any_layer_is_built(capsys, bundle, tmp_path):
    """fc.bcr and fc2 were built, checked and written before conv's kernel was found not to fit
    the image; the message named neither the layer nor --image."""
    from dataclasses import replace

    edited = _edited(bundle, tmp_path / "b", layers={
        "conv": lambda x: replace(x, shape=replace(x.shape, padding=(0, 0)))})
    code, _, err = run(capsys, "mobile", "--bundle", str(edited), "--all", "--image", "2",
                       "--no-cost", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "layer 'conv': its 3x3 kernel does not fit the 2x2 input image "
                                 "(padding 0x0); the image must be at least 3x3 (--image 2x2)")
    assert not (tmp_path / "o").exists()


def test_a_layers_folder_does_not_depend_on_the_layers_chosen(capsys, bundle, tmp_path):
    """fc.2 and fc_2 both sanitise to fc_2: with --all fc.2 got fc_2/ and fc_2 got fc_2_2/, but
    --layer fc_2 alone wrote fc_2/, over fc.2's outputs."""
    long = "a" * 250          # its temporary folder name was longer than the file system takes
    edited = _edited(bundle, tmp_path / "b", names={"fc.bcr": "fc.2", "fc2": "fc_2",
                                                    "gru": long})
    out = tmp_path / "o"
    for layer in ("fc_2", "fc.2", long):
        code, _, err = run(capsys, "mobile", "--bundle", str(edited), "--layer", layer,
                           "--no-cost", "--out", str(out))
        assert code == 0, err
    reports = {p.name: json.loads((p / "report.json").read_text())["layer"]
               for p in out.iterdir()}
    folder = next(n for n in reports if n.startswith("a" * 55))
    assert reports == {"fc_2": "fc.2", "fc_2_2": "fc_2", folder: long}
    assert len(folder) == 64 and re.fullmatch(r"a{55}_[0-9a-f]{8}", folder)


@pytest.mark.parametrize("what", ["symlink", "file", "folder"])
def test_something_else_at_a_layers_folder_is_never_replaced(capsys, bundle, tmp_path, what):
    """A symbolic link there was an OSError traceback after the work; a folder of the user's
    own files was deleted (shutil.rmtree) and replaced."""
    out, mine = tmp_path / "o", tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    out.mkdir()
    if what == "symlink":
        (out / "fc2").symlink_to(mine)
    elif what == "file":
        (out / "fc2").write_text("keep")
    else:
        (out / "fc2").mkdir()
        (out / "fc2" / "notes.txt").write_text("keep")
    code, _, err = run(capsys, "mobile", "--bundle", str(bundle), "--layer", "fc.bcr", "--layer",
                       "fc2", "--no-cost", "--out", str(out))
    assert_user_error(code, err, f"{out / 'fc2'}: exists and is not a layer folder of codesign "
                                 "mobile; not replacing it")
    assert sorted(p.name for p in out.iterdir()) == ["fc2"]        # fc.bcr not built either
    assert (mine / "notes.txt").read_text() == "keep"
    assert (out / "fc2").is_symlink() == (what == "symlink")
    code, _, err = run(capsys, "mobile", "--bundle", str(bundle), "--layer", "fc2", "--no-cost",
                       "--out", str(tmp_path / "p"))
    assert code == 0, err
    code, _, err = run(capsys, "mobile", "--bundle", str(bundle), "--layer", "fc2", "--no-cost",
                       "--out", str(tmp_path / "p"))                # its own outputs: replaced
    assert code == 0, err


def test_rnn_scales_without_a_fixed_point_step_name_the_layer(capsys, bundle, tmp_path):
    """It was 'Real multiplier must be finite and in [0, 32767.5), not 1e+300', naming neither
    the layer nor the field."""
    from dataclasses import replace

    edited = _edited(bundle, tmp_path / "b", layers={
        "lstm": lambda x: replace(x, quant=replace(x.quant, scale=1e300))})
    code, _, err = run(capsys, "mobile", "--bundle", str(edited), "--all", "--no-cost",
                       "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith(
        "codesign: error: layer 'lstm': its weight scale 1e+300 (quant.scale) and activation "
        "scale "), err
    assert err.strip().endswith("; use --dtype fp32") and not (tmp_path / "o").exists()


def test_a_file_where_the_build_cache_goes(capsys, bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".mobile_cache").write_text("mine")
    code, _, err = run(capsys, "mobile", "--bundle", str(bundle), "--layer", "fc2", "--no-cost",
                       "--out", str(tmp_path / "o"))      # was ".mobile_cache: File exists"
    assert_user_error(code, err, ".mobile_cache: the kernels' build cache must be a folder, not "
                                 "a file")
