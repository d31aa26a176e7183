"""The unstructured engine's emitted Verilog on Verilator and Icarus: bit-exact outputs and exact
cycles.

Verilator (lanes=4, 16-bit weights x 12-bit activations, 2-bit relative indices, 40x32) runs
every layer below (hand-made awkward layers, load-imbalance pairs and a seeded sweep of 40 random
ones, several with zero activations) in one build and one simulator process; Icarus (lanes=3,
8/8 bits, 3-bit indices, 16x24) a smaller set.
"""

import re

import numpy as np
import pytest

from hw.unstructured import unstructured_cycles
from ir.csr import encode_csc_lanes
from ir.golden import linear
from sim.unstructured import random_sparse_layer, run_unstructured, run_unstructured_batch

V_ARGS = dict(lanes=4, weight_bits=16, act_bits=12, index_bits=2)


def _x(rng, cols, batch, abits, zero_rate):
    alo, ahi = -(1 << (abits - 1)), (1 << (abits - 1)) - 1
    x = rng.integers(alo, ahi + 1, (batch, cols))
    x[rng.random((batch, cols)) < zero_rate] = 0
    return x


def _random_layers(rng, shape, bits, abits):
    layers = []
    for name, density, full in [("density 1", 1.0, False), ("half", 0.5, False),
                                ("sparse", 0.2, False), ("very sparse", 0.05, False),
                                ("extremes", 0.6, True)]:
        w = random_sparse_layer(rng, shape, density, bits=bits, full=full)
        layers.append((name, w, _x(rng, shape[1], 2 if name == "sparse" else 1, abits, 0.3)))
    layers.append(("density 0", np.zeros(shape, dtype=np.int64), _x(rng, shape[1], 1, abits, 0)))
    return layers


def _imbalance_pair(shape):
    """The same 10 non-zeros in column 0: all in lane 0's rows, or spread over the 4 lanes."""
    skew = np.zeros(shape, dtype=np.int64)
    skew[0:40:4, 0] = np.arange(1, 11)
    even = np.zeros(shape, dtype=np.int64)
    even[0:10, 0] = np.arange(1, 11)
    return skew, even


def _cases_verilator():
    rng = np.random.default_rng(2025)
    wb, ab = 16, 12
    cases = _random_layers(rng, (40, 32), wb, ab)
    for shape in [(37, 29), (13, 7), (1, 1), (3, 5), (5, 4), (40, 1), (1, 32)]:
        w = random_sparse_layer(rng, shape, 0.4, bits=wb)
        cases.append((f"awkward {shape}", w, _x(rng, shape[1], 1, ab, 0.2)))
    # Gaps far beyond the 2-bit index (padding), empty rows and columns, one empty lane.
    w = np.zeros((40, 32), dtype=np.int64)
    w[[0, 36, 39, 3, 20], [0, 0, 31, 31, 7]] = [-(1 << 15), (1 << 15) - 1, 5, -3, 9]
    cases.append(("padding, empty rows and columns", w, _x(rng, 32, 2, ab, 0)))
    # All activations zero: every column costs its head cycle only.
    cases.append(("zero activations", random_sparse_layer(rng, (40, 32), 0.5, bits=wb),
                  np.zeros((1, 32), dtype=np.int64)))
    # The exact sum overflows int32 and wraps like ir.golden.linear.
    w = np.full((12, 32), -(1 << 15))
    cases.append(("min x min wraps", w, np.full((1, 32), -2048)))
    assert abs(int(w[0].astype(np.int64) @ np.full(32, -2048))) >= 1 << 31
    skew, even = _imbalance_pair((40, 32))
    x = np.ones((1, 32), dtype=np.int64)
    cases += [("imbalanced", skew, x), ("balanced", even, x)]
    for n in range(40):
        shape = (int(rng.integers(1, 41)), int(rng.integers(1, 33)))
        density, zero_rate = rng.random(2)
        w = random_sparse_layer(rng, shape, density ** 2, bits=wb)
        cases.append((f"sweep {n} {shape} density {density ** 2:.2f}", w,
                      _x(rng, shape[1], 1, ab, zero_rate)))
    return cases


def _check(runs, cases, lanes, index_bits, weight_bits, act_bits, simulator):
    assert len(runs) == len(cases)
    padded = 0
    for run, (name, w, x) in zip(runs, cases, strict=True):
        expected = linear(w, x, weight_bits=weight_bits, act_bits=act_bits)
        assert run.outputs.dtype == np.int32
        np.testing.assert_array_equal(run.outputs, expected,
                                      err_msg=f"{simulator}: case {name!r} {w.shape}")
        csc = encode_csc_lanes(w, lanes, index_bits)
        padded += sum(m.padding_count for m in csc.lane_matrices)
        assert run.cycles == [unstructured_cycles(csc, v, lanes) for v in x], \
            f"{simulator}: case {name!r} {w.shape}"
    assert padded > 0   # the cases exercise padding entries


def test_unstructured_verilator_bit_exact_and_cycle_exact(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    cases = _cases_verilator()
    runs = run_unstructured_batch([(w, x) for _, w, x in cases], simulator="verilator",
                                  max_rows=40, max_cols=32, cache_dir=sim_cache_dir, **V_ARGS)
    _check(runs, cases, 4, 2, 16, 12, "verilator")
    by_name = {name: run for (name, _, _), run in zip(cases, runs, strict=True)}
    # Load imbalance shows in the RTL's cycles: 10 entries in one lane take 10 item cycles in
    # column 0, spread over 4 lanes ceil(10 / 4) = 3.
    assert by_name["imbalanced"].cycles[0] - by_name["balanced"].cycles[0] == 10 - 3
    assert by_name["zero activations"].cycles == [32 + 3]
    # The same build through the one-call helper, one vector.
    _, w, _ = cases[1]
    x = np.random.default_rng(3).integers(-2048, 2048, 32)
    y, cycles = run_unstructured(w, x, simulator="verilator", max_rows=40, max_cols=32,
                                 cache_dir=sim_cache_dir, **V_ARGS)
    assert y.shape == (40,) and y.dtype == np.int32
    np.testing.assert_array_equal(y, linear(w, x))
    assert cycles == [unstructured_cycles(encode_csc_lanes(w, 4, 2), x, 4)]


def test_unstructured_icarus_bit_exact_and_cycle_exact(sim_cache_dir, require_simulator):
    require_simulator("icarus")
    rng = np.random.default_rng(99)
    cases = _random_layers(rng, (16, 24), 8, 8)
    w = random_sparse_layer(rng, (11, 19), 0.3)
    cases.append(("awkward (11, 19)", w, _x(rng, 19, 1, 8, 0.3)))
    runs = run_unstructured_batch([(w, x) for _, w, x in cases], 3, 8, 8, 1, "icarus", 16, 24,
                                  cache_dir=sim_cache_dir)
    _check(runs, cases, 3, 1, 8, 8, "icarus")


@pytest.mark.parametrize("args, exc, message", [
    ((np.full((2, 2), 128), np.zeros(2, dtype=int)), ValueError,
     "Job 0: weight matrix values must lie in [-128, 127] for 8 bits, found [128, 128]"),
    ((np.zeros((2, 3), dtype=int), np.zeros(2, dtype=int)), ValueError,
     "Job 0: activations of shape (2,) do not match 3 columns"),
    ((np.zeros((65, 3), dtype=int), np.zeros(3, dtype=int)), ValueError,
     "Job 0: shape (65, 3) exceeds the build's 64x64"),
    ((np.zeros((0, 3), dtype=int), np.zeros(3, dtype=int)), ValueError,
     "Job 0: weight matrix must not be empty, not of shape (0, 3)"),
])
def test_run_unstructured_rejects_bad_input(args, exc, message):
    w, x = args
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        run_unstructured(w, x, 4, 8, 8, 4, "verilator", 64, 64)


def test_run_unstructured_rejects_bad_parameters_and_full_memories():
    w = np.ones((8, 8), dtype=int)
    with pytest.raises(ValueError, match=r"^Job 0: 16 entries in one lane exceed the build's "
                                         r"10$"):
        run_unstructured_batch([(w, np.zeros(8, dtype=int))], 4, 8, 8, 4, "verilator", 8, 8,
                               max_entries=10)
    with pytest.raises(ValueError, match=r"^Index width must be an integer between 1 and 16, "
                                         r"not 0$"):
        run_unstructured(w, np.zeros(8, dtype=int), 4, 8, 8, 0)
    with pytest.raises(ValueError, match=r"^Simulator must be one of 'verilator', 'icarus', "
                                         r"not 'xsim'$"):
        run_unstructured(w, np.zeros(8, dtype=int), 4, 8, 8, 4, "xsim")
