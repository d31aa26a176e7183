"""Tests of hw.unstructured: parameters, memory images, the cycle model, and the engine in
amaranth.sim.

The emitted Verilog is simulated with Verilator and Icarus in tests/test_sim_unstructured.py.
"""

import json
import re
import subprocess

import numpy as np
import pytest
from amaranth.hdl import Fragment, Value
from amaranth.sim import Simulator

from hw.bcr import pack_fields
from hw.dense import PIPELINE_LATENCY as DENSE_LATENCY
from hw.dense import dense_cycles, unpack_words
from hw.unstructured import (
    PIPELINE_LATENCY,
    UnstructuredMatVec,
    check_unstructured_parameters,
    column_items,
    count_bits,
    pack_entry_words,
    pack_unstructured,
    unstructured_cycles,
)
from ir.csr import encode_csc_lanes
from ir.golden import linear


def sparse_layer(rng, shape, density, bits=8):
    """Random integer weights, each non-zero with probability ``density``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    vals = rng.integers(lo, hi + 1, shape)
    vals[vals == 0] = 1
    return np.where(rng.random(shape) < density, vals, 0).astype(np.int64)


# ------------------------------------------------------------------------ parameters


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"lanes": 0}, ValueError, "Lanes must be a positive integer, not 0"),
    ({"lanes": 2.0}, TypeError, "Lanes must be a positive integer, not 2.0"),
    ({"lanes": True}, TypeError, "Lanes must be a positive integer, not True"),
    ({"weight_bits": 1}, ValueError, "Weight width must be an integer between 2 and 16, not 1"),
    ({"weight_bits": 17}, ValueError, "Weight width must be an integer between 2 and 16, not 17"),
    ({"act_bits": None}, TypeError,
     "Activation width must be an integer between 2 and 16, not None"),
    ({"acc_bits": 65}, ValueError,
     "Accumulator width must be an integer between 2 and 64, not 65"),
    ({"index_bits": 0}, ValueError, "Index width must be an integer between 1 and 16, not 0"),
    ({"index_bits": 17}, ValueError, "Index width must be an integer between 1 and 16, not 17"),
    ({"index_bits": "4"}, TypeError, "Index width must be an integer between 1 and 16, not '4'"),
    ({"max_rows": 0}, ValueError, "Maximum rows must be a positive integer, not 0"),
    ({"max_cols": 1.5}, TypeError, "Maximum columns must be a positive integer, not 1.5"),
    # 16 rows on 4 lanes: 4 lane rows x 16 columns = 64 entries per lane at most.
    ({"max_entries": 0}, ValueError,
     "Maximum entries per lane must be an integer between 1 and 64, not 0"),
    ({"max_entries": 65}, ValueError,
     "Maximum entries per lane must be an integer between 1 and 64, not 65"),
    ({"lanes": 1, "max_rows": 1 << 16, "max_cols": 1 << 16}, ValueError,
     "Maximum of 65536 columns of 65536 lane rows takes 4295032835 cycles, more than the "
     "32-bit cycle counter holds"),
])
def test_constructor_errors(kwargs, exc, message):
    args = {"lanes": 4, "max_rows": 16, "max_cols": 16, **kwargs}
    lanes = args.pop("lanes")
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        check_unstructured_parameters(lanes, **args)
    if "max_rows" not in kwargs:  # do not build huge designs
        with pytest.raises(exc, match=f"^{re.escape(message)}$"):
            UnstructuredMatVec(lanes, **args)


def test_defaults_and_memory_map():
    p = check_unstructured_parameters(np.int64(4), max_rows=18, max_cols=12)
    assert p["max_entries"] == 5 * 12 and p["index_bits"] == 4
    dut = UnstructuredMatVec(4, weight_bits=6, act_bits=5, acc_bits=24, index_bits=3,
                             max_rows=18, max_cols=12, max_entries=20)
    Fragment.get(dut, None)
    mm = {m["name"]: m for m in dut.memory_map()}
    assert list(mm) == ["counts", "entries", "activations", "outputs"]
    assert count_bits(4, 18) == 3
    assert (mm["counts"]["depth"], mm["counts"]["width"]) == (12, 12)
    assert (mm["entries"]["depth"], mm["entries"]["width"]) == (20, 9)
    assert (mm["entries"]["banks"], mm["entries"]["bank_shift"]) == (4, 5)
    assert len(dut.e_wr.addr) == 2 + 5
    assert (mm["activations"]["depth"], mm["activations"]["width"]) == (12, 5)
    assert (mm["outputs"]["depth"], mm["outputs"]["width"]) == (5, 4 * 24)
    assert dut.parameters()["index_bits"] == 3
    one = UnstructuredMatVec(1, max_rows=1, max_cols=1)
    Fragment.get(one, None)
    assert len(one.e_wr.addr) == 1


# ------------------------------------------------------------------------ cycle model / images

def test_cycle_model_formula():
    rng = np.random.default_rng(3)
    w = sparse_layer(rng, (23, 19), 0.3)
    x = rng.integers(-128, 128, 19)
    x[[0, 5, 6]] = 0
    for lanes in (1, 3, 4):
        csc = encode_csc_lanes(w, lanes, 2)
        counts = column_items(csc)
        assert counts.shape == (19, lanes)
        assert np.array_equal(counts.sum(axis=0), csc.lane_value_counts)
        expect = PIPELINE_LATENCY + sum(1 + (counts[c].max() if x[c] else 0) for c in range(19))
        assert unstructured_cycles(csc, x, lanes) == expect
    # Dense activations and weights on lanes dividing the rows: dense + one head per column.
    w = np.ones((16, 10), dtype=int)
    assert unstructured_cycles(encode_csc_lanes(w, 4), np.ones(10), 4) == \
        dense_cycles(16, 10, 4) - DENSE_LATENCY + 10 + PIPELINE_LATENCY
    assert unstructured_cycles(encode_csc_lanes(w, 4), np.zeros(10), 4) == 10 + PIPELINE_LATENCY
    assert unstructured_cycles(encode_csc_lanes(np.zeros((0, 3)), 2), np.ones(3), 2) == 0
    with pytest.raises(ValueError, match=r"^CSC lanes are encoded for 4 lanes, not 2$"):
        unstructured_cycles(encode_csc_lanes(w, 4), np.ones(10), 2)
    with pytest.raises(ValueError, match=r"^Activations of shape \(9,\) do not match 10 "
                                         r"columns$"):
        unstructured_cycles(encode_csc_lanes(w, 4), np.ones(9), 4)
    with pytest.raises(TypeError, match=r"^CSC lanes must be an ir.csr.CSCLanes, not ndarray$"):
        unstructured_cycles(w, np.ones(10), 4)


def test_load_imbalance_shows_in_the_model():
    # 16 non-zeros in column 0: all in lane 0's rows, or spread 4 per lane.
    skew = np.zeros((64, 4), dtype=int)
    skew[0:64:4, 0] = 1
    even = np.zeros((64, 4), dtype=int)
    even[0:16, 0] = 1
    x = np.ones(4, dtype=int)
    assert unstructured_cycles(encode_csc_lanes(skew, 4), x, 4) == PIPELINE_LATENCY + 4 + 16
    assert unstructured_cycles(encode_csc_lanes(even, 4), x, 4) == PIPELINE_LATENCY + 4 + 4


def test_pack_layout_and_padding():
    # Lane 0 of 2 holds rows 0, 2, ..., 38 (20 lane rows); index_bits=2 counts gaps up to 3.
    w = np.zeros((40, 2), dtype=int)
    w[0, 0], w[38, 0], w[3, 1] = 5, -7, 9
    img = pack_unstructured(encode_csc_lanes(w, 2, 2))
    assert img.rows == 40 and img.cols == 2
    # Lane 0, column 0: row 0, then a gap of 18 lane rows = 4 padding entries + the entry.
    np.testing.assert_array_equal(img.values[0], [5, 0, 0, 0, 0, -7])
    np.testing.assert_array_equal(img.rel_index[0], [0, 3, 3, 3, 3, 2])
    np.testing.assert_array_equal(img.values[1], [9])
    np.testing.assert_array_equal(img.rel_index[1], [1])
    np.testing.assert_array_equal(img.counts, [[6, 0], [0, 1]])
    assert pack_entry_words([5, -7], [0, 2], 8, 2) == [5, 0xF9 | 2 << 8]
    with pytest.raises(ValueError, match=r"^Relative indices must lie in \[0, 3\] for 2 bits$"):
        pack_entry_words([1], [4], 8, 2)
    with pytest.raises(ValueError, match=r"^Entry values must lie in \[-8, 7\] for 4 bits$"):
        pack_entry_words([8], [0], 4, 2)


# ------------------------------------------------------------------------ amaranth.sim

def _simulate(dut, layers):
    """Run ``(w, x)`` layers on ``dut`` in amaranth.sim; returns ``(y, cycles, polled)`` each."""
    P = dut.lanes
    results = []

    async def write(ctx, port, words, addrs=None):
        ctx.set(port.en, 1)
        for a, word in enumerate(words):
            ctx.set(port.addr, a if addrs is None else addrs[a])
            ctx.set(Value.cast(port.data), word)
            await ctx.tick()
        ctx.set(port.en, 0)

    async def bench(ctx):
        ctx.set(dut.out_rd.en, 1)
        for w, x in layers:
            img = pack_unstructured(encode_csc_lanes(w, P, dut.index_bits))
            await write(ctx, dut.cnt_wr, pack_fields(img.counts, dut.count_bits))
            for p in range(P):
                words = pack_entry_words(img.values[p], img.rel_index[p], dut.weight_bits,
                                         dut.index_bits)
                await write(ctx, dut.e_wr, words,
                            [(p << dut.entry_addr_bits) | a for a in range(len(words))])
            await write(ctx, dut.x_wr, [int(v) & ((1 << dut.act_bits) - 1) for v in x])
            ctx.set(dut.rows, img.rows)
            ctx.set(dut.cols, img.cols)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            polled = 0
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy)
                await ctx.tick()
                polled += 1
            cycles = ctx.get(dut.cycles)
            words = []
            for g in range(-(-img.rows // P)):
                ctx.set(dut.out_rd.addr, g)
                await ctx.tick()
                words.append(ctx.get(Value.cast(dut.out_rd.data)))
            y = unpack_words(words, dut.acc_bits, P).reshape(-1)[:img.rows]
            results.append((y, cycles, polled))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_engine_matches_golden_and_cycle_model():
    rng = np.random.default_rng(11)
    P, ib = 3, 2
    dut = UnstructuredMatVec(P, index_bits=ib, max_rows=20, max_cols=16)
    layers = []
    for shape, density in [((20, 16), 0.3), ((7, 3), 1.0), ((13, 11), 0.1), ((1, 1), 1.0),
                           ((20, 16), 0.05), ((2, 5), 0.5)]:
        w = sparse_layer(rng, shape, density)
        x = rng.integers(-128, 128, shape[1])
        x[rng.random(shape[1]) < 0.3] = 0
        layers.append((w, x))
    # Gaps beyond the index width (padding), an empty column and an empty lane; then the
    # same layer again: stale accumulators of the previous run must not leak in.
    w = np.zeros((20, 16), dtype=np.int64)
    w[[0, 18, 19, 1], [0, 0, 15, 15]] = [-128, 127, 5, -3]
    layers += [(w, rng.integers(-128, 128, 16))] * 2
    layers.append((np.zeros((9, 9), dtype=np.int64), rng.integers(-128, 128, 9)))
    layers.append((sparse_layer(rng, (20, 16), 1.0), np.zeros(16, dtype=np.int64)))
    for (w, x), (y, cycles, polled) in zip(layers, _simulate(dut, layers), strict=True):
        np.testing.assert_array_equal(y, linear(w, x, weight_bits=8, act_bits=8))
        assert cycles == unstructured_cycles(encode_csc_lanes(w, P, ib), x, P)
        assert polled == cycles


def test_engine_wraps_and_single_lane():
    w = np.full((3, 12), -(1 << 15))
    x = np.full(12, -(1 << 15))
    for acc, lanes in ((32, 1), (16, 2)):
        dut = UnstructuredMatVec(lanes, weight_bits=16, act_bits=16, acc_bits=acc,
                                 index_bits=1, max_rows=3, max_cols=12)
        (y, cycles, _), = _simulate(dut, [(w, x)])
        exact = w @ x
        np.testing.assert_array_equal(y, (exact + (1 << (acc - 1))) % (1 << acc)
                                      - (1 << (acc - 1)))
        assert cycles == unstructured_cycles(encode_csc_lanes(w, lanes, 1), x, lanes)
    np.testing.assert_array_equal(_simulate(UnstructuredMatVec(
        1, weight_bits=16, act_bits=16, max_rows=3, max_cols=12), [(w, x)])[0][0], linear(w, x))


def test_start_while_busy_is_ignored_and_done_is_held():
    rng = np.random.default_rng(4)
    dut = UnstructuredMatVec(2, max_rows=6, max_cols=8, index_bits=1)
    w = sparse_layer(rng, (6, 8), 0.6)
    x = rng.integers(-128, 128, 8)
    img = pack_unstructured(encode_csc_lanes(w, 2, 1))
    seen = []

    async def write(ctx, port, words, base=0):
        ctx.set(port.en, 1)
        for a, word in enumerate(words):
            ctx.set(port.addr, base + a)
            ctx.set(Value.cast(port.data), word)
            await ctx.tick()
        ctx.set(port.en, 0)

    async def bench(ctx):
        ctx.set(dut.out_rd.en, 1)
        await write(ctx, dut.cnt_wr, pack_fields(img.counts, dut.count_bits))
        for p in range(2):
            await write(ctx, dut.e_wr, pack_entry_words(img.values[p], img.rel_index[p], 8, 1),
                        p << dut.entry_addr_bits)
        await write(ctx, dut.x_wr, [int(v) & 0xFF for v in x])
        ctx.set(dut.rows, 6)
        ctx.set(dut.cols, 8)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.cols, 1)         # a restart with other inputs while busy is ignored
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.start, 0)
        while not ctx.get(dut.done):
            await ctx.tick()
        cycles = ctx.get(dut.cycles)
        for _ in range(3):
            await ctx.tick()
            assert ctx.get(dut.done) and not ctx.get(dut.busy) and ctx.get(dut.cycles) == cycles
        words = []
        for g in range(3):
            ctx.set(dut.out_rd.addr, g)
            await ctx.tick()
            words.append(ctx.get(Value.cast(dut.out_rd.data)))
        seen.append((unpack_words(words, 32, 2).reshape(-1), cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    (y, cycles), = seen
    np.testing.assert_array_equal(y, linear(w, x))
    assert cycles == unstructured_cycles(encode_csc_lanes(w, 2, 1), x, 2)


# ------------------------------------------------------------------------ lint

ALLOWED_LINT = {"PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC"}


def test_verilator_lint_only_documented_waivers(tmp_path):
    import hw.unstructured
    from hw.emit import emit_verilog
    from sim.toolchain import toolchain_environ

    v_path, j_path = emit_verilog(UnstructuredMatVec(3, max_rows=20, max_cols=16),
                                  "unstructured_lint", tmp_path)
    sidecar = json.loads(j_path.read_text())
    assert sidecar["parameters"]["engine"] == "unstructured"
    assert [m["name"] for m in sidecar["memory_map"]] == [
        "counts", "entries", "activations", "outputs"]
    assert {"cnt_wr__data", "e_wr__addr", "out_rd__data"} <= {p["name"] for p in
                                                             sidecar["ports"]}
    with toolchain_environ():
        proc = subprocess.run(["verilator", "--lint-only", "-Wall", str(v_path)],
                              capture_output=True, text=True, timeout=120)
    kinds = set(re.findall(r"%Warning-([A-Z0-9_]+):", proc.stderr))
    assert kinds <= ALLOWED_LINT, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith("%Error") and "Exiting due to" not in ln]
    assert not errors, proc.stderr[-3000:]
    for kind in ALLOWED_LINT:
        assert kind in hw.unstructured.__doc__
