"""Modelled ARM cost of an aarch64 kernel: exact executed instructions and an llvm-mca band.

Method
------
1. Run the static aarch64 binary under ``qemu-aarch64 -d in_asm,exec,nochain`` twice: with 0
   and with 1 kernel call. ``in_asm`` logs every translated block (start address and its
   instruction encodings), ``exec`` with ``nochain`` logs every executed block. The difference
   of the per-block execution counts of the two runs is one kernel call, exactly, and the
   executed instructions are the sum of count x block length.
2. Each executed block is disassembled (``llvm-mc``) and timed by ``llvm-mca`` as a code
   region (steady-state cycles per pass of the block) on two pinned models: LLVM 19's
   ``neoverse-n1`` (optimistic) and ``cortex-a57`` (pessimistic, what LLVM 19 uses for a
   Cortex-A76). Modelled cycles = sum of count x cycles per pass.

The model ignores caches and branch prediction and ranks some kernel pairs wrongly (see
``shared/TOOLCHAIN.md``): report a sparse/dense *ratio with its band*, never phone milliseconds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobile.build import BuildError, Kernel
from mobile.harness import qemu_command

__all__ = ["Cost", "MCA_MODELS", "LLVM_VERSION", "kernel_cost", "cost_ratio",
           "executed_blocks"]

#: Pinned LLVM major version of llvm-mc / llvm-mca (the N1 model changes 1.7x by LLVM 22).
LLVM_VERSION = 19
#: (label, -mcpu) pairs: optimistic first, pessimistic second.
MCA_MODELS = (("neoverse-n1", "neoverse-n1"), ("cortex-a57", "cortex-a57"))
_MATTR = "+v8.2a,+dotprod,+fullfp16,+rcpc"
_ITER = 100
_TIMEOUT = 1800
_EXEC = re.compile(rb"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/", re.M)
_INSN = re.compile(r"^0x([0-9a-f]+):\s+([0-9a-f]{8})\s")


@dataclass(frozen=True)
class Cost:
    """Modelled cost of one kernel call on aarch64.

    Attributes
    ----------
    instructions : int
        Exactly executed instructions (from qemu).
    cycles : dict of str to float
        Modelled cycles per llvm-mca model label (:data:`MCA_MODELS`).
    blocks : int
        Distinct executed basic blocks.
    """

    instructions: int
    cycles: dict[str, float]
    blocks: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"instructions": self.instructions, "cycles": dict(self.cycles),
                "blocks": self.blocks}


def _tool(name: str) -> str:
    exe = shutil.which(f"{name}-{LLVM_VERSION}")
    if exe is None:
        raise BuildError(f"{name}-{LLVM_VERSION} not found on PATH (Debian llvm-{LLVM_VERSION};"
                         " codesign doctor --install installs it)")
    return exe


def _trace(kernel: Kernel, repeats: int, tmp: Path, inputs: list[Path], outputs: list[Path]
           ) -> tuple[Counter, dict[int, list[str]]]:
    log = tmp / f"trace{repeats}.log"
    cmd = [qemu_command(), "-d", "in_asm,exec,nochain", "-D", str(log), str(kernel.binary),
           str(repeats), *map(str, inputs), *map(str, outputs)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"qemu-aarch64 trace timed out after {_TIMEOUT} s") from None
    if proc.returncode != 0:
        raise BuildError(f"qemu-aarch64 trace failed ({proc.returncode}): {proc.stderr[-1000:]}")
    data = log.read_bytes()
    log.unlink()
    counts = Counter(int(m.group(1), 16) for m in _EXEC.finditer(data))
    blocks: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("IN:"):
            current = []
            continue
        if current is None:
            continue
        m = _INSN.match(line)
        if m:
            if not current:
                blocks[int(m.group(1), 16)] = current
            current.append(m.group(2))
        elif not line.strip() or not line.startswith("0x"):
            current = None
    return counts, blocks


def executed_blocks(kernel: Kernel, inputs: tuple[Any, ...]) -> dict[int, tuple[int, list[str]]]:
    """Per block start address: ``(executions in one kernel call, instruction encodings)``."""
    if kernel.target != "aarch64":
        raise ValueError("cost needs an aarch64 kernel (build with target='aarch64')")
    ins = kernel.check_inputs(inputs)
    with tempfile.TemporaryDirectory(prefix="mk-cost-") as t:
        tmp = Path(t)
        paths = []
        for k, a in enumerate(ins):
            p = tmp / f"in{k}.bin"
            p.write_bytes(a.astype(a.dtype.newbyteorder("<")).tobytes())
            paths.append(p)
        outs = [tmp / f"out{k}.bin" for k in range(len(kernel.source.outputs))]
        c0, _ = _trace(kernel, 0, tmp, paths, outs)
        c1, blocks = _trace(kernel, 1, tmp, paths, outs)
    result = {}
    for pc, n in c1.items():
        d = n - c0.get(pc, 0)
        if d > 0:
            if pc not in blocks:
                raise BuildError(f"qemu logged no translation for the block at {pc:#x}")
            result[pc] = (d, blocks[pc])
    return result


def _disassemble(words: list[str]) -> list[str]:
    text = "\n".join(" ".join(f"0x{w[i:i + 2]}" for i in (6, 4, 2, 0)) for w in words)
    proc = subprocess.run([_tool("llvm-mc"), "--disassemble", "-triple=aarch64",
                           f"-mattr={_MATTR}"], input=text, capture_output=True, text=True,
                          timeout=_TIMEOUT, check=False)
    lines = [ln.strip() for ln in proc.stdout.splitlines()
             if ln.strip() and not ln.strip().startswith(".")]
    if proc.returncode != 0 or len(lines) != len(words):
        raise BuildError(f"llvm-mc could not disassemble the kernel blocks: {proc.stderr[-500:]}")
    return lines


def _mca(regions: list[list[str]], cpu: str) -> list[float]:
    src = "".join(f"# LLVM-MCA-BEGIN r{k}\n" + "".join(f"\t{i}\n" for i in r) + "# LLVM-MCA-END\n"
                  for k, r in enumerate(regions))
    proc = subprocess.run([_tool("llvm-mca"), "-mtriple=aarch64", f"-mcpu={cpu}",
                           f"-mattr={_MATTR}", f"-iterations={_ITER}", "-"], input=src,
                          capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    cycles = [int(v) / _ITER for v in re.findall(r"^Total Cycles:\s+(\d+)", proc.stdout, re.M)]
    if proc.returncode != 0 or len(cycles) != len(regions):
        raise BuildError(f"llvm-mca -mcpu={cpu} failed: {proc.stderr[-500:]}")
    return cycles


def kernel_cost(kernel: Kernel, inputs: tuple[Any, ...]) -> Cost:
    """Executed instructions and modelled cycles of one call of an aarch64 kernel."""
    blocks = executed_blocks(kernel, inputs)
    order = sorted(blocks)
    words = [w for pc in order for w in blocks[pc][1]]
    asm = _disassemble(words) if words else []
    regions, k = [], 0
    for pc in order:
        n = len(blocks[pc][1])
        regions.append(asm[k:k + n])
        k += n
    instructions = sum(blocks[pc][0] * len(blocks[pc][1]) for pc in order)
    cycles = {}
    for label, cpu in MCA_MODELS:
        per = _mca(regions, cpu) if regions else []
        cycles[label] = float(sum(blocks[pc][0] * c for pc, c in zip(order, per, strict=True)))
    return Cost(instructions, cycles, len(order))


def cost_ratio(sparse: Cost, dense: Cost) -> dict[str, float]:
    """Sparse/dense ratios: ``instructions``, per model, and the band ``low``/``high``."""
    out = {"instructions": sparse.instructions / max(1, dense.instructions)}
    per = [sparse.cycles[lbl] / max(1e-9, dense.cycles[lbl]) for lbl, _ in MCA_MODELS]
    for (lbl, _), r in zip(MCA_MODELS, per, strict=True):
        out[lbl] = r
    out["low"], out["high"] = min(per), max(per)
    return out
