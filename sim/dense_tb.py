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
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

from hw.dense import pack_words, unpack_words
from sim.runner import bench_inputs, bench_save_outputs

CLOCK_NS = 10


async def _write_memory(dut, port: str, words: list[int]) -> None:
    """Write ``words`` at addresses 0.. through the ``<port>__*`` signals; ends after a falling
    edge with ``en`` low."""
    addr, data, en = (getattr(dut, f"{port}__{s}") for s in ("addr", "data", "en"))
    clk = dut.clk
    en.value = 1
    for a, w in enumerate(words):
        addr.value = a
        data.value = w
        await RisingEdge(clk)
    en.value = 0
    await FallingEdge(clk)


async def _read_outputs(dut, count: int) -> list[int]:
    """Read ``count`` output words (synchronous port: address sampled at the rising edge, data
    read at the following falling edge)."""
    words = []
    clk = dut.clk
    for g in range(count):
        dut.out_rd__addr.value = g
        await RisingEdge(clk)
        await FallingEdge(clk)
        words.append(dut.out_rd__data.value.to_unsigned())
    return words


@cocotb.test()
async def dense_cases(dut):
    """Run every case in ``inputs.npz`` and save outputs and cycle counts."""
    inp = bench_inputs()
    lanes, wb, ab, acc = (int(v) for v in inp["params"])
    case_w = [int(v) for v in inp["case_w"]]

    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    dut.start.value = 0
    dut.rows.value = 0
    dut.cols.value = 0
    dut.w_wr__en.value = 0
    dut.x_wr__en.value = 0
    dut.out_rd__en.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)

    outputs, cycles, load_s, run_s, read_s = {}, [], [], [], []
    loaded = None
    for i, j in enumerate(case_w):
        rows, cols = (int(v) for v in inp[f"shape_{j}"])
        groups = -(-rows // lanes)
        t0 = time.perf_counter()
        if loaded != j:
            await _write_memory(dut, "w_wr", pack_words(inp[f"w_{j}"], wb))
            loaded = j
        await _write_memory(dut, "x_wr", pack_words(inp[f"x_{i}"].reshape(-1, 1), ab))
        t1 = time.perf_counter()

        dut.rows.value = rows
        dut.cols.value = cols
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        budget = 4 * groups * cols + 1000
        await with_timeout(RisingEdge(dut.done), budget * CLOCK_NS, "ns")
        t2 = time.perf_counter()
        await FallingEdge(dut.clk)
        cycles.append(int(dut.cycles.value.to_unsigned()))

        words = await _read_outputs(dut, groups)
        outputs[f"y_{i}"] = unpack_words(words, acc, lanes).reshape(-1)[:rows]
        t3 = time.perf_counter()
        load_s.append(t1 - t0)
        run_s.append(t2 - t1)
        read_s.append(t3 - t2)

    outputs["cycles"] = np.array(cycles, dtype=np.int64)
    bench_save_outputs(outputs, {"load_seconds": load_s, "run_seconds": run_s,
                                 "read_seconds": read_s})
