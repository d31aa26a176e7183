"""cocotb bench for :class:`hw.unstructured.UnstructuredMatVec`: many cases per simulator process.

Run through :func:`sim.runner.run_cocotb` (see :func:`sim.unstructured.run_unstructured_batch`).
Inputs (``inputs.npz``):

* ``params``: ``[lanes, weight_bits, act_bits, acc_bits, index_bits, count_bits,
  entry_addr_bits]``;
* per layer ``j``: ``cnt_<j>`` (``(cols, P)`` entry counts), ``val_<j>_<p>`` and ``rel_<j>_<p>``
  (lane ``p``'s entries, the images of :func:`hw.unstructured.pack_unstructured`) and
  ``shape_<j>`` = ``[rows, cols]``;
* ``case_w``: for each case, the layer it uses; ``x_<i>``: the activations of case ``i``.

For each case the bench writes the layer's memories (only when the layer changes) and the
activations, sets ``rows``/``cols``, pulses ``start`` and waits for ``done`` without touching the
design, then reads the outputs. It saves ``y_<i>`` (``int64``, ``rows`` values) and ``cycles``
(one per case), and timings in the JSON metadata. The clock is cocotb's C++ clock
(``impl="gpi"``), as in :mod:`sim.dense_tb`.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

from hw.bcr import pack_fields
from hw.dense import pack_words, unpack_words
from hw.unstructured import pack_entry_words
from sim.runner import bench_inputs, bench_save_outputs

CLOCK_NS = 10


async def _write_memory(dut, port: str, words: list[int], base: int = 0) -> None:
    """Write ``words`` at addresses ``base, base + 1, ...`` through the ``<port>__*`` signals."""
    if not words:
        return
    addr, data, en = (getattr(dut, f"{port}__{s}") for s in ("addr", "data", "en"))
    clk = dut.clk
    en.value = 1
    for a, w in enumerate(words):
        addr.value = base + a
        data.value = w
        await RisingEdge(clk)
    en.value = 0
    await FallingEdge(clk)


async def _read_outputs(dut, count: int) -> list[int]:
    words = []
    clk = dut.clk
    for g in range(count):
        dut.out_rd__addr.value = g
        await RisingEdge(clk)
        await FallingEdge(clk)
        words.append(dut.out_rd__data.value.to_unsigned())
    return words


@cocotb.test()
async def unstructured_cases(dut):
    """Run every case in ``inputs.npz`` and save outputs and cycle counts."""
    inp = bench_inputs()
    lanes, wb, ab, acc, ib, cb, eab = (int(v) for v in inp["params"])
    case_w = [int(v) for v in inp["case_w"]]

    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.start.value = 0
    dut.rows.value = 0
    dut.cols.value = 0
    for port in ("cnt_wr", "e_wr", "x_wr"):
        getattr(dut, f"{port}__en").value = 0
    dut.out_rd__en.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)

    outputs, cycles, load_s, run_s, read_s = {}, [], [], [], []
    loaded = None
    for i, j in enumerate(case_w):
        rows, cols = (int(v) for v in inp[f"shape_{j}"])
        t0 = time.perf_counter()
        if loaded != j:
            await _write_memory(dut, "cnt_wr", pack_fields(inp[f"cnt_{j}"], cb))
            for p in range(lanes):
                await _write_memory(dut, "e_wr", pack_entry_words(
                    inp[f"val_{j}_{p}"], inp[f"rel_{j}_{p}"], wb, ib), p << eab)
            loaded = j
        x = inp[f"x_{i}"]
        await _write_memory(dut, "x_wr", pack_words(x.reshape(-1, 1), ab))
        t1 = time.perf_counter()

        dut.rows.value = rows
        dut.cols.value = cols
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await FallingEdge(dut.clk)
        if not int(dut.done.value):
            budget = cols * (2 + -(-rows // lanes)) + 1000
            await with_timeout(RisingEdge(dut.done), budget * CLOCK_NS, "ns")
            await FallingEdge(dut.clk)
        t2 = time.perf_counter()
        cycles.append(int(dut.cycles.value.to_unsigned()))

        words = await _read_outputs(dut, -(-rows // lanes))
        outputs[f"y_{i}"] = unpack_words(words, acc, lanes).reshape(-1)[:rows]
        t3 = time.perf_counter()
        load_s.append(t1 - t0)
        run_s.append(t2 - t1)
        read_s.append(t3 - t2)

    outputs["cycles"] = np.array(cycles, dtype=np.int64)
    bench_save_outputs(outputs, {"load_seconds": load_s, "run_seconds": run_s,
                                 "read_seconds": read_s})
