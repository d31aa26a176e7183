"""Hypothesis-driven fuzz of every engine on Verilator (dense, BCR, unstructured, pattern, and the
LSTM/GRU cells on dense and on BCR gates).

A simulator process costs seconds, so each hypothesis example cannot start one. Instead each test
first runs an inner ``@given`` function with a fixed ``max_examples`` and ``derandomize=True``
that only *collects* the drawn layers (shape up to the build's, awkward shapes around the lane and
block sizes, densities including 0 and 1, weight and activation bit widths up to the build's,
activations with zeros and extremes), then runs all of them in ONE simulator process per engine
and checks every layer: outputs equal :func:`ir.golden.linear` bit for bit and cycles equal the
engine's cycle model. A failure lists every failing example with its drawn parameters.

The builds are those of tests/test_sim_dense.py (lanes=3, 16/12 bits, 20x40),
tests/test_sim_bcr.py (lanes=4, block 6x5, 16/12 bits, 40x32) and tests/test_sim_unstructured.py
(lanes=4, 16/12 bits, 2-bit relative indices, 40x32), tests/test_sim_pattern.py (lanes=3, 12/10
bits, 8 patterns, 10 filters x 6 channels, 11x9) and tests/test_sim_rnn.py (dense gates: the
"small" LSTM and GRU builds; BCR gates: lanes=3, block 4x6, up to 9 inputs, 7 hidden, 3 steps),
so the build cache is shared. The pattern and RNN examples check outputs against
``ir.golden.conv2d`` / ``lstm_step`` / ``gru_step`` and cycles against their cycle models.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hw.bcr import bcr_cycles
from hw.dense import dense_cycles
from hw.unstructured import unstructured_cycles
from ir.bcr import encode_bcr
from ir.csr import encode_csc_lanes
from ir.golden import linear
from sim.bcr import exact_bcr_layer, random_bcr_layer, run_bcr_batch
from sim.dense import run_dense_batch
from sim.unstructured import random_sparse_layer, run_unstructured_batch

EXAMPLES = 40   # layers per engine
DRAWN = 5 * EXAMPLES   # hypothesis examples drawn; every 5th is kept (consecutive draws are
#                        often near-duplicates, mutations of one another)

DENSE = dict(lanes=3, weight_bits=16, act_bits=12, max_rows=20, max_cols=40)
BCR = dict(lanes=4, block=(6, 5), weight_bits=16, act_bits=12, max_rows=40, max_cols=32)
UNSTRUCTURED = dict(lanes=4, weight_bits=16, act_bits=12, index_bits=2, max_rows=40, max_cols=32)

COLLECT = settings(max_examples=DRAWN, derandomize=True, database=None, deadline=None,
                   phases=[Phase.generate], suppress_health_check=list(HealthCheck))


def _dim(maximum, *edges):
    """A dimension in [1, maximum], often an edge value (1, the maximum, around lanes/blocks)."""
    special = sorted({e for e in (1, maximum, maximum - 1, *edges) if 1 <= e <= maximum})
    return st.one_of(st.sampled_from(special), st.integers(1, maximum))


def _rate():
    """A probability, sometimes exactly 0 or 1."""
    return st.one_of(st.floats(0.05, 0.95), st.floats(0.3, 1.0), st.sampled_from([0.0, 1.0]))


def _activations(data, rng, cols, build_bits):
    """A batch of 1 to 3 activation vectors: uniform in a drawn width, all zero, only the
    extremes of the build's width, or uniform with a drawn fraction of zeros."""
    bits = data.draw(st.integers(2, build_bits), label="act_bits")
    kind = data.draw(st.sampled_from(["uniform", "zeros", "extremes", "min", "sparse"]),
                     label="act_kind")
    batch = data.draw(st.integers(1, 3), label="batch")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    blo, bhi = -(1 << (build_bits - 1)), (1 << (build_bits - 1)) - 1
    if kind == "zeros":
        return np.zeros((batch, cols), dtype=np.int64), f"act {kind}"
    if kind == "extremes":
        return rng.choice([blo, bhi], (batch, cols)).astype(np.int64), f"act {kind}"
    if kind == "min":
        return np.full((batch, cols), blo, dtype=np.int64), f"act {kind}"
    x = rng.integers(lo, hi + 1, (batch, cols))
    if kind == "sparse":
        x[rng.random((batch, cols)) < data.draw(_rate(), label="act_zero_rate")] = 0
    return x.astype(np.int64), f"act {kind} {bits}b x{batch}"


def _weights(data, rng, shape, build_bits):
    """Weights in a drawn width: uniform, only the extremes of the build's width, or all at the
    minimum (sums that wrap int32)."""
    bits = data.draw(st.integers(2, build_bits), label="weight_bits")
    kind = data.draw(st.sampled_from(["uniform", "uniform", "extremes", "min"]),
                     label="weight_kind")
    blo, bhi = -(1 << (build_bits - 1)), (1 << (build_bits - 1)) - 1
    if kind == "extremes":
        return rng.choice([blo, bhi], shape).astype(np.int64), kind, build_bits
    if kind == "min":
        return np.full(shape, blo, dtype=np.int64), kind, build_bits
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return rng.integers(lo, hi + 1, shape).astype(np.int64), kind, bits


def _collect(draw_one, examples=EXAMPLES):
    """Run ``draw_one(data)`` for ``5 * examples`` derandomized hypothesis examples; return
    every 5th (``examples`` of them)."""
    cases = []

    @settings(COLLECT, max_examples=5 * examples)
    @given(st.data())
    def collect(data):
        cases.append(draw_one(data))

    collect()
    cases = cases[::5]
    assert len(cases) == examples
    return cases


def _seed(data):
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


def _draw_dense(data):
    p = DENSE
    rng = _seed(data)
    lanes = p["lanes"]
    shape = (data.draw(_dim(p["max_rows"], lanes - 1, lanes, lanes + 1, 2 * lanes + 1), "rows"),
             data.draw(_dim(p["max_cols"], 2, 3), "cols"))
    density = data.draw(_rate(), label="density")
    w, wkind, wbits = _weights(data, rng, shape, p["weight_bits"])
    w = np.where(rng.random(shape) < density, w, 0)
    x, xdesc = _activations(data, rng, shape[1], p["act_bits"])
    return f"{shape} density {density:.2f} w {wkind} {wbits}b, {xdesc}", w, x


def _draw_bcr(data):
    p = BCR
    rng = _seed(data)
    (br, bc), lanes = p["block"], p["lanes"]
    shape = (data.draw(_dim(p["max_rows"], br - 1, br, br + 1, 2 * br + 1, lanes), "rows"),
             data.draw(_dim(p["max_cols"], bc - 1, bc, bc + 1, 2 * bc + 1), "cols"))
    kind = data.draw(st.sampled_from(["random", "exact", "random", "random", "empty"]),
                     label="bcr_kind")
    full = data.draw(st.booleans(), label="extremes")
    bits = data.draw(st.integers(2, p["weight_bits"]), label="weight_bits")
    if kind == "empty":
        w, mask, desc = np.zeros(shape, np.int64), np.zeros(shape, bool), "density 0"
    elif kind == "exact":
        kr, kc = data.draw(st.integers(1, br), "kept_rows"), data.draw(st.integers(1, bc), "kc")
        w, mask = exact_bcr_layer(rng, shape, (br, bc), kr, kc, bits=bits)
        desc = f"exact {kr}x{kc} per block"
    else:
        rk, ck = data.draw(_rate(), label="row_keep"), data.draw(_rate(), label="col_keep")
        w, mask = random_bcr_layer(rng, shape, (br, bc), rk, ck, bits=bits, full=full)
        desc = f"keep {rk:.2f}/{ck:.2f}{' extremes' if full else ''}"
    x, xdesc = _activations(data, rng, shape[1], p["act_bits"])
    return f"{shape} {desc} {bits}b, {xdesc}", w, mask, x


def _draw_unstructured(data):
    p = UNSTRUCTURED
    rng = _seed(data)
    lanes = p["lanes"]
    shape = (data.draw(_dim(p["max_rows"], lanes - 1, lanes, lanes + 1, 2 * lanes + 1), "rows"),
             data.draw(_dim(p["max_cols"], 2, 3), "cols"))
    density = data.draw(_rate(), label="density")
    full = data.draw(st.booleans(), label="extremes")
    bits = data.draw(st.integers(2, p["weight_bits"]), label="weight_bits")
    w = random_sparse_layer(rng, shape, density, bits=bits, full=full)
    x, xdesc = _activations(data, rng, shape[1], p["act_bits"])
    return f"{shape} density {density:.2f}{' extremes' if full else ''} {bits}b, {xdesc}", w, x


def _report(engine, failures):
    assert not failures, (f"{engine}: {len(failures)} of {EXAMPLES} fuzz examples mismatched:\n"
                          + "\n".join(failures))


def _coverage(cases, w_of, full):
    """The collected examples include an empty layer, a fully kept one (``full`` in the
    description) and all-zero activations (deterministic: the examples are derandomized)."""
    assert any(not w_of(c).any() for c in cases)
    assert any(full in c[0] for c in cases)
    assert any(not c[-1].any() for c in cases)


def test_fuzz_dense_verilator(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    p = DENSE
    cases = _collect(_draw_dense)
    _coverage(cases, lambda c: c[1], "density 1.00")
    runs = run_dense_batch([(w, x) for _, w, x in cases], p["lanes"], p["weight_bits"],
                           p["act_bits"], "verilator", p["max_rows"], p["max_cols"],
                           cache_dir=sim_cache_dir)
    failures = []
    for k, (run, (desc, w, x)) in enumerate(zip(runs, cases, strict=True)):
        expected = linear(w, x, weight_bits=p["weight_bits"], act_bits=p["act_bits"])
        model = [dense_cycles(*w.shape, p["lanes"])] * len(x)
        if not np.array_equal(run.outputs, expected):
            failures.append(f"  example {k} [{desc}]: outputs differ")
        if run.cycles != model:
            failures.append(f"  example {k} [{desc}]: cycles {run.cycles} != model {model}")
    _report("dense", failures)


def test_fuzz_bcr_verilator(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    p = BCR
    cases = _collect(_draw_bcr)
    _coverage(cases, lambda c: c[2], "keep 1.00/1.00")
    runs = run_bcr_batch([(w, m, x) for _, w, m, x in cases], p["block"], p["lanes"],
                         p["weight_bits"], p["act_bits"], "verilator", p["max_rows"],
                         p["max_cols"], cache_dir=sim_cache_dir)
    failures = []
    for k, (run, (desc, w, mask, x)) in enumerate(zip(runs, cases, strict=True)):
        expected = linear(w, x, weight_bits=p["weight_bits"], act_bits=p["act_bits"])
        model = [bcr_cycles(encode_bcr(w, p["block"], mask), p["lanes"])] * len(x)
        if not np.array_equal(run.outputs, expected):
            failures.append(f"  example {k} [{desc}]: outputs differ")
        if run.cycles != model:
            failures.append(f"  example {k} [{desc}]: cycles {run.cycles} != model {model}")
    _report("bcr", failures)


def test_fuzz_unstructured_verilator(sim_cache_dir, require_simulator):
    require_simulator("verilator")
    p = UNSTRUCTURED
    cases = _collect(_draw_unstructured)
    _coverage(cases, lambda c: c[1], "density 1.00")
    runs = run_unstructured_batch([(w, x) for _, w, x in cases], p["lanes"], p["weight_bits"],
                                  p["act_bits"], p["index_bits"], "verilator", p["max_rows"],
                                  p["max_cols"], cache_dir=sim_cache_dir)
    failures = []
    for k, (run, (desc, w, x)) in enumerate(zip(runs, cases, strict=True)):
        expected = linear(w, x, weight_bits=p["weight_bits"], act_bits=p["act_bits"])
        csc = encode_csc_lanes(w, p["lanes"], p["index_bits"])
        model = [unstructured_cycles(csc, v, p["lanes"]) for v in x]
        if not np.array_equal(run.outputs, expected):
            failures.append(f"  example {k} [{desc}]: outputs differ")
        if run.cycles != model:
            failures.append(f"  example {k} [{desc}]: cycles {run.cycles} != model {model}")
    _report("unstructured", failures)


PATTERN = dict(lanes=3, weight_bits=12, act_bits=10, library_size=8, max_channels=6,
               max_filters=10, max_height=11, max_width=9)
RNN_EXAMPLES = 15   # sequences per RNN engine
RNN_DENSE = dict(lanes=8, max_input=6, max_hidden=6, max_steps=3)
RNN_BCR = dict(lanes=3, max_input=9, max_hidden=7, max_steps=3, block=(4, 6))


def _draw_pattern(data):
    from ir.pattern import candidate_patterns
    from sim.pattern import random_pattern_layer

    p = PATTERN
    rng = _seed(data)
    lib = candidate_patterns(4)[rng.choice(56, p["library_size"], replace=False)]
    o = data.draw(_dim(p["max_filters"], 2, 3, 4), "filters")
    c = data.draw(_dim(p["max_channels"], 2, 3), "channels")
    h, w = data.draw(_dim(p["max_height"], 2, 3), "h"), data.draw(_dim(p["max_width"], 2, 3), "w")
    stride = data.draw(st.sampled_from([1, 2]), "stride")
    pad = data.draw(st.sampled_from([0, 1]), "pad") if min(h, w) >= 3 else 1
    keep = data.draw(_rate(), label="keep")
    full = data.draw(st.booleans(), label="extremes")
    qw, mask = random_pattern_layer(rng, (o, c), lib, keep, bits=p["weight_bits"], full=full)
    x, xdesc = _activations(data, rng, c * h * w, p["act_bits"])
    return (f"({o},{c},{h},{w}) s{stride} p{pad} keep {keep:.2f}, {xdesc}",
            (qw, mask, lib, x[0].reshape(c, h, w), stride, pad))


def test_fuzz_pattern_verilator(sim_cache_dir, require_simulator):
    from hw.pattern import pattern_cycles
    from ir.golden import conv2d
    from ir.pattern import encode_pattern
    from sim.pattern import out_size, run_pattern_batch

    require_simulator("verilator")
    p = PATTERN
    cases = _collect(_draw_pattern)
    assert any(not c[1][3].any() for c in cases) and any("keep 0.00" in c[0] for c in cases)
    runs = run_pattern_batch([j for _, j in cases], p["lanes"], p["weight_bits"], p["act_bits"],
                             "verilator", library_size=p["library_size"],
                             max_channels=p["max_channels"], max_filters=p["max_filters"],
                             max_height=p["max_height"], max_width=p["max_width"],
                             cache_dir=sim_cache_dir)
    bad = []
    for k, (run, (desc, (w, mask, lib, x, s, pad))) in enumerate(zip(runs, cases, strict=True)):
        want = conv2d(w, x, stride=s, padding=pad, weight_bits=p["weight_bits"],
                      act_bits=p["act_bits"])
        shape = (out_size(x.shape[1], s, pad), out_size(x.shape[2], s, pad))
        model = pattern_cycles(encode_pattern(w, lib, mask), shape, p["lanes"])
        if not (np.array_equal(run.outputs, want) and run.cycles == model):
            bad.append(f"  example {k} [{desc}]: outputs equal "
                       f"{np.array_equal(run.outputs, want)}, cycles {run.cycles} vs {model}")
    _report("pattern", bad)


def _rnn_draw(cell, gates):
    from sim.rnn import bcr_pruned, random_gru_job, random_job

    b = RNN_BCR if gates == "bcr" else RNN_DENSE
    cfg = _rnn_configs()[gates == "bcr"]

    def draw_one(data):
        rng = _seed(data)
        shape = (data.draw(_dim(b["max_input"], 2), "input"),
                 data.draw(_dim(b["max_hidden"], 2, 4, 5), "hidden"),
                 data.draw(_dim(b["max_steps"]), "steps"))
        bias, extreme = data.draw(st.booleans(), "bias"), data.draw(st.booleans(), "extreme")
        job = (random_job if cell == "lstm" else random_gru_job)(rng, cfg, *shape, bias=bias,
                                                                 extreme=extreme)
        desc = f"I,H,T {shape} bias {bias} extreme {extreme}"
        if gates == "bcr":
            rk, ck = data.draw(_rate(), label="row_keep"), data.draw(_rate(), label="col_keep")
            job = bcr_pruned(rng, job, b["block"], rk, ck, bits=cfg.weight_bits)
            desc += f" keep {rk:.2f}/{ck:.2f}"
        return desc, job

    return draw_one


def _rnn_configs():
    from ir.golden import RNNQuantConfig

    small = RNNQuantConfig(multiplier=9000, shift=16, weight_bits=5, act_bits=8, act_frac=7,
                           gate_bits=3, lut_index_bits=6, lut_frac=4, cell_bits=9, cell_frac=2)
    return small, RNNQuantConfig.from_scales(0.02, 2**-6, lut_index_bits=8)


@pytest.mark.parametrize("cell, gates", [("lstm", "dense"), ("gru", "dense"), ("lstm", "bcr"),
                                         ("gru", "bcr")])
def test_fuzz_rnn_cells_verilator(cell, gates, sim_cache_dir, require_simulator):
    from sim.rnn import GRUJob, LSTMJob, rnn_mismatches, run_gru_batch, run_lstm_batch

    require_simulator("verilator")
    b = RNN_BCR if gates == "bcr" else RNN_DENSE
    cfg = _rnn_configs()[gates == "bcr"]
    cases = _collect(_rnn_draw(cell, gates), RNN_EXAMPLES)
    job_type, run_batch = (LSTMJob, run_lstm_batch) if cell == "lstm" else (GRUJob,
                                                                            run_gru_batch)
    kw = {"gates": "bcr", "block": b["block"]} if gates == "bcr" else {}
    runs = run_batch([job_type(*j) for _, j in cases], cfg, b["lanes"], "verilator",
                     b["max_input"], b["max_hidden"], b["max_steps"], cache_dir=sim_cache_dir,
                     **kw)
    bad = rnn_mismatches(cell, [j for _, j in cases], runs, cfg, b["lanes"], gates=gates,
                         block=b.get("block"))
    assert not bad, f"{cell}-{gates}: " + "; ".join(
        f"example {k} [{cases[k][0]}] outputs ok {o} cycles ok {c}" for k, o, c in bad)
