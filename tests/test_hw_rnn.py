"""hw.rnn: parameter validation, cycle model, layouts, and bit-exact runs in amaranth.sim."""

import re
import subprocess

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.dense import dense_cycles, pack_weights
from hw.rnn import (
    GRUEngine,
    LSTMEngine,
    RNNEngine,
    check_lstm_parameters,
    gru_bias_words,
    gru_cycles,
    gru_weight_matrix,
    lstm_bias_words,
    lstm_cycles,
    lstm_weight_matrix,
)
from ir.golden import RNNQuantConfig
from sim.rnn import (
    golden_gru_sequence,
    golden_sequence,
    random_gru_job,
    random_job,
    saturating_job,
)

CFG8 = RNNQuantConfig.from_scales(0.02, 2**-6)
CFG_SMALL = RNNQuantConfig(multiplier=300, shift=10, weight_bits=5, act_bits=6, act_frac=3,
                           gate_bits=6, lut_index_bits=7, lut_frac=3, cell_bits=11, cell_frac=7)
# cell_frac < lut_frac (tanh(c) index by left shift) and 2*G < act_frac (h by left shift).
# Wide ROM input range (sigmoid reaches exactly 1.0) and a narrow h format: h and c saturate.
CFG_SAT = RNNQuantConfig(multiplier=16384, shift=14, weight_bits=4, act_bits=4, act_frac=3,
                         gate_bits=8, lut_index_bits=8, lut_frac=2, cell_bits=8, cell_frac=4)
CFG_LEFT = RNNQuantConfig(multiplier=9000, shift=16, weight_bits=4, act_bits=8, act_frac=7,
                          gate_bits=3, lut_index_bits=6, lut_frac=4, cell_bits=6, cell_frac=2)


def run_amaranth(cfg, lanes, jobs, max_input, max_hidden, max_steps, cell="lstm"):
    lstm = cell == "lstm"
    dut = RNNEngine(cfg, cell=cell, lanes=lanes, max_input=max_input, max_hidden=max_hidden,
                    max_steps=max_steps)
    results = []

    async def tb(ctx):
        async def wr(port, values):
            for addr, v in enumerate(values):
                ctx.set(port.addr, addr)
                ctx.set(port.data, v)
                ctx.set(port.en, 1)
                await ctx.tick()
            ctx.set(port.en, 0)

        async def rd(port, count):
            ctx.set(port.en, 1)
            out = []
            for addr in range(count):
                ctx.set(port.addr, addr)
                await ctx.tick()
                out.append(ctx.get(port.data))
            return np.array(out, dtype=np.int64)

        for job in jobs:
            x, h, w_ih, w_hh, b_ih, b_hh = job[:2] + job[-4:]
            steps, isz = x.shape
            hsz = len(h)
            matrix = (lstm_weight_matrix if lstm else gru_weight_matrix)(w_ih, w_hh)
            bias = (lstm_bias_words if lstm else gru_bias_words)(b_ih, b_hh, hsz)
            await wr(dut.w_wr, [[int(v) for v in r] for r in pack_weights(matrix, lanes)])
            await wr(dut.b_wr, [[int(v) for v in r] for r in bias])
            await wr(dut.x_wr, [int(v) for v in x.reshape(-1)])
            await wr(dut.h_wr, [int(v) for v in h])
            if lstm:
                await wr(dut.c_wr, [int(v) for v in job[2]])
            ctx.set(dut.input_size, isz)
            ctx.set(dut.hidden_size, hsz)
            ctx.set(dut.steps, steps)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            n = 0
            while not ctx.get(dut.done):
                await ctx.tick()
                n += 1
                assert n < 100_000
            cycles = ctx.get(dut.cycles)
            hseq = await rd(dut.hseq_rd, steps * hsz)
            c = await rd(dut.c_rd, hsz) if lstm else None
            results.append((hseq, c, await rd(dut.h_rd, hsz), cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return results


@pytest.mark.parametrize("cfg, lanes, shapes", [
    (CFG8, 4, [(3, 5, 2), (1, 1, 1), (4, 8, 1), (2, 3, 3)]),
    (CFG_SMALL, 8, [(3, 5, 2), (1, 2, 1), (4, 4, 2)]),
    (CFG_LEFT, 4, [(2, 3, 2), (4, 2, 3)]),
])
def test_lstm_amaranth_sim_bit_exact(cfg, lanes, shapes):
    rng = np.random.default_rng(lanes + cfg.act_bits)
    jobs = [random_job(rng, cfg, *s, bias=k % 2 == 0) for k, s in enumerate(shapes)]
    jobs.append(random_job(rng, cfg, 2, 3, 2, extreme=True))
    results = run_amaranth(cfg, lanes, jobs, 4, 8, 3)
    for job, (hseq, c, h, cycles) in zip(jobs, results, strict=True):
        x, h0 = job[0], job[1]
        want_hs, want_c = golden_sequence(*job, cfg)
        np.testing.assert_array_equal(hseq.reshape(want_hs.shape), want_hs)
        np.testing.assert_array_equal(c, want_c)
        np.testing.assert_array_equal(h, want_hs[-1])
        assert cycles == lstm_cycles(x.shape[1], len(h0), len(x), lanes)


@pytest.mark.parametrize("cfg, lanes", [(CFG8, 4), (CFG_SMALL, 8), (CFG_LEFT, 4)])
def test_gru_amaranth_sim_bit_exact(cfg, lanes):
    rng = np.random.default_rng(lanes + 3 * cfg.act_bits)
    shapes = [(3, 5, 2), (1, 1, 1), (4, 8, 1), (2, 3, 3)]
    jobs = [random_gru_job(rng, cfg, *s, bias=k % 2 == 0) for k, s in enumerate(shapes)]
    jobs.append(random_gru_job(rng, cfg, 2, 3, 2, extreme=True))
    results = run_amaranth(cfg, lanes, jobs, 4, 8, 3, cell="gru")
    for job, (hseq, _, h, cycles) in zip(jobs, results, strict=True):
        want_hs = golden_gru_sequence(*job, cfg)
        np.testing.assert_array_equal(hseq.reshape(want_hs.shape), want_hs)
        np.testing.assert_array_equal(h, want_hs[-1])
        assert cycles == gru_cycles(job[0].shape[1], len(job[1]), len(job[0]), lanes)


def test_gru_layout_and_ports():
    w_ih = np.arange(6 * 3).reshape(6, 3)
    w_hh = 100 + np.arange(6 * 2).reshape(6, 2)
    w = gru_weight_matrix(w_ih, w_hh)
    assert w.shape == (8, 5)
    for j in range(2):
        np.testing.assert_array_equal(w[4 * j], np.r_[w_ih[j], w_hh[j]])
        np.testing.assert_array_equal(w[4 * j + 1], np.r_[w_ih[2 + j], w_hh[2 + j]])
        np.testing.assert_array_equal(w[4 * j + 2], np.r_[w_ih[4 + j], 0, 0])
        np.testing.assert_array_equal(w[4 * j + 3], np.r_[0, 0, 0, w_hh[4 + j]])
    b = gru_bias_words(np.array([2**31 - 1, 1, 2, 3, 4, 5]), np.array([1, 1, 1, 1, 1, 7]), 2)
    assert b.tolist() == [[-(2**31), 3, 4, 1], [2, 4, 5, 7]]
    e = GRUEngine(CFG8, lanes=4, max_input=2, max_hidden=2, max_steps=1)
    assert "c_wr" not in e.signature.members and "c_rd" not in e.signature.members
    assert [mm["name"] for mm in e.memory_map()] == ["weights", "bias", "x_seq", "h", "h_seq"]
    assert e.parameters()["engine"] == "gru"
    Fragment.get(e, None)


def test_rnn_engine_rejects_bad_cell():
    with pytest.raises(ValueError, match=r"^Cell must be 'lstm' or 'gru', not 'rnn'$"):
        RNNEngine(CFG8, cell="rnn")


def test_lstm_zero_steps_done_at_once():
    dut = LSTMEngine(CFG_SMALL, lanes=4, max_input=2, max_hidden=2, max_steps=2)
    seen = {}

    async def tb(ctx):
        ctx.set(dut.input_size, 1)
        ctx.set(dut.hidden_size, 2)
        ctx.set(dut.steps, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        seen["done"], seen["busy"], seen["cycles"] = (ctx.get(dut.done), ctx.get(dut.busy),
                                                      ctx.get(dut.cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert seen == {"done": 1, "busy": 0, "cycles": 0}


def test_lstm_cycles_formula():
    assert lstm_cycles(3, 5, 2, 4) == 2 * (3 + 5 + 3 + dense_cycles(20, 8, 4) + 30)
    assert lstm_cycles(3, 5, 2, 4) == 166
    assert lstm_cycles(1, 1, 1, 8) == 1 + 1 + 3 + dense_cycles(4, 2, 8) + 6
    assert lstm_cycles(4, 0, 3, 4) == 0
    assert lstm_cycles(4, 3, 0, 4) == 0


def test_weight_and_bias_layout():
    w_ih = np.arange(8 * 3).reshape(8, 3)
    w_hh = 100 + np.arange(8 * 2).reshape(8, 2)
    w = lstm_weight_matrix(w_ih, w_hh)
    assert w.shape == (8, 5)
    # row 4j + k = gate k of unit j
    for j in range(2):
        for k in range(4):
            np.testing.assert_array_equal(w[4 * j + k], np.r_[w_ih[2 * k + j], w_hh[2 * k + j]])
    b = lstm_bias_words(np.array([2**31 - 1, 0, 0, 0, 0, 0, 0, 5]), np.array([1] * 8), 2)
    assert b.tolist() == [[-(2**31), 1, 1, 1], [1, 1, 1, 6]]
    assert lstm_bias_words(None, None, 1).tolist() == [[0, 0, 0, 0]]


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"config": 3}, TypeError, "Config must be an RNNQuantConfig, not int"),
    ({"lanes": 6}, ValueError, "Lanes must be a positive multiple of 4, not 6"),
    ({"lanes": 0}, ValueError, "Lanes must be a positive integer, not 0"),
    ({"lanes": True}, TypeError, "Lanes must be a positive integer, not True"),
    ({"max_input": 0}, ValueError, "Maximum input size must be a positive integer, not 0"),
    ({"max_hidden": 2.0}, TypeError, "Maximum hidden size must be a positive integer, not 2.0"),
    ({"max_steps": -1}, ValueError, "Maximum steps must be a positive integer, not -1"),
    ({"max_input": 4000, "max_hidden": 4000, "max_steps": 4000}, ValueError,
     "Maximum shape takes 128128020000 cycles, more than the 32-bit cycle counter holds"),
])
def test_lstm_parameter_validation(kwargs, exc, message):
    args = {"config": CFG8, "lanes": 4, "max_input": 4, "max_hidden": 4, "max_steps": 2}
    args.update(kwargs)
    cfg = args.pop("config")
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        check_lstm_parameters(cfg, **args)
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        LSTMEngine(cfg, **args)


def test_lstm_parameters_and_memory_map():
    e = LSTMEngine(CFG8, lanes=8, max_input=5, max_hidden=3, max_steps=2)
    p = e.parameters()
    assert p["engine"] == "lstm" and p["lanes"] == 8 and p["config"]["multiplier"] == 20972
    names = [mm["name"] for mm in e.memory_map()]
    assert names == ["weights", "bias", "x_seq", "h", "c", "h_seq"]
    depths = {mm["name"]: mm["depth"] for mm in e.memory_map()}
    assert depths == {"weights": 2 * 8, "bias": 3, "x_seq": 10, "h": 3, "c": 3, "h_seq": 6}
    Fragment.get(e, None)  # elaborates (and marks the engine used)


def test_lstm_saturation_bit_exact():
    jobs = [saturating_job(CFG_SAT, 2, 3, 2, 1), saturating_job(CFG_SAT, 1, 2, 1, -1)]
    cm, am = (1 << (CFG_SAT.cell_bits - 1)) - 1, (1 << (CFG_SAT.act_bits - 1)) - 1
    for job, (hseq, c, h, cycles) in zip(jobs, run_amaranth(CFG_SAT, 4, jobs, 2, 3, 2),
                                         strict=True):
        want_hs, want_c = golden_sequence(*job, CFG_SAT)
        sign = int(np.sign(job[2][0]))
        assert (want_c == sign * cm).all() and (want_hs == sign * am).all()  # really saturates
        np.testing.assert_array_equal(hseq.reshape(want_hs.shape), want_hs)
        np.testing.assert_array_equal(c, want_c)
        np.testing.assert_array_equal(h, want_hs[-1])
        assert cycles == lstm_cycles(job[0].shape[1], len(job[1]), len(job[0]), 4)


ALLOWED_LINT = {"PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE",
                "DECLFILENAME"}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_verilator_lint_only_documented_waivers(cell, tmp_path):
    import hw.rnn
    from hw.emit import emit_verilog
    from sim.toolchain import toolchain_environ

    engine = RNNEngine(CFG_SMALL, cell=cell, lanes=8, max_input=3, max_hidden=5, max_steps=2)
    v_path, _ = emit_verilog(engine, f"{cell}_lint", tmp_path)
    with toolchain_environ():
        proc = subprocess.run(["verilator", "--lint-only", "-Wall", str(v_path)],
                              capture_output=True, text=True, timeout=120)
    kinds = set(re.findall(r"%Warning-([A-Z0-9_]+):", proc.stderr))
    assert kinds <= ALLOWED_LINT, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith("%Error") and "Exiting due to" not in ln]
    assert not errors, proc.stderr[-3000:]
    for kind in ALLOWED_LINT:
        assert kind in hw.rnn.__doc__
