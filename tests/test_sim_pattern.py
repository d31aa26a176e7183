"""The pattern-convolution engine's emitted Verilog on Verilator and Icarus: bit-exact outputs
(``ir.golden.conv2d``) and exact cycles (``hw.pattern.pattern_cycles``).

Verilator: one build (lanes=3, 4 kept weights, 8 patterns, 12/10 bits, up to 6 input channels,
10 filters, 11x9 inputs) runs every layer below in one simulator process; Icarus: a smaller build
and set.
"""

import re

import numpy as np
import pytest

from hw.pattern import pattern_cycles
from ir.golden import conv2d
from ir.pattern import candidate_patterns, encode_pattern
from sim.pattern import out_size, random_pattern_layer, run_pattern, run_pattern_batch


def _check(runs, jobs, lanes, wb, ab, simulator):
    assert len(runs) == len(jobs)
    for run, (name, (w, mask, lib, x, s, pd)) in zip(runs, jobs, strict=True):
        expected = conv2d(w, x, stride=s, padding=pd, weight_bits=wb, act_bits=ab)
        assert run.outputs.dtype == np.int32
        np.testing.assert_array_equal(run.outputs, expected, err_msg=f"{simulator}: {name}")
        ho, wo = out_size(x.shape[1], s, pd), out_size(x.shape[2], s, pd)
        model = pattern_cycles(encode_pattern(w, lib, mask), (ho, wo), lanes)
        assert run.cycles == model, f"{simulator}: {name}"


def _jobs(rng, lib, specs, wb, ab):
    jobs = []
    alo, ahi = -(1 << (ab - 1)), (1 << (ab - 1))
    for name, (o, c, h, wi), keep, s, pd, full in specs:
        w, mask = random_pattern_layer(rng, (o, c), lib, keep, bits=wb, full=full)
        x = rng.choice([alo, ahi - 1], (c, h, wi)) if full else rng.integers(alo, ahi, (c, h, wi))
        jobs.append((name, (w, mask, lib, x, s, pd)))
    return jobs


def test_pattern_verilator_bit_exact_and_cycle_exact(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    rng = np.random.default_rng(2026)
    lib = candidate_patterns(4)[rng.choice(56, 8, replace=False)]
    wb, ab, lanes = 12, 10, 3
    specs = [
        ("all kept, pad 1", (10, 6, 11, 9), 1.0, 1, 1, False),
        ("all kept, pad 0", (8, 6, 11, 9), 1.0, 1, 0, False),
        ("half kept", (10, 6, 11, 9), 0.5, 1, 1, False),
        ("sparse, awkward", (7, 5, 7, 5), 0.2, 1, 1, False),
        ("stride 2 pad 1", (10, 6, 11, 9), 0.6, 2, 1, False),
        ("stride 2 pad 0", (9, 4, 10, 7), 0.7, 2, 0, False),
        ("minimum input, pad 0", (3, 2, 3, 3), 1.0, 1, 0, False),
        ("1x1 input, pad 1", (5, 3, 1, 1), 0.8, 1, 1, False),
        ("extremes", (4, 6, 5, 6), 1.0, 1, 1, True),
        ("one filter", (1, 1, 4, 4), 1.0, 2, 1, False),
    ]
    for n in range(6):
        o, c = int(rng.integers(1, 11)), int(rng.integers(1, 7))
        h, wi = int(rng.integers(1, 12)), int(rng.integers(1, 10))
        s, pd = int(rng.integers(1, 3)), 1
        if min(h, wi) >= 3 and rng.random() < 0.5:
            pd = 0
        specs.append((f"sweep {n}", (o, c, h, wi), float(rng.random()), s, pd, False))
    jobs = _jobs(rng, lib, specs, wb, ab)
    # Fully pruned filters (connectivity pruning), and a layer with every kernel pruned.
    w, mask, _, x, s, pd = jobs[2][1]
    w, mask = w.copy(), mask.copy()
    w[[0, 4, 9]], mask[[0, 4, 9]] = 0, False
    jobs.append(("filters 0, 4, 9 fully pruned", (w, mask, lib, x, s, pd)))
    z = np.zeros((6, 3, 3, 3), dtype=np.int64)
    jobs.append(("every kernel pruned", (z, z != 0, lib, rng.integers(-512, 512, (3, 8, 8)),
                                         1, 1)))
    runs = run_pattern_batch([j for _, j in jobs], lanes, wb, ab, "verilator", library_size=8,
                             max_channels=6, max_filters=10, max_height=11, max_width=9,
                             cache_dir=sim_cache_dir)
    _check(runs, jobs, lanes, wb, ab, "verilator")
    assert runs[-1].cycles == 0 and not runs[-1].outputs.any()
    # The one-call helper on the same build.
    w, mask, lib_, x, s, pd = jobs[4][1]
    y, cycles = run_pattern(w, mask, lib_, x, lanes, wb, ab, s, pd, "verilator",
                            library_size=8, max_channels=6, max_filters=10, max_height=11,
                            max_width=9, cache_dir=sim_cache_dir)
    np.testing.assert_array_equal(y, conv2d(w, x, stride=s, padding=pd))
    assert cycles == runs[4].cycles


def test_pattern_icarus_bit_exact_and_cycle_exact(sim_cache_dir, require_simulator):
    require_simulator("icarus")
    rng = np.random.default_rng(7)
    lib = candidate_patterns(4)[:5]
    specs = [("half kept, pad 1", (5, 3, 6, 5), 0.5, 1, 1, False),
             ("all kept, stride 2, pad 0", (3, 2, 7, 6), 1.0, 2, 0, False)]
    jobs = _jobs(rng, lib, specs, 8, 8)
    runs = run_pattern_batch([j for _, j in jobs], 2, 8, 8, "icarus", cache_dir=sim_cache_dir)
    _check(runs, jobs, 2, 8, 8, "icarus")


@pytest.mark.parametrize("job, message", [
    ((np.full((2, 1, 3, 3), 128), None, candidate_patterns(4), np.zeros((1, 4, 4), int), 1, 1),
     "Job 0: weight values must lie in [-128, 127] for 8 bits, found [128, 128]"),
    ((np.zeros((2, 2, 3, 3), int), None, candidate_patterns(4), np.zeros((1, 4, 4), int), 1, 1),
     "Job 0: activations of shape (1, 4, 4) do not match 2 input channels"),
    ((np.zeros((2, 1, 3, 3), int), None, candidate_patterns(4), np.zeros((1, 4, 4), int), 3, 1),
     "Job 0: stride must be 1 or 2, not 3"),
    ((np.zeros((2, 1, 3, 3), int), None, candidate_patterns(4), np.zeros((1, 4, 4), int), 1, 2),
     "Job 0: padding must be 0 or 1, not 2"),
    ((np.zeros((2, 1, 3, 3), int), None, candidate_patterns(4), np.zeros((1, 2, 4), int), 1, 0),
     "Job 0: input (2, 4) with padding 0 is smaller than the 3x3 kernel"),
    ((np.ones((2, 1, 3, 3), int), None, candidate_patterns(4), np.zeros((1, 4, 4), int), 1, 1),
     "Job 0: Kernel (filter 0, channel 0) matches no library pattern"),
])
def test_run_pattern_rejects_bad_input(job, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        run_pattern_batch([job], 2, 8, 8, "verilator")
