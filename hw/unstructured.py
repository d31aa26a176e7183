"""Unstructured sparse matrix-vector engine (EIE-style): CSC with relative row indices per lane.

:class:`UnstructuredMatVec` computes ``y = W @ x`` for a weight matrix stored as
:func:`ir.csr.encode_csc_lanes` lays it out: ``P = lanes`` lanes, lane ``p`` owning the
interleaved rows ``p, p + P, p + 2P, ...`` (its *lane rows* ``0, 1, 2, ...``), each lane's rows in
CSC form with ``index_bits``-wide relative row indices counted in lane rows; a gap of more zeros
than an index can count is bridged by padding entries (value 0), which cost a cycle like real
entries. The engine walks the columns ``c = 0..cols-1`` in order and broadcasts ``x[c]`` to the
lanes; each lane processes its entries of the column, one per cycle, accumulating into its own
lane rows.

Microarchitecture
-----------------
* **Column head** (one cycle per column, zero activation or not): the activation ``x[c]`` and
  the count word of column ``c`` (``P`` per-lane entry counts, prefetched the cycle before)
  arrive; every lane's entry pointer is set to its running base, and the base advances by the
  lane's count (so skipped columns cost no pointer walk). If ``x[c] == 0`` the column ends here:
  a zero activation costs exactly this one cycle. Otherwise the column issues
  ``n_c = max_p count_p[c]`` items.
* **Items** (one cycle each): item ``i`` reads entry ``ptr_p + i`` of every lane with
  ``i < count_p[c]``; lanes with fewer entries idle. The lanes synchronise per column: the
  column takes the *maximum* over the lanes, so load imbalance between lanes shows in the cycles
  (an honest stall; there are no per-lane activation queues).
* **Decode / multiply** (pipeline stage A): the entry's value and relative index arrive; the lane
  row is ``rel`` for the column's first entry, else ``previous row + rel + 1``; the accumulator
  memory of the lane is read at that row and the product ``value * x[c]`` is registered.
* **Accumulate** (stage B): the accumulator word read (or zero if that lane row has not been
  written since ``start``: a per-lane *written* bit vector) plus the product is written back.
  The accumulator read port is transparent for its write port, so a read in the same cycle as a
  write of the same row sees the new sum (no read-modify-write hazard, no bubble).

Hence :func:`unstructured_cycles`: ``PIPELINE_LATENCY + sum over columns c of
(1 + [x[c] != 0] * max_p count_p[c])`` with ``PIPELINE_LATENCY = 3`` (one prefetch cycle of the
first column's head, two pipeline stages after the last issue), or ``0`` when ``rows`` or
``cols`` is zero (``done`` at once, all outputs zero). Padding entries count in ``count_p[c]``.
Ideal balanced work would be ``sum_c [x[c] != 0] * ceil(nnz_c / P)``; the gap to it is the
load imbalance (plus padding and the per-column head cycle).

Memory map (see :meth:`UnstructuredMatVec.memory_map`)
-------------------------------------------------------
* ``counts`` (write, depth ``max_cols``): word ``c`` holds in field ``p`` the number of stored
  entries (padding included) of lane ``p`` in column ``c`` (``P`` unsigned fields of
  ``count_bits = bits(ceil(max_rows / P) + 1)``, field 0 in the least significant bits);
* ``entries`` (write, ``P`` banks of depth ``max_entries``): through one write port ``e_wr``
  whose address is ``(p << entry_addr_bits) | a`` for entry ``a`` of lane ``p`` (lane ``p``'s
  entries of all columns in column order, i.e. its ``CSCMatrix.values`` / ``rel_index``), word
  ``value`` (signed ``weight_bits``, low bits) then ``rel`` (unsigned ``index_bits``);
* ``activations`` (write, depth ``max_cols``): address ``c`` holds ``x[c]``;
* ``outputs`` (read, depth ``ceil(max_rows / P)``): word ``g`` holds ``y[g * P + p]`` in lane
  ``p``, wrapped to ``acc_bits`` bits (the same layout as :mod:`hw.dense`); synchronous read,
  rows never written read as zero.

Memories must only be written (and outputs read) while the engine is not ``busy``.

Lint
----
``verilator --lint-only -Wall`` reports only the classes waived for :mod:`hw.dense`
(``PROCASSINIT``, ``UNUSEDSIGNAL``, ``WIDTHEXPAND``, ``WIDTHTRUNC``), for the same reasons
(register initialisers, Amaranth's alias wires, minimal-width constants and intended
truncations, such as the prefetch address ``c + 1`` past the last column and entry pointers of
idle lanes running past their column).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.dense import CYCLE_COUNTER_BITS, _check_int
from hw.packing import pack_entry_words  # noqa: F401 (re-exported)
from ir.csr import CSCLanes

__all__ = [
    "UnstructuredMatVec", "UnstructuredImages", "check_unstructured_parameters",
    "unstructured_cycles", "column_items", "pack_unstructured", "pack_entry_words",
    "count_bits", "PIPELINE_LATENCY",
]

#: Cycles from ``start`` to ``done`` beyond the columns' head and item cycles.
PIPELINE_LATENCY = 3


def _bits(n: int) -> int:
    """Width of an unsigned field holding ``range(n)`` values, at least 1."""
    return max(1, ceil_log2(max(n, 1)))


def count_bits(lanes: int, max_rows: int) -> int:
    """Width of one lane's entry count in a ``counts`` word: holds ``0..ceil(max_rows/P)``."""
    return _bits(-(-max_rows // lanes) + 1)


def check_unstructured_parameters(lanes: int, *, weight_bits: int = 8, act_bits: int = 8,
                                  acc_bits: int = 32, index_bits: int = 4, max_rows: int = 64,
                                  max_cols: int = 64, max_entries: int | None = None
                                  ) -> dict[str, Any]:
    """Validate :class:`UnstructuredMatVec` parameters without building anything.

    ``max_entries`` (entries per lane, padding included) defaults to
    ``ceil(max_rows / lanes) * max_cols``, every weight stored, which is also its maximum (a
    lane's entries of one column sit on distinct lane rows).

    Raises
    ------
    TypeError, ValueError
        e.g. ``"Index width must be an integer between 1 and 16, not 0"``.
    """
    params: dict[str, Any] = {
        "lanes": _check_int(lanes, "Lanes", 1),
        "weight_bits": _check_int(weight_bits, "Weight width", 2, 16),
        "act_bits": _check_int(act_bits, "Activation width", 2, 16),
        "acc_bits": _check_int(acc_bits, "Accumulator width", 2, 64),
        "index_bits": _check_int(index_bits, "Index width", 1, 16),
        "max_rows": _check_int(max_rows, "Maximum rows", 1),
        "max_cols": _check_int(max_cols, "Maximum columns", 1),
    }
    lane_rows = -(-params["max_rows"] // params["lanes"])
    cap = lane_rows * params["max_cols"]
    params["max_entries"] = cap if max_entries is None else _check_int(
        max_entries, "Maximum entries per lane", 1, cap)
    worst = params["max_cols"] * (1 + lane_rows) + PIPELINE_LATENCY
    if worst >= 1 << CYCLE_COUNTER_BITS:
        raise ValueError(f"Maximum of {params['max_cols']} columns of {lane_rows} lane rows "
                         f"takes {worst} cycles, more than the {CYCLE_COUNTER_BITS}-bit cycle "
                         "counter holds")
    return params


def _check_csc(csc: Any) -> CSCLanes:
    if not isinstance(csc, CSCLanes):
        raise TypeError(f"CSC lanes must be an ir.csr.CSCLanes, not {type(csc).__name__}")
    return csc


def column_items(csc_lanes: CSCLanes) -> np.ndarray:
    """``(cols, P)`` int64: stored entries (padding included) of each lane in each column."""
    csc = _check_csc(csc_lanes)
    return np.stack([np.diff(m.ptr) for m in csc.lane_matrices], axis=1).astype(np.int64)


def unstructured_cycles(csc_lanes: CSCLanes, x: Any, lanes: int) -> int:
    """Cycle model of :class:`UnstructuredMatVec`: cycles from ``start`` to ``done``.

    Parameters
    ----------
    csc_lanes : ir.csr.CSCLanes
        The layer's structure (values do not matter), encoded for ``lanes`` lanes.
    x : array-like, shape ``(cols,)``
        The activations; only which are zero matters.
    lanes : int
        Number of lanes ``P``; must equal ``csc_lanes.lanes``.

    Returns
    -------
    int
        ``PIPELINE_LATENCY + sum_c (1 + [x[c] != 0] * max_p count_p[c])``, or ``0`` if the
        matrix has no rows or no columns. Equal to the RTL's ``cycles`` output.
    """
    csc = _check_csc(csc_lanes)
    lanes = _check_int(lanes, "Lanes", 1)
    if lanes != csc.lanes:
        raise ValueError(f"CSC lanes are encoded for {csc.lanes} lanes, not {lanes}")
    rows, cols = csc.shape
    x = np.asarray(x)
    if x.shape != (cols,):
        raise ValueError(f"Activations of shape {x.shape} do not match {cols} columns")
    if rows == 0 or cols == 0:
        return 0
    per_col = column_items(csc).max(axis=1)
    return PIPELINE_LATENCY + cols + int(np.sum(np.where(x != 0, per_col, 0)))


class UnstructuredImages(NamedTuple):
    """Memory images of one layer, as field values.

    Attributes
    ----------
    counts : numpy.ndarray
        ``(cols, P)`` int64 entry counts (the ``counts`` words, field ``p`` per lane).
    values, rel_index : tuple of numpy.ndarray
        Per lane ``p``, its entries' int64 values and relative indices, in memory order.
    rows, cols : int
        Runtime ``rows`` and ``cols`` inputs.
    """

    counts: np.ndarray
    values: tuple[np.ndarray, ...]
    rel_index: tuple[np.ndarray, ...]
    rows: int
    cols: int


def pack_unstructured(csc_lanes: CSCLanes) -> UnstructuredImages:
    """Lay out a :class:`ir.csr.CSCLanes` for the engine's memories (module docstring).

    Turn ``counts`` into words with :func:`hw.bcr.pack_fields` (width :func:`count_bits`) and
    each lane's entries with :func:`pack_entry_words`.
    """
    csc = _check_csc(csc_lanes)
    return UnstructuredImages(
        counts=column_items(csc),
        values=tuple(np.asarray(m.values).astype(np.int64) for m in csc.lane_matrices),
        rel_index=tuple(np.asarray(m.rel_index, dtype=np.int64) for m in csc.lane_matrices),
        rows=int(csc.shape[0]), cols=int(csc.shape[1]))


class UnstructuredMatVec(wiring.Component):
    """Unstructured (CSC, relative row index) sparse matrix-vector engine with ``lanes`` lanes.

    Computes ``y[r] = sum_c W[r, c] * x[c]`` (wrapped to ``acc_bits`` bits) for the layer the
    bench writes into ``counts`` and ``entries`` (see the module docstring and
    :func:`pack_unstructured`), taking :func:`unstructured_cycles` cycles.

    Parameters
    ----------
    lanes : int
        Number of lanes ``P``; lane ``p`` owns rows ``p, p + P, ...``.
    weight_bits, act_bits : int
        Signed widths, 2 to 16.
    acc_bits : int
        Accumulator and output width, 2 to 64.
    index_bits : int
        Width of a relative row index, 1 to 16 (fixed per build).
    max_rows, max_cols : int
        Largest shape one build serves.
    max_entries : int, optional
        Depth of each lane's entry bank (default ``ceil(max_rows / P) * max_cols``).

    Members
    -------
    start : ``In(1)``
        Pulse (while not ``busy``) to latch ``cols`` and start; ignored while ``busy``.
    rows, cols : ``In``
        Runtime shape, sampled at ``start``; zero in either sets ``done`` at once with
        ``cycles == 0`` and every output zero.
    busy, done : ``Out(1)``
    cycles : ``Out(32)``
        Equals :func:`unstructured_cycles`.
    cnt_wr, e_wr, x_wr : ``Out(WritePort.Signature(...))``
        Bench write ports (``e_wr``: lane in the address's high bits).
    out_rd : ``Out(ReadPort.Signature(...))``
        Bench read port of the outputs (``P`` signed lanes per word); drive ``en`` high.
    """

    def __init__(self, lanes: int, *, weight_bits: int = 8, act_bits: int = 8,
                 acc_bits: int = 32, index_bits: int = 4, max_rows: int = 64,
                 max_cols: int = 64, max_entries: int | None = None) -> None:
        p = check_unstructured_parameters(
            lanes, weight_bits=weight_bits, act_bits=act_bits, acc_bits=acc_bits,
            index_bits=index_bits, max_rows=max_rows, max_cols=max_cols,
            max_entries=max_entries)
        self.lanes = p["lanes"]
        self.weight_bits = p["weight_bits"]
        self.act_bits = p["act_bits"]
        self.acc_bits = p["acc_bits"]
        self.index_bits = p["index_bits"]
        self.max_rows = p["max_rows"]
        self.max_cols = p["max_cols"]
        self.max_entries = p["max_entries"]
        P = self.lanes
        self.lane_rows = -(-self.max_rows // P)
        self.count_bits = count_bits(P, self.max_rows)
        self.count_depth = max(2, self.max_cols)
        self.entry_depth = max(2, self.max_entries)
        self.entry_addr_bits = ceil_log2(self.entry_depth)
        self.lane_addr_bits = ceil_log2(P)
        self.act_depth = max(2, self.max_cols)
        self.out_depth = max(2, self.lane_rows)
        self.count_layout = data.ArrayLayout(unsigned(self.count_bits), P)
        self.entry_layout = data.StructLayout({"value": signed(self.weight_bits),
                                               "rel": unsigned(self.index_bits)})
        self.out_layout = data.ArrayLayout(signed(self.acc_bits), P)

        super().__init__({
            "start": In(1),
            "rows": In(range(self.max_rows + 1)),
            "cols": In(range(self.max_cols + 1)),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "cnt_wr": Out(WritePort.Signature(addr_width=ceil_log2(self.count_depth),
                                              shape=self.count_layout)),
            "e_wr": Out(WritePort.Signature(
                addr_width=self.lane_addr_bits + self.entry_addr_bits, shape=self.entry_layout)),
            "x_wr": Out(WritePort.Signature(addr_width=ceil_log2(self.act_depth),
                                            shape=signed(self.act_bits))),
            "out_rd": Out(ReadPort.Signature(addr_width=ceil_log2(self.out_depth),
                                             shape=self.out_layout)),
        })

    def parameters(self) -> dict[str, Any]:
        """Build parameters, JSON-serialisable, as recorded in the emitted sidecar."""
        return {
            "engine": "unstructured", "lanes": self.lanes, "weight_bits": self.weight_bits,
            "act_bits": self.act_bits, "acc_bits": self.acc_bits,
            "index_bits": self.index_bits, "max_rows": self.max_rows,
            "max_cols": self.max_cols, "max_entries": self.max_entries,
            "pipeline_latency": PIPELINE_LATENCY,
        }

    def memory_map(self) -> list[dict[str, Any]]:
        """Describe the memories a bench fills or reads (recorded in the JSON sidecar); same
        keys as :meth:`hw.dense.DenseMatVec.memory_map` (``entries`` adds ``banks`` and
        ``bank_shift``)."""
        def sig(port):
            return {k: f"{port}__{k}" for k in ("addr", "data", "en")}
        P, wb, ab, acc, ib = (self.lanes, self.weight_bits, self.act_bits, self.acc_bits,
                              self.index_bits)
        cb = self.count_bits
        return [
            {"name": "counts", "depth": self.count_depth, "width": P * cb, "lanes": P,
             "lane_bits": cb, "access": "write", "port": "cnt_wr", "signals": sig("cnt_wr"),
             "layout": f"address c holds in bits [p*{cb}, (p+1)*{cb}) the number of stored "
                       f"entries (padding included) of lane p < {P} in column c"},
            {"name": "entries", "depth": self.entry_depth, "width": wb + ib, "lanes": 1,
             "lane_bits": wb + ib, "access": "write", "port": "e_wr", "signals": sig("e_wr"),
             "banks": P, "bank_shift": self.entry_addr_bits,
             "fields": {"value": wb, "rel": ib},
             "layout": f"address (p << {self.entry_addr_bits}) | a holds entry a of lane p "
                       f"(its entries of all columns in column order): value (two's complement, "
                       f"bits [0, {wb})) and relative lane-row index (bits [{wb}, {wb + ib})); "
                       "padding entries have value 0"},
            {"name": "activations", "depth": self.act_depth, "width": ab, "lanes": 1,
             "lane_bits": ab, "access": "write", "port": "x_wr", "signals": sig("x_wr"),
             "layout": "address c holds x[c], two's complement"},
            {"name": "outputs", "depth": self.out_depth, "width": P * acc, "lanes": P,
             "lane_bits": acc, "access": "read", "port": "out_rd", "signals": sig("out_rd"),
             "layout": f"address g holds y[g*{P} + p] in bits [p*{acc}, (p+1)*{acc}) for lane "
                       f"p < {P}, wrapped to {acc} bits, two's complement; synchronous read"},
        ]

    def elaborate(self, platform):
        m = Module()
        P = self.lanes
        R = self.out_depth

        m.submodules.counts = cnt_mem = Memory(shape=self.count_layout, depth=self.count_depth,
                                               init=[])
        m.submodules.activations = x_mem = Memory(shape=signed(self.act_bits),
                                                  depth=self.act_depth, init=[])
        # One statement per port: Amaranth names each port's signals after its variable.
        cnt_wp = cnt_mem.write_port()
        cnt_rp = cnt_mem.read_port()
        x_wp = x_mem.write_port()
        x_rp = x_mem.read_port()
        for wp, port in ((cnt_wp, self.cnt_wr), (x_wp, self.x_wr)):
            m.d.comb += [wp.addr.eq(port.addr), wp.data.eq(port.data), wp.en.eq(port.en)]

        e_rps, acc_wps, acc_rps = [], [], []
        ebank = self.e_wr.addr[self.entry_addr_bits:]
        for p in range(P):
            e_mem = Memory(shape=self.entry_layout, depth=self.entry_depth, init=[])
            a_mem = Memory(shape=signed(self.acc_bits), depth=R, init=[])
            m.submodules[f"entries{p}"] = e_mem
            m.submodules[f"acc{p}"] = a_mem
            e_wp = e_mem.write_port()
            e_rp = e_mem.read_port()
            a_wp = a_mem.write_port()
            a_rp = a_mem.read_port(transparent_for=(a_wp,))
            sel = (ebank == p) if self.lane_addr_bits else 1
            m.d.comb += [e_wp.addr.eq(self.e_wr.addr[:self.entry_addr_bits]),
                         e_wp.data.eq(self.e_wr.data), e_wp.en.eq(self.e_wr.en & sel)]
            e_rps.append(e_rp)
            acc_wps.append(a_wp)
            acc_rps.append(a_rp)

        busy = Signal()
        done = Signal()
        cycles = Signal(CYCLE_COUNTER_BITS)
        m.d.comb += [self.busy.eq(busy), self.done.eq(done), self.cycles.eq(cycles)]

        # ---------------------------------------------------------------- issue
        cols_r = Signal.like(self.cols)
        prime = Signal()
        head = Signal()
        items = Signal()
        col = Signal(range(self.max_cols + 1))
        item = Signal(range(self.lane_rows + 1))
        nitems = Signal(range(self.lane_rows + 1))
        x_col = Signal(signed(self.act_bits))
        cnt = [Signal(range(self.lane_rows + 1), name=f"cnt{p}") for p in range(P)]
        base = [Signal(range(self.entry_depth + 1), name=f"base{p}") for p in range(P)]
        ptr = [Signal(range(self.entry_depth + 1), name=f"ptr{p}") for p in range(P)]

        last_col = Signal()
        m.d.comb += last_col.eq(col == cols_r - 1)
        # Prefetch the next column's head (its data waits in the read ports during the items).
        with m.If(prime):
            m.d.comb += [cnt_rp.addr.eq(0), x_rp.addr.eq(0)]
        with m.Else():
            m.d.comb += [cnt_rp.addr.eq(col + 1), x_rp.addr.eq(col + 1)]

        # Most entries of any lane in this column: a balanced comparator tree.
        level = [cnt_rp.data[p] for p in range(P)]
        while len(level) > 1:
            nxt = []
            for a in range(0, len(level) - 1, 2):
                mx = Signal(range(self.lane_rows + 1), name=f"max_{len(level)}_{a}")
                m.d.comb += mx.eq(Mux(level[a] > level[a + 1], level[a], level[a + 1]))
                nxt.append(mx)
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        head_n = Signal(range(self.lane_rows + 1))
        m.d.comb += head_n.eq(Mux(x_rp.data != 0, level[0], 0))

        last_item = Signal()
        fin_i = Signal()
        m.d.comb += [
            last_item.eq(item == nitems - 1),
            fin_i.eq(last_col & ((head & (head_n == 0)) | (items & last_item))),
        ]
        for p in range(P):
            m.d.comb += e_rps[p].addr.eq(ptr[p])

        # ---------------------------------------------------------------- stage A: decode
        fin_a = Signal()
        first_a = Signal()
        x_a = Signal(signed(self.act_bits))
        v_a = [Signal(name=f"v_a{p}") for p in range(P)]
        m.d.sync += [fin_a.eq(fin_i & busy), first_a.eq(item == 0), x_a.eq(x_col)]
        for p in range(P):
            m.d.sync += v_a[p].eq(items & (item < cnt[p]))
        prev = [Signal(range(R), name=f"prev{p}") for p in range(P)]
        row_a = [Signal(range(R), name=f"row_a{p}") for p in range(P)]

        # ---------------------------------------------------------------- stage B: accumulate
        fin_b = Signal()
        m.d.sync += fin_b.eq(fin_a)
        v_b = [Signal(name=f"v_b{p}") for p in range(P)]
        row_b = [Signal(range(R), name=f"row_b{p}") for p in range(P)]
        prod_b = [Signal(signed(self.weight_bits + self.act_bits), name=f"prod_b{p}")
                  for p in range(P)]
        written = [Signal(R, name=f"written{p}") for p in range(P)]
        wq = [Signal(name=f"wq{p}") for p in range(P)]
        rd = [Signal(signed(self.acc_bits), name=f"rd{p}") for p in range(P)]
        sums = [Signal(signed(self.acc_bits), name=f"sum{p}") for p in range(P)]
        raddr = [Signal(range(R), name=f"raddr{p}") for p in range(P)]
        for p in range(P):
            ent = e_rps[p].data
            m.d.comb += row_a[p].eq(Mux(first_a, 0, prev[p] + 1) + ent.rel)
            with m.If(v_a[p]):
                m.d.sync += prev[p].eq(row_a[p])
            m.d.comb += [raddr[p].eq(Mux(busy, row_a[p], self.out_rd.addr)),
                         acc_rps[p].addr.eq(raddr[p]), acc_rps[p].en.eq(1)]
            # Written bit of the row read, forwarding stage B's write of the same row.
            m.d.sync += [
                wq[p].eq(written[p].bit_select(raddr[p], 1)
                         | (v_b[p] & (row_b[p] == raddr[p]))),
                v_b[p].eq(v_a[p]), row_b[p].eq(row_a[p]),
                prod_b[p].eq(ent.value * x_a),
            ]
            m.d.comb += [
                rd[p].eq(Mux(wq[p], acc_rps[p].data, 0)),
                sums[p].eq(rd[p] + prod_b[p]),
                acc_wps[p].addr.eq(row_b[p]), acc_wps[p].data.eq(sums[p]),
                acc_wps[p].en.eq(v_b[p]),
            ]
            # A shifted mask, not a bit_select assignment: that becomes a casez that is
            # incomplete when R is not a power of two (Verilator's CASEINCOMPLETE).
            with m.If(v_b[p]):
                m.d.sync += written[p].eq(written[p] | (Const(1, R) << row_b[p]))
        # One assignment of the whole word (see hw.dense: per-lane slices are slow on Icarus).
        m.d.comb += Value.cast(self.out_rd.data).eq(Cat(*rd))

        # ---------------------------------------------------------------- control
        with m.If(prime):
            m.d.sync += [prime.eq(0), head.eq(1)]
        with m.If(head):
            m.d.sync += [x_col.eq(x_rp.data), nitems.eq(head_n), item.eq(0)]
            for p in range(P):
                m.d.sync += [cnt[p].eq(cnt_rp.data[p]), ptr[p].eq(base[p]),
                             base[p].eq(base[p] + cnt_rp.data[p])]
            with m.If(head_n != 0):
                m.d.sync += [head.eq(0), items.eq(1)]
            with m.Elif(last_col):
                m.d.sync += head.eq(0)
            with m.Else():
                m.d.sync += col.eq(col + 1)
        with m.If(items):
            for p in range(P):
                m.d.sync += ptr[p].eq(ptr[p] + 1)
            with m.If(last_item):
                m.d.sync += items.eq(0)
                with m.If(~last_col):
                    m.d.sync += [head.eq(1), col.eq(col + 1)]
            with m.Else():
                m.d.sync += item.eq(item + 1)

        with m.If(self.start & ~busy):
            m.d.sync += [cols_r.eq(self.cols), cycles.eq(0), done.eq(0), col.eq(0),
                         *(b.eq(0) for b in base), *(w.eq(0) for w in written)]
            with m.If((self.rows == 0) | (self.cols == 0)):
                m.d.sync += done.eq(1)
            with m.Else():
                m.d.sync += [busy.eq(1), prime.eq(1)]
        with m.Elif(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(fin_b):
                m.d.sync += [busy.eq(0), done.eq(1)]

        return m
