"""FPGA against a mobile ARM core on one RNN layer: the same integer step on both, checked.

For an lstm or gru layer of a bundle, :func:`compare_rnn_layer` runs one random input sequence
(``steps`` steps from a zero state) through

* **the FPGA engines** (:class:`hw.rnn.RNNEngine`): dense gates always, BCR gates too when the
  layer is BCR-pruned; each in RTL (:mod:`sim.rnn`, Verilator or Icarus) with its memories sized
  to the layer, every step's ``h`` (and the final ``c``) checked against ``ir.golden``, the
  cycles against the cycle model. The Fmax of that same Verilog comes from
  :func:`synth_reports.flow.synth_engine` (Yosys + nextpnr, the caller's ``synth`` function) or
  is given, and the cycles per step become microseconds;
* **the ARM kernels** (:mod:`mobile`): the layer's int8 step kernels (:func:`mobile.layers.
  layer_kernels`: the sparse kernel, CSR for BCR layers, dense) built for aarch64, checked
  against ``ir.golden`` on random inputs and run through the same sequence under qemu (every
  step's outputs must equal the RTL's), and costed: exact executed instructions of one step and
  llvm-mca cycles on two models (:data:`mobile.cost.MCA_MODELS`: Neoverse-N1 optimistic,
  Cortex-A57 pessimistic).

Both sides take the integer weights, biases and fixed-point format of
:func:`mobile.layers.layer_kernels` (``int8``), so they compute one function bit for bit.

The model's ARM cycles are not phone milliseconds (``shared/TOOLCHAIN.md``), so the comparison
needs no ARM clock: the **matching clock** of an ARM kernel against an FPGA engine is
``ARM cycles per step / FPGA microseconds per step`` in MHz, a band over the two models. An ARM
core clocked above it is faster than the FPGA engine on this layer; below it, slower.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FpgaResult", "ArmResult", "Comparison", "compare_rnn_layer", "check_compare_layer",
           "bcr_memory_needs", "fpga_engines", "serial_cycles", "comparison_frame", "matching_mhz", "format_comparison", "comparison_rows"]


@dataclass(frozen=True)
class FpgaResult:
    """One FPGA engine on the layer.

    ``gates`` is ``"dense"`` or ``"bcr"``; ``rtl_cycles`` the simulator's count for all
    ``steps`` (``model_cycles`` the cycle model's), ``setup_cycles`` the part paid once per
    sequence (the first step's copy of the initial ``h``, and the BCR engine's setup stage). ``fmax_mhz`` is None when the engine was
    not placed (``note`` says why); ``fmax_source`` says where it came from; ``resources`` are
    the engine's (:class:`synth_reports.yosys.Resources` as a dict) when it was synthesised.
    """

    gates: str
    lanes: int
    steps: int
    rtl_cycles: int
    model_cycles: int
    setup_cycles: int
    outputs_match: bool
    verilog: str
    block: tuple[int, int] | None = None
    fmax_mhz: float | None = None
    fmax_source: str = ""
    resources: dict[str, Any] | None = None
    report: str | None = None
    note: str = ""

    @property
    def name(self) -> str:
        return "BCR gates" if self.gates == "bcr" else "dense gates"

    @property
    def cycles_match(self) -> bool:
        return self.rtl_cycles == self.model_cycles

    @property
    def cycles_per_step(self) -> float:
        """Cycles of one step once the sequence runs: ``(rtl_cycles - setup) / steps``."""
        return (self.rtl_cycles - self.setup_cycles) / self.steps

    @property
    def us_per_step(self) -> float | None:
        return None if self.fmax_mhz is None else self.cycles_per_step / self.fmax_mhz


@dataclass(frozen=True)
class ArmResult:
    """One aarch64 step kernel: ``matvec`` its gate products (``dense``, ``bcr``, ``csr``),
    ``check`` the golden check's line, ``sequence_match`` whether the sequence's outputs equal
    the RTL's, ``instructions`` and ``cycles`` (per llvm-mca model) of one step."""

    role: str
    matvec: str
    check_ok: bool
    check: str
    sequence_match: bool
    instructions: int
    cycles: dict[str, float]
    text_bytes: int

    @property
    def name(self) -> str:
        return f"{self.matvec} products"

    @property
    def ok(self) -> bool:
        return self.check_ok and self.sequence_match


@dataclass(frozen=True)
class Comparison:
    """Everything :func:`compare_rnn_layer` measured on one layer."""

    layer: str
    op: str
    input_size: int
    hidden_size: int
    scheme: str
    density: float
    weight_bits: int
    steps: int
    fpga: list[FpgaResult]
    arm: list[ArmResult]
    device: str | None = None
    seed: int = 0
    block: tuple[int, int] | None = None
    simulator: str = "verilator"

    @property
    def ok(self) -> bool:
        """Every check passed: RTL outputs and cycles, ARM golden checks and sequences."""
        return (all(f.outputs_match and f.cycles_match for f in self.fpga)
                and all(a.ok for a in self.arm))

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("fpga", "arm")}
        out["ok"] = self.ok
        out["fpga"] = [{**asdict(f), "name": f.name, "cycles_match": f.cycles_match,
                        "cycles_per_step": f.cycles_per_step, "us_per_step": f.us_per_step}
                       for f in self.fpga]
        out["arm"] = [{**asdict(a), "name": a.name} for a in self.arm]
        out["matching_mhz"] = [
            {"fpga": f.name, "arm": a.name, **matching_mhz(a, f)}
            for f in self.fpga if f.us_per_step for a in self.arm]
        return out


def matching_mhz(arm: ArmResult, fpga: FpgaResult) -> dict[str, float]:
    """The ARM clock (MHz) at which ``arm`` takes ``fpga``'s time per step, per llvm-mca model:
    modelled ARM cycles per step / FPGA microseconds per step."""
    us = fpga.us_per_step
    if not us:
        raise ValueError(f"the FPGA {fpga.name} engine has no time per step (no Fmax)")
    return {label: cyc / us for label, cyc in arm.cycles.items()}


def check_compare_layer(layer: Any, lanes: int) -> None:
    """``ValueError`` naming the layer unless :func:`compare_rnn_layer` can run it: an lstm or
    gru layer with quantized weights of at most 8 bits whose scales give an 8-bit fixed-point
    format; ``lanes`` a multiple of 4 (the dense-gated engine's)."""
    from mobile.layers import layer_kernels

    if layer.op not in ("lstm", "gru"):
        raise ValueError(f"layer {layer.name!r} is {layer.op}; compare runs lstm and gru layers "
                         "(for linear and conv layers: codesign sweep --fmax on the FPGA side, "
                         "codesign mobile on the ARM side)")
    q = layer.quant
    if q is None or q.bits > 8 or not q.signed:
        what = ("has no quantized weights" if q is None else f"has {q.bits}-bit weights"
                if q.bits > 8 else "has unsigned weights")
        raise ValueError(f"layer {layer.name!r} {what}; compare runs the int8 step on both "
                         "sides and needs signed weights of at most 8 bits (prune with --bits)")
    if lanes < 4 or lanes % 4:
        raise ValueError(f"--lanes must be a positive multiple of 4 (the dense-gated engine's "
                         f"gate rows), not {lanes}")
    try:
        layer_kernels(layer, "int8")        # the fixed-point format exists
    except ValueError as exc:               # its hint names an option compare does not have
        raise ValueError(str(exc).removesuffix("; use --dtype fp32")
                         + "; compare runs the int8 step only") from None


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


def bcr_memory_needs(layer: Any, lanes: int) -> tuple[int, int]:
    """``(blocks, value words)`` the BCR-gated engine's memories need for ``layer`` on
    ``lanes`` lanes (:func:`hw.rnn.bcr_gate_matrix`, :func:`hw.bcr.bcr_items`)."""
    from hw.bcr import bcr_items
    from hw.rnn import bcr_gate_matrix

    t = layer.tensors
    m_ih, m_hh = (np.asarray(t[k]) != 0 for k in ("mask_ih", "mask_hh"))
    matrix = bcr_gate_matrix(layer.op, m_ih.astype(np.int64), m_hh.astype(np.int64),
                             tuple(layer.scheme.block), m_ih, m_hh)
    return max(1, matrix.block_count), max(1, bcr_items(matrix, lanes))


def _run_fpga(kind: str, gates: str, base: dict, x: np.ndarray, lanes: int, block, simulator: str,
              cache_dir, memory: tuple[int, int] | None = None) -> tuple[Any, dict, Path]:
    """RTL run of the sequence; returns (run, engine keywords, Verilog path). ``memory``:
    the BCR engine's ``(max_blocks, max_value_words)`` (default: the layer's own needs)."""
    from hw.bcr import bcr_items
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
        need = (max(1, matrix.block_count), max(1, bcr_items(matrix, lanes)))
        if memory is not None and (memory[0] < need[0] or memory[1] < need[1]):
            raise ValueError(f"the BCR engine's memories ({memory[0]} blocks, {memory[1]} value "
                             f"words) are smaller than the layer needs ({need[0]}, {need[1]})")
        kw.update(block=tuple(block), max_blocks=(memory or need)[0],
                  max_value_words=(memory or need)[1])
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
                      synth: Callable[[str, Path], tuple[float | None, str, dict | None,
                                                         str | None, str]] | None = None,
                      fmax: dict[str, float] | None = None, device: str | None = None,
                      cache_dir: str | Path | None = None, mobile_cache: Path | None = None,
                      bcr_memory: tuple[int, int] | None = None,
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
        Given Fmax per gate engine (``{"dense": MHz, "bcr": MHz}``); used instead of ``synth``.
    device : str, optional
        The part ``synth`` places on, recorded.
    cache_dir, mobile_cache
        The simulator build cache and the ARM build cache.
    bcr_memory : (int, int), optional
        ``(max_blocks, max_value_words)`` of the BCR-gated engine, at least
        :func:`bcr_memory_needs` of the layer: one engine built for several layers (default:
        sized to this layer).
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

    check_compare_layer(layer, lanes)
    for gates, mhz in (fmax or {}).items():
        if not (isinstance(mhz, int | float) and math.isfinite(mhz) and mhz > 0):
            raise ValueError(f"Fmax of the {gates}-gated engine must be a positive finite "
                             f"number of MHz, not {mhz!r}")
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
                                     bcr_memory)
        from hw.rnn import bcr_gate_matrix, bcr_setup_cycles, lstm_cycles, rnn_bcr_cycles

        if gates == "bcr":
            matrix = bcr_gate_matrix(kind, w_ih, w_hh, block, base["mask_ih"], base["mask_hh"])
            model = rnn_bcr_cycles(matrix, isz, hsz, steps, lanes)
            setup = bcr_setup_cycles(isz, hsz, block) + hsz
        else:
            model, setup = lstm_cycles(isz, hsz, steps, lanes), hsz
        match = np.array_equal(run.h_seq, want_h)
        if kind == "lstm":
            match = match and np.array_equal(run.c, final[1])
        fm, source, res, report, note = None, "", None, None, ""
        if fmax is not None and gates in fmax:
            fm, source = float(fmax[gates]), "given (--fmax)"
        elif synth is not None:
            echo(f"  FPGA {gates} gates: synthesis and place and route on {device} ...")
            fm, source, res, report, note = synth(gates, verilog)
        fpga.append(FpgaResult(gates, lanes, steps, int(run.cycles), int(model), int(setup),
                               bool(match), str(verilog), block if gates == "bcr" else None,
                               fm, source, res, report, note))

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


def _band(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else \
        f"{fmt.format(lo)} .. {fmt.format(hi)}"


def serial_cycles(input_size: int, hidden_size: int) -> int:
    """Cycles of an RNN engine's step that no lane count shortens, once the sequence runs:
    loading ``x`` (``I + 1``), the gate product's start and finish (2) and the pipelined
    element-wise stage (``H + ELEMENT_LATENCY``), as :func:`hw.rnn.step_overhead_cycles`
    counts them for every step after the first."""
    from hw.rnn import step_overhead_cycles

    return (step_overhead_cycles(input_size, hidden_size, 2)
            - step_overhead_cycles(input_size, hidden_size, 1))


def format_comparison(cmp: Comparison) -> list[str]:
    """The printed report: the layer, each FPGA engine and ARM kernel, the matching clocks."""
    from mobile.cost import MCA_MODELS

    models = [lbl for lbl, _ in MCA_MODELS]
    shape = f"input {cmp.input_size}, hidden {cmp.hidden_size}"
    scheme = cmp.scheme + (f" {cmp.block[0]}x{cmp.block[1]}" if cmp.block else "")
    lines = [f"layer {cmp.layer}: {cmp.op}, {shape}, {scheme}, density {cmp.density:.3f}, "
             f"{cmp.weight_bits}-bit weights; {cmp.steps} step{'s' if cmp.steps != 1 else ''} "
             "from a zero state, the same "
             "integer step on both sides"]
    lanes = cmp.fpga[0].lanes if cmp.fpga else 0
    lines.append(f"FPGA ({cmp.device or 'no part'}, {lanes} lanes; every h"
                 + (" and the final c" if cmp.op == "lstm" else "")
                 + " of the RTL checked against ir.golden, cycles against the cycle model):")
    dense_us = next((f.us_per_step for f in cmp.fpga if f.gates == "dense"), None)
    dense_cyc = next((f.cycles_per_step for f in cmp.fpga if f.gates == "dense"), None)
    for f in cmp.fpga:
        check = ("RTL == golden" if f.outputs_match else "RTL DIFFERS from golden") + ", " + (
            "cycles == model" if f.cycles_match else f"cycles {f.rtl_cycles} != model "
            f"{f.model_cycles}")
        line = f"  {f.name}: {check}; {f.cycles_per_step:,.0f} cycles/step"
        if f.setup_cycles:
            line += f" (+{f.setup_cycles} once)"
        if f.us_per_step is not None:
            line += (f" at {f.fmax_mhz:.2f} MHz ({f.fmax_source}) = {f.us_per_step:,.2f} "
                     "us/step")
            if f.gates != "dense" and dense_us:
                line += f", {dense_us / f.us_per_step:.2f}x the dense gates' speed"
        else:
            line += f"; no time: {f.note or 'not placed'}"
            if f.gates != "dense" and dense_cyc:
                line += f" ({dense_cyc / f.cycles_per_step:.2f}x fewer cycles than dense gates)"
        lines.append(line)
    serial = serial_cycles(cmp.input_size, cmp.hidden_size)
    lines.append(f"  of each step, {serial:,} cycles are the input load and the element-wise "
                 f"pipeline, which no lane count shortens")
    lines.append(f"ARM (aarch64 int8 kernels under qemu; cycles modelled by llvm-mca, "
                 f"{' .. '.join(models)}: a band, not phone time):")
    dense_arm = next((a for a in cmp.arm if a.matvec == "dense"), None)
    for a in cmp.arm:
        check = ("golden PASS" if a.check_ok else "golden FAIL") + ", " + (
            "sequence == RTL" if a.sequence_match else "sequence DIFFERS from RTL")
        line = (f"  {a.name}: {check}; {a.instructions:,} instructions, "
                f"{_band([a.cycles[m] for m in models])} cycles/step")
        if dense_arm is not None and a is not dense_arm:
            line += (", " + _band([dense_arm.cycles[m] / a.cycles[m] for m in models],
                                  "{:.2f}") + "x the dense kernel's speed")
        lines.append(line)
    timed = [f for f in cmp.fpga if f.us_per_step]
    if timed and cmp.arm:
        lines.append("ARM clock at which an ARM kernel takes the FPGA engine's time per step "
                     "(modelled ARM cycles / FPGA us; an ARM core clocked above it is faster):")
        for f in timed:
            for a in cmp.arm:
                mhz = matching_mhz(a, f)
                lines.append(f"  FPGA {f.name} ({f.us_per_step:,.2f} us) vs ARM {a.name}: "
                             f"{_band([mhz[m] for m in models])} MHz")
    return lines


def comparison_rows(cmp: Comparison) -> list[dict[str, Any]]:
    """One flat row per implementation (FPGA engines, then ARM kernels), for CSV."""
    from mobile.cost import MCA_MODELS

    common = {"layer": cmp.layer, "op": cmp.op, "input": cmp.input_size,
              "hidden": cmp.hidden_size, "scheme": cmp.scheme, "density": round(cmp.density, 4),
              "steps": cmp.steps}
    rows = []
    for f in cmp.fpga:
        rows.append({**common, "platform": "fpga", "implementation": f.name,
                     "device": cmp.device, "lanes": f.lanes,
                     "check": f.outputs_match and f.cycles_match,
                     "cycles_per_step": f.cycles_per_step, "setup_cycles": f.setup_cycles,
                     "serial_cycles": serial_cycles(cmp.input_size, cmp.hidden_size),
                     "fmax_mhz": f.fmax_mhz, "us_per_step": f.us_per_step,
                     "luts": (f.resources or {}).get("luts"),
                     "brams": (f.resources or {}).get("brams"),
                     "dsps": (f.resources or {}).get("dsps"), "note": f.note})
    for a in cmp.arm:
        row = {**common, "platform": "arm", "implementation": a.name, "check": a.ok,
               "instructions": a.instructions}
        for lbl, _ in MCA_MODELS:
            row[f"cycles_{lbl}"] = a.cycles[lbl]
        for f in cmp.fpga:
            if f.us_per_step:
                for lbl, v in matching_mhz(a, f).items():
                    row[f"match_mhz_{f.gates}_{lbl}"] = round(v, 3)
        rows.append(row)
    return rows


#: Integer columns of :func:`comparison_rows` (blank in the other platform's rows).
_INT_COLUMNS = ("input", "hidden", "steps", "lanes", "setup_cycles", "serial_cycles",
                "instructions")


def comparison_frame(cmp: Comparison):
    """:func:`comparison_rows` as a pandas DataFrame, integer columns as nullable integers
    (the ARM rows leave the FPGA columns blank, which made them floats: ``lanes 4.0``)."""
    import pandas as pd

    df = pd.DataFrame(comparison_rows(cmp))
    for col in _INT_COLUMNS:
        if col in df:
            df[col] = df[col].astype("Int64")
    return df
