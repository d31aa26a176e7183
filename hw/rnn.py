"""LSTM cell engine: one time step or a whole sequence, gate products on the dense engine.

:class:`LSTMEngine` runs ``steps`` integer LSTM steps (``ir.golden.lstm_step`` iterated, the
exact integer rules of :mod:`ir.golden`) with the hidden state ``h`` and the cell state ``c`` in
on-chip memories. Each step:

1. **copy** (``I + 1`` cycles; ``I + H + 1`` on the first step): ``x_t`` (and on the first
   step the initial ``h``) is copied into the activation memory of a
   :class:`hw.dense.DenseMatVec` submodule (one element per cycle, synchronous reads); later
   steps find ``h`` there already, written by the element-wise stage;
2. **gates** (``dense_cycles(4H, I + H, P) + 2`` cycles): one start cycle, the dense engine's run,
   and one cycle to see its ``done``; the dense engine computes the ``4H`` gate accumulators ``[W_ih | W_hh] @ [x_t; h]`` (int32, wrapping), rows
   interleaved so that row ``4j + k`` is gate ``k`` (i, f, g, o) of hidden unit ``j``;
3. **element-wise** (``H + ELEMENT_LATENCY`` cycles, ``ELEMENT_LATENCY = 10``): an
   eleven-stage pipeline that takes one hidden unit per cycle. It reads the four accumulators and the bias
   ``wrap32(b_ih + b_hh)``, requantizes them with the config's ``multiplier``/``shift`` into
   the ROM input format, looks up sigmoid (i, f, o) and tanh (g) in ROMs, computes ``c'``,
   looks up ``tanh(c')`` and computes ``h'``. ``c'`` and ``h'`` are written back in place (the
   units are independent, and a unit's ``c`` is read in stage 0 and written in stage 8);
   ``h'`` also goes to the ``h_seq`` memory at ``t * H + j`` and to the gate engine's
   activation memory for the next step.

Hence :func:`lstm_cycles`: ``steps * (I + 3 + dense_cycles(4H, I + H, P) + H + 10) + H``, which
the RTL's ``cycles`` output equals exactly (``0`` when ``steps`` or ``hidden`` is zero).
Until 2026-12-05 the element-wise stage took 6 cycles per unit, one unit at a time, and every
step copied ``h``: ``steps * (I + H + 3 + dense_cycles + 6H)``. Until 2026-12-06 the pipeline
had six stages (``H + 5``): the bias add and the requantizing multiply shared a stage, and so
did ``c'``'s products and its rounding, and ``h'``'s product and its rounding; splitting each
costs 3 cycles a step and raised the cell's Fmax on the LFE5U-85F from 31.75 to 56.42 MHz
(8 lanes, input = hidden = 32; 44.64 MHz with the first two splits only). Since then two
stages are balanced at no cycle cost: stage 2 registers the requantizing product and stage 3
rounds and saturates it into the ROM addresses (stage 3 held only those addresses), and stage
5 registers ``c'`` (the GRU's ``n`` accumulator) and stage 6 makes tanh's address from it
(the cell: 68.56 MHz). Since then the sigmoid and tanh ROMs' outputs (block RAMs) are
registered before their multipliers, in stages 4 and 8 (``H + 10``, 2 cycles a step): with
the gate engines' read stages, a ROM into a multiplier had become every cell's longest path
(13.1-13.5 ns on the LFE5U-85F). Every rounding shift followed by a saturation (the ROM
addresses, ``c'``, tanh's address, ``h'``) is now built as :func:`_round_clip`: the range
comparisons on the value before rounding, beside an adder only as wide as the result, instead
of a full-width rounding adder in series with full-width comparisons (that pair had become the
longest path, 11.2-12.4 ns; no cycle cost: the cell 87.51 -> 94.71 MHz). Since then every
write into the gate engine's activation memory (the copy's ``x``/``h`` and the element-wise
stage's ``h'``) goes through one register first, also at no cycle cost: the copy's last write
lands in the cycle the gate engine starts, before it reads any column, and ``h'``'s last in
the next step's copy stage (the path from the ``x_seq`` block RAM into that per-lane LUT-RAM
had become the cell's longest, 10.3-10.9 ns). Since then, again at no cycle cost, the bias
word is read a cycle ahead and registered as its unit enters (the bias block RAM's output ran
into stage 1's adder: 11.0-13.7 ns on the random LSTM layers of ``bench/fpga_mobile.py``),
whether a unit enters is a register rather than a comparison (the cached gate reads' word
registers hung off it), and the GRU multiplies ``n`` by the requantizing multiplier in stage 6
and rounds it in stage 7 (both were stage 7: 16.8 ns). Since then, at no cycle cost: the dense
gate engine's output word is read a cycle ahead and a unit's four gate words registered as it
enters (that block RAM ran into stage 1's adder: 12.7 ns on LSTM-128); whether a requantized
value saturates is found from the accumulator beside the multiplier (:func:`_scaled_flags`:
``a * M >= K`` exactly when ``a >= ceil(K / M)``), leaving stage 3 (and the GRU's stage 7) only
the narrow rounding; the copy reads ``x_seq`` a cycle ahead into a register; the cached gate
reads (below) decode where the port's data goes as the read is issued, and decide a cycle
ahead that a unit starts a gate's new word, so the ``8 * br * 32`` cached-word registers hang
off registers, not logic. Since then those registers take the gate engine's word as stored
(:class:`hw.bcr.BCRMatVec` ``raw_outputs``) with its written-row bit in a register beside it,
applied as the gate word is selected: the written-row select (a 32-to-1 mux fanned out to
every bit of the word) no longer runs into them (12.4-13.0 ns on the BCR-gated LSTMs and
GRU-128). And a unit's gate words are selected from those registers as it enters (stage 0,
from ``nxt`` when it moves into ``cur`` that cycle) and registered, so stage 1's adder starts
from a register rather than a ``br``-to-1 word select (12.1 ns on the trained LSTM). Since
then the requantizing multiplier (stage 2, and the GRU's stage 6) takes the accumulator cut to
the width its unsaturated values need (:func:`_requant_operand`; the saturated ones are
decided by the flags): 17 bits instead of 32 on the trained LSTM, one 18x18 DSP block instead
of two and the adder joining them (10.5 ns). And the cached gate reads' port address is a
register, set the cycle before the read (the refill's priority select and the FSM ran into the
output memory's LUT-RAM read: 11.0 ns); a refill lands a cycle later, so a gate's need is raised
as its move is decided, a cycle earlier, and blocks of 6 rows still keep up (the tests' worst
case: all four gates start new words on the same unit). Since then, again at no cycle cost,
the LSTM's stage 6 registers the cell sum ``f c 2^G + i g 2^cell_frac`` and stage 7 finds both
``c'`` and tanh's address from it, each one comparison deep (:func:`_round_twice_clip`: two
roundings are one floor; from ``c'`` when its saturation can move the address,
:func:`_saturation_idle`); ``c'`` is registered and written in stage 8 (the sum, the
saturating comparisons and the rounding were in series: 9.5-9.9 ns). The GRU's stage 5 forms
``n_acc`` whole, with one adder after ``r * n_h`` (``a_n + round_shift(p, G) = (a_n 2^G +
2^(G-1) + p) >> G``, and ``a_n 2^G + 2^(G-1)`` needs no adder), so stage 6's multiplier
starts from a register. Since then the GRU's pipeline is a stage longer (:data:`GRU_ELEMENT_LATENCY`,
one cycle a step): ``r * n_h``'s two partial products are registered before the adder that
joins them and ``a_n`` (together 11.83 ns), and ``h'``'s ``z h`` and ``1 - z`` a stage before
its sum, which is registered before the rounding and the write (11.63 ns): the GRU-64 layer of
``bench/fpga_mobile.py`` 84.52 -> 100.89 MHz on the LFE5U-85F.

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
:func:`gru_bias_words`, and a pipeline of twelve stages (:data:`GRU_ELEMENT_LATENCY`): requantize r
and z, look them up, form ``n_acc = wrap32(a_n + round_shift(r * b_n, G))``, requantize it and
look up ``tanh``, then ``h' = saturate(round_shift(((2**G - z) * n << act_frac) + (z * h <<
G), 2G))`` with the old ``h[j]`` read from the ``h`` memory in stage 0 and carried along. No
``c`` memory. ``r * n_h`` is two DSP-sized partial products (``n_h``'s low 16 bits and the
rest), registered in stage 5; stage 6 adds them and ``a_n`` (one carry-save layer and one
carry chain). Until 2026-12-07 one stage held both products, the adder joining them and
``a_n``'s (eleven stages, the GRU's longest path: 11.83 ns on the LFE5U-85F). Hence
:func:`gru_cycles`: :func:`lstm_cycles` plus one cycle a step.

BCR gates
---------
With ``gates="bcr"`` the gate products run on a :class:`hw.bcr.BCRMatVec` submodule instead
(any positive number of lanes) whose matrix is :func:`bcr_gate_matrix`: the pruned ``W_ih`` and
``W_hh`` exactly as :mod:`pruning` BCR-prunes them (each one separately, gate-major rows in
PyTorch order, blocks of the engine's ``block``), placed side by side as
``[W_ih | 0 | W_hh]`` with ``W_hh`` starting at column ``ceil(I / bc) * bc``
(:func:`bcr_gate_layout`), so that every BCR block of each pruned matrix is one block of the
stacked matrix and no block mixes the two. For a GRU the ``W_hn`` rows move to rows
``R0 .. R0 + H``, ``R0 = 2H + ceil(H / br) * br`` (same offset within a block as in ``W_hh``,
so its blocks stay blocks; a block straddling ``W_hz``/``W_hn`` splits in two), leaving
``[W_in | 0]`` in rows ``2H .. 3H``. A run starts with a **setup** stage (once per sequence,
:func:`bcr_setup_cycles` ``= max(ceil(I / bc), ceil(H / br)) + 1`` cycles) that finds these
offsets by repeated addition; each step then takes the copy stage (``x`` to columns ``0 .. I``,
on the first step ``h`` to columns ``ceil(I / bc) * bc ..``, where the element-wise stage
writes ``h'`` later), ``bcr_cycles(S, P) + 2`` gate cycles and the same element-wise stage,
which reads gate ``k`` of unit ``j`` from output row ``base_k + j`` of the BCR output memory
(words of ``br`` rows). How it reads them is the build parameter ``gate_read``
(:data:`GATE_READS`, :func:`resolve_gate_read`):

* ``"ports"``: four read ports of that memory, one per gate. Each port is one more copy of
  the memory in LUT-RAM (``br * 32``-bit words): on the LFE5U-85F the two-slice trained LSTM's
  output memories took 1,024 of its 1,134 LUT-RAM cells, and nextpnr could not route it.
* ``"cached"`` (from blocks of :data:`CACHED_MIN_BLOCK_ROWS` rows; ``"auto"`` picks it
  there): one read port. Each gate's current word and the next are held in registers
  (``2 * 4 * br * 32`` flip-flops); a **fetch** stage of :data:`GATE_FETCH_CYCLES` cycles
  between the gate product and the element-wise stage reads the four current words, then
  the four next ones; in the element-wise stage, a unit that starts a gate's new word moves
  the next word in, and the port refills it (lowest gate first), within the ``br`` units
  before that gate needs another.

Hence :func:`rnn_bcr_cycles`: ``bcr_setup_cycles + steps * (I + 3 + bcr_cycles(S, P) + F + H
+ L) + H``, ``F`` = 8 cached, 0 with ports, ``L`` = :func:`element_latency` (10 for an LSTM, 11
for a GRU). The weight memories are
the BCR engine's ``meta``, ``col_index``, ``row_index`` and ``values`` (:func:`hw.bcr.pack_bcr`
of the stacked matrix; runtime input ``blocks``) instead of ``weights``.

With ``slices`` (BCR gates only; default 1) the gate engine is a sliced
:class:`hw.bcr.BCRMatVec`: ``slices`` pipelines of ``P`` lanes each over disjoint contiguous
ranges of block rows of the stacked matrix (:func:`hw.bcr.bcr_partition`), so the gate product
keeps getting faster where more lanes gain nothing (``P`` at the kept rows of a block). The four
weight memories are banked as the BCR engine's are (slice ``s``'s word ``i`` at
``s << bank_bits | i``, images ``pack_bcr(S, P, slices).bank(s)``; ``max_blocks`` and
``max_value_words`` per slice) and the per-slice block counts come in as the runtime input
``slice_blocks``, latched at ``start`` with ``blocks``. The copy and element-wise stages write
``x`` and ``h'`` through the BCR engine's one activation port, which writes every slice's copy.
A step takes ``bcr_cycles(S, P, slices) + 2`` gate cycles (the slowest slice's items), and
:func:`rnn_bcr_cycles` takes ``slices``. With one slice the Verilog is the same as without the
option.

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
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.bcr import MAX_SLICES, BCRMatVec, _check_block, bcr_cycles, check_bcr_parameters
from hw.bcr import PIPELINE_LATENCY as BCR_LATENCY
from hw.dense import CYCLE_COUNTER_BITS, DenseMatVec, _check_int, dense_cycles
from ir.bcr import BCRMatrix, encode_bcr
from ir.fixedpoint import round_shift
from ir.golden import RNNQuantConfig

__all__ = ["CACHED_MIN_BLOCK_ROWS", "GRUEngine", "LSTMEngine", "RNNEngine", "ELEMENT_LATENCY",
           "GATE_ENGINES", "GATE_FETCH_CYCLES", "GATE_READS", "GRU_ELEMENT_LATENCY",
           "bcr_gate_layout", "element_latency",
           "bcr_gate_matrix", "bcr_setup_cycles", "check_lstm_parameters", "resolve_gate_read",
           "gru_bias_words", "gru_cycles", "gru_weight_matrix", "lstm_bias_words",
           "lstm_cycles", "lstm_weight_matrix", "rnn_bcr_cycles", "rnn_cycles", "step_overhead_cycles"]

#: Engines the gate products can run on.
GATE_ENGINES = ("dense", "bcr")

#: Pipeline latency of the LSTM's element-wise stage: a step's stage takes ``H +
#: ELEMENT_LATENCY`` cycles (one hidden unit enters per cycle, eleven stages).
ELEMENT_LATENCY = 10
#: The GRU's (:func:`element_latency`): one stage more, twelve, in which ``r * n_h``'s two
#: partial products are registered before the adder that forms ``n_acc``.
GRU_ELEMENT_LATENCY = 11
#: Gates per LSTM unit (i, f, g, o).
GATES = 4
#: How the element-wise stage reads the BCR gate engine's output memory (BCR gates only):
#: ``"ports"``, one read port per gate; ``"cached"``, one read port, each gate's current and
#: next output word held in registers; ``"auto"``, cached from blocks of
#: :data:`CACHED_MIN_BLOCK_ROWS` rows, else ports.
GATE_READS = ("auto", "ports", "cached")
#: Smallest block height the cached read keeps up with: four gates share one read port, and
#: each gate needs a new word every ``block rows`` units.
CACHED_MIN_BLOCK_ROWS = 6
#: Cycles a step the cached read spends fetching every gate's first two words, between the
#: gate product and the element-wise stage.
GATE_FETCH_CYCLES = 2 * GATES


def resolve_gate_read(gate_read: str, block: tuple[int, int]) -> str:
    """The gate read (``"ports"`` or ``"cached"``) an engine with ``block`` builds for
    ``gate_read`` (one of :data:`GATE_READS`).

    Raises
    ------
    ValueError
        ``"Gate read must be 'auto', 'ports' or 'cached', not 'x'"``, or ``"Cached gate reads
        need blocks of at least 6 rows, not 4"``.
    """
    if gate_read not in GATE_READS:
        raise ValueError(f"Gate read must be 'auto', 'ports' or 'cached', not {gate_read!r}")
    br = _check_block(block)[0]
    if gate_read == "auto":
        return "cached" if br >= CACHED_MIN_BLOCK_ROWS else "ports"
    if gate_read == "cached" and br < CACHED_MIN_BLOCK_ROWS:
        raise ValueError(f"Cached gate reads need blocks of at least {CACHED_MIN_BLOCK_ROWS} "
                         f"rows, not {br}")
    return gate_read


def _checked_run(input_size: int, hidden_size: int, steps: int, lanes: int
                 ) -> tuple[int, int, int, int]:
    return (_check_int(input_size, "Input size", 0), _check_int(hidden_size, "Hidden size", 0),
            _check_int(steps, "Steps", 0), _check_int(lanes, "Lanes", 1))


def element_latency(cell: str = "lstm") -> int:
    """Pipeline latency of ``cell``'s element-wise stage (``"lstm"`` or ``"gru"``): a step's
    element-wise stage takes ``H +`` this many cycles, :data:`ELEMENT_LATENCY` (10) for an LSTM
    and :data:`GRU_ELEMENT_LATENCY` (11) for a GRU.

    Raises
    ------
    ValueError
        ``"Cell must be 'lstm' or 'gru', not 'rnn'"``.
    """
    return GRU_ELEMENT_LATENCY if _check_cell(cell) == "gru" else ELEMENT_LATENCY


def step_overhead_cycles(input_size: int, hidden_size: int, steps: int,
                         cell: str = "lstm") -> int:
    """Cycles of a whole run that no lane count shortens: every step's copy, gate start and
    element-wise stages, ``steps * (I + 3 + H + L) + H`` with ``L`` =
    :func:`element_latency` of ``cell`` (``I + H + 1`` copy cycles on the first step, ``I + 1``
    after it; 2 around the gate product; ``H + L`` element-wise), or ``0`` when ``steps`` or
    ``hidden_size`` is zero.
    """
    i = _check_int(input_size, "Input size", 0)
    h = _check_int(hidden_size, "Hidden size", 0)
    t = _check_int(steps, "Steps", 0)
    lat = element_latency(cell)
    if t == 0 or h == 0:
        return 0
    return t * (i + 3 + h + lat) + h


def lstm_cycles(input_size: int, hidden_size: int, steps: int, lanes: int) -> int:
    """Cycle model of :class:`LSTMEngine`: cycles from ``start`` to ``done``.

    Returns ``steps * (I + 3 + dense_cycles(4H, I + H, lanes) + H + 10) + H`` (the first step
    also copies ``h``), or ``0`` when ``steps`` or ``hidden_size`` is zero.
    """
    i, h, t, p = _checked_run(input_size, hidden_size, steps, lanes)
    if t == 0 or h == 0:
        return 0
    return t * dense_cycles(GATES * h, i + h, p) + step_overhead_cycles(i, h, t)


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
    """Cycle model of :class:`GRUEngine`: :func:`lstm_cycles` (four dense rows per hidden
    unit, the same copy stage) plus one cycle a step, the GRU's element-wise stage being a
    stage longer (:data:`GRU_ELEMENT_LATENCY`)."""
    i, h, t, p = _checked_run(input_size, hidden_size, steps, lanes)
    if t == 0 or h == 0:
        return 0
    return t * dense_cycles(GATES * h, i + h, p) + step_overhead_cycles(i, h, t, "gru")


def rnn_cycles(cell: str, input_size: int, hidden_size: int, steps: int, lanes: int) -> int:
    """:func:`lstm_cycles` or :func:`gru_cycles`, as ``cell`` (``"lstm"`` or ``"gru"``) says:
    the dense-gated engine's cycle model."""
    return (gru_cycles if _check_cell(cell) == "gru" else lstm_cycles)(
        input_size, hidden_size, steps, lanes)


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


def _check_cell(cell: Any) -> str:
    if cell not in ("lstm", "gru"):
        raise ValueError(f"Cell must be 'lstm' or 'gru', not {cell!r}")
    return cell


def bcr_gate_layout(cell: str, input_size: int, hidden_size: int, block: tuple[int, int]
                    ) -> dict[str, Any]:
    """Where the gates sit in the stacked BCR gate matrix of :func:`bcr_gate_matrix`.

    Returns
    -------
    dict
        ``rows``, ``cols`` (shape of the stacked matrix), ``h_col`` (first column of ``W_hh``,
        ``ceil(I / bc) * bc``) and ``bases``: for gates i, f, g, o (LSTM) or r, z, n_x, n_h
        (GRU), the row of unit 0 (``0, H, 2H, 3H`` or ``0, H, 2H, 2H + ceil(H / br) * br``).
    """
    _check_cell(cell)
    i = _check_int(input_size, "Input size", 0)
    h = _check_int(hidden_size, "Hidden size", 0)
    br, bc = _check_block(block)
    h_col = -(-i // bc) * bc
    last = 3 * h if cell == "lstm" else 2 * h + -(-h // br) * br
    return {"rows": last + h, "cols": h_col + h, "h_col": h_col, "bases": (0, h, 2 * h, last)}


def bcr_gate_matrix(cell: str, qweight_ih: np.ndarray, qweight_hh: np.ndarray,
                    block: tuple[int, int], mask_ih: Any = None, mask_hh: Any = None
                    ) -> BCRMatrix:
    """The BCR-encoded gate matrix the ``gates="bcr"`` engine runs (module docstring).

    Parameters
    ----------
    cell : {"lstm", "gru"}
    qweight_ih, qweight_hh : numpy.ndarray
        Integer weights in PyTorch gate order, ``(G*H, I)`` and ``(G*H, H)`` with ``G`` 4
        (LSTM) or 3 (GRU), as a bundle stores them.
    block : (int, int)
        The BCR block the weights were pruned with.
    mask_ih, mask_hh : array-like, optional
        Their BCR masks (``mask_ih``/``mask_hh`` of a bundle layer); default: the non-zeros.

    Returns
    -------
    ir.bcr.BCRMatrix
        ``encode_bcr`` of the stacked matrix with the stacked masks, shape
        ``(rows, cols)`` of :func:`bcr_gate_layout`.
    """
    _check_cell(cell)
    g = GATES if cell == "lstm" else 3
    w_ih, w_hh = np.asarray(qweight_ih), np.asarray(qweight_hh)
    if w_hh.ndim != 2 or w_hh.shape[0] != g * w_hh.shape[1]:
        raise ValueError(f"qweight_hh must have shape ({g}*hidden, hidden), not {w_hh.shape}")
    hidden = w_hh.shape[1]
    if w_ih.ndim != 2 or w_ih.shape[0] != g * hidden:
        raise ValueError(f"qweight_ih must have shape ({g * hidden}, input), not {w_ih.shape}")
    m_ih = w_ih != 0 if mask_ih is None else np.asarray(mask_ih).astype(bool)
    m_hh = w_hh != 0 if mask_hh is None else np.asarray(mask_hh).astype(bool)
    for m, w, what in ((m_ih, w_ih, "mask_ih"), (m_hh, w_hh, "mask_hh")):
        if m.shape != w.shape:
            raise ValueError(f"{what} must have shape {w.shape}, not {m.shape}")
    lay = bcr_gate_layout(cell, w_ih.shape[1], hidden, block)
    rows, cols, hc = lay["rows"], lay["cols"], lay["h_col"]
    w = np.zeros((rows, cols), dtype=np.int64)
    mask = np.zeros((rows, cols), dtype=bool)
    isz, h2 = w_ih.shape[1], 2 * hidden
    for dst, src in ((w, w_ih), (mask, m_ih)):
        dst[:g * hidden, :isz] = src
    if cell == "lstm":
        w[:, hc:], mask[:, hc:] = w_hh, m_hh
    else:
        w[:h2, hc:], mask[:h2, hc:] = w_hh[:h2], m_hh[:h2]
        last = lay["bases"][3]
        w[last:, hc:], mask[last:, hc:] = w_hh[h2:], m_hh[h2:]
    return encode_bcr(w, block, mask)


def bcr_setup_cycles(input_size: int, hidden_size: int, block: tuple[int, int]) -> int:
    """Cycles of the BCR engine's setup stage: ``max(ceil(I / bc), ceil(H / br)) + 1``."""
    br, bc = _check_block(block)
    i = _check_int(input_size, "Input size", 0)
    h = _check_int(hidden_size, "Hidden size", 0)
    return max(-(-i // bc), -(-h // br)) + 1


def rnn_bcr_cycles(bcr: BCRMatrix, input_size: int, hidden_size: int, steps: int,
                   lanes: int, slices: int = 1, gate_read: str = "auto",
                   cell: str = "lstm") -> int:
    """Cycle model of the ``gates="bcr"`` :class:`LSTMEngine`/:class:`GRUEngine`.

    ``bcr`` is :func:`bcr_gate_matrix` of the layer (its block is the engine's), ``lanes`` the
    lanes of each of the gate engine's ``slices`` slices, ``gate_read`` the engine's (one of
    :data:`GATE_READS`), ``cell`` ``"lstm"`` or ``"gru"``. Returns ``bcr_setup_cycles(I, H,
    block) + steps * (bcr_cycles(bcr, P, S) + F) + step_overhead_cycles(I, H, steps, cell)``
    with ``F`` = :data:`GATE_FETCH_CYCLES` for cached gate reads and 0 for ports, or ``0``
    when ``steps`` or ``hidden_size`` is zero.
    """
    i, h, t, p = _checked_run(input_size, hidden_size, steps, lanes)
    s = _check_int(slices, "Slices", 1, MAX_SLICES)
    fetch = GATE_FETCH_CYCLES if resolve_gate_read(gate_read, bcr.block) == "cached" else 0
    if t == 0 or h == 0:
        return 0
    return (bcr_setup_cycles(i, h, bcr.block) + t * (bcr_cycles(bcr, p, s) + fetch)
            + step_overhead_cycles(i, h, t, cell))


def check_lstm_parameters(config: RNNQuantConfig, *, lanes: int = 4, max_input: int = 16,
                          max_hidden: int = 16, max_steps: int = 8, gates: str = "dense",
                          block: tuple[int, int] | None = None, max_blocks: int | None = None,
                          max_value_words: int | None = None, cell: str = "lstm",
                          slices: int = 1, gate_read: str = "auto") -> dict[str, Any]:
    """Validate :class:`LSTMEngine` / :class:`GRUEngine` parameters without building anything.

    Returns the constructor keywords (``lanes``, ``max_input``, ``max_hidden``, ``max_steps``,
    ``gates``; with BCR gates also ``block``, default ``(8, 16)``, and the BCR memory depths
    ``max_blocks``, ``max_value_words``, default the whole block grid fully kept, per slice;
    and ``slices`` when more than 1, and ``gate_read`` resolved by :func:`resolve_gate_read`,
    ``"ports"`` or ``"cached"``). The worst case checked against the cycle counter is
    every step's gate product filling one slice's ``max_value_words``, whatever ``slices``.

    Raises
    ------
    TypeError
        If ``config`` is not an :class:`ir.golden.RNNQuantConfig` or a size is not an int.
    ValueError
        E.g. ``"Lanes must be a positive multiple of 4, not 6"`` (dense gates),
        ``"Maximum hidden size must be a positive integer, not 0"``, ``"Gates must be 'dense'
        or 'bcr', not 'csr'"``, ``"Slices are for BCR gates only, not dense gates"``,
        ``"Slices must be an integer between 1 and 16, not 17"``, ``"Gate read is for BCR gates
        only, not dense gates"``, :func:`resolve_gate_read`'s messages, or a worst case beyond
        the 32-bit cycle counter.
    """
    if not isinstance(config, RNNQuantConfig):
        raise TypeError(f"Config must be an RNNQuantConfig, not {type(config).__name__}")
    _check_cell(cell)
    if gates not in GATE_ENGINES:
        raise ValueError(f"Gates must be 'dense' or 'bcr', not {gates!r}")
    lanes_i = _check_int(lanes, "Lanes", 1)
    if gates == "dense" and lanes_i % GATES:
        raise ValueError(f"Lanes must be a positive multiple of 4, not {lanes_i}")
    if gates == "dense" and (block, max_blocks, max_value_words) != (None, None, None):
        raise ValueError("Block, maximum blocks and maximum value words are for BCR gates only, "
                         "not dense gates")
    slices_i = _check_int(slices, "Slices", 1, MAX_SLICES)
    if gates == "dense" and slices_i != 1:
        raise ValueError("Slices are for BCR gates only, not dense gates")
    if gates == "dense" and gate_read != "auto":
        raise ValueError("Gate read is for BCR gates only, not dense gates")
    params = {
        "lanes": lanes_i,
        "max_input": _check_int(max_input, "Maximum input size", 1),
        "max_hidden": _check_int(max_hidden, "Maximum hidden size", 1),
        "max_steps": _check_int(max_steps, "Maximum steps", 1),
        "gates": gates,
    }
    mi, mh, mt = params["max_input"], params["max_hidden"], params["max_steps"]
    if gates == "dense":
        worst = rnn_cycles(cell, mi, mh, mt, lanes_i)
    else:
        blk = (8, 16) if block is None else _check_block(block)
        lay = bcr_gate_layout(cell, mi, mh, blk)
        b = check_bcr_parameters(lanes_i, block=blk, weight_bits=config.weight_bits,
                                 act_bits=config.act_bits, max_rows=lay["rows"],
                                 max_cols=lay["cols"], max_blocks=max_blocks,
                                 max_value_words=max_value_words, slices=slices_i)
        read = resolve_gate_read(gate_read, blk)
        params.update(block=blk, max_blocks=b["max_blocks"],
                      max_value_words=b["max_value_words"], gate_read=read)
        if slices_i > 1:
            params["slices"] = slices_i
        fetch = GATE_FETCH_CYCLES if read == "cached" else 0
        worst = (bcr_setup_cycles(mi, mh, blk) + mt * (b["max_value_words"] + BCR_LATENCY + fetch)
                 + step_overhead_cycles(mi, mh, mt, cell))
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


def _round_clip(v: Value, s: int, lo: int, hi: int,
                flags: tuple[Value, Value] | None = None) -> Value:
    """``_clip(_round_shift(v, s), lo, hi)`` with no adder in series with the comparisons.

    For ``s > 0``, with ``y = v >> (s - 1)`` (floor), ``round_shift(v, s) = (y + 1) >> 1``, so
    the result is above ``hi`` exactly when ``y >= 2 hi + 1`` and below ``lo`` exactly when
    ``y <= 2 lo - 2``; in between it lies in ``[lo, hi]`` and only the low bits of ``y`` decide
    it. The two comparisons read ``y`` directly and the rounding adder is as narrow as the
    result, side by side instead of a full-width adder followed by a full-width comparison
    (that pair of carry chains was the element-wise stage's longest path).

    ``flags``, when given, are ``(above, below)``: whether ``y >= 2 hi + 1`` and whether
    ``y <= 2 lo - 2``, found a stage earlier (:func:`_scaled_flags`); then only the narrow
    rounding is left here.
    """
    if s <= 0:
        return _clip(_round_shift(v, s), lo, hi)
    return _clip_floor(Value.cast(v >> (s - 1)), 1, 1, 0, lo, hi, flags)


def _clip_floor(u: Value, k: int, t: int, left: int, lo: int, hi: int,
                flags: tuple[Value, Value] | None = None) -> Value:
    """``clip(floor((u + k) / 2**t) << left, lo, hi)`` (``0 <= k < 2**t``, ``left >= 0``),
    one comparison deep: :func:`_round_clip`'s construction for any constant ``k`` and ``t``.

    With ``r = floor((u + k) / 2**t)``, the result is ``hi`` exactly when
    ``r > floor(hi / 2**left)``, that is ``u >= (floor(hi / 2**left) + 1) * 2**t - k``, and
    ``lo`` exactly when ``r < ceil(lo / 2**left)``, that is ``u < ceil(lo / 2**left) * 2**t -
    k``: comparisons of ``u`` with constants. In between, ``r`` fits the result's width ``w``,
    so only the low ``w + t`` bits of ``u`` enter the adder. ``flags``, when given, are those
    two comparisons found earlier (``(above, below)``).
    """
    r_hi, r_lo = hi >> left, -((-lo) >> left)
    assert 0 <= k < 1 << t and r_lo <= r_hi, (k, t, lo, hi, left)
    w = max(r_lo.bit_length(), r_hi.bit_length()) + 1      # signed bits holding [r_lo, r_hi]
    if len(u) > w + t:
        low = (u.as_unsigned()[:w + t] + k)[t:w + t].as_signed()
    else:                                   # u no wider than the adder: round it whole
        low = (u + k) >> t
    if flags is None:
        flags = (u >= ((r_hi + 1) << t) - k, u < (r_lo << t) - k)
    above, below = flags
    return Mux(above, hi, Mux(below, lo, low << left))


def _saturation_idle(bits: int, s: int, lo: int, hi: int) -> bool:
    """Whether ``clip(round_shift(saturate(x, bits), s), lo, hi)`` equals
    ``clip(round_shift(x, s), lo, hi)`` for every ``x``: the rounding and the clip are monotone,
    so exactly when the rails ``+-(2**(bits - 1) - 1)`` already clip to ``hi`` and ``lo``."""
    rail = (1 << (bits - 1)) - 1
    return (min(max(round_shift(rail, s), lo), hi) == hi
            and min(max(round_shift(-rail, s), lo), hi) == lo)


def _round_twice_clip(v: Value, a: int, b: int, lo: int, hi: int) -> Value:
    """``clip(round_shift(round_shift(v, a), b), lo, hi)`` for ``a >= 0``, one comparison deep
    (:func:`_clip_floor`): with ``u = floor(v / 2**(a - 1))``, ``round_shift(v, a) = floor((u
    + 1) / 2)``, and rounding that by ``b > 0`` is ``floor((u + 1 + 2**b) / 2**(b + 1))``
    (a floor of a floor is one floor); ``b <= 0`` shifts it left."""
    assert a >= 0
    u, k, t = (Value.cast(v >> (a - 1)), 1, 1) if a > 0 else (Value.cast(v), 0, 0)
    if b > 0:
        k, t = k + (1 << (t + b - 1)), t + b
    return _clip_floor(u, k, t, max(-b, 0), lo, hi)


def _scaled_flags(m: Module, a: Value, mult: int, s: int, lo: int, hi: int,
                  name: str) -> tuple[Value, Value] | None:
    """:func:`_round_clip`'s ``flags`` for ``v = a * mult`` (``mult >= 0``), registered from
    ``a`` in the stage that registers the product, or None when ``s <= 0``.

    ``a * mult >= K`` exactly when ``a >= ceil(K / mult)`` (``mult > 0``), so the two
    comparisons against ``v >> (s - 1)`` become comparisons of ``a`` with constants, side by
    side with the multiplier instead of after it.
    """
    if s <= 0:
        return None
    k_hi, k_lo = (2 * hi + 1) << (s - 1), (2 * lo - 1) << (s - 1)
    above, below = Signal(name=f"{name}_above"), Signal(name=f"{name}_below")
    if mult == 0:                                       # v = 0
        m.d.sync += [above.eq(0 >= k_hi), below.eq(0 < k_lo)]
    else:
        m.d.sync += [above.eq(a >= -(-k_hi // mult)), below.eq(a < -(-k_lo // mult))]
    return above, below


def _signed_bits(x: int) -> int:
    """Bits of the narrowest two's complement field holding ``x``."""
    return (x if x >= 0 else -x - 1).bit_length() + 1


def _requant_operand(a: Value, mult: int, s: int, lo: int, hi: int) -> Value:
    """``a`` cut to the signed width that holds every ``a`` whose requantization
    ``round_shift(a * mult, s)`` lies in ``[lo, hi]``, for a multiplier that only matters there.

    With :func:`_scaled_flags`, ``a`` is not saturated exactly when
    ``ceil(k_lo / mult) <= a <= ceil(k_hi / mult) - 1``; for those ``a`` the cut value equals
    ``a`` and so does the product, and for the others the flags replace the result whatever
    the product. A 32-bit accumulator then meets the 32x16 multiplier as, typically, an
    18-bit operand: one DSP block (18x18) instead of two and the adder joining them.
    ``a`` unchanged when ``s <= 0`` (no flags), ``mult == 0``, or it is no wider already.
    """
    if s <= 0 or mult == 0:
        return a
    k_hi, k_lo = (2 * hi + 1) << (s - 1), (2 * lo - 1) << (s - 1)
    width = max(_signed_bits(-(-k_lo // mult)), _signed_bits(-(-k_hi // mult) - 1))
    if width >= len(a):
        return a
    return a[:width].as_signed()


def _round_saturate(v: Value, s: int, bits: int,
                    flags: tuple[Value, Value] | None = None) -> Value:
    """``_saturate(_round_shift(v, s), bits)``, as :func:`_round_clip` computes it."""
    hi = (1 << (bits - 1)) - 1
    return _round_clip(v, s, -hi, hi, flags)


class RNNEngine(wiring.Component):
    """Integer LSTM or GRU cell over a sequence, bit-exact with iterated
    ``ir.golden.lstm_step`` / ``ir.golden.gru_step`` (use :class:`LSTMEngine`, :class:`GRUEngine`).

    Parameters
    ----------
    config : ir.golden.RNNQuantConfig
        Integer formats (fixes ROM contents and widths).
    cell : {"lstm", "gru"}
    lanes : int
        MAC lanes of the gate engine: a positive multiple of 4 on the dense engine, any positive
        integer on the BCR engine.
    max_input, max_hidden, max_steps : int
        Largest shape one build serves (sizes the memories).
    gates : {"dense", "bcr"}
        The gate matrix-vector engine (module docstring).
    block : (int, int), optional
        BCR gates only: the block of the pruned weights (default ``(8, 16)``).
    max_blocks, max_value_words : int, optional
        BCR gates only: depths of the BCR ``meta`` and ``values`` memories (default: the
        whole block grid of the largest stacked gate matrix, fully kept); per slice.
    slices : int, optional
        BCR gates only: slices ``S`` of the gate engine, 1 to :data:`hw.bcr.MAX_SLICES`
        (default 1): ``S`` pipelines of ``lanes`` lanes over disjoint block rows of the
        stacked gate matrix (:class:`hw.bcr.BCRMatVec`).
    gate_read : {"auto", "ports", "cached"}, optional
        BCR gates only: how the element-wise stage reads the gate engine's output memory
        (module docstring; :func:`resolve_gate_read`). Default ``"auto"``.

    Members
    -------
    start : ``In(1)``; input_size, hidden_size, steps : runtime shape latched at ``start``
        (``input_size`` from 1, at most the maxima; zero ``steps`` or ``hidden_size`` sets
        ``done`` at once with ``cycles == 0``).
    blocks : ``In`` (BCR gates only)
        Stored blocks of the stacked gate matrix, latched at ``start``.
    slice_blocks : ``In`` (BCR gates with ``slices > 1`` only)
        The blocks of each slice (:attr:`hw.bcr.BCRImages.slice_blocks`), latched at
        ``start``.
    busy, done : ``Out(1)``; cycles : ``Out(32)``, equal to :func:`lstm_cycles` (dense gates)
        or :func:`rnn_bcr_cycles` (BCR gates).
    w_wr (dense: packed weights; BCR: the ``values`` memory), meta_wr, col_wr, row_wr (BCR
        only; with slices the four banked as in :class:`hw.bcr.BCRMatVec`), b_wr, x_wr, h_wr,
        c_wr : bench write ports; h_rd, c_rd, hseq_rd : bench read ports.
    """

    def __init__(self, config: RNNQuantConfig, *, cell: str = "lstm", lanes: int = 4,
                 max_input: int = 16, max_hidden: int = 16, max_steps: int = 8,
                 gates: str = "dense", block: tuple[int, int] | None = None,
                 max_blocks: int | None = None, max_value_words: int | None = None,
                 slices: int = 1, gate_read: str = "auto") -> None:
        try:
            _check_cell(cell)
            params = check_lstm_parameters(config, lanes=lanes, max_input=max_input,
                                           max_hidden=max_hidden, max_steps=max_steps,
                                           gates=gates, block=block, max_blocks=max_blocks,
                                           max_value_words=max_value_words, cell=cell,
                                           slices=slices, gate_read=gate_read)
        except (TypeError, ValueError):
            self._MustUse__silence = True  # a rejected engine is not an unused one
            raise
        self.config = config
        self.cell = cell
        self.gates = params["gates"]
        self.lanes = params["lanes"]
        self.max_input = params["max_input"]
        self.max_hidden = params["max_hidden"]
        self.max_steps = params["max_steps"]
        self.slices = params.get("slices", 1)
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
        }
        if self.gates == "dense":
            self.weight_depth = max(2, -(-GATES * self.max_hidden // self.lanes)
                                    * (self.max_input + self.max_hidden))
            self.weight_layout = data.ArrayLayout(signed(config.weight_bits), self.lanes)
            members["w_wr"] = Out(WritePort.Signature(addr_width=a(self.weight_depth),
                                                      shape=self.weight_layout))
        else:
            self.block = params["block"]
            self.gate_read = params["gate_read"]
            self.max_blocks = params["max_blocks"]
            self.max_value_words = params["max_value_words"]
            lay = bcr_gate_layout(cell, self.max_input, self.max_hidden, self.block)
            self.gate_rows, self.gate_cols = lay["rows"], lay["cols"]
            proto = self._gate_engine()
            proto._MustUse__silence = True  # only its signature and memory map are used
            self._bcr_proto = proto
            self.widths = proto.widths
            members["blocks"] = In(range(self.slices * self.max_blocks + 1))
            if self.slices > 1:
                members["slice_blocks"] = proto.signature.members["slice_blocks"]
            for port in ("meta_wr", "col_wr", "row_wr", "w_wr"):
                members[port] = proto.signature.members[port]
        members.update({
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
        })
        if cell == "gru":
            del members["c_wr"], members["c_rd"]
        super().__init__(members)

    def _gate_engine(self) -> BCRMatVec:
        cfg = self.config
        return BCRMatVec(self.lanes, block=self.block, weight_bits=cfg.weight_bits,
                         act_bits=cfg.act_bits, acc_bits=32, max_rows=self.gate_rows,
                         max_cols=self.gate_cols, max_blocks=self.max_blocks,
                         max_value_words=self.max_value_words,
                         out_ports=1 if self.gate_read == "cached" else GATES,
                         slices=self.slices, raw_outputs=self.gate_read == "cached")

    def parameters(self) -> dict[str, Any]:
        """Build parameters, JSON-serialisable, as recorded in the emitted sidecar."""
        c = self.config
        p = {
            "engine": self.cell, "lanes": self.lanes, "max_input": self.max_input,
            "max_hidden": self.max_hidden, "max_steps": self.max_steps,
            "element_latency": element_latency(self.cell),
            "config": {k: getattr(c, k) for k in (
                "multiplier", "shift", "weight_bits", "act_bits", "act_frac", "gate_bits",
                "lut_index_bits", "lut_frac", "cell_bits", "cell_frac")},
        }
        if self.gates == "bcr":
            p.update(gates="bcr", block=list(self.block), max_blocks=self.max_blocks,
                     max_value_words=self.max_value_words, gate_rows=self.gate_rows,
                     gate_cols=self.gate_cols, gate_read=self.gate_read)
            if self.slices > 1:
                p["slices"] = self.slices
        return p

    def memory_map(self) -> list[dict[str, Any]]:
        """The memories a bench fills or reads (recorded in the JSON sidecar). With BCR gates
        on several slices the four BCR memories are the gate engine's banked entries
        (``copies``, ``bank_stride``: :meth:`hw.bcr.BCRMatVec.memory_map`)."""
        def sig(port):
            return {k: f"{port}__{k}" for k in ("addr", "data", "en")}
        c = self.config
        P, wb = self.lanes, c.weight_bits
        if self.gates == "dense":
            weights = [
                {"name": "weights", "depth": self.weight_depth, "width": P * wb, "lanes": P,
                 "lane_bits": wb, "access": "write", "port": "w_wr", "signals": sig("w_wr"),
                 "layout": f"hw.dense.pack_weights of hw.rnn.{self.cell}_weight_matrix(W_ih, "
                           "W_hh) with cols = input_size + hidden_size"}]
        else:
            packed = f"hw.bcr.pack_bcr(hw.rnn.bcr_gate_matrix('{self.cell}', W_ih, W_hh, block)"
            packed += ")" if self.slices == 1 else f", {P}, {self.slices}).bank(s)"
            weights = [dict(mm, layout=f"{mm['layout']}; of {packed}")
                       for mm in self._bcr_proto.memory_map()
                       if mm["name"] in ("meta", "col_index", "row_index", "values")]
        mems = weights + [
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
            for mm in mems:
                if mm["name"] == "bias":
                    mm["layout"] = ("address j holds wrap32(b_ir + b_hr), wrap32(b_iz + b_hz), "
                                    "b_in, b_hn of unit j")
        return mems

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        P = self.lanes
        G = cfg.gate_frac
        ab, cb, lib = cfg.act_bits, cfg.cell_bits, cfg.lut_index_bits
        lstm = self.cell == "lstm"
        bcr = self.gates == "bcr"
        cached = bcr and self.gate_read == "cached"

        if bcr:
            br, bc = self.block
            m.submodules.gates = eng = self._gate_engine()
            for port in ("meta_wr", "col_wr", "row_wr", "w_wr"):
                mine, theirs = getattr(self, port), getattr(eng, port)
                m.d.comb += [theirs.addr.eq(mine.addr), theirs.data.eq(mine.data),
                             theirs.en.eq(mine.en)]
            out_ports = [eng.out_rd] + [getattr(eng, f"out_rd{n}")
                                        for n in range(1, 1 if cached else GATES)]
            copy_cols = self.gate_cols
        else:
            upg = P // GATES  # hidden units per dense row group
            m.submodules.dense = eng = DenseMatVec(
                P, weight_bits=cfg.weight_bits, act_bits=cfg.act_bits, acc_bits=32,
                max_rows=GATES * self.max_hidden, max_cols=self.max_input + self.max_hidden)
            assert eng.weight_depth == self.weight_depth
            m.d.comb += [eng.w_wr.addr.eq(self.w_wr.addr), eng.w_wr.data.eq(self.w_wr.data),
                         eng.w_wr.en.eq(self.w_wr.en)]
            copy_cols = self.max_input + self.max_hidden
        m.submodules.bias = b_mem = Memory(shape=self.bias_layout, depth=self.h_depth, init=[])
        m.submodules.x_seq = x_mem = Memory(shape=signed(ab), depth=self.x_depth, init=[])
        m.submodules.h = h_mem = Memory(shape=signed(ab), depth=self.h_depth, init=[])
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
            tanh_g = tanh_rom.read_port()  # tanh(g), stage 3
        tanh_rp = tanh_rom.read_port()  # tanh(c') (LSTM, address in stage 7) or tanh(n) (GRU, 8)

        busy = Signal()
        done = Signal()
        cycles = Signal(CYCLE_COUNTER_BITS)
        m.d.comb += [self.busy.eq(busy), self.done.eq(done), self.cycles.eq(cycles)]

        # Bench ports (h and c memories are shared with the engine, muxed on busy).
        m.d.comb += [
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
        k1 = Signal(range(copy_cols + 1))
        sel_h1 = Signal()
        # Element stage: j is the unit entering the pipeline (stage 0); ev[s] / ej[s] say
        # whether stage s holds a unit this cycle, and which.
        j = Signal(range(self.max_hidden + 1))
        more = Signal()     # j < hsz: a unit enters this cycle (a register, not a comparison)
        lat = element_latency(self.cell)
        ev = [None] + [Signal(name=f"ev{n}") for n in range(1, lat + 1)]
        ej = [None] + [Signal(range(self.max_hidden + 1), name=f"ej{n}")
                       for n in range(1, lat + 1)]
        m.d.sync += ev[1].eq(0)
        for n in range(2, lat + 1):
            m.d.sync += [ev[n].eq(ev[n - 1]), ej[n].eq(ej[n - 1])]
        pre = [Signal(signed(lib), name=f"pre_{n}") for n in "ifgo"]
        tc_idx = Signal(lib)

        # Internal read addresses.
        h_idx = Signal(signed(k.shape().width + 2))
        m.d.comb += h_idx.eq(k - isz)
        m.d.comb += [
            x_rp.addr.eq(xbase + k),    # the FSM's IDLE, COPY and ELEMENT read ahead
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

        # Writes into the gate engine's activation memory go through a register (the memory is
        # LUT-RAM copied per lane, far from the x_seq/h block RAMs and the element-wise
        # stage): the copy's (one stage behind its reads) and h''s from the element stage,
        # which overrides it (the two never overlap). The copy's last write lands in the
        # cycle the gate engine starts, before the engine reads any column.
        wr_en = Signal()
        wr_addr = Signal.like(eng.x_wr.addr)
        wr_data = Signal.like(eng.x_wr.data)
        m.d.comb += [eng.x_wr.addr.eq(wr_addr), eng.x_wr.data.eq(wr_data),
                     eng.x_wr.en.eq(wr_en)]
        # x_seq is read a cycle ahead of the copy (x_rp.addr in the FSM) and its data
        # registered in x_q: the block RAM's output runs into a register, not the x/h mux.
        x_q = Signal.like(x_rp.data)
        m.d.sync += [wr_en.eq(v1), wr_addr.eq(k1), x_q.eq(x_rp.data),
                     wr_data.eq(Mux(sel_h1, h_rp.data, x_q))]
        m.d.sync += v1.eq(0)

        # Where the element stage reads the gate accumulators.
        if bcr:
            # BCR: gate k of unit j is output row bases[k] + j: word ``word[k]``, lane
            # ``lane[k]`` of the BCR output memory, one read port per gate.
            nblocks = Signal.like(self.blocks)
            if self.slices > 1:
                nslice = Signal(self.signature.members["slice_blocks"].shape)
            h_col = Signal(range(self.gate_cols + bc + 1))
            h_up = Signal(range(self.max_hidden + br + 1))
            h_q = Signal(range(self.max_hidden // br + 2))
            h_r = Signal(range(self.max_hidden + 1))
            g_rows = Signal(range(self.gate_rows + 1))
            words = [Signal(range(eng.out_depth + 1), name=f"word_{n}") for n in range(GATES)]
            lanes_ = [Signal(range(max(2, br)), name=f"lane_{n}") for n in range(GATES)]
            # Gate bases from divmod(H, br) = (h_q, h_r) once the setup stage is over.
            s2 = Signal(range(2 * br + 1))
            c2 = Signal()
            w2 = Signal.like(words[2])
            l2 = Signal.like(lanes_[2])
            m.d.comb += [s2.eq(2 * h_r), c2.eq(s2 >= br), w2.eq(2 * h_q + c2),
                         l2.eq(Mux(c2, s2 - br, s2))]
            if lstm:
                s3 = Signal(range(2 * br + 1))
                c3 = Signal()
                m.d.comb += [s3.eq(l2 + h_r), c3.eq(s3 >= br)]
                base3 = (w2 + h_q + c3, Mux(c3, s3 - br, s3))
                rows_now = hsz * GATES
            else:
                base3 = (w2 + h_q + (h_r != 0), l2)
                rows_now = 3 * hsz + h_up
            bases = [(0, 0), (h_q, h_r), (w2, l2), base3]
            gate_words = []
            if cached:
                # One read port: gate n's word ``words[n]`` is held in cur[n] and the next one
                # in nxt[n]. FETCH reads cur[0..3], then nxt[0..3]; in ELEMENT a unit entering
                # at lane 0 (after the first) moves nxt[n] into cur[n], and the lowest gate
                # whose nxt[n] is stale reads word naddr[n] (each gate needs one every br
                # units, so the four keep up from br >= CACHED_MIN_BLOCK_ROWS).
                port = out_ports[0]
                cur = [Signal(br * 32, name=f"cur_{n}") for n in range(GATES)]
                nxt = [Signal(br * 32, name=f"nxt_{n}") for n in range(GATES)]
                # The port's word as stored and, beside it, whether its block row was written
                # (BCRMatVec raw_outputs): the bit is applied as the gate word is selected, so
                # the written-row select does not run into the word registers.
                cur_v = [Signal(name=f"cur_v{n}") for n in range(GATES)]
                nxt_v = [Signal(name=f"nxt_v{n}") for n in range(GATES)]
                need = [Signal(name=f"need_{n}") for n in range(GATES)]
                naddr = [Signal(range(eng.out_depth + 4), name=f"naddr_{n}")
                         for n in range(GATES)]
                fetch = Signal(range(2 * GATES))
                # The port's data is for cur/nxt[n] when bit n of rdest is set (one-hot, decoded
                # as the read is issued); move[n]: a unit enters at lane 0 of gate n's word
                # (after the first), decided the cycle before. Both drive a register bank of
                # 8 * br * 32 bits: each is a register, not logic, in front of that fanout.
                rdest = Signal(2 * GATES)
                move = Signal(GATES)
                # The port's address is a register, set the cycle before the read with the
                # one-hot destination (rsel, moved into rdest as the read happens): the
                # refill's priority select and the FSM no longer run into the output memory's
                # read (a LUT-RAM; 11.0 ns on the trained LSTM). A refill then lands a cycle
                # later, so a gate's need is raised as its move is decided, a cycle earlier.
                paddr = Signal.like(port.addr, name="gate_read_addr")
                rsel = Signal(2 * GATES)
                m.d.comb += [port.en.eq(1), port.addr.eq(paddr)]
                m.d.sync += [rdest.eq(rsel), rsel.eq(0), move.eq(0)]
                for n, (reg, valid) in enumerate(zip(cur + nxt, cur_v + nxt_v, strict=True)):
                    with m.If(rdest[n]):
                        m.d.sync += [reg.eq(port.data), valid.eq(eng.out_written)]
                for n in range(GATES):
                    with m.If(move[n]):
                        m.d.sync += [cur[n].eq(nxt[n]), cur_v[n].eq(nxt_v[n])]
                # A unit's gate words are selected as it enters (stage 0) and registered: from
                # nxt[n] when it moves into cur[n] at the end of this cycle. Stage 1's adder
                # then starts from a register, not from a br-to-1 word select.
                for n in range(GATES):
                    word = Signal(32, name=f"gate_word_{n}")
                    m.d.sync += word.eq(Mux(
                        Mux(move[n], nxt_v[n], cur_v[n]),
                        Mux(move[n], nxt[n].word_select(lanes_[n], 32),
                            cur[n].word_select(lanes_[n], 32)), 0))
                    gate_words.append(word)
            else:
                lanes1 = [Signal.like(lanes_[n], name=f"lane1_{n}") for n in range(GATES)]
                m.d.sync += [d.eq(q) for d, q in zip(lanes1, lanes_, strict=True)]
                for n, port in enumerate(out_ports):
                    m.d.comb += [port.addr.eq(words[n]), port.en.eq(1)]
                    gate_words.append(Value.cast(port.data).word_select(lanes1[n], 32))
        else:
            # The dense engine's output word is read a cycle ahead (address 0 while waiting,
            # then the next unit's row group as a unit enters), and the unit's four gate words
            # registered as it enters: the block RAM's output no longer runs into stage 1's
            # adder.
            grp = Signal(range(eng.out_depth))
            sub = Signal(range(max(2, upg)))
            m.d.comb += [eng.out_rd.addr.eq(grp), eng.out_rd.en.eq(1)]
            gw = Signal(GATES * 32)
            m.d.sync += gw.eq(Value.cast(eng.out_rd.data).word_select(sub, GATES * 32))
            gate_words = [gw.word_select(n, 32) for n in range(GATES)]

        # Element-wise datapath, one unit per cycle through eleven stages (the GRU's
        # twelve):
        # 0: addresses (gate accumulators, h, c) of unit j, and its bias word (read a cycle
        # ahead) registered;
        # 1: accumulators + bias (registered); 2: times the requantizing multiplier
        # (registered); 3: rounded and saturated into pre, the sigmoid/tanh ROM addresses;
        # 4: ROM data (registered).
        # LSTM: 5: f * c and i * g (registered); 6: the cell sum (registered); 7: c' and the
        # tanh ROM address tc_idx (c' rounded to the ROM's format and clipped, both from the
        # cell sum); 8: tanh's data (registered), c' (registered) written to c; 9: h''s
        # product (registered); 10: h' written to h, h_seq and the gate engine's activation
        # memory.
        # GRU: 5: r * n_h's partial products (registered); 6: the n accumulator a_n +
        # round_shift(r * n_h) (registered); 7: times the requantizing multiplier
        # (registered); 8: rounded and saturated into tc_idx; 9: tanh's data, z * h and
        # 1 - z (registered); 10: h''s sum (registered); 11: h' written as the LSTM's is.
        # The bias word, read a cycle ahead and registered as its unit enters stage 0: the
        # block RAM's output no longer runs into stage 1's adder.
        bias_q = Signal.like(b_rp.data)
        m.d.sync += bias_q.eq(b_rp.data)
        bias_word = Value.cast(bias_q)
        pre_next, accs = [], []
        for n in range(GATES):
            acc = Signal(signed(32), name=f"acc_{'ifgo'[n]}")
            m.d.sync += acc.eq(gate_words[n] + bias_word.word_select(n, 32))   # stage 1
            accs.append(acc)
            sat = (1 << (lib - 1)) - 1
            scaled = (_requant_operand(acc, cfg.multiplier, cfg.shift, -sat, sat)
                      * Const(cfg.multiplier, unsigned(16)))
            rq = Signal(scaled.shape(), name=f"rq_{'ifgo'[n]}")
            m.d.sync += rq.eq(scaled)                                            # stage 2
            # and whether it saturates
            flags = _scaled_flags(m, acc, cfg.multiplier, cfg.shift, -sat, sat,
                                  f"rq_{'ifgo'[n]}")
            pre_next.append(_round_saturate(rq, cfg.shift, lib, flags))          # stage 3
        m.d.comb += [q.eq(v) for q, v in zip(pre, pre_next, strict=True)]
        half = 1 << (lib - 1)

        def delayed(value: Value, first: int, last: int, name: str) -> Value:
            """``value`` registered in stage ``first``, carried to stage ``last``."""
            reg = value
            for n in range(first, last + 1):
                nxt = Signal(value.shape(), name=f"{name}{n}")
                m.d.sync += nxt.eq(reg)
                reg = nxt
            return reg

        def rom_reg(port: Any, name: str) -> Signal:
            """A ROM read port's data, registered in the stage it arrives in (4, 8, or the
            GRU's 9)."""
            reg = Signal(port.data.shape(), name=name)
            m.d.sync += reg.eq(port.data)
            return reg

        tanh_q = rom_reg(tanh_rp, "tanh_q")  # stage 8: tanh(c'), or the GRU's 9: tanh(n)
        if lstm:
            c_old = delayed(c_rp.data, 1, 4, "c_old")  # stage 5 sees unit's c
            m.d.comb += tanh_g.addr.eq(pre[2] + half)
            # stage 4: the ROM outputs registered; stage 5: the two products, registered
            gi, gf_, gg = rom_reg(sig_i, "gi"), rom_reg(sig_f, "gf"), rom_reg(tanh_g, "gg")
            fc = Signal((gf_ * c_old).shape())
            ig = Signal((gi * gg).shape())
            m.d.sync += [fc.eq(gf_ * c_old), ig.eq(gi * gg)]
            # stage 6: c_sum = f*c 2^G + i*g 2^cell_frac, registered (the adder alone);
            # stage 7: c' = saturate(round_shift(c_sum, 2G)) and tanh's address from c_sum
            # itself, each one comparison deep; stage 8: c' registered and written to c.
            # (Stage 6 was the adder, the saturating comparisons and the rounding in series:
            # the trained LSTMs' longest path, 9.5-9.9 ns on the LFE5U-85F.)
            c_sum_value = (fc << G) + (ig << cfg.cell_frac)
            c_sum = Signal(c_sum_value.shape())
            m.d.sync += c_sum.eq(c_sum_value)
            c_new = Signal(signed(cb))
            m.d.comb += c_new.eq(_round_saturate(c_sum, 2 * G, cb))
            c_q = Signal(signed(cb))
            m.d.sync += c_q.eq(c_new)
            b = cfg.cell_frac - cfg.lut_frac
            if _saturation_idle(cb, b, -half, half - 1):
                tc_next = _round_twice_clip(c_sum, 2 * G, b, -half, half - 1) + half
            else:       # c's rails are inside tanh's range: from c' (one more comparison)
                tc_next = _round_clip(c_new, b, -half, half - 1) + half
            go = delayed(sig_o.data, 4, 8, "go")  # stage 9 sees unit's o
            ot = Signal((go * tanh_q).shape())   # stage 9: o * tanh(c'), registered
            m.d.sync += ot.eq(go * tanh_q)
            h_new = Signal(signed(ab))
            m.d.comb += h_new.eq(_round_saturate(ot, 2 * G - cfg.act_frac, ab))
        else:
            # GRU: accs are r, z, n_x = W_in x + b_in, n_h = W_hn h + b_hn.
            acc_nx = delayed(accs[2], 2, 5, "acc_nx")  # stage 6 sees it
            acc_nh = delayed(accs[3], 2, 4, "acc_nh")  # stage 5 sees it
            h_old = delayed(h_rp.data, 1, 8, "h_old")  # stage 9 sees it
            r = rom_reg(sig_i, "r")                    # stage 4: r registered
            # stage 5: r * n_h's two partial products, registered: n_h = hi 2^16 + lo with
            # lo its low 16 bits (unsigned) and hi the signed rest, each product one DSP
            # block (18x18 on the ECP5, 16x16 on the iCE40) with nothing after it.
            # stage 6: n_acc = wrap32(a_n + round_shift(r * n_h, G)), registered: a_n +
            # ((p + 2^(G-1)) >> G) = (a_n 2^G + 2^(G-1) + p) >> G, and a_n 2^G + 2^(G-1) is
            # a_n with the constant below it, so the three addends (with p = p_lo + p_hi
            # 2^16) are one carry-save layer and one carry chain; the low 32 bits of the
            # shifted sum are the wrapped ones. (Both products, the adder joining them and
            # a_n's were one stage until 2026-12-07: the GRU's longest path, 11.83 ns on the
            # LFE5U-85F.)
            p_lo = Signal(unsigned(r.shape().width + 16), name="p_lo")
            p_hi = Signal(signed(r.shape().width + 17), name="p_hi")
            m.d.sync += [p_lo.eq(r * acc_nh[:16]), p_hi.eq(r * acc_nh[16:].as_signed())]
            n_acc = Signal(signed(32))
            a_n = (Cat(Const(1 << (G - 1), G), acc_nx).as_signed() if G > 0 else acc_nx)
            m.d.sync += n_acc.eq((a_n + p_lo + (p_hi << 16))[G:G + 32].as_signed())
            # stage 7: n_acc times the requantizing multiplier, registered; stage 8: that
            # product rounded and saturated into tanh's address (the multiplier and the
            # rounding were one stage: 16.8 ns on the LFE5U-85F)
            n_scaled = (_requant_operand(n_acc, cfg.multiplier, cfg.shift, -(half - 1),
                                         half - 1) * Const(cfg.multiplier, unsigned(16)))
            n_q = Signal(n_scaled.shape())
            m.d.sync += n_q.eq(n_scaled)
            n_flags = _scaled_flags(m, n_acc, cfg.multiplier, cfg.shift, -(half - 1),
                                    half - 1, "n_q")
            tc_next = _round_saturate(n_q, cfg.shift, lib, n_flags) + half
            # stage 9: z * h and 1 - z, registered (they need no tanh); stage 10: h''s sum
            # (1 - z) tanh(n) 2^act_frac + z h 2^G, registered: one product and one adder;
            # stage 11: h' rounded and saturated from it, one comparison deep, and written.
            # (Both products were stage 10 and the sum stage 11, in series with the rounding,
            # the saturation and the h memory's write: 11.63 ns on the LFE5U-85F.)
            z = delayed(sig_f.data, 4, 8, "z")           # stage 9 sees it
            zh = Signal((z * h_old).shape())
            one_minus_z = Signal(signed(cfg.gate_bits + 2))   # registered in stage 9 too
            m.d.sync += [zh.eq(z * h_old), one_minus_z.eq((1 << G) - z)]
            h_sum_value = ((one_minus_z * tanh_q) << cfg.act_frac) + (zh << G)
            h_sum = Signal(h_sum_value.shape())
            m.d.sync += h_sum.eq(h_sum_value)
            h_new = Signal(signed(ab))
            m.d.comb += h_new.eq(_round_saturate(h_sum, 2 * G, ab))
        m.d.comb += [tc_idx.eq(tc_next), tanh_rp.addr.eq(tc_idx)]
        # Columns of h in the gate engine's activation memory.
        h_dest = ej[lat] + (h_col if bcr else isz)
        copy_end = Signal.like(cols)
        m.d.comb += copy_end.eq(Mux(t == 0, cols, isz))

        def refill(n: int) -> None:
            """Read gate ``n``'s next word into ``nxt[n]`` (cached gate reads): the port
            reads it next cycle and it lands the cycle after."""
            m.d.sync += [paddr.eq(naddr[n]), rsel.eq(1 << (GATES + n)), need[n].eq(0),
                         naddr[n].eq(naddr[n] + 1)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += x_rp.addr.eq(0)                 # x_0[0], for the copy
                with m.If(self.start):
                    m.d.sync += [
                        isz.eq(self.input_size), hsz.eq(self.hidden_size),
                        nsteps.eq(self.steps), cycles.eq(0), done.eq(0), t.eq(0),
                        xbase.eq(0), sbase.eq(0), k.eq(0),
                    ]
                    if bcr:
                        m.d.sync += [nblocks.eq(self.blocks), h_col.eq(0), h_up.eq(0),
                                     h_q.eq(0), h_r.eq(self.hidden_size)]
                        if self.slices > 1:
                            m.d.sync += nslice.eq(self.slice_blocks)
                    with m.If((self.steps == 0) | (self.hidden_size == 0)):
                        m.d.sync += done.eq(1)
                    with m.Else():
                        m.d.sync += busy.eq(1)
                        m.next = "SETUP" if bcr else "COPY"
            if bcr:
                with m.State("SETUP"):
                    # h_col = ceil(I / bc) * bc, h_up = ceil(H / br) * br, (h_q, h_r) =
                    # divmod(H, br), by repeated addition and subtraction.
                    i_done, u_done, r_done = h_col >= isz, h_up >= hsz, h_r < br
                    with m.If(~i_done):
                        m.d.sync += h_col.eq(h_col + bc)
                    with m.If(~u_done):
                        m.d.sync += h_up.eq(h_up + br)
                    with m.If(~r_done):
                        m.d.sync += [h_r.eq(h_r - br), h_q.eq(h_q + 1)]
                    with m.If(i_done & u_done & r_done):
                        m.d.sync += g_rows.eq(rows_now)
                        m.next = "COPY"
            with m.State("COPY"):
                # x_t, and on the first step h too (later steps get h' from stage 10).
                m.d.comb += [h_rp.addr.eq(h_idx), x_rp.addr.eq(xbase + k + 1)]
                with m.If(k == copy_end):
                    m.d.sync += k.eq(0)
                    m.next = "DSTART"
                with m.Else():
                    dest = Mux(k >= isz, k - isz + h_col, k) if bcr else k
                    m.d.sync += [v1.eq(1), k1.eq(dest), sel_h1.eq(k >= isz), k.eq(k + 1)]
            with m.State("DSTART"):
                if bcr:
                    m.d.comb += [eng.start.eq(1), eng.rows.eq(g_rows),
                                 eng.cols.eq(h_col + hsz), eng.blocks.eq(nblocks)]
                    if self.slices > 1:
                        m.d.comb += eng.slice_blocks.eq(nslice)
                else:
                    m.d.comb += [eng.start.eq(1), eng.rows.eq(hsz * GATES), eng.cols.eq(cols)]
                m.next = "DWAIT"
            with m.State("DWAIT"):
                if not bcr:
                    m.d.comb += eng.out_rd.addr.eq(0)   # unit 0's row group, a cycle ahead
                with m.If(eng.done):
                    m.d.sync += [j.eq(0), more.eq(1)]
                    if bcr:
                        for n, (wb_, lb_) in enumerate(bases):
                            m.d.sync += [words[n].eq(wb_), lanes_[n].eq(lb_)]
                        if cached:      # FETCH's first read: gate 0's current word
                            m.d.sync += [paddr.eq(bases[0][0]), rsel.eq(1)]
                    else:
                        m.d.sync += [grp.eq(0), sub.eq(0)]
                    m.next = "FETCH" if cached else "ELEMENT"
            if cached:
                with m.State("FETCH"):
                    # Cycle f reads word words[f % 4] + f // 4 into cur/nxt[f], its address
                    # set in the cycle before (f = 0's as the gate product ends).
                    f1 = fetch + 1
                    with m.If(fetch != 2 * GATES - 1):
                        m.d.sync += [paddr.eq(Array(words)[f1[:2]] + f1[2]),
                                     rsel.eq(1 << f1)]
                    m.d.sync += fetch.eq(fetch + 1)
                    with m.If(fetch == 2 * GATES - 1):
                        m.d.sync += [*(a.eq(w + 2) for a, w in zip(naddr, words, strict=True)),
                                     *(f.eq(0) for f in need)]
                        m.next = "ELEMENT"
            with m.State("ELEMENT"):
                m.d.comb += x_rp.addr.eq(xbase + isz)       # x_{t+1}[0], for the next copy
                with m.If(more):  # stage 0: unit j enters
                    m.d.sync += [ev[1].eq(1), ej[1].eq(j), j.eq(j + 1), more.eq(j + 1 < hsz)]
                    # the next unit's bias, registered in bias_q as that unit enters (unit
                    # 0's is read at address 0, the default, in the cycle before)
                    m.d.comb += b_rp.addr.eq(j + 1)
                    if bcr:
                        for n in range(GATES):
                            if cached:    # unit j + 1 enters at lane 0
                                with m.If((lanes_[n] == br - 1) & (j + 1 < hsz)):
                                    m.d.sync += [move[n].eq(1), need[n].eq(1)]
                            with m.If(lanes_[n] == br - 1):
                                m.d.sync += [lanes_[n].eq(0), words[n].eq(words[n] + 1)]
                            with m.Else():
                                m.d.sync += lanes_[n].eq(lanes_[n] + 1)
                    elif upg == 1:
                        m.d.sync += grp.eq(grp + 1)
                        m.d.comb += eng.out_rd.addr.eq(grp + 1)
                    else:
                        with m.If(sub == upg - 1):
                            m.d.sync += [sub.eq(0), grp.eq(grp + 1)]
                            m.d.comb += eng.out_rd.addr.eq(grp + 1)
                        with m.Else():
                            m.d.sync += sub.eq(sub + 1)
                if cached:
                    with m.If(need[0]):
                        refill(0)
                    for n in range(1, GATES):
                        with m.Elif(need[n]):
                            refill(n)
                if lstm:
                    with m.If(ev[8]):   # c' from its register, not the rounding
                        m.d.comb += [c_wp.addr.eq(ej[8]), c_wp.data.eq(c_q), c_wp.en.eq(1)]
                with m.If(ev[lat]):
                    m.d.comb += [h_wp.addr.eq(ej[lat]), h_wp.data.eq(h_new),
                                 h_wp.en.eq(1), s_wp.addr.eq(sbase + ej[lat]),
                                 s_wp.data.eq(h_new),
                                 s_wp.en.eq(1)]
                    m.d.sync += [wr_en.eq(1), wr_addr.eq(h_dest), wr_data.eq(h_new)]
                    with m.If(ej[lat] == hsz - 1):
                        with m.If(t == nsteps - 1):
                            m.d.sync += [busy.eq(0), done.eq(1)]
                            m.next = "IDLE"
                        with m.Else():
                            m.d.sync += [t.eq(t + 1), xbase.eq(xbase + isz),
                                         sbase.eq(sbase + hsz), k.eq(0)]
                            m.next = "COPY"
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        return m


class LSTMEngine(RNNEngine):
    """:class:`RNNEngine` with ``cell="lstm"``: gates i, f, g, o, state ``h`` and ``c``."""

    def __init__(self, config: RNNQuantConfig, *, lanes: int = 4, max_input: int = 16,
                 max_hidden: int = 16, max_steps: int = 8, gates: str = "dense",
                 block: tuple[int, int] | None = None, max_blocks: int | None = None,
                 max_value_words: int | None = None, slices: int = 1,
                 gate_read: str = "auto") -> None:
        super().__init__(config, cell="lstm", lanes=lanes, max_input=max_input,
                         max_hidden=max_hidden, max_steps=max_steps, gates=gates, block=block,
                         max_blocks=max_blocks, max_value_words=max_value_words, slices=slices,
                         gate_read=gate_read)


class GRUEngine(RNNEngine):
    """:class:`RNNEngine` with ``cell="gru"``: weights by :func:`gru_weight_matrix`, biases by
    :func:`gru_bias_words`, no ``c`` memory; cycles :func:`gru_cycles`."""

    def __init__(self, config: RNNQuantConfig, *, lanes: int = 4, max_input: int = 16,
                 max_hidden: int = 16, max_steps: int = 8, gates: str = "dense",
                 block: tuple[int, int] | None = None, max_blocks: int | None = None,
                 max_value_words: int | None = None, slices: int = 1,
                 gate_read: str = "auto") -> None:
        super().__init__(config, cell="gru", lanes=lanes, max_input=max_input,
                         max_hidden=max_hidden, max_steps=max_steps, gates=gates, block=block,
                         max_blocks=max_blocks, max_value_words=max_value_words, slices=slices,
                         gate_read=gate_read)
