"""The BCR engine's emitted Verilog on Verilator and Icarus: bit-exact outputs and exact cycles.

Two builds: Verilator (lanes=4, block 6x5, 16-bit weights x 12-bit activations, 40x32) runs
every layer below (hand-made awkward layers plus a seeded sweep of 40 random ones) in one
simulator process; Icarus (lanes=3, block 4x8, 8/8 bits, 16x24) a
smaller set. Two more with slices: Verilator with 3 slices (the 40x32 build's parameters) and
Icarus with 2 (the 16x24 build's), each on layers that leave slices idle. One more on Verilator
(lanes=2, block 4x8, 16/12 bits, 24x48) has a value memory of two banks.
"""

import re

import numpy as np
import pytest

from hw.bcr import bcr_cycles
from ir.bcr import encode_bcr
from ir.golden import linear
from sim.bcr import exact_bcr_layer, run_bcr, run_bcr_batch
from sim.bcr import random_bcr_layer as bcr_layer


def _random_layers(rng, shape, block, bits, abits):
    alo, ahi = -(1 << (abits - 1)), (1 << (abits - 1)) - 1
    rows, cols = shape

    def x(batch=1):
        return rng.integers(alo, ahi + 1, (batch, cols))

    layers = []
    for name, rk, ck, full in [("density 1 (fully dense blocks)", 1.0, 1.0, False),
                               ("half rows, half cols", 0.5, 0.5, False),
                               ("sparse", 0.25, 0.3, False),
                               ("very sparse, many empty blocks", 0.1, 0.15, False),
                               ("rows only", 0.4, 1.0, False),
                               ("cols only", 1.0, 0.3, False),
                               ("extremes", 0.7, 0.6, True)]:
        w, mask = bcr_layer(rng, shape, block, rk, ck, bits=bits, full=full)
        layers.append((name, w, mask, x(2 if name == "sparse" else 1)))
    layers.append(("density 0", np.zeros(shape, dtype=np.int64), np.zeros(shape, bool), x()))
    return layers


def _cases_verilator():
    rng = np.random.default_rng(2024)
    block, wb, ab = (6, 5), 16, 12
    cases = _random_layers(rng, (40, 32), block, wb, ab)
    for shape in [(37, 29), (13, 7), (1, 1), (5, 4), (7, 6), (40, 1), (1, 32)]:
        w, mask = bcr_layer(rng, shape, block, 0.6, 0.6, bits=wb)
        cases.append((f"awkward {shape}", w, mask, rng.integers(-2048, 2048, (1, shape[1]))))
    # Exact per-block counts (as the BCR projection keeps): kept rows a multiple of the lanes.
    w, mask = exact_bcr_layer(rng, (40, 32), block, 4, 2, bits=wb)
    cases.append(("exact 4 rows x 2 cols per block", w, mask, rng.integers(-2048, 2048, (1, 32))))
    # Stored zeros inside kept sub-blocks; whole block rows and block columns empty.
    w = np.zeros((40, 32), dtype=np.int64)
    mask = np.zeros((40, 32), bool)
    mask[np.ix_([6, 8, 30], [10, 12, 31])] = True
    w[6, 10], w[30, 31] = -(1 << 15), (1 << 15) - 1
    cases.append(("stored zeros, empty block rows", w, mask, rng.integers(-2048, 2048, (1, 32))))
    # One kept entry per block, only in the last block column.
    w = np.zeros((40, 32), dtype=np.int64)
    w[np.arange(0, 40, 6), 31] = rng.integers(-(1 << 15), 1 << 15, 7)
    cases.append(("single entries", w, w != 0, rng.integers(-2048, 2048, (1, 32))))
    # The exact sum overflows int32 and wraps like ir.golden.linear.
    w = np.full((12, 32), -(1 << 15))
    cases.append(("min x min wraps", w, None, np.full((1, 32), -2048)))
    assert abs(int(w[0].astype(np.int64) @ np.full(32, -2048))) >= 1 << 31
    # A seeded sweep: random shapes up to the build's, random row and column keep rates.
    for n in range(40):
        shape = (int(rng.integers(1, 41)), int(rng.integers(1, 33)))
        rk, ck = rng.random(2)
        w, mask = bcr_layer(rng, shape, block, rk, ck, bits=wb)
        cases.append((f"sweep {n} {shape} keep {rk:.2f}/{ck:.2f}", w, mask,
                      rng.integers(-2048, 2048, (1, shape[1]))))
    return cases


def _check(runs, cases, block, lanes, weight_bits, act_bits, simulator, slices=1):
    assert len(runs) == len(cases)
    for run, (name, w, mask, x) in zip(runs, cases, strict=True):
        expected = linear(w, x, weight_bits=weight_bits, act_bits=act_bits)
        assert run.outputs.dtype == np.int32
        np.testing.assert_array_equal(run.outputs, expected,
                                      err_msg=f"{simulator}: case {name!r} {w.shape}")
        model = bcr_cycles(encode_bcr(w, block, mask), lanes, slices)
        assert run.cycles == [model] * len(x), f"{simulator}: case {name!r} {w.shape}"


def test_bcr_verilator_bit_exact_and_cycle_exact(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    cases = _cases_verilator()
    runs = run_bcr_batch([(w, m, x) for _, w, m, x in cases], (6, 5), 4, 16, 12, "verilator",
                         40, 32, cache_dir=sim_cache_dir)
    _check(runs, cases, (6, 5), 4, 16, 12, "verilator")
    # The same build through the one-call helper, one vector.
    _, w, mask, _ = cases[1]
    x = np.random.default_rng(3).integers(-2048, 2048, 32)
    y, cycles = run_bcr(w, mask, (6, 5), x, 4, 16, 12, "verilator", 40, 32,
                        cache_dir=sim_cache_dir)
    assert y.shape == (40,) and y.dtype == np.int32
    np.testing.assert_array_equal(y, linear(w, x))
    assert cycles == [bcr_cycles(encode_bcr(w, (6, 5), mask), 4)]


def test_bcr_banked_values_verilator_bit_exact_and_cycle_exact(sim_cache_dir, require_simulator):
    """2 lanes of 16-bit weights (32-bit value words, 512 to a block RAM) over 24x48 in 4x8
    blocks: 576 value words, so the value memory is two banks (hw.banked), and the fully kept
    layer's words span both."""
    from hw.banked import bank_depth
    from hw.bcr import bcr_items, check_bcr_parameters

    require_simulator("verilator")
    build = check_bcr_parameters(2, block=(4, 8), weight_bits=16, act_bits=12, max_rows=24,
                                 max_cols=48)
    assert build["max_value_words"] == 576 > bank_depth(32) == 512
    rng = np.random.default_rng(31)
    cases = _random_layers(rng, (24, 48), (4, 8), 16, 12)
    w, mask = bcr_layer(rng, (23, 45), (4, 8), 0.9, 0.9, bits=16)
    cases.append(("awkward (23, 45)", w, mask, rng.integers(-2048, 2048, (1, 45))))
    assert bcr_items(encode_bcr(cases[0][1], (4, 8), cases[0][2]), 2) > 512
    runs = run_bcr_batch([(w, m, x) for _, w, m, x in cases], (4, 8), 2, 16, 12, "verilator",
                         24, 48, cache_dir=sim_cache_dir)
    _check(runs, cases, (4, 8), 2, 16, 12, "verilator")


def test_bcr_icarus_bit_exact_and_cycle_exact(sim_cache_dir, require_simulator):
    require_simulator("icarus")
    rng = np.random.default_rng(99)
    block = (4, 8)
    cases = _random_layers(rng, (16, 24), block, 8, 8)
    w, mask = bcr_layer(rng, (11, 19), block, 0.5, 0.5)
    cases.append(("awkward (11, 19)", w, mask, rng.integers(-128, 128, (1, 19))))
    runs = run_bcr_batch([(w, m, x) for _, w, m, x in cases], block, 3, 8, 8, "icarus",
                         16, 24, cache_dir=sim_cache_dir)
    _check(runs, cases, block, 3, 8, 8, "icarus")


def _sliced_cases(rng, shape, block, bits, abits):
    """:func:`_random_layers` plus layers that leave slices idle or split unevenly."""
    rows, cols = shape
    br = block[0]
    amax = 1 << (abits - 1)
    cases = _random_layers(rng, shape, block, bits, abits)
    w, mask = bcr_layer(rng, shape, block, 0.8, 0.7, bits=bits)
    w[br:3 * br] = 0
    cases.append(("empty block rows 1-2", w, mask & (w != 0), rng.integers(-amax, amax, (1, cols))))
    w = np.zeros(shape, dtype=np.int64)
    w[rows - 1] = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), cols)
    cases.append(("last row only", w, w != 0, rng.integers(-amax, amax, (1, cols))))
    for sh in [(br - 1, cols), (rows - 3, cols - 1), (2 * br + 1, 3)]:
        w, mask = bcr_layer(rng, sh, block, 0.6, 0.6, bits=bits)
        cases.append((f"awkward {sh}", w, mask, rng.integers(-amax, amax, (1, sh[1]))))
    return cases


def test_bcr_slices_verilator_bit_exact_and_cycle_exact(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    cases = _sliced_cases(np.random.default_rng(7), (40, 32), (6, 5), 16, 12)
    runs = run_bcr_batch([(w, m, x) for _, w, m, x in cases], (6, 5), 4, 16, 12, "verilator",
                         40, 32, slices=3, cache_dir=sim_cache_dir)
    _check(runs, cases, (6, 5), 4, 16, 12, "verilator", slices=3)
    # Three slices are faster than one on the dense layer.
    _, w, mask, _ = cases[0]
    assert runs[0].cycles[0] < bcr_cycles(encode_bcr(w, (6, 5), mask), 4)


def test_bcr_slices_icarus_bit_exact_and_cycle_exact(sim_cache_dir, require_simulator):
    require_simulator("icarus")
    cases = _sliced_cases(np.random.default_rng(8), (16, 24), (4, 8), 8, 8)
    w, x = cases[0][1], cases[0][3][0]
    y, cycles = run_bcr(w, cases[0][2], (4, 8), x, 3, 8, 8, "icarus", 16, 24, slices=2,
                        cache_dir=sim_cache_dir)
    np.testing.assert_array_equal(y, linear(w, x))
    runs = run_bcr_batch([(w, m, x) for _, w, m, x in cases[1:]], (4, 8), 3, 8, 8, "icarus",
                         16, 24, slices=2, cache_dir=sim_cache_dir)
    _check(runs, cases[1:], (4, 8), 3, 8, 8, "icarus", slices=2)
    assert cycles == [bcr_cycles(encode_bcr(w, (4, 8), cases[0][2]), 3, 2)]


@pytest.mark.parametrize("args, exc, message", [
    ((np.full((2, 2), 128), None, (2, 2), np.zeros(2, dtype=int)), ValueError,
     "Job 0: weight matrix values must lie in [-128, 127] for 8 bits, found [128, 128]"),
    ((np.zeros((2, 3), dtype=int), None, (2, 2), np.zeros(2, dtype=int)), ValueError,
     "Job 0: activations of shape (2,) do not match 3 columns"),
    ((np.ones((2, 2), dtype=int), np.zeros((2, 2), bool), (2, 2), np.zeros(2, dtype=int)),
     ValueError, "Job 0: Weight is non-zero outside the mask at (0, 0)"),
    ((np.zeros((65, 3), dtype=int), None, (2, 2), np.zeros(3, dtype=int)), ValueError,
     "Job 0: shape (65, 3) exceeds the build's 64x64"),
    ((np.zeros((2, 2), dtype=int), None, (0, 2), np.zeros(2, dtype=int)), ValueError,
     "Block must be a pair of positive integers, not (0, 2)"),
])
def test_run_bcr_rejects_bad_input(args, exc, message):
    w, mask, block, x = args
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        run_bcr(w, mask, block, x, 4, 8, 8, "verilator", 64, 64)


def test_run_bcr_rejects_layers_larger_than_the_memories():
    w = np.ones((8, 8), dtype=int)
    with pytest.raises(ValueError, match=r"^Job 0: 4 blocks exceed the build's 3$"):
        run_bcr_batch([(w, None, np.zeros(8, dtype=int))], (4, 4), 4, 8, 8, "verilator", 8, 8,
                      max_blocks=3)
    with pytest.raises(ValueError, match=r"^Job 0: 16 value words exceed the build's 10$"):
        run_bcr_batch([(w, None, np.zeros(8, dtype=int))], (4, 4), 4, 8, 8, "verilator", 8, 8,
                      max_value_words=10)
    # With slices the depths are per slice: two block rows of 2 blocks x 4 words each.
    with pytest.raises(ValueError, match=r"^Job 0, slice 0: 2 blocks exceed the build's 1 per "
                                         r"slice$"):
        run_bcr_batch([(w, None, np.zeros(8, dtype=int))], (4, 4), 4, 8, 8, "verilator", 8, 8,
                      max_blocks=1, slices=2)
    with pytest.raises(ValueError, match=r"^Job 0, slice 0: 8 value words exceed the build's 7 "
                                         r"per slice$"):
        run_bcr_batch([(w, None, np.zeros(8, dtype=int))], (4, 4), 4, 8, 8, "verilator", 8, 8,
                      max_value_words=7, slices=2)
    with pytest.raises(ValueError, match=r"^Slices must be an integer between 1 and 16, "
                                         r"not 17$"):
        run_bcr_batch([(w, None, np.zeros(8, dtype=int))], (4, 4), 4, 8, 8, "verilator", 8, 8,
                      slices=17)
    with pytest.raises(ValueError, match=r"^Simulator must be one of 'verilator', 'icarus', "
                                         r"not 'xsim'$"):
        run_bcr(w, None, (4, 4), np.zeros(8, dtype=int), 4, 8, 8, "xsim")


def test_kept_shape_is_the_closest_block_shape_with_whole_lanes():
    from sim.bcr import kept_shape

    assert kept_shape((8, 16), 8, 0.9) == (8, 2)       # 16 of 128 kept: closest to 12.8
    assert kept_shape((8, 16), 4, 0.5) == (4, 16)      # 4x16 and 8x8 keep 64: fewer rows
    assert kept_shape((8, 16), 16, 0.5) == (8, 8)      # more lanes than rows: all rows
