"""Block column-row (BCR) sparse matrix-vector engine.

:class:`BCRMatVec` computes ``y = W @ x`` for a weight matrix stored in the BCR compact form of
:mod:`ir.bcr` (per stored block: kept row indices, kept column indices, dense
``kept rows x kept columns`` sub-block). Blocks with nothing kept are absent from the metadata
and cost nothing. ``P = lanes`` MAC lanes work on ``P`` kept rows of a block in parallel: a block
with ``nr`` kept rows and ``nc`` kept columns is ``ceil(nr / P)`` *row groups* of ``nc``
*items*, one item (one kept column of one row group) per cycle, with no bubble between row
groups or blocks.

The lanes only share the kept rows of one block, so a block keeping ``nr`` rows gains nothing
from more than ``nr`` lanes. ``S = slices`` scales past that: ``S`` copies of the pipeline below,
each with ``P`` lanes, work at once on disjoint contiguous ranges of block rows
(:func:`bcr_partition`), so no two slices ever write the same output rows.

Microarchitecture
-----------------
A single flat stream of items runs through a six-stage pipeline:

* **issue**: counters (block ``k``, row group ``g``, kept column ``j``) address the column-index
  memory at ``col_ptr + j``; the next block's metadata is prefetched (the metadata memory is read
  at ``k + 1`` continuously, ``k + 2`` on a block change), so a block boundary costs no cycle;
* **gather**: the kept column index arrives; the activation address ``block_col * bc + index``
  is registered, and the value memory is read at the item's (sequential) address;
* **read**: the activation memory is read at the registered address (a read port whose address,
  not its output, is the register), and the value word and the activation are registered;
* **multiply**: the broadcast activation times the ``P`` weights of the item's value word;
* **accumulate**: each lane accumulates over the ``nc`` items of its row group; on the last item
  the ``P`` lane sums are registered by block row: row ``i`` takes the sum of the lane whose kept
  row index (read from the row-index memory in the read stage and registered in the multiply
  stage) is ``i``, or zero (``br`` registers);
* **scatter**: the registered row sums are added into ``br`` local block-row accumulators; on
  the last item of the last block of a block row, the updated accumulators are written to the
  output memory as one word (address ``block_row``) and cleared.

The read and scatter stages are new (2026-12-06), each one cycle a run, not one an item. The
scatter followed the lane adder and the row-index block RAM in the accumulate stage: 19 ns on
an LFE5U-85F, the longest path of the BCR-gated RNN cells. Then the longest was the value
memory's block RAM output (through the read mux of a memory deeper than one block RAM)
straight into the multipliers: 16.8 ns. Then it was the column-index block RAM's output, plus
the block's column base, into the activation memory's read (11.0-12.3 ns): the activation
address is now registered in the gather stage and the memory read in the read stage, at no
cycle cost (the value word's path is unchanged). That holds for activation memories of up to
:data:`LUTRAM_MAX_ACT_WORDS` words, which Yosys puts in LUT-RAM; a deeper one becomes a block
RAM, which has no asynchronous read, and Yosys made one by absorbing the data register
instead, leaving the block RAM's 5.8 ns clock-to-output in front of the multipliers (15.7 ns
on LSTM-128 with BCR gates). A deeper memory is therefore read through a synchronous port
addressed by the gather stage's sum: the same read in the same cycle, the data register kept. Since then an output read port's written-row
bit is selected by the port's registered address rather than from the incoming one (an
enclosing engine's late read address ran through that select: 12.4-13.6 ns), and the
row-index memory is read a stage earlier and its data registered (its block RAM's output ran
into the row decode: 12.5-13.5 ns). Since then the issue stage's end-of-block tests compare
registers: ``ncols - 1``, ``groups - 1`` and ``blocks - 1`` are registered as a block's
metadata (or ``blocks``) loads, and their subtractors no longer run into the metadata read's
address (11.7 ns). Since then a value memory deeper than one block RAM is a
:class:`hw.banked.BankedMemory`, each bank's output registered, read at the issue stage's
address (the sequential value address is known a stage early), so its word reaches the value
register in the read stage as before but from a register and a mux, not from the block RAMs
through their read mux (10.6 ns); and the lane-to-row select moved from the scatter into the
accumulate stage, beside the lane adders: the scatter held the select (an OR over the lanes),
the accumulator adder and the output memory's write (10.9-11.0 ns). Neither costs a cycle.
Since then whether an item ends its block row is found in the read stage from two registers
(the next block's row, registered in the gather stage straight from the metadata memory, and
the block's own), not in the issue stage from the metadata block RAM's output, which is not
registered (5.8 ns from clock to data, then the comparison: 10.6 ns on LSTM-64 with BCR gates);
no cycle cost either.

Blocks must come grouped by block row (``ir.bcr.encode_bcr`` stores them row-major;
:func:`pack_bcr` sorts them stably by block row). Block rows without any stored block are never
written: a per-block-row *written* bit, cleared at ``start``, makes the output port read zero
for them (selected by the port's registered address, so read the outputs while the engine is
not ``busy``). With ``raw_outputs`` a port gives the word as stored and the bit beside it
(``out_written``), for an enclosing engine that registers the word and applies the bit at use
(:mod:`hw.rnn`'s cached gate reads: the select ran into their word registers, 12.4-13.0 ns).

Slices
~~~~~~
With ``S > 1`` each slice is a submodule holding its own pipeline, its own bank of the ``meta``,
``col_index``, ``row_index`` and ``values`` memories (partitioned, not replicated: slice ``s``
stores only its blocks), its own copy of the activations (the one ``x_wr`` port writes every
copy) and its own output memory with its own *written* bits. An output read port returns the
OR over the slices of each slice's word, which is zero unless that slice wrote the block row:
block rows are disjoint, so no owner table is needed. Slice ``s`` runs the ``slice_blocks[s]``
blocks of its bank, sampled at ``start`` like ``blocks`` (which stays the 0-means-empty input);
a slice with no blocks is done at once, and ``done`` rises when every slice is done. One cycle
counter counts while any slice is busy. With ``S == 1`` the engine is exactly the single
pipeline above (same Verilog, no ``slice_blocks`` input).

Cycle model
~~~~~~~~~~~
Hence :func:`bcr_cycles`: ``sum over stored blocks of ceil(nr / P) * nc + PIPELINE_LATENCY``
(``PIPELINE_LATENCY = 6``: one metadata prefetch cycle and five pipeline stages after issue),
or ``0`` when ``rows``, ``cols`` or ``blocks`` is zero (``done`` at once, all outputs zero).
With ``S`` slices the sum is taken per slice and the largest counts (a slice without blocks
costs nothing); :func:`bcr_partition` chooses the contiguous block-row ranges that minimise it
exactly, so e.g. 8 kept rows per 16x16 block on 8 lanes take about half the cycles on 2 slices
that they take on 1 (and no fewer on 16 lanes).
Every lane does useful work on every item when the kept rows of each block are a multiple of
``P``; otherwise the last row group of a block leaves ``ceil(nr / P) * P - nr`` lanes idle
(e.g. 5 kept rows on 4 lanes take 2 groups), which shows in the cycles.

Memory map (see :meth:`BCRMatVec.memory_map`)
---------------------------------------------
With the blocks ``k = 0..n-1`` in block-row order, ``nr_k``/``nc_k`` kept rows/columns,
``ng_k = ceil(nr_k / P)``, and running offsets ``C_k = sum_{i<k} nc_i``,
``R_k = sum_{i<k} ng_i``, ``V_k = sum_{i<k} ng_i * nc_i``:

* ``meta`` (write, depth ``max_blocks``): word ``k`` is the struct ``block_row``, ``block_col``,
  ``groups = ng_k``, ``ncols = nc_k`` (fields in that order from the least significant bit, widths
  in :func:`bcr_field_widths`);
* ``col_index`` (write, depth ``max_blocks * bc``): word ``C_k + j`` is block ``k``'s ``j``-th
  kept column index within the block (unsigned);
* ``row_index`` (write, depth ``max_blocks * ceil(br / P)``): word ``R_k + g`` holds in lane ``p``
  the kept row index ``g * P + p`` of block ``k`` within the block, or ``br`` (no row) past
  ``nr_k`` (``P`` unsigned fields);
* ``values`` (write, depth ``max_value_words``): word ``V_k + g * nc_k + j`` holds in lane ``p``
  the weight at kept row ``g * P + p`` and kept column ``j`` of block ``k`` (``P`` signed
  ``weight_bits`` fields, zero past ``nr_k``);
* ``activations`` (write, depth ``max_cols``): address ``c`` holds ``x[c]``;
* ``outputs`` (read, depth ``ceil(max_rows / br)``): word ``b`` holds ``y[b * br + i]`` in lane
  ``i < br``, wrapped to ``acc_bits`` bits; synchronous read.

All multi-field words have lane/field 0 in the least significant bits. Memories must only be
written (and outputs read) while the engine is not ``busy``.

With ``S > 1`` the offsets ``k``, ``C_k``, ``R_k``, ``V_k`` count within each slice's own
blocks (:meth:`BCRImages.bank`), and the bench ports of the four banked memories have
``ceil_log2(S)`` more address bits: slice ``s``'s word ``i`` is at address
``s << bank_bits | i``, ``bank_bits = ceil_log2(depth)`` of that memory
(:attr:`BCRMatVec.bank_bits`; ``bank_stride`` in :meth:`BCRMatVec.memory_map`).
``max_blocks`` and ``max_value_words`` are per slice: the depths of one bank. The activations
and outputs keep their addresses.

Lint
----
``verilator --lint-only -Wall`` reports only the classes waived for :mod:`hw.dense`
(``PROCASSINIT``, ``UNUSEDSIGNAL``, ``WIDTHEXPAND``, ``WIDTHTRUNC``), for the same reasons
(register initialisers, Amaranth's alias wires, minimal-width constants and intended
truncations such as the metadata prefetch address ``k + 2`` wrapping past the last block).
With ``S > 1`` also ``DECLFILENAME``: each slice is a further module in the same file.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.banked import BankedMemory, deep_memory
from hw.dense import CYCLE_COUNTER_BITS, _check_int
from hw.packing import pack_fields  # noqa: F401 (re-exported)
from ir.bcr import BCRMatrix

__all__ = [
    "BCRMatVec", "BCRImages", "check_bcr_parameters", "bcr_cycles", "bcr_items", "pack_bcr",
    "pack_fields", "bcr_field_widths", "bcr_partition", "PIPELINE_LATENCY", "MAX_SLICES",
]

#: Cycles from ``start`` to ``done`` beyond one per item: metadata prefetch plus five stages.
PIPELINE_LATENCY = 6

#: Most slices (independent pipelines) one engine has.
MAX_SLICES = 16


def _bits(n: int) -> int:
    """Width of an unsigned field holding ``range(n)`` values, at least 1."""
    return max(1, ceil_log2(max(n, 1)))


def _check_block(block: Any) -> tuple[int, int]:
    msg = f"Block must be a pair of positive integers, not {block!r}"
    if not isinstance(block, (tuple, list)) or len(block) != 2 or any(
            isinstance(b, bool) or not isinstance(b, (int, np.integer)) for b in block):
        raise TypeError(msg)
    if min(block) < 1:
        raise ValueError(msg)
    return int(block[0]), int(block[1])


#: Largest activation memory (words) read through an asynchronous port with a registered
#: address (Yosys puts it in LUT-RAM on the LFE5U-85F); deeper ones are read through a
#: synchronous port (module docstring).
LUTRAM_MAX_ACT_WORDS = 128


def _or_tree(terms: list[Any]) -> Any:
    """OR of ``terms`` as a balanced tree: depth ``ceil(log2(len))``, not ``len``.

    A chain as deep as the lane count exceeds Python's recursion limit in Amaranth's checks
    (about 1,000 lanes); the tree is also the shallower logic.
    """
    while len(terms) > 1:
        pairs = zip(terms[0:-1:2], terms[1::2], strict=True)
        terms = [a | b for a, b in pairs] + terms[len(terms) & ~1:]
    return terms[0]


def bcr_field_widths(lanes: int, block: tuple[int, int], max_rows: int, max_cols: int
                     ) -> dict[str, int]:
    """Widths of the unsigned fields of the ``meta``, ``col_index`` and ``row_index`` words.

    Returns
    -------
    dict
        ``block_row``, ``block_col``, ``groups``, ``ncols`` (the ``meta`` struct, in field order
        from the least significant bit), ``col_index`` and ``row_index`` (one lane field).
    """
    br, bc = block
    gmax = -(-br // lanes)
    return {
        "block_row": _bits(-(-max_rows // br)),
        "block_col": _bits(-(-max_cols // bc)),
        "groups": _bits(gmax + 1),
        "ncols": _bits(bc + 1),
        "col_index": _bits(bc),
        "row_index": _bits(br + 1),
    }


def check_bcr_parameters(lanes: int, *, block: tuple[int, int] = (8, 16), weight_bits: int = 8,
                         act_bits: int = 8, acc_bits: int = 32, max_rows: int = 64,
                         max_cols: int = 64, max_blocks: int | None = None,
                         max_value_words: int | None = None, slices: int = 1) -> dict[str, Any]:
    """Validate :class:`BCRMatVec` parameters without building anything.

    ``max_blocks`` defaults to the whole block grid ``ceil(max_rows / br) * ceil(max_cols / bc)``
    and ``max_value_words`` to ``max_blocks * ceil(br / lanes) * bc`` (every block fully kept);
    both are per slice (the depths of one slice's memories), so the defaults let any partition
    of any layer of the build's shape fit.

    Returns
    -------
    dict
        The parameters as plain ints (``block`` as a tuple), keyed by argument name, with the
        defaults filled in.

    Raises
    ------
    TypeError, ValueError
        Messages in Amaranth's style, e.g. ``"Lanes must be a positive integer, not 0"`` or
        ``"Maximum blocks must be an integer between 1 and 16, not 17"``.
    """
    params: dict[str, Any] = {
        "lanes": _check_int(lanes, "Lanes", 1),
        "block": _check_block(block),
        "weight_bits": _check_int(weight_bits, "Weight width", 2, 16),
        "act_bits": _check_int(act_bits, "Activation width", 2, 16),
        "acc_bits": _check_int(acc_bits, "Accumulator width", 2, 64),
        "max_rows": _check_int(max_rows, "Maximum rows", 1),
        "max_cols": _check_int(max_cols, "Maximum columns", 1),
        "slices": _check_int(slices, "Slices", 1, MAX_SLICES),
    }
    (br, bc), P = params["block"], params["lanes"]
    grid = -(-params["max_rows"] // br) * -(-params["max_cols"] // bc)
    params["max_blocks"] = grid if max_blocks is None else _check_int(
        max_blocks, "Maximum blocks", 1, grid)
    cap = params["max_blocks"] * -(-br // P) * bc
    params["max_value_words"] = cap if max_value_words is None else _check_int(
        max_value_words, "Maximum value words", 1, cap)
    worst = params["max_value_words"] + PIPELINE_LATENCY
    if worst >= 1 << CYCLE_COUNTER_BITS:
        raise ValueError(f"Maximum of {params['max_value_words']} value words takes {worst} "
                         f"cycles, more than the {CYCLE_COUNTER_BITS}-bit cycle counter holds")
    return params


def _check_bcr_matrix(bcr: Any) -> BCRMatrix:
    if not isinstance(bcr, BCRMatrix):
        raise TypeError(f"BCR matrix must be an ir.bcr.BCRMatrix, not {type(bcr).__name__}")
    return bcr


def bcr_items(bcr: BCRMatrix, lanes: int) -> int:
    """Items (value words) of ``bcr`` on ``lanes`` lanes: ``sum_k ceil(nr_k / P) * nc_k``."""
    bcr = _check_bcr_matrix(bcr)
    lanes = _check_int(lanes, "Lanes", 1)
    nr, nc = np.diff(bcr.row_ptr), np.diff(bcr.col_ptr)
    return int(np.sum(-(-nr // lanes) * nc))


def _block_row_items(bcr: BCRMatrix, lanes: int) -> np.ndarray:
    """Items of each block row of ``bcr`` (``ceil(rows / br)`` int64, 0 where nothing is
    stored)."""
    nr, nc = np.diff(bcr.row_ptr), np.diff(bcr.col_ptr)
    items = np.zeros(-(-bcr.shape[0] // bcr.block[0]), dtype=np.int64)
    np.add.at(items, np.asarray(bcr.block_row, dtype=np.int64), -(-nr // lanes) * nc)
    return items


def _cuts(prefix: np.ndarray, bound: int, slices: int) -> list[int]:
    """Greedy contiguous partition of the block rows whose item prefix sums are ``prefix``:
    each slice takes the most block rows whose items stay within ``bound``. ``slices + 1``
    boundaries; the last is short of ``len(prefix) - 1`` when ``slices`` do not suffice."""
    cuts = [0]
    for _ in range(slices):
        cuts.append(int(np.searchsorted(prefix, prefix[cuts[-1]] + bound, side="right")) - 1)
    return cuts


def bcr_partition(bcr: BCRMatrix, lanes: int, slices: int = 1) -> np.ndarray:
    """Split the block rows of ``bcr`` among ``slices`` pipelines (see :class:`BCRMatVec`).

    Parameters
    ----------
    bcr : ir.bcr.BCRMatrix
        The layer's structure (values do not matter).
    lanes : int
        MAC lanes ``P`` per slice.
    slices : int
        Number of slices ``S``, 1 to :data:`MAX_SLICES`.

    Returns
    -------
    numpy.ndarray
        ``S + 1`` non-decreasing int64 boundaries, ``0`` first and ``ceil(rows / br)`` last:
        slice ``s`` owns the block rows ``[bounds[s], bounds[s + 1])``. The ranges minimise the
        largest slice's items ``sum ceil(nr / P) * nc`` exactly (block rows with no stored
        block cost nothing); among optimal splits, each slice in turn takes as many block rows
        as the optimum allows, so trailing slices may be empty.
    """
    bcr = _check_bcr_matrix(bcr)
    P = _check_int(lanes, "Lanes", 1)
    S = _check_int(slices, "Slices", 1, MAX_SLICES)
    items = _block_row_items(bcr, P)
    prefix = np.concatenate([[0], np.cumsum(items)])
    grid = len(items)
    lo, hi = int(items.max(initial=0)), int(prefix[-1])
    while lo < hi:      # the smallest bound the greedy split meets with S slices
        mid = (lo + hi) // 2
        if _cuts(prefix, mid, S)[-1] >= grid:
            hi = mid
        else:
            lo = mid + 1
    return np.minimum(np.array(_cuts(prefix, lo, S), dtype=np.int64), grid)


def bcr_cycles(bcr: BCRMatrix, lanes: int, slices: int = 1) -> int:
    """Cycle model of :class:`BCRMatVec`: cycles from ``start`` to ``done``.

    Parameters
    ----------
    bcr : ir.bcr.BCRMatrix
        The layer's structure (values do not matter).
    lanes : int
        Number of MAC lanes ``P`` (per slice).
    slices : int
        Number of slices ``S`` (default 1), split by :func:`bcr_partition`.

    Returns
    -------
    int
        The largest slice's ``sum over its stored blocks of ceil(kept_rows / P) * kept_cols``
        plus ``PIPELINE_LATENCY`` (with one slice: every stored block), or ``0`` if the matrix
        has no rows, no columns or no stored block. Equal to the RTL's ``cycles`` output.
    """
    items = bcr_items(bcr, lanes)
    S = _check_int(slices, "Slices", 1, MAX_SLICES)
    if bcr.shape[0] == 0 or bcr.shape[1] == 0 or bcr.block_count == 0:
        return 0
    if S > 1:
        prefix = np.concatenate([[0], np.cumsum(_block_row_items(bcr, lanes))])
        items = int(np.max(np.diff(prefix[bcr_partition(bcr, lanes, slices)])))
    return items + PIPELINE_LATENCY


class BCRImages(NamedTuple):
    """Memory images of one BCR matrix, as lane/field values (one row per memory word).

    Attributes
    ----------
    meta : numpy.ndarray
        ``(n_blocks, 4)`` int64: ``block_row, block_col, groups, ncols`` per block.
    col_index : numpy.ndarray
        ``(sum nc, 1)`` int64 kept column indices within their block.
    row_index : numpy.ndarray
        ``(sum ng, P)`` int64 kept row indices within their block, ``br`` for padding lanes.
    values : numpy.ndarray
        ``(sum ng * nc, P)`` int64 weights (zero in padding lanes).
    rows, cols, blocks : int
        Runtime ``rows``, ``cols`` and ``blocks`` inputs.
    slice_blocks : tuple of int
        Blocks of each slice (the ``slice_blocks`` input when there are several): the first
        ``slice_blocks[0]`` blocks above belong to slice 0, the next to slice 1, and so on
        (``(blocks,)`` for one slice).
    """

    meta: np.ndarray
    col_index: np.ndarray
    row_index: np.ndarray
    values: np.ndarray
    rows: int
    cols: int
    blocks: int
    slice_blocks: tuple[int, ...] = ()

    def bank(self, s: int) -> BCRImages:
        """The images of slice ``s`` alone, to write into its bank of each memory (word 0 at
        the bank's base); ``blocks`` is the slice's block count."""
        first, n = sum(self.slice_blocks[:s]), self.slice_blocks[s]
        meta = self.meta[first:first + n]

        def span(per_block: np.ndarray) -> slice:
            a = int(per_block[:first].sum())
            return slice(a, a + int(per_block[first:first + n].sum()))

        ng, nc = self.meta[:, 2], self.meta[:, 3]
        return BCRImages(meta=meta, col_index=self.col_index[span(nc)],
                         row_index=self.row_index[span(ng)], values=self.values[span(ng * nc)],
                         rows=self.rows, cols=self.cols, blocks=n, slice_blocks=(n,))


def pack_bcr(bcr: BCRMatrix, lanes: int, slices: int = 1) -> BCRImages:
    """Lay out a BCR matrix for the engine's memories (see the module docstring).

    Blocks are taken in stable block-row order. Turn rows into memory words with
    :func:`pack_fields` (``meta``, ``col_index``, ``row_index``: unsigned fields of
    :func:`bcr_field_widths`) or :func:`hw.dense.pack_words` (``values``: signed). With
    ``slices`` > 1 the block rows are split by :func:`bcr_partition`: the images are the same
    (blocks in block-row order, so slice by slice), ``slice_blocks`` says where each slice's
    blocks start, and :meth:`BCRImages.bank` cuts out one slice's images.
    """
    bcr = _check_bcr_matrix(bcr)
    P = _check_int(lanes, "Lanes", 1)
    bounds = bcr_partition(bcr, P, slices)
    br, _ = bcr.block
    order = np.argsort(bcr.block_row, kind="stable")
    meta, cols, rows, vals = [], [], [], []
    blocks = list(bcr.blocks())
    for k in order:
        r, c, rows_abs, cols_abs, sub = blocks[k]
        nr, nc = sub.shape
        ng = -(-nr // P)
        meta.append((r, c, ng, nc))
        cols.extend(int(v) for v in cols_abs - c * bcr.block[1])
        ridx = np.full(ng * P, br, dtype=np.int64)
        ridx[:nr] = rows_abs - r * br
        rows.append(ridx.reshape(ng, P))
        padded = np.zeros((ng * P, nc), dtype=np.int64)
        padded[:nr] = sub
        # (g, p, j) -> (g, j, p)
        vals.append(padded.reshape(ng, P, nc).transpose(0, 2, 1).reshape(ng * nc, P))
    return BCRImages(
        meta=np.array(meta, dtype=np.int64).reshape(-1, 4),
        col_index=np.array(cols, dtype=np.int64).reshape(-1, 1),
        row_index=np.concatenate(rows) if rows else np.zeros((0, P), dtype=np.int64),
        values=np.concatenate(vals) if vals else np.zeros((0, P), dtype=np.int64),
        rows=bcr.shape[0], cols=bcr.shape[1], blocks=bcr.block_count,
        slice_blocks=tuple(int(n) for n in np.diff(np.searchsorted(
            np.sort(np.asarray(bcr.block_row, dtype=np.int64)), bounds))))


class BCRMatVec(wiring.Component):
    """BCR sparse matrix-vector engine with ``lanes`` MAC lanes.

    Computes ``y[r] = sum_c W[r, c] * x[c]`` (wrapped to ``acc_bits`` bits) for the BCR matrix
    the bench writes into the ``meta``, ``col_index``, ``row_index`` and ``values`` memories
    (see the module docstring and :func:`pack_bcr`), taking :func:`bcr_cycles` cycles.

    Parameters
    ----------
    lanes : int
        Number of MAC lanes ``P``; they work on ``P`` kept rows of a block at a time.
    block : (int, int)
        Block size ``(br, bc)``, fixed per build.
    weight_bits, act_bits : int
        Signed widths, 2 to 16.
    acc_bits : int
        Accumulator and output width, 2 to 64.
    max_rows, max_cols : int
        Largest shape one build serves.
    max_blocks : int, optional
        Depth of the ``meta`` memory: most stored blocks (default: the whole block grid); per
        slice.
    max_value_words : int, optional
        Depth of the ``values`` memory: most items ``sum ceil(nr/P) * nc`` (default: every
        block fully kept); per slice.
    out_ports : int, optional
        Read ports on the output memory, 1 to 8 (default 1).
    slices : int, optional
        Independent pipelines ``S`` over disjoint block rows, 1 to :data:`MAX_SLICES`
        (default 1); each has ``lanes`` lanes and its own memories (module docstring).
    raw_outputs : bool, optional
        When true (default false), an output port's ``data`` is the word as stored, which for
        a block row not written since ``start`` is stale (a previous run's word), and
        ``out_written`` (``out_written1``, ...) says whether the row was written: the
        consumer applies it (``data`` if written, else zero). An enclosing engine that
        registers the word can keep the bit beside it and apply it at use, so the written-row
        select does not run into the word's registers (:mod:`hw.rnn`'s cached gate reads).
        With ``slices > 1`` the data are zeroed per slice as before (the OR needs it) and the
        bit is the OR of the slices' bits.

    Members
    -------
    start : ``In(1)``
        Pulse (while not ``busy``) to latch ``blocks`` and start; ignored while ``busy``.
    rows, cols, blocks : ``In``
        Runtime shape and number of stored blocks, sampled at ``start``; zero in any sets
        ``done`` at once with ``cycles == 0`` and every output zero (the metadata alone
        drives the run otherwise).
    slice_blocks : ``In(data.ArrayLayout(range(max_blocks + 1), slices))``
        Only when ``slices > 1``: the blocks in each slice's bank
        (:attr:`BCRImages.slice_blocks`), sampled at ``start``.
    busy, done : ``Out(1)``
    cycles : ``Out(32)``
        Equals :func:`bcr_cycles`.
    meta_wr, col_wr, row_wr, w_wr, x_wr : ``Out(WritePort.Signature(...))``
        Bench write ports (the first four banked by slice, module docstring).
    out_rd : ``Out(ReadPort.Signature(...))``
        Bench read port of the outputs (``br`` signed lanes per word); drive ``en`` high.
    out_rd1, out_rd2, ... : ``Out(ReadPort.Signature(...))``
        Further output read ports, the same as ``out_rd``, when ``out_ports > 1`` (for an
        enclosing engine that reads several output words per cycle, e.g. :mod:`hw.rnn`).
    out_written, out_written1, ... : ``Out(1)``
        Only with ``raw_outputs``: whether the block row port ``out_rd`` (``out_rd1``, ...)
        read, the address it registered, was written since ``start``; valid with its data.
    """

    def __init__(self, lanes: int, *, block: tuple[int, int] = (8, 16), weight_bits: int = 8,
                 act_bits: int = 8, acc_bits: int = 32, max_rows: int = 64, max_cols: int = 64,
                 max_blocks: int | None = None, max_value_words: int | None = None,
                 out_ports: int = 1, slices: int = 1, raw_outputs: bool = False) -> None:
        self.out_ports = _check_int(out_ports, "Output read ports", 1, 8)
        self.raw_outputs = bool(raw_outputs)
        p = check_bcr_parameters(lanes, block=block, weight_bits=weight_bits, act_bits=act_bits,
                                 acc_bits=acc_bits, max_rows=max_rows, max_cols=max_cols,
                                 max_blocks=max_blocks, max_value_words=max_value_words,
                                 slices=slices)
        self.slices = p["slices"]
        self.lanes = p["lanes"]
        self.block = p["block"]
        self.weight_bits = p["weight_bits"]
        self.act_bits = p["act_bits"]
        self.acc_bits = p["acc_bits"]
        self.max_rows = p["max_rows"]
        self.max_cols = p["max_cols"]
        self.max_blocks = p["max_blocks"]
        self.max_value_words = p["max_value_words"]
        br, bc = self.block
        P = self.lanes
        self.max_groups = -(-br // P)
        self.grid_rows = -(-self.max_rows // br)
        self.widths = bcr_field_widths(P, self.block, self.max_rows, self.max_cols)

        self.meta_depth = max(2, self.max_blocks)
        self.col_depth = max(2, self.max_blocks * bc)
        self.row_depth = max(2, self.max_blocks * self.max_groups)
        self.value_depth = max(2, self.max_value_words)
        self.act_depth = max(2, self.max_cols)
        self.out_depth = max(2, self.grid_rows)
        #: Address bits of one slice's bank of each banked memory (``meta``, ``col``, ``row``,
        #: ``w``); the bench port's address has ``ceil_log2(slices)`` more bits above them.
        self.bank_bits = {"meta": ceil_log2(self.meta_depth), "col": ceil_log2(self.col_depth),
                          "row": ceil_log2(self.row_depth), "w": ceil_log2(self.value_depth)}
        w = self.widths
        self.meta_layout = data.StructLayout({
            "block_row": unsigned(w["block_row"]), "block_col": unsigned(w["block_col"]),
            "groups": unsigned(w["groups"]), "ncols": unsigned(w["ncols"])})
        self.row_layout = data.ArrayLayout(unsigned(w["row_index"]), P)
        self.value_layout = data.ArrayLayout(signed(self.weight_bits), P)
        self.out_layout = data.ArrayLayout(signed(self.acc_bits), br)

        slice_bits = ceil_log2(self.slices)

        def wr(depth, shape, banked=True):
            bits = ceil_log2(depth) + (slice_bits if banked else 0)
            return Out(WritePort.Signature(addr_width=bits, shape=shape))

        out_sig = Out(ReadPort.Signature(addr_width=ceil_log2(self.out_depth),
                                         shape=self.out_layout))
        super().__init__({
            "start": In(1),
            "rows": In(range(self.max_rows + 1)),
            "cols": In(range(self.max_cols + 1)),
            "blocks": In(range(self.slices * self.max_blocks + 1)),
            **({} if self.slices == 1 else {"slice_blocks": In(data.ArrayLayout(
                range(self.max_blocks + 1), self.slices))}),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "meta_wr": wr(self.meta_depth, self.meta_layout),
            "col_wr": wr(self.col_depth, unsigned(w["col_index"])),
            "row_wr": wr(self.row_depth, self.row_layout),
            "w_wr": wr(self.value_depth, self.value_layout),
            "x_wr": wr(self.act_depth, signed(self.act_bits), banked=False),
            "out_rd": out_sig,
            **{f"out_rd{n}": out_sig for n in range(1, self.out_ports)},
            **({f"out_written{n or ''}": Out(1) for n in range(self.out_ports)}
               if self.raw_outputs else {}),
        })

    def parameters(self) -> dict[str, Any]:
        """Build parameters, JSON-serialisable, as recorded in the emitted sidecar."""
        extra = {"out_ports": self.out_ports} if self.out_ports > 1 else {}
        if self.slices > 1:
            extra["slices"] = self.slices
        if self.raw_outputs:
            extra["raw_outputs"] = True
        return {
            **extra,
            "engine": "bcr", "lanes": self.lanes, "block": list(self.block),
            "weight_bits": self.weight_bits, "act_bits": self.act_bits,
            "acc_bits": self.acc_bits, "max_rows": self.max_rows, "max_cols": self.max_cols,
            "max_blocks": self.max_blocks, "max_value_words": self.max_value_words,
            "pipeline_latency": PIPELINE_LATENCY,
        }

    def memory_map(self) -> list[dict[str, Any]]:
        """Describe the memories a bench fills or reads (recorded in the JSON sidecar); same
        keys as :meth:`hw.dense.DenseMatVec.memory_map`.

        With ``slices`` > 1 every entry also has ``copies`` (``S``: one memory of ``depth``
        words per slice) and the banked ones (``meta``, ``col_index``, ``row_index``,
        ``values``) ``bank_stride``: slice ``s``'s word ``i`` is at port address
        ``s * bank_stride + i``.
        """
        def sig(port):
            return {k: f"{port}__{k}" for k in ("addr", "data", "en")}
        P, wb, ab, acc = self.lanes, self.weight_bits, self.act_bits, self.acc_bits
        br, bc = self.block
        w = self.widths
        meta_bits = sum(w[k] for k in ("block_row", "block_col", "groups", "ncols"))
        mems = [
            {"name": "meta", "depth": self.meta_depth, "width": meta_bits, "lanes": 1,
             "lane_bits": meta_bits, "access": "write", "port": "meta_wr",
             "signals": sig("meta_wr"),
             "fields": {k: w[k] for k in ("block_row", "block_col", "groups", "ncols")},
             "layout": "word k: block_row, block_col, groups = ceil(kept_rows/"
                       f"{P}), ncols = kept_cols of block k (blocks grouped by block row), "
                       "fields from the least significant bit"},
            {"name": "col_index", "depth": self.col_depth, "width": w["col_index"], "lanes": 1,
             "lane_bits": w["col_index"], "access": "write", "port": "col_wr",
             "signals": sig("col_wr"),
             "layout": "word C_k + j: j-th kept column of block k within the block, "
                       "C_k = sum of ncols of earlier blocks"},
            {"name": "row_index", "depth": self.row_depth, "width": P * w["row_index"],
             "lanes": P, "lane_bits": w["row_index"], "access": "write", "port": "row_wr",
             "signals": sig("row_wr"),
             "layout": f"word R_k + g, lane p: kept row g*{P} + p of block k within the block, "
                       f"or {br} past the kept rows; R_k = sum of groups of earlier blocks"},
            {"name": "values", "depth": self.value_depth, "width": P * wb, "lanes": P,
             "lane_bits": wb, "access": "write", "port": "w_wr", "signals": sig("w_wr"),
             "layout": f"word V_k + g*ncols_k + j, lane p: weight at kept row g*{P} + p, kept "
                       "column j of block k (0 past the kept rows), two's complement; "
                       "V_k = sum of groups*ncols of earlier blocks"},
            {"name": "activations", "depth": self.act_depth, "width": ab, "lanes": 1,
             "lane_bits": ab, "access": "write", "port": "x_wr", "signals": sig("x_wr"),
             "layout": "address c holds x[c], two's complement"},
            {"name": "outputs", "depth": self.out_depth, "width": br * acc, "lanes": br,
             "lane_bits": acc, "access": "read", "port": "out_rd", "signals": sig("out_rd"),
             "layout": f"address b holds y[b*{br} + i] in bits [i*{acc}, (i+1)*{acc}) for "
                       f"i < {br}, wrapped to {acc} bits, two's complement; synchronous read"},
        ]
        return mems if self.slices == 1 else [self._slice_entry(mm) for mm in mems]

    def _slice_entry(self, mm: dict[str, Any]) -> dict[str, Any]:
        """``mm`` of :meth:`memory_map` for a build with several slices."""
        bank = {"meta": "meta", "col_index": "col", "row_index": "row", "values": "w"}
        S = self.slices
        if mm["name"] in bank:
            stride = 1 << self.bank_bits[bank[mm["name"]]]
            return {**mm, "copies": S, "bank_stride": stride,
                    "layout": f"slice s (of {S}) at addresses s*{stride} + i, i < {mm['depth']}: "
                              f"{mm['layout']}; k counts the slice's blocks (hw.bcr.BCRImages."
                              "bank)"}
        if mm["name"] == "activations":
            return {**mm, "copies": S,
                    "layout": f"{mm['layout']}; written into all {S} slices' copies at once"}
        return {**mm, "copies": S,
                "layout": f"{mm['layout']}; the OR of the {S} slices' words, each zero for "
                          "block rows its slice does not own"}

    def elaborate(self, platform):
        m = Module()
        empty = (self.rows == 0) | (self.cols == 0) | (self.blocks == 0)
        if self.slices == 1:
            wr = {name: (port.addr, port.data, port.en) for name, port in self._write_ports()}
            rd = [(port.addr, port.en, Value.cast(port.data), wbit)
                  for port, wbit in zip(self._out_ports(), self._written_bits(), strict=True)]
            self._slice(m, wr, rd, self.start, self.blocks, empty, whole=True,
                        mask=not self.raw_outputs)
            return m

        # Several slices: each a submodule with its own memories and pipeline; the top holds
        # the write-port decoders, the output OR and the one cycle counter.
        busy = Signal()
        done = Signal()
        cycles = Signal(CYCLE_COUNTER_BITS)
        m.d.comb += [self.busy.eq(busy), self.done.eq(done), self.cycles.eq(cycles)]
        launch = Signal()
        m.d.comb += launch.eq(self.start & ~busy)
        busys, dones, outs, wbits = [], [], [], []
        for s in range(self.slices):
            wr = {}
            for name, port in self._write_ports():
                if name == "x":     # activations: broadcast to every slice's copy
                    wr[name] = (port.addr, port.data, port.en)
                else:               # banked: slice s's word i at s << bank_bits | i
                    bits = self.bank_bits[name]
                    wr[name] = (port.addr[:bits], port.data, port.en & (port.addr[bits:] == s))
            slice_out = [Signal(len(Value.cast(port.data)), name=f"slice{s}_out{n}")
                         for n, port in enumerate(self._out_ports())]
            slice_wbit = [Signal(name=f"slice{s}_written{n}") if self.raw_outputs else None
                          for n in range(self.out_ports)]
            rd = [(port.addr, port.en, out, wbit) for port, out, wbit
                  in zip(self._out_ports(), slice_out, slice_wbit, strict=True)]
            count = self.slice_blocks[s]
            sm = Module()
            busy_s, done_s = self._slice(sm, wr, rd, launch, count, empty | (count == 0),
                                         whole=False)
            m.submodules[f"slice{s}"] = sm
            busys.append(busy_s)
            dones.append(done_s)
            outs.append(slice_out)
            wbits.append(slice_wbit)
        m.d.comb += [busy.eq(_or_tree(busys)), done.eq(Cat(*dones).all())]
        # Block rows are disjoint across slices and a slice's unwritten rows read zero.
        for n, port in enumerate(self._out_ports()):
            m.d.comb += Value.cast(port.data).eq(_or_tree([out[n] for out in outs]))
        if self.raw_outputs:
            for n, wbit in enumerate(self._written_bits()):
                m.d.comb += wbit.eq(_or_tree([w[n] for w in wbits]))
        with m.If(launch):
            m.d.sync += cycles.eq(0)
        with m.Elif(busy):
            m.d.sync += cycles.eq(cycles + 1)
        return m

    def _write_ports(self) -> list[tuple[str, Any]]:
        return [("meta", self.meta_wr), ("col", self.col_wr), ("row", self.row_wr),
                ("w", self.w_wr), ("x", self.x_wr)]

    def _out_ports(self) -> list[Any]:
        return [getattr(self, f"out_rd{n}" if n else "out_rd") for n in range(self.out_ports)]

    def _written_bits(self) -> list[Any]:
        """The ``out_written`` outputs, or a ``None`` per port without ``raw_outputs``."""
        if not self.raw_outputs:
            return [None] * self.out_ports
        return [getattr(self, f"out_written{n or ''}") for n in range(self.out_ports)]

    def _slice(self, m: Module, wr: dict[str, tuple[Any, Any, Any]],
               rd: list[tuple[Any, Any, Any, Any]], start: Any, count: Any, empty: Any, *,
               whole: bool, mask: bool = True) -> tuple[Signal, Signal]:
        """Add one slice (memories, pipeline, control) to ``m``; return its ``busy`` and
        ``done`` registers.

        ``wr`` maps ``meta``/``col``/``row``/``w``/``x`` to the ``(addr, data, en)`` driving
        that memory's write port; ``rd`` lists ``(addr, en, data, written)`` per output read
        port, where ``data`` is driven with the word (with ``mask``, zero for block rows this
        slice did not write) and ``written``, unless ``None``, with the row's written bit.
        ``start`` launches a run of ``count`` blocks (``empty``: done at once). ``whole``: the
        slice is the whole engine (``slices == 1``) and drives ``busy``, ``done`` and
        ``cycles`` itself.
        """
        P = self.lanes
        br, bc = self.block

        m.submodules.meta = meta_mem = Memory(shape=self.meta_layout, depth=self.meta_depth,
                                              init=[])
        m.submodules.col_index = col_mem = Memory(shape=unsigned(self.widths["col_index"]),
                                                  depth=self.col_depth, init=[])
        m.submodules.row_index = row_mem = Memory(shape=self.row_layout, depth=self.row_depth,
                                                  init=[])
        # A value memory deeper than one block RAM is banked, each bank's output registered
        # (hw.banked): read at stage 0's address, its word arrives in stage 2 as before.
        m.submodules.values = w_mem = deep_memory(self.value_layout, self.value_depth)
        banked_values = isinstance(w_mem, BankedMemory)
        m.submodules.activations = x_mem = Memory(shape=signed(self.act_bits),
                                                  depth=self.act_depth, init=[])
        m.submodules.outputs = o_mem = Memory(shape=self.out_layout, depth=self.out_depth,
                                              init=[])
        meta_wp = meta_mem.write_port()
        meta_rp = meta_mem.read_port()
        col_wp = col_mem.write_port()
        col_rp = col_mem.read_port()
        row_wp = row_mem.write_port()
        row_rp = row_mem.read_port()
        w_wp = w_mem.wr if banked_values else w_mem.write_port()
        w_rp = None if banked_values else w_mem.read_port()
        x_wp = x_mem.write_port()
        # Small enough for LUT-RAM: an asynchronous port, its address registered in stage 1.
        # Larger: a synchronous port addressed by stage 1's sum (the same read, the same
        # cycle), since a block RAM has no asynchronous read and Yosys would make it one by
        # absorbing xq, leaving the block RAM's clock-to-output in front of the multipliers.
        lutram_acts = self.act_depth <= LUTRAM_MAX_ACT_WORDS
        x_rp = x_mem.read_port(domain="comb") if lutram_acts else x_mem.read_port()
        o_wp = o_mem.write_port()

        for wp, (addr, wdata, en) in ((meta_wp, wr["meta"]), (col_wp, wr["col"]),
                                      (row_wp, wr["row"]), (w_wp, wr["w"]), (x_wp, wr["x"])):
            m.d.comb += [wp.addr.eq(addr), wp.data.eq(wdata), wp.en.eq(en)]

        # Output read ports; block rows never written read as zero. The address is registered
        # beside the memory's own and the written bit selected after the register: a port
        # address computed late in its cycle (hw.rnn's cached gate read) then meets the memory
        # alone, not the written-row select too.
        # Without ``mask`` the word goes out as stored and the bit beside it.
        written = Signal(self.out_depth)
        for n, (addr, en, rdata, wbit) in enumerate(rd):
            o_rp = o_mem.read_port()
            addr_q = Signal.like(addr, name=f"out_addr_q{n}" if n else "out_addr_q")
            m.d.comb += [o_rp.addr.eq(addr), o_rp.en.eq(en)]
            with m.If(en):
                m.d.sync += addr_q.eq(addr)
            was_written = written.bit_select(addr_q, 1)
            if wbit is not None:
                m.d.comb += wbit.eq(was_written)
            m.d.comb += rdata.eq(Mux(was_written, Value.cast(o_rp.data), 0) if mask
                                 else Value.cast(o_rp.data))

        busy = Signal()
        done = Signal()
        cycles = None
        if whole:
            cycles = Signal(CYCLE_COUNTER_BITS)
            m.d.comb += [self.busy.eq(busy), self.done.eq(done), self.cycles.eq(cycles)]

        # ---------------------------------------------------------------- stage 0: issue
        prime = Signal()        # metadata of block 0 arrives
        issuing = Signal()
        k = Signal(range(self.max_blocks + 1))
        g = Signal(range(self.max_groups + 1))
        j = Signal(range(bc + 1))
        cur = Signal(self.meta_layout)
        colptr = Signal(range(self.col_depth + 1))
        rowptr = Signal(range(self.row_depth + 1))
        vaddr = Signal(range(self.value_depth + 1))
        nxt = meta_rp.data      # metadata of block k + 1
        # ncols - 1, groups - 1 and blocks - 1, registered as cur loads and at start: the
        # end-of-block tests compare two registers, no subtractor in front of the metadata
        # read's address.
        ncols_m1 = Signal(signed(len(cur.ncols) + 1))
        groups_m1 = Signal(signed(len(cur.groups) + 1))
        nblocks_m1 = Signal(signed(len(Value.cast(count)) + 1))

        last_j = Signal()
        last_g = Signal()
        end_block = Signal()
        last_block = Signal()
        final0 = Signal()
        m.d.comb += [
            last_j.eq(j == ncols_m1),
            last_g.eq(g == groups_m1),
            end_block.eq(last_j & last_g),
            last_block.eq(k == nblocks_m1),
            final0.eq(end_block & last_block),
            col_rp.addr.eq(colptr + j),
        ]
        with m.If(prime):
            m.d.comb += meta_rp.addr.eq(1)
        with m.Elif(issuing):
            m.d.comb += meta_rp.addr.eq(Mux(end_block, k + 2, k + 1))
        with m.Else():
            m.d.comb += meta_rp.addr.eq(0)

        # ---------------------------------------------------------------- stage 1: gather
        v1, first1, last1, end1, final1 = (Signal(name=f"{n}1") for n in
                                           ("v", "first", "last", "end", "final"))
        brow1 = Signal.like(cur.block_row)
        # The next block's row, registered straight from the metadata memory: the block-row
        # change test (does this block end its block row?) compares two registers in stage 2,
        # not the block RAM's output in stage 0.
        nbrow1 = Signal.like(cur.block_row)
        cbase1 = Signal(range(self.max_cols + bc + 1))
        vaddr1 = Signal.like(vaddr)
        raddr1 = Signal.like(rowptr)
        m.d.sync += [
            v1.eq(issuing), first1.eq(j == 0), last1.eq(last_j), end1.eq(end_block),
            final1.eq(final0), brow1.eq(cur.block_row), nbrow1.eq(nxt.block_row),
            cbase1.eq(cur.block_col * bc), vaddr1.eq(vaddr), raddr1.eq(rowptr + g),
        ]
        # The activation's address is registered here and read in stage 2 (a registered
        # address, not a registered output): the column-index block RAM's output and its add
        # no longer run into the activation memory's read in the same cycle.
        if lutram_acts:
            xaddr = Signal.like(x_rp.addr)
            m.d.sync += xaddr.eq(cbase1 + col_rp.data)
            m.d.comb += x_rp.addr.eq(xaddr)
        else:
            m.d.comb += x_rp.addr.eq(cbase1 + col_rp.data)
        if banked_values:
            m.d.comb += w_mem.rd_addr.eq(vaddr)
            w_word = w_mem.rd_data
        else:
            m.d.comb += w_rp.addr.eq(vaddr1)
            w_word = w_rp.data

        # ---------------------------------------------------------------- stage 2: read
        # The value word and the activation arrive and are registered: the block RAM's output
        # (through the read mux of a memory deeper than one block RAM) no longer feeds the
        # multipliers in the same cycle.
        v1r, first1r, last1r, rend1r, final1r = (Signal(name=f"{n}1r") for n in
                                                 ("v", "first", "last", "rend", "final"))
        brow1r = Signal.like(brow1)
        raddr1r = Signal.like(raddr1)
        wq = Signal(self.value_layout)
        xq = Signal(signed(self.act_bits))
        # The item ends its block row: the last block's end, or a block's end before a block
        # of another row.
        m.d.sync += [v1r.eq(v1), first1r.eq(first1), last1r.eq(last1),
                     rend1r.eq(final1 | (end1 & (nbrow1 != brow1))), final1r.eq(final1),
                     brow1r.eq(brow1), raddr1r.eq(raddr1),
                     wq.eq(w_word), xq.eq(x_rp.data)]

        # ---------------------------------------------------------------- stage 3: multiply
        v2, first2, last2, rend2, final2 = (Signal(name=f"{n}2") for n in
                                            ("v", "first", "last", "rend", "final"))
        brow2 = Signal.like(brow1)
        m.d.sync += [v2.eq(v1r), first2.eq(first1r), last2.eq(last1r), rend2.eq(rend1r),
                     final2.eq(final1r), brow2.eq(brow1r)]
        # The row group's kept row indices: read in the read stage, registered here (the block
        # RAM's output no longer runs into the accumulate stage's row decode).
        m.d.comb += row_rp.addr.eq(raddr1r)
        rows2 = Signal.like(row_rp.data)
        m.d.sync += rows2.eq(row_rp.data)
        prods = [Signal(signed(self.weight_bits + self.act_bits), name=f"prod{p}")
                 for p in range(P)]
        for p in range(P):
            m.d.sync += prods[p].eq(wq[p] * xq)

        # ---------------------------------------------------------------- stage 4: accumulate
        v3, last3, rend3, final3 = (Signal(name=f"{n}3") for n in ("v", "last", "rend", "final"))
        brow3 = Signal.like(brow2)
        m.d.sync += [v3.eq(v2), last3.eq(last2), rend3.eq(rend2), final3.eq(final2),
                     brow3.eq(brow2)]
        # A lane's accumulator is cleared as the item that starts a row group enters this
        # stage (the multiply stage's first2), so the adder takes two registers: no restart
        # mux (first fanned out to every accumulator bit) in front of it and the row select.
        accs = [Signal(signed(self.acc_bits), name=f"acc{p}") for p in range(P)]
        sums = [Signal(signed(self.acc_bits), name=f"sum{p}") for p in range(P)]
        for p in range(P):
            m.d.comb += sums[p].eq(accs[p] + prods[p])
            with m.If(v2 | v3):
                m.d.sync += accs[p].eq(Mux(first2, 0, sums[p]))
        # On a row group's last item, its lane sums are registered by block row: row i takes
        # the sum of the lane whose kept row index is i (kept rows of a block are distinct, so
        # at most one lane; zero if none). The row decode runs beside the lane adders.
        v4, rend4, final4 = (Signal(name=f"{n}4") for n in ("v", "rend", "final"))
        brow4 = Signal.like(brow3)
        hits4 = [Signal(signed(self.acc_bits), name=f"hit{i}_4") for i in range(br)]
        m.d.sync += [v4.eq(v3 & last3), rend4.eq(rend3), final4.eq(v3 & final3),
                     brow4.eq(brow3)]
        with m.If(v3 & last3):
            for i in range(br):
                m.d.sync += hits4[i].eq(_or_tree([Mux(rows2[p] == i, sums[p], 0)
                                                  for p in range(P)]))

        # ---------------------------------------------------------------- stage 5: scatter
        locs = [Signal(signed(self.acc_bits), name=f"loc{i}") for i in range(br)]
        news = [Signal(signed(self.acc_bits), name=f"new{i}") for i in range(br)]
        for i in range(br):
            # Used only when v4: the block-row accumulators and the output write take it then.
            m.d.comb += news[i].eq(locs[i] + hits4[i])
        m.d.comb += [Value.cast(o_wp.data).eq(Cat(*news)), o_wp.addr.eq(brow4),
                     o_wp.en.eq(v4 & rend4)]
        with m.If(v4):
            for i in range(br):
                m.d.sync += locs[i].eq(Mux(rend4, 0, news[i]))
            with m.If(rend4):
                m.d.sync += written.bit_select(brow4, 1).eq(1)

        # ---------------------------------------------------------------- control
        with m.If(prime):
            m.d.sync += [prime.eq(0), issuing.eq(1), cur.eq(nxt), ncols_m1.eq(nxt.ncols - 1),
                         groups_m1.eq(nxt.groups - 1)]
        with m.If(issuing):
            m.d.sync += vaddr.eq(vaddr + 1)
            with m.If(last_j):
                m.d.sync += j.eq(0)
                with m.If(last_g):
                    m.d.sync += [g.eq(0), k.eq(k + 1), cur.eq(nxt), ncols_m1.eq(nxt.ncols - 1),
                                 groups_m1.eq(nxt.groups - 1), colptr.eq(colptr + cur.ncols),
                                 rowptr.eq(rowptr + cur.groups)]
                    with m.If(final0):
                        m.d.sync += issuing.eq(0)
                with m.Else():
                    m.d.sync += g.eq(g + 1)
            with m.Else():
                m.d.sync += j.eq(j + 1)

        with m.If(start & ~busy):
            m.d.sync += [
                nblocks_m1.eq(count - 1),
                *([] if cycles is None else [cycles.eq(0)]), done.eq(0),
                written.eq(0), k.eq(0), g.eq(0), j.eq(0), colptr.eq(0), rowptr.eq(0),
                vaddr.eq(0), *(loc.eq(0) for loc in locs),
            ]
            with m.If(empty):
                m.d.sync += done.eq(1)
            with m.Else():
                m.d.sync += [busy.eq(1), prime.eq(1)]
        with m.Elif(busy):
            if cycles is not None:
                m.d.sync += cycles.eq(cycles + 1)
            with m.If(v4 & final4):
                m.d.sync += [busy.eq(0), done.eq(1)]
        return busy, done
