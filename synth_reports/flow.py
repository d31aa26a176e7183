"""An emitted engine (``<name>.v`` + its JSON sidecar) in, resources and Fmax out.

:func:`synth_engine` synthesises the engine alone for its resources, then (on an iCE40 or ECP5
part) wraps it in
the harness of :mod:`synth_reports.harness`, synthesises that and places and routes it once per
seed for the Fmax; :func:`save_report` writes the result as JSON. Cycle counts from ``sim``
become time with :func:`cycles_to_us`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw.emit import write_atomic
from synth_reports.harness import harness_name, harness_verilog
from synth_reports.pnr import DEVICES, ROUTERS, PnrResult, fit_problem, place_and_route
from synth_reports.tools import TIMEOUT_S, SynthError, ToolTimeout, tool_version
from synth_reports.yosys import Resources, synthesize

__all__ = ["DoesNotFit", "SynthReport", "seed_words", "read_sidecar", "synth_engine", "save_report",
           "cycles_to_us", "read_fmax", "TARGET_DEVICES", "REPORT_VERSION", "MAX_SEEDS"]

#: Every ``device`` :func:`synth_engine` takes: the iCE40 and ECP5 parts it places and routes on,
#: and
#: ``xc7`` (Yosys's 7-series mapping only: resources, no Fmax).
TARGET_DEVICES = (*DEVICES, "xc7")
#: Version of the JSON report layout.
REPORT_VERSION = 1
#: Most placement seeds one call runs.
MAX_SEEDS = 20


class DoesNotFit(SynthError):
    """The engine needs more of a resource than the device has."""


@dataclass(frozen=True)
class SynthReport:
    """Resources and Fmax of one engine on one device.

    Attributes
    ----------
    toplevel : str
        The engine's module.
    verilog_sha256 : str
        SHA-256 of the Verilog synthesised.
    parameters : dict
        The engine's build parameters, from its sidecar.
    device : str
        A key of :data:`TARGET_DEVICES`.
    resources : Resources
        The engine alone.
    harness : Resources or None
        The engine inside the place-and-route harness (None for ``xc7``).
    runs : tuple of PnrResult
        One nextpnr run per seed that finished (empty for ``xc7``).
    timed_out : tuple of int
        The seeds whose nextpnr run passed the time limit and was stopped; the Fmax is over the
        others.
    pnr_timeout_s : float or None
        That time limit, in seconds (None for ``xc7``).
    tools : dict of str to str
        Tool versions used.
    """

    toplevel: str
    verilog_sha256: str
    parameters: dict[str, Any]
    device: str
    resources: Resources
    harness: Resources | None = None
    runs: tuple[PnrResult, ...] = ()
    tools: dict[str, str] = field(default_factory=dict)
    timed_out: tuple[int, ...] = ()
    pnr_timeout_s: float | None = None

    @property
    def fmax_mhz(self) -> float | None:
        """The median achieved Fmax over the seeds, or None when nothing was placed."""
        if not self.runs:
            return None
        return float(statistics.median(r.fmax_mhz for r in self.runs))

    def seed_text(self) -> str:
        """Which seeds the Fmax is of, for a table's note: ``"seed 1"``, ``"median of seeds
        1-3"``, ``"median of seeds 2-3; seed 1 stopped after 1800 s"`` ("" for ``xc7``)."""
        if not self.runs:
            return ""
        placed = [r.seed for r in self.runs]
        text = seed_words(placed) if len(placed) == 1 else f"median of {seed_words(placed)}"
        if self.timed_out:
            text += f"; {seed_words(self.timed_out)} stopped after {self.pnr_timeout_s:g} s"
        return text

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, with the Fmax summary."""
        fmaxes = [r.fmax_mhz for r in self.runs]
        return {
            "report_version": REPORT_VERSION,
            "toplevel": self.toplevel,
            "verilog_sha256": self.verilog_sha256,
            "parameters": self.parameters,
            "device": self.device,
            "part": DEVICES[self.device].part if self.device in DEVICES else "xc7 (Yosys estimate)",
            "resources": self.resources.as_dict(),
            "harness": self.harness.as_dict() if self.harness else None,
            "runs": [r.as_dict() for r in self.runs],
            "timed_out_seeds": list(self.timed_out),
            "pnr_timeout_s": self.pnr_timeout_s,
            "fmax_mhz": {"median": self.fmax_mhz, "min": min(fmaxes), "max": max(fmaxes)}
            if fmaxes else None,
            "tools": self.tools,
        }


def seed_words(seeds: Sequence[int]) -> str:
    """``"seed 4"``, ``"seeds 1-3"`` (consecutive), ``"seeds 1, 3"``."""
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def read_sidecar(verilog: str | os.PathLike) -> tuple[bytes, dict[str, Any]]:
    """The Verilog bytes and the sidecar (``<stem>.json`` beside it) that describes them.

    Raises
    ------
    ValueError
        A missing or unreadable file, a sidecar without the entries synthesis needs (a
        ``toplevel`` that is a Verilog identifier, ``ports`` and ``clock_reset_ports`` of
        ``{name, direction, width}``), or one whose ``verilog_sha256`` is not that of the ``.v``
        (the two were written apart).
    """
    path = Path(verilog)
    if path.suffix != ".v":
        raise ValueError(f"{path} is not a .v file (give the Verilog that `codesign verilog` "
                         "wrote)")
    side = path.with_suffix(".json")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {side}, the sidecar of {path.name} (`codesign verilog` "
                         f"writes both): {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{side} is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{side} is not a sidecar (a JSON object)")
    missing = [k for k in ("toplevel", "ports", "clock_reset_ports", "verilog_sha256")
               if k not in meta]
    if missing:
        raise ValueError(f"{side} is not an engine sidecar: no {', '.join(missing)}")
    if hashlib.sha256(text).hexdigest() != meta["verilog_sha256"]:
        raise ValueError(f"{side} describes another {path.name} (its SHA-256 differs); emit "
                         "both again with `codesign verilog`")
    problem = _sidecar_problem(meta)
    if problem:
        raise ValueError(f"{side}: {problem}")
    return text, meta


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _sidecar_problem(meta: dict[str, Any]) -> str | None:
    """Why the sidecar's toplevel and ports cannot drive the harness, or None."""
    top = meta["toplevel"]
    if not isinstance(top, str) or not _IDENTIFIER.fullmatch(top):
        return f"toplevel must be a Verilog identifier (letters, digits, _), not {top!r}"
    names = set()
    for key in ("ports", "clock_reset_ports"):
        ports = meta[key]
        if not isinstance(ports, list):
            return f"{key} must be a list of ports, not {type(ports).__name__}"
        for p in ports:
            ok = (isinstance(p, dict) and isinstance(p.get("name"), str)
                  and _IDENTIFIER.fullmatch(p["name"])
                  and p.get("direction") in ("input", "output", "inout")
                  and isinstance(p.get("width"), int) and not isinstance(p["width"], bool)
                  and p["width"] >= 1)
            if not ok:
                return (f"each entry of {key} must be {{name: identifier, direction: "
                        f"input|output|inout, width: integer >= 1}}, not {p!r}")
            if key == "ports":
                names.add(p["name"])
    missing = [p["name"] for p in meta["clock_reset_ports"] if p["name"] not in names]
    if missing:
        return f"clock_reset_ports names {', '.join(missing)}, which ports does not list"
    return None


def _port_problem(stat_path: Path, meta: dict[str, Any]) -> str | None:
    """Whether the synthesised engine has the sidecar's ports (count and total bits).

    The counts are the top-level module's (``meta["toplevel"]``) where the report lists it:
    a flow that keeps the hierarchy (``synth_xilinx``) sums every module's ports in its
    ``design`` entry."""
    try:
        stat = json.loads(stat_path.read_text("utf-8"))
        design = (stat.get("modules") or {}).get("\\" + str(meta["toplevel"]), stat["design"])
        ports, bits = int(design["num_ports"]), int(design["num_port_bits"])
    except (OSError, ValueError, KeyError, TypeError):
        return None                      # an older Yosys without these counts: not checked
    want = (len(meta["ports"]), sum(p["width"] for p in meta["ports"]))
    if (ports, bits) != want:
        return (f"the Verilog has {ports} ports of {bits} bits in all, the sidecar lists "
                f"{want[0]} of {want[1]}")
    return None


def _seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in seeds)
    if not out or len(out) > MAX_SEEDS or any(s < 0 for s in out) or len(set(out)) != len(out):
        raise ValueError(f"give 1 to {MAX_SEEDS} distinct seeds of 0 or more, not {list(seeds)}")
    return out


def synth_engine(verilog: str | os.PathLike, device: str, workdir: str | os.PathLike, *,
                 target_mhz: float = 48.0, seeds: Sequence[int] = (1,),
                 router: str = "router1", pnr_timeout_s: float = TIMEOUT_S) -> SynthReport:
    """Synthesise an emitted engine for ``device``; on an iCE40 or ECP5 part also place and
    route it.

    Parameters
    ----------
    verilog : path
        The ``.v`` written by :func:`hw.emit.emit_verilog`; its sidecar must sit beside it.
    device : str
        A key of :data:`synth_reports.pnr.DEVICES` (Yosys, then nextpnr-ice40 or
        nextpnr-ecp5), or ``xc7`` (Yosys only).
    workdir : path
        An existing, empty folder for the scripts, logs, reports and netlists.
    target_mhz : float
        nextpnr's ``--freq``.
    seeds : sequence of int
        Placement seeds, one nextpnr run each.
    router : str
        nextpnr's router, one of :data:`synth_reports.pnr.ROUTERS`.
    pnr_timeout_s : float
        Time limit of one nextpnr run, in seconds. A seed that passes it is stopped and listed
        in the report's ``timed_out``, and the next seed runs: how long the router searches
        depends on the seed, so one seed stuck does not stop the others.

    Raises
    ------
    ValueError
        Bad arguments or sidecar (see :func:`read_sidecar`).
    DoesNotFit
        The engine, or the engine in its harness, needs more than the device has.
    ToolTimeout
        Every seed's nextpnr run passed ``pnr_timeout_s``.
    SynthError
        A tool is missing or failed.
    """
    if device not in TARGET_DEVICES:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(TARGET_DEVICES)}")
    if not target_mhz > 0 or target_mhz > 1000:
        raise ValueError(f"the target frequency must be above 0 and at most 1000 MHz, not "
                         f"{target_mhz!r}")
    seed_list = _seeds(seeds)
    if not (pnr_timeout_s > 0 and math.isfinite(pnr_timeout_s)):
        raise ValueError(f"the place-and-route time limit must be a positive number of seconds, "
                         f"not {pnr_timeout_s!r}")
    if router not in ROUTERS:
        raise ValueError(f"unknown router {router!r}; known: {', '.join(ROUTERS)}")
    text, meta = read_sidecar(verilog)
    work = Path(workdir)
    top = str(meta["toplevel"])
    dev = DEVICES.get(device)
    target = dev.family if dev else "xc7"
    dsp = dev.has_dsp if dev else True
    tools = {"yosys": tool_version("yosys")}
    src = work / f"{top}.v"
    src.write_bytes(text)
    engine, _ = synthesize([src], top, target, work, dsp=dsp, tag="engine")
    problem = _port_problem(work / "engine.stat.json", meta)
    if problem:
        raise ValueError(f"the sidecar of {Path(verilog).name} does not describe its ports: "
                         f"{problem}")
    common = {"toplevel": top, "verilog_sha256": meta["verilog_sha256"],
              "parameters": dict(meta.get("parameters") or {}), "device": device,
              "resources": engine, "tools": tools}
    if dev is None:
        return SynthReport(**common)
    problem = fit_problem(engine, dev)
    if problem:
        raise DoesNotFit(f"{top} {problem}")
    hname = harness_name(top)
    (work / f"{hname}.v").write_text(harness_verilog(top, meta["ports"],
                                                     meta["clock_reset_ports"]), "utf-8")
    harness, netlist = synthesize([src, work / f"{hname}.v"], hname, target, work, dsp=dsp,
                                  netlist=True, tag="harness")
    resized = [ln.strip() for ln in (work / "harness.yosys.log").read_text(
        "utf-8", errors="replace").splitlines() if "Resizing cell port" in ln]
    if resized:
        raise ValueError(f"the sidecar of {Path(verilog).name} does not describe its ports: "
                         f"Yosys had to resize the harness's connections ({resized[0]})")
    problem = fit_problem(harness, dev)
    if problem:
        raise DoesNotFit(f"{top} in its place-and-route harness {problem}")
    tools[f"nextpnr-{dev.family}"] = tool_version(f"nextpnr-{dev.family}")
    runs, stopped = [], []
    for s in seed_list:
        try:
            runs.append(place_and_route(netlist, device, work, target_mhz=target_mhz, seed=s,
                                        tag=f"pnr_seed{s}", router=router,
                                        timeout_s=pnr_timeout_s))
        except ToolTimeout:
            stopped.append(s)
    if not runs:
        which = "seed" if len(stopped) == 1 else "seeds"
        raise ToolTimeout(
            f"nextpnr-{dev.family} ({router}) ran longer than {pnr_timeout_s:g} s with {which} "
            f"{', '.join(map(str, stopped))} and was stopped; try other seeds, "
            f"{'router2' if router == 'router1' else 'router1'} or a longer time limit "
            f"(logs: {work / f'pnr_seed{stopped[0]}.nextpnr.log'})")
    return SynthReport(**common, harness=harness, runs=tuple(runs), timed_out=tuple(stopped),
                       pnr_timeout_s=float(pnr_timeout_s))


def save_report(report: SynthReport, path: str | os.PathLike) -> Path:
    """Write ``report`` as sorted, indented JSON, atomically; returns the path."""
    out = Path(path)
    write_atomic(out, json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n")
    return out


def cycles_to_us(cycles: int, fmax_mhz: float) -> float:
    """Time of ``cycles`` clock cycles at ``fmax_mhz``, in microseconds."""
    if not fmax_mhz > 0:
        raise ValueError(f"Fmax must be positive, not {fmax_mhz!r} MHz")
    if cycles < 0:
        raise ValueError(f"cycles must be 0 or more, not {cycles}")
    return cycles / fmax_mhz


def read_fmax(path: str | os.PathLike) -> tuple[float, dict[str, Any]]:
    """The median Fmax (MHz) and the engine's build parameters (``engine``, ``lanes``,
    ``weight_bits``, ...) of a report :func:`save_report` wrote.

    Raises
    ------
    ValueError
        The file cannot be read, is not such a report, or has no Fmax (an ``xc7`` report).
    """
    p = Path(path)
    try:
        rep = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {p}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p} is not JSON: {exc}") from None
    if not isinstance(rep, dict) or rep.get("report_version") != REPORT_VERSION:
        raise ValueError(f"{p} is not a report of `codesign synth` (report_version "
                         f"{REPORT_VERSION})")
    fmax = rep.get("fmax_mhz")
    if fmax is None:
        raise ValueError(f"{p} has no Fmax: {rep.get('device')} reports give resources only; "
                         "synthesise for an iCE40 or ECP5 part")
    try:
        value = float(fmax["median"])
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"{p} has no readable fmax_mhz.median") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{p} gives Fmax {value!r}, not a positive number of MHz")
    params = rep.get("parameters")
    return value, dict(params) if isinstance(params, dict) else {}
