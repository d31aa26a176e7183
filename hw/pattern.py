"""Pattern-pruned 3x3 convolution engine (PatDNN-style FKW layout).

:class:`PatternConv` computes ``y[o, oy, ox] = sum over kept kernels (o, c) of sum over the
kernel pattern's ``n`` kept positions (dy, dx) of w[o, c, dy, dx] * xpad[c, oy*s + dy, ox*s + dx]``
for a pattern-pruned weight in the form of :func:`ir.pattern.encode_pattern`, equal (wrapped to
``acc_bits``) to ``ir.golden.conv2d``. Connectivity-pruned (all-zero) kernels are absent from the
metadata and cost nothing.

Lanes
-----
``P = lanes`` lanes compute ``P`` *filters* of one *filter group* in parallel, at one output
position. Stored filters (``ir.pattern.PatternConv.filter_order``, re-sorted stably by kept
kernel count, descending, by :func:`pack_pattern`) are cut into groups of ``P``; step ``t`` of a
group gives lane ``p`` the ``t``-th kept kernel of the group's filter ``p`` (kernels of a filter
sorted by pattern id, then channel, as the encoder stores them) or nothing (zero weights) past
that filter's kernel count. A group therefore takes ``T_g`` = its largest kernel count steps
per output position; groups whose filters are all pruned are not stored and cost nothing.
Each lane has ``n`` (kept weights per pattern, normally 4) multipliers: per step it gathers the
``n`` window inputs its pattern selects and multiplies them by the kernel's ``n`` weights.

Microarchitecture
-----------------
A flat stream of items (output position ``(oy, ox)`` row-major, then group ``g``, then step
``t``) runs through a four-stage pipeline with no bubble between steps, groups or positions:

* **issue**: the ``groups`` table (asynchronous read at ``g``) gives ``T_g`` and the group's
  first kernel word; the kernel and value memories are read at ``base_g + t``;
* **gather**: per lane, the pattern id addresses the (asynchronously read) pattern library, which
  gives the ``n`` kept positions; each becomes ``(dy, dx)``, the input row/column
  ``iy = oy*s - pad + dy``, ``ix = ox*s - pad + dx`` is bounds-checked (zero padding) and
  addresses one of the ``n * P`` read ports of the activation memory (see *Activation
  storage*);
* **multiply**: per lane, the ``n`` products (inputs outside the image are zero) are summed;
* **accumulate**: each lane accumulates over the group's steps; on the last step the ``P`` sums
  are written as one output word.

Hence :func:`pattern_cycles`: ``Ho * Wo * sum over stored groups of T_g + PIPELINE_LATENCY``
(``PIPELINE_LATENCY = 3``), or ``0`` when there is no kept kernel or no output position (``done``
at once, all outputs zero). With filters of equal kernel counts and ``O`` a multiple of ``P`` every
lane is busy on every cycle; otherwise the idle lanes of a group show in the cycles.

Activation storage
------------------
The ``n * P`` gather reads of a cycle are served by :class:`ReplicatedMemory`:
``ceil(n * P / 2)`` identical copies of the ``activations`` memory, every one written by the
single ``x_wr`` port, each with two synchronous read ports (the last copy one when ``n * P`` is
odd). Read port ``i = p*n + k`` (lane ``p``, kept position ``k``) is port ``i % 2`` of copy
``i // 2``. In each copy of two read ports, port 0 shares its address with the write port (the
write address while ``x_wr.en`` is high, the read address otherwise), so the copy is a memory
of one read-write and one read port: one true dual-port block RAM (ECP5 ``DP16KD``, 7-series
``RAMB18E1``), which Yosys maps directly; iCE40 block RAMs have one read port, so Yosys doubles
each copy there. The copies carry Yosys's ``no_rw_check`` attribute: a read in the cycle of a
write to its address may return anything, which the contract below allows (activations are
written only while the engine is not busy, and reads matter only while it is), so Yosys adds
no read-during-write logic. One memory with ``n * P`` read ports would be the same storage to a
simulator, but Yosys 0.70's ``memory_libmap`` crashes on it for ECP5 and xc7.

Stride (1 or 2) and padding (0 or 1) are runtime inputs (``stride2``, ``pad``), with the input
size ``h``, ``w`` and output size ``ho``, ``wo`` (which the bench sets to
``(h + 2*pad - 3) // s + 1`` etc.).

Memory map (see :meth:`PatternConv.memory_map`)
------------------------------------------------
``HB = clog2(max_height)``, ``WB = clog2(max_width)`` (at least 1); the activation and output
memories are addressed by bit fields, not by products of runtime sizes:

* ``groups`` (write, depth ``ceil(max_filters / P)``): word ``g`` is the struct ``count = T_g``,
  ``base`` (first kernel word of group ``g``), fields from the least significant bit;
* ``kernels`` (write, depth ``max_kernel_words``): word ``base_g + t`` holds in lane ``p`` the
  struct ``channel``, ``pattern`` of step ``t`` of lane ``p`` (0, 0 for an idle lane);
* ``values`` (write, same depth): word ``base_g + t`` holds in field ``p*n + k`` the weight at
  the ``k``-th kept position (increasing row-major) of that kernel (0 for an idle lane);
* ``library`` (write, depth ``library_size``): word ``i`` holds in field ``k`` (4 bits) the
  ``k``-th kept position ``3*row + col`` of pattern ``i``, increasing;
* ``activations`` (write, depth ``max_channels << (HB + WB)``): address
  ``c << (HB+WB) | y << WB | x`` holds ``x[c, y, x]`` (in every copy, see *Activation
  storage*);
* ``outputs`` (read, depth ``ceil(max_filters / P) << (HB + WB)``): address
  ``g << (HB+WB) | oy << WB | ox`` holds in lane ``p`` the output of stored lane ``g*P + p``
  (output filter :attr:`PatternImages.out_filter` ``[g*P + p]``), wrapped to ``acc_bits``;
  synchronous read; words of groups ``>= groups`` (the runtime number of stored groups) read zero.

Memories must only be written (and outputs read) while the engine is not ``busy``.

Lint
----
``verilator --lint-only -Wall`` reports only the classes waived for :mod:`hw.dense`
(``PROCASSINIT``, ``UNUSEDSIGNAL``, ``WIDTHEXPAND``, ``WIDTHTRUNC``), for the same reasons
(register initialisers, Amaranth's alias wires, minimal-width constants and intended
truncations such as out-of-image row/column addresses, which are masked), plus
``DECLFILENAME``: the :class:`ReplicatedMemory` submodule is a second module in the same file.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.dense import CYCLE_COUNTER_BITS, _check_int
from ir.pattern import PatternConv as PatternWeight

__all__ = ["PatternConv", "PatternImages", "ReplicatedMemory", "check_pattern_parameters",
           "pattern_cycles", "pattern_steps", "pack_pattern", "pattern_field_widths",
           "PIPELINE_LATENCY"]

#: Cycles from ``start`` to ``done`` beyond one per item: three stages after issue.
PIPELINE_LATENCY = 3
#: Width of one kept-position field of a library word.
POSITION_BITS = 4


def _bits(n: int) -> int:
    """Width of an unsigned field holding ``range(n)`` values, at least 1."""
    return max(1, ceil_log2(max(n, 1)))


def pattern_field_widths(lanes: int, max_channels: int, library_size: int,
                         max_kernel_words: int, max_height: int, max_width: int
                         ) -> dict[str, int]:
    """Widths of the unsigned metadata fields and of the address fields.

    Returns
    -------
    dict
        ``count``, ``base`` (the ``groups`` struct, in field order), ``channel``, ``pattern``
        (one lane of a ``kernels`` word, in field order), ``position`` (one library field),
        ``height``/``width`` (``HB``/``WB``: row and column address fields).
    """
    return {
        "count": _bits(max_channels + 1),
        "base": _bits(max_kernel_words + 1),
        "channel": _bits(max_channels),
        "pattern": _bits(library_size),
        "position": POSITION_BITS,
        "height": _bits(max_height),
        "width": _bits(max_width),
    }


def check_pattern_parameters(lanes: int, *, weight_bits: int = 8, act_bits: int = 8,
                             acc_bits: int = 32, library_size: int = 8, kept: int = 4,
                             max_channels: int = 16, max_filters: int = 16,
                             max_height: int = 16, max_width: int = 16,
                             max_kernel_words: int | None = None) -> dict[str, Any]:
    """Validate :class:`PatternConv` parameters without building anything.

    ``max_kernel_words`` defaults to ``ceil(max_filters / lanes) * max_channels`` (every kernel
    kept).

    Raises
    ------
    TypeError, ValueError
        Messages in Amaranth's style, e.g. ``"Lanes must be a positive integer, not 0"`` or
        ``"Kept weights must be an integer between 1 and 9, not 10"``.
    """
    p: dict[str, Any] = {
        "lanes": _check_int(lanes, "Lanes", 1),
        "weight_bits": _check_int(weight_bits, "Weight width", 2, 16),
        "act_bits": _check_int(act_bits, "Activation width", 2, 16),
        "acc_bits": _check_int(acc_bits, "Accumulator width", 2, 64),
        "library_size": _check_int(library_size, "Library size", 1, 126),
        "kept": _check_int(kept, "Kept weights", 1, 9),
        "max_channels": _check_int(max_channels, "Maximum input channels", 1),
        "max_filters": _check_int(max_filters, "Maximum filters", 1),
        "max_height": _check_int(max_height, "Maximum height", 1),
        "max_width": _check_int(max_width, "Maximum width", 1),
    }
    cap = -(-p["max_filters"] // p["lanes"]) * p["max_channels"]
    p["max_kernel_words"] = cap if max_kernel_words is None else _check_int(
        max_kernel_words, "Maximum kernel words", 1, cap)
    worst = p["max_kernel_words"] * p["max_height"] * p["max_width"] + PIPELINE_LATENCY
    if worst >= 1 << CYCLE_COUNTER_BITS:
        raise ValueError(f"Maximum of {p['max_kernel_words']} kernel words at "
                         f"{p['max_height']}x{p['max_width']} positions takes {worst} cycles, "
                         f"more than the {CYCLE_COUNTER_BITS}-bit cycle counter holds")
    return p


def _check_weight(pc: Any) -> PatternWeight:
    if not isinstance(pc, PatternWeight):
        raise TypeError("Pattern convolution must be an ir.pattern.PatternConv, not "
                        f"{type(pc).__name__}")
    return pc


def _group_order(pc: PatternWeight) -> tuple[np.ndarray, np.ndarray]:
    """Stored filters re-sorted stably by kept-kernel count (descending), and their counts."""
    counts = np.diff(pc.kernel_ptr)
    order = np.argsort(-counts, kind="stable")
    return order, counts[order]


def pattern_steps(pc: PatternWeight, lanes: int) -> int:
    """Steps per output position: ``sum over filter groups of T_g`` (largest kernel count of
    the group's ``lanes`` filters)."""
    pc = _check_weight(pc)
    lanes = _check_int(lanes, "Lanes", 1)
    _, counts = _group_order(pc)
    return int(sum(counts[i] for i in range(0, len(counts), lanes)))


def pattern_cycles(pc: PatternWeight, out_shape: tuple[int, int], lanes: int) -> int:
    """Cycle model of :class:`PatternConv`: cycles from ``start`` to ``done``.

    Parameters
    ----------
    pc : ir.pattern.PatternConv
        The layer's structure (values do not matter).
    out_shape : (int, int)
        Output height and width ``(Ho, Wo)``.
    lanes : int

    Returns
    -------
    int
        ``Ho * Wo * pattern_steps(pc, lanes) + PIPELINE_LATENCY``, or ``0`` if that product is
        zero. Equal to the RTL's ``cycles`` output.
    """
    ho, wo = (_check_int(v, "Output size", 0) for v in out_shape)
    items = ho * wo * pattern_steps(pc, lanes)
    return items + PIPELINE_LATENCY if items else 0


class PatternImages(NamedTuple):
    """Memory images of one pattern layer, as field values (one row per memory word).

    Attributes
    ----------
    groups : numpy.ndarray
        ``(G, 2)``: ``count, base`` of each stored (non-empty) group.
    kernels : numpy.ndarray
        ``(words, 2 * P)``: ``channel, pattern`` of lane 0, lane 1, ...
    values : numpy.ndarray
        ``(words, P * n)`` signed weights.
    library : numpy.ndarray
        ``(K, n)`` kept positions of each pattern.
    out_filter : numpy.ndarray
        ``(ceil(O / P) * P,)``: output filter of stored lane ``g*P + p``, -1 past ``O``.
    n_groups : int
        Stored groups (the runtime ``groups`` input).
    """

    groups: np.ndarray
    kernels: np.ndarray
    values: np.ndarray
    library: np.ndarray
    out_filter: np.ndarray
    n_groups: int


def pack_pattern(pc: PatternWeight, lanes: int) -> PatternImages:
    """Lay out a pattern-pruned weight for the engine's memories (see the module docstring).

    Turn rows into words with :func:`hw.bcr.pack_fields` (``groups``, ``kernels``, ``library``)
    or :func:`hw.dense.pack_words` (``values``).
    """
    pc = _check_weight(pc)
    P = _check_int(lanes, "Lanes", 1)
    o = pc.shape[0]
    n = pc.positions.shape[1]
    order, counts = _group_order(pc)
    ngr = -(-o // P)
    out_filter = np.full(ngr * P, -1, dtype=np.int64)
    out_filter[:o] = pc.filter_order[order]
    groups, kern, vals = [], [], []
    base = 0
    for g in range(ngr):
        members = order[g * P:(g + 1) * P]
        steps = int(counts[g * P]) if g * P < o else 0
        if steps == 0:
            break
        groups.append((steps, base))
        k = np.zeros((steps, P, 2), dtype=np.int64)
        v = np.zeros((steps, P, n), dtype=np.int64)
        for p, f in enumerate(members):
            lo, hi = pc.kernel_ptr[f], pc.kernel_ptr[f + 1]
            k[:hi - lo, p, 0] = pc.channel[lo:hi]
            k[:hi - lo, p, 1] = pc.pattern_id[lo:hi]
            v[:hi - lo, p] = pc.values[lo:hi]
        kern.append(k.reshape(steps, 2 * P))
        vals.append(v.reshape(steps, P * n))
        base += steps
    return PatternImages(
        groups=np.array(groups, dtype=np.int64).reshape(-1, 2),
        kernels=np.concatenate(kern) if kern else np.zeros((0, 2 * P), dtype=np.int64),
        values=np.concatenate(vals) if vals else np.zeros((0, P * n), dtype=np.int64),
        library=pc.positions.astype(np.int64),
        out_filter=out_filter, n_groups=len(groups))


class ReplicatedMemory(wiring.Component):
    """One memory image with one write port and ``read_ports`` synchronous read ports, stored
    as ``ceil(read_ports / 2)`` copies of two read ports each, every copy one true dual-port
    block RAM (see the module docstring, *Activation storage*).

    Parameters
    ----------
    shape : amaranth shape
        Shape of one word.
    depth : int
        Words, at least 2.
    read_ports : int
        Read ports, at least 1.

    Members
    -------
    wr : ``Out(WritePort.Signature(addr_width=ceil_log2(depth), shape=shape))``
        The write port; every copy is written at ``wr.addr`` while ``wr.en`` is high.
    rd : ``Out(ReadPort.Signature(...)).array(read_ports)``
        Synchronous, non-transparent read ports: ``rd[i].data`` is the word at ``rd[i].addr``
        of the cycle before (when ``rd[i].en``, which defaults to 1).

    Notes
    -----
    A read port must not be relied upon in a cycle in which ``wr.en`` is high: port 0 of each
    copy then reads at ``wr.addr`` (it shares the write port's address), and a read of the
    address being written returns an undefined value in hardware (``no_rw_check``). Outside
    such cycles every port reads the memory image exactly.
    """

    #: Read ports per copy: a true dual-port block RAM has two ports, one of them shared.
    PORTS_PER_COPY = 2

    def __init__(self, shape: Any, depth: int, read_ports: int) -> None:
        self.shape = shape
        self.depth = _check_int(depth, "Depth", 2)
        self.read_ports = _check_int(read_ports, "Read ports", 1)
        self.copies = -(-self.read_ports // self.PORTS_PER_COPY)
        aw = ceil_log2(self.depth)
        super().__init__({
            "wr": Out(WritePort.Signature(addr_width=aw, shape=shape)),
            "rd": Out(ReadPort.Signature(addr_width=aw, shape=shape)).array(self.read_ports),
        })

    def elaborate(self, platform):
        m = Module()
        for c in range(self.copies):
            mem = Memory(shape=self.shape, depth=self.depth, init=[],
                         attrs={"no_rw_check": 1})
            m.submodules[f"copy{c}"] = mem
            wp = mem.write_port()
            ports = self.rd[c * self.PORTS_PER_COPY:(c + 1) * self.PORTS_PER_COPY]
            rps = [mem.read_port() for _ in ports]
            m.d.comb += [wp.data.eq(self.wr.data), wp.en.eq(self.wr.en)]
            if len(ports) == 1:               # a lone read port needs no shared address
                m.d.comb += wp.addr.eq(self.wr.addr)
            else:                             # port 0 and the write port: one RAM port
                shared = Signal.like(self.wr.addr, name=f"shared_addr{c}")
                m.d.comb += [shared.eq(Mux(self.wr.en, self.wr.addr, ports[0].addr)),
                             wp.addr.eq(shared), rps[0].addr.eq(shared)]
            for i, (rp, port) in enumerate(zip(rps, ports, strict=True)):
                if i or len(ports) == 1:
                    m.d.comb += rp.addr.eq(port.addr)
                m.d.comb += [rp.en.eq(port.en), port.data.eq(rp.data)]
        return m


class PatternConv(wiring.Component):
    """Pattern-pruned 3x3 convolution engine with ``lanes`` filter lanes of ``kept``
    multipliers each (see the module docstring).

    Parameters
    ----------
    lanes : int
        Filters computed in parallel, ``P``.
    weight_bits, act_bits : int
        Signed widths, 2 to 16.
    acc_bits : int
        Accumulator and output width, 2 to 64.
    library_size : int
        Depth of the pattern library memory, ``K`` (1 to 126).
    kept : int
        Kept weights per pattern ``n`` (multipliers per lane), 1 to 9; normally 4.
    max_channels, max_filters, max_height, max_width : int
        Largest input channels, output filters and input height/width one build serves.
    max_kernel_words : int, optional
        Depth of the ``kernels`` and ``values`` memories (default: every kernel kept).

    Members
    -------
    start : ``In(1)``
        Pulse (while not ``busy``) to latch the runtime inputs and start.
    h, w, ho, wo : ``In``
        Input and output height/width; ``stride2`` (stride 2, else 1) and ``pad`` (padding 1,
        else 0) : ``In(1)``; ``groups`` : number of stored groups. ``ho``, ``wo`` or ``groups``
        zero sets ``done`` at once with ``cycles == 0`` and every output zero.
    busy, done : ``Out(1)``; cycles : ``Out(32)``, equals :func:`pattern_cycles`.
    group_wr, kern_wr, w_wr, lib_wr, x_wr : ``Out(WritePort.Signature(...))``
    out_rd : ``Out(ReadPort.Signature(...))``; drive ``en`` high.
    """

    def __init__(self, lanes: int, *, weight_bits: int = 8, act_bits: int = 8,
                 acc_bits: int = 32, library_size: int = 8, kept: int = 4,
                 max_channels: int = 16, max_filters: int = 16, max_height: int = 16,
                 max_width: int = 16, max_kernel_words: int | None = None) -> None:
        p = check_pattern_parameters(
            lanes, weight_bits=weight_bits, act_bits=act_bits, acc_bits=acc_bits,
            library_size=library_size, kept=kept, max_channels=max_channels,
            max_filters=max_filters, max_height=max_height, max_width=max_width,
            max_kernel_words=max_kernel_words)
        for k, v in p.items():
            setattr(self, k, v)
        P = self.lanes
        self.max_groups = -(-self.max_filters // P)
        self.widths = w = pattern_field_widths(P, self.max_channels, self.library_size,
                                               self.max_kernel_words, self.max_height,
                                               self.max_width)
        self.hw_bits = w["height"] + w["width"]
        self.group_depth = max(2, self.max_groups)
        self.kern_depth = max(2, self.max_kernel_words)
        self.lib_depth = max(2, self.library_size)
        self.act_depth = max(2, self.max_channels << self.hw_bits)
        self.out_depth = max(2, self.max_groups << self.hw_bits)
        self.group_layout = data.StructLayout({"count": unsigned(w["count"]),
                                               "base": unsigned(w["base"])})
        self.lane_layout = data.StructLayout({"channel": unsigned(w["channel"]),
                                              "pattern": unsigned(w["pattern"])})
        self.kern_layout = data.ArrayLayout(self.lane_layout, P)
        self.value_layout = data.ArrayLayout(signed(self.weight_bits), P * self.kept)
        self.lib_layout = data.ArrayLayout(unsigned(POSITION_BITS), self.kept)
        self.out_layout = data.ArrayLayout(signed(self.acc_bits), P)

        def wr(depth, shape):
            return Out(WritePort.Signature(addr_width=ceil_log2(depth), shape=shape))

        super().__init__({
            "start": In(1),
            "h": In(range(self.max_height + 1)),
            "w": In(range(self.max_width + 1)),
            "ho": In(range(self.max_height + 1)),
            "wo": In(range(self.max_width + 1)),
            "stride2": In(1),
            "pad": In(1),
            "groups": In(range(self.max_groups + 1)),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLE_COUNTER_BITS),
            "group_wr": wr(self.group_depth, self.group_layout),
            "kern_wr": wr(self.kern_depth, self.kern_layout),
            "w_wr": wr(self.kern_depth, self.value_layout),
            "lib_wr": wr(self.lib_depth, self.lib_layout),
            "x_wr": wr(self.act_depth, signed(self.act_bits)),
            "out_rd": Out(ReadPort.Signature(addr_width=ceil_log2(self.out_depth),
                                             shape=self.out_layout)),
        })

    def parameters(self) -> dict[str, Any]:
        """Build parameters, JSON-serialisable, as recorded in the emitted sidecar."""
        return {
            "engine": "pattern", "lanes": self.lanes, "weight_bits": self.weight_bits,
            "act_bits": self.act_bits, "acc_bits": self.acc_bits,
            "library_size": self.library_size, "kept": self.kept,
            "max_channels": self.max_channels, "max_filters": self.max_filters,
            "max_height": self.max_height, "max_width": self.max_width,
            "max_kernel_words": self.max_kernel_words, "pipeline_latency": PIPELINE_LATENCY,
        }

    def memory_map(self) -> list[dict[str, Any]]:
        """Describe the memories a bench fills or reads (recorded in the JSON sidecar); same
        keys as :meth:`hw.dense.DenseMatVec.memory_map`."""
        def sig(port):
            return {k: f"{port}__{k}" for k in ("addr", "data", "en")}
        P, n, wb, ab, acc = self.lanes, self.kept, self.weight_bits, self.act_bits, self.acc_bits
        w = self.widths
        hb, wbits = w["height"], w["width"]
        gbits = w["count"] + w["base"]
        lbits = w["channel"] + w["pattern"]
        return [
            {"name": "groups", "depth": self.group_depth, "width": gbits, "lanes": 1,
             "lane_bits": gbits, "access": "write", "port": "group_wr",
             "signals": sig("group_wr"), "fields": {"count": w["count"], "base": w["base"]},
             "layout": "word g: count = steps of filter group g (largest kept-kernel count of "
                       "its filters), base = its first kernel word; fields from the LSB"},
            {"name": "kernels", "depth": self.kern_depth, "width": P * lbits, "lanes": P,
             "lane_bits": lbits, "access": "write", "port": "kern_wr", "signals": sig("kern_wr"),
             "fields": {"channel": w["channel"], "pattern": w["pattern"]},
             "layout": "word base_g + t, lane p: channel, pattern id of the t-th kept kernel of "
                       "filter p of group g (0, 0 past its kernels)"},
            {"name": "values", "depth": self.kern_depth, "width": P * n * wb, "lanes": P * n,
             "lane_bits": wb, "access": "write", "port": "w_wr", "signals": sig("w_wr"),
             "layout": f"word base_g + t, field p*{n} + k: weight at the k-th kept position of "
                       "that kernel (0 past its kernels), two's complement"},
            {"name": "library", "depth": self.lib_depth, "width": n * POSITION_BITS, "lanes": n,
             "lane_bits": POSITION_BITS, "access": "write", "port": "lib_wr",
             "signals": sig("lib_wr"),
             "layout": "word i, field k: k-th kept position 3*row + col of pattern i, increasing"},
            {"name": "activations", "depth": self.act_depth, "width": ab, "lanes": 1,
             "lane_bits": ab, "access": "write", "port": "x_wr", "signals": sig("x_wr"),
             "layout": f"address c << {hb + wbits} | y << {wbits} | x holds x[c, y, x], two's "
                       "complement"},
            {"name": "outputs", "depth": self.out_depth, "width": P * acc, "lanes": P,
             "lane_bits": acc, "access": "read", "port": "out_rd", "signals": sig("out_rd"),
             "layout": f"address g << {hb + wbits} | oy << {wbits} | ox holds in lane p the "
                       f"output of stored filter g*{P} + p, wrapped to {acc} bits; zero for "
                       "groups >= `groups`; synchronous read"},
        ]

    def elaborate(self, platform):
        m = Module()
        P, n = self.lanes, self.kept
        hb, wbits = self.widths["height"], self.widths["width"]

        m.submodules.groups_mem = g_mem = Memory(shape=self.group_layout,
                                                 depth=self.group_depth, init=[])
        m.submodules.kernels = k_mem = Memory(shape=self.kern_layout, depth=self.kern_depth,
                                              init=[])
        m.submodules.values = w_mem = Memory(shape=self.value_layout, depth=self.kern_depth,
                                             init=[])
        m.submodules.library = l_mem = Memory(shape=self.lib_layout, depth=self.lib_depth,
                                              init=[])
        m.submodules.activations = x_mem = ReplicatedMemory(signed(self.act_bits),
                                                            self.act_depth, P * n)
        m.submodules.outputs = o_mem = Memory(shape=self.out_layout, depth=self.out_depth,
                                              init=[])
        g_rp = g_mem.read_port(domain="comb")
        k_rp = k_mem.read_port()
        w_rp = w_mem.read_port()
        l_rps = [l_mem.read_port(domain="comb") for _ in range(P)]
        x_rps = [[x_mem.rd[p * n + k] for k in range(n)] for p in range(P)]
        o_wp = o_mem.write_port()
        o_rp = o_mem.read_port()
        for wp, port in ((g_mem.write_port(), self.group_wr), (k_mem.write_port(), self.kern_wr),
                         (w_mem.write_port(), self.w_wr), (l_mem.write_port(), self.lib_wr),
                         (x_mem.wr, self.x_wr)):
            m.d.comb += [wp.addr.eq(port.addr), wp.data.eq(port.data), wp.en.eq(port.en)]

        ngroups = Signal.like(self.groups)
        h = Signal.like(self.h)
        w = Signal.like(self.w)
        ho = Signal.like(self.ho)
        wo = Signal.like(self.wo)
        stride2 = Signal()
        pad = Signal()

        # Output read port; groups never stored read as zero.
        stored_q = Signal()
        m.d.comb += [o_rp.addr.eq(self.out_rd.addr), o_rp.en.eq(self.out_rd.en)]
        with m.If(self.out_rd.en):
            m.d.sync += stored_q.eq((self.out_rd.addr >> self.hw_bits) < ngroups)
        m.d.comb += Value.cast(self.out_rd.data).eq(Mux(stored_q, Value.cast(o_rp.data), 0))

        busy = Signal()
        done = Signal()
        cycles = Signal(CYCLE_COUNTER_BITS)
        m.d.comb += [self.busy.eq(busy), self.done.eq(done), self.cycles.eq(cycles)]

        # ---------------------------------------------------------------- stage 0: issue
        issuing = Signal()
        g = Signal(range(self.max_groups + 1))
        t = Signal(range(self.max_channels + 1))
        oy = Signal(range(self.max_height + 1))
        ox = Signal(range(self.max_width + 1))
        ybits = ceil_log2(2 * self.max_height + 4) + 1
        xbits = ceil_log2(2 * self.max_width + 4) + 1
        iy0 = Signal(signed(ybits))     # oy * s - pad
        ix0 = Signal(signed(xbits))     # ox * s - pad
        cur = g_rp.data
        last_t, last_g, last_x, last_y, final0 = (Signal(name=nm) for nm in
                                                  ("last_t", "last_g", "last_x", "last_y",
                                                   "final0"))
        m.d.comb += [
            g_rp.addr.eq(g),
            last_t.eq(t == cur.count - 1),
            last_g.eq(g == ngroups - 1),
            last_x.eq(ox == wo - 1),
            last_y.eq(oy == ho - 1),
            final0.eq(last_t & last_g & last_x & last_y),
            k_rp.addr.eq(cur.base + t),
            w_rp.addr.eq(cur.base + t),
        ]

        # ---------------------------------------------------------------- stage 1: gather
        v1, first1, last1, final1 = (Signal(name=f"{nm}1") for nm in
                                     ("v", "first", "last", "final"))
        oaddr_layout = Cat(ox[:wbits], oy[:hb], g)
        oaddr1 = Signal(len(oaddr_layout))
        iy1 = Signal.like(iy0)
        ix1 = Signal.like(ix0)
        m.d.sync += [v1.eq(issuing), first1.eq(t == 0), last1.eq(last_t), final1.eq(final0),
                     oaddr1.eq(oaddr_layout), iy1.eq(iy0), ix1.eq(ix0)]
        inb2 = [[Signal(name=f"inb2_{p}_{k}") for k in range(n)] for p in range(P)]
        for p in range(P):
            lane = k_rp.data[p]
            m.d.comb += l_rps[p].addr.eq(lane.pattern)
            for k in range(n):
                pos = l_rps[p].data[k]
                dy = Signal(2, name=f"dy_{p}_{k}")
                dx = Signal(2, name=f"dx_{p}_{k}")
                m.d.comb += [dy.eq((pos >= 3).as_unsigned() + (pos >= 6).as_unsigned()),
                             dx.eq(pos - Mux(pos >= 6, 6, Mux(pos >= 3, 3, 0)))]
                iy = Signal(signed(ybits + 1), name=f"iy_{p}_{k}")
                ix = Signal(signed(xbits + 1), name=f"ix_{p}_{k}")
                m.d.comb += [iy.eq(iy1 + dy), ix.eq(ix1 + dx),
                             x_rps[p][k].addr.eq(Cat(ix[:wbits], iy[:hb], lane.channel))]
                m.d.sync += inb2[p][k].eq((iy >= 0) & (iy < h) & (ix >= 0) & (ix < w))

        # ---------------------------------------------------------------- stage 2: multiply
        v2, first2, last2, final2 = (Signal(name=f"{nm}2") for nm in
                                     ("v", "first", "last", "final"))
        oaddr2 = Signal.like(oaddr1)
        w2 = Signal(self.value_layout)
        m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1), final2.eq(final1),
                     oaddr2.eq(oaddr1), w2.eq(w_rp.data)]
        prod_bits = self.weight_bits + self.act_bits + ceil_log2(max(n, 2)) + 1
        ksum = [Signal(signed(prod_bits), name=f"ksum{p}") for p in range(P)]
        for p in range(P):
            terms = [Mux(inb2[p][k], x_rps[p][k].data, 0) * w2[p * n + k] for k in range(n)]
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            m.d.sync += ksum[p].eq(total)

        # ---------------------------------------------------------------- stage 3: accumulate
        v3, first3, last3, final3 = (Signal(name=f"{nm}3") for nm in
                                     ("v", "first", "last", "final"))
        oaddr3 = Signal.like(oaddr1)
        m.d.sync += [v3.eq(v2), first3.eq(first2), last3.eq(last2), final3.eq(final2),
                     oaddr3.eq(oaddr2)]
        accs = [Signal(signed(self.acc_bits), name=f"acc{p}") for p in range(P)]
        sums = [Signal(signed(self.acc_bits), name=f"sum{p}") for p in range(P)]
        for p in range(P):
            m.d.comb += sums[p].eq(Mux(first3, 0, accs[p]) + ksum[p])
            with m.If(v3):
                m.d.sync += accs[p].eq(sums[p])
        m.d.comb += [Value.cast(o_wp.data).eq(Cat(*sums)), o_wp.addr.eq(oaddr3),
                     o_wp.en.eq(v3 & last3)]

        # ---------------------------------------------------------------- control
        step = Mux(stride2, 2, 1)
        with m.If(issuing):
            with m.If(last_t):
                m.d.sync += t.eq(0)
                with m.If(last_g):
                    m.d.sync += g.eq(0)
                    with m.If(last_x):
                        m.d.sync += [ox.eq(0), ix0.eq(-Cat(pad, 0).as_signed()),
                                     oy.eq(oy + 1), iy0.eq(iy0 + step)]
                        with m.If(last_y):
                            m.d.sync += issuing.eq(0)
                    with m.Else():
                        m.d.sync += [ox.eq(ox + 1), ix0.eq(ix0 + step)]
                with m.Else():
                    m.d.sync += g.eq(g + 1)
            with m.Else():
                m.d.sync += t.eq(t + 1)

        with m.If(self.start & ~busy):
            m.d.sync += [
                ngroups.eq(self.groups), h.eq(self.h), w.eq(self.w), ho.eq(self.ho),
                wo.eq(self.wo), stride2.eq(self.stride2), pad.eq(self.pad),
                cycles.eq(0), done.eq(0), g.eq(0), t.eq(0), oy.eq(0), ox.eq(0),
                iy0.eq(-Cat(self.pad, 0).as_signed()), ix0.eq(-Cat(self.pad, 0).as_signed()),
            ]
            with m.If((self.ho == 0) | (self.wo == 0) | (self.groups == 0)):
                m.d.sync += done.eq(1)
            with m.Else():
                m.d.sync += [busy.eq(1), issuing.eq(1)]
        with m.Elif(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(v3 & final3):
                m.d.sync += [busy.eq(0), done.eq(1)]

        return m
