"""cocotb bench for :class:`hw.rnn.LSTMEngine` and :class:`hw.rnn.GRUEngine`: many sequences
per simulator process.

Run through :func:`sim.runner.run_cocotb` (see :func:`sim.rnn.run_lstm_batch`). Inputs: ``params``
``[lanes, weight_bits, act_bits, cell_bits, is_lstm, is_bcr]``, ``widths`` (BCR field widths of
:func:`hw.bcr.bcr_field_widths`: ``block_row, block_col, groups, ncols, col_index, row_index``),
``slices`` (``[S, meta, col_index, row_index, values bank bits, slice_blocks field width]``,
zeros after ``S`` for dense gates), ``count``, and per job ``n``: ``w_<n>`` (packed dense
weights; dense gates only), per slice ``s`` ``meta_<n>_<s>``, ``col_<n>_<s>``, ``row_<n>_<s>``,
``val_<n>_<s>`` (the slice's BCR images, :meth:`hw.bcr.BCRImages.bank`) and ``split_<n>`` (blocks
per slice; BCR gates only), ``b_<n>`` (``(H, 4)`` bias lanes), ``x_<n>`` (flattened ``(T, I)``
inputs), ``h_<n>``, ``c_<n>`` (initial state; LSTM only), ``shape_<n>``
``[I, H, T, blocks, budget]``. For each job the bench writes every memory (each slice's BCR
images into its bank at ``s << bank_bits``), sets ``blocks`` (and ``slice_blocks`` when
``S > 1``), pulses ``start``, awaits ``done`` (at most ``budget`` cycles), then reads
``h_seq``, ``c`` and ``h`` (no ``c`` for GRU). Outputs: ``hseq_<n>``, ``c_<n>`` (LSTM), ``h_<n>``, ``cycles``, and
the wall time from ``start`` to ``done`` per job (``run_seconds`` in the metadata).
"""

from __future__ import annotations

import functools
import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from hw.packing import pack_fields, pack_words, unpack_words
from sim.runner import bench_inputs, bench_save_outputs
from sim.tb_common import (
    read_cycles,
    read_words,
    start_and_reset,
    start_and_wait,
    write_bcr_banks,
    write_memory,
)

_write_memory = functools.partial(write_memory, skip_empty=False)


async def _read(dut, port: str, count: int, bits: int) -> np.ndarray:
    return unpack_words(await read_words(dut, port, count), bits, 1).reshape(-1)


@cocotb.test()
async def rnn_cases(dut):
    """Run every job in ``inputs.npz`` and save the states and cycle counts."""
    inp = bench_inputs()
    lanes, wb, ab, cb, is_lstm, is_bcr = (int(v) for v in inp["params"])
    slices, w_count = int(inp["slices"][0]), int(inp["slices"][-1])
    count = int(inp["count"][0])
    bcr_ports = ("meta_wr__en", "col_wr__en", "row_wr__en", "blocks") if is_bcr else ()
    bcr_ports += ("slice_blocks",) if slices > 1 else ()

    await start_and_reset(
        dut,
        zero=("start", "input_size", "hidden_size", "steps", "w_wr__en", "b_wr__en",
              "x_wr__en", "h_wr__en") + (("c_wr__en",) if is_lstm else ()) + bcr_ports,
        one=("h_rd__en", "hseq_rd__en") + (("c_rd__en",) if is_lstm else ()))

    out, cycles, run_s = {}, [], []
    for n in range(count):
        isz, hsz, steps, blocks, budget = (int(v) for v in inp[f"shape_{n}"])
        if is_bcr:
            await write_bcr_banks(dut, inp, str(n), inp["widths"], wb, inp["slices"],
                                  skip_empty=False)
            dut.blocks.value = blocks
            if slices > 1:
                dut.slice_blocks.value = pack_fields([inp[f"split_{n}"]], w_count)[0]
        else:
            await _write_memory(dut, "w_wr", pack_words(inp[f"w_{n}"], wb))
        await _write_memory(dut, "b_wr", pack_words(inp[f"b_{n}"], 32))
        await _write_memory(dut, "x_wr", pack_words(inp[f"x_{n}"].reshape(-1, 1), ab))
        await _write_memory(dut, "h_wr", pack_words(inp[f"h_{n}"].reshape(-1, 1), ab))
        if is_lstm:
            await _write_memory(dut, "c_wr", pack_words(inp[f"c_{n}"].reshape(-1, 1), cb))
        dut.input_size.value = isz
        dut.hidden_size.value = hsz
        dut.steps.value = steps
        t0 = time.perf_counter()
        await start_and_wait(dut, budget, poll_first=False)
        run_s.append(time.perf_counter() - t0)
        await FallingEdge(dut.clk)
        cycles.append(read_cycles(dut))
        out[f"hseq_{n}"] = await _read(dut, "hseq_rd", steps * hsz, ab)
        if is_lstm:
            out[f"c_{n}"] = await _read(dut, "c_rd", hsz, cb)
        out[f"h_{n}"] = await _read(dut, "h_rd", hsz, ab)
    out["cycles"] = np.array(cycles, dtype=np.int64)
    bench_save_outputs(out, {"run_seconds": run_s})
