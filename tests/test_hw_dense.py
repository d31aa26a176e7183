"""Tests of hw.dense: parameters, layout helpers, the cycle model, and the engine in amaranth.sim.

The emitted Verilog is simulated with Verilator and Icarus in tests/test_sim_dense.py.
"""

import math
import re
import subprocess

import numpy as np
import pytest
from amaranth.hdl import Fragment, Shape, Value
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.dense import (
    PIPELINE_LATENCY,
    DenseMatVec,
    check_dense_parameters,
    dense_cycles,
    pack_weights,
    pack_words,
    unpack_words,
)
from ir.golden import linear

# ------------------------------------------------------------------------ parameters

@pytest.mark.parametrize("kwargs, exc, message", [
    ({"lanes": 0}, ValueError, "Lanes must be a positive integer, not 0"),
    ({"lanes": -3}, ValueError, "Lanes must be a positive integer, not -3"),
    ({"lanes": 2.0}, TypeError, "Lanes must be a positive integer, not 2.0"),
    ({"lanes": True}, TypeError, "Lanes must be a positive integer, not True"),
    ({"lanes": "4"}, TypeError, "Lanes must be a positive integer, not '4'"),
    ({"weight_bits": 1}, ValueError, "Weight width must be an integer between 2 and 16, not 1"),
    ({"weight_bits": 17}, ValueError, "Weight width must be an integer between 2 and 16, not 17"),
    ({"weight_bits": None}, TypeError,
     "Weight width must be an integer between 2 and 16, not None"),
    ({"act_bits": 0}, ValueError, "Activation width must be an integer between 2 and 16, not 0"),
    ({"act_bits": 32}, ValueError,
     "Activation width must be an integer between 2 and 16, not 32"),
    ({"acc_bits": 1}, ValueError, "Accumulator width must be an integer between 2 and 64, not 1"),
    ({"acc_bits": 65}, ValueError,
     "Accumulator width must be an integer between 2 and 64, not 65"),
    ({"max_rows": 0}, ValueError, "Maximum rows must be a positive integer, not 0"),
    ({"max_cols": -1}, ValueError, "Maximum columns must be a positive integer, not -1"),
    ({"max_cols": 1.5}, TypeError, "Maximum columns must be a positive integer, not 1.5"),
    ({"lanes": 1, "max_rows": 1 << 20, "max_cols": 1 << 12}, ValueError,
     "Maximum shape 1048576x4096 takes 4294967299 cycles, more than the 32-bit cycle counter "
     "holds"),
])
def test_constructor_errors(kwargs, exc, message):
    args = {"lanes": 4, **kwargs}
    lanes = args.pop("lanes")
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        DenseMatVec(lanes, **args)
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        check_dense_parameters(lanes, **args)


def test_numpy_integers_are_accepted():
    assert check_dense_parameters(np.int64(4), max_rows=np.int32(8))["lanes"] == 4


def _inspected(dut):
    """Elaborate ``dut`` once (as the Verilog emitter would) and return it."""
    Fragment.get(dut, None)
    return dut


def test_signature_and_memory_map():
    dut = _inspected(DenseMatVec(4, weight_bits=6, act_bits=5, acc_bits=24, max_rows=10,
                                 max_cols=7))
    members = dut.signature.members
    assert members["start"].flow == wiring.In and Shape.cast(members["start"].shape).width == 1
    assert members["rows"].flow == wiring.In
    assert members["busy"].flow == wiring.Out and members["done"].flow == wiring.Out
    assert members["cycles"].flow == wiring.Out and Shape.cast(members["cycles"].shape).width == 32
    assert len(Value.cast(dut.w_wr.data)) == 4 * 6
    assert len(Value.cast(dut.x_wr.data)) == 5
    assert len(Value.cast(dut.out_rd.data)) == 4 * 24
    assert len(dut.rows) == 4 and len(dut.cols) == 3  # range(11), range(8)
    mm = {m["name"]: m for m in dut.memory_map()}
    assert list(mm) == ["weights", "activations", "outputs"]
    assert (mm["weights"]["depth"], mm["weights"]["width"]) == (3 * 7, 24)
    assert (mm["activations"]["depth"], mm["activations"]["width"]) == (7, 5)
    assert (mm["outputs"]["depth"], mm["outputs"]["width"]) == (3, 96)
    assert mm["weights"]["signals"] == {"addr": "w_wr__addr", "data": "w_wr__data",
                                        "en": "w_wr__en"}
    assert mm["outputs"]["access"] == "read" and mm["weights"]["access"] == "write"
    assert dut.parameters() == {"engine": "dense", "lanes": 4, "weight_bits": 6, "act_bits": 5,
                                "acc_bits": 24, "max_rows": 10, "max_cols": 7,
                                "pipeline_latency": PIPELINE_LATENCY}


def test_memories_are_at_least_two_deep():
    dut = _inspected(DenseMatVec(1, max_rows=1, max_cols=1))
    assert [m["depth"] for m in dut.memory_map()] == [2, 2, 2]
    assert len(dut.out_rd.addr) == 1


# ------------------------------------------------------------------------ cycle model

def test_cycle_model_formula():
    for lanes in (1, 2, 3, 4, 16):
        for rows in (1, 2, 3, 4, 5, 15, 16, 17, 100):
            for cols in (1, 2, 7, 64):
                assert dense_cycles(rows, cols, lanes) == math.ceil(rows / lanes) * cols + 3
    assert dense_cycles(0, 5, 4) == 0
    assert dense_cycles(5, 0, 4) == 0


def test_cycle_model_meets_the_throughput_target():
    # Constant overhead only: within 5% of one MAC per lane per cycle for large layers.
    for rows, cols, lanes in [(256, 256, 16), (64, 64, 4), (1024, 512, 32)]:
        ideal = math.ceil(rows / lanes) * cols
        assert ideal <= dense_cycles(rows, cols, lanes) <= 1.05 * ideal


def test_cycle_model_errors():
    with pytest.raises(ValueError, match=r"^Lanes must be a positive integer, not 0$"):
        dense_cycles(4, 4, 0)
    with pytest.raises(ValueError, match=r"^Rows must be an integer of at least 0, not -1$"):
        dense_cycles(-1, 4, 2)
    with pytest.raises(TypeError, match=r"^Columns must be an integer of at least 0, not 2\.0$"):
        dense_cycles(4, 2.0, 2)


# ------------------------------------------------------------------------ layout helpers

def test_pack_weights_layout():
    rows, cols, lanes = 5, 3, 2
    w = np.arange(1, rows * cols + 1).reshape(rows, cols)
    packed = pack_weights(w, lanes)
    assert packed.shape == (3 * cols, lanes) and packed.dtype == np.int64
    for g in range(3):
        for c in range(cols):
            for p in range(lanes):
                r = g * lanes + p
                assert packed[g * cols + c, p] == (w[r, c] if r < rows else 0)


def test_pack_weights_errors():
    with pytest.raises(ValueError, match=r"^Weight matrix must be 2-dimensional, not of shape \(3,\)$"):
        pack_weights(np.zeros(3, dtype=int), 2)
    with pytest.raises(TypeError, match=r"^Weight matrix must have an integer dtype, not float64$"):
        pack_weights(np.zeros((2, 2)), 2)


def test_pack_and_unpack_words():
    vals = np.array([[-128, 127, 0, -1], [1, -2, 3, -4]])
    words = pack_words(vals, 8)
    assert words[0] == 0xFF_00_7F_80
    assert all(w >= 0 for w in words)
    np.testing.assert_array_equal(unpack_words(words, 8, 4), vals)
    wide = np.full((2, 16), -(1 << 31))
    np.testing.assert_array_equal(unpack_words(pack_words(wide, 32), 32, 16), wide)
    with pytest.raises(ValueError, match=r"^Lane values must lie in \[-128, 127\] for 8-bit fields$"):
        pack_words([[128]], 8)


# ------------------------------------------------------------------------ amaranth.sim

def _simulate(dut, cases, *, restart_while_busy=False):
    """Run ``cases`` (weight, x) through ``dut`` in amaranth.sim; return [(y, cycles, polled)]."""
    P, wb, ab, acc = dut.lanes, dut.weight_bits, dut.act_bits, dut.acc_bits
    results = []

    async def bench(ctx):
        ctx.set(dut.out_rd.en, 1)
        for w, x in cases:
            rows, cols = w.shape
            for a, word in enumerate(pack_words(pack_weights(w, P), wb)):
                ctx.set(dut.w_wr.addr, a)
                ctx.set(Value.cast(dut.w_wr.data), word)
                ctx.set(dut.w_wr.en, 1)
                await ctx.tick()
            ctx.set(dut.w_wr.en, 0)
            for a, word in enumerate(pack_words(np.asarray(x).reshape(-1, 1), ab)):
                ctx.set(dut.x_wr.addr, a)
                ctx.set(dut.x_wr.data, word)
                ctx.set(dut.x_wr.en, 1)
                await ctx.tick()
            ctx.set(dut.x_wr.en, 0)
            ctx.set(dut.rows, rows)
            ctx.set(dut.cols, cols)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            polled = 0
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy)
                if restart_while_busy and polled == 1:
                    ctx.set(dut.start, 1)  # ignored while busy
                    ctx.set(dut.rows, 1)
                elif restart_while_busy:
                    ctx.set(dut.start, 0)
                await ctx.tick()
                polled += 1
            assert not ctx.get(dut.busy)
            cycles = ctx.get(dut.cycles)
            for _ in range(3):  # done is held
                await ctx.tick()
                assert ctx.get(dut.done) and ctx.get(dut.cycles) == cycles
            words = []
            for g in range(-(-rows // P)):
                ctx.set(dut.out_rd.addr, g)
                await ctx.tick()
                words.append(ctx.get(Value.cast(dut.out_rd.data)))
            y = unpack_words(words, acc, P).reshape(-1)[:rows] if words else np.zeros(0)
            results.append((y, cycles, polled))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_engine_matches_golden_and_cycle_model():
    rng = np.random.default_rng(7)
    P = 3
    dut = DenseMatVec(P, weight_bits=8, act_bits=8, max_rows=10, max_cols=9)
    shapes = [(7, 5), (1, 1), (10, 9), (2, 9), (3, 4), (4, 1), (9, 2)]
    cases = [(rng.integers(-128, 128, s), rng.integers(-128, 128, s[1])) for s in shapes]
    cases.append((np.full((10, 9), -128), np.full(9, -128)))
    cases.append((np.full((5, 9), 127), np.full(9, -128)))
    cases.append((np.zeros((6, 3), dtype=int), rng.integers(-128, 128, 3)))
    for (w, x), (y, cycles, polled) in zip(cases, _simulate(dut, cases), strict=True):
        np.testing.assert_array_equal(y, linear(w, x, weight_bits=8, act_bits=8))
        assert cycles == dense_cycles(*w.shape, P)
        assert polled == cycles  # done rises exactly `cycles` clock edges after start


@pytest.mark.parametrize("restart", [False, True])
def test_banked_weight_memory_matches_golden_and_cycle_model(monkeypatch, restart):
    """A weight memory deeper than one block RAM is banked (hw.banked) and read at the address
    the issue stage takes next: the same outputs and cycles, also with ``start`` raised while
    busy. Banks of 4 words make every layer span several."""
    import hw.banked

    monkeypatch.setattr(hw.banked, "bank_depth", lambda width: 4)
    rng = np.random.default_rng(8)
    P = 3
    dut = DenseMatVec(P, weight_bits=8, act_bits=8, max_rows=10, max_cols=9)
    weights = next(sub[0] for sub in Fragment.get(dut, None).subfragments if sub[1] == "weights")
    assert len([sub for sub in weights.subfragments if sub[1].startswith("bank")]) == 9
    shapes = [(10, 9), (7, 5), (1, 1), (2, 9), (9, 2)]
    cases = [(rng.integers(-128, 128, s), rng.integers(-128, 128, s[1])) for s in shapes]
    results = _simulate(dut, cases, restart_while_busy=restart)
    for (w, x), (y, cycles, polled) in zip(cases, results, strict=True):
        np.testing.assert_array_equal(y, linear(w, x, weight_bits=8, act_bits=8))
        assert cycles == dense_cycles(*w.shape, P)
        assert polled == cycles


def test_engine_wraps_to_int32():
    # (-2**15)**2 * 8 = 2**33: the exact sum wraps twice; ir.golden.linear wraps the same way.
    dut = DenseMatVec(2, weight_bits=16, act_bits=16, max_rows=3, max_cols=8)
    cases = [(np.full((3, 8), -(1 << 15)), np.full(8, -(1 << 15))),
             (np.full((3, 7), (1 << 15) - 1), np.full(7, -(1 << 15))),
             (np.array([[-(1 << 15)] * 4 + [(1 << 15) - 1] * 4] * 3), np.full(8, (1 << 15) - 1))]
    for (w, x), (y, cycles, _) in zip(cases, _simulate(dut, cases), strict=True):
        np.testing.assert_array_equal(y, linear(w, x, weight_bits=16, act_bits=16))
        assert cycles == dense_cycles(*w.shape, 2)


def test_start_while_busy_is_ignored():
    dut = DenseMatVec(2, max_rows=4, max_cols=4)
    w, x = np.arange(16).reshape(4, 4) - 8, np.array([1, -2, 3, -4])
    (y, cycles, _), = _simulate(dut, [(w, x)], restart_while_busy=True)
    np.testing.assert_array_equal(y, linear(w, x))
    assert cycles == dense_cycles(4, 4, 2)


def test_empty_shape_finishes_at_once():
    dut = DenseMatVec(2, max_rows=4, max_cols=4)
    results = []

    async def bench(ctx):
        for rows, cols in [(0, 3), (3, 0)]:
            ctx.set(dut.rows, rows)
            ctx.set(dut.cols, cols)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            results.append((ctx.get(dut.done), ctx.get(dut.busy), ctx.get(dut.cycles)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert results == [(1, 0, 0), (1, 0, 0)]
    assert dense_cycles(0, 3, 2) == dense_cycles(3, 0, 2) == 0


# ------------------------------------------------------------------------ lint

ALLOWED_LINT = {"PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC"}


def test_verilator_lint_only_documented_waivers(tmp_path):
    import hw.dense
    from hw.emit import emit_verilog
    from sim.toolchain import toolchain_environ

    v_path, _ = emit_verilog(DenseMatVec(4, max_rows=16, max_cols=16), "dense_lint", tmp_path)
    with toolchain_environ():
        proc = subprocess.run(["verilator", "--lint-only", "-Wall", str(v_path)],
                              capture_output=True, text=True, timeout=120)
    kinds = set(re.findall(r"%Warning-([A-Z0-9_]+):", proc.stderr))
    assert kinds <= ALLOWED_LINT, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith("%Error") and "Exiting due to" not in ln]
    assert not errors, proc.stderr[-3000:]
    # The waivers are documented in the module docstring.
    for kind in ALLOWED_LINT:
        assert kind in hw.dense.__doc__
