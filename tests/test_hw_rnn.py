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

BCR_ARGS = {"lanes": 6, "gates": "bcr", "block": (8, 8)}  # validation cases of BCR gates


def run_amaranth(cfg, lanes, jobs, max_input, max_hidden, max_steps, cell="lstm",
                 gates="dense", block=None, slices=1, **bcr_kw):
    """Run jobs on the engine in amaranth.sim; return [(h_seq, c, h, cycles)]. With
    ``gates="bcr"`` each job tuple ends in ``mask_ih, mask_hh``; ``slices`` > 1 writes each
    slice's images into its bank and sets ``slice_blocks``."""
    from amaranth.hdl import Value

    from hw.bcr import pack_bcr, pack_fields
    from hw.dense import pack_words
    from hw.rnn import bcr_gate_matrix

    lstm, bcr = cell == "lstm", gates == "bcr"
    extra = {"gates": "bcr", "block": block, **bcr_kw} if bcr else {}
    if slices > 1:
        extra["slices"] = slices
    dut = RNNEngine(cfg, cell=cell, lanes=lanes, max_input=max_input, max_hidden=max_hidden,
                    max_steps=max_steps, **extra)
    results = []

    async def tb(ctx):
        async def wr(port, words, base=0):
            ctx.set(port.en, 1)
            for addr, w in enumerate(words):
                ctx.set(port.addr, base + addr)
                ctx.set(Value.cast(port.data), int(w))
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
            core = job[:-2] if bcr else job
            x, h, w_ih, w_hh, b_ih, b_hh = core[:2] + core[-4:]
            steps, isz = x.shape
            hsz = len(h)
            if bcr:
                wd, bits = dut.widths, dut._bcr_proto.bank_bits
                img = pack_bcr(bcr_gate_matrix(cell, w_ih, w_hh, block, *job[-2:]), lanes,
                               slices)
                for sl in range(slices):
                    bank = img.bank(sl)
                    await wr(dut.meta_wr, pack_fields(bank.meta, [
                        wd["block_row"], wd["block_col"], wd["groups"], wd["ncols"]]),
                        sl << bits["meta"])
                    await wr(dut.col_wr, pack_fields(bank.col_index, wd["col_index"]),
                             sl << bits["col"])
                    await wr(dut.row_wr, pack_fields(bank.row_index, wd["row_index"]),
                             sl << bits["row"])
                    await wr(dut.w_wr, pack_words(bank.values, cfg.weight_bits),
                             sl << bits["w"])
                ctx.set(dut.blocks, img.blocks)
                if slices > 1:
                    ctx.set(dut.slice_blocks, list(img.slice_blocks))
            else:
                matrix = (lstm_weight_matrix if lstm else gru_weight_matrix)(w_ih, w_hh)
                await wr(dut.w_wr, pack_words(pack_weights(matrix, lanes), cfg.weight_bits))
            bias = (lstm_bias_words if lstm else gru_bias_words)(b_ih, b_hh, hsz)
            await wr(dut.b_wr, pack_words(bias, 32))
            await wr(dut.x_wr, pack_words(x.reshape(-1, 1), cfg.act_bits))
            await wr(dut.h_wr, pack_words(np.asarray(h).reshape(-1, 1), cfg.act_bits))
            if lstm:
                await wr(dut.c_wr, pack_words(np.asarray(core[2]).reshape(-1, 1),
                                              cfg.cell_bits))
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
    assert e.parameters()["element_latency"] == 11     # the LSTM's is 10
    lstm = LSTMEngine(CFG8, lanes=4, max_input=2, max_hidden=2, max_steps=1)
    assert lstm.parameters()["element_latency"] == 10
    Fragment.get(e, None)
    Fragment.get(lstm, None)


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
    # copy I + H + 1 on the first step, I + 1 after; 2 around the gates; H + 10 element-wise
    assert lstm_cycles(3, 5, 2, 4) == (3 + 5 + 1) + (3 + 1) + 2 * (dense_cycles(20, 8, 4) + 2
                                                                  + 5 + 10)
    assert lstm_cycles(3, 5, 2, 4) == 133
    assert lstm_cycles(1, 1, 1, 8) == 1 + 1 + 1 + dense_cycles(4, 2, 8) + 2 + 1 + 10
    assert lstm_cycles(4, 0, 3, 4) == 0
    assert lstm_cycles(4, 3, 0, 4) == 0


def test_gru_cycles_formula_one_element_stage_more():
    # the GRU's element-wise stage is H + 11: one cycle a step more than the LSTM's
    from hw.rnn import element_latency, rnn_cycles, step_overhead_cycles

    assert (element_latency("lstm"), element_latency("gru")) == (10, 11)
    assert gru_cycles(3, 5, 2, 4) == lstm_cycles(3, 5, 2, 4) + 2 == 135
    assert gru_cycles(1, 1, 1, 8) == 1 + 1 + 1 + dense_cycles(4, 2, 8) + 2 + 1 + 11
    assert gru_cycles(4, 0, 3, 4) == gru_cycles(4, 3, 0, 4) == 0
    assert rnn_cycles("gru", 3, 5, 2, 4) == 135 and rnn_cycles("lstm", 3, 5, 2, 4) == 133
    assert step_overhead_cycles(3, 5, 2, "gru") == step_overhead_cycles(3, 5, 2) + 2
    with pytest.raises(ValueError, match=r"^Cell must be 'lstm' or 'gru', not 'rnn'$"):
        element_latency("rnn")


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
     "Maximum shape takes 128032068000 cycles, more than the 32-bit cycle counter holds"),
    ({**BCR_ARGS, "gates": "csr"}, ValueError, "Gates must be 'dense' or 'bcr', not 'csr'"),
    ({**BCR_ARGS, "gates": "dense", "block": (4, 4), "lanes": 8}, ValueError,
     "Block, maximum blocks and maximum value words are for BCR gates only, not dense gates"),
    ({**BCR_ARGS, "block": (0, 4)}, ValueError, "Block must be a pair of positive integers, not (0, 4)"),
    ({**BCR_ARGS, "block": 4}, TypeError, "Block must be a pair of positive integers, not 4"),
    ({**BCR_ARGS, "lanes": 0}, ValueError, "Lanes must be a positive integer, not 0"),
    ({**BCR_ARGS, "max_blocks": 100}, ValueError,
     "Maximum blocks must be an integer between 1 and 4, not 100"),
    ({**BCR_ARGS, "max_value_words": 0}, ValueError,
     "Maximum value words must be an integer between 1 and 64, not 0"),
    ({**BCR_ARGS, "max_input": 3000, "max_hidden": 3000, "max_steps": 600, "block": (64, 64)}, ValueError,
     "Maximum shape takes 7468272048 cycles, more than the 32-bit cycle counter holds"),
    # with slices the worst case is one slice's memories full: the same bound
    ({**BCR_ARGS, "max_input": 3000, "max_hidden": 3000, "max_steps": 600, "block": (64, 64),
      "slices": 4}, ValueError,
     "Maximum shape takes 7468272048 cycles, more than the 32-bit cycle counter holds"),
    ({"slices": 2}, ValueError, "Slices are for BCR gates only, not dense gates"),
    ({**BCR_ARGS, "slices": 17}, ValueError, "Slices must be an integer between 1 and 16, not 17"),
    ({**BCR_ARGS, "slices": 0}, ValueError, "Slices must be an integer between 1 and 16, not 0"),
    ({**BCR_ARGS, "slices": 2.0}, TypeError, "Slices must be an integer between 1 and 16, not 2.0"),
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


# Every bit of the GRU's n_acc reaches h: tanh's address is n_acc itself (multiplier 1, shift
# 0) and h keeps (1 - z) * tanh(n) exactly (act_frac = 2 * gate_frac).
CFG_GRU_N = RNNQuantConfig(multiplier=1, shift=0, weight_bits=8, act_bits=16, act_frac=14,
                           gate_bits=8, lut_index_bits=12, lut_frac=6, cell_bits=16,
                           cell_frac=11)


def test_gru_n_rounds_r_times_n_h_half_up():
    """n_acc = wrap32(a_n + round_shift(r * n_h, G)) one bit at a time: small inputs keep n_acc
    inside tanh's address range, where a floor instead of the rounding, or the next unit's a_n,
    changes h (both checked to fail)."""
    rng = np.random.default_rng(11)
    jobs = []
    for _ in range(4):      # one step each: h' is large in this format and would saturate
        x, h = rng.integers(-6, 7, (1, 4)), rng.integers(-6, 7, 4)
        w_ih, w_hh = rng.integers(-4, 5, (12, 4)), rng.integers(-4, 5, (12, 4))
        jobs.append((x, h, w_ih, w_hh, rng.integers(-40, 41, 12), rng.integers(-40, 41, 12)))
    results = run_amaranth(CFG_GRU_N, 4, jobs, 4, 4, 1, cell="gru")
    for job, (hseq, _, h, cycles) in zip(jobs, results, strict=True):
        want_hs = golden_gru_sequence(*job, CFG_GRU_N)
        np.testing.assert_array_equal(hseq.reshape(want_hs.shape), want_hs)
        np.testing.assert_array_equal(h, want_hs[-1])
        assert cycles == gru_cycles(job[0].shape[1], len(job[1]), len(job[0]), 4)


# c's rails (+-1.94) well inside tanh's range (+-8): tanh(c') must see c' saturated.
CFG_CSAT = RNNQuantConfig(multiplier=16384, shift=14, weight_bits=4, act_bits=8, act_frac=6,
                          gate_bits=8, lut_index_bits=8, lut_frac=4, cell_bits=6, cell_frac=4)


@pytest.mark.parametrize("cfg", [CFG_SAT, CFG_CSAT], ids=["h_rail", "c_rail"])
def test_lstm_saturation_bit_exact(cfg):
    """c and h driven to their rails. With CFG_CSAT, tanh's address taken from c' before
    its saturation changes h (checked to fail): the engine then reads it from c'."""
    from hw.rnn import _saturation_idle

    b = cfg.cell_frac - cfg.lut_frac
    assert not _saturation_idle(cfg.cell_bits, b, -(1 << (cfg.lut_index_bits - 1)),
                                (1 << (cfg.lut_index_bits - 1)) - 1)
    jobs = [saturating_job(cfg, 2, 3, 2, 1), saturating_job(cfg, 1, 2, 1, -1)]
    cm, am = (1 << (cfg.cell_bits - 1)) - 1, (1 << (cfg.act_bits - 1)) - 1
    for job, (hseq, c, h, cycles) in zip(jobs, run_amaranth(cfg, 4, jobs, 2, 3, 2),
                                         strict=True):
        want_hs, want_c = golden_sequence(*job, cfg)
        sign = int(np.sign(job[2][0]))
        assert (want_c == sign * cm).all()                          # really saturates
        assert cfg is CFG_CSAT or (want_hs == sign * am).all()
        np.testing.assert_array_equal(hseq.reshape(want_hs.shape), want_hs)
        np.testing.assert_array_equal(c, want_c)
        np.testing.assert_array_equal(h, want_hs[-1])
        assert cycles == lstm_cycles(job[0].shape[1], len(job[1]), len(job[0]), 4)


ALLOWED_LINT = {"PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE",
                "DECLFILENAME"}


@pytest.mark.parametrize("cell, gates", [("lstm", "dense"), ("gru", "dense"), ("lstm", "bcr"),
                                         ("gru", "bcr"), ("gru", "bcr-sliced")])
def test_verilator_lint_only_documented_waivers(cell, gates, tmp_path):
    import hw.rnn
    from hw.emit import emit_verilog
    from sim.toolchain import toolchain_environ

    extra = {"gates": "bcr", "block": (4, 3), "lanes": 3} if gates != "dense" else {"lanes": 8}
    if gates == "bcr-sliced":
        extra["slices"] = 3
    engine = RNNEngine(CFG_SMALL, cell=cell, max_input=3, max_hidden=5, max_steps=2, **extra)
    v_path, _ = emit_verilog(engine, f"{cell}_{gates}_lint", tmp_path)
    assert v_path.with_suffix(".json").is_file()
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


# ------------------------------------------------------------------ BCR gates
@pytest.mark.parametrize("cell, cfg, lanes, block", [
    ("lstm", CFG8, 4, (8, 16)),
    ("lstm", CFG_SMALL, 3, (3, 5)),
    ("gru", CFG8, 5, (4, 2)),
    ("gru", CFG_LEFT, 1, (1, 1)),
])
def test_bcr_gates_amaranth_sim_bit_exact(cell, cfg, lanes, block):
    from sim.rnn import bcr_pruned

    rng = np.random.default_rng(lanes + 7 * block[0])
    draw = random_job if cell == "lstm" else random_gru_job
    shapes = [(3, 5, 2), (1, 1, 1), (7, 9, 3), (4, 6, 2)]
    jobs = [bcr_pruned(rng, draw(rng, cfg, *s, bias=k % 2 == 0), block, 0.6, 0.5,
                       bits=cfg.weight_bits) for k, s in enumerate(shapes)]
    jobs.append(bcr_pruned(rng, draw(rng, cfg, 2, 3, 2), block, 0.0, 0.0, bits=cfg.weight_bits))
    results = run_amaranth(cfg, lanes, jobs, 7, 9, 3, cell=cell, gates="bcr", block=block)
    _check_bcr_results(cell, cfg, lanes, block, jobs, results)


def _check_bcr_results(cell, cfg, lanes, block, jobs, results, slices=1, gate_read="auto"):
    """BCR-gated runs of ``run_amaranth`` against the golden model and
    :func:`hw.rnn.rnn_bcr_cycles` on ``slices`` slices."""
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles

    for job, (hseq, c, h, cycles) in zip(jobs, results, strict=True):
        plain = job[:-2]
        model = rnn_bcr_cycles(bcr_gate_matrix(cell, *plain[-4:-2], block, *job[-2:]),
                               job[0].shape[1], len(job[1]), len(job[0]), lanes, slices,
                               gate_read, cell)
        if cell == "lstm":
            want_hs, want_c = golden_sequence(*plain, cfg)
            np.testing.assert_array_equal(c, want_c)
        else:
            want_hs = golden_gru_sequence(*plain, cfg)
        np.testing.assert_array_equal(hseq.reshape(want_hs.shape), want_hs)
        np.testing.assert_array_equal(h, want_hs[-1])
        assert cycles == model


@pytest.mark.parametrize("cell, cfg, lanes, block, slices, gate_read", [
    ("lstm", CFG8, 4, (6, 4), 1, "cached"),    # br = 6: the fewest rows the cache keeps up with
    ("gru", CFG8, 3, (6, 3), 2, "cached"),
    ("lstm", CFG_SMALL, 2, (7, 5), 2, "auto"),
    ("gru", CFG_LEFT, 5, (8, 4), 1, "ports"),
    ("lstm", CFG8, 4, (8, 16), 1, "ports"),
])
def test_bcr_gates_cached_and_ported_reads_amaranth_sim_bit_exact(cell, cfg, lanes, block,
                                                                    slices, gate_read):
    """Both ways of reading the gate engine's outputs, over hidden sizes that put every gate's
    first unit at lane 0 of a word (all four need a new word on the same cycle: the cache's
    worst case) or at other lanes, and over several words per gate."""
    from hw.rnn import GATE_FETCH_CYCLES, bcr_gate_matrix, resolve_gate_read, rnn_bcr_cycles
    from sim.rnn import bcr_pruned

    rng = np.random.default_rng(lanes + 13 * block[0] + slices)
    draw = random_job if cell == "lstm" else random_gru_job
    shapes = [(3, 3 * block[0], 2), (2, 2 * block[0] + 1, 1), (5, 3 * block[0] - 2, 2),
              (1, 1, 1)]
    jobs = [bcr_pruned(rng, draw(rng, cfg, *s, bias=k % 2 == 1), block, 0.5, 0.4,
                       bits=cfg.weight_bits) for k, s in enumerate(shapes)]
    max_hidden = 3 * block[0]
    results = run_amaranth(cfg, lanes, jobs, 5, max_hidden, 2, cell=cell, gates="bcr",
                           block=block, slices=slices, gate_read=gate_read)
    _check_bcr_results(cell, cfg, lanes, block, jobs, results, slices, gate_read)
    read = resolve_gate_read(gate_read, block)
    assert read == ("ports" if gate_read == "ports" else "cached")
    job = jobs[0]
    matrix = bcr_gate_matrix(cell, *job[-6:-4], block, *job[-2:])
    other = "ports" if read == "cached" else "cached"
    gap = (rnn_bcr_cycles(matrix, 3, 3 * block[0], 2, lanes, slices, read)
           - rnn_bcr_cycles(matrix, 3, 3 * block[0], 2, lanes, slices, other))
    assert gap == (2 if read == "cached" else -2) * GATE_FETCH_CYCLES


def test_gate_read_resolution_build_and_messages():
    from hw.rnn import resolve_gate_read

    assert resolve_gate_read("auto", (6, 1)) == "cached"
    assert resolve_gate_read("auto", (5, 16)) == "ports"
    assert resolve_gate_read("ports", (16, 16)) == "ports"
    with pytest.raises(ValueError, match=r"^Cached gate reads need blocks of at least 6 rows, "
                                         r"not 4$"):
        resolve_gate_read("cached", (4, 4))
    with pytest.raises(ValueError, match=r"^Gate read must be 'auto', 'ports' or 'cached', "
                                         r"not 'banked'$"):
        resolve_gate_read("banked", (8, 8))
    with pytest.raises(ValueError, match=r"^Gate read is for BCR gates only, not dense gates$"):
        LSTMEngine(CFG8, lanes=4, gate_read="cached")
    # One read port of the gate engine's outputs when cached, one per gate otherwise.
    for read, ports in (("cached", 1), ("ports", 4)):
        e = LSTMEngine(CFG8, lanes=4, max_input=4, max_hidden=16, max_steps=1, gates="bcr",
                       block=(8, 8), gate_read=read)
        assert e.parameters()["gate_read"] == read
        assert e._gate_engine().out_ports == ports
        Fragment.get(e, None)
    auto = GRUEngine(CFG8, lanes=4, max_input=4, max_hidden=8, max_steps=1, gates="bcr",
                     block=(4, 8))
    assert auto.parameters()["gate_read"] == "ports"


def test_bcr_gate_layout_and_matrix():
    from hw.bcr import bcr_items
    from hw.rnn import bcr_gate_layout, bcr_gate_matrix
    from ir.bcr import encode_bcr
    from sim.bcr import exact_bcr_layer

    assert bcr_gate_layout("lstm", 5, 3, (4, 4)) == {"rows": 12, "cols": 11, "h_col": 8,
                                                     "bases": (0, 3, 6, 9)}
    # GRU: W_hn rows at 2H + ceil(H / br) * br = 6 + 4, same offset in a block as in W_hh.
    assert bcr_gate_layout("gru", 8, 3, (4, 4)) == {"rows": 13, "cols": 11, "h_col": 8,
                                                    "bases": (0, 3, 6, 10)}
    rng = np.random.default_rng(0)
    for cell, g in (("lstm", 4), ("gru", 3)):
        w_ih, m_ih = exact_bcr_layer(rng, (g * 6, 5), (4, 4), 2, 3)
        w_hh, m_hh = exact_bcr_layer(rng, (g * 6, 6), (4, 4), 2, 3)
        s = bcr_gate_matrix(cell, w_ih, w_hh, (4, 4), m_ih, m_hh)
        dense = s.decode()
        lay = bcr_gate_layout(cell, 5, 6, (4, 4))
        assert dense.shape == (lay["rows"], lay["cols"])
        np.testing.assert_array_equal(dense[:g * 6, :5], w_ih)
        assert not dense[:, 5:lay["h_col"]].any()
        hc, last = lay["h_col"], lay["bases"][3]
        if cell == "lstm":
            np.testing.assert_array_equal(dense[:, hc:], w_hh)
        else:           # W_hr, W_hz beside W_ir, W_iz; W_hn alone from row `last`
            np.testing.assert_array_equal(dense[:12, hc:], w_hh[:12])
            assert not dense[12:last, hc:].any()
            np.testing.assert_array_equal(dense[last:, hc:], w_hh[12:])
        if cell == "lstm":   # every pruned block is one block of the stacked matrix
            parts = (encode_bcr(w_ih, (4, 4), m_ih), encode_bcr(w_hh, (4, 4), m_hh))
            assert s.block_count == sum(p.block_count for p in parts)
            assert bcr_items(s, 3) == sum(bcr_items(p, 3) for p in parts)
    with pytest.raises(ValueError, match=r"^mask_hh must have shape \(12, 3\), not \(3, 3\)$"):
        bcr_gate_matrix("lstm", np.zeros((12, 2), int), np.zeros((12, 3), int), (4, 4),
                        None, np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match=r"^qweight_hh must have shape \(3\*hidden, hidden\), "
                                         r"not \(8, 2\)$"):
        bcr_gate_matrix("gru", np.zeros((6, 2), int), np.zeros((8, 2), int), (4, 4))


def test_rnn_bcr_cycles_formula():
    from hw.bcr import bcr_cycles
    from hw.rnn import bcr_gate_matrix, bcr_setup_cycles, rnn_bcr_cycles

    assert bcr_setup_cycles(5, 3, (4, 4)) == 3
    assert bcr_setup_cycles(1, 9, (2, 16)) == 6
    w_ih = np.ones((12, 5), dtype=np.int64)
    w_hh = np.ones((12, 3), dtype=np.int64)
    s = bcr_gate_matrix("lstm", w_ih, w_hh, (4, 4))
    assert rnn_bcr_cycles(s, 5, 3, 2, 4) == 3 + (5 + 3 + 1) + (5 + 1) + 2 * (
        bcr_cycles(s, 4) + 2 + 3 + 10)
    assert rnn_bcr_cycles(s, 5, 3, 0, 4) == 0
    g = bcr_gate_matrix("gru", np.ones((9, 5), np.int64), np.ones((9, 3), np.int64), (4, 4))
    assert rnn_bcr_cycles(g, 5, 3, 2, 4, cell="gru") == 3 + (5 + 3 + 1) + (5 + 1) + 2 * (
        bcr_cycles(g, 4) + 2 + 3 + 11)      # the GRU's element-wise stage: H + 11
    s8 = bcr_gate_matrix("lstm", np.ones((32, 5), np.int64), np.ones((32, 8), np.int64), (8, 4))
    ported = rnn_bcr_cycles(s8, 5, 8, 3, 4, gate_read="ports")
    assert rnn_bcr_cycles(s8, 5, 8, 3, 4) == ported + 3 * 8     # auto: cached from 6 rows


def test_bcr_gates_parameters_and_memory_map():
    e = GRUEngine(CFG8, lanes=3, max_input=5, max_hidden=6, max_steps=2, gates="bcr",
                  block=(4, 4))
    p = e.parameters()
    assert p["gates"] == "bcr" and p["block"] == [4, 4] and p["lanes"] == 3
    assert (p["gate_rows"], p["gate_cols"]) == (3 * 6 + 8, 8 + 6)
    assert [mm["name"] for mm in e.memory_map()] == [
        "meta", "col_index", "row_index", "values", "bias", "x_seq", "h", "h_seq"]
    assert {"blocks", "meta_wr", "col_wr", "row_wr", "w_wr"} <= set(e.signature.members)
    assert "c_wr" not in e.signature.members
    Fragment.get(e, None)
    e = LSTMEngine(CFG8, lanes=4, max_input=2, max_hidden=2, max_steps=1, gates="bcr")
    assert e.parameters()["block"] == [8, 16]
    Fragment.get(e, None)


# ------------------------------------------------------------------ BCR gates on slices
@pytest.mark.parametrize("cell, cfg, lanes, block, slices", [
    ("lstm", CFG8, 3, (4, 6), 2),
    ("lstm", CFG_SMALL, 2, (3, 5), 3),
    ("gru", CFG8, 4, (4, 2), 2),
    ("gru", CFG_LEFT, 1, (2, 3), 3),
])
def test_bcr_gates_on_slices_amaranth_sim_bit_exact(cell, cfg, lanes, block, slices):
    """Sliced gate engines: outputs bit-exact, cycles equal to the model on ``slices`` (and,
    on the layers with more than one block row, fewer than on one slice). The jobs include
    one whose block rows are fewer than the slices and one with nothing kept (every slice
    idle)."""
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles
    from sim.rnn import bcr_pruned

    rng = np.random.default_rng(lanes + 11 * slices + block[0])
    draw = random_job if cell == "lstm" else random_gru_job
    shapes = [(3, 5, 2), (1, 1, 1), (7, 9, 2)]
    jobs = [bcr_pruned(rng, draw(rng, cfg, *s, bias=k % 2 == 0), block, 0.7, 0.6,
                       bits=cfg.weight_bits) for k, s in enumerate(shapes)]
    jobs.append(bcr_pruned(rng, draw(rng, cfg, 2, 3, 1), block, 0.0, 0.0, bits=cfg.weight_bits))
    results = run_amaranth(cfg, lanes, jobs, 7, 9, 2, cell=cell, gates="bcr", block=block,
                           slices=slices)
    _check_bcr_results(cell, cfg, lanes, block, jobs, results, slices)
    big = jobs[2]
    matrix = bcr_gate_matrix(cell, *big[-6:-4], block, *big[-2:])
    assert results[2][3] < rnn_bcr_cycles(matrix, 7, 9, 2, lanes, cell=cell)


def test_bcr_gates_on_slices_parameters_signature_and_memory_map():
    one = LSTMEngine(CFG8, lanes=4, max_input=5, max_hidden=6, max_steps=2, gates="bcr",
                     block=(4, 4), max_blocks=9, max_value_words=30)
    e = LSTMEngine(CFG8, lanes=4, max_input=5, max_hidden=6, max_steps=2, gates="bcr",
                   block=(4, 4), max_blocks=9, max_value_words=30, slices=3)
    assert "slices" not in one.parameters() and "slice_blocks" not in one.signature.members
    assert e.parameters() == {**one.parameters(), "slices": 3}
    assert check_lstm_parameters(CFG8, lanes=4, gates="bcr", slices=3)["slices"] == 3
    assert "slices" not in check_lstm_parameters(CFG8, lanes=4, gates="bcr", slices=1)
    members = e.signature.members
    assert members["slice_blocks"].shape.length == 3
    assert members["blocks"].shape == range(3 * 9 + 1)
    for port in ("meta_wr", "col_wr", "row_wr", "w_wr"):  # two more address bits: the bank
        width = members[port].signature.addr_width
        assert width == one.signature.members[port].signature.addr_width + 2
    mems = {mm["name"]: mm for mm in e.memory_map()}
    stride = {"meta": 16, "col_index": 64, "row_index": 16, "values": 32}
    for name, bank in stride.items():
        assert mems[name]["copies"] == 3 and mems[name]["bank_stride"] == bank
        assert mems[name]["layout"].startswith(f"slice s (of 3) at addresses s*{bank} + i")
        assert mems[name]["layout"].endswith("of hw.bcr.pack_bcr(hw.rnn.bcr_gate_matrix("
                                             "'lstm', W_ih, W_hh, block), 4, 3).bank(s)")
    assert [mm["name"] for mm in one.memory_map()] == list(mems)
    Fragment.get(one, None)
    Fragment.get(e, None)


def test_bcr_slices_halve_the_gate_cycles_of_a_trained_lstm_shape():
    """input 28, hidden 64, gates BCR-pruned in 16x16 blocks keeping 8 rows x 8 columns (as
    the trained LSTM): 8 lanes share the 8 kept rows of one block, so more lanes do nothing,
    while 2 slices take about half the gate cycles and 4 about a quarter."""
    from hw.bcr import bcr_cycles
    from hw.rnn import bcr_gate_matrix, rnn_bcr_cycles
    from sim.bcr import exact_bcr_layer

    rng = np.random.default_rng(0)
    w_ih, m_ih = exact_bcr_layer(rng, (4 * 64, 28), (16, 16), 8, 8)
    w_hh, m_hh = exact_bcr_layer(rng, (4 * 64, 64), (16, 16), 8, 8)
    s = bcr_gate_matrix("lstm", w_ih, w_hh, (16, 16), m_ih, m_hh)
    assert s.block_count == 16 * 6
    gates = {n: bcr_cycles(s, 8, n) for n in (1, 2, 4)}
    assert gates == {1: 96 * 8 + 6, 2: 48 * 8 + 6, 4: 24 * 8 + 6}
    assert bcr_cycles(s, 16) == gates[1]                  # more lanes: no gain
    assert gates[2] / gates[1] == pytest.approx(0.5, abs=0.01)
    steps = 4
    step = {n: (rnn_bcr_cycles(s, 28, 64, steps, 8, n) - rnn_bcr_cycles(s, 28, 64, 0, 8, n))
            for n in (1, 2, 4)}
    for n in (1, 2, 4):      # each step pays the gate product of the slowest slice
        assert step[n] - step[1] == steps * (gates[n] - gates[1])
    # cached gate reads: 8 cycles a step; the BCR engine's read and scatter stages 1 each; the
    # element-wise stage's two ROM registers 1 each
    assert step == {1: 3617, 2: 2081, 4: 1313}


def every_10_bit(build) -> list[int]:
    """The combinational ``build(v)`` (13 bits, signed) for every 10-bit signed ``v``, in
    order from -512."""
    from amaranth.hdl import Module, Signal, signed

    m = Module()
    v = Signal(signed(10))
    out = Signal(signed(13))
    m.d.comb += out.eq(build(v))
    got = []

    async def tb(ctx):
        for x in range(-512, 512):
            ctx.set(v, x)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    return got


@pytest.mark.parametrize("s, lo, hi", [(1, -7, 7), (3, -127, 127), (5, -8, 7), (2, -64, 63),
                                       (4, 0, 31), (0, -7, 7), (-2, -100, 100),
                                       (2, -255, 255), (1, -1024, 1023)])
def test_round_clip_equals_round_shift_then_clip(s, lo, hi):
    """The element-wise stage's rounding + saturation, built with the comparisons on the
    unrounded value beside a narrow adder, equals ``clip(round_shift(v, s), lo, hi)`` for every
    10-bit ``v``, at the edges of the range included, and with a range as wide as ``v``."""
    from hw.rnn import _round_clip
    from ir.fixedpoint import round_shift

    values = np.arange(-512, 512)
    want = np.clip(round_shift(values, s), lo, hi)
    assert every_10_bit(lambda v: _round_clip(v, s, lo, hi)) == want.tolist()


@pytest.mark.parametrize("a, b, lo, hi", [(14, 5, -512, 511), (2, 3, -7, 7), (1, 1, -64, 63),
                                         (0, 3, -16, 15), (0, 0, -100, 100), (3, -2, -32, 31),
                                         (2, -3, -30, 29), (4, 0, -8, 7), (5, 2, 0, 3),
                                         (1, 4, -1024, 1023)])
def test_round_twice_clip_equals_two_round_shifts_then_clip(a, b, lo, hi):
    """tanh(c')'s address straight from the cell sum: ``clip(round_shift(round_shift(v, a),
    b), lo, hi)`` one comparison deep, for every 10-bit ``v`` (left shifts, ranges not a
    multiple of the shift, and ranges wider than the values included)."""
    from hw.rnn import _round_twice_clip
    from ir.fixedpoint import round_shift

    values = np.arange(-512, 512)
    want = np.clip(round_shift(round_shift(values, a), b), lo, hi)
    assert every_10_bit(lambda v: _round_twice_clip(v, a, b, lo, hi)) == want.tolist()


@pytest.mark.parametrize("mult, s, lo, hi", [(1, 1, -7, 7), (37, 5, -127, 127), (255, 9, -8, 7),
                                             (1000, 12, -64, 63), (0, 3, -7, 7),
                                             (65535, 16, -255, 255), (3, -1, -100, 100),
                                             (97, 7, 0, 31)])
@pytest.mark.parametrize("narrow", [False, True])
def test_scaled_flags_round_clip_equals_round_shift_then_clip(mult, s, lo, hi, narrow):
    """The requantization with its saturation decided from the unscaled ``a`` a stage
    early (``a * mult >= K`` as ``a >= ceil(K / mult)``) equals
    ``clip(round_shift(a * mult, s), lo, hi)`` for every 10-bit ``a``, one value a cycle;
    also with ``a`` cut to the width its unsaturated values need (``narrow``), which wraps
    the saturated ones."""
    from amaranth.hdl import Const, Module, Signal, signed, unsigned

    from hw.rnn import _requant_operand, _round_clip, _scaled_flags
    from ir.fixedpoint import round_shift

    m = Module()
    a = Signal(signed(10))
    v = Signal(signed(27))
    operand = _requant_operand(a, mult, s, lo, hi) if narrow else a
    m.d.sync += v.eq(operand * Const(mult, unsigned(16)))
    out = Signal(signed(12))
    m.d.comb += out.eq(_round_clip(v, s, lo, hi, _scaled_flags(m, a, mult, s, lo, hi, "v")))
    values = np.arange(-512, 512)
    want = np.clip(round_shift(values * mult, s), lo, hi)
    got = []

    async def tb(ctx):
        for x in values:
            ctx.set(a, int(x))
            await ctx.tick()
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert got == want.tolist()
