"""A memory deeper than one block RAM, read with every bank's output registered.

A memory deeper than one block RAM becomes several block RAMs, and Yosys selects the addressed
one's output with a mux after them all. On the LFE5U-85F a block RAM's clock-to-output alone is
5.8 ns (nextpnr's report), so that mux in front of anything but a register caps a path near
95 MHz: the BCR engine's value memory through its read mux into the value register was 10.6 ns
on the trained LSTM's gate engine (2830536).

:class:`BankedMemory` splits the memory into banks of :func:`bank_depth` words, which each fit one
block RAM's depth (a wide word takes several block RAMs side by side, never one above another),
reads every bank at the same address, registers every bank's output, and selects the addressed
bank's register in the next cycle. The read takes two cycles: the word at the address presented
in cycle ``t`` is on ``rd_data`` in cycle ``t + 2``, combinationally from the bank registers (one
more register holds the bank number). An engine whose read address is known a cycle before it
would present it to a plain synchronous port, such as :mod:`hw.bcr`'s sequential value address,
gets the same word in the same cycle as before, at no cycle cost. It costs one register of the
word's width per bank.
"""

from __future__ import annotations

from typing import Any

from amaranth.hdl import Array, Module, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.packing import _check_int

__all__ = ["BankedMemory", "bank_depth", "deep_memory", "BLOCK_RAM_CONFIGS"]

#: ``(width, depth)`` of the ECP5 block RAM (DP16KD) configurations, narrowest first: 16 kbit,
#: or 18 kbit with the parity bits at widths 9, 18 and 36 (the 36-bit one in pseudo-dual-port
#: mode, which a memory with one read and one write port gets).
BLOCK_RAM_CONFIGS = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))


def bank_depth(width: int) -> int:
    """Words of ``width`` bits that one block RAM holds: the depth of the narrowest
    configuration at least ``width`` bits wide, or 512 (36 bits wide) for wider words.

    A bank that deep is one block RAM deep whichever configuration Yosys picks for it (a word
    wider than 36 bits takes block RAMs side by side).
    """
    width = _check_int(width, "Word width", 1)
    for w, depth in BLOCK_RAM_CONFIGS:
        if width <= w:
            return depth
    return BLOCK_RAM_CONFIGS[-1][1]


class BankedMemory(wiring.Component):
    """A ``depth``-word memory of ``shape`` in banks, read through registered bank outputs.

    Parameters
    ----------
    shape : ShapeLike
        The word's shape (a layout is fine).
    depth : int
        Words, at least 2.
    bank : int, optional
        Words a bank, a power of two (default :func:`bank_depth` of the word's width). The
        last bank holds what remains.

    Attributes
    ----------
    wr : ``Out(WritePort.Signature(...))``
        Write port (``addr``, ``data``, ``en``), as a plain memory's; the address picks the bank
        by its high bits (``addr // bank``) and the word within it by the rest.
    rd_addr : ``In(ceil_log2(depth))``
        Read address. Every bank is read at ``rd_addr % bank`` in every cycle.
    rd_data : ``Out(shape)``
        The word at the ``rd_addr`` of two cycles earlier (the bank registers, selected by the
        bank number registered twice). Undefined for an address at or past ``depth``, and for a
        word written in either of those two cycles.
    banks : int
        Number of banks, ``ceil(depth / bank)``.
    """

    def __init__(self, shape: Any, depth: int, *, bank: int | None = None) -> None:
        self.shape = shape
        self.width = Shape.cast(shape).width
        self.depth = _check_int(depth, "Memory depth", 2)
        self.bank = bank_depth(self.width) if bank is None else _check_int(bank, "Bank depth", 1)
        if self.bank & (self.bank - 1):
            raise ValueError(f"Bank depth must be a power of two, not {self.bank}")
        self.banks = -(-self.depth // self.bank)
        addr_width = ceil_log2(self.depth)
        super().__init__({
            "wr": Out(WritePort.Signature(addr_width=addr_width, shape=shape)),
            "rd_addr": In(addr_width),
            "rd_data": Out(shape),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        low = ceil_log2(self.bank)
        wr_bank = self.wr.addr[low:]
        rd_bank = self.rd_addr[low:]
        outs = []
        for b in range(self.banks):
            words = min(self.bank, self.depth - b * self.bank)
            m.submodules[f"bank{b}"] = mem = Memory(shape=self.width, depth=words, init=[])
            wp = mem.write_port()
            rp = mem.read_port()
            hit = (wr_bank == b) if self.banks > 1 else 1
            m.d.comb += [wp.addr.eq(self.wr.addr[:low]), wp.data.eq(Value.cast(self.wr.data)),
                         wp.en.eq(self.wr.en & hit), rp.addr.eq(self.rd_addr[:low])]
            q = Signal(self.width, name=f"bank{b}_q")
            m.d.sync += q.eq(rp.data)
            outs.append(q)
        if self.banks == 1:
            m.d.comb += Value.cast(self.rd_data).eq(outs[0])
        else:
            sel1 = Signal(range(self.banks))
            sel2 = Signal(range(self.banks))
            m.d.sync += [sel1.eq(rd_bank), sel2.eq(sel1)]
            m.d.comb += Value.cast(self.rd_data).eq(Array(outs)[sel2])
        return m


def deep_memory(shape: Any, depth: int) -> Memory | BankedMemory:
    """A memory of ``depth`` words of ``shape``: a :class:`BankedMemory` when it is deeper than
    one bank (:func:`bank_depth` of its width), else a plain ``Memory`` (the caller reads it
    a cycle later, through a synchronous port)."""
    bank = bank_depth(Shape.cast(shape).width)
    if depth > bank:
        return BankedMemory(shape, depth, bank=bank)
    return Memory(shape=shape, depth=depth, init=[])
