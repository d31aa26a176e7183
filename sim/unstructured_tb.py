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

from hw.packing import pack_entry_words, pack_fields, pack_words, unpack_words
from sim.runner import bench_inputs, bench_save_outputs
from sim.tb_common import read_cycles, read_outputs, start_and_reset, start_and_wait, write_memory


@cocotb.test()
async def unstructured_cases(dut):
    """Run every case in ``inputs.npz`` and save outputs and cycle counts."""
    inp = bench_inputs()
    lanes, wb, ab, acc, ib, cb, eab = (int(v) for v in inp["params"])
    case_w = [int(v) for v in inp["case_w"]]

    await start_and_reset(
        dut, zero=("start", "rows", "cols")
        + tuple(f"{port}__en" for port in ("cnt_wr", "e_wr", "x_wr")),
        one=("out_rd__en",))

    outputs, cycles, load_s, run_s, read_s = {}, [], [], [], []
    loaded = None
    for i, j in enumerate(case_w):
        rows, cols = (int(v) for v in inp[f"shape_{j}"])
        t0 = time.perf_counter()
        if loaded != j:
            await write_memory(dut, "cnt_wr", pack_fields(inp[f"cnt_{j}"], cb))
            for p in range(lanes):
                await write_memory(dut, "e_wr", pack_entry_words(
                    inp[f"val_{j}_{p}"], inp[f"rel_{j}_{p}"], wb, ib), base=p << eab)
            loaded = j
        x = inp[f"x_{i}"]
        await write_memory(dut, "x_wr", pack_words(x.reshape(-1, 1), ab))
        t1 = time.perf_counter()

        dut.rows.value = rows
        dut.cols.value = cols
        await start_and_wait(dut, cols * (2 + -(-rows // lanes)) + 1000, poll_first=True)
        t2 = time.perf_counter()
        cycles.append(read_cycles(dut))

        words = await read_outputs(dut, -(-rows // lanes))
        outputs[f"y_{i}"] = unpack_words(words, acc, lanes).reshape(-1)[:rows]
        t3 = time.perf_counter()
        load_s.append(t1 - t0)
        run_s.append(t2 - t1)
        read_s.append(t3 - t2)

    outputs["cycles"] = np.array(cycles, dtype=np.int64)
    bench_save_outputs(outputs, {"load_seconds": load_s, "run_seconds": run_s,
                                 "read_seconds": read_s})
