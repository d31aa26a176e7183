"""``codesign synth``: the printed resources and Fmax, the report and the tools' files, a
byte-identical rerun, and one-line errors with nothing half-written."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from test_codesign_cli import assert_user_error, run

from codesign.flow import emit_engine


@pytest.fixture(scope="module")
def engine_v(tmp_path_factory):
    v, _ = emit_engine("dense", 8, 8, 2, 8, 8, "dense_cli", tmp_path_factory.mktemp("v"))
    return v


def test_synth_up5k_prints_and_writes_report(capsys, engine_v, tmp_path):
    out_dir = tmp_path / "s"
    code, out, err = run(capsys, "synth", str(engine_v), "--out", str(out_dir), "--cycles",
                         "1000", "--cycles", "0")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("dense_cli on up5k: ") and " 2 DSPs" in lines[0]
    assert lines[1].startswith("in its harness: ") and " of 5,280 logic cells; Fmax " in lines[1]
    rep = json.loads((out_dir / "dense_cli.up5k.synth.json").read_text())
    fmax = rep["fmax_mhz"]["median"]
    assert f"1,000 cycles = {1000 / fmax:.3f} us at {fmax:.2f} MHz" in out
    assert f"0 cycles = 0.000 us at {fmax:.2f} MHz" in out
    assert lines[-1] == f"wrote {out_dir / 'dense_cli.up5k.synth.json'}"
    assert rep["resources"]["dsps"] == 2 and rep["device"] == "up5k"
    assert rep["verilog_sha256"] == hashlib.sha256(engine_v.read_bytes()).hexdigest()
    work = out_dir / "dense_cli.up5k.synth"
    for name in ("engine.yosys.log", "harness.netlist.json", "pnr_seed1.report.json",
                 "dense_cli_harness.v"):
        assert (work / name).is_file()
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []
    mask = os.umask(0o022)
    os.umask(mask)
    assert work.stat().st_mode & 0o777 == 0o777 & ~mask
    # the same Verilog, seed and target give the same report, byte for byte; the rerun
    # replaces the tools' folder
    first = (out_dir / "dense_cli.up5k.synth.json").read_bytes()
    (work / "stale.txt").write_text("x")
    code, _, err = run(capsys, "synth", str(engine_v), "--out", str(out_dir))
    assert code == 0, err
    assert (out_dir / "dense_cli.up5k.synth.json").read_bytes() == first
    assert not (work / "stale.txt").exists()


def test_synth_xc7_is_an_estimate_beside_the_ice40_report(capsys, engine_v, tmp_path):
    code, out, err = run(capsys, "synth", str(engine_v), "--device", "xc7", "--out",
                         str(tmp_path))
    assert code == 0, err
    assert out.splitlines()[0].endswith("(Yosys estimate)") and "Fmax" not in out
    assert json.loads((tmp_path / "dense_cli.xc7.synth.json").read_text())["fmax_mhz"] is None
    for opt in (["--seeds", "2"], ["--cycles", "5"], ["--freq", "20"], ["--router", "router1"],
                ["--pnr-timeout", "60"], ["--first-seed", "1"]):
        code, _, err = run(capsys, "synth", str(engine_v), "--device", "xc7", *opt, "--out",
                           str(tmp_path))
        assert_user_error(code, err, "--freq, --seeds, --first-seed, --router, --pnr-timeout "
                                     "and --cycles "
                                     "need place and route on an iCE40 or ECP5 part (--device "
                                     "up5k, hx8k, ecp5-25k or ecp5-85k); xc7 gives resources "
                                     "only")


def test_synth_router2_is_named_in_the_output_and_report(capsys, engine_v, tmp_path):
    code, out, err = run(capsys, "synth", str(engine_v), "--router", "router2", "--out",
                         str(tmp_path))
    assert code == 0, err
    line = out.splitlines()[1]
    assert line.startswith("in its harness: ") and line.endswith(" at target 48 MHz (router2)")
    rep = json.loads((tmp_path / "dense_cli.up5k.synth.json").read_text())
    assert [r["router"] for r in rep["runs"]] == ["router2"]
    code, _, err = run(capsys, "synth", str(engine_v), "--router", "router3", "--out",
                       str(tmp_path))
    assert code == 2 and "'router3' is not one of 'router1', 'router2'" in err


def test_a_seed_past_the_time_limit_is_named_and_the_others_give_fmax(capsys, engine_v,
                                                                      tmp_path, monkeypatch):
    import synth_reports.pnr as pnr
    from synth_reports.tools import ToolTimeout

    real, limits, stuck = pnr.run_tool, [], {"2"}

    def fake(tool, args, cwd, log, **kw):
        limits.append(kw["timeout"])
        if args[args.index("--seed") + 1] in stuck:
            log.write_text("routing...\n")
            raise ToolTimeout(f"{tool} ran longer than {kw['timeout']:.0f} s and was stopped")
        return real(tool, args, cwd, log, **kw)

    monkeypatch.setattr(pnr, "run_tool", fake)
    code, out, err = run(capsys, "synth", str(engine_v), "--seeds", "3", "--pnr-timeout", "120",
                         "--out", str(tmp_path))
    assert code == 0, err
    assert limits == [120, 120, 120]
    rep = json.loads((tmp_path / "dense_cli.up5k.synth.json").read_text())
    assert rep["timed_out_seeds"] == [2] and [r["seed"] for r in rep["runs"]] == [1, 3]
    lines = out.splitlines()
    assert " MHz (seeds 1, 3: " in lines[1]
    work = tmp_path / "dense_cli.up5k.synth"
    assert lines[2] == ("seed 2: nextpnr ran longer than 120 s and was stopped (log: "
                        f"{work / 'pnr_seed2.nextpnr.log'})")
    assert (work / "pnr_seed2.nextpnr.log").is_file()
    # --first-seed: other seeds after the first ones were stopped
    stuck = {"4"}
    code, out, err = run(capsys, "synth", str(engine_v), "--seeds", "2", "--first-seed", "4",
                         "--pnr-timeout", "120", "--out", str(tmp_path))
    assert code == 0, err
    rep = json.loads((tmp_path / "dense_cli.up5k.synth.json").read_text())
    assert rep["timed_out_seeds"] == [4] and [r["seed"] for r in rep["runs"]] == [5]
    lines = out.splitlines()
    assert lines[1].endswith(" MHz (seed 5) at target 48 MHz")
    assert lines[2].startswith("seed 4: nextpnr ran longer than 120 s and was stopped")
    assert sorted(p.name for p in work.glob("pnr_seed*.report.json")) == ["pnr_seed5.report.json"]
    # every seed stuck: one error, the logs kept, no report
    monkeypatch.setattr(pnr, "run_tool", lambda tool, args, cwd, log, **kw: (
        _ for _ in ()).throw(ToolTimeout("stuck")))
    code, _, err = run(capsys, "synth", str(engine_v), "--pnr-timeout", "120", "--out",
                       str(tmp_path))
    failed = tmp_path / "dense_cli.up5k.synth.failed"
    assert_user_error(code, err, "nextpnr-ice40 (router1) ran longer than 120 s with seed 1 and "
                                 "was stopped; try other seeds, router2 or a longer time limit "
                                 f"(logs: {failed / 'pnr_seed1.nextpnr.log'})")
    assert not (tmp_path / "dense_cli.up5k.synth.json").exists()
    code, _, err = run(capsys, "synth", str(engine_v), "--pnr-timeout", "0", "--out",
                       str(tmp_path))
    assert_user_error(code, err, "Invalid value for '--pnr-timeout'")


def test_failing_tool_leaves_logs_and_no_report(capsys, tmp_path):
    v = tmp_path / "broken.v"
    v.write_text("module broken(input clk, output y);\n  assign y = ;\nendmodule\n")
    meta = {"toplevel": "broken", "clock_reset_ports": [{"name": "clk", "direction": "input",
                                                         "width": 1}],
            "ports": [{"name": "clk", "direction": "input", "width": 1},
                      {"name": "y", "direction": "output", "width": 1}],
            "verilog_sha256": hashlib.sha256(v.read_bytes()).hexdigest()}
    v.with_suffix(".json").write_text(json.dumps(meta))
    out_dir = tmp_path / "o"
    code, _, err = run(capsys, "synth", str(v), "--out", str(out_dir))
    failed = out_dir / "broken.up5k.synth.failed"
    assert_user_error(code, err, "yosys failed (exit 1): ")
    assert f"(log: {failed / 'engine.yosys.log'})" in err and "ERROR" in err
    assert (failed / "engine.yosys.log").is_file()
    assert sorted(p.name for p in out_dir.iterdir()) == ["broken.up5k.synth.failed"]


def test_synth_errors(capsys, engine_v, tmp_path):
    code, _, err = run(capsys, "synth", str(tmp_path / "none.v"), "--out", str(tmp_path))
    assert_user_error(code, err, "cannot read")
    code, _, err = run(capsys, "synth", str(engine_v.with_suffix(".json")), "--out",
                       str(tmp_path))
    assert_user_error(code, err, "is not a .v file")
    (tmp_path / "dense_cli.up5k.synth.json").mkdir()
    code, _, err = run(capsys, "synth", str(engine_v), "--out", str(tmp_path))
    assert_user_error(code, err, "dense_cli.up5k.synth.json is in the way: it should be a file")
    (tmp_path / "f").write_text("")
    code, _, err = run(capsys, "synth", str(engine_v), "--out", str(tmp_path / "f"))
    assert_user_error(code, err, "is a file, not a folder")
    for opt, text in ((["--seeds", "21"], "Invalid value for '--seeds'"),
                      (["--first-seed", "-1"], "Invalid value for '--first-seed'"),
                      (["--first-seed", str(2**31 - 19)], "Invalid value for '--first-seed'"),
                      (["--freq", "0"], "Invalid value for '--freq'"),
                      (["--device", "ecp5"], "Invalid value for '--device'")):
        code, _, err = run(capsys, "synth", str(engine_v), *opt, "--out", str(tmp_path))
        assert_user_error(code, err, text)


def test_doctor_lists_the_synthesis_tools(capsys):
    code, out, err = run(capsys, "doctor")
    assert "yosys" in out and "nextpnr-ice40" in out


def test_folders_it_did_not_write_are_never_replaced(capsys, engine_v, tmp_path):
    """A folder named like the tool folder was replaced whole, even when it held the input."""
    inside = tmp_path / "dense_cli.up5k.synth"
    inside.mkdir()
    v = inside / "dense_cli.v"
    v.write_bytes(engine_v.read_bytes())
    v.with_suffix(".json").write_bytes(engine_v.with_suffix(".json").read_bytes())
    code, _, err = run(capsys, "synth", str(v), "--out", str(tmp_path))
    assert_user_error(code, err, "is in the way: it is not a folder codesign synth wrote (no "
                                 ".codesign-synth in it), and it would be replaced")
    (inside / ".codesign-synth").write_text("")
    code, _, err = run(capsys, "synth", str(v), "--out", str(tmp_path))
    assert_user_error(code, err, "which this run replaces; copy it elsewhere first")
    assert sorted(p.name for p in inside.iterdir()) == [".codesign-synth", "dense_cli.json",
                                                         "dense_cli.v"]
    link = tmp_path / "l"
    link.mkdir()
    (link / "dense_cli.up5k.synth").symlink_to(inside)
    code, _, err = run(capsys, "synth", str(engine_v), "--out", str(link))
    assert_user_error(code, err, "dense_cli.up5k.synth is a symbolic link; codesign synth "
                                 "writes a real folder there")


def test_a_failed_run_puts_the_earlier_report_away(capsys, engine_v, tmp_path):
    """A failed run left the earlier run's report, of other Verilog, beside its .failed/."""
    out = tmp_path / "o"
    code, _, err = run(capsys, "synth", str(engine_v), "--device", "xc7", "--out", str(out))
    assert code == 0, err
    broken = tmp_path / "dense_cli.v"
    text = engine_v.read_text().replace("endmodule", "endmodule garbage(", 1)
    broken.write_text(text)
    meta = json.loads(engine_v.with_suffix(".json").read_text())
    meta["verilog_sha256"] = hashlib.sha256(broken.read_bytes()).hexdigest()
    broken.with_suffix(".json").write_text(json.dumps(meta))
    code, _, err = run(capsys, "synth", str(broken), "--device", "xc7", "--out", str(out))
    assert_user_error(code, err, "yosys failed (exit 1)")
    assert sorted(p.name for p in out.iterdir()) == ["dense_cli.xc7.synth.failed"]
    code, _, err = run(capsys, "synth", str(engine_v), "--device", "xc7", "--out", str(out))
    assert code == 0, err                           # and a success puts the .failed/ away
    assert sorted(p.name for p in out.iterdir()) == ["dense_cli.xc7.synth",
                                                     "dense_cli.xc7.synth.json"]


def test_freq_nan_is_refused_by_name(capsys, engine_v, tmp_path):
    code, _, err = run(capsys, "synth", str(engine_v), "--freq", "nan", "--out",
                       str(tmp_path / "o"))
    assert_user_error(code, err, "--freq must be a finite number of MHz above 0 and at most "
                                 "1000, not nan")
    assert not (tmp_path / "o").exists()
