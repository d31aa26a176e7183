"""``codesign compare``: an RNN layer on the FPGA engines and on ARM, printed and written; the
engines placed for real; one-line errors."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from mobile_bundle import make_bundle
from test_codesign_cli import assert_user_error, run

from codesign.compare_cmd import parse_fmax


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("cmpcli") / "bundle")


def test_given_fmax_prints_and_writes(capsys, bundle, tmp_path):
    code, out, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "lstm",
                         "--lanes", "4", "--steps", "2", "--fmax", "40,30", "--out",
                         str(tmp_path))
    assert code == 0, err
    assert "BCR gates: RTL == golden, cycles == model" in out
    assert "at 30.00 MHz (given (--fmax))" in out and "at 40.00 MHz (given (--fmax))" in out
    assert out.count("golden PASS, sequence == RTL") == 3
    assert "ARM clock at which an ARM kernel takes the FPGA engine's time" in out
    assert out.splitlines()[-1] == f"wrote {tmp_path}"
    rep = json.loads((tmp_path / "lstm" / "compare.json").read_text())
    assert rep["ok"] and rep["steps"] == 2 and rep["device"] is None
    assert [f["fmax_mhz"] for f in rep["fpga"]] == [30.0, 40.0]
    df = pd.read_csv(tmp_path / "lstm" / "compare.csv")
    assert list(df.platform) == ["fpga", "fpga", "arm", "arm", "arm"]
    assert df.check.all()


def test_conv_layer_given_fmax(capsys, bundle, tmp_path):
    code, out, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "conv",
                         "--lanes", "4", "--maps", "2", "--image", "6x5", "--fmax", "40,30",
                         "--out", str(tmp_path))
    assert code == 0, err
    assert "input 6x5" in out and "pattern engine (16 multipliers): RTL == golden" in out
    assert "at 30.00 MHz (given (--fmax))" in out and "us/image" in out
    assert out.count("golden PASS, outputs == RTL") == 2
    rep = json.loads((tmp_path / "conv" / "compare.json").read_text())
    assert rep["ok"] and rep["maps"] == 2 and rep["image"] == [6, 5]
    assert [f["gates"] for f in rep["fpga"]] == ["pattern", "dense"]
    df = pd.read_csv(tmp_path / "conv" / "compare.csv")
    assert list(df.platform) == ["fpga", "fpga", "arm", "arm"] and df.check.all()


def test_engines_are_placed_on_the_part(capsys, bundle, tmp_path):
    code, out, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "gru",
                         "--lanes", "4", "--steps", "2", "--device", "ecp5-25k", "--out",
                         str(tmp_path))
    assert code == 0, err
    rep = json.loads((tmp_path / "gru" / "compare.json").read_text())
    (f,) = rep["fpga"]
    assert f["gates"] == "dense" and f["fmax_source"] == "nextpnr on ecp5-25k, seed 1"
    assert f["fmax_mhz"] > 5 and f["resources"]["dsps"] >= 1
    layer_dir = tmp_path / "gru"
    synth = json.loads((layer_dir / f["report"]).read_text())
    assert f["report"].startswith("synth/") and f["verilog"].startswith("verilog/")
    assert synth["device"] == "ecp5-25k" and synth["fmax_mhz"]["median"] == f["fmax_mhz"]
    # the placed Verilog is the simulated one, copied beside the results
    v = (layer_dir / f["verilog"]).read_bytes()
    assert synth["verilog_sha256"] == hashlib.sha256(v).hexdigest()
    assert (layer_dir / f["verilog"]).with_suffix(".json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert "us/step" in out and "FPGA (ecp5-25k, 4 lanes" in out


def test_a_rerun_replaces_its_own_folder_byte_for_byte(capsys, bundle, tmp_path):
    """A second run into the same --out was refused: the folder check was codesign mobile's,
    which looks for its report.json."""
    argv = ["compare", "--bundle", str(bundle), "--layer", "gru", "--lanes", "4", "--steps",
            "1", "--fmax", "40", "--out", str(tmp_path)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "1 step from a zero state" in out
    first = {p.name: p.read_bytes() for p in (tmp_path / "gru").rglob("*") if p.is_file()}
    (tmp_path / "gru" / "stale.txt").write_text("x")
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    again = {p.name: p.read_bytes() for p in (tmp_path / "gru").rglob("*") if p.is_file()}
    assert again == first and "compare.json" in first and ".codesign-compare" in first
    rep = json.loads(first["compare.json"])
    assert rep["simulator"] == "verilator" and rep["fpga"][0]["verilog"].startswith("verilog/")
    import csv

    with open(tmp_path / "gru" / "compare.csv", newline="") as fh:
        assert {r["lanes"] for r in csv.DictReader(fh)} == {"4", ""}     # not 4.0
    other = tmp_path / "o2" / "gru"
    other.mkdir(parents=True)
    (other / "mine.txt").write_text("keep")
    code, _, err = run(capsys, *argv[:-1], str(tmp_path / "o2"))
    assert_user_error(code, err, "exists and is not a layer folder of codesign compare")
    assert (other / "mine.txt").read_text() == "keep"


def test_placing_options_with_fmax_are_refused(capsys, bundle, tmp_path):
    code, _, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "gru", "--fmax",
                       "40", "--device", "up5k", "--seeds", "3", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "--device, --seeds place the engines; with --fmax nothing is "
                                 "placed")
    code, _, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "gru", "--fmax",
                       "40", "--router", "router2", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "--router place the engines; with --fmax nothing is placed")
    code, _, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "gru", "--fmax",
                       "40", "--first-seed", "4", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "--first-seed place the engines; with --fmax nothing is placed")
    code, _, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "gru", "--fmax",
                       "40", "--pnr-timeout", "60", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "--pnr-timeout place the engines; with --fmax nothing is "
                                 "placed")


@pytest.mark.parametrize("argv, message", [
    (["--layer", "conv", "--image", "65"], "--image sides must be at most 64 for compare"),
    (["--layer", "conv", "--image", "0"], "--image must look like 16 or 16x12"),
    (["--layer", "conv", "--maps", "17"], "Invalid value for '--maps'"),
    (["--layer", "fc2", "--maps", "2"], "--maps is the number of random input feature maps of "
                                        "conv2d layers; for linear layers give --vectors"),
    (["--layer", "lstm", "--image", "8"], "--image is the input size of conv2d layers; for "
                                          "lstm and gru layers give --steps"),
    (["--layer", "conv", "--steps", "2"], "--steps is the sequence length of lstm and gru "
                                          "layers; for conv2d layers give --maps (random "
                                          "feature maps) and --image"),
    (["--layer", "nope"], "no layer 'nope' in"),
    (["--layer", "lstm", "--lanes", "6"], "--lanes must be a positive multiple of 4"),
    (["--layer", "lstm", "--fmax", "40,x"], "--fmax must be DENSE or DENSE,SPARSE"),
    (["--layer", "lstm", "--fmax", "0"], "--fmax must be DENSE or DENSE,SPARSE"),
    (["--layer", "lstm", "--fmax", "1,2,3"], "--fmax must be DENSE or DENSE,SPARSE"),
    (["--layer", "lstm", "--freq", "nan"], "--freq must be a finite number"),
    (["--layer", "lstm", "--steps", "0"], "Invalid value for '--steps'"),
    # linear layers: --vectors, not --steps, and the other way round
    (["--layer", "fc2", "--steps", "3"], "--steps is the sequence length of lstm and gru "
                                          "layers; for linear layers give --vectors"),
    (["--layer", "gru", "--vectors", "3"], "--vectors is the number of random input vectors "
                                           "of linear layers; for lstm and gru layers give "
                                           "--steps"),
    (["--layer", "fc2", "--vectors", "0"], "Invalid value for '--vectors'"),
    (["--layer", "fc2", "--vectors", "65"], "Invalid value for '--vectors'"),
    (["--layer", "fc2", "--fmax", "40,0"], "--fmax must be DENSE or DENSE,SPARSE"),
    # --slices slices a BCR engine: refused when no chosen layer has one
    (["--layer", "fc2", "--layer", "gru", "--slices", "2"],
     "--slices 2 splits a BCR engine into pipelines, and none of the layers runs on one "
     "(fc2 unstructured, gru dense); give --slices to BCR-pruned layers only"),
    (["--layer", "conv", "--slices", "3"], "none of the layers runs on one (conv pattern)"),
    (["--layer", "lstm", "--slices", "17"], "Invalid value for '--slices'"),
    (["--layer", "lstm", "--slices", "0"], "Invalid value for '--slices'"),
])
def test_errors_are_one_line(capsys, bundle, tmp_path, argv, message):
    code, _, err = run(capsys, "compare", "--bundle", str(bundle), *argv, "--out",
                       str(tmp_path / "o"))
    assert_user_error(code, err, message)
    assert not (tmp_path / "o").exists()


def test_no_bundle(capsys, tmp_path):
    code, _, err = run(capsys, "compare", "--bundle", str(tmp_path), "--layer", "x", "--out",
                       str(tmp_path / "o"))
    assert_user_error(code, err, f"no bundle at {tmp_path}")


def test_parse_fmax():
    assert parse_fmax(None) is None
    assert parse_fmax("40") == {"dense": 40.0, "sparse": 40.0}
    assert parse_fmax("40,31.5") == {"dense": 40.0, "sparse": 31.5}
    for bad in ("", "inf", "-1", "40,", "a"):
        with pytest.raises(ValueError, match="DENSE or DENSE,SPARSE"):
            parse_fmax(bad)


def test_linear_layer_with_given_fmax(capsys, bundle, tmp_path):
    code, out, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "fc.bcr",
                         "--lanes", "4", "--vectors", "2", "--fmax", "40,30", "--out",
                         str(tmp_path))
    assert code == 0, err
    assert "layer fc.bcr: linear, input 37, output 20, bcr 8x16" in out
    assert "2 random int8 input vectors" in out
    assert "BCR engine: RTL == golden, cycles == model" in out
    assert "dense engine: RTL == golden, cycles == model" in out
    assert "at 30.00 MHz (given (--fmax))" in out and "at 40.00 MHz (given (--fmax))" in out
    assert out.count("golden PASS, outputs == RTL") == 3
    assert "ARM clock at which an ARM kernel takes the FPGA engine's time per vector" in out
    assert out.splitlines()[-1] == f"wrote {tmp_path}"
    rep = json.loads((tmp_path / "fc_bcr" / "compare.json").read_text())
    assert rep["ok"] and rep["vectors"] == 2 and rep["op"] == "linear"
    assert [(f["gates"], f["fmax_mhz"]) for f in rep["fpga"]] == [("bcr", 30.0), ("dense", 40.0)]
    assert all(f["verilog"].startswith("verilog/") for f in rep["fpga"])
    f = rep["fpga"][0]
    # matching clock = ARM cycles per vector / FPGA microseconds per vector
    assert f["us_per_vector"] == pytest.approx(f["cycles_per_vector"] / 30.0)
    pair = next(m for m in rep["matching_mhz"] if m["fpga"] == "BCR engine"
                and m["arm"] == "dense kernel")
    dense_arm = next(a for a in rep["arm"] if a["matvec"] == "dense")
    assert pair["neoverse-n1"] == pytest.approx(dense_arm["cycles"]["neoverse-n1"]
                                                / f["us_per_vector"])
    df = pd.read_csv(tmp_path / "fc_bcr" / "compare.csv")
    assert list(df.platform) == ["fpga", "fpga", "arm", "arm", "arm"]
    assert list(df.implementation) == ["BCR engine", "dense engine", "bcr kernel", "csr kernel",
                                       "dense kernel"]
    assert df.check.all() and {"vectors", "output", "cycles_per_vector"} <= set(df.columns)


def test_linear_and_rnn_layers_in_one_run(capsys, bundle, tmp_path):
    """--steps goes to the RNN layer, --vectors to the linear one; any lanes for linear."""
    code, out, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "fc2",
                         "--layer", "gru", "--lanes", "4", "--steps", "1", "--vectors", "3",
                         "--fmax", "40", "--out", str(tmp_path))
    assert code == 0, err
    assert "3 random int8 input vectors" in out and "1 step from a zero state" in out
    assert "unstructured engine: RTL == golden, cycles == model" in out
    assert "csr kernel: golden PASS, outputs == RTL" in out
    lin = json.loads((tmp_path / "fc2" / "compare.json").read_text())
    rnn = json.loads((tmp_path / "gru" / "compare.json").read_text())
    assert lin["vectors"] == 3 and rnn["steps"] == 1 and lin["ok"] and rnn["ok"]
    assert [f["gates"] for f in lin["fpga"]] == ["unstructured", "dense"]
    assert [f["fmax_mhz"] for f in lin["fpga"]] == [40.0, 40.0]


def test_a_linear_layer_too_large_for_the_engines(capsys, bundle, tmp_path, monkeypatch):
    import hw.emit

    monkeypatch.setattr(hw.emit, "MAX_MEMORY_BITS", 1000)
    code, _, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "fc2",
                       "--fmax", "40", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "layer 'fc2' (10x20) does not fit the unstructured engine with 8 "
                                 "lanes: its memories hold")
    assert not (tmp_path / "o").exists()


def test_a_linear_layer_without_integer_weights(capsys, tmp_path):
    import dataclasses

    from ir import Bundle

    b = Bundle.load(make_bundle(tmp_path / "b0"))
    lay = b.layer("fc2")
    plain = dataclasses.replace(lay, quant=None, tensors={k: v for k, v in lay.tensors.items()
                                                          if k != "qweight"})
    Bundle(b.model, (plain,)).save(tmp_path / "b1")
    code, _, err = run(capsys, "compare", "--bundle", str(tmp_path / "b1"), "--layer", "fc2",
                       "--fmax", "40", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "layer 'fc2' has no quantized weights; compare runs the int8 "
                                 "product on both sides")


def test_conv_input_size_comes_from_the_zoo_model():
    from types import SimpleNamespace

    from codesign.compare_cmd import layer_images

    ops = {"conv1": "conv2d", "conv2": "conv2d", "fc1": "linear", "mine": "conv2d"}

    def fake(model):
        return SimpleNamespace(model=model, layer=lambda n: SimpleNamespace(op=ops[n]))

    names = ["conv2", "fc1", "mine"]
    assert layer_images(fake("lenet5"), names, None) == {"conv2": (12, 12), "mine": (16, 16)}
    assert layer_images(fake("lenet5"), names, (5, 6)) == {"conv2": (5, 6), "mine": (5, 6)}
    assert layer_images(fake("not-a-zoo-model"), names, None) == {"conv2": (16, 16),
                                                                   "mine": (16, 16)}
    assert layer_images(fake("lenet5"), ["fc1"], None) == {}


def test_slices_for_a_bcr_layer(capsys, bundle, tmp_path):
    """--slices 2 with a BCR and a non-BCR layer: the BCR engine runs on 2 slices, the
    others as without the option."""
    code, out, err = run(capsys, "compare", "--bundle", str(bundle), "--layer", "fc.bcr",
                         "--layer", "fc2", "--lanes", "4", "--vectors", "1", "--slices", "2",
                         "--fmax", "40", "--out", str(tmp_path))
    assert code == 0, err
    assert "  BCR engine (2 slices x 4 lanes): RTL == golden, cycles == model" in out
    assert "  unstructured engine: RTL == golden, cycles == model" in out
    rep = json.loads((tmp_path / "fc_bcr" / "compare.json").read_text())
    assert [f.get("slices") for f in rep["fpga"]] == [2, None]
    side = json.loads((tmp_path / "fc_bcr" / rep["fpga"][0]["verilog"]).with_suffix(".json")
                      .read_text())
    assert side["parameters"]["slices"] == 2
    other = json.loads((tmp_path / "fc2" / "compare.json").read_text())
    assert all("slices" not in f for f in other["fpga"])
    import csv

    with open(tmp_path / "fc_bcr" / "compare.csv", newline="") as fh:   # an integer column
        assert [r["slices"] for r in csv.DictReader(fh)] == ["2", "", "", "", ""]


def test_max_slices_is_the_bcr_engines():
    from codesign import options
    from codesign.compare_cmd import MAX_COMPARE_SLICES
    from hw.bcr import MAX_SLICES

    assert MAX_COMPARE_SLICES == options.MAX_SLICES == MAX_SLICES


@pytest.mark.parametrize("seeds, first, router, stuck, source", [
    (1, 1, "router1", (), "nextpnr on ecp5-85k, seed 1"),
    (3, 1, "router2", (), "nextpnr on ecp5-85k, median of seeds 1-3, router2"),
    (3, 1, "router1", (2,), "nextpnr on ecp5-85k, median of seeds 1, 3; seed 2 stopped after "
                            "600 s"),
    (2, 4, "router1", (4,), "nextpnr on ecp5-85k, seed 5; seed 4 stopped after 600 s"),
])
def test_synth_function_passes_and_names_the_router(monkeypatch, tmp_path, seeds, first, router,
                                                    stuck, source):
    """compare's synth callback hands ``--router`` and ``--pnr-timeout`` to codesign synth's
    flow and names the router and the seeds its Fmax is of."""
    import codesign.synth_cmd as synth_cmd
    from codesign.compare_cmd import _synth_function
    from synth_reports.flow import SynthReport
    from synth_reports.pnr import PnrResult
    from synth_reports.yosys import Resources

    seen = {}

    def fake(verilog, device, dest, *, target_mhz, seeds, router, pnr_timeout_s, first_seed):
        seen.update(device=device, target_mhz=target_mhz, seeds=seeds, router=router,
                    pnr_timeout_s=pnr_timeout_s, first_seed=first_seed)
        res = Resources(target="ecp5", luts=1, ffs=2, carries=0, brams=0, dsps=1)
        runs = tuple(PnrResult(device, s, target_mhz, 31.5, router=router)
                     for s in range(first_seed, first_seed + seeds) if s not in stuck)
        return SynthReport("e", "0" * 64, {}, device, res, runs=runs, timed_out=stuck,
                           pnr_timeout_s=pnr_timeout_s), dest / "r.json"

    monkeypatch.setattr(synth_cmd, "run_synth", fake)
    fmax, src, res, path, err = _synth_function("ecp5-85k", tmp_path, 40.0, seeds, router,
                                                600, first)("bcr", str(tmp_path / "e.v"))
    assert seen == dict(device="ecp5-85k", target_mhz=40.0, seeds=seeds, router=router,
                        pnr_timeout_s=600, first_seed=first)
    assert (fmax, src, res["luts"], path, err) == (31.5, source, 1, str(tmp_path / "r.json"), "")
