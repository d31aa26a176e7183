"""cocotb bench for :class:`hw.dense.DenseMatVec`: many cases per simulator process.

Run through :func:`sim.runner.run_cocotb` (see :func:`sim.dense.run_dense_batch`). Inputs
(``inputs.npz``):

* ``params``: ``[lanes, weight_bits, act_bits, acc_bits]``;
* ``w_<j>``: weight set ``j`` laid out by :func:`hw.dense.pack_weights`, shape
  ``(ceil(rows/P) * cols, P)``; ``shape_<j>``: ``[rows, cols]``;
* ``case_w``: for each case, the weight set it uses; ``x_<i>``: the activations of case ``i``.

For each case the bench writes the weights (only when the weight set changes), the activations,
sets ``rows``/``cols``, pulses ``start``, waits for ``done`` without touching the design
(``RisingEdge(done)`` under a timeout), then reads the outputs. It saves ``y_<i>`` (``int64``,
``rows`` values) and ``cycles`` (one per case), plus timings in the JSON metadata.

The clock is cocotb's C++ (``impl="gpi"``) clock on both simulators: on Icarus it is about 1.6x
faster (4-lane engine) than the Python clock cocotb picks there by default. The bench changes
inputs only after awaiting a clock edge (the usual cocotb pattern), so no write races the clock;
the bit-exact tests on Icarus check this.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from hw.packing import pack_words, unpack_words
from sim.runner import bench_inputs, bench_save_outputs
from sim.tb_common import read_cycles, read_outputs, start_and_reset, start_and_wait, write_memory


@cocotb.test()
async def dense_cases(dut):
    """Run every case in ``inputs.npz`` and save outputs and cycle counts."""
    inp = bench_inputs()
    lanes, wb, ab, acc = (int(v) for v in inp["params"])
    case_w = [int(v) for v in inp["case_w"]]

    await start_and_reset(dut, zero=("start", "rows", "cols", "w_wr__en", "x_wr__en"),
                          one=("out_rd__en",))

    outputs, cycles, load_s, run_s, read_s = {}, [], [], [], []
    loaded = None
    for i, j in enumerate(case_w):
        rows, cols = (int(v) for v in inp[f"shape_{j}"])
        groups = -(-rows // lanes)
        t0 = time.perf_counter()
        if loaded != j:
            await write_memory(dut, "w_wr", pack_words(inp[f"w_{j}"], wb), skip_empty=False)
            loaded = j
        await write_memory(dut, "x_wr", pack_words(inp[f"x_{i}"].reshape(-1, 1), ab),
                           skip_empty=False)
        t1 = time.perf_counter()

        dut.rows.value = rows
        dut.cols.value = cols
        await start_and_wait(dut, 4 * groups * cols + 1000, poll_first=False)
        t2 = time.perf_counter()
        await FallingEdge(dut.clk)
        cycles.append(read_cycles(dut))

        words = await read_outputs(dut, groups)
        outputs[f"y_{i}"] = unpack_words(words, acc, lanes).reshape(-1)[:rows]
        t3 = time.perf_counter()
        load_s.append(t1 - t0)
        run_s.append(t2 - t1)
        read_s.append(t3 - t2)

    outputs["cycles"] = np.array(cycles, dtype=np.int64)
    bench_save_outputs(outputs, {"load_seconds": load_s, "run_seconds": run_s,
                                 "read_seconds": read_s})
