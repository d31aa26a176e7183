"""``codesign compare`` on an lstm or gru layer: the cell engine in RTL (dense gates, and BCR
gates for a BCR layer) against the layer's int8 step kernels on aarch64, over one random
sequence; see :mod:`codesign.compare` for what is checked and how the two sides are compared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from codesign.compare import (
    ArmResult,
    Comparison,
    FpgaResult,
    Synth,
    _check_fmax,
    _fpga_clock,
    check_compare_layer,
)

__all__ = ["compare_rnn_layer", "bcr_memory_needs", "fpga_engines"]


def fpga_engines(layer: Any) -> list[str]:
    """The gate engines the layer runs on: ``["bcr", "dense"]`` for a BCR layer, else
    ``["dense"]`` (no RNN engine runs unstructured gates)."""
    return (["bcr"] if layer.scheme.kind == "bcr" else []) + ["dense"]


def _sequence(kind: str, x: np.ndarray, hid: int, cfg: Any, w_ih, w_hh, b_ih, b_hh):
    """Golden states before each step: ``[(h, c), ...]`` (``c`` None for a GRU), and the final
    ones."""
    from ir.golden import gru_step, lstm_step

    h = np.zeros(hid, dtype=np.int64)
    c = np.zeros(hid, dtype=np.int64) if kind == "lstm" else None
    states = []
    for t in range(len(x)):
        states.append((h, c))
        if kind == "lstm":
            h, c = lstm_step(x[t], h, c, w_ih, w_hh, b_ih, b_hh, config=cfg)
        else:
            h = gru_step(x[t], h, w_ih, w_hh, b_ih, b_hh, config=cfg)
    return states, (h, c)


def bcr_memory_needs(layer: Any, lanes: int, slices: int = 1) -> tuple[int, int]:
    """``(blocks, value words)`` the BCR-gated engine's memories need for ``layer`` on
    ``lanes`` lanes and ``slices`` slices: those of the largest slice of
    :func:`hw.rnn.bcr_gate_matrix` (:func:`codesign.compare_linear.bcr_slice_memory`; with one
    slice, the stored blocks and :func:`hw.bcr.bcr_items`)."""
    from codesign.compare_linear import bcr_slice_memory
    from hw.rnn import bcr_gate_matrix

    t = layer.tensors
    m_ih, m_hh = (np.asarray(t[k]) != 0 for k in ("mask_ih", "mask_hh"))
    matrix = bcr_gate_matrix(layer.op, m_ih.astype(np.int64), m_hh.astype(np.int64),
                             tuple(layer.scheme.block), m_ih, m_hh)
    return bcr_slice_memory(matrix, lanes, slices)


def _run_fpga(kind: str, gates: str, base: dict, x: np.ndarray, lanes: int, block, simulator: str,
              cache_dir, memory: tuple[int, int] | None = None, slices: int = 1
              ) -> tuple[Any, dict, Path]:
    """RTL run of the sequence; returns (run, engine keywords, Verilog path). ``memory``:
    the BCR engine's ``(max_blocks, max_value_words)`` per slice (default: the layer's own
    needs); ``slices``: the BCR engine's slices."""
    from codesign.compare_linear import bcr_slice_memory
    from hw.rnn import bcr_gate_matrix
    from sim.rnn import GRUJob, LSTMJob, emit_rnn, run_gru_batch, run_lstm_batch

    cfg = base["config"]
    w_ih, w_hh = (np.asarray(base[k], dtype=np.int64) for k in ("weight_ih", "weight_hh"))
    m_ih, m_hh = base["mask_ih"], base["mask_hh"]
    w_ih, w_hh = w_ih * np.asarray(m_ih != 0), w_hh * np.asarray(m_hh != 0)
    biases = [None if base[k] is None else np.asarray(base[k], dtype=np.int64)
              for k in ("bias_ih", "bias_hh")]
    steps, isz = x.shape
    hsz = w_hh.shape[1]
    kw: dict[str, Any] = {"gates": gates}
    masks: tuple = ()
    if gates == "bcr":
        matrix = bcr_gate_matrix(kind, w_ih, w_hh, block, m_ih, m_hh)
        need = bcr_slice_memory(matrix, lanes, slices)
        if memory is not None and (memory[0] < need[0] or memory[1] < need[1]):
            per = "" if slices == 1 else " per slice"
            raise ValueError(f"the BCR engine's memories ({memory[0]} blocks, {memory[1]} value "
                             f"words{per}) are smaller than the layer needs ({need[0]}, "
                             f"{need[1]})")
        kw.update(block=tuple(block), max_blocks=(memory or need)[0],
                  max_value_words=(memory or need)[1])
        if slices > 1:
            kw["slices"] = slices
        masks = (m_ih, m_hh)
    zero = np.zeros(hsz, dtype=np.int64)
    if kind == "lstm":
        job = LSTMJob(x, zero, zero, w_ih, w_hh, *biases, *masks)
        run = run_lstm_batch([job], cfg, lanes, simulator, isz, hsz, steps, cache_dir=cache_dir,
                             **kw)[0]
    else:
        job = GRUJob(x, zero, w_ih, w_hh, *biases, *masks)
        run = run_gru_batch([job], cfg, lanes, simulator, isz, hsz, steps, cache_dir=cache_dir,
                            **kw)[0]
    verilog, _ = emit_rnn(kind, cfg, lanes, isz, hsz, steps, cache_dir=cache_dir, **kw)
    return run, kw, verilog


def compare_rnn_layer(layer: Any, *, lanes: int = 8, steps: int = 4, seed: int = 0,
                      simulator: str = "verilator",
                      synth: Synth | None = None,
                      fmax: dict[str, float] | None = None, device: str | None = None,
                      cache_dir: str | Path | None = None, mobile_cache: Path | None = None,
                      bcr_memory: tuple[int, int] | None = None, slices: int = 1,
                      echo: Callable[[str], None] = lambda s: None) -> Comparison:
    """Run one lstm/gru bundle layer on the FPGA engines and the ARM kernels (module docstring).

    Parameters
    ----------
    layer : ir.Layer
        Checked by :func:`check_compare_layer`.
    lanes, steps, seed, simulator
        Gate-engine lanes (a multiple of 4), sequence length, input seed (int8 inputs within
        the format's activation width), RTL simulator.
    synth : callable, optional
        ``synth(gates, verilog) -> (fmax_mhz or None, source, resources or None, report path or
        None, note)``: places the engine (e.g. :func:`synth_reports.flow.synth_engine`).
    fmax : dict, optional
        Given Fmax per gate engine (``{"dense": MHz, "bcr": MHz}``; ``"sparse"`` stands for
        ``"bcr"``, as :func:`codesign.compare_cmd.parse_fmax` gives it); used instead of
        ``synth``.
    device : str, optional
        The part ``synth`` places on, recorded.
    cache_dir, mobile_cache
        The simulator build cache and the ARM build cache.
    bcr_memory : (int, int), optional
        ``(max_blocks, max_value_words)`` of the BCR-gated engine, at least
        :func:`bcr_memory_needs` of the layer: one engine built for several layers (default:
        sized to this layer); per slice.
    slices : int, optional
        Slices of the BCR gate engine (1 to :data:`hw.bcr.MAX_SLICES`, default 1), each with
        ``lanes`` lanes over its share of the gate matrix's block rows; the dense-gated engine
        has none.
    echo
        Progress lines.

    Returns
    -------
    Comparison
    """
    from mobile.build import build_kernel
    from mobile.check import check_kernel
    from mobile.cost import kernel_cost
    from mobile.layers import layer_kernels

    check_compare_layer(layer, lanes, slices=slices)
    _check_fmax(fmax, "{}-gated engine")
    kind = layer.op
    kernels = layer_kernels(layer, "int8")
    base = dict(next(p for role, _, p in kernels if role == "dense"))
    cfg = base["config"]
    isz, hsz = layer.shape.input_size, layer.shape.hidden_size
    rng = np.random.default_rng(seed)
    amax = 2 ** (cfg.act_bits - 1) - 1
    x = rng.integers(-amax, amax + 1, size=(steps, isz), dtype=np.int64)
    block = tuple(layer.scheme.block) if layer.scheme.kind == "bcr" else None
    w_ih = np.where(np.asarray(base["mask_ih"]) != 0, np.asarray(base["weight_ih"], np.int64), 0)
    w_hh = np.where(np.asarray(base["mask_hh"]) != 0, np.asarray(base["weight_hh"], np.int64), 0)
    b_ih, b_hh = (None if base[k] is None else np.asarray(base[k], np.int64)
                  for k in ("bias_ih", "bias_hh"))
    states, final = _sequence(kind, x, hsz, cfg, w_ih, w_hh, b_ih, b_hh)
    want_h = np.array([s[0] for s in states[1:]] + [final[0]])

    fpga = []
    for gates in fpga_engines(layer):
        echo(f"  FPGA {gates} gates: RTL ({simulator}), {steps} steps ...")
        run, kw, verilog = _run_fpga(kind, gates, base, x, lanes, block, simulator, cache_dir,
                                     bcr_memory, slices)
        from hw.rnn import bcr_gate_matrix, bcr_setup_cycles, rnn_bcr_cycles, rnn_cycles

        if gates == "bcr":
            matrix = bcr_gate_matrix(kind, w_ih, w_hh, block, base["mask_ih"], base["mask_hh"])
            model = rnn_bcr_cycles(matrix, isz, hsz, steps, lanes, slices, cell=kind)
            setup = bcr_setup_cycles(isz, hsz, block) + hsz
        else:
            model, setup = rnn_cycles(kind, isz, hsz, steps, lanes), hsz
        match = np.array_equal(run.h_seq, want_h)
        if kind == "lstm":
            match = match and np.array_equal(run.c, final[1])
        fm, source, res, report, note = _fpga_clock(gates, verilog, fmax, synth, device,
                                                    echo, f"FPGA {gates} gates")
        fpga.append(FpgaResult(gates, lanes, steps, int(run.cycles), int(model), int(setup),
                               bool(match), str(verilog), block if gates == "bcr" else None,
                               fm, source, res, report, note, slices=kw.get("slices")))

    arm = []
    step_in = states[1] if steps > 1 else states[0]
    cost_inputs = (x[1 if steps > 1 else 0], step_in[0]) + ((step_in[1],) if kind == "lstm"
                                                           else ())
    for role, kkind, params in kernels:
        matvec = params["matvec"]
        echo(f"  ARM {matvec} products: aarch64 build, qemu check and trace ...")
        k = build_kernel(kkind, target="aarch64", cache_dir=mobile_cache, **params)
        chk = check_kernel(k, seed=seed)
        h = np.zeros(hsz, dtype=np.int64)
        c = np.zeros(hsz, dtype=np.int64)
        got = []
        for t in range(steps):
            outs = k(x[t], h, c) if kind == "lstm" else k(x[t], h)
            h = outs[0].astype(np.int64)
            if kind == "lstm":
                c = outs[1].astype(np.int64)
            got.append(h)
        seq_ok = np.array_equal(np.array(got), want_h) and (
            kind != "lstm" or np.array_equal(c, final[1]))
        cost = kernel_cost(k, cost_inputs)
        arm.append(ArmResult(role, matvec, chk.ok, chk.message, bool(seq_ok), cost.instructions,
                             dict(cost.cycles), int(k.text_bytes)))

    kept = sum(int(np.count_nonzero(layer.tensors[m])) for m in ("mask_ih", "mask_hh"))
    total = sum(int(np.asarray(layer.tensors[m]).size) for m in ("mask_ih", "mask_hh"))
    return Comparison(layer.name, kind, isz, hsz, layer.scheme.kind, kept / max(1, total),
                      layer.quant.bits, steps, fpga, arm, device, seed, block, simulator)
