"""cocotb bench for :class:`hw.bcr.BCRMatVec`: many cases per simulator process.

Run through :func:`sim.runner.run_cocotb` (see :func:`sim.bcr.run_bcr_batch`). Inputs
(``inputs.npz``):

* ``params``: ``[lanes, weight_bits, act_bits, acc_bits, br, bc]``; ``widths``: the field widths
  of :func:`hw.bcr.bcr_field_widths` in the order ``block_row, block_col, groups, ncols,
  col_index, row_index``; ``slices``: ``[S, meta, col_index, row_index, values bank bits,
  slice_blocks field width]``;
* per layer ``j`` and slice ``s``: ``meta_<j>_<s>``, ``col_<j>_<s>``, ``row_<j>_<s>``,
  ``val_<j>_<s>`` (the slice's images, :meth:`hw.bcr.BCRImages.bank` of
  :func:`hw.bcr.pack_bcr`); per layer ``split_<j>`` (its ``slice_blocks``) and ``shape_<j>`` =
  ``[rows, cols, blocks]``;
* ``case_w``: for each case, the layer it uses; ``x_<i>``: the activations of case ``i``.

For each case the bench writes the layer's memories (only when the layer changes; each slice's
images into its bank at ``s << bank_bits``) and the activations, sets
``rows``/``cols``/``blocks`` (and ``slice_blocks`` when ``S > 1``), pulses ``start`` and waits for ``done`` without
touching the design (an empty layer is done at the ``start`` edge), then reads the outputs. It
saves ``y_<i>`` (``int64``, ``rows`` values) and ``cycles`` (one per case), and timings in the
JSON metadata. The clock is cocotb's C++ clock (``impl="gpi"``), as in :mod:`sim.dense_tb`.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np

from hw.packing import pack_fields, pack_words, unpack_words
from sim.runner import bench_inputs, bench_save_outputs
from sim.tb_common import (
    read_cycles,
    read_outputs,
    start_and_reset,
    start_and_wait,
    write_bcr_banks,
    write_memory,
)


@cocotb.test()
async def bcr_cases(dut):
    """Run every case in ``inputs.npz`` and save outputs and cycle counts."""
    inp = bench_inputs()
    lanes, wb, ab, acc, br, bc = (int(v) for v in inp["params"])
    slices, w_count = int(inp["slices"][0]), int(inp["slices"][-1])
    case_w = [int(v) for v in inp["case_w"]]

    await start_and_reset(
        dut, zero=("start", "rows", "cols", "blocks")
        + tuple(f"{port}__en" for port in ("meta_wr", "col_wr", "row_wr", "w_wr", "x_wr")),
        one=("out_rd__en",))

    outputs, cycles, load_s, run_s, read_s = {}, [], [], [], []
    loaded = None
    for i, j in enumerate(case_w):
        rows, cols, blocks = (int(v) for v in inp[f"shape_{j}"])
        t0 = time.perf_counter()
        split = tuple(int(v) for v in inp[f"split_{j}"])
        if loaded != j:
            await write_bcr_banks(dut, inp, str(j), inp["widths"], wb, inp["slices"])
            loaded = j
        await write_memory(dut, "x_wr", pack_words(inp[f"x_{i}"].reshape(-1, 1), ab))
        t1 = time.perf_counter()

        dut.rows.value = rows
        dut.cols.value = cols
        dut.blocks.value = blocks
        if slices > 1:
            dut.slice_blocks.value = pack_fields([split], w_count)[0]
        items = sum(len(inp[f"val_{j}_{s}"]) for s in range(slices))
        await start_and_wait(dut, 2 * items + 1000, poll_first=True)
        t2 = time.perf_counter()
        cycles.append(read_cycles(dut))

        words = await read_outputs(dut, -(-rows // br))
        outputs[f"y_{i}"] = unpack_words(words, acc, br).reshape(-1)[:rows]
        t3 = time.perf_counter()
        load_s.append(t1 - t0)
        run_s.append(t2 - t1)
        read_s.append(t3 - t2)

    outputs["cycles"] = np.array(cycles, dtype=np.int64)
    bench_save_outputs(outputs, {"load_seconds": load_s, "run_seconds": run_s,
                                 "read_seconds": read_s})
