"""The dense engine's emitted Verilog on Verilator and Icarus: bit-exact outputs and exact cycles.

Builds are shared: one Verilator and one Icarus build of (lanes=4, 8/8 bits, 64x64) and one
Verilator build of (lanes=3, 16/12 bits, 20x40); every simulator process runs many shapes.
"""

import re

import numpy as np
import pytest

from hw.dense import dense_cycles
from ir.golden import linear
from sim.dense import default_max_shape, run_dense, run_dense_batch


def _cases_8bit():
    rng = np.random.default_rng(2024)
    lo, hi = -128, 127

    def rnd(rows, cols, batch=1):
        return rng.integers(lo, hi + 1, (rows, cols)), rng.integers(lo, hi + 1, (batch, cols))

    alt = np.where(np.add.outer(np.arange(9), np.arange(64)) % 2 == 0, lo, hi)
    return [
        ("1x1", *rnd(1, 1)),
        ("rows<P", *rnd(3, 5)),
        ("rows=P", *rnd(4, 4)),
        ("rows not a multiple of P", *rnd(7, 13, 2)),
        ("max shape", *rnd(64, 64)),
        ("cols=max", *rnd(17, 64)),
        ("one column", *rnd(64, 1)),
        ("batch", *rnd(33, 50, 3)),
        ("all zero", np.zeros((8, 8), dtype=np.int64), rng.integers(lo, hi + 1, (1, 8))),
        ("zero activations", rng.integers(lo, hi + 1, (5, 9)), np.zeros((1, 9), dtype=np.int64)),
        ("min x min", np.full((64, 64), lo), np.full((1, 64), lo)),
        ("max x min", np.full((6, 64), hi), np.full((1, 64), lo)),
        ("max x max", np.full((5, 3), hi), np.full((1, 3), hi)),
        ("alternating extremes", alt, np.full((2, 64), lo) * np.array([[1], [0]])
         + np.full((2, 64), hi) * np.array([[0], [1]])),
    ]


def _cases_wide():
    # 16-bit weights x 12-bit activations: the extreme products times 40 columns overflow int32.
    rng = np.random.default_rng(7)
    wlo, whi, alo, ahi = -(1 << 15), (1 << 15) - 1, -(1 << 11), (1 << 11) - 1

    def rnd(rows, cols, batch=1):
        return (rng.integers(wlo, whi + 1, (rows, cols)),
                rng.integers(alo, ahi + 1, (batch, cols)))

    return [
        ("1x1", *rnd(1, 1)),
        ("rows<P", *rnd(2, 7)),
        ("cols=max", *rnd(3, 40)),
        ("max shape", *rnd(20, 40, 2)),
        ("odd shape", *rnd(19, 33)),
        ("one column", *rnd(4, 1)),
        ("min x min wraps", np.full((20, 40), wlo), np.full((1, 40), alo)),
        ("max x min wraps", np.full((7, 40), whi), np.full((1, 40), alo)),
        ("min x max", np.full((5, 40), wlo), np.full((1, 40), ahi)),
        ("all zero", np.zeros((6, 10), dtype=np.int64), rng.integers(alo, ahi + 1, (1, 10))),
    ]


def _check(runs, cases, lanes, weight_bits, act_bits, simulator):
    assert len(runs) == len(cases)
    for run, (name, w, x) in zip(runs, cases, strict=True):
        expected = linear(w, x, weight_bits=weight_bits, act_bits=act_bits)
        assert run.outputs.dtype == np.int32
        np.testing.assert_array_equal(run.outputs, expected,
                                      err_msg=f"{simulator}: case {name!r} {w.shape}")
        assert run.cycles == [dense_cycles(*w.shape, lanes)] * len(x), \
            f"{simulator}: case {name!r} {w.shape}"


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_dense_8bit_bit_exact(simulator, sim_cache_dir, require_simulator):
    require_simulator(simulator)
    cases = _cases_8bit()
    runs = run_dense_batch([(w, x) for _, w, x in cases], 4, 8, 8, simulator, 64, 64,
                           cache_dir=sim_cache_dir)
    _check(runs, cases, 4, 8, 8, simulator)


def test_dense_wide_wraps_like_golden(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    cases = _cases_wide()
    # The wrap cases really do overflow int32.
    assert abs(int(cases[6][1][0].astype(np.int64) @ cases[6][2][0])) >= 1 << 31
    runs = run_dense_batch([(w, x) for _, w, x in cases], 3, 16, 12, "verilator", 20, 40,
                           cache_dir=sim_cache_dir)
    _check(runs, cases, 3, 16, 12, "verilator")


def test_run_dense_shapes_of_results(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (10, 20))
    xs = rng.integers(-128, 128, (2, 20))
    y, cycles = run_dense(w, xs[0], 4, 8, 8, "verilator", 64, 64, cache_dir=sim_cache_dir)
    assert y.shape == (10,) and y.dtype == np.int32
    np.testing.assert_array_equal(y, linear(w, xs[0]))
    assert cycles == [dense_cycles(10, 20, 4)]
    ys, cycles = run_dense(w, xs, 4, 8, 8, "verilator", 64, 64, cache_dir=sim_cache_dir)
    assert ys.shape == (2, 10)
    np.testing.assert_array_equal(ys, linear(w, xs))
    assert cycles == [dense_cycles(10, 20, 4)] * 2


@pytest.mark.parametrize("args, exc, message", [
    ((np.full((2, 2), 128), np.zeros(2, dtype=int)), ValueError,
     "Job 0: weight matrix values must lie in [-128, 127] for 8 bits, found [128, 128]"),
    ((np.zeros((2, 2), dtype=int), np.full(2, -129)), ValueError,
     "Job 0: activations values must lie in [-128, 127] for 8 bits, found [-129, -129]"),
    ((np.zeros((2, 2)), np.zeros(2, dtype=int)), TypeError,
     "Job 0: weight matrix must have an integer dtype, not float64"),
    ((np.zeros((2, 3), dtype=int), np.zeros(2, dtype=int)), ValueError,
     "Job 0: activations of shape (2,) do not match 3 columns"),
    ((np.zeros((0, 3), dtype=int), np.zeros(3, dtype=int)), ValueError,
     "Job 0: weight matrix must not be empty, not of shape (0, 3)"),
    ((np.zeros((65, 3), dtype=int), np.zeros(3, dtype=int)), ValueError,
     "Job 0: shape (65, 3) exceeds the build's 64x64"),
    ((np.zeros(3, dtype=int), np.zeros(3, dtype=int)), ValueError,
     "Job 0: weight matrix must have 2 dimensions, not shape (3,)"),
])
def test_run_dense_rejects_bad_input(args, exc, message):
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        run_dense(*args, 4, 8, 8, "verilator", 64, 64)


def test_run_dense_rejects_bad_parameters():
    w, x = np.zeros((2, 2), dtype=int), np.zeros(2, dtype=int)
    with pytest.raises(ValueError, match=r"^Lanes must be a positive integer, not 0$"):
        run_dense(w, x, 0, 8, 8)
    with pytest.raises(ValueError, match=r"^Weight width must be an integer between 2 and 16, "
                                         r"not 1$"):
        run_dense(w, x, 4, 1, 8)
    with pytest.raises(ValueError, match=r"^Simulator must be one of 'verilator', 'icarus', "
                                         r"not 'xsim'$"):
        run_dense(w, x, 4, 8, 8, "xsim", 64, 64)


def test_default_max_shape():
    assert default_max_shape(5, 7, 4) == (8, 8)
    assert default_max_shape(1, 1, 16) == (16, 1)
    assert default_max_shape(256, 256, 16) == (256, 256)
    assert default_max_shape(257, 100, 4) == (512, 128)
