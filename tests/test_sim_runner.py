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


def test_clock_wrapper_text_and_errors():
    text = ("module \\eng (clk, rst, a_wr__addr, out);\n  input clk;\n  wire clk;\n"
            "  input rst;\n  input [7:0] a_wr__addr;\n  output [31:0] out;\n"
            "  reg [31:0] out;\nendmodule\n")
    assert runner.top_port_declarations(text, "eng") == [
        ("input", "", "clk"), ("input", "", "rst"), ("input", "[7:0] ", "a_wr__addr"),
        ("output", "[31:0] ", "out")]
    name, wrapper = runner.clock_wrapper(text, "eng", 10)
    assert name == "eng__clk"
    assert wrapper == (
        "// Generated by sim.runner.clock_wrapper: eng with its own 10 ns clock.\n"
        "module eng__clk(rst, a_wr__addr, out);\n  input rst;\n  input [7:0] a_wr__addr;\n"
        "  output [31:0] out;\n  reg clk = 1'b0;\n  always #5 clk = ~clk;\n  eng engine (\n"
        "    .clk(clk),\n    .rst(rst),\n    .a_wr__addr(a_wr__addr),\n    .out(out)\n"
        "  );\nendmodule\n")
    with pytest.raises(ValueError, match="Clock period must be an even positive integer of ns, "
                                         "not 5"):
        runner.clock_wrapper(text, "eng", 5)
    with pytest.raises(ValueError, match="module 'x' has no 1-bit input port 'clk'"):
        runner.clock_wrapper("module x(rst);\n  input rst;\nendmodule\n", "x")
    with pytest.raises(ValueError, match="module 'x': no declaration for port\\(s\\) b"):
        runner.top_port_declarations("module x(clk, b);\n  input clk;\nendmodule\n", "x")


def _engine_case(engine, cache_dir):
    """Run one small job of ``engine`` and check it against the golden and the cycle model."""
    from hw.bcr import bcr_cycles
    from hw.dense import dense_cycles
    from hw.pattern import pattern_cycles
    from hw.rnn import gru_cycles
    from hw.unstructured import unstructured_cycles
    from ir.bcr import encode_bcr
    from ir.csr import encode_csc_lanes
    from ir.golden import RNNQuantConfig, conv2d, linear
    from ir.pattern import candidate_patterns, encode_pattern
    from sim.bcr import random_bcr_layer, run_bcr_batch
    from sim.dense import run_dense_batch
    from sim.pattern import random_pattern_layer, run_pattern_batch
    from sim.rnn import (
        GRUJob,
        LSTMJob,
        golden_gru_sequence,
        random_gru_job,
        random_job,
        rnn_mismatches,
        run_gru_batch,
        run_lstm_batch,
    )
    from sim.unstructured import random_sparse_layer, run_unstructured_batch

    rng = np.random.default_rng(41)
    x = rng.integers(-128, 128, (2, 20))
    x[1, ::3] = 0
    cfg = RNNQuantConfig.from_scales(0.02, 2**-6)
    if engine == "dense":
        w = rng.integers(-128, 128, (12, 20))
        run = run_dense_batch([(w, x)], 4, 8, 8, cache_dir=cache_dir)[0]
        assert np.array_equal(run.outputs, linear(w, x))
        assert list(run.cycles) == [dense_cycles(12, 20, 4)] * 2
    elif engine == "bcr":
        w, mask = random_bcr_layer(rng, (12, 20), (4, 5), 0.6, 0.5)
        run = run_bcr_batch([(w, mask, x)], (4, 5), 4, 8, 8, cache_dir=cache_dir)[0]
        assert np.array_equal(run.outputs, linear(w, x))
        assert list(run.cycles) == [bcr_cycles(encode_bcr(w, (4, 5), mask), 4)] * 2
    elif engine == "unstructured":
        w = random_sparse_layer(rng, (12, 20), 0.3)
        run = run_unstructured_batch([(w, x)], 4, 8, 8, 2, cache_dir=cache_dir)[0]
        assert np.array_equal(run.outputs, linear(w, x))
        assert list(run.cycles) == [unstructured_cycles(encode_csc_lanes(w, 4, 2), v, 4)
                                    for v in x]
    elif engine == "pattern":
        lib = candidate_patterns(4)[:5]
        w, mask = random_pattern_layer(rng, (5, 3), lib, 0.6)
        xp = rng.integers(-128, 128, (3, 6, 5))
        run = run_pattern_batch([(w, mask, lib, xp, 1, 1)], 2, 8, 8, cache_dir=cache_dir)[0]
        assert np.array_equal(run.outputs, conv2d(w, xp, stride=1, padding=1))
        assert run.cycles == pattern_cycles(encode_pattern(w, lib, mask), (6, 5), 2)
    elif engine == "gru":
        job = random_gru_job(rng, cfg, 3, 5, 2)
        run = run_gru_batch([GRUJob(*job)], cfg, 4, "verilator", 3, 5, 2,
                            cache_dir=cache_dir)[0]
        want = golden_gru_sequence(*job, cfg)
        assert np.array_equal(run.h_seq, want) and np.array_equal(run.h, want[-1])
        assert run.cycles == gru_cycles(3, 5, 2, 4)
    else:
        job = random_job(rng, cfg, 4, 4, 2)
        run = run_lstm_batch([LSTMJob(*job)], cfg, 4, "verilator", 4, 4, 2,
                             cache_dir=cache_dir)[0]
        assert rnn_mismatches("lstm", [job], [run], cfg, 4) == []


ENGINES = ("dense", "bcr", "unstructured", "pattern", "lstm", "gru")


@pytest.mark.parametrize("engine", ENGINES)
def test_speed_profile_every_engine_bit_and_cycle_exact(engine, sim_cache_dir, require_simulator):
    """Every engine, built in the "speed" profile (its clock inside the simulation), gives the
    golden model's outputs and the cycle model's cycles on a small job."""
    require_simulator("verilator")
    previous = runner.use_build_profile("speed")
    try:
        _engine_case(engine, sim_cache_dir)
    finally:
        runner.use_build_profile(previous)


def test_speed_profile_build_clocks_itself(sim_cache_dir, require_simulator):
    """A "speed" profile build (its arguments in the cache key, so cached apart from the default
    one) makes only the wrapper's ports (and its clock, read-only) public and clocks itself."""
    from sim.dense import dense_design, emit_dense

    require_simulator("verilator")
    previous = runner.use_build_profile("speed")
    try:
        fast = dense_design(4, 8, 8, 16, 32, cache_dir=sim_cache_dir)
    finally:
        assert runner.use_build_profile(previous) == "speed"
    v_path, name = emit_dense(4, 8, 8, 16, 32, cache_dir=sim_cache_dir)
    assert fast.clock == "internal" and fast.toplevel == f"{name}__clk"
    vlt = (fast.root / "src" / "public_ports.vlt").read_text()
    assert vlt.startswith("`verilator_config\n")
    assert f'public_flat_rw -module "{name}__clk" -var "start"' in vlt
    assert vlt.endswith(f'public_flat_rd -module "{name}__clk" -var "clk"\n')
    assert (fast.root / "src" / f"{name}__clk.v").read_text() == runner.clock_wrapper(
        v_path.read_text(), name)[1]
    stamp = json.loads((fast.root / "build.json").read_text())
    assert {"--no-public-flat-rw", "--timing"} <= set(stamp["build_args"])
    assert any(a.startswith("makeflags:") and "-fcoroutines" in a for a in stamp["build_args"])
