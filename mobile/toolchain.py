"""Tools the mobile flow needs, checked for ``codesign doctor`` (which installs the Debian ones).

``check_tools`` returns records with the fields of ``sim.toolchain.ToolStatus`` (name,
required, ok, version, detail, install_hint) so that ``doctor`` prints and installs them alike;
``mobile`` does not import ``sim``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["MobileTool", "TOOLS", "check_tools", "missing_tools", "DEBIAN_PACKAGES"]

#: (tool, Debian package, what it is for)
TOOLS = (
    ("gcc", "gcc", "host builds (-march=x86-64-v3)"),
    ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu", "aarch64 cross builds"),
    ("qemu-aarch64", "qemu-user", "aarch64 checks and instruction counts"),
    ("llvm-mca-19", "llvm-19", "modelled aarch64 cycles"),
    ("llvm-mc-19", "llvm-19", "disassembly for llvm-mca"),
    ("aarch64 libc", "libc6-dev-arm64-cross", "static aarch64 links (a recommendation of the "
                                              "cross gcc, not a dependency)"),
)
#: Tools that are files rather than commands on PATH.
_FILES = {"aarch64 libc": "/usr/aarch64-linux-gnu/lib/libc.a"}
#: Debian packages of :data:`TOOLS`.
DEBIAN_PACKAGES = tuple(sorted({pkg for _, pkg, _ in TOOLS}))


@dataclass(frozen=True)
class MobileTool:
    """Whether one tool is usable (the fields of ``sim.toolchain.ToolStatus``)."""

    name: str
    required: bool
    ok: bool
    version: str | None
    detail: str
    install_hint: str


def _find(name: str) -> str | None:
    if name in _FILES:
        return _FILES[name] if os.path.exists(_FILES[name]) else None
    return shutil.which(name)


def _version(exe: str) -> str | None:
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", proc.stdout + proc.stderr)
    return m.group(1) if m else None


def check_tools() -> list[MobileTool]:
    """One record per tool of :data:`TOOLS` (all required); never raises."""
    out = []
    for name, pkg, why in TOOLS:
        exe = _find(name)
        hint = f"apt-get install -y {pkg}"
        if exe is None:
            where = f"{_FILES[name]} not found" if name in _FILES else "not found on PATH"
            out.append(MobileTool(name, True, False, None, f"{where} (needed for {why})", hint))
        else:
            version = "found" if name in _FILES else _version(exe)
            out.append(MobileTool(name, True, True, version, f"{exe} ({why})", hint))
    return out


def missing_tools() -> list[str]:
    """Names of the tools of :data:`TOOLS` that are missing."""
    return [name for name, _, _ in TOOLS if _find(name) is None]
