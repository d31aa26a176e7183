"""cocotb helpers shared by the engine benches (:mod:`sim.dense_tb`, :mod:`sim.bcr_tb`,
:mod:`sim.unstructured_tb`, :mod:`sim.pattern_tb`, :mod:`sim.rnn_tb`).

Conventions of the engines: a clock ``clk`` and reset ``rst``; memories written through
``<port>__addr``/``__data``/``__en`` and read through synchronous ports (address sampled at the
rising edge, data read at the following falling edge); a ``start`` pulse, a ``done`` flag and a
``cycles`` counter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

from hw.packing import pack_fields, pack_words
from sim.runner import CLOCK_PERIOD_NS, ENV_CLOCK

__all__ = ["CLOCK_NS", "start_and_reset", "write_memory", "write_bcr_banks", "read_words",
           "read_outputs", "start_and_wait", "read_cycles"]

CLOCK_NS = CLOCK_PERIOD_NS


async def start_and_reset(dut, zero: Iterable[str] = (), one: Iterable[str] = (),
                          clock_ns: int = CLOCK_NS) -> None:
    """Start cocotb's C++ (``impl="gpi"``) clock on ``clk`` unless the design clocks itself
    (:data:`sim.runner.ENV_CLOCK` is ``"internal"``: a :func:`sim.runner.clock_wrapper` of
    period ``CLOCK_NS``), hold ``rst`` for two cycles with the signals named in ``zero``
    (``one``) at 0 (1); ends after a falling edge."""
    if os.environ.get(ENV_CLOCK, "external") != "internal":
        Clock(dut.clk, clock_ns, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    for name in zero:
        getattr(dut, name).value = 0
    for name in one:
        getattr(dut, name).value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)


async def write_memory(dut, port: str, words: list[int], addrs: Iterable[int] | None = None,
                       *, base: int = 0, skip_empty: bool = True) -> None:
    """Write ``words`` through the ``<port>__*`` signals, at ``addrs`` (default ``base,
    base + 1, ...``); ends after a falling edge with ``en`` low. With ``skip_empty`` (default)
    an empty ``words`` returns at once; otherwise it still spends the closing falling edge."""
    if skip_empty and not words:
        return
    addr, data, en = (getattr(dut, f"{port}__{s}") for s in ("addr", "data", "en"))
    clk = dut.clk
    en.value = 1
    for a, w in zip(range(base, base + len(words)) if addrs is None else addrs, words,
                    strict=True):
        addr.value = a
        data.value = w
        await RisingEdge(clk)
    en.value = 0
    await FallingEdge(clk)


async def write_bcr_banks(dut, inp, prefix: str, widths: Iterable[int], weight_bits: int,
                          banks: Iterable[int], *, skip_empty: bool = True) -> None:
    """Write each slice's BCR images into its bank of the ``meta_wr``, ``col_wr``, ``row_wr``
    and ``w_wr`` ports (:class:`hw.bcr.BCRMatVec`, also inside :class:`hw.rnn.RNNEngine`).

    ``inp[f"meta_{prefix}_{s}"]``, ``col_...``, ``row_...`` and ``val_...`` hold slice ``s``'s
    images (:meth:`hw.bcr.BCRImages.bank`); ``widths`` are the field widths ``block_row,
    block_col, groups, ncols, col_index, row_index``; ``banks`` is ``[S, meta, col_index,
    row_index, values bank bits, ...]``: slice ``s``'s word ``i`` goes to
    ``s << bank_bits | i``.
    """
    w_brow, w_bcol, w_grp, w_nc, w_col, w_row = (int(v) for v in widths)
    count, *bits = (int(v) for v in list(banks)[:5])
    for s in range(count):
        images = (pack_fields(inp[f"meta_{prefix}_{s}"], [w_brow, w_bcol, w_grp, w_nc]),
                  pack_fields(inp[f"col_{prefix}_{s}"], w_col),
                  pack_fields(inp[f"row_{prefix}_{s}"], w_row),
                  pack_words(inp[f"val_{prefix}_{s}"], weight_bits))
        for port, words, b in zip(("meta_wr", "col_wr", "row_wr", "w_wr"), images, bits,
                                  strict=True):
            await write_memory(dut, port, words, base=s << b, skip_empty=skip_empty)


async def read_words(dut, port: str, count: int) -> list[int]:
    """Read ``count`` words at addresses 0.. through the synchronous read port ``<port>__*``."""
    addr, data = getattr(dut, f"{port}__addr"), getattr(dut, f"{port}__data")
    words = []
    clk = dut.clk
    for a in range(count):
        addr.value = a
        await RisingEdge(clk)
        await FallingEdge(clk)
        words.append(data.value.to_unsigned())
    return words


async def read_outputs(dut, count: int) -> list[int]:
    """Read ``count`` output words through ``out_rd``."""
    return await read_words(dut, "out_rd", count)


async def start_and_wait(dut, budget: int, *, poll_first: bool,
                         clock_ns: int = CLOCK_NS) -> None:
    """Pulse ``start`` for one cycle, then wait for ``done`` (at most ``budget`` cycles).

    ``poll_first=False``: await ``RisingEdge(done)`` right after the pulse and return at that
    edge (the caller awaits the falling edge before reading ``cycles``). ``poll_first=True``:
    await the falling edge first and return there if ``done`` is already high; otherwise await
    ``RisingEdge(done)`` and then the falling edge.
    """
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    if poll_first:
        await FallingEdge(dut.clk)
        if int(dut.done.value):
            return
    await with_timeout(RisingEdge(dut.done), budget * clock_ns, "ns")
    if poll_first:
        await FallingEdge(dut.clk)


def read_cycles(dut) -> int:
    """The engine's ``cycles`` counter."""
    return int(dut.cycles.value.to_unsigned())
