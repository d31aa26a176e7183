"""The command line: help, exit codes, one-line user errors, inspect, verilog, doctor."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from codesign.cli import main
from ir import BCR
from pruning.export import export_model, layer_from_module
from pruning.projections import bcr_mask, mask_of, select_pattern_library
from pruning.schemes import PatternConfig
from pruning.zoo import build


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """TinyCNN at 8 bits with fc1 BCR-pruned (block 8x16, half the rows and columns)."""
    path = tmp_path_factory.mktemp("cli") / "bundle"
    model = build("tinycnn")
    mask = bcr_mask(model.fc1.weight.detach(), (8, 16), 0.5, 0.5)
    fc1 = layer_from_module("fc1", model.fc1, scheme=BCR(block=(8, 16), row_ratio=0.5,
                                                         col_ratio=0.5), mask=mask, bits=8)
    lib = select_pattern_library([model.conv2.weight.detach()], library_size=4)
    pconf = PatternConfig(library_size=4, connectivity=0.25)
    pmask = mask_of(pconf, model.conv2.weight.detach(), library=lib)
    conv2 = layer_from_module("conv2", model.conv2, scheme=pconf.to_ir(library=lib), mask=pmask,
                              bits=8)
    export_model(model, "tinycnn", bits=8).with_layer(fc1).with_layer(conv2).save(path)
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, text):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("codesign: error: ")
    assert text in lines[0]
    assert "Traceback" not in err


def test_help_shows_examples(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "Examples:" in out and "codesign demo --out out/demo" in out
    for cmd in ("doctor", "inspect", "verilog", "demo"):
        assert cmd in out


def test_unknown_command_and_option(capsys):
    code, _, err = run(capsys, "frobnicate")
    assert_user_error(code, err, "No such command 'frobnicate'")
    code, _, err = run(capsys, "verilog", "--rows", "4", "--cols", "4", "--lanes", "0",
                       "--out", "x")
    assert_user_error(code, err, "Invalid value for '--lanes'")


def test_inspect_table(capsys, bundle_dir):
    code, out, err = run(capsys, "inspect", str(bundle_dir))
    assert code == 0, err
    for name in ("conv1", "conv2", "fc1", "fc2"):
        assert name in out
    assert "conv2d" in out and "linear" in out and "dense" in out


def test_inspect_prints_names_as_they_are_and_both_strides(capsys, tmp_path, bundle_dir):
    """A folder '[/red]' was a rich MarkupError traceback, '[bold]x' printed as 'x', a layer
    'fc[bold]1' as 'fc1'; a stride of 1x2 was shown as s1."""
    from dataclasses import replace

    from ir import Bundle

    b = Bundle.load(bundle_dir)
    layers = tuple(replace(x, name="fc[bold]1") if x.name == "fc1" else
                   replace(x, shape=replace(x.shape, stride=(1, 2), padding=(1, 0)))
                   if x.name == "conv1" else x for x in b.layers)
    for folder in ("[/red]", "[bold]x"):
        path = tmp_path / folder / "bundle"
        Bundle(model=b.model, layers=layers).save(path)
        code, out, err = run(capsys, "inspect", str(path))
        assert code == 0, err
        assert f"bundle {path}" in " ".join(out.split()) and "fc[bold]1" in out
        assert "s1x2 p1x0" in out


def test_inspect_bad_bundle(capsys, tmp_path, bundle_dir):
    code, _, err = run(capsys, "inspect", str(tmp_path / "missing"))
    assert_user_error(code, err, f"cannot load bundle: {tmp_path / 'missing'}: not a bundle "
                                 "directory")
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    m = json.loads((broken / "manifest.json").read_text())
    m["layers"][0]["op"] = "matmul"
    (broken / "manifest.json").write_text(json.dumps(m))
    code, _, err = run(capsys, "inspect", str(broken))
    assert_user_error(code, err, f"cannot load bundle: {broken}: layer 'conv1': field 'op': "
                                 "unknown op 'matmul'")


def test_verilog_writes_files(capsys, tmp_path):
    code, out, err = run(capsys, "verilog", "--rows", "10", "--cols", "7", "--lanes", "4",
                         "--name", "3bad name", "--out", str(tmp_path / "v"))
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "v").iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".v")
    text = (tmp_path / "v" / files[1]).read_text()
    assert "module" in text and "3bad name" not in text


def test_doctor_ok_here(capsys):
    code, out, _ = run(capsys, "doctor")
    assert code == 0
    assert "verilator" in out and "iverilog" in out and "OK" in out


def test_doctor_missing_tool_exits_1(capsys, monkeypatch):
    import sim.toolchain as tc

    real = tc.check_tools()
    broken = [type(s)(**{**s.__dict__, "ok": False, "detail": "not found"})
              if s.name == "iverilog" else s for s in real]
    monkeypatch.setattr(tc, "check_tools", lambda: broken)
    code, out, err = run(capsys, "doctor")
    assert code == 1
    assert "MISSING" in out and "apt-get install -y iverilog" in out
    assert "a required tool is missing" in err


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codesign.cli", "inspect", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_verilog_from_bundle_layer(capsys, tmp_path, bundle_dir):
    code, out, err = run(capsys, "verilog", "--engine", "bcr", "--bundle", str(bundle_dir),
                         "--layer", "fc1", "--lanes", "4", "--out", str(tmp_path / "v"))
    assert code == 0, err
    sidecar = json.loads((tmp_path / "v" / "bcr_fc1.json").read_text())
    assert sidecar["parameters"]["block"] == [8, 16]
    assert sidecar["parameters"]["rows"] == 48 and sidecar["parameters"]["cols"] == 64
    code, _, err = run(capsys, "verilog", "--out", str(tmp_path / "w"))
    assert_user_error(code, err, "give --rows and --cols, or --bundle and --layer")
    code, _, err = run(capsys, "verilog", "--bundle", str(bundle_dir), "--out", "x")
    assert_user_error(code, err, "--bundle and --layer go together")
    code, _, err = run(capsys, "verilog", "--block", "8by16", "--rows", "4", "--cols", "4",
                       "--out", "x")
    assert_user_error(code, err, "--block must look like 8x16 (positive), not '8by16'")
    code, _, err = run(capsys, "verilog", "--engine", "bcr", "--block", "0x8", "--rows", "4",
                       "--cols", "4", "--out", "x")      # was "Block must be a pair of ..."
    assert_user_error(code, err, "--block must look like 8x16 (positive), not '0x8'")
    code, _, err = run(capsys, "verilog", "--engine", "bcr", "--block", "\u00b2x8", "--rows",
                       "16", "--cols", "16", "--out", "x")    # '\u00b2'.isdigit(), int() refuses it
    assert_user_error(code, err, "--block must look like 8x16 (positive), not '\u00b2x8'")


@pytest.mark.parametrize("engine, layer", [("bcr", "fc1"), ("dense", "conv1"),
                                           ("unstructured", "fc2"), ("pattern", "conv2")])
def test_simulate_layer(capsys, bundle_dir, engine, layer):
    code, out, err = run(capsys, "simulate", "--bundle", str(bundle_dir), "--layer", layer,
                         "--engine", engine, "--lanes", "4")
    assert code == 0, err
    assert "outputs match golden model: yes" in out and "(match)" in out


def test_verilog_from_a_layer_builds_what_simulate_checks(capsys, tmp_path, bundle_dir):
    """The pattern engine was emitted with library size 8 and 4 kept weights whatever the
    layer's library, and the unstructured engine with index bits 4 whatever the layer's."""
    from dataclasses import replace

    from ir import Bundle, Pattern, Unstructured

    b = Bundle.load(bundle_dir)
    conv2, fc2 = b.layer("conv2"), b.layer("fc2")
    five = tuple(p for p in ((1, 1, 1, 1, 1, 0, 0, 0, 0), (0, 0, 0, 0, 1, 1, 1, 1, 1)))
    mask = np.zeros_like(conv2.tensors["mask"])
    mask[:, :] = np.array(five[0], dtype=mask.dtype).reshape(3, 3)
    qw = np.where(mask, 1, 0).astype(conv2.tensors["qweight"].dtype)
    t = dict(conv2.tensors) | {"mask": mask, "qweight": qw,
                               "weight": (qw * conv2.quant.scale).astype(np.float32)}
    b = b.with_layer(replace(conv2, scheme=Pattern(patterns=five), tensors=t)).with_layer(
        replace(fc2, scheme=Unstructured(index_bits=2)))
    b.save(tmp_path / "b")
    for engine, layer, expected in (("pattern", "conv2", {"library_size": 2, "kept": 5}),
                                    ("unstructured", "fc2", {"index_bits": 2})):
        code, _, err = run(capsys, "verilog", "--engine", engine, "--bundle", str(tmp_path / "b"),
                           "--layer", layer, "--lanes", "4",
                           *(["--image", "8"] if engine == "pattern" else []),
                           "--out", str(tmp_path / "v"))
        assert code == 0, err
        params = json.loads((tmp_path / "v" / f"{engine}_{layer}.json").read_text())["parameters"]
        assert {k: params[k] for k in expected} == expected
    code, _, err = run(capsys, "verilog", "--engine", "unstructured", "--bundle",
                       str(tmp_path / "b"), "--layer", "fc2", "--index-bits", "6", "--out",
                       str(tmp_path / "w"))
    assert code == 0, err
    assert json.loads((tmp_path / "w" / "unstructured_fc2.json").read_text())["parameters"][
        "index_bits"] == 6


def test_simulate_pattern_runs_every_vector(capsys, bundle_dir):
    """--vectors 3 printed '3 vectors' but one image ran."""
    from codesign.flow import simulate_pattern_layer
    from ir import Bundle

    r = simulate_pattern_layer(Bundle.load(bundle_dir).layer("conv2"), lanes=4, vectors=3)
    assert r["vectors"] == 3 and len(r["cycles"]) == 3 and r["outputs_match"]
    assert r["cycles"] == r["model_cycles"]
    code, out, err = run(capsys, "simulate", "--bundle", str(bundle_dir), "--layer", "conv2",
                         "--engine", "pattern", "--lanes", "4", "--vectors", "3")
    assert code == 0, err
    assert "verilator, 3 random 8x8 input images" in out


def test_simulate_user_errors(capsys, bundle_dir):
    code, _, err = run(capsys, "simulate", "--bundle", str(bundle_dir), "--layer", "conv1",
                       "--engine", "bcr")
    assert_user_error(code, err, "layer 'conv1' has scheme 'dense'; the bcr engine runs layers "
                                 "pruned with the bcr scheme")
    code, _, err = run(capsys, "simulate", "--bundle", str(bundle_dir), "--layer", "fc1",
                       "--engine", "pattern")
    assert_user_error(code, err, "layer 'fc1' is a linear with scheme 'bcr'; the pattern engine "
                                 "runs pattern-pruned conv2d layers")
    code, _, err = run(capsys, "simulate", "--bundle", str(bundle_dir), "--layer", "nope")
    assert_user_error(code, err, "no layer 'nope'; layers: conv1, conv2, fc1, fc2")


@pytest.mark.parametrize("engine", ["lstm", "gru", "pattern", "unstructured"])
def test_verilog_every_engine(capsys, tmp_path, engine):
    code, out, err = run(capsys, "verilog", "--engine", engine, "--rows", "8", "--cols", "6",
                         "--lanes", "4", *(["--image", "8"] if engine == "pattern" else []),
                         "--out", str(tmp_path))
    assert code == 0, err
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2
    sidecar = json.loads((tmp_path / files[0]).read_text())
    assert sidecar["parameters"]["engine"] == engine and sidecar["memory_map"]
    assert "module" in (tmp_path / files[1]).read_text()


@pytest.fixture(scope="module")
def rnn_bundle_dir(tmp_path_factory):
    """A bundle of three small recurrent layers exported by pruning.export at 8 bits: ``rnn``
    (LSTM 5 -> 6) and ``cell`` (GRU 7 -> 5) BCR-pruned with 4x4 blocks, ``plain`` (LSTM 3 -> 4)
    dense."""
    import torch
    from torch import nn

    from pruning.export import export
    from pruning.plan import Plan

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(5, 6, batch_first=True)
            self.cell = nn.GRU(7, 5, batch_first=True)
            self.plain = nn.LSTM(3, 4, batch_first=True)

    torch.manual_seed(0)
    bcr = {"scheme": "bcr", "block": [4, 4], "row_sparsity": 0.5, "col_sparsity": 0.5}
    plan = Plan.from_dict({"default": {"scheme": "dense", "bits": 8},
                           "layers": {"rnn": bcr, "cell": bcr}})
    path = tmp_path_factory.mktemp("rnn") / "bundle"
    export(Model(), plan, model_name="rnns").save(path)
    return path


def test_verilog_rnn_from_bundle(capsys, rnn_bundle_dir, bundle_dir, tmp_path):
    code, out, err = run(capsys, "verilog", "--engine", "lstm", "--bundle", str(rnn_bundle_dir),
                         "--layer", "rnn", "--lanes", "3", "--out", str(tmp_path))
    assert code == 0, err
    p = json.loads((tmp_path / "lstm_rnn.json").read_text())["parameters"]
    assert (p["gates"], p["block"], p["hidden_size"], p["input_size"]) == ("bcr", [4, 4], 6, 5)
    assert p["gate_read"] == "ports"        # 4-row blocks: a read port per gate
    assert {m["name"] for m in json.loads((tmp_path / "lstm_rnn.json").read_text())[
        "memory_map"]} >= {"meta", "values", "h", "c"}
    code, _, err = run(capsys, "verilog", "--engine", "gru", "--bundle", str(rnn_bundle_dir),
                       "--layer", "cell", "--gates", "dense", "--lanes", "4", "--out",
                       str(tmp_path))
    assert code == 0, err
    p = json.loads((tmp_path / "gru_cell.json").read_text())["parameters"]
    assert (p["gates"], p["hidden_size"], p["input_size"]) == ("dense", 5, 7)
    for argv, text in (
            (("--engine", "lstm", "--layer", "cell"), "layer 'cell' is gru; the lstm engine runs "
                                                      "lstm layers"),
            (("--engine", "lstm", "--layer", "plain", "--gates", "bcr"),
             "layer 'plain' has scheme 'dense'; BCR gates run layers pruned with the bcr "
             "scheme"),
            (("--engine", "bcr", "--layer", "rnn", "--gates", "bcr"),
             "--gates is for the lstm and gru engines")):
        code, _, err = run(capsys, "verilog", "--bundle", str(rnn_bundle_dir), *argv,
                           "--out", str(tmp_path))
        assert_user_error(code, err, text)
    code, _, err = run(capsys, "verilog", "--engine", "lstm", "--bundle", str(bundle_dir),
                       "--layer", "fc1", "--out", str(tmp_path))
    assert_user_error(code, err, "layer 'fc1' is linear; the lstm engine runs lstm layers")


def test_simulate_rnn_layer_bcr_gates(capsys, rnn_bundle_dir):
    code, out, err = run(capsys, "simulate", "--bundle", str(rnn_bundle_dir), "--layer", "rnn",
                         "--engine", "lstm", "--lanes", "3", "--steps", "3")
    assert code == 0, err
    assert "on the lstm engine with bcr gates, 3 lanes" in out
    assert "outputs match golden model: yes" in out and "(match)" in out
    assert "dense-gated engine" in out


def test_verilog_slices(capsys, tmp_path, bundle_dir, rnn_bundle_dir):
    """--slices 2 builds another module (a slice_blocks port) and records slices in the sidecar;
    --slices 1 is what the command wrote before it had the option."""
    for folder, extra in (("one", ()), ("s1", ("--slices", "1")), ("s2", ("--slices", "2"))):
        code, out, err = run(capsys, "verilog", "--engine", "bcr", "--bundle", str(bundle_dir),
                             "--layer", "fc1", "--lanes", "4", *extra,
                             "--out", str(tmp_path / folder))
        assert code == 0, err
    text = {f: (tmp_path / f / "bcr_fc1.v").read_text() for f in ("one", "s1", "s2")}
    params = {f: json.loads((tmp_path / f / "bcr_fc1.json").read_text())["parameters"]
              for f in ("one", "s1", "s2")}
    assert text["s1"] == text["one"] and params["s1"] == params["one"]
    assert "slices" not in params["one"] and "slice_blocks" not in text["one"]
    assert params["s2"] == {**params["one"], "slices": 2} and "slice_blocks" in text["s2"]
    code, _, err = run(capsys, "verilog", "--engine", "lstm", "--bundle", str(rnn_bundle_dir),
                       "--layer", "rnn", "--lanes", "3", "--slices", "2", "--out",
                       str(tmp_path / "rnn"))
    assert code == 0, err
    p = json.loads((tmp_path / "rnn" / "lstm_rnn.json").read_text())["parameters"]
    assert (p["gates"], p["slices"], p["lanes"]) == ("bcr", 2, 3)


def test_simulate_slices(capsys, bundle_dir, rnn_bundle_dir):
    """fc1 (6 block rows of 8x16) and the LSTM's gate matrix (6 block rows of 4x4) on two
    slices: outputs match, the RTL cycles are the sliced model's and fewer than one slice's."""
    import re

    from hw.bcr import bcr_cycles
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles
    from ir import Bundle
    from ir.bcr import encode_bcr

    b, rb = Bundle.load(bundle_dir), Bundle.load(rnn_bundle_dir)
    qw, mask = (np.asarray(b.layer("fc1").tensors[k]) for k in ("qweight", "mask"))
    enc = encode_bcr(qw.astype(np.int64), (8, 16), mask=mask)
    t = rb.layer("rnn").tensors
    gates = bcr_gate_matrix("lstm", np.asarray(t["qweight_ih"], np.int64),
                            np.asarray(t["qweight_hh"], np.int64), (4, 4), t["mask_ih"],
                            t["mask_hh"])
    for argv, head, model in (
            (("--bundle", str(bundle_dir), "--layer", "fc1", "--engine", "bcr", "--vectors",
              "2"), "on the bcr engine, 2 slices x 4 lanes, 8x8-bit, icarus, 2 vectors",
             lambda s: bcr_cycles(enc, 4, s)),
            (("--bundle", str(rnn_bundle_dir), "--layer", "rnn", "--engine", "lstm", "--steps",
              "2"), "on the lstm engine with bcr gates, 2 slices x 4 lanes, 8x8-bit, icarus, "
                    "2 steps", lambda s: rnn_bcr_cycles(gates, 5, 6, 2, 4, s))):
        code, out, err = run(capsys, "simulate", *argv, "--lanes", "4", "--slices", "2",
                             "--simulator", "icarus")
        assert code == 0, err
        assert head in out and "outputs match golden model: yes" in out
        rtl = int(re.search(r"cycles: RTL (\d+), cycle model \d+ \(match\)", out).group(1))
        assert rtl == model(2) < model(1)
        what = "BCR engine has" if "bcr engine" in head else "BCR gates have"
        dense = "dense engine" if "bcr engine" in head else "dense-gated engine"
        assert out.strip().endswith(f"x (the {what} 2 x 4 multipliers, the {dense} 4)")


@pytest.mark.parametrize("argv, message", [
    (["--layer", "fc1", "--engine", "dense"], "--slices splits the BCR engine into pipelines; "
     "--engine dense has none (give it to --engine bcr, or to lstm/gru with BCR gates)"),
    (["--layer", "conv2", "--engine", "pattern"], "--engine pattern has none"),
    (["--rnn", "--layer", "plain", "--engine", "lstm"], "--slices splits the BCR engine into "
     "pipelines; the lstm engine with dense gates has none (give --gates bcr, or a BCR-pruned "
     "--layer)"),
    (["--rnn", "--layer", "rnn", "--engine", "lstm", "--gates", "dense"],
     "the lstm engine with dense gates has none"),
    (["--rnn", "--layer", "rnn", "--engine", "gru"], "layer 'rnn' is lstm; the gru engine runs "
     "gru layers"),    # the layer's own problem first
])
def test_simulate_slices_refused_without_a_bcr_engine(capsys, bundle_dir, rnn_bundle_dir, argv,
                                                      message):
    folder = rnn_bundle_dir if argv[0] == "--rnn" else bundle_dir
    code, _, err = run(capsys, "simulate", "--bundle", str(folder), *argv[argv[0] == "--rnn":],
                       "--slices", "2")
    assert_user_error(code, err, message)


def test_command_line_starts_without_amaranth():
    """--slices is checked against options.MAX_SLICES, not hw.bcr's: codesign starts without
    amaranth (nor numpy, torch)."""
    code = ("import sys, codesign.cli; print(sorted(m for m in ('amaranth', 'hw', 'numpy', "
            "'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_simulate_rnn_exit_codes(capsys, rnn_bundle_dir, monkeypatch):
    import codesign.flow

    code, _, err = run(capsys, "simulate", "--bundle", str(rnn_bundle_dir), "--layer", "rnn",
                       "--engine", "gru")
    assert_user_error(code, err, "layer 'rnn' is lstm; the gru engine runs gru layers")
    code, _, err = run(capsys, "simulate", "--bundle", str(rnn_bundle_dir), "--layer", "plain",
                       "--engine", "lstm", "--gates", "bcr")
    assert_user_error(code, err, "layer 'plain' has scheme 'dense'; BCR gates run")
    bad = {"layer": "rnn", "engine": "lstm", "gates": "bcr", "rows": 6, "cols": 5,
           "weight_bits": 8, "outputs_match": False, "cycles": [10], "model_cycles": [10],
           "dense_cycles": 12}
    monkeypatch.setattr(codesign.flow, "simulate_rnn_layer", lambda *a, **k: bad)
    code, out, err = run(capsys, "simulate", "--bundle", str(rnn_bundle_dir), "--layer", "rnn",
                         "--engine", "lstm")
    assert code == 1 and "outputs match golden model: NO" in out
    assert "disagrees" in err


@pytest.mark.parametrize("command", [["prune", "--model", "tinycnn"], ["retrain"], ["loop"],
                                     ["sweep"], ["mobile"], ["verilog"], ["demo"]])
def test_out_in_the_way_of_a_file_is_refused_before_any_work(capsys, tmp_path, command):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, _, err = run(capsys, command[0], "--out", str(afile), *command[1:])
    assert_user_error(code, err, f"Invalid value for '--out': '{afile}' is a file, not a folder")
    code, _, err = run(capsys, command[0], "--out", str(afile / "sub" / "x"), *command[1:])
    assert_user_error(code, err, f"Invalid value for '--out': '{afile}' cannot hold folder "
                                 f"'{afile / 'sub' / 'x'}': it is a file, not a folder")
    assert afile.read_text() == "mine"


def test_out_dangling_link_and_new_nested_folder(capsys, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    code, _, err = run(capsys, "verilog", "--rows", "4", "--cols", "4", "--lanes", "2",
                       "--out", str(link))
    assert_user_error(code, err, f"'{link}' is a broken link, not a folder")
    code, _, _ = run(capsys, "verilog", "--rows", "4", "--cols", "4", "--lanes", "2",
                     "--out", str(tmp_path / "a" / "b"))
    assert code == 0 and (tmp_path / "a" / "b" / "dense_matvec.v").is_file()


def test_os_error_while_writing_is_one_line(capsys, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "o" / "dense_matvec.v"))

    monkeypatch.setattr("codesign.flow.emit_engine", refuse)
    code, _, err = run(capsys, "verilog", "--rows", "4", "--cols", "4", "--lanes", "2",
                       "--out", str(tmp_path / "o"))
    assert_user_error(code, err, f"{tmp_path / 'o' / 'dense_matvec.v'}: No space left on device")


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # refused, never built
def test_verilog_too_large_is_refused_at_once(capsys, tmp_path):
    code, _, err = run(capsys, "verilog", "--rows", "100000", "--cols", "100000",
                       "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "The engine's memories hold 80,004,000,000 bits (largest: "
                                 "weights, 80,000,000,000); at most 67,108,864 are built")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", [
    ["prune", "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4", "--lr"],
    ["prune", "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4", "--rho"],
    ["retrain", "bundle", "--lr"],
    ["loop", "--model", "tinycnn", "--sparsity", "0.5", "--tolerance"],
])
@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_float_options_refuse_nan_and_infinity(capsys, tmp_path, command, value):
    # NaN passes click.FloatRange's bounds; --lr nan reached the optimizer as a traceback
    code, _, err = run(capsys, *command, value, "--out", str(tmp_path / "o"))
    option = command[-1]
    assert_user_error(code, err, f"Invalid value for '{option}': '{value}' is not a finite "
                                 "number.")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command, blocker, message", [
    (["prune", "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4"], "bundle/foo",
     "{o}/bundle: exists and is not a bundle; not overwriting it"),
    (["prune", "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4"], "bundle",
     "{o}/bundle: exists and is not a bundle folder; not overwriting it"),
    (["prune", "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4"],
     "summary.json/", "'{o}/summary.json' is a folder, not a file"),
    (["prune", "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4"], "dense.pt/",
     "'{o}/dense.pt' is a folder, not a file"),
    (["loop", "--model", "tinycnn", "--engine", "bcr", "--sparsity", "0.5"], "loop.json/",
     "'{o}/loop.json' is a folder, not a file"),
    (["loop", "--model", "tinycnn", "--engine", "bcr", "--sparsity", "0.5"], "bundle/foo",
     "{o}/bundle: exists and is not a bundle; not overwriting it"),
    (["sweep", "--model", "tinycnn"], "plots", "'{o}/plots' is a file, not a folder"),
    (["sweep", "--model", "tinycnn"], "points.csv/", "'{o}/points.csv' is a folder, not a file"),
    (["demo"], "loop/bundle/foo", "{o}/loop/bundle: exists and is not a bundle; not "
                                  "overwriting it"),
    (["demo"], "mobile", "'{o}/mobile' is a file, not a folder"),
    (["retrain", "{bundle}", "--data", "digits"], "retrained.pt/",
     "'{o}/retrained.pt' is a folder, not a file"),
])
def test_outputs_in_the_way_are_found_before_any_work(capsys, tmp_path, bundle_dir, command,
                                                      blocker, message):
    """A folder where an output file goes (or the reverse) was found after the training, ADMM
    and RTL runs: a BundleError traceback, or an error naming a temporary file, with some
    outputs written and others not."""
    out = tmp_path / "o"
    path = out / blocker.rstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if blocker.endswith("/"):
        path.mkdir()
    else:
        path.write_text("mine")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    argv = [a.replace("{bundle}", str(bundle_dir)) for a in command]
    code, _, err = run(capsys, *argv, "--out", str(out))
    assert code == 2 and err.strip() == "codesign: error: --out: " + message.format(o=out), err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_help_examples_are_readme_commands():
    """The help's examples are the README's (which are run); `simulate --bundle out/rnn` named
    the folder `prune --out out/rnn` writes, not its bundle."""
    from pathlib import Path

    from codesign.cli import EXAMPLES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands = [line.strip().split("   ")[0] for line in EXAMPLES.splitlines()
                if line.strip().startswith("codesign ")]
    assert len(commands) == 13
    assert [c for c in commands if c not in readme] == []


@pytest.mark.parametrize("argv, message", [
    (["verilog", "--rows", "8", "--cols", "8", "--lanes", "4294967296", "--out", "x"],
     "Invalid value for '--lanes': 4294967296 is not in the range 1<=x<=64."),   # 20 GB
    (["simulate", "--bundle", "b", "--layer", "fc1", "--lanes", "9" * 20],
     f"Invalid value for '--lanes': {'9' * 20} is not in the range 1<=x<=64."),   # Overflow
    (["simulate", "--bundle", "b", "--layer", "fc1", "--vectors", "1000000000"],
     "Invalid value for '--vectors': 1000000000 is not in the range 1<=x<=4096."),  # 477 GiB
    (["verilog", "--engine", "lstm", "--rows", "8", "--cols", "8", "--steps", "1000000000",
      "--out", "x"], "Invalid value for '--steps': 1000000000 is not in the range 1<=x<=4096."),
    (["demo", "--lanes", "65"], "Invalid value for '--lanes': 65 is not in the range 1<=x<=64."),
    (["verilog", "--rows", "4", "--cols", "4", "--block", "4x4", "--out", "x"],   # ignored
     "--block is for the bcr, lstm and gru engines, not dense"),
    (["verilog", "--engine", "bcr", "--rows", "4", "--cols", "4", "--image", "8", "--out", "x"],
     "--image is for the pattern engine, not bcr"),
    (["verilog", "--engine", "pattern", "--rows", "4", "--cols", "4", "--index-bits", "2",
      "--out", "x"], "--index-bits is for the unstructured engine, not pattern"),
    (["verilog", "--engine", "lstm", "--rows", "4", "--cols", "4", "--block", "4x4", "--out",
      "x"], "--block is for the lstm engine with BCR gates (--gates bcr, or a BCR-pruned "
            "--layer), not dense gates"),
    (["verilog", "--engine", "bcr", "--rows", "8", "--cols", "8", "--slices", "17", "--out",
      "x"], "Invalid value for '--slices': 17 is not in the range 1<=x<=16."),
    (["simulate", "--bundle", "b", "--layer", "fc1", "--slices", "0"],
     "Invalid value for '--slices': 0 is not in the range 1<=x<=16."),
    (["verilog", "--rows", "4", "--cols", "4", "--slices", "2", "--out", "x"],
     "--slices splits the BCR engine into pipelines; --engine dense has none (give it to "
     "--engine bcr, or to lstm/gru with BCR gates)"),
    (["verilog", "--engine", "gru", "--rows", "4", "--cols", "4", "--slices", "2", "--out",
      "x"], "--slices splits the BCR engine into pipelines; the gru engine with dense gates has "
            "none (give --gates bcr, or a BCR-pruned --layer)"),
    (["verilog", "--rows", "4", "--cols", "4", "--out", ""],     # wrote into the current folder
     "Invalid value for '--out': must not be empty (give . for the current folder)"),
    (["sweep", "--model", "tinycnn", "--grid", "100000000", "--out", "x"],
     "--grid must be an integer from 2 to 1000, not 100000000"),
    (["sweep", "--model", "tinycnn", "--seeds", "9" * 23, "--out", "x"],
     f"--seeds must be an integer from 1 to 100, not {'9' * 23}"),
])
def test_sizes_that_cannot_be_built_are_refused_when_parsed(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err, message)


def test_simulate_an_all_pruned_layer_states_no_made_up_speedup(capsys, tmp_path, bundle_dir):
    """RTL 0 cycles printed 'speedup 770.00x' (the dense cycles over max(1, 0))."""
    from dataclasses import replace

    from ir import Bundle

    b = Bundle.load(bundle_dir)
    fc1 = b.layer("fc1")
    t = {k: np.zeros_like(v) if k in ("mask", "qweight", "weight") else v
         for k, v in fc1.tensors.items()}
    b.with_layer(replace(fc1, tensors=t)).save(tmp_path / "b")
    code, out, err = run(capsys, "simulate", "--bundle", str(tmp_path / "b"), "--layer", "fc1",
                         "--engine", "bcr", "--lanes", "4")
    assert code == 0, err
    assert "cycles: RTL 0, cycle model 0 (match)" in out
    assert out.strip().endswith("-> the engine takes no cycle (the layer keeps no weight)")


def test_rnn_scales_without_a_fixed_point_format_name_the_layer(capsys, tmp_path,
                                                                 rnn_bundle_dir):
    """'Real multiplier must be finite and in [0, 32767.5), not 1e+300' named neither the layer
    nor the field."""
    from dataclasses import replace

    from ir import Bundle

    b = Bundle.load(rnn_bundle_dir)
    rnn = b.layer("rnn")
    b.with_layer(replace(rnn, quant=replace(rnn.quant, scale=1e300))).save(tmp_path / "b")
    start = ("layer 'rnn': its weight scale 1e+300 (quant.scale) and activation scale 0.015625 "
             "(quant.act_scale) give no 8-bit fixed-point format: ")
    for argv in (["simulate", "--bundle", str(tmp_path / "b"), "--layer", "rnn", "--engine",
                  "lstm", "--steps", "2"],
                 ["verilog", "--engine", "lstm", "--bundle", str(tmp_path / "b"), "--layer",
                  "rnn", "--out", str(tmp_path / "v")]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.startswith(f"codesign: error: {start}"), err
