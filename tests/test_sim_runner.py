"""Tests of sim.runner: cached builds, file-based bench I/O and clear failures (on Icarus, whose
builds take well under a second; the Verilator path is exercised by tests/test_sim_dense.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

import sim
import sim.runner as runner
from sim.runner import SimulationError, build_design, run_cocotb

TINY = """\
module tiny(input clk, input rst, input [7:0] inc, output reg [15:0] count);
  always @(posedge clk)
    if (rst) count <= 16'd0;
    else count <= count + {8'd0, inc};
endmodule
"""

GOOD_BENCH = """\
import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from sim.runner import bench_inputs, bench_save_outputs


@cocotb.test()
async def count(dut):
    inp = bench_inputs()
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.inc.value = int(inp["inc"])
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    for _ in range(int(inp["n"])):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    bench_save_outputs({"count": [dut.count.value.to_unsigned()]}, {"hello": "world"})
"""

FAILING_BENCH = """\
import cocotb


@cocotb.test()
async def fails(dut):
    assert 1 + 1 == 3, "arithmetic is broken"
"""

SILENT_BENCH = """\
import cocotb


@cocotb.test()
async def writes_nothing(dut):
    pass
"""

BROKEN_BENCH = """\
raise ImportError("this bench cannot be imported")
"""


@pytest.fixture
def benches(tmp_path, monkeypatch):
    """Bench modules in a temporary directory on sys.path (and so on the simulator's)."""
    d = tmp_path / "benches"
    d.mkdir()
    for name, text in [("tb_good", GOOD_BENCH), ("tb_failing", FAILING_BENCH),
                       ("tb_silent", SILENT_BENCH), ("tb_broken", BROKEN_BENCH)]:
        (d / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(d))
    return d


@pytest.fixture
def tiny(tmp_path, require_simulator):
    require_simulator("icarus")
    v = tmp_path / "tiny.v"
    v.write_text(TINY)
    return build_design(v, "tiny", "icarus", cache_dir=tmp_path / "cache")


def test_build_is_cached(tmp_path, tiny, monkeypatch):
    cache = tmp_path / "cache"
    assert tiny.build_seconds > 0
    assert tiny.build_dir.is_dir() and (tiny.root / "build.json").is_file()
    assert tiny.build_dir.parent.parent == cache.resolve() / "icarus"
    stamp = json.loads((tiny.root / "build.json").read_text())
    assert stamp["toplevel"] == "tiny" and stamp["timescale"] == ["1ns", "1ps"]
    # Same process: memoised. Another process (memo cleared): from disk, no build.
    assert build_design(tmp_path / "tiny.v", "tiny", "icarus", cache_dir=cache) is tiny
    monkeypatch.setattr(runner, "_memo", {})
    again = build_design(tmp_path / "tiny.v", "tiny", "icarus", cache_dir=cache)
    assert again.build_seconds == 0.0
    assert (again.key, again.build_dir) == (tiny.key, tiny.build_dir)
    # The key follows the Verilog text, not the file's path or time.
    copy = tmp_path / "elsewhere.v"
    copy.write_text(TINY)
    assert build_design(copy, "tiny", "icarus", cache_dir=cache).build_dir == tiny.build_dir
    copy.write_text(TINY.replace("count + {8'd0, inc}", "count + {8'd0, inc} + 16'd1"))
    changed = build_design(copy, "tiny", "icarus", cache_dir=cache)
    assert changed.key != tiny.key and changed.build_seconds > 0


def test_incomplete_build_is_redone(tmp_path, tiny, monkeypatch):
    (tiny.root / "build.json").unlink()
    monkeypatch.setattr(runner, "_memo", {})
    again = build_design(tmp_path / "tiny.v", "tiny", "icarus", cache_dir=tmp_path / "cache")
    assert again.build_seconds > 0 and (tiny.root / "build.json").is_file()


def test_run_passes_inputs_and_outputs(tiny, benches, tmp_path, monkeypatch):
    # Run from an unrelated directory: nothing may depend on the current directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = run_cocotb(tiny, "tb_good", inputs={"inc": np.array(3), "n": np.array(25)})
    assert res.arrays["count"].tolist() == [75]
    assert res.meta == {"hello": "world"}
    assert "tb_good.count" in res.log and "PASS" in res.log
    assert res.wall_seconds > 0
    assert not list((tiny.root / "runs").iterdir())  # cleaned up after success
    assert not list(elsewhere.iterdir())


def test_failing_test_raises(tiny, benches):
    with pytest.raises(SimulationError) as info:
        run_cocotb(tiny, "tb_failing")
    msg = str(info.value)
    assert "icarus run of 'tb_failing' on 'tiny': 1 of 1 cocotb tests failed" in msg
    assert "arithmetic is broken" in msg
    # The run directory is kept for debugging and named in the message.
    runs = list((tiny.root / "runs").iterdir())
    assert len(runs) == 1 and str(runs[0]) in msg


def test_missing_outputs_raise(tiny, benches):
    with pytest.raises(SimulationError, match=r"the bench wrote no outputs"):
        run_cocotb(tiny, "tb_silent")


def test_broken_bench_raises(tiny, benches):
    with pytest.raises(SimulationError, match=r"this bench cannot be imported"):
        run_cocotb(tiny, "tb_broken")


def test_bad_arguments(tmp_path, tiny, benches):
    with pytest.raises(ValueError, match=r"^Simulator must be one of 'verilator', 'icarus', "
                                         r"not 'vcs'$"):
        build_design(tmp_path / "tiny.v", "tiny", "vcs")
    with pytest.raises(ValueError, match=r"^Test module 'no_such_bench' cannot be found"):
        run_cocotb(tiny, "no_such_bench")
    with pytest.raises(TypeError, match=r"^Input 'x' must be a numeric array, not of dtype object$"):
        run_cocotb(tiny, "tb_good", inputs={"x": np.array([{}], dtype=object)})


def test_build_failure_quotes_the_log(tmp_path, require_simulator):
    require_simulator("icarus")
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input clk); this is not verilog; endmodule\n")
    with pytest.raises(SimulationError) as info:
        build_design(bad, "bad", "icarus", cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert msg.startswith("icarus build of 'bad' failed")
    assert "syntax error" in msg


def test_bench_module_root_is_where_sim_is_installed():
    root = runner._module_root("sim.dense_tb")
    assert root == Path(sim.__file__).resolve().parent.parent
    assert runner._module_root("sim") == root


def test_bench_helpers_need_the_runner(monkeypatch):
    monkeypatch.delenv(runner.ENV_INPUTS, raising=False)
    monkeypatch.delenv(runner.ENV_OUTPUTS, raising=False)
    with pytest.raises(RuntimeError, match=r"CODESIGN_SIM_INPUTS is not set"):
        runner.bench_inputs()
    with pytest.raises(RuntimeError, match=r"CODESIGN_SIM_OUTPUTS is not set"):
        runner.bench_save_outputs({})


def test_bench_helpers_round_trip(tmp_path, monkeypatch):
    np.savez(tmp_path / "in.npz", a=np.arange(3))
    monkeypatch.setenv(runner.ENV_INPUTS, str(tmp_path / "in.npz"))
    monkeypatch.setenv(runner.ENV_OUTPUTS, str(tmp_path / "out.npz"))
    assert runner.bench_inputs()["a"].tolist() == [0, 1, 2]
    runner.bench_save_outputs({"b": [1, 2]}, {"k": 1})
    with np.load(tmp_path / "out.npz") as npz:
        assert npz["b"].tolist() == [1, 2]
    assert json.loads((tmp_path / "out.json").read_text()) == {"k": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "out.json", "out.npz"]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(runner.ENV_CACHE, str(tmp_path / "c"))
    assert runner.default_cache_dir() == (tmp_path / "c").resolve()
    monkeypatch.delenv(runner.ENV_CACHE)
    monkeypatch.chdir(tmp_path)
    assert runner.default_cache_dir() == tmp_path.resolve() / ".sim_cache"



def test_top_ports_and_build_profile_errors():
    text = "module \\top (clk, rst, a_wr__addr, out);\n  input clk;\nendmodule\nmodule sub(x);\n"
    assert runner.top_ports(text, "top") == ["clk", "rst", "a_wr__addr", "out"]
    assert runner.top_ports(text, "sub") == ["x"]
    with pytest.raises(ValueError, match="module 'nope' not found in the Verilog sources"):
        runner.top_ports(text, "nope")
    with pytest.raises(ValueError, match="Build profile must be one of 'default', 'speed', "
                                         "not 'fastest'"):
        runner.use_build_profile("fastest")


def test_speed_profile_builds_are_bit_exact_and_keyed_apart(tmp_path):
    """The "speed" Verilator profile (ports-only VPI, -O3) runs the dense engine bit-exactly;
    its build is cached apart from the default one and carries the ports control file."""
    from hw.dense import dense_cycles
    from ir.golden import linear
    from sim.dense import run_dense_batch

    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (12, 20))
    x = rng.integers(-127, 128, (2, 20))
    previous = runner.use_build_profile("speed")
    try:
        (run,) = run_dense_batch([(w, x)], 4, 8, 8, cache_dir=tmp_path)
    finally:
        assert runner.use_build_profile(previous) == "speed"
    assert np.array_equal(run.outputs, linear(w, x))
    assert list(run.cycles) == [dense_cycles(12, 20, 4)] * 2
    vlts = list((tmp_path / "verilator").glob("*/src/public_ports.vlt"))
    assert len(vlts) == 1
    text = vlts[0].read_text()
    assert text.startswith("`verilator_config\n") and '-var "start"' in text
    stamp = json.loads((vlts[0].parent.parent / "build.json").read_text())
    assert "--no-public-flat-rw" in stamp["build_args"]
    assert any(a.startswith("makeflags:") for a in stamp["build_args"])
