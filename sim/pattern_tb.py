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
from cocotb.triggers import FallingEdge, RisingEdge

from hw.packing import pack_fields, pack_words, unpack_words
from sim.runner import bench_inputs, bench_save_outputs
from sim.tb_common import read_cycles, start_and_reset, start_and_wait, write_memory


@cocotb.test()
async def pattern_cases(dut):
    """Run every layer in ``inputs.npz`` and save outputs and cycle counts."""
    inp = bench_inputs()
    lanes, wb, ab, acc, _ = (int(v) for v in inp["params"])
    w_cnt, w_base, w_ch, w_pat, hb, wbits = (int(v) for v in inp["widths"])
    count = int(inp["count"][0])

    await start_and_reset(
        dut, zero=("start",)
        + tuple(f"{port}__en" for port in ("group_wr", "kern_wr", "w_wr", "lib_wr", "x_wr")),
        one=("out_rd__en",))

    outputs, cycles, load_s, run_s, read_s = {}, [], [], [], []
    for j in range(count):
        h, w, ho, wo, stride2, pad, groups, all_groups = (int(v) for v in inp[f"cfg_{j}"])
        t0 = time.perf_counter()
        await write_memory(dut, "group_wr", pack_fields(inp[f"groups_{j}"], [w_cnt, w_base]))
        await write_memory(dut, "kern_wr", pack_fields(inp[f"kern_{j}"], [w_ch, w_pat] * lanes))
        await write_memory(dut, "w_wr", pack_words(inp[f"val_{j}"], wb))
        await write_memory(dut, "lib_wr", pack_fields(inp[f"lib_{j}"], 4))
        x = inp[f"x_{j}"]
        c = x.shape[0]
        ci, yi, xi = np.meshgrid(range(c), range(h), range(w), indexing="ij")
        addrs = ((ci << (hb + wbits)) | (yi << wbits) | xi).ravel().tolist()
        await write_memory(dut, "x_wr", pack_words(x.reshape(-1, 1), ab), addrs)
        t1 = time.perf_counter()

        dut.h.value = h
        dut.w.value = w
        dut.ho.value = ho
        dut.wo.value = wo
        dut.stride2.value = stride2
        dut.pad.value = pad
        dut.groups.value = groups
        await start_and_wait(dut, 2 * ho * wo * (len(inp[f"val_{j}"]) + 1) + 1000, poll_first=True)
        t2 = time.perf_counter()
        cycles.append(read_cycles(dut))

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
