"""Mobile tool checks and the Debian packages doctor --install adds for them."""

from __future__ import annotations

import mobile.toolchain as mt
from sim.toolchain import missing_debian_packages


def test_every_tool_found_here():
    statuses = mt.check_tools()
    assert [s.name for s in statuses] == [t[0] for t in mt.TOOLS]
    assert all(s.ok and s.required for s in statuses), [s.detail for s in statuses if not s.ok]
    assert mt.missing_tools() == []


def test_missing_tools_become_debian_packages(monkeypatch):
    monkeypatch.setattr(mt.shutil, "which", lambda name: None)
    monkeypatch.setattr(mt.os.path, "exists", lambda path: False)
    statuses = mt.check_tools()
    assert not any(s.ok for s in statuses)
    assert missing_debian_packages(statuses) == ["gcc", "gcc-aarch64-linux-gnu",
                                                 "libc6-dev-arm64-cross", "llvm-19", "qemu-user"]
    s = statuses[2]
    assert s.install_hint == "apt-get install -y qemu-user"
    assert s.detail == "not found on PATH (needed for aarch64 checks and instruction counts)"
