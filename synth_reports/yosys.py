"""Yosys synthesis for iCE40 (``synth_ice40 -dsp``), ECP5 (``synth_ecp5``) and Xilinx 7-series
(``synth_xilinx``), and the parser of ``stat -json`` that turns cells into LUT/FF/BRAM/DSP counts.

The 7-series figures are Yosys's own mapping, with no vendor tool: estimates, labelled so.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synth_reports.tools import SynthError, run_tool

__all__ = ["TARGETS", "Resources", "parse_stat", "yosys_script", "synthesize"]

#: target -> (Yosys synthesis command, what the figures are)
TARGETS = {
    "ice40": ("synth_ice40", "iCE40 cells after Yosys synth_ice40 (-dsp on parts with SB_MAC16)"),
    # LUTs by the classic ABC (see yosys_script): under the WebAssembly Yosys, ABC9 dies on some
    # engines that use LUT-RAM (it asks the host for 24 TB and exits 1 with no message)
    "ecp5": ("synth_ecp5", "ECP5 cells after Yosys synth_ecp5, LUTs mapped by abc -lut 4"),
    # -flatten as synth_ice40 and synth_ecp5 do by default: the figures are the whole engine's,
    # and a submodule (the RNN cell's gate engine) does not count its ports into the design's
    "xc7": ("synth_xilinx -family xc7 -flatten", "Xilinx 7-series cells after Yosys "
                                                 "synth_xilinx (Yosys estimate, no vendor tool)"),
}

# Cell types by resource. A BRAM counts in 4 Kbit blocks on iCE40 and 36 Kbit blocks on xc7
# (a RAMB18E1 is half of one).
_ICE40 = {
    "lut": {"SB_LUT4": 1},
    "carry": {"SB_CARRY": 1},
    "bram": {"SB_RAM40_4K": 1, "SB_RAM40_4KNR": 1, "SB_RAM40_4KNW": 1, "SB_RAM40_4KNRNW": 1},
    "spram": {"SB_SPRAM256KA": 1},
    "dsp": {"SB_MAC16": 1},
}
_ECP5 = {
    "lut": {"LUT4": 1},
    "carry": {"CCU2C": 1},
    "bram": {"DP16KD": 1, "PDPW16KD": 1},
    "lutram": {"TRELLIS_DPR16X4": 1},
    "dsp": {"MULT18X18D": 1, "ALU54B": 1},
    "mux": {"PFUMX": 1, "L6MUX21": 1},
}
_XC7 = {
    "lut": {f"LUT{i}": 1 for i in range(1, 7)} | {"INV": 1},
    "carry": {"CARRY4": 1},
    "bram": {"RAMB36E1": 1, "RAMB18E1": 0.5},
    "lutram": {name: 1 for name in ("RAM32M", "RAM64M", "RAM32X1D", "RAM64X1D", "RAM128X1D",
                                    "RAM32X1S", "RAM64X1S", "RAM128X1S", "RAM256X1S",
                                    "SRL16E", "SRLC32E")},
    "dsp": {"DSP48E1": 1},
    "mux": {"MUXF7": 1, "MUXF8": 1},
}
_NEUTRAL = {"$scopeinfo", "SB_GB", "SB_IO", "IBUF", "OBUF", "BUFG", "IOBUF", "OBUFT"}


@dataclass(frozen=True)
class Resources:
    """Cells of one synthesised design, by resource.

    Attributes
    ----------
    target : str
        ``"ice40"``, ``"ecp5"`` or ``"xc7"``.
    luts, ffs, carries, dsps : int
        Logic cells (``SB_LUT4``; ``LUT4``; ``LUT1``-``LUT6`` and ``INV``), flip-flops (every
        ``SB_DFF*``/``TRELLIS_FF``/``FD*`` cell), carry cells (``SB_CARRY``; ``CCU2C``, two
        LUT4s each; ``CARRY4``) and multipliers (``SB_MAC16``; ``MULT18X18D``; ``DSP48E1``).
    brams : float
        Block RAMs: 4 Kbit ``SB_RAM40_4K`` on iCE40, 18 Kbit ``DP16KD`` on ECP5, 36 Kbit on xc7
        (a ``RAMB18E1`` is 0.5).
    lutram : int
        Distributed-RAM cells: ECP5 ``TRELLIS_DPR16X4``, xc7 LUT-RAM and shift-register cells
        (0 on iCE40).
    spram : int
        iCE40UP ``SB_SPRAM256KA`` (0 elsewhere).
    cells : dict of str to int
        Every cell type and its count, as Yosys's ``stat`` gave them (sorted by name).
    """

    target: str
    luts: int
    ffs: int
    carries: int
    brams: float
    dsps: int
    lutram: int = 0
    spram: int = 0
    cells: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def parse_stat(stat: dict[str, Any], target: str) -> Resources:
    """Resources of the design in a Yosys ``stat -json`` report.

    Parameters
    ----------
    stat : dict
        The parsed report; its ``design`` entry (the whole hierarchy) is read, or the only module
        when there is no ``design`` entry.
    target : str
        A key of :data:`TARGETS`: which cell library the design was mapped to.

    Raises
    ------
    ValueError
        Unknown target, a report without cell counts, or a cell Yosys left unmapped (a ``$``
        cell): the design was not fully synthesised.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown synthesis target {target!r}; known: {', '.join(TARGETS)}")
    design = stat.get("design")
    if design is None:
        modules = stat.get("modules") or {}
        if len(modules) != 1:
            raise ValueError("the stat report has no 'design' entry and not exactly one module")
        design = next(iter(modules.values()))
    cells = design.get("num_cells_by_type")
    if not isinstance(cells, dict):
        raise ValueError("the stat report has no 'num_cells_by_type'")
    cells = {str(k): int(v) for k, v in sorted(cells.items())}
    unmapped = [k for k in cells if k.startswith("$") and k not in _NEUTRAL]
    if unmapped:
        raise ValueError(f"Yosys left cells unmapped: {', '.join(unmapped)}")
    table = {"ice40": _ICE40, "ecp5": _ECP5, "xc7": _XC7}[target]

    def count(kind: str) -> float:
        return sum(n * table.get(kind, {}).get(k, 0) for k, n in cells.items())

    ffs = sum(n for k, n in cells.items() if k.startswith(("SB_DFF", "FD", "TRELLIS_FF")))
    brams = count("bram")
    return Resources(target=target, luts=int(count("lut")), ffs=ffs, carries=int(count("carry")),
                     brams=int(brams) if float(brams).is_integer() else brams,
                     dsps=int(count("dsp")), lutram=int(count("lutram")),
                     spram=int(count("spram")), cells=cells)


def yosys_script(sources: list[str], top: str, target: str, netlist: str | None,
                 stat: str, *, dsp: bool = True) -> str:
    """The Yosys script that reads ``sources``, synthesises ``top`` for ``target``, writes the
    JSON netlist to ``netlist`` (when given) and the ``stat -json`` report to ``stat``.

    ``dsp`` (iCE40) maps multipliers to SB_MAC16 (``synth_ice40 -dsp``); without it they
    become LUTs, as on parts with no SB_MAC16 (HX8K). ECP5 and xc7 always use their
    multipliers. On ECP5 the LUTs are mapped by ``abc -lut 4`` between the two halves of
    ``synth_ecp5`` instead of its ``abc9`` (which dies under the WebAssembly Yosys on engines
    with LUT-RAM)."""
    if target not in TARGETS:
        raise ValueError(f"unknown synthesis target {target!r}; known: {', '.join(TARGETS)}")
    reads = "\n".join(f"read_verilog {s}" for s in sources)
    out = f" -json {netlist}" if netlist else ""
    cmd = TARGETS[target][0] + (" -dsp" if dsp and target == "ice40" else "")
    if target == "ecp5":      # synth_ecp5 with its map_luts step (abc9) done by the classic abc
        return (f"{reads}\n{cmd} -top {top} -run :map_luts\nabc -lut 4 -dress\nclean\n"
                f"{cmd} -top {top} -run map_cells:{out}\ntee -q -o {stat} stat -json\n")
    return (f"{reads}\n{cmd} -top {top}{out}\n"
            f"tee -q -o {stat} stat -json\n")


def synthesize(sources: list[Path], top: str, target: str, workdir: Path, *,
               netlist: bool = False, dsp: bool = True, tag: str = "synth"
               ) -> tuple[Resources, Path | None]:
    """Synthesise ``top`` from ``sources`` with Yosys in ``workdir``.

    Parameters
    ----------
    sources : list of Path
        Verilog files (copied into ``workdir`` if they are elsewhere).
    top : str
        Top module.
    target : str
        A key of :data:`TARGETS`.
    workdir : Path
        Existing folder for the script, log (``<tag>.yosys.log``), report and netlist.
    netlist : bool
        Also write the JSON netlist ``<tag>.netlist.json`` (for nextpnr).
    dsp : bool
        iCE40: map multipliers to SB_MAC16 (see :func:`yosys_script`).
    tag : str
        File-name prefix in ``workdir``.

    Returns
    -------
    (Resources, Path or None)
        The design's resources and the netlist's path (None unless ``netlist``).

    Raises
    ------
    SynthError
        Yosys is missing or failed (the message has its ERROR lines and the log's path).
    """
    names = []
    for src in sources:
        src = Path(src)
        local = workdir / src.name
        if src.resolve() != local.resolve():
            local.write_bytes(src.read_bytes())
        names.append(src.name)
    stat_name = f"{tag}.stat.json"
    net_name = f"{tag}.netlist.json" if netlist else None
    script = workdir / f"{tag}.ys"
    script.write_text(yosys_script(names, top, target, net_name, stat_name, dsp=dsp), encoding="utf-8")
    run_tool("yosys", ["-s", script.name], workdir, workdir / f"{tag}.yosys.log")
    try:
        stat = json.loads((workdir / stat_name).read_text(encoding="utf-8"))
        res = parse_stat(stat, target)
    except (OSError, ValueError) as exc:
        raise SynthError(f"cannot read Yosys's report {workdir / stat_name}: {exc}") from None
    return res, (workdir / net_name if net_name else None)
