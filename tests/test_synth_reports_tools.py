"""How a failed synthesis tool is reported: its ERROR lines, the step a WebAssembly crash was in,
or its last lines."""

from __future__ import annotations

from synth_reports.tools import failure_detail

CRASH = """2.27. Executing OPT_CLEAN pass (remove unused cells and wires).
Finding unused cells or wires in module \\pattern_matvec..
2.28. Executing MEMORY_LIBMAP pass (mapping memories to cells).
Traceback (most recent call last):
wasmtime._trap.Trap: error while executing at wasm backtrace:
Caused by:
    thrown Wasm exception""".splitlines()


def test_failure_detail():
    assert failure_detail(["a", "ERROR: Module `x' not found!", "b"]) == \
        "ERROR: Module `x' not found!"
    assert failure_detail(CRASH) == ("the tool crashed (a WebAssembly trap) during 'Executing "
                                     "MEMORY_LIBMAP pass (mapping memories to cells).'")
    assert failure_detail(["1. Executing ABC.", "Running ABC command", ""]) == \
        "1. Executing ABC. / Running ABC command"
    assert failure_detail([]) == "no message"


def test_synth_reports_imports_hw_only():
    """DESIGN.md: synth_reports -> hw, never torch (nor sim, pruning or mobile)."""
    import subprocess
    import sys

    code = ("import sys, synth_reports.flow, synth_reports.harness, synth_reports.pnr, "
            "synth_reports.tools, synth_reports.yosys; "
            "print(sorted(m for m in ('torch', 'sim', 'pruning', 'mobile', 'codesign') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
