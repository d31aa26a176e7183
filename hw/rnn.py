"""LSTM cell engine: one time step or a whole sequence, gate products on the dense engine.

:class:`LSTMEngine` runs ``steps`` integer LSTM steps (``ir.golden.lstm_step`` iterated, the
exact integer rules of :mod:`ir.golden`) with the hidden state ``h`` and the cell state ``c`` in
on-chip memories. Each step:

1. **copy** (``I + H + 1`` cycles): ``[x_t; h]`` is copied into the activation memory of a
   :class:`hw.dense.DenseMatVec` submodule (one element per cycle, synchronous reads);
2. **gates** (``dense_cycles(4H, I + H, P) + 2`` cycles): one start cycle, the dense engine's run,
   and one cycle to see its ``done``; the dense engine computes the ``4H`` gate accumulators ``[W_ih | W_hh] @ [x_t; h]`` (int32, wrapping), rows
   interleaved so that row ``4j + k`` is gate ``k`` (i, f, g, o) of hidden unit ``j``;
3. **element-wise** (``ELEMENT_CYCLES = 6`` cycles per hidden unit, not pipelined): read the four
   accumulators and the bias ``wrap32(b_ih + b_hh)``, requantize with the config's
   ``multiplier``/``shift`` into the ROM input format, look up sigmoid (i, f, o) and tanh (g) in
   ROMs, compute ``c'``, look up ``tanh(c')``, compute ``h'``; ``c'`` and ``h'`` are written
   back in place (the old ``h`` already sits in the dense engine's activation memory) and
   ``h'`` also goes to the ``h_seq`` memory at ``t * H + j``.

Hence :func:`lstm_cycles`: ``steps * (I + H + 3 + dense_cycles(4H, I + H, P) + 6H)``, which
the RTL's ``cycles`` output equals exactly (``0`` when ``steps`` or ``hidden`` is zero).

The quantization config (:class:`ir.golden.RNNQuantConfig`) is a build parameter: it fixes the
ROM contents and the widths; the shape (``input_size``, ``hidden_size``, ``steps``) is a
runtime input latched at ``start``.

Memory map (see :meth:`LSTMEngine.memory_map`)
-----------------------------------------------
* ``weights`` (``w_wr``): the dense engine's weight memory holding the stacked matrix
  ``[W_ih | W_hh]`` with rows interleaved (:func:`lstm_weight_matrix`) laid out by
  :func:`hw.dense.pack_weights` with the runtime ``cols = I + H``;
* ``bias`` (``b_wr``): address ``j`` holds ``wrap32(b_ih + b_hh)`` of gates i, f, g, o of unit
  ``j`` in four 32-bit lanes (lane ``k`` in bits ``[32k, 32k + 32)``);
* ``x_seq`` (``x_wr``): address ``t * I + c`` holds ``x_t[c]`` (``act_bits``);
* ``h`` (``h_wr``/``h_rd``): address ``j`` holds ``h[j]``; initial state written by the bench,
  final state read back;
* ``c`` (``c_wr``/``c_rd``): address ``j`` holds ``c[j]`` (``cell_bits``), likewise;
* ``h_seq`` (``hseq_rd``): address ``t * H + j`` holds ``h_t[j]`` after step ``t``.

Memories must only be accessed by the bench while the engine is not ``busy``; reads are
synchronous (data valid the cycle after the address is sampled).

GRU
---
:class:`GRUEngine` shares the datapath shape: four dense rows per unit (:func:`gru_weight_matrix`:
``[W_ir | W_hr]``, ``[W_iz | W_hz]``, ``[W_in | 0]``, ``[0 | W_hn]``), biases
:func:`gru_bias_words`, and six element-wise cycles: requantize r and z, look them up, form
``n_acc = wrap32(a_n + round_shift(r * b_n, G))``, requantize it and look up ``tanh``, then
``h' = saturate(round_shift(((2**G - z) * n << act_frac) + (z * h << G), 2G))`` with the old
``h[j]`` read from the ``h`` memory. No ``c`` memory. :func:`gru_cycles` equals
:func:`lstm_cycles`.

Lint
----
``verilator --lint-only -Wall`` reports only the classes waived for :mod:`hw.dense`
(``PROCASSINIT``, ``UNUSEDSIGNAL``, ``WIDTHEXPAND``, ``WIDTHTRUNC``) plus two more, both from
how Amaranth writes Verilog: ``CASEINCOMPLETE`` (the FSM ``case`` on a state register wider
than the number of states has no ``default``; unreachable codes) and ``DECLFILENAME`` (the dense
submodule is a second module in the same file). The test suite checks that no other class
appears.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.dense import CYCLE_COUNTER_BITS, DenseMatVec, _check_int, dense_cycles
from ir.golden import RNNQuantConfig

__all__ = ["GRUEngine", "LSTMEngine", "RNNEngine", "ELEMENT_CYCLES", "check_lstm_parameters",
           "gru_bias_words", "gru_cycles", "gru_weight_matrix", "lstm_bias_words",
           "lstm_cycles", "lstm_weight_matrix"]

#: Cycles of the element-wise stage per hidden unit.
ELEMENT_CYCLES = 6
#: Gates per LSTM unit (i, f, g, o).
GATES = 4


def lstm_cycles(input_size: int, hidden_size: int, steps: int, lanes: int) -> int:
    """Cycle model of :class:`LSTMEngine`: cycles from ``start`` to ``done``.

    Returns ``steps * (I + H + 3 + dense_cycles(4H, I + H, lanes) + 6H)``, or ``0`` when
    ``steps`` or ``hidden_size`` is zero.
    """
    i = _check_int(input_size, "Input size", 0)
    h = _check_int(hidden_size, "Hidden size", 0)
    t = _check_int(steps, "Steps", 0)
    p = _check_int(lanes, "Lanes", 1)
    if t == 0 or h == 0:
        return 0
    per_step = (i + h + 1) + (dense_cycles(GATES * h, i + h, p) + 2) + ELEMENT_CYCLES * h
    return t * per_step


def lstm_weight_matrix(qweight_ih: np.ndarray, qweight_hh: np.ndarray) -> np.ndarray:
    """Stack ``[W_ih | W_hh]`` (PyTorch gate order, shapes ``(4H, I)``, ``(4H, H)``) and
    interleave the rows: row ``4j + k`` of the result is gate ``k`` of hidden unit ``j``.

    Returns an ``int64`` array of shape ``(4H, I + H)``.
    """
    w_ih, w_hh = np.asarray(qweight_ih), np.asarray(qweight_hh)
    if w_hh.ndim != 2 or w_hh.shape[0] != GATES * w_hh.shape[1]:
        raise ValueError(f"qweight_hh must have shape (4*hidden, hidden), not {w_hh.shape}")
    hidden = w_hh.shape[1]
    if w_ih.ndim != 2 or w_ih.shape[0] != GATES * hidden:
        raise ValueError(f"qweight_ih must have shape ({GATES * hidden}, input), not "
                         f"{w_ih.shape}")
    stacked = np.concatenate([w_ih, w_hh], axis=1).astype(np.int64)
    cols = stacked.shape[1]
    return stacked.reshape(GATES, hidden, cols).transpose(1, 0, 2).reshape(GATES * hidden, cols)


def gru_cycles(input_size: int, hidden_size: int, steps: int, lanes: int) -> int:
    """Cycle model of :class:`GRUEngine`: the same as :func:`lstm_cycles` (four dense rows per
    hidden unit, six element-wise cycles per unit)."""
    return lstm_cycles(input_size, hidden_size, steps, lanes)


def gru_weight_matrix(qweight_ih: np.ndarray, qweight_hh: np.ndarray) -> np.ndarray:
    """GRU gate rows for the dense engine, ``(4H, I + H)`` int64: for unit ``j``, row ``4j`` is
    ``[W_ir | W_hr]``, ``4j + 1`` ``[W_iz | W_hz]``, ``4j + 2`` ``[W_in | 0]``, ``4j + 3``
    ``[0 | W_hn]`` (PyTorch gate order r, z, n in the inputs, shapes ``(3H, I)``, ``(3H, H)``)."""
    w_ih, w_hh = np.asarray(qweight_ih), np.asarray(qweight_hh)
    if w_hh.ndim != 2 or w_hh.shape[0] != 3 * w_hh.shape[1]:
        raise ValueError(f"qweight_hh must have shape (3*hidden, hidden), not {w_hh.shape}")
    hidden = w_hh.shape[1]
    if w_ih.ndim != 2 or w_ih.shape[0] != 3 * hidden:
        raise ValueError(f"qweight_ih must have shape ({3 * hidden}, input), not {w_ih.shape}")
    isz = w_ih.shape[1]
    out = np.zeros((hidden, GATES, isz + hidden), dtype=np.int64)
    for k in range(2):
        out[:, k, :isz] = w_ih[k * hidden:(k + 1) * hidden]
        out[:, k, isz:] = w_hh[k * hidden:(k + 1) * hidden]
    out[:, 2, :isz] = w_ih[2 * hidden:]
    out[:, 3, isz:] = w_hh[2 * hidden:]
    return out.reshape(GATES * hidden, isz + hidden)


def gru_bias_words(bias_ih: object, bias_hh: object, hidden: int) -> np.ndarray:
    """GRU bias lanes ``(hidden, 4)`` int64: ``wrap32(b_ir + b_hr)``, ``wrap32(b_iz + b_hz)``,
    ``b_in``, ``b_hn`` of each unit (either bias may be None)."""
    zero = np.zeros(3 * hidden, dtype=np.int64)
    b_i = zero if bias_ih is None else np.asarray(bias_ih, dtype=np.int64).reshape(3 * hidden)
    b_h = zero if bias_hh is None else np.asarray(bias_hh, dtype=np.int64).reshape(3 * hidden)
    rz = b_i[:2 * hidden] + b_h[:2 * hidden]
    rz = (rz + (1 << 31)) % (1 << 32) - (1 << 31)
    return np.stack([rz[:hidden], rz[hidden:], b_i[2 * hidden:], b_h[2 * hidden:]], axis=1)


def lstm_bias_words(bias_ih: object, bias_hh: object, hidden: int) -> np.ndarray:
    """Bias lanes for the ``bias`` memory: ``(hidden, 4)`` int64, row ``j`` = gates i, f, g, o
    of unit ``j`` of ``wrap32(b_ih + b_hh)`` (either bias may be None)."""
    total = np.zeros(GATES * hidden, dtype=np.int64)
    for b in (bias_ih, bias_hh):
        if b is not None:
            total = total + np.asarray(b, dtype=np.int64).reshape(GATES * hidden)
    wrapped = (total + (1 << 31)) % (1 << 32) - (1 << 31)
    return wrapped.reshape(GATES, hidden).T.copy()


def check_lstm_parameters(config: RNNQuantConfig, *, lanes: int = 4, max_input: int = 16,
                          max_hidden: int = 16, max_steps: int = 8) -> dict[str, Any]:
    """Validate :class:`LSTMEngine` parameters without building anything.

    Raises
    ------
    TypeError
        If ``config`` is not an :class:`ir.golden.RNNQuantConfig` or a size is not an int.
    ValueError
        E.g. ``"Lanes must be a positive multiple of 4, not 6"``, ``"Maximum hidden size must
        be a positive integer, not 0"``, or a worst case beyond the 32-bit cycle counter.
    """
    if not isinstance(config, RNNQuantConfig):
        raise TypeError(f"Config must be an RNNQuantConfig, not {type(config).__name__}")
    lanes_i = _check_int(lanes, "Lanes", 1)
    if lanes_i % GATES:
        raise ValueError(f"Lanes must be a positive multiple of 4, not {lanes_i}")
    params = {
        "lanes": lanes_i,
        "max_input": _check_int(max_input, "Maximum input size", 1),
        "max_hidden": _check_int(max_hidden, "Maximum hidden size", 1),
        "max_steps": _check_int(max_steps, "Maximum steps", 1),
    }
    worst = lstm_cycles(params["max_input"], params["max_hidden"], params["max_steps"],
                        lanes_i)
    if worst >= 1 << CYCLE_COUNTER_BITS:
        raise ValueError(f"Maximum shape takes {worst} cycles, more than the "
                         f"{CYCLE_COUNTER_BITS}-bit cycle counter holds")
    return params


def _round_shift(v: Value, s: int) -> Value:
    """Round half up right shift by ``s`` (exact left shift when negative), like
    ``ir.fixedpoint.round_shift``."""
    if s > 0:
        return (v + (1 << (s - 1))) >> s
    if s < 0:
        return v << -s
    return v


def _saturate(v: Value, bits: int) -> Value:
    hi = (1 << (bits - 1)) - 1
    return Mux(v > hi, hi, Mux(v < -hi, -hi, v))


def _clip(v: Value, lo: int, hi: int) -> Value:
    return Mux(v > hi, hi, Mux(v < lo, lo, v))


class RNNEngine(wiring.Component):
    """Integer LSTM or GRU cell over a sequence, bit-exact with iterated
    ``ir.golden.lstm_step`` / ``ir.golden.gru_step`` (use :class:`LSTMEngine`, :class:`GRUEngine`).

    Parameters
    ----------
    config : ir.golden.RNNQuantConfig
        Integer formats (fixes ROM contents and widths).
    lanes : int
        MAC lanes of the dense gate engine, a positive multiple of 4.
    max_input, max_hidden, max_steps : int
        Largest shape one build serves (sizes the memories).

    Members
    -------
    start : ``In(1)``; input_size, hidden_size, steps : runtime shape latched at ``start``
        (``input_size`` from 1, at most the maxima; zero ``steps`` or ``hidden_size`` sets
        ``done`` at once with ``cycles == 0``).
    busy, done : ``Out(1)``; cycles : ``Out(32)``, equal to :func:`lstm_cycles`.
    w_wr, b_wr, x_wr, h_wr, c_wr : bench write ports; h_rd, c_rd, hseq_rd : bench read ports.
    """

    def __init__(self, config: RNNQuantConfig, *, cell: str = "lstm", lanes: int = 4,
                 max_input: int = 16, max_hidden: int = 16, max_steps: int = 8) -> None:
        try:
            if cell not in ("lstm", "gru"):
                raise ValueError(f"Cell must be 'lstm' or 'gru', not {cell!r}")
            params = check_lstm_parameters(config, lanes=lanes, max_input=max_input,
                                           max_hidden=max_hidden, max_steps=max_steps)
        except (TypeError, ValueError):
            self._MustUse__silence = True  # a rejected engine is not an unused one
            raise
        self.config = config
        self.cell = cell
        self.lanes = params["lanes"]
        self.max_input = params["max_input"]
        self.max_hidden = params["max_hidden"]
        self.max_steps = params["max_steps"]
        self.weight_depth = max(2, -(-GATES * self.max_hidden // self.lanes)
                                * (self.max_input + self.max_hidden))
        self.weight_layout = data.ArrayLayout(signed(config.weight_bits), self.lanes)
        self.h_depth = max(2, self.max_hidden)
        self.x_depth = max(2, self.max_steps * self.max_input)
        self.hseq_depth = max(2, self.max_steps * self.max_hidden)
        self.bias_layout = data.ArrayLayout(signed(32), GATES)
        a = ceil_log2
        members = {
            "start": In(1),
            "input_size": In(range(self.max_input + 1)),
            "hidden_size": In(range(self.max_hidden + 1)),
            "steps": In(range(self.max_steps + 1)),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "w_wr": Out(WritePort.Signature(addr_width=a(self.weight_depth),
                                            shape=self.weight_layout)),
            "b_wr": Out(WritePort.Signature(addr_width=a(self.h_depth), shape=self.bias_layout)),
            "x_wr": Out(WritePort.Signature(addr_width=a(self.x_depth),
                                            shape=signed(config.act_bits))),
            "h_wr": Out(WritePort.Signature(addr_width=a(self.h_depth),
                                            shape=signed(config.act_bits))),
            "c_wr": Out(WritePort.Signature(addr_width=a(self.h_depth),
                                            shape=signed(config.cell_bits))),
            "h_rd": Out(ReadPort.Signature(addr_width=a(self.h_depth),
                                           shape=signed(config.act_bits))),
            "c_rd": Out(ReadPort.Signature(addr_width=a(self.h_depth),
                                           shape=signed(config.cell_bits))),
            "hseq_rd": Out(ReadPort.Signature(addr_width=a(self.hseq_depth),
                                              shape=signed(config.act_bits))),
        }
        if cell == "gru":
            del members["c_wr"], members["c_rd"]
        super().__init__(members)

    def parameters(self) -> dict[str, Any]:
        """Build parameters, JSON-serialisable, as recorded in the emitted sidecar."""
        c = self.config
        return {
            "engine": self.cell, "lanes": self.lanes, "max_input": self.max_input,
            "max_hidden": self.max_hidden, "max_steps": self.max_steps,
            "element_cycles": ELEMENT_CYCLES,
            "config": {k: getattr(c, k) for k in (
                "multiplier", "shift", "weight_bits", "act_bits", "act_frac", "gate_bits",
                "lut_index_bits", "lut_frac", "cell_bits", "cell_frac")},
        }

    def memory_map(self) -> list[dict[str, Any]]:
        """The memories a bench fills or reads (recorded in the JSON sidecar)."""
        def sig(port):
            return {k: f"{port}__{k}" for k in ("addr", "data", "en")}
        c = self.config
        P, wb = self.lanes, c.weight_bits
        mems = [
            {"name": "weights", "depth": self.weight_depth, "width": P * wb, "lanes": P,
             "lane_bits": wb, "access": "write", "port": "w_wr", "signals": sig("w_wr"),
             "layout": "hw.dense.pack_weights of hw.rnn.lstm_weight_matrix(W_ih, W_hh) with "
                       "cols = input_size + hidden_size"},
            {"name": "bias", "depth": self.h_depth, "width": 128, "lanes": 4, "lane_bits": 32,
             "access": "write", "port": "b_wr", "signals": sig("b_wr"),
             "layout": "address j holds wrap32(b_ih + b_hh) of gates i, f, g, o of unit j"},
            {"name": "x_seq", "depth": self.x_depth, "width": c.act_bits, "lanes": 1,
             "lane_bits": c.act_bits, "access": "write", "port": "x_wr", "signals": sig("x_wr"),
             "layout": "address t*input_size + i holds x_t[i]"},
            {"name": "h", "depth": self.h_depth, "width": c.act_bits, "lanes": 1,
             "lane_bits": c.act_bits, "access": "write/read", "port": "h_wr/h_rd",
             "signals": sig("h_wr"), "layout": "address j holds h[j]"},
            {"name": "c", "depth": self.h_depth, "width": c.cell_bits, "lanes": 1,
             "lane_bits": c.cell_bits, "access": "write/read", "port": "c_wr/c_rd",
             "signals": sig("c_wr"), "layout": "address j holds c[j]"},
            {"name": "h_seq", "depth": self.hseq_depth, "width": c.act_bits, "lanes": 1,
             "lane_bits": c.act_bits, "access": "read", "port": "hseq_rd",
             "signals": sig("hseq_rd"), "layout": "address t*hidden_size + j holds h_t[j]"},
        ]
        if self.cell == "gru":
            mems = [mm for mm in mems if mm["name"] != "c"]
            mems[0]["layout"] = mems[0]["layout"].replace("lstm_weight", "gru_weight")
            mems[1]["layout"] = ("address j holds wrap32(b_ir + b_hr), wrap32(b_iz + b_hz), "
                                 "b_in, b_hn of unit j")
        return mems

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        P = self.lanes
        upg = P // GATES  # hidden units per dense row group
        G = cfg.gate_frac
        ab, cb, lib = cfg.act_bits, cfg.cell_bits, cfg.lut_index_bits

        m.submodules.dense = dense = DenseMatVec(
            P, weight_bits=cfg.weight_bits, act_bits=cfg.act_bits, acc_bits=32,
            max_rows=GATES * self.max_hidden, max_cols=self.max_input + self.max_hidden)
        assert dense.weight_depth == self.weight_depth
        m.submodules.bias = b_mem = Memory(shape=self.bias_layout, depth=self.h_depth, init=[])
        m.submodules.x_seq = x_mem = Memory(shape=signed(ab), depth=self.x_depth, init=[])
        m.submodules.h = h_mem = Memory(shape=signed(ab), depth=self.h_depth, init=[])
        lstm = self.cell == "lstm"
        if lstm:
            m.submodules.c = c_mem = Memory(shape=signed(cb), depth=self.h_depth, init=[])
        m.submodules.h_seq = s_mem = Memory(shape=signed(ab), depth=self.hseq_depth, init=[])
        m.submodules.sigmoid = sig_rom = Memory(shape=unsigned(cfg.gate_bits), depth=1 << lib,
                                                init=[int(v) for v in cfg.sigmoid.table])
        m.submodules.tanh = tanh_rom = Memory(shape=signed(cfg.gate_bits), depth=1 << lib,
                                              init=[int(v) for v in cfg.tanh.table])
        b_wp = b_mem.write_port()
        b_rp = b_mem.read_port()
        x_wp = x_mem.write_port()
        x_rp = x_mem.read_port()
        h_wp = h_mem.write_port()
        h_rp = h_mem.read_port()
        if lstm:
            c_wp = c_mem.write_port()
            c_rp = c_mem.read_port()
        s_wp = s_mem.write_port()
        s_rp = s_mem.read_port()
        sig_i = sig_rom.read_port()
        sig_f = sig_rom.read_port()
        if lstm:
            sig_o = sig_rom.read_port()
        tanh_rp = tanh_rom.read_port()

        busy = Signal()
        done = Signal()
        cycles = Signal(CYCLE_COUNTER_BITS)
        m.d.comb += [self.busy.eq(busy), self.done.eq(done), self.cycles.eq(cycles)]

        # Bench ports (h and c memories are shared with the engine, muxed on busy).
        m.d.comb += [
            dense.w_wr.addr.eq(self.w_wr.addr), dense.w_wr.data.eq(self.w_wr.data),
            dense.w_wr.en.eq(self.w_wr.en),
            b_wp.addr.eq(self.b_wr.addr), b_wp.data.eq(self.b_wr.data), b_wp.en.eq(self.b_wr.en),
            x_wp.addr.eq(self.x_wr.addr), x_wp.data.eq(self.x_wr.data), x_wp.en.eq(self.x_wr.en),
            s_rp.addr.eq(self.hseq_rd.addr), s_rp.en.eq(self.hseq_rd.en),
            self.hseq_rd.data.eq(s_rp.data),
            self.h_rd.data.eq(h_rp.data),
        ]

        isz = Signal.like(self.input_size)
        hsz = Signal.like(self.hidden_size)
        nsteps = Signal.like(self.steps)
        t = Signal(range(self.max_steps + 1))
        xbase = Signal(range(self.x_depth + self.max_input + 1))
        sbase = Signal(range(self.hseq_depth + self.max_hidden + 1))
        cols = Signal(range(self.max_input + self.max_hidden + 1))
        m.d.comb += cols.eq(isz + hsz)

        # Copy stage counters.
        k = Signal(range(self.max_input + self.max_hidden + 1))
        v1 = Signal()
        k1 = Signal.like(k)
        sel_h1 = Signal()
        # Element stage counters.
        j = Signal(range(self.max_hidden + 1))
        grp = Signal(range(dense.out_depth))
        sub = Signal(range(max(2, upg)))
        pre = [Signal(signed(lib), name=f"pre_{n}") for n in "ifgo"]
        c_old = Signal(signed(cb))
        tc_idx = Signal(lib)

        # Internal read addresses.
        h_idx = Signal(signed(k.shape().width + 2))
        m.d.comb += h_idx.eq(k - isz)
        m.d.comb += [
            x_rp.addr.eq(xbase + k),
            dense.out_rd.addr.eq(grp), dense.out_rd.en.eq(1),
            b_rp.addr.eq(j),
            sig_i.addr.eq(pre[0] + (1 << (lib - 1))),
            sig_f.addr.eq(pre[1] + (1 << (lib - 1))),
        ]
        with m.If(busy):
            m.d.comb += [h_rp.addr.eq(j), h_rp.en.eq(1)]
            if lstm:
                m.d.comb += [c_rp.addr.eq(j), c_rp.en.eq(1)]
        with m.Else():
            m.d.comb += [
                h_rp.addr.eq(self.h_rd.addr), h_rp.en.eq(self.h_rd.en),
                h_wp.addr.eq(self.h_wr.addr), h_wp.data.eq(self.h_wr.data),
                h_wp.en.eq(self.h_wr.en),
            ]
            if lstm:
                m.d.comb += [
                    c_rp.addr.eq(self.c_rd.addr), c_rp.en.eq(self.c_rd.en),
                    c_wp.addr.eq(self.c_wr.addr), c_wp.data.eq(self.c_wr.data),
                    c_wp.en.eq(self.c_wr.en),
                ]
        if lstm:
            m.d.comb += [sig_o.addr.eq(pre[3] + (1 << (lib - 1))), self.c_rd.data.eq(c_rp.data)]

        # Copy writes into the dense engine's activation memory (one stage behind the reads).
        m.d.comb += [
            dense.x_wr.addr.eq(k1), dense.x_wr.en.eq(v1),
            dense.x_wr.data.eq(Mux(sel_h1, h_rp.data, x_rp.data)),
        ]
        m.d.sync += v1.eq(0)

        # Element-wise datapath.
        gates_word = Value.cast(dense.out_rd.data).word_select(sub, GATES * 32)
        bias_word = Value.cast(b_rp.data)
        pre_next, accs = [], []
        for n in range(GATES):
            acc = Signal(signed(32), name=f"acc_{'ifgo'[n]}")
            m.d.comb += acc.eq(gates_word.word_select(n, 32) + bias_word.word_select(n, 32))
            accs.append(acc)
            pre_next.append(_saturate(_round_shift(acc * Const(cfg.multiplier, unsigned(16)),
                                                   cfg.shift), lib))
        half = 1 << (lib - 1)
        if lstm:
            gi, gf_, go = sig_i.data, sig_f.data, sig_o.data
            gg = tanh_rp.data
            c_sum = Signal(signed(2 * cb + 2 * cfg.gate_bits + 40))
            m.d.comb += c_sum.eq(((gf_ * c_old) << G) + ((gi * gg) << cfg.cell_frac))
            c_new = Signal(signed(cb))
            m.d.comb += c_new.eq(_saturate(_round_shift(c_sum, 2 * G), cb))
            tc_next = _clip(_round_shift(c_new, cfg.cell_frac - cfg.lut_frac), -half, half - 1) + half
            h_new = Signal(signed(ab))
            m.d.comb += h_new.eq(_saturate(_round_shift(go * tanh_rp.data, 2 * G - cfg.act_frac), ab))

        else:
            # GRU: accs are r, z, n_x = W_in x + b_in, n_h = W_hn h + b_hn.
            acc_nx, acc_nh = Signal(signed(32)), Signal(signed(32))
            h_old = Signal(signed(ab))
            n_acc = Signal(signed(32))
            m.d.comb += n_acc.eq(acc_nx + _round_shift(sig_i.data * acc_nh, G))
            tc_next = _saturate(_round_shift(n_acc * Const(cfg.multiplier, unsigned(16)),
                                             cfg.shift), lib) + half
            z = sig_f.data
            one_minus_z = Signal(signed(cfg.gate_bits + 2))
            m.d.comb += one_minus_z.eq((1 << G) - z)
            h_sum = ((one_minus_z * tanh_rp.data) << cfg.act_frac) + ((z * h_old) << G)
            h_new = Signal(signed(ab))
            m.d.comb += h_new.eq(_saturate(_round_shift(h_sum, 2 * G), ab))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [
                        isz.eq(self.input_size), hsz.eq(self.hidden_size),
                        nsteps.eq(self.steps), cycles.eq(0), done.eq(0), t.eq(0),
                        xbase.eq(0), sbase.eq(0), k.eq(0),
                    ]
                    with m.If((self.steps == 0) | (self.hidden_size == 0)):
                        m.d.sync += done.eq(1)
                    with m.Else():
                        m.d.sync += busy.eq(1)
                        m.next = "COPY"
            with m.State("COPY"):
                m.d.comb += h_rp.addr.eq(h_idx)
                with m.If(k == cols):
                    m.d.sync += k.eq(0)
                    m.next = "DSTART"
                with m.Else():
                    m.d.sync += [v1.eq(1), k1.eq(k), sel_h1.eq(k >= isz), k.eq(k + 1)]
            with m.State("DSTART"):
                m.d.comb += [dense.start.eq(1), dense.rows.eq(hsz * GATES),
                             dense.cols.eq(cols)]
                m.next = "DWAIT"
            with m.State("DWAIT"):
                with m.If(dense.done):
                    m.d.sync += [j.eq(0), grp.eq(0), sub.eq(0)]
                    m.next = "E0"
            with m.State("E0"):
                m.next = "E1"
            with m.State("E1"):
                m.d.sync += [p.eq(v) for p, v in zip(pre, pre_next, strict=True)]
                if lstm:
                    m.d.sync += c_old.eq(c_rp.data)
                else:
                    m.d.sync += [acc_nx.eq(accs[2]), acc_nh.eq(accs[3]), h_old.eq(h_rp.data)]
                m.next = "E2"
            with m.State("E2"):
                m.d.comb += tanh_rp.addr.eq(pre[2] + half)
                m.next = "E3"
            with m.State("E3"):
                m.d.sync += tc_idx.eq(tc_next)
                if lstm:
                    m.d.comb += [c_wp.addr.eq(j), c_wp.data.eq(c_new), c_wp.en.eq(1)]
                m.next = "E4"
            with m.State("E4"):
                m.d.comb += tanh_rp.addr.eq(tc_idx)
                m.next = "E5"
            with m.State("E5"):
                m.d.comb += [h_wp.addr.eq(j), h_wp.data.eq(h_new), h_wp.en.eq(1),
                             s_wp.addr.eq(sbase + j), s_wp.data.eq(h_new), s_wp.en.eq(1)]
                with m.If(j == hsz - 1):
                    with m.If(t == nsteps - 1):
                        m.d.sync += [busy.eq(0), done.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [t.eq(t + 1), xbase.eq(xbase + isz), sbase.eq(sbase + hsz),
                                     k.eq(0)]
                        m.next = "COPY"
                with m.Else():
                    m.d.sync += j.eq(j + 1)
                    if upg == 1:
                        m.d.sync += grp.eq(grp + 1)
                    else:
                        with m.If(sub == upg - 1):
                            m.d.sync += [sub.eq(0), grp.eq(grp + 1)]
                        with m.Else():
                            m.d.sync += sub.eq(sub + 1)
                    m.next = "E0"
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        return m


class LSTMEngine(RNNEngine):
    """:class:`RNNEngine` with ``cell="lstm"``: gates i, f, g, o, state ``h`` and ``c``."""

    def __init__(self, config: RNNQuantConfig, *, lanes: int = 4, max_input: int = 16,
                 max_hidden: int = 16, max_steps: int = 8) -> None:
        super().__init__(config, cell="lstm", lanes=lanes, max_input=max_input,
                         max_hidden=max_hidden, max_steps=max_steps)


class GRUEngine(RNNEngine):
    """:class:`RNNEngine` with ``cell="gru"``: weights by :func:`gru_weight_matrix`, biases by
    :func:`gru_bias_words`, no ``c`` memory; cycles :func:`gru_cycles`."""

    def __init__(self, config: RNNQuantConfig, *, lanes: int = 4, max_input: int = 16,
                 max_hidden: int = 16, max_steps: int = 8) -> None:
        super().__init__(config, cell="gru", lanes=lanes, max_input=max_input,
                         max_hidden=max_hidden, max_steps=max_steps)
