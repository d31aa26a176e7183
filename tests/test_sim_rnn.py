"""The LSTM and GRU engines' emitted Verilog on Verilator and Icarus: every step's h, the final
c and h equal ir.golden.lstm_step / gru_step iterated, bit for bit; cycles equal the models.

Two Verilator builds (8-bit config from scales, 4 lanes; a small 5/6-bit config with left-shift
rescales, 8 lanes) and one Icarus build of the small config; GRU: one Verilator and one Icarus build of the small
config; each simulator process runs many
random sequences (awkward shapes: hidden 1, hidden not a multiple of the units per row group,
input 1, one step, the maximum shape, no biases, extreme values that saturate c and h).
"""

import re

import numpy as np
import pytest

from hw.rnn import gru_cycles, lstm_cycles
from ir.golden import RNNQuantConfig
from sim.rnn import (
    GRUJob,
    LSTMJob,
    golden_gru_sequence,
    golden_sequence,
    random_gru_job,
    random_job,
    run_gru_batch,
    run_lstm,
    run_lstm_batch,
    saturating_job,
)

CFG8 = RNNQuantConfig.from_scales(0.02, 2**-6, lut_index_bits=8)
CFG_SMALL = RNNQuantConfig(multiplier=9000, shift=16, weight_bits=5, act_bits=8, act_frac=7,
                           gate_bits=3, lut_index_bits=6, lut_frac=4, cell_bits=9, cell_frac=2)
BUILDS = {"cfg8": (CFG8, 4, 8, 8, 4), "small": (CFG_SMALL, 8, 6, 6, 3)}


def _jobs(cfg, max_i, max_h, max_t, seed, count):
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1), (max_i, max_h, max_t), (1, max_h, 2), (max_i, 1, max_t), (2, 3, 1)]
    jobs = [random_job(rng, cfg, *s) for s in shapes]
    jobs.append(random_job(rng, cfg, 3, 3, 2, bias=False))
    jobs.append(random_job(rng, cfg, max_i, max_h, 2, extreme=True))
    while len(jobs) < count:
        s = (int(rng.integers(1, max_i + 1)), int(rng.integers(1, max_h + 1)),
             int(rng.integers(1, max_t + 1)))
        jobs.append(random_job(rng, cfg, *s, bias=bool(rng.integers(2)),
                               extreme=bool(rng.integers(4) == 0)))
    return jobs


def _check(jobs, runs, cfg, lanes, simulator):
    assert len(runs) == len(jobs)
    for n, (job, run) in enumerate(zip(jobs, runs, strict=True)):
        want_hs, want_c = golden_sequence(*job, cfg)
        what = f"{simulator}: job {n} shape {job[0].shape} hidden {len(job[1])}"
        assert run.h_seq.dtype == np.int32 and run.c.dtype == np.int32
        np.testing.assert_array_equal(run.h_seq, want_hs, err_msg=what)
        np.testing.assert_array_equal(run.c, want_c, err_msg=what)
        np.testing.assert_array_equal(run.h, want_hs[-1], err_msg=what)
        assert run.cycles == lstm_cycles(job[0].shape[1], len(job[1]), len(job[0]), lanes), what


@pytest.mark.parametrize("build, simulator, count, seed", [
    ("cfg8", "verilator", 40, 11),
    ("small", "verilator", 40, 12),
    ("small", "icarus", 8, 13),
])
def test_lstm_rtl_bit_exact(build, simulator, count, seed, sim_cache_dir, require_simulator):
    require_simulator(simulator)
    cfg, lanes, max_i, max_h, max_t = BUILDS[build]
    jobs = _jobs(cfg, max_i, max_h, max_t, seed=seed, count=count)
    if build == "cfg8":  # sigmoid reaches 1.0 in this config: c saturates at both rails
        jobs[-2:] = [saturating_job(cfg, 3, 4, 2, 1), saturating_job(cfg, 2, 5, 1, -1)]
        cm = (1 << (cfg.cell_bits - 1)) - 1
        assert all((abs(golden_sequence(*j, cfg)[1]) == cm).all() for j in jobs[-2:])
    runs = run_lstm_batch([LSTMJob(*j) for j in jobs], cfg, lanes, simulator, max_i, max_h,
                          max_t, cache_dir=sim_cache_dir)
    _check(jobs, runs, cfg, lanes, simulator)


@pytest.mark.parametrize("build, simulator, count, seed", [
    ("small", "verilator", 30, 21),
    ("small", "icarus", 5, 22),
])
def test_gru_rtl_bit_exact(build, simulator, count, seed, sim_cache_dir, require_simulator):
    require_simulator(simulator)
    cfg, lanes, max_i, max_h, max_t = BUILDS[build]
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1), (max_i, max_h, max_t), (1, max_h, 2), (max_i, 1, max_t), (2, 3, 1)]
    jobs = [random_gru_job(rng, cfg, *sh) for sh in shapes]
    jobs.append(random_gru_job(rng, cfg, 3, 3, 2, bias=False))
    jobs.append(random_gru_job(rng, cfg, max_i, max_h, 2, extreme=True))
    while len(jobs) < count:
        sh = (int(rng.integers(1, max_i + 1)), int(rng.integers(1, max_h + 1)),
              int(rng.integers(1, max_t + 1)))
        jobs.append(random_gru_job(rng, cfg, *sh, bias=bool(rng.integers(2)),
                                   extreme=bool(rng.integers(4) == 0)))
    jobs = jobs[:count]
    runs = run_gru_batch([GRUJob(*j) for j in jobs], cfg, lanes, simulator, max_i, max_h,
                         max_t, cache_dir=sim_cache_dir)
    for n, (job, run) in enumerate(zip(jobs, runs, strict=True)):
        want = golden_gru_sequence(*job, cfg)
        what = f"{simulator}: GRU job {n} shape {job[0].shape} hidden {len(job[1])}"
        np.testing.assert_array_equal(run.h_seq, want, err_msg=what)
        np.testing.assert_array_equal(run.h, want[-1], err_msg=what)
        assert run.cycles == gru_cycles(job[0].shape[1], len(job[1]), len(job[0]), lanes), what


def test_run_lstm_one_job(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    cfg, lanes, max_i, max_h, max_t = BUILDS["cfg8"]
    job = random_job(np.random.default_rng(5), cfg, 5, 7, 3)
    run = run_lstm(LSTMJob(*job), cfg, lanes, "verilator", max_i, max_h, max_t,
                   cache_dir=sim_cache_dir)
    _check([job], [run], cfg, lanes, "verilator")
    assert run.h_seq.shape == (3, 7) and run.c.shape == (7,)


Z = np.zeros


@pytest.mark.parametrize("job, exc, message", [
    (LSTMJob(Z((2, 3), int), Z(2, int), Z(2, int), Z((8, 3), int), Z((8, 2), int)), ValueError,
     "Job 0: steps 2, input 3, hidden 2 exceed the build's 1, 2, 2"),
    (LSTMJob(Z((1, 2), int), Z(2, int), Z(2, int), Z((8, 2), int), Z((8, 3), int)), ValueError,
     "Job 0: qweight_hh must have shape (8, 2), not (8, 3)"),
    (LSTMJob(Z((1, 2), int), Z(2, int), Z(2, int), Z((8, 2)), Z((8, 2), int)), TypeError,
     "Job 0: qweight_ih must have an integer dtype, not float64"),
    (LSTMJob(np.full((1, 2), 128), Z(2, int), Z(2, int), Z((8, 2), int), Z((8, 2), int)),
     ValueError, "Job 0: qx values must lie in [-128, 127] for 8 bits, found [128, 128]"),
    (LSTMJob(Z((0, 2), int), Z(2, int), Z(2, int), Z((8, 2), int), Z((8, 2), int)), ValueError,
     "Job 0: qx must have shape (steps, input) with both positive, not (0, 2)"),
])
def test_run_lstm_rejects_bad_input(job, exc, message):
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        run_lstm(job, CFG8, 4, "verilator", 2, 2, 1)


def test_run_lstm_rejects_bad_parameters():
    job = LSTMJob(Z((1, 1), int), Z(1, int), Z(1, int), Z((4, 1), int), Z((4, 1), int))
    with pytest.raises(ValueError, match=r"^Lanes must be a positive multiple of 4, not 2$"):
        run_lstm(job, CFG8, 2)
    with pytest.raises(ValueError, match=r"^Simulator must be one of 'verilator', 'icarus', "
                                         r"not 'xsim'$"):
        run_lstm(job, CFG8, 4, "xsim")
    with pytest.raises(ValueError, match=r"^At least one job is needed$"):
        run_lstm_batch([], CFG8)
    with pytest.raises(TypeError, match=r"^Job 0 must be a GRUJob, not LSTMJob$"):
        run_gru_batch([job], CFG8)


# ------------------------------------------------------------------ BCR gates
# One build per cell (8-bit config, 3 lanes: not a divisor of the 4x6 block rows; block 4x6:
# hidden sizes cross block rows and gates, inputs cross block columns) and one Icarus run.
BCR_BUILD = dict(lanes=3, max_input=9, max_hidden=7, max_steps=3, block=(4, 6))
# 6-row blocks: the element-wise stage reads the gate outputs through one cached port
# (hw.rnn gate_read "cached"); at hidden 18 all four gates start a word on the same units.
CACHED_BUILD = dict(lanes=3, max_input=9, max_hidden=18, max_steps=2, block=(6, 4))


def _bcr_jobs(cell, seed, count, b=BCR_BUILD):
    from sim.rnn import bcr_pruned

    cfg = CFG8
    rng = np.random.default_rng(seed)
    draw = random_job if cell == "lstm" else random_gru_job
    mi, mh, mt = b["max_input"], b["max_hidden"], b["max_steps"]
    shapes = [(1, 1, 1), (mi, mh, mt), (6, 4, 2), (7, 5, 2), (2, 3, 1)]
    while len(shapes) < count:
        shapes.append((int(rng.integers(1, mi + 1)), int(rng.integers(1, mh + 1)),
                       int(rng.integers(1, mt + 1))))
    jobs = []
    for n, s in enumerate(shapes[:count]):
        base = draw(rng, cfg, *s, bias=n % 3 != 1, extreme=n % 5 == 4)
        if n == 2:      # nothing kept: every gate is its bias
            jobs.append(bcr_pruned(rng, base, b["block"], 0.0, 0.0, bits=8))
        elif n == 3:    # everything kept
            jobs.append(bcr_pruned(rng, base, b["block"], 1.0, 1.0, bits=8))
        elif n % 2:     # exactly kr x kc per block, as the pruning projection keeps
            jobs.append(bcr_pruned(rng, base, b["block"], 0, 0, bits=8, exact=(2, 3)))
        else:
            jobs.append(bcr_pruned(rng, base, b["block"], 0.6, 0.5, bits=8))
    return jobs


def _check_bcr(cell, jobs, runs, simulator, b=BCR_BUILD):
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles

    assert len(runs) == len(jobs)
    for n, (job, run) in enumerate(zip(jobs, runs, strict=True)):
        plain = job[:-2]
        what = f"{simulator} {cell}-bcr: job {n} shape {job[0].shape} hidden {len(job[1])}"
        if cell == "lstm":
            want_hs, want_c = golden_sequence(*plain, CFG8)
            np.testing.assert_array_equal(run.c, want_c, err_msg=what)
        else:
            want_hs = golden_gru_sequence(*plain, CFG8)
        np.testing.assert_array_equal(run.h_seq, want_hs, err_msg=what)
        np.testing.assert_array_equal(run.h, want_hs[-1], err_msg=what)
        matrix = bcr_gate_matrix(cell, plain[-4], plain[-3], b["block"], job[-2], job[-1])
        model = rnn_bcr_cycles(matrix, job[0].shape[1], len(job[1]), len(job[0]), b["lanes"],
                               cell=cell)
        assert run.cycles == model, what


@pytest.mark.parametrize("cell, simulator, count, seed, b", [
    ("lstm", "verilator", 24, 31, BCR_BUILD),
    ("gru", "verilator", 16, 32, BCR_BUILD),
    ("lstm", "icarus", 3, 33, BCR_BUILD),
    ("lstm", "verilator", 10, 34, CACHED_BUILD),
], ids=["lstm-verilator", "gru-verilator", "lstm-icarus", "lstm-cached-verilator"])
def test_rnn_bcr_gates_rtl_bit_exact(cell, simulator, count, seed, b, sim_cache_dir,
                                     require_simulator):
    require_simulator(simulator)
    jobs = _bcr_jobs(cell, seed, count, b)
    job_type, run_batch = (LSTMJob, run_lstm_batch) if cell == "lstm" else (GRUJob,
                                                                            run_gru_batch)
    runs = run_batch([job_type(*j) for j in jobs], CFG8, b["lanes"], simulator,
                     b["max_input"], b["max_hidden"], b["max_steps"], gates="bcr",
                     block=b["block"], cache_dir=sim_cache_dir)
    _check_bcr(cell, jobs, runs, simulator, b)


def test_rnn_bcr_gates_on_pruning_masks(sim_cache_dir, require_simulator):
    """An nn.LSTM pruned by pruning.projections.bcr_mask (W_ih and W_hh separately, as the
    plan prunes RNN layers) runs on the BCR-gated engine bit-exactly."""
    import torch

    from pruning.projections import bcr_mask

    require_simulator("verilator")
    b = BCR_BUILD
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(7, 6)
    rng = np.random.default_rng(3)
    masks = [bcr_mask(w.detach(), b["block"], 0.5, 0.5).numpy()
             for w in (lstm.weight_ih_l0, lstm.weight_hh_l0)]
    qw = [np.where(m, np.clip(np.rint(w.detach().numpy() / 0.004), -127, 127), 0).astype(
        np.int64) for w, m in zip((lstm.weight_ih_l0, lstm.weight_hh_l0), masks, strict=True)]
    x, h, c = random_job(rng, CFG8, 7, 6, 3)[:3]
    job = (x, h, c, qw[0], qw[1], None, None, masks[0], masks[1])
    run = run_lstm(LSTMJob(*job), CFG8, b["lanes"], "verilator", b["max_input"],
                   b["max_hidden"], b["max_steps"], gates="bcr", block=b["block"],
                   cache_dir=sim_cache_dir)
    _check_bcr("lstm", [job], [run], "verilator")


# ------------------------------------------------------------------ BCR gates on slices
def test_rnn_bcr_gates_on_slices_verilator(sim_cache_dir, require_simulator):
    """One Verilator build with 3 slices (the BCR build's parameters): LSTM jobs bit-exact and
    cycle-exact, among them the maximum shape (fewer cycles than the one-slice model), one
    hidden unit (one block row: two slices idle) and nothing kept (every slice idle)."""
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles
    from sim.rnn import rnn_mismatches

    require_simulator("verilator")
    b = BCR_BUILD
    jobs = _bcr_jobs("lstm", 34, 8)
    runs = run_lstm_batch([LSTMJob(*j) for j in jobs], CFG8, b["lanes"], "verilator",
                          b["max_input"], b["max_hidden"], b["max_steps"], gates="bcr",
                          block=b["block"], slices=3, cache_dir=sim_cache_dir)
    assert rnn_mismatches("lstm", jobs, runs, CFG8, b["lanes"], gates="bcr", block=b["block"],
                          slices=3) == []
    big = jobs[1]
    one = rnn_bcr_cycles(bcr_gate_matrix("lstm", big[3], big[4], b["block"], *big[-2:]),
                         b["max_input"], b["max_hidden"], b["max_steps"], b["lanes"])
    assert runs[1].cycles < one


def test_run_rnn_bcr_checks_each_slice_fits():
    """The memory depths are per slice: a job must fit every slice's bank."""
    from sim.rnn import bcr_pruned

    rng = np.random.default_rng(0)
    job = GRUJob(*bcr_pruned(rng, random_gru_job(rng, CFG8, 4, 4, 1), (4, 4), 1.0, 1.0,
                             bits=8))
    # 4 block rows: r and z of 2 blocks (W_ih | W_hh), n_x and n_h of 1; 1 group x 4 columns
    # each; 2 slices split them (r, z) and (n_x, n_h)
    with pytest.raises(ValueError, match=r"^Job 0, slice 0: 4 blocks exceed the build's 3 "
                                         r"per slice$"):
        run_gru_batch([job], CFG8, 4, "verilator", 4, 4, 1, gates="bcr", block=(4, 4),
                      max_blocks=3, slices=2)
    with pytest.raises(ValueError, match=r"^Job 0, slice 0: 16 value words exceed the build's "
                                         r"15 per slice$"):
        run_gru_batch([job], CFG8, 4, "verilator", 4, 4, 1, gates="bcr", block=(4, 4),
                      max_value_words=15, slices=2)
    with pytest.raises(ValueError, match=r"^Job 0: 6 blocks exceed the build's 5$"):
        run_gru_batch([job], CFG8, 4, "verilator", 4, 4, 1, gates="bcr", block=(4, 4),
                      max_blocks=5)
    with pytest.raises(ValueError, match=r"^Slices are for BCR gates only, not dense gates$"):
        run_gru_batch([job], CFG8, 4, slices=2)
