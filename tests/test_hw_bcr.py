"""Tests of hw.bcr: parameters, memory images, the cycle model, and the engine in amaranth.sim.

The emitted Verilog is simulated with Verilator and Icarus in tests/test_sim_bcr.py.
"""

import itertools
import json
import re
import subprocess

import numpy as np
import pytest
from amaranth.hdl import Fragment, Value
from amaranth.sim import Simulator

from hw.bcr import (
    PIPELINE_LATENCY,
    BCRMatVec,
    bcr_cycles,
    bcr_field_widths,
    bcr_items,
    bcr_partition,
    check_bcr_parameters,
    pack_bcr,
    pack_fields,
)
from hw.dense import PIPELINE_LATENCY as DENSE_LATENCY
from hw.dense import dense_cycles, pack_words, unpack_words
from ir.bcr import BCRMatrix, encode_bcr
from ir.golden import linear
from sim.bcr import exact_bcr_layer
from sim.bcr import random_bcr_layer as bcr_layer

# ------------------------------------------------------------------------ parameters


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"lanes": 0}, ValueError, "Lanes must be a positive integer, not 0"),
    ({"lanes": 2.0}, TypeError, "Lanes must be a positive integer, not 2.0"),
    ({"lanes": True}, TypeError, "Lanes must be a positive integer, not True"),
    ({"block": (0, 4)}, ValueError, "Block must be a pair of positive integers, not (0, 4)"),
    ({"block": 4}, TypeError, "Block must be a pair of positive integers, not 4"),
    ({"block": (4, 2.0)}, TypeError, "Block must be a pair of positive integers, not (4, 2.0)"),
    ({"block": (4, 4, 4)}, TypeError,
     "Block must be a pair of positive integers, not (4, 4, 4)"),
    ({"weight_bits": 1}, ValueError, "Weight width must be an integer between 2 and 16, not 1"),
    ({"weight_bits": 17}, ValueError, "Weight width must be an integer between 2 and 16, not 17"),
    ({"act_bits": 0}, ValueError, "Activation width must be an integer between 2 and 16, not 0"),
    ({"act_bits": None}, TypeError,
     "Activation width must be an integer between 2 and 16, not None"),
    ({"acc_bits": 65}, ValueError,
     "Accumulator width must be an integer between 2 and 64, not 65"),
    ({"max_rows": 0}, ValueError, "Maximum rows must be a positive integer, not 0"),
    ({"max_cols": 1.5}, TypeError, "Maximum columns must be a positive integer, not 1.5"),
    # 16x16 with 4x8 blocks: a 4 x 2 grid of 8 blocks.
    ({"max_blocks": 0}, ValueError, "Maximum blocks must be an integer between 1 and 8, not 0"),
    ({"max_blocks": 9}, ValueError, "Maximum blocks must be an integer between 1 and 8, not 9"),
    ({"max_blocks": "2"}, TypeError,
     "Maximum blocks must be an integer between 1 and 8, not '2'"),
    # 3 blocks x ceil(4/4) groups x 8 columns = 24 value words at most.
    ({"max_blocks": 3, "max_value_words": 25}, ValueError,
     "Maximum value words must be an integer between 1 and 24, not 25"),
    ({"max_value_words": 0}, ValueError,
     "Maximum value words must be an integer between 1 and 64, not 0"),
    ({"slices": 0}, ValueError, "Slices must be an integer between 1 and 16, not 0"),
    ({"slices": 17}, ValueError, "Slices must be an integer between 1 and 16, not 17"),
    ({"slices": 2.0}, TypeError, "Slices must be an integer between 1 and 16, not 2.0"),
    ({"lanes": 1, "block": (1, 1), "max_rows": 1 << 16, "max_cols": 1 << 16}, ValueError,
     "Maximum of 4294967296 value words takes 4294967302 cycles, more than the 32-bit cycle "
     "counter holds"),
])
def test_constructor_errors(kwargs, exc, message):
    args = {"lanes": 4, "block": (4, 8), "max_rows": 16, "max_cols": 16, **kwargs}
    lanes = args.pop("lanes")
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        check_bcr_parameters(lanes, **args)
    if "max_rows" not in kwargs:  # do not build huge designs
        with pytest.raises(exc, match=f"^{re.escape(message)}$"):
            BCRMatVec(lanes, **args)


def test_defaults_and_memory_map():
    p = check_bcr_parameters(np.int64(4), block=[6, 5], max_rows=20, max_cols=12)
    assert p["block"] == (6, 5)
    assert p["max_blocks"] == 4 * 3 and p["max_value_words"] == 12 * 2 * 5
    dut = BCRMatVec(4, block=(6, 5), weight_bits=6, act_bits=5, acc_bits=24, max_rows=20,
                    max_cols=12, max_blocks=7, max_value_words=30)
    Fragment.get(dut, None)
    mm = {m["name"]: m for m in dut.memory_map()}
    assert list(mm) == ["meta", "col_index", "row_index", "values", "activations", "outputs"]
    w = bcr_field_widths(4, (6, 5), 20, 12)
    assert w == {"block_row": 2, "block_col": 2, "groups": 2, "ncols": 3, "col_index": 3,
                 "row_index": 3}
    assert (mm["meta"]["depth"], mm["meta"]["width"]) == (7, 9)
    assert (mm["col_index"]["depth"], mm["col_index"]["width"]) == (35, 3)
    assert (mm["row_index"]["depth"], mm["row_index"]["width"]) == (14, 12)
    assert (mm["values"]["depth"], mm["values"]["width"]) == (30, 24)
    assert (mm["activations"]["depth"], mm["activations"]["width"]) == (12, 5)
    assert (mm["outputs"]["depth"], mm["outputs"]["width"]) == (4, 6 * 24)
    assert mm["outputs"]["access"] == "read" and mm["values"]["signals"]["data"] == "w_wr__data"
    assert len(Value.cast(dut.meta_wr.data)) == 9 and len(dut.blocks) == 3
    assert dut.parameters()["block"] == [6, 5]


# ------------------------------------------------------------------------ layer helpers

# ------------------------------------------------------------------------ cycle model / images

def test_cycle_model_formula():
    rng = np.random.default_rng(3)
    for lanes in (1, 3, 4):
        w, mask = bcr_layer(rng, (23, 19), (6, 5), 0.6, 0.5)
        bcr = encode_bcr(w, (6, 5), mask)
        expect = sum(-(-len(r) // lanes) * len(c) for _, _, r, c, _ in bcr.blocks())
        assert bcr_items(bcr, lanes) == expect
        assert bcr_cycles(bcr, lanes) == expect + PIPELINE_LATENCY
    assert bcr_cycles(encode_bcr(np.zeros((5, 5), dtype=int), (2, 2)), 4) == 0
    # Fully dense, block rows a multiple of the lanes: the dense engine's items exactly.
    bcr = encode_bcr(np.ones((16, 32), dtype=int), (8, 16))
    assert bcr_cycles(bcr, 4) == dense_cycles(16, 32, 4) + PIPELINE_LATENCY - DENSE_LATENCY
    with pytest.raises(ValueError, match=r"^Lanes must be a positive integer, not 0$"):
        bcr_cycles(bcr, 0)
    with pytest.raises(TypeError, match=r"^BCR matrix must be an ir.bcr.BCRMatrix, not ndarray$"):
        bcr_cycles(np.ones((2, 2)), 1)


@pytest.mark.parametrize("lanes, block, kr, kc", [
    (8, (16, 16), 8, 3), (4, (8, 16), 4, 3), (16, (32, 16), 16, 3), (16, (16, 32), 16, 3)])
def test_90_percent_sparsity_beats_dense_by_8_5x(lanes, block, kr, kc):
    # 256x256 at about 90% sparsity, kept rows per block a multiple of the lanes.
    rng = np.random.default_rng(0)
    w, mask = exact_bcr_layer(rng, (256, 256), block, kr, kc)
    bcr = encode_bcr(w, block, mask)
    assert 0.87 <= 1 - mask.mean() <= 0.95
    assert bcr_items(bcr, lanes) == mask.sum() // lanes      # every lane busy on every item
    ratio = dense_cycles(256, 256, lanes) / bcr_cycles(bcr, lanes)
    assert ratio >= 8.5
    # within 1.5% of the ideal 1/(1-r): the 6 cycles of pipeline latency are 1.5% of the 16-lane
    # runs' 390 cycles
    assert ratio >= 0.985 / mask.mean()


def test_pack_bcr_layout():
    w = np.zeros((7, 9), dtype=np.int64)
    # Block (1, 0) of 4x4 blocks: rows 4, 6 kept, columns 1, 2, 3 kept.
    w[np.ix_([4, 6], [5, 6, 7])] = [[1, 2, 3], [4, 5, 6]]
    # Block (0, 2): row 1, column 8.
    w[1, 8] = -7
    bcr = encode_bcr(w, (4, 4))
    img = pack_bcr(bcr, 2)
    assert img.meta.tolist() == [[0, 2, 1, 1], [1, 1, 1, 3]]
    assert img.col_index.ravel().tolist() == [0, 1, 2, 3]
    assert img.row_index.tolist() == [[1, 4], [0, 2]]
    assert img.values.tolist() == [[-7, 0], [1, 4], [2, 5], [3, 6]]
    assert (img.rows, img.cols, img.blocks, img.slice_blocks) == (7, 9, 2, (2,))
    img3 = pack_bcr(bcr, 1)
    assert img3.row_index.tolist() == [[1], [0], [2]]
    assert img3.values.ravel().tolist() == [-7, 1, 2, 3, 4, 5, 6]
    assert pack_fields([[1, 2, 3]], [1, 2, 3]) == [1 | 2 << 1 | 3 << 3]
    with pytest.raises(ValueError, match=r"^Field value 4 does not fit in 2 unsigned bits$"):
        pack_fields([[4]], 2)


# ------------------------------------------------------------------------ amaranth.sim

def _simulate(dut, layers, raw_log=None):
    """Run ``layers`` [(qweight, mask, x)] through ``dut``; return [(y, cycles, polled)].

    With ``raw_outputs`` each word read is masked by its ``out_written`` bit, and the words and
    bits as read are appended, one list pair a layer, to ``raw_log``."""
    P, br = dut.lanes, dut.block[0]
    wd = dut.widths
    results = []

    async def write(ctx, port, words, base=0):
        ctx.set(port.en, 1)
        for a, word in enumerate(words):
            ctx.set(port.addr, base + a)
            ctx.set(Value.cast(port.data), word)
            await ctx.tick()
        ctx.set(port.en, 0)

    # The last output read port (they are all the same).
    last = dut.out_ports - 1
    rd = getattr(dut, f"out_rd{last}" if last else "out_rd")
    written = getattr(dut, f"out_written{last or ''}") if dut.raw_outputs else None

    async def bench(ctx):
        ctx.set(rd.en, 1)
        for w, mask, x in layers:
            img = pack_bcr(encode_bcr(w, dut.block, mask), P, dut.slices)
            for s in range(dut.slices):
                bank, bits = img.bank(s), dut.bank_bits
                await write(ctx, dut.meta_wr, pack_fields(bank.meta, [
                    wd["block_row"], wd["block_col"], wd["groups"], wd["ncols"]]),
                    s << bits["meta"])
                await write(ctx, dut.col_wr, pack_fields(bank.col_index, wd["col_index"]),
                            s << bits["col"])
                await write(ctx, dut.row_wr, pack_fields(bank.row_index, wd["row_index"]),
                            s << bits["row"])
                await write(ctx, dut.w_wr, pack_words(bank.values, dut.weight_bits),
                            s << bits["w"])
            await write(ctx, dut.x_wr, pack_words(np.asarray(x).reshape(-1, 1), dut.act_bits))
            ctx.set(dut.rows, img.rows)
            ctx.set(dut.cols, img.cols)
            ctx.set(dut.blocks, img.blocks)
            if dut.slices > 1:
                ctx.set(dut.slice_blocks, img.slice_blocks)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            polled = 0
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy)
                await ctx.tick()
                polled += 1
            cycles = ctx.get(dut.cycles)
            words, bits = [], []
            for b in range(-(-img.rows // br)):
                ctx.set(rd.addr, b)
                await ctx.tick()
                words.append(ctx.get(Value.cast(rd.data)))
                if written is not None:
                    bits.append(ctx.get(written))
            if written is not None:
                if raw_log is not None:
                    raw_log.append((list(words), bits))
                words = [w if bit else 0 for w, bit in zip(words, bits, strict=True)]
            y = unpack_words(words, dut.acc_bits, br).reshape(-1)[:img.rows]
            results.append((y, cycles, polled))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_engine_matches_golden_and_cycle_model():
    rng = np.random.default_rng(11)
    P, block = 4, (6, 5)
    dut = BCRMatVec(P, block=block, max_rows=20, max_cols=16)
    layers = []
    for shape, rk, ck, full in [((20, 16), 0.6, 0.5, False), ((7, 3), 1.0, 1.0, False),
                                ((13, 11), 0.3, 0.3, False), ((20, 16), 1.0, 1.0, True),
                                ((1, 1), 1.0, 1.0, False), ((19, 14), 0.15, 0.4, False)]:
        w, mask = bcr_layer(rng, shape, block, rk, ck, full=full)
        layers.append((w, mask, rng.integers(-128, 128, shape[1])))
    # One kept entry per block row, blocks in a single block column, then all zero.
    w = np.zeros((20, 16), dtype=np.int64)
    w[[0, 7, 19], [15, 15, 15]] = [-128, 127, 5]
    layers.append((w, w != 0, rng.integers(-128, 128, 16)))
    layers.append((np.zeros((9, 9), dtype=np.int64), np.zeros((9, 9), bool),
                   rng.integers(-128, 128, 9)))
    for (w, mask, x), (y, cycles, polled) in zip(layers, _simulate(dut, layers), strict=True):
        np.testing.assert_array_equal(y, linear(w, x, weight_bits=8, act_bits=8))
        assert cycles == bcr_cycles(encode_bcr(w, block, mask), P)
        assert polled == cycles


def test_deep_activation_memory_reads_synchronously_and_matches():
    """Past LUTRAM_MAX_ACT_WORDS columns the activation memory is read through a synchronous
    port (a block RAM's) addressed by the gather stage's sum: the same outputs and cycles."""
    from hw.bcr import LUTRAM_MAX_ACT_WORDS

    rng = np.random.default_rng(12)
    P, block, cols = 4, (6, 16), LUTRAM_MAX_ACT_WORDS + 72
    dut = BCRMatVec(P, block=block, max_rows=12, max_cols=cols)
    assert dut.act_depth > LUTRAM_MAX_ACT_WORDS
    layers = []
    for shape, rk, ck in [((12, cols), 0.6, 0.5), ((7, cols - 5), 1.0, 0.3)]:
        w, mask = bcr_layer(rng, shape, block, rk, ck)
        layers.append((w, mask, rng.integers(-128, 128, shape[1])))
    for (w, mask, x), (y, cycles, _) in zip(layers, _simulate(dut, layers), strict=True):
        np.testing.assert_array_equal(y, linear(w, x, weight_bits=8, act_bits=8))
        assert cycles == bcr_cycles(encode_bcr(w, block, mask), P)


@pytest.mark.parametrize("slices", [1, 2])
def test_banked_value_memory_matches_golden_and_cycle_model(monkeypatch, slices):
    """A value memory deeper than one block RAM is banked (hw.banked) and read at the issue
    stage's address: the same outputs and cycles. Banks of 4 words make every layer span
    several."""
    import hw.banked

    monkeypatch.setattr(hw.banked, "bank_depth", lambda width: 4)
    rng = np.random.default_rng(13)
    P, block = 3, (6, 5)
    dut = BCRMatVec(P, block=block, max_rows=20, max_cols=16, slices=slices)
    frag = Fragment.get(dut, None)
    slice_frags = [sub[0] for sub in frag.subfragments if sub[1].startswith("slice")] or [frag]
    for sf in slice_frags:
        values = next(sub[0] for sub in sf.subfragments if sub[1] == "values")
        assert len([sub for sub in values.subfragments if sub[1].startswith("bank")]) > 4
    layers = []
    for shape, rk, ck, full in [((20, 16), 1.0, 1.0, False), ((20, 16), 0.6, 0.5, False),
                                ((13, 11), 0.3, 0.3, False), ((20, 16), 0.9, 0.8, True),
                                ((1, 1), 1.0, 1.0, False)]:
        w, mask = bcr_layer(rng, shape, block, rk, ck, full=full)
        layers.append((w, mask, rng.integers(-128, 128, shape[1])))
    for (w, mask, x), (y, cycles, polled) in zip(layers, _simulate(dut, layers), strict=True):
        np.testing.assert_array_equal(y, linear(w, x, weight_bits=8, act_bits=8))
        assert cycles == polled == bcr_cycles(encode_bcr(w, block, mask), P, slices)


def test_many_lanes_elaborate():
    # The scatter's per-row OR over the lanes is a tree: a chain as deep as ~1,000 lanes
    # overflowed Python's recursion limit inside Amaranth (`codesign simulate --lanes 1000`).
    Fragment.get(BCRMatVec(1200, block=(2, 2), max_rows=2, max_cols=2), None)


def test_engine_wraps_to_acc_bits():
    # 16-bit extremes over 12 kept columns overflow int32; a 16-bit accumulator wraps too.
    rng = np.random.default_rng(5)
    w, mask = bcr_layer(rng, (6, 12), (3, 4), 1.0, 1.0, bits=16, full=True)
    x = np.full(12, -(1 << 15))
    for acc in (32, 16):
        dut = BCRMatVec(2, block=(3, 4), weight_bits=16, act_bits=16, acc_bits=acc, max_rows=6,
                        max_cols=12)
        (y, cycles, _), = _simulate(dut, [(w, mask, x)])
        exact = w @ x
        expect = (exact + (1 << (acc - 1))) % (1 << acc) - (1 << (acc - 1))
        np.testing.assert_array_equal(y, expect)
        if acc == 32:
            np.testing.assert_array_equal(y, linear(w, x))
        assert cycles == bcr_cycles(encode_bcr(w, (3, 4), mask), 2)


def _reordered(bcr, order):
    """``bcr`` with its stored blocks in ``order`` (a valid BCRMatrix, not row-major)."""
    blocks = list(bcr.blocks())
    br, bc = bcr.block
    rows = [blocks[k][2] - blocks[k][0] * br for k in order]
    cols = [blocks[k][3] - blocks[k][1] * bc for k in order]
    vals = [blocks[k][4].ravel() for k in order]

    def ptr(parts):
        return np.concatenate([[0], np.cumsum([len(p) for p in parts])])

    return BCRMatrix(shape=bcr.shape, block=bcr.block,
                     block_row=bcr.block_row[order], block_col=bcr.block_col[order],
                     row_ptr=ptr(rows), row_index=np.concatenate(rows), col_ptr=ptr(cols),
                     col_index=np.concatenate(cols), value_ptr=ptr(vals),
                     values=np.concatenate(vals))


def test_pack_bcr_groups_blocks_by_block_row():
    rng = np.random.default_rng(8)
    w, mask = bcr_layer(rng, (12, 12), (4, 4), 0.7, 0.7)
    bcr = encode_bcr(w, (4, 4), mask)
    # Column-major block order: block rows interleave.
    order = np.lexsort((bcr.block_row, bcr.block_col))
    shuffled = _reordered(bcr, order)   # (BCRMatrix.decode assumes row-major order)
    assert any(np.diff(shuffled.block_row) < 0)
    a, b = pack_bcr(bcr, 2), pack_bcr(shuffled, 2)
    assert np.all(np.diff(b.meta[:, 0]) >= 0)
    assert sorted(map(tuple, a.meta)) == sorted(map(tuple, b.meta))
    assert bcr_cycles(shuffled, 2) == bcr_cycles(bcr, 2)


def test_start_while_busy_is_ignored_and_done_is_held():
    rng = np.random.default_rng(4)
    dut = BCRMatVec(2, block=(3, 4), max_rows=6, max_cols=8)
    w, mask = bcr_layer(rng, (6, 8), (3, 4), 1.0, 1.0)
    x = rng.integers(-128, 128, 8)
    img = pack_bcr(encode_bcr(w, (3, 4), mask), 2)
    wd = dut.widths
    seen = []

    async def write(ctx, port, words):
        ctx.set(port.en, 1)
        for a, word in enumerate(words):
            ctx.set(port.addr, a)
            ctx.set(Value.cast(port.data), word)
            await ctx.tick()
        ctx.set(port.en, 0)

    async def bench(ctx):
        ctx.set(dut.out_rd.en, 1)
        await write(ctx, dut.meta_wr, pack_fields(img.meta, [
            wd["block_row"], wd["block_col"], wd["groups"], wd["ncols"]]))
        await write(ctx, dut.col_wr, pack_fields(img.col_index, wd["col_index"]))
        await write(ctx, dut.row_wr, pack_fields(img.row_index, wd["row_index"]))
        await write(ctx, dut.w_wr, pack_words(img.values, 8))
        await write(ctx, dut.x_wr, pack_words(x.reshape(-1, 1), 8))
        ctx.set(dut.rows, 6)
        ctx.set(dut.cols, 8)
        ctx.set(dut.blocks, img.blocks)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.blocks, 1)       # a restart with other inputs while busy is ignored
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
        for b in range(2):
            ctx.set(dut.out_rd.addr, b)
            await ctx.tick()
            words.append(ctx.get(Value.cast(dut.out_rd.data)))
        seen.append((unpack_words(words, 32, 3).reshape(-1), cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    (y, cycles), = seen
    np.testing.assert_array_equal(y, linear(w, x))
    assert cycles == bcr_cycles(encode_bcr(w, (3, 4), mask), 2)


# ------------------------------------------------------------------------ slices

def _block_row_items(bcr, lanes):
    items = [0] * -(-bcr.shape[0] // bcr.block[0])
    for r, _, rows, cols, _ in bcr.blocks():
        items[r] += -(-len(rows) // lanes) * len(cols)
    return items


@pytest.mark.parametrize("seed", range(4))
def test_partition_minimises_the_largest_slice(seed):
    # Against every split into contiguous (possibly empty) block-row ranges.
    rng = np.random.default_rng(seed)
    for _ in range(10):
        shape = (int(rng.integers(1, 25)), int(rng.integers(1, 13)))
        lanes = int(rng.integers(1, 4))
        w, mask = bcr_layer(rng, shape, (3, 4), rng.random(), rng.random())
        bcr = encode_bcr(w, (3, 4), mask)
        items = _block_row_items(bcr, lanes)
        grid = len(items)
        for S in range(1, 6):
            bounds = bcr_partition(bcr, lanes, S)
            assert len(bounds) == S + 1 and bounds[0] == 0 and bounds[-1] == grid
            assert np.all(np.diff(bounds) >= 0)
            got = max(sum(items[a:b]) for a, b in itertools.pairwise(bounds))
            best = min(max(sum(items[a:b]) for a, b in itertools.pairwise((0, *cuts, grid)))
                       for cuts in itertools.combinations_with_replacement(range(grid + 1), S - 1))
            assert got == best
            assert bcr_cycles(bcr, lanes, S) == (best + PIPELINE_LATENCY if bcr.block_count
                                                 else 0)
            img = pack_bcr(bcr, lanes, S)
            assert img.slice_blocks == tuple(
                int(np.sum((bcr.block_row >= a) & (bcr.block_row < b)))
                for a, b in itertools.pairwise(bounds))
    for bad in (bcr, encode_bcr(np.zeros((3, 3), dtype=int), (3, 4))):
        with pytest.raises(ValueError, match=r"^Slices must be an integer between 1 and 16, "
                                             r"not 0$"):
            bcr_cycles(bad, 1, 0)


def test_pack_bcr_slices_keep_the_images_and_split_them_into_banks():
    rng = np.random.default_rng(12)
    w, mask = bcr_layer(rng, (23, 19), (6, 5), 0.6, 0.5)
    w[6:12] = 0                                         # an empty block row
    bcr = encode_bcr(w, (6, 5), np.where(w != 0, mask, False))
    one = pack_bcr(bcr, 3)
    assert one.slice_blocks == (one.blocks,)
    for S in (1, 2, 3, 4, 7):
        img = pack_bcr(bcr, 3, S)
        for field in ("meta", "col_index", "row_index", "values"):
            np.testing.assert_array_equal(getattr(img, field), getattr(one, field))
            np.testing.assert_array_equal(
                np.concatenate([getattr(img.bank(s), field) for s in range(S)]),
                getattr(one, field))
        assert sum(img.slice_blocks) == img.blocks and len(img.slice_blocks) == S
        bounds = bcr_partition(bcr, 3, S)
        for s in range(S):
            bank = img.bank(s)
            assert bank.blocks == len(bank.meta) == img.slice_blocks[s]
            assert np.all((bank.meta[:, 0] >= bounds[s]) & (bank.meta[:, 0] < bounds[s + 1]))
            assert len(bank.values) == int(np.sum(bank.meta[:, 2] * bank.meta[:, 3]))


def test_one_slice_builds_no_slice_logic(tmp_path):
    from hw.emit import emit_verilog

    # slices=1 is the engine as it was (same Verilog, checked when slices were added).
    one = BCRMatVec(4, block=(6, 5), max_rows=20, max_cols=16, slices=1)
    v_path, j_path = emit_verilog(one, "bcr_one", tmp_path)
    assert "slice" not in v_path.read_text() and "slice" not in j_path.read_text()
    assert "slice_blocks" not in one.signature.members and "slices" not in one.parameters()
    assert len(one.meta_wr.addr) == one.bank_bits["meta"] == 4     # 16 blocks


def test_sliced_signature_and_memory_map():
    dut = BCRMatVec(4, block=(6, 5), max_rows=20, max_cols=16, max_blocks=7,
                    max_value_words=30, slices=3, out_ports=2)
    assert dut.parameters()["slices"] == 3 and dut.parameters()["out_ports"] == 2
    assert dut.bank_bits == {"meta": 3, "col": 6, "row": 4, "w": 5}
    for port, bits in (("meta_wr", 3), ("col_wr", 6), ("row_wr", 4), ("w_wr", 5)):
        assert len(getattr(dut, port).addr) == bits + 2   # 2 bits select one of 3 slices
    assert len(dut.x_wr.addr) == 4                        # broadcast: 16 columns
    assert len(Value.cast(dut.slice_blocks)) == 3 * 3 and len(dut.blocks) == 5
    mm = {m["name"]: m for m in dut.memory_map()}
    assert {m["copies"] for m in mm.values()} == {3}
    assert {n: m.get("bank_stride") for n, m in mm.items()} == {
        "meta": 8, "col_index": 64, "row_index": 16, "values": 32, "activations": None,
        "outputs": None}
    assert mm["meta"]["depth"] == 7 and mm["values"]["depth"] == 30
    assert mm["values"]["layout"].startswith("slice s (of 3) at addresses s*32 + i, i < 30: ")
    Fragment.get(dut, None)


def _sliced_layers(rng, block, shape):
    """Awkward layers for a sliced engine of ``shape`` at most (with ``block``)."""
    rows, cols = shape
    layers = []
    for sh, rk, ck, full in [(shape, 0.6, 0.5, False), (shape, 1.0, 1.0, True),
                             ((13, 11), 0.3, 0.3, False), ((rows - 1, cols - 2), 0.15, 0.4, False),
                             ((7, 3), 1.0, 1.0, False), ((1, 1), 1.0, 1.0, False),
                             ((5, cols), 0.7, 0.7, False)]:
        w, mask = bcr_layer(rng, sh, block, rk, ck, full=full)
        layers.append((w, mask, rng.integers(-128, 128, sh[1])))
    # Empty block rows between full ones; then one block row only (the other slices idle).
    w, mask = bcr_layer(rng, shape, block, 0.8, 0.8)
    w[block[0]:3 * block[0]] = 0
    layers.append((w, mask & (w != 0), rng.integers(-128, 128, cols)))
    w = np.zeros(shape, dtype=np.int64)
    w[rows - 1, :] = rng.integers(-128, 128, cols)
    layers.append((w, w != 0, rng.integers(-128, 128, cols)))
    layers.append((np.zeros(shape, dtype=np.int64), np.zeros(shape, bool),
                   rng.integers(-128, 128, cols)))
    return layers


@pytest.mark.parametrize("slices, out_ports", [(2, 1), (3, 2), (4, 1)])
def test_sliced_engine_matches_golden_and_cycle_model(slices, out_ports):
    rng = np.random.default_rng(20 + slices)
    P, block = 3, (6, 5)
    dut = BCRMatVec(P, block=block, max_rows=26, max_cols=16, slices=slices,
                    out_ports=out_ports)
    layers = _sliced_layers(rng, block, (26, 16))
    idle = 0
    for (w, mask, x), (y, cycles, polled) in zip(layers, _simulate(dut, layers), strict=True):
        bcr = encode_bcr(w, block, mask)
        np.testing.assert_array_equal(y, linear(w, x, weight_bits=8, act_bits=8))
        assert cycles == polled == bcr_cycles(bcr, P, slices)
        idle += bcr.block_count > 0 and 0 in pack_bcr(bcr, P, slices).slice_blocks
    assert idle >= 2     # some runs leave a slice without blocks


@pytest.mark.parametrize("slices", [1, 2])
def test_raw_outputs_leave_stale_words_and_flag_written_rows(slices):
    """With raw_outputs a port returns the word as stored and out_written beside it: a block
    row emptied since the previous run reads that run's word with the bit clear (one slice;
    zero with several), and word-if-written is the golden output."""
    rng = np.random.default_rng(31)
    P, block, shape = 3, (6, 5), (26, 16)
    dut = BCRMatVec(P, block=block, max_rows=26, max_cols=16, slices=slices, out_ports=2,
                    raw_outputs=True)
    assert dut.parameters()["raw_outputs"] is True
    assert "out_written1" in dut.signature.members
    full, fmask = bcr_layer(rng, shape, block, 1.0, 1.0, full=True)
    holes = full.copy()
    holes[block[0]:3 * block[0]] = 0            # block rows 1 and 2 now empty
    layers = [(full, fmask, rng.integers(-128, 128, 16)),
              (holes, fmask & (holes != 0), rng.integers(-128, 128, 16))]
    log = []
    for (w, mask, x), (y, cycles, _) in zip(layers, _simulate(dut, layers, log), strict=True):
        np.testing.assert_array_equal(y, linear(w, x, weight_bits=8, act_bits=8))
        assert cycles == bcr_cycles(encode_bcr(w, block, mask), P, slices)
    (words0, bits0), (words1, bits1) = log
    assert bits0 == [1] * 5 and bits1 == [1, 0, 0, 1, 1]
    for b in (1, 2):
        assert words1[b] == (words0[b] if slices == 1 else 0)
        assert words0[b] != 0


def test_two_slices_halve_the_cycles_of_8_kept_rows_per_block():
    # 8 of 16 rows kept per 16x16 block: 16 lanes gain nothing over 8, two slices of 8 do.
    rng = np.random.default_rng(1)
    w, mask = exact_bcr_layer(rng, (256, 92), (16, 16), 8, 8)
    bcr = encode_bcr(w, (16, 16), mask)
    one, two, four = (bcr_cycles(bcr, 8, s) for s in (1, 2, 4))
    assert bcr_cycles(bcr, 16) == one
    assert (two - PIPELINE_LATENCY) * 2 == one - PIPELINE_LATENCY
    assert (four - PIPELINE_LATENCY) * 4 == one - PIPELINE_LATENCY
    # The RTL agrees on a smaller layer.
    w, mask = exact_bcr_layer(rng, (64, 40), (16, 16), 8, 8)
    x = rng.integers(-128, 128, 40)
    runs = [_simulate(BCRMatVec(8, block=(16, 16), max_rows=64, max_cols=40, slices=s),
                      [(w, mask, x)])[0] for s in (1, 2)]
    for y, _, _ in runs:
        np.testing.assert_array_equal(y, linear(w, x))
    assert (runs[1][1] - PIPELINE_LATENCY) * 2 == runs[0][1] - PIPELINE_LATENCY


# ------------------------------------------------------------------------ lint

ALLOWED_LINT = {"PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC"}


@pytest.mark.parametrize("slices", [1, 3])
def test_verilator_lint_only_documented_waivers(tmp_path, slices):
    import hw.bcr
    from hw.emit import emit_verilog
    from sim.toolchain import toolchain_environ

    v_path, j_path = emit_verilog(BCRMatVec(4, block=(6, 5), max_rows=20, max_cols=16,
                                            slices=slices), "bcr_lint", tmp_path)
    sidecar = json.loads(j_path.read_text())
    assert sidecar["parameters"]["engine"] == "bcr"
    assert [m["name"] for m in sidecar["memory_map"]] == [
        "meta", "col_index", "row_index", "values", "activations", "outputs"]
    assert {"blocks", "meta_wr__data", "out_rd__data"} <= {p["name"] for p in sidecar["ports"]}
    with toolchain_environ():
        proc = subprocess.run(["verilator", "--lint-only", "-Wall", str(v_path)],
                              capture_output=True, text=True, timeout=120)
    kinds = set(re.findall(r"%Warning-([A-Z0-9_]+):", proc.stderr))
    # A sliced build's slices are further modules in the file (DECLFILENAME).
    allowed = ALLOWED_LINT | ({"DECLFILENAME"} if slices > 1 else set())
    assert kinds <= allowed, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith("%Error") and "Exiting due to" not in ln]
    assert not errors, proc.stderr[-3000:]
    for kind in allowed:
        assert kind in hw.bcr.__doc__
