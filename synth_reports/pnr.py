"""Place and route with nextpnr-ice40 or nextpnr-ecp5, and the parser of their ``--report`` JSON
(Fmax, use).

nextpnr's Fmax depends on its placement seed (and a little on the frequency it aims at): a run
is deterministic for a given netlist, seed and target, and a report says which were used.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synth_reports.tools import TIMEOUT_S, SynthError, run_tool
from synth_reports.yosys import Resources

__all__ = ["DEVICES", "ROUTERS", "Device", "PnrResult", "parse_report", "fit_problem",
           "place_and_route"]

#: nextpnr's routers (``--router``). ``router1``, nextpnr's default, is the flow's: the README's
#: Fmax figures come from it unless they say otherwise. ``router2`` is faster on congested
#: designs, such as the RNN cell engines with BCR gates (each of the four gate ports reads a
#: whole block row of accumulators out of distributed RAM): the trained LSTM's one-slice engine
#: routes in about half router1's time, and the LSTM-128 one, which router1 cannot route in 30
#: minutes, in 11. Where both finish, router2's Fmax is 4-9% lower (README, "Synthesis").
ROUTERS = ("router1", "router2")


@dataclass(frozen=True)
class Device:
    """An FPGA part nextpnr can place on.

    Attributes
    ----------
    name, part : str
        Our name (``up5k``) and the vendor's (``iCE40UP5K``).
    family : str
        ``"ice40"`` or ``"ecp5"``: the Yosys target and the nextpnr that places it.
    flag, package : str
        nextpnr's device flag and the package it places in.
    luts, ffs : int
        Logic capacity: on iCE40 both are the logic cells (a LUT4 and a flip-flop each); on ECP5
        the LUT4s and the flip-flops.
    brams, dsps, sprams : int
        Block RAMs (4 Kbit on iCE40, 18 Kbit on ECP5), multipliers (SB_MAC16, MULT18X18D) and
        iCE40UP SPRAM blocks.
    """

    name: str
    part: str
    family: str
    flag: str
    package: str
    luts: int
    ffs: int
    brams: int
    dsps: int
    sprams: int = 0

    @property
    def has_dsp(self) -> bool:
        """Whether Yosys may map multipliers to the part's multiplier blocks."""
        return self.dsps > 0


#: The parts ``codesign synth`` places on: iCEBreaker's UP5K, the HX8K breakout board's, and the
#: two ECP5 parts of the ULX3S.
DEVICES = {
    "up5k": Device("up5k", "iCE40UP5K", "ice40", "--up5k", "sg48", 5280, 5280, 30, 8, 4),
    "hx8k": Device("hx8k", "iCE40HX8K", "ice40", "--hx8k", "ct256", 7680, 7680, 32, 0, 0),
    "ecp5-25k": Device("ecp5-25k", "LFE5U-25F", "ecp5", "--25k", "CABGA381", 24288, 24288, 56,
                       28),
    "ecp5-85k": Device("ecp5-85k", "LFE5U-85F", "ecp5", "--85k", "CABGA381", 83640, 83640, 208,
                       156),
}


@dataclass(frozen=True)
class PnrResult:
    """One nextpnr run.

    Attributes
    ----------
    device : str
        Key of :data:`DEVICES`.
    seed : int
        Placement seed.
    target_mhz : float
        The frequency nextpnr aimed at (``--freq``).
    fmax_mhz : float
        The achieved Fmax of the design's clock.
    utilization : dict of str to (int, int)
        nextpnr's ``(used, available)`` for each resource it reports (``ICESTORM_LC``,
        ``TRELLIS_COMB``, ...).
    router : str
        nextpnr's router (one of :data:`ROUTERS`).
    """

    device: str
    seed: int
    target_mhz: float
    fmax_mhz: float
    utilization: dict[str, tuple[int, int]] = field(default_factory=dict)
    router: str = "router1"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        d = asdict(self)
        d["utilization"] = {k: list(v) for k, v in self.utilization.items()}
        return d


def parse_report(report: dict[str, Any]) -> tuple[float, float, dict[str, tuple[int, int]]]:
    """``(achieved Fmax, target, utilization)`` from a nextpnr ``--report`` JSON.

    Raises
    ------
    ValueError
        The report has no clock (a design with no register) or more than one clock, or lacks
        the ``fmax``/``utilization`` entries.
    """
    fmax = report.get("fmax")
    if not isinstance(fmax, dict):
        raise ValueError("the nextpnr report has no 'fmax' entry")
    if len(fmax) != 1:
        raise ValueError(f"the nextpnr report has {len(fmax)} clocks; one is expected "
                         f"({', '.join(sorted(fmax)) or 'none'})")
    clock = next(iter(fmax.values()))
    util = report.get("utilization")
    if not isinstance(util, dict):
        raise ValueError("the nextpnr report has no 'utilization' entry")
    used = {str(k): (int(v["used"]), int(v["available"])) for k, v in sorted(util.items())}
    return float(clock["achieved"]), float(clock["constraint"]), used


def fit_problem(res: Resources, device: Device) -> str | None:
    """Why a synthesised design cannot fit ``device``, or None when its cells do not rule it out.

    Checked before place and route, which would otherwise search for minutes. On iCE40 every
    LUT and every flip-flop needs a logic cell (a LUT and a flip-flop may share one, so the
    larger count is a lower bound); on ECP5 a carry cell (CCU2C) is two LUT4s and a
    ``TRELLIS_DPR16X4`` distributed RAM at least four (nextpnr places one 16x4 RAM with its
    read logic in 7), flip-flops are counted apart. Block RAMs, multipliers and SPRAMs are counted exactly.
    """
    if res.target != device.family:
        return f"the design was synthesised for {res.target}, not {device.family}"
    over = []
    if device.family == "ice40":
        lcs = max(res.luts, res.ffs)
        if lcs > device.luts:
            over.append(f"at least {lcs:,} logic cells (LUTs {res.luts:,}, flip-flops "
                        f"{res.ffs:,}) of {device.luts:,}")
    else:
        luts = res.luts + 2 * res.carries + 4 * res.lutram
        if luts > device.luts:
            over.append(f"at least {luts:,} LUT4s (logic {res.luts:,}, carries "
                        f"{res.carries:,} x 2, LUT-RAM {res.lutram:,} x 4) of {device.luts:,}")
        if res.ffs > device.ffs:
            over.append(f"{res.ffs:,} flip-flops of {device.ffs:,}")
    if res.brams > device.brams:
        over.append(f"{res.brams:,} block RAMs of {device.brams}")
    if res.dsps > device.dsps:
        kind = "SB_MAC16" if device.family == "ice40" else "MULT18X18D"
        over.append(f"{res.dsps} {kind} of {device.dsps}")
    if res.spram > device.sprams:
        over.append(f"{res.spram} SPRAM blocks of {device.sprams}")
    if not over:
        return None
    return f"does not fit the {device.part}: it needs " + "; ".join(over)


def place_and_route(netlist: Path, device: str, workdir: Path, *, target_mhz: float = 48.0,
                    seed: int = 1, tag: str = "pnr", router: str = "router1",
                    timeout_s: float = TIMEOUT_S) -> PnrResult:
    """Place and route the JSON ``netlist`` (in ``workdir``) on ``device``; read Fmax and use.

    Pins are placed by nextpnr (no constraint file). A design that misses ``target_mhz`` is not
    an error: its achieved Fmax is what is reported. ``router`` is nextpnr's ``--router`` (one
    of :data:`ROUTERS`). nextpnr is stopped after ``timeout_s`` seconds.

    Raises
    ------
    ToolTimeout
        nextpnr ran past ``timeout_s`` seconds and was stopped.
    SynthError
        nextpnr is missing or failed (for example the design does not fit), or its report cannot
        be read.
    ValueError
        Unknown device or router, a target frequency or time limit that is not positive, or a
        negative seed.
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
    if not target_mhz > 0:
        raise ValueError(f"the target frequency must be positive, not {target_mhz!r} MHz")
    if seed < 0:
        raise ValueError(f"the seed must be 0 or more, not {seed}")
    if not timeout_s > 0:
        raise ValueError(f"the time limit must be positive, not {timeout_s!r} s")
    if router not in ROUTERS:
        raise ValueError(f"unknown router {router!r}; known: {', '.join(ROUTERS)}")
    dev = DEVICES[device]
    report = f"{tag}.report.json"
    args = [dev.flag, "--package", dev.package, "--json", Path(netlist).name,
            "--freq", f"{target_mhz:g}", "--seed", str(seed), "--timing-allow-fail",
            "--router", router, "--report", report, "-q"]
    run_tool(f"nextpnr-{dev.family}", args, workdir, workdir / f"{tag}.nextpnr.log",
             timeout=timeout_s)
    try:
        fmax, target, util = parse_report(json.loads((workdir / report).read_text("utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SynthError(f"cannot read nextpnr's report {workdir / report}: {exc}") from None
    return PnrResult(device=device, seed=seed, target_mhz=target, fmax_mhz=fmax,
                     utilization=util, router=router)
