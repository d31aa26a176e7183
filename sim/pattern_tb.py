"""cocotb bench for :class:`hw.pattern.PatternConv`: many layers per simulator process.

Run through :func:`sim.runner.run_cocotb` (see :func:`sim.pattern.run_pattern_batch`). Inputs
(``inputs.npz``):

* ``params``: ``[lanes, weight_bits, act_bits, acc_bits, kept]``; ``widths``: the fields of
  :func:`hw.pattern.pattern_field_widths` in the order ``count, base, channel, pattern, height,
  width``; ``count``: ``[number of layers]``;
* per layer ``j``: ``groups_<j>``, ``kern_<j>``, ``val_<j>``, ``lib_<j>`` (the images of
  :func:`hw.pattern.pack_pattern`), ``x_<j>`` (``(C, H, W)``) and ``cfg_<j>`` =
  ``[h, w, ho, wo, stride2, pad, groups, all_groups]``.

For each layer the bench writes the memories, sets the runtime inputs, pulses ``start`` and waits
for ``done`` without touching the design, then reads ``all_groups * ho * wo`` output words. It
saves ``y_<j>`` (``int64``, ``(all_groups * lanes, ho, wo)`` in stored-lane order) and ``cycles``
(one per layer), and timings in the JSON metadata.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

from hw.bcr import pack_fields
from hw.dense import pack_words, unpack_words
from sim.runner import bench_inputs, bench_save_outputs

CLOCK_NS = 10


async def _write_memory(dut, port: str, words: list[int], addrs: list[int] | None = None
                        ) -> None:
    if not words:
        return
    addr, data, en = (getattr(dut, f"{port}__{s}") for s in ("addr", "data", "en"))
    clk = dut.clk
    en.value = 1
    for a, w in zip(range(len(words)) if addrs is None else addrs, words, strict=True):
        addr.value = a
        data.value = w
        await RisingEdge(clk)
    en.value = 0
    await FallingEdge(clk)


@cocotb.test()
async def pattern_cases(dut):
    """Run every layer in ``inputs.npz`` and save outputs and cycle counts."""
    inp = bench_inputs()
    lanes, wb, ab, acc, _ = (int(v) for v in inp["params"])
    w_cnt, w_base, w_ch, w_pat, hb, wbits = (int(v) for v in inp["widths"])
    count = int(inp["count"][0])

    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.start.value = 0
    for port in ("group_wr", "kern_wr", "w_wr", "lib_wr", "x_wr"):
        getattr(dut, f"{port}__en").value = 0
    dut.out_rd__en.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)

    outputs, cycles, load_s, run_s, read_s = {}, [], [], [], []
    for j in range(count):
        h, w, ho, wo, stride2, pad, groups, all_groups = (int(v) for v in inp[f"cfg_{j}"])
        t0 = time.perf_counter()
        await _write_memory(dut, "group_wr", pack_fields(inp[f"groups_{j}"], [w_cnt, w_base]))
        await _write_memory(dut, "kern_wr", pack_fields(inp[f"kern_{j}"], [w_ch, w_pat] * lanes))
        await _write_memory(dut, "w_wr", pack_words(inp[f"val_{j}"], wb))
        await _write_memory(dut, "lib_wr", pack_fields(inp[f"lib_{j}"], 4))
        x = inp[f"x_{j}"]
        c = x.shape[0]
        ci, yi, xi = np.meshgrid(range(c), range(h), range(w), indexing="ij")
        addrs = ((ci << (hb + wbits)) | (yi << wbits) | xi).ravel().tolist()
        await _write_memory(dut, "x_wr", pack_words(x.reshape(-1, 1), ab), addrs)
        t1 = time.perf_counter()

        dut.h.value = h
        dut.w.value = w
        dut.ho.value = ho
        dut.wo.value = wo
        dut.stride2.value = stride2
        dut.pad.value = pad
        dut.groups.value = groups
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await FallingEdge(dut.clk)
        if not int(dut.done.value):
            budget = 2 * ho * wo * (len(inp[f"val_{j}"]) + 1) + 1000
            await with_timeout(RisingEdge(dut.done), budget * CLOCK_NS, "ns")
            await FallingEdge(dut.clk)
        t2 = time.perf_counter()
        cycles.append(int(dut.cycles.value.to_unsigned()))

        y = np.zeros((all_groups * lanes, ho, wo), dtype=np.int64)
        for g in range(all_groups):
            for oy in range(ho):
                for ox in range(wo):
                    dut.out_rd__addr.value = (g << (hb + wbits)) | (oy << wbits) | ox
                    await RisingEdge(dut.clk)
                    await FallingEdge(dut.clk)
                    word = dut.out_rd__data.value.to_unsigned()
                    y[g * lanes:(g + 1) * lanes, oy, ox] = unpack_words([word], acc, lanes)[0]
        outputs[f"y_{j}"] = y
        t3 = time.perf_counter()
        load_s.append(t1 - t0)
        run_s.append(t2 - t1)
        read_s.append(t3 - t2)

    outputs["cycles"] = np.array(cycles, dtype=np.int64)
    bench_save_outputs(outputs, {"load_seconds": load_s, "run_seconds": run_s,
                                 "read_seconds": read_s})
