"""Shared pytest fixtures.

Simulator builds are cached on disk (``sim.runner``) under one directory per test session:
``$CODESIGN_SIM_CACHE`` if set, else ``.sim_cache`` in the repository root, so a rerun reuses the
builds of the previous run (a build is keyed by its Verilog, arguments and tool versions, so a
stale build is never reused).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sim_cache_dir(request: pytest.FixtureRequest) -> Path:
    """Cache root for emitted Verilog and simulator builds, shared by every test."""
    env = os.environ.get("CODESIGN_SIM_CACHE")
    path = Path(env) if env else Path(request.config.rootpath) / ".sim_cache"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


@pytest.fixture(scope="session")
def require_simulator():
    """Return a function that fails (not skips) the test when a simulator's tools are missing,
    with the command that installs them."""
    from sim.toolchain import check_tools

    statuses = {s.name: s for s in check_tools()}
    needs = {"verilator": ("verilator", "c++ compiler", "make"), "icarus": ("iverilog",)}

    def require(simulator: str) -> None:
        for name in needs[simulator]:
            s = statuses[name]
            if not s.ok:
                pytest.fail(f"{simulator} tests need {name}: {s.detail}; install with: "
                            f"{s.install_hint} (or run `codesign doctor --install`)")

    return require
