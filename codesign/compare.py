"""FPGA against a mobile ARM core on one RNN or linear layer: the same integer function on both,
checked.

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

For a linear layer, :func:`compare_linear_layer` does the same with ``vectors`` random int8
input vectors instead of a sequence:

* **the FPGA engines**: the dense engine (:mod:`hw.dense`) always, and the layer's sparse engine
  (:mod:`hw.bcr` for a BCR layer, :mod:`hw.unstructured` for any other sparse scheme), each with
  its memories sized to the layer (:func:`linear_engine_params`), run in RTL (:mod:`sim.dense`,
  :mod:`sim.bcr`, :mod:`sim.unstructured`); every output plus the layer's integer bias (the
  engines have no bias adder) checked against ``ir.golden.linear``, every vector's cycles against
  the engine's cycle model;
* **the ARM kernels**: :func:`mobile.layers.layer_kernels` of the layer (the sparse kernel, CSR
  too for a BCR layer, dense), checked, run on the same vectors (outputs equal to the RTL's plus
  the bias) and costed per vector.

For a conv2d layer, :func:`compare_conv_layer` does the same with ``maps`` random int8 input
feature maps of a given size:

* **the FPGA engines**: a pattern layer's whole convolution on the pattern engine
  (:mod:`hw.pattern`, :mod:`sim.pattern`); any other sparse layer's engine, and the dense
  engine always, on the convolution's im2col products (one matrix-vector product per output
  position, every position in RTL; gathering the windows is not counted); every output plus
  the bias checked against ``ir.golden.conv2d``, every feature map's cycles against the cycle
  model;
* **the ARM kernels**: the pattern kernel of a pattern layer and the dense direct convolution
  (:mod:`mobile.gen_conv`), checked, run on the same feature maps and costed per map.

Every BCR engine above (BCR gates, or a linear or conv2d layer's BCR engine) can be built with
``slices`` independent pipelines of ``lanes`` lanes each (:class:`hw.bcr.BCRMatVec`), each
slice's memories sized for the largest slice's share of the layer; the report line names
them, e.g. ``BCR gates (2 slices x 8 lanes)``.

This module holds the results, their checks and their report; the runners are
:mod:`codesign.compare_rnn`, :mod:`codesign.compare_linear` and :mod:`codesign.compare_conv`
(their public names are re-exported here).

The model's ARM cycles are not phone milliseconds (``shared/TOOLCHAIN.md``), so the comparison
needs no ARM clock: the **matching clock** of an ARM kernel against an FPGA engine is
``ARM cycles per step / FPGA microseconds per step`` (per vector for a linear layer, per
feature map for a conv2d layer) in MHz, a
band over the two models. An ARM core clocked above it is faster than the FPGA engine on this
layer; below it, slower.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["FpgaResult", "ArmResult", "Comparison", "check_compare_layer", "serial_cycles",
           "comparison_frame", "matching_mhz", "format_comparison", "comparison_rows",
           "COMPARED_OPS"]

#: The layer kinds :func:`check_compare_layer` accepts.
COMPARED_OPS = ("lstm", "gru", "linear", "conv2d")

#: Printed names of the matrix engines.
_ENGINE_LABELS = {"dense": "dense", "bcr": "BCR", "unstructured": "unstructured",
                  "pattern": "pattern"}

#: ``synth(engine, verilog) -> (fmax_mhz or None, source, resources or None, report path or
#: None, note)``: the callback that places an engine.
Synth = Callable[[str, Path], tuple[float | None, str, dict | None, str | None, str]]



@dataclass(frozen=True)
class FpgaResult:
    """One FPGA engine on the layer.

    ``gates`` is the engine of the matrix product: ``"dense"`` or ``"bcr"`` (the gates of an RNN
    cell engine), or for a linear layer also ``"unstructured"``. ``unit`` is what one run
    computes: ``"step"`` (an RNN cell step), ``"vector"`` (one matrix-vector product of a
    linear layer) or ``"image"`` (a conv2d layer's whole convolution of one feature map; for
    ``"pattern"``, the pattern engine); ``steps`` counts them. ``rtl_cycles`` is the simulator's count for all of
    them (``model_cycles`` the cycle model's), ``setup_cycles`` the part paid once per sequence
    (the first step's copy of the initial ``h``, and the BCR engine's setup stage; 0 for a
    linear layer). ``fmax_mhz`` is None when the engine was not placed (``note`` says why);
    ``fmax_source`` says where it came from; ``resources`` are the engine's
    (:class:`synth_reports.yosys.Resources` as a dict) when it was synthesised.

    Linear and conv2d layers only: ``cycles_each`` and ``model_each`` are the RTL's and the
    cycle model's cycles of each vector or feature map (the unstructured engine's depend on
    which inputs are zero), and ``serial_cycles`` the cycles of one that no lane count
    shortens (the cycle model with one lane per output row or filter, every input non-zero).
    conv2d layers only: ``multipliers``, the engine's multipliers (``lanes`` on the matrix
    engines, times ``slices`` on a sliced BCR engine, ``lanes`` times the kept weights of a
    pattern on the pattern engine).

    A BCR engine (``gates == "bcr"``, the gates of an RNN layer or a linear or conv2d
    layer's engine) built with several slices has ``slices``, their number (each slice has
    ``lanes`` lanes); None otherwise (one slice, or another engine).
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
    unit: str = "step"
    cycles_each: tuple[int, ...] | None = None
    model_each: tuple[int, ...] | None = None
    serial_cycles: int | None = None
    multipliers: int | None = None
    slices: int | None = None

    @property
    def name(self) -> str:
        """``"BCR gates"``/``"dense gates"`` (RNN), ``"<engine> engine"`` (linear, conv2d)."""
        label = _ENGINE_LABELS.get(self.gates, self.gates)
        return f"{label} gates" if self.unit == "step" else f"{label} engine"

    @property
    def cycles_match(self) -> bool:
        """The RTL's cycles equal the cycle model's, in total and for every vector."""
        return self.rtl_cycles == self.model_cycles and self.cycles_each == self.model_each

    @property
    def cycles_per_unit(self) -> float:
        """Cycles of one step (once the sequence runs) or one vector:
        ``(rtl_cycles - setup) / steps``."""
        return (self.rtl_cycles - self.setup_cycles) / self.steps

    @property
    def us_per_unit(self) -> float | None:
        """Microseconds of one step or vector at ``fmax_mhz``; None when not placed."""
        return None if self.fmax_mhz is None else self.cycles_per_unit / self.fmax_mhz

    #: The RNN names of :attr:`cycles_per_unit` and :attr:`us_per_unit`, kept for callers.
    cycles_per_step = cycles_per_unit
    us_per_step = us_per_unit


@dataclass(frozen=True)
class ArmResult:
    """One aarch64 kernel: ``matvec`` its matrix products (``dense``, ``bcr``, ``csr``),
    ``check`` the golden check's line, ``sequence_match`` whether its outputs on the compared
    inputs (the sequence, or the vectors) equal the RTL's, ``instructions`` and ``cycles`` (per
    llvm-mca model) of one ``unit``: an RNN step kernel's step (``"step"``) or a linear
    kernel's matrix-vector product (``"vector"``) or a convolution kernel's feature map
    (``"image"``)."""

    role: str
    matvec: str
    check_ok: bool
    check: str
    sequence_match: bool
    instructions: int
    cycles: dict[str, float]
    text_bytes: int
    unit: str = "step"

    @property
    def name(self) -> str:
        """``"<matvec> products"`` (an RNN step's gate products) or ``"<matvec> kernel"``."""
        return f"{self.matvec} products" if self.unit == "step" else f"{self.matvec} kernel"

    @property
    def ok(self) -> bool:
        return self.check_ok and self.sequence_match


@dataclass(frozen=True)
class Comparison:
    """Everything :func:`compare_rnn_layer` or :func:`compare_linear_layer` measured on one
    layer. For a linear layer ``input_size`` is its input features, ``hidden_size`` its output
    features and ``steps`` its input vectors; for a conv2d layer its input and output channels
    and its input feature maps (named so in the JSON and CSV), with ``image`` the input height
    and width, ``kernel``, ``stride`` and ``padding`` (None for other layers)."""

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
    image: tuple[int, int] | None = None
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        """Every check passed: RTL outputs and cycles, ARM golden checks and sequences."""
        return (all(f.outputs_match and f.cycles_match for f in self.fpga)
                and all(a.ok for a in self.arm))

    @property
    def unit(self) -> str:
        """``"step"`` for an lstm/gru layer, ``"vector"`` for a linear one, ``"image"`` (one
        feature map) for a conv2d one."""
        return {"linear": "vector", "conv2d": "image"}.get(self.op, "step")

    def to_json(self) -> dict[str, Any]:
        """Every field, the checks, each engine's time per unit and every matching clock; a
        linear layer's counts and sizes under its own names (``vectors``, ``output_size``,
        ``cycles_per_vector``, ``us_per_vector``)."""
        unit = self.unit
        out = _unit_keys(_without_none(
            {k: v for k, v in asdict(self).items() if k not in ("fpga", "arm")}, _CONV_ONLY),
            unit)
        out["ok"] = self.ok
        out["fpga"] = [_unit_keys({**_without_none(asdict(f), _LINEAR_ONLY + _SLICED_ONLY),
                                   "name": f.name,
                                   "cycles_match": f.cycles_match,
                                   f"cycles_per_{unit}": f.cycles_per_unit,
                                   f"us_per_{unit}": f.us_per_unit}, unit)
                       for f in self.fpga]
        out["arm"] = [{**asdict(a), "name": a.name} for a in self.arm]
        out["matching_mhz"] = [
            {"fpga": f.name, "arm": a.name, **matching_mhz(a, f)}
            for f in self.fpga if f.us_per_unit for a in self.arm]
        return out


#: FpgaResult fields that only linear and conv2d layers fill (left out of the others' JSON).
_LINEAR_ONLY = ("cycles_each", "model_each", "serial_cycles", "multipliers")
#: FpgaResult fields that only a BCR engine with several slices fills (left out otherwise).
_SLICED_ONLY = ("slices",)
#: Comparison fields that only conv2d layers fill (left out of the others' JSON).
_CONV_ONLY = ("image", "kernel", "stride", "padding")


def _without_none(d: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not (k in keys and v is None)}


def _unit_keys(d: dict[str, Any], unit: str) -> dict[str, Any]:
    """``d`` with a linear layer's names (``steps`` -> ``vectors``, ``hidden_size`` ->
    ``output_size``) or a conv2d layer's (``steps`` -> ``maps``, ``input_size`` ->
    ``in_channels``, ``hidden_size`` -> ``out_channels``); unchanged for ``unit == "step"``."""
    if unit == "step":
        return d
    names = ({"steps": "vectors", "hidden_size": "output_size"} if unit == "vector" else
             {"steps": "maps", "input_size": "in_channels", "hidden_size": "out_channels"})
    return {names.get(k, k): v for k, v in d.items()}


def matching_mhz(arm: ArmResult, fpga: FpgaResult) -> dict[str, float]:
    """The ARM clock (MHz) at which ``arm`` takes ``fpga``'s time per step (or vector), per
    llvm-mca model: modelled ARM cycles per step / FPGA microseconds per step."""
    us = fpga.us_per_unit
    if not us:
        what = f"{fpga.name} engine" if fpga.unit == "step" else fpga.name
        raise ValueError(f"the FPGA {what} has no time per {fpga.unit} (no Fmax)")
    return {label: cyc / us for label, cyc in arm.cycles.items()}


def check_compare_layer(layer: Any, lanes: int, *, image: tuple[int, int] | None = None,
                        slices: int = 1) -> None:
    """``ValueError`` naming the layer unless compare can run it.

    ``slices`` (1 to :data:`hw.bcr.MAX_SLICES`) are the BCR engine's; a linear or conv2d
    layer's BCR engine is sized with them.

    Any layer: one of :data:`COMPARED_OPS` with quantized signed weights of at most 8 bits.
    lstm/gru (:func:`compare_rnn_layer`): scales that give an 8-bit fixed-point format,
    ``lanes`` a multiple of 4 (the dense-gated engine's). linear
    (:func:`compare_linear_layer`): its engines (:func:`linear_engines`), sized to it with
    ``lanes`` lanes, within the engines' limits (memory bits, cycle counter). conv2d
    (:func:`compare_conv_layer`, ``image`` its input height and width, default 16x16): groups
    1, the kernel within the padded image, and its engines (:func:`conv_engines`) sized to it
    within their limits (a pattern layer's stride and padding the pattern engine's). Cheap:
    nothing is built or converted.
    """
    from hw.bcr import MAX_SLICES
    from mobile.layers import layer_kernels

    if isinstance(slices, bool) or not isinstance(slices, int) or not 1 <= slices <= MAX_SLICES:
        raise ValueError(f"--slices must be an integer between 1 and {MAX_SLICES}, not "
                         f"{slices!r}")
    if layer.op not in COMPARED_OPS:
        raise ValueError(f"layer {layer.name!r} is {layer.op}; compare runs "
                         f"{', '.join(COMPARED_OPS[:-1])} and {COMPARED_OPS[-1]} layers")
    unit = {"linear": "product", "conv2d": "convolution"}.get(layer.op, "step")
    q = layer.quant
    if q is None or q.bits > 8 or not q.signed:
        why = ("has no quantized weights" if q is None else f"has {q.bits}-bit weights"
               if q.bits > 8 else "has unsigned weights")
        raise ValueError(f"layer {layer.name!r} {why}; compare runs the int8 {unit} on both "
                         "sides and needs signed weights of at most 8 bits (prune with --bits)")
    rnn = layer.op in ("lstm", "gru")
    if rnn and (lanes < 4 or lanes % 4):
        raise ValueError(f"--lanes must be a positive multiple of 4 (the dense-gated engine's "
                         f"gate rows), not {lanes}")
    image = (16, 16) if image is None else (int(image[0]), int(image[1]))
    try:
        layer_kernels(layer, "int8", image)     # the fixed-point format exists, the image fits
    except ValueError as exc:               # its hint names an option compare does not have
        msg = str(exc)
        if msg.endswith("; use --dtype fp32"):
            msg = msg.removesuffix("; use --dtype fp32") + f"; compare runs the int8 {unit} only"
        raise ValueError(msg) from None
    if layer.op == "linear":
        from codesign.compare_linear import _linear_engine_problem, linear_engines

        for engine in linear_engines(layer):
            problem = _linear_engine_problem(layer, engine, lanes, slices)
            if problem is not None:
                raise ValueError(f"layer {layer.name!r} ({layer.shape.out_features}x"
                                 f"{layer.shape.in_features}) does not fit the "
                                 f"{_ENGINE_LABELS[engine]} engine with {lanes} lanes: "
                                 f"{problem}")
    elif layer.op == "conv2d":
        from codesign.compare_conv import conv_engine_problem, conv_engines

        shp = layer.shape
        for engine in conv_engines(layer):
            problem = conv_engine_problem(layer, engine, lanes, image, slices)
            if problem is not None:
                raise ValueError(f"layer {layer.name!r} ({shp.out_channels}x"
                                 f"{shp.in_channels}x{shp.kernel[0]}x{shp.kernel[1]} on "
                                 f"{image[0]}x{image[1]}) does not fit the "
                                 f"{_ENGINE_LABELS[engine]} engine with {lanes} lanes: "
                                 f"{problem}")


def _check_fmax(fmax: dict[str, float] | None, what: str) -> None:
    """``ValueError`` unless every given Fmax is a positive finite number of MHz; ``what`` is
    the engine's description with ``{}`` for its key."""
    for engine, mhz in (fmax or {}).items():
        if not (isinstance(mhz, int | float) and math.isfinite(mhz) and mhz > 0):
            raise ValueError(f"Fmax of the {what.format(engine)} must be a positive finite "
                             f"number of MHz, not {mhz!r}")


def _given_fmax(fmax: dict[str, float] | None, engine: str) -> float | None:
    """The given Fmax of ``engine``: its own key, else ``"sparse"`` for any sparse engine."""
    if not fmax:
        return None
    mhz = fmax.get(engine, None if engine == "dense" else fmax.get("sparse"))
    return None if mhz is None else float(mhz)


def _fpga_clock(engine: str, verilog: Path | str, fmax: dict[str, float] | None,
                synth: Synth | None, device: str | None, echo: Callable[[str], None],
                what: str) -> tuple[float | None, str, dict | None, str | None, str]:
    """``(fmax_mhz, source, resources, report, note)`` of one engine: given, or placed by
    ``synth``, or nothing."""
    mhz = _given_fmax(fmax, engine)
    if mhz is not None:
        return mhz, "given (--fmax)", None, None, ""
    if synth is None:
        return None, "", None, None, ""
    echo(f"  {what}: synthesis and place and route on {device} ...")
    return synth(engine, verilog)


def with_clock(result: FpgaResult, fmax: dict[str, float] | None, synth: Synth | None,
               device: str | None, echo: Callable[[str], None]) -> FpgaResult:
    """``result`` (a linear or conv2d layer's engine) with its clock: given, placed by
    ``synth``, or none (:func:`_fpga_clock`)."""
    import dataclasses

    clock = _fpga_clock(result.gates, result.verilog, fmax, synth, device, echo,
                        f"FPGA {result.gates} engine")
    return dataclasses.replace(result, **dict(zip(
        ("fmax_mhz", "fmax_source", "resources", "report", "note"), clock, strict=True)))


def _band(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else \
        f"{fmt.format(lo)} .. {fmt.format(hi)}"


def serial_cycles(input_size: int, hidden_size: int, cell: str = "lstm") -> int:
    """Cycles of an RNN engine's step that no lane count shortens, once the sequence runs:
    loading ``x`` (``I + 1``), the gate product's start and finish (2) and the pipelined
    element-wise stage (``H +`` :func:`hw.rnn.element_latency` of ``cell``), as
    :func:`hw.rnn.step_overhead_cycles` counts them for every step after the first."""
    from hw.rnn import step_overhead_cycles

    return (step_overhead_cycles(input_size, hidden_size, 2, cell)
            - step_overhead_cycles(input_size, hidden_size, 1, cell))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _possessive(name: str) -> str:
    return name + ("'" if name.endswith("s") else "'s")


def _header(cmp: Comparison) -> str:
    scheme = cmp.scheme + (f" {cmp.block[0]}x{cmp.block[1]}" if cmp.block else "")
    if cmp.unit == "step":
        return (f"layer {cmp.layer}: {cmp.op}, input {cmp.input_size}, hidden "
                f"{cmp.hidden_size}, {scheme}, density {cmp.density:.3f}, {cmp.weight_bits}-bit "
                f"weights; {_plural(cmp.steps, 'step')} from a zero state, the same integer step "
                "on both sides")
    if cmp.unit == "image":
        (kh, kw), (sh, sw), (ph, pw) = cmp.kernel, cmp.stride, cmp.padding
        return (f"layer {cmp.layer}: conv2d, {cmp.input_size} -> {cmp.hidden_size} channels, "
                f"{kh}x{kw} kernel, stride {sh}x{sw}, padding {ph}x{pw}, input "
                f"{cmp.image[0]}x{cmp.image[1]}, {scheme}, density {cmp.density:.3f}, "
                f"{cmp.weight_bits}-bit weights; "
                f"{_plural(cmp.steps, 'random int8 input feature map')}, the same integer "
                "convolution (int32 accumulators and bias) on both sides")
    return (f"layer {cmp.layer}: linear, input {cmp.input_size}, output {cmp.hidden_size}, "
            f"{scheme}, density {cmp.density:.3f}, {cmp.weight_bits}-bit weights; "
            f"{_plural(cmp.steps, 'random int8 input vector')}, the same integer product "
            "(int32 accumulators and bias) on both sides")


def _fpga_heading(cmp: Comparison) -> str:
    lanes = cmp.fpga[0].lanes if cmp.fpga else 0
    where = f"FPGA ({cmp.device or 'no part'}, {lanes} lanes; "
    if cmp.unit == "step":
        return (where + "every h" + (" and the final c" if cmp.op == "lstm" else "")
                + " of the RTL checked against ir.golden, cycles against the cycle model):")
    if cmp.unit == "image":
        return (where + "every output of the RTL, plus the bias, checked against ir.golden, "
                "every feature map's cycles from start to done against the cycle model; the "
                "matrix engines run one im2col product per output position, and gathering "
                "the windows, writing x in and reading y out are not counted):")
    return (where + "every output of the RTL, plus the bias, checked against ir.golden, every "
            "vector's cycles from start to done against the cycle model; writing x into the "
            "engine and reading y out are not counted):")


def _fpga_line(f: FpgaResult, dense: FpgaResult | None) -> str:
    check = ("RTL == golden" if f.outputs_match else "RTL DIFFERS from golden") + ", " + (
        "cycles == model" if f.cycles_match else f"cycles {f.rtl_cycles} != model "
        f"{f.model_cycles}" + (f" (per {f.unit} {list(f.cycles_each or ())} != "
                               f"{list(f.model_each or ())})" if f.unit != "step" else ""))
    mults = "" if f.multipliers is None else f" ({f.multipliers} multipliers)"
    sliced = "" if f.slices is None else f" ({f.slices} slices x {f.lanes} lanes)"
    line = f"  {f.name}{sliced}{mults}: {check}; {f.cycles_per_unit:,.0f} cycles/{f.unit}"
    if f.cycles_each and min(f.cycles_each) != max(f.cycles_each):
        line += f" (mean; {min(f.cycles_each):,} .. {max(f.cycles_each):,})"
    if f.setup_cycles:
        line += f" (+{f.setup_cycles} once)"
    sparse = dense is not None and f is not dense
    if f.us_per_unit is not None:
        line += (f" at {f.fmax_mhz:.2f} MHz ({f.fmax_source}) = {f.us_per_unit:,.2f} "
                 f"us/{f.unit}")
        if sparse and dense.us_per_unit:
            line += (f", {dense.us_per_unit / f.us_per_unit:.2f}x the "
                     f"{_possessive(dense.name)} speed")
    else:
        line += f"; no time: {f.note or 'not placed'}"
        if sparse and dense.cycles_per_unit and f.cycles_per_unit:
            line += f" ({dense.cycles_per_unit / f.cycles_per_unit:.2f}x fewer cycles than " \
                    f"{dense.name})"
    return line


def _serial_line(cmp: Comparison) -> str:
    if cmp.unit == "step":
        serial = serial_cycles(cmp.input_size, cmp.hidden_size, cmp.op)
        return (f"  of each step, {serial:,} cycles are the input load and the element-wise "
                "pipeline, which no lane count shortens")
    parts = ", ".join(f"{f.name} {f.serial_cycles:,}" for f in cmp.fpga
                      if f.serial_cycles is not None)
    if cmp.unit == "image":
        return (f"  at unlimited lanes (one per filter; the cycle models, every input "
                f"non-zero) a feature map still takes: {parts} cycles")
    return (f"  at unlimited lanes (one per output row; the cycle models, every input non-zero) "
            f"a vector still takes: {parts} cycles")


def _arm_line(a: ArmResult, dense: ArmResult | None, models: Sequence[str]) -> str:
    what = "sequence" if a.unit == "step" else "outputs"
    differ = "DIFFERS" if a.unit == "step" else "DIFFER"
    check = ("golden PASS" if a.check_ok else "golden FAIL") + ", " + (
        f"{what} == RTL" if a.sequence_match else f"{what} {differ} from RTL")
    line = (f"  {a.name}: {check}; {a.instructions:,} instructions, "
            f"{_band([a.cycles[m] for m in models])} cycles/{a.unit}")
    if dense is not None and a is not dense:
        line += (", " + _band([dense.cycles[m] / a.cycles[m] for m in models], "{:.2f}")
                 + "x the dense kernel's speed")
    return line


def format_comparison(cmp: Comparison) -> list[str]:
    """The printed report: the layer, each FPGA engine and ARM kernel, the matching clocks."""
    from mobile.cost import MCA_MODELS

    models = [lbl for lbl, _ in MCA_MODELS]
    lines = [_header(cmp), _fpga_heading(cmp)]
    dense = next((f for f in cmp.fpga if f.gates == "dense"), None)
    lines += [_fpga_line(f, dense) for f in cmp.fpga]
    lines.append(_serial_line(cmp))
    lines.append(f"ARM (aarch64 int8 kernels under qemu; cycles modelled by llvm-mca, "
                 f"{' .. '.join(models)}: a band, not phone time):")
    dense_arm = next((a for a in cmp.arm if a.matvec == "dense"), None)
    lines += [_arm_line(a, dense_arm, models) for a in cmp.arm]
    timed = [f for f in cmp.fpga if f.us_per_unit]
    if timed and cmp.arm:
        lines.append(f"ARM clock at which an ARM kernel takes the FPGA engine's time per "
                     f"{cmp.unit} (modelled ARM cycles / FPGA us; an ARM core clocked above it "
                     "is faster):")
        for f in timed:
            for a in cmp.arm:
                mhz = matching_mhz(a, f)
                lines.append(f"  FPGA {f.name} ({f.us_per_unit:,.2f} us) vs ARM {a.name}: "
                             f"{_band([mhz[m] for m in models])} MHz")
    return lines


def comparison_rows(cmp: Comparison) -> list[dict[str, Any]]:
    """One flat row per implementation (FPGA engines, then ARM kernels), for CSV; a linear
    layer's columns are named for it (``output``, ``vectors``, ``cycles_per_vector``,
    ``us_per_vector``; ``serial_cycles`` each engine's), a conv2d layer's likewise
    (``output`` channels, ``maps``, ``image``, ``cycles_per_image``, ``us_per_image``)."""
    from mobile.cost import MCA_MODELS

    unit = cmp.unit
    size, count = {"step": ("hidden", "steps"), "vector": ("output", "vectors"),
                   "image": ("output", "maps")}[unit]
    common = {"layer": cmp.layer, "op": cmp.op, "input": cmp.input_size,
              size: cmp.hidden_size, "scheme": cmp.scheme, "density": round(cmp.density, 4),
              count: cmp.steps}
    if cmp.image is not None:
        common["image"] = f"{cmp.image[0]}x{cmp.image[1]}"
    rows = []
    for f in cmp.fpga:
        serial = (f.serial_cycles if f.serial_cycles is not None
                  else serial_cycles(cmp.input_size, cmp.hidden_size, cmp.op))
        rows.append({**common, "platform": "fpga", "implementation": f.name,
                     "device": cmp.device, "lanes": f.lanes,
                     **({} if f.slices is None else {"slices": f.slices}),
                     "check": f.outputs_match and f.cycles_match,
                     f"cycles_per_{unit}": f.cycles_per_unit, "setup_cycles": f.setup_cycles,
                     "serial_cycles": serial,
                     "fmax_mhz": f.fmax_mhz, f"us_per_{unit}": f.us_per_unit,
                     "luts": (f.resources or {}).get("luts"),
                     "brams": (f.resources or {}).get("brams"),
                     "dsps": (f.resources or {}).get("dsps"), "note": f.note})
    for a in cmp.arm:
        row = {**common, "platform": "arm", "implementation": a.name, "check": a.ok,
               "instructions": a.instructions}
        for lbl, _ in MCA_MODELS:
            row[f"cycles_{lbl}"] = a.cycles[lbl]
        for f in cmp.fpga:
            if f.us_per_unit:
                for lbl, v in matching_mhz(a, f).items():
                    row[f"match_mhz_{f.gates}_{lbl}"] = round(v, 3)
        rows.append(row)
    return rows


#: Integer columns of :func:`comparison_rows` (blank in the other platform's rows).
_INT_COLUMNS = ("input", "hidden", "output", "steps", "vectors", "maps", "lanes", "slices",
                "setup_cycles",
                "serial_cycles", "instructions")


def comparison_frame(cmp: Comparison):
    """:func:`comparison_rows` as a pandas DataFrame, integer columns as nullable integers
    (the ARM rows leave the FPGA columns blank, which made them floats: ``lanes 4.0``)."""
    import pandas as pd

    df = pd.DataFrame(comparison_rows(cmp))
    for col in _INT_COLUMNS:
        if col in df:
            df[col] = df[col].astype("Int64")
    return df


#: Public names of the runner modules, re-exported lazily (the runners import this module).
_RUNNERS = {
    "compare_rnn_layer": "codesign.compare_rnn", "bcr_memory_needs": "codesign.compare_rnn",
    "fpga_engines": "codesign.compare_rnn",
    "compare_linear_layer": "codesign.compare_linear",
    "compare_conv_layer": "codesign.compare_conv", "conv_engines": "codesign.compare_conv",
    "linear_engines": "codesign.compare_linear",
    "linear_engine_params": "codesign.compare_linear",
}


def __getattr__(name: str) -> Any:
    if name in _RUNNERS:
        import importlib

        return getattr(importlib.import_module(_RUNNERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
