"""One bundle layer end to end: generate its kernels, build, check, cost, write the sources.

Used by ``codesign mobile`` and the demo's mobile stage. On the host the cost is measured
(median seconds per call, one thread); on aarch64 it is modelled (:mod:`mobile.cost`) and only
reported as a sparse/dense ratio with its band.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ir import Layer
from mobile.build import ICACHE_BUDGET, Kernel, build_kernels, build_recipe
from mobile.check import CheckResult, check_kernel, random_inputs
from mobile.cost import MCA_MODELS, Cost, cost_ratio, kernel_cost
from mobile.harness import time_host
from mobile.layers import layer_kernels

__all__ = ["KernelReport", "LayerReport", "run_layer", "format_report", "safe_name",
           "folder_names", "folder_problem", "MAX_FOLDER_NAME"]


#: Longest folder name :func:`safe_name` gives; a longer one is cut and given a hash of the
#: whole name. The file system takes 255 bytes, and the temporary folder adds a prefix.
MAX_FOLDER_NAME = 64


def safe_name(name: str) -> str:
    """A file-system and C safe version of a layer name (``[A-Za-z0-9_]``, at most
    :data:`MAX_FOLDER_NAME` characters: a longer one keeps its first 55 and ``_`` and 8 hex
    digits of the SHA-256 of ``name``)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    s = s if s and not s[0].isdigit() else f"l_{s}"
    if len(s) > MAX_FOLDER_NAME:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        s = f"{s[:MAX_FOLDER_NAME - 9]}_{digest}"
    return s


def folder_problem(dest: Path) -> str | None:
    """Why ``dest`` may not be replaced by a layer's outputs, or None: it must not exist, or be
    an empty folder or one that this module wrote (it holds ``report.json``). A symbolic link,
    a file or a folder of something else is never deleted."""
    dest = Path(dest)
    if not (dest.exists() or dest.is_symlink()):
        return None
    if dest.is_symlink() or not dest.is_dir() or (
            not (dest / "report.json").is_file() and any(dest.iterdir())):
        return f"{dest}: exists and is not a layer folder of codesign mobile; not replacing it"
    return None


def folder_names(names: list[str]) -> dict[str, str]:
    """:func:`safe_name` of each of ``names``, made distinct: a name whose safe form is taken
    (``fc.1`` and ``fc_1`` both give ``fc_1``) gets the first free ``_2``, ``_3``, ... suffix, in
    order of ``names``. Deterministic; distinct names never share a folder."""
    base = [safe_name(n) for n in names]
    taken, out = set(base), {}
    for name, b in zip(names, base, strict=True):
        if name in out:
            continue
        if b in out.values():
            k = 2
            while f"{b}_{k}" in taken:
                k += 1
            b = f"{b}_{k}"
            taken.add(b)
        out[name] = b
    return out


@dataclass
class KernelReport:
    """One generated kernel of a layer: what it is, its check, code size and cost."""

    role: str
    kind: str
    dtype: str
    target: str
    check: CheckResult
    text_bytes: int
    icache_fits: bool
    icache_message: str
    info: dict[str, Any]
    seconds: float | None = None
    cost: Cost | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"role": self.role, "kind": self.kind, "dtype": self.dtype, "target": self.target,
                "check": {"ok": self.check.ok, "message": self.check.message,
                          "mismatches": self.check.mismatches, "worst": self.check.worst},
                "text_bytes": self.text_bytes, "icache_fits": self.icache_fits,
                "seconds": self.seconds, "cost": self.cost.to_json() if self.cost else None,
                "info": self.info}


@dataclass
class LayerReport:
    """All kernels of one layer and their ratios to the dense kernel."""

    layer: str
    target: str
    budget: int
    kernels: list[KernelReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every kernel passed its check."""
        return all(k.check.ok for k in self.kernels)

    def ratios(self) -> dict[str, dict[str, float]]:
        """Per non-dense role: cost / dense cost (``time`` on the host; ``instructions``, one
        entry per llvm-mca model and the ``low``/``high`` band on aarch64)."""
        dense = next((k for k in self.kernels if k.role == "dense"), None)
        out: dict[str, dict[str, float]] = {}
        for k in self.kernels:
            if k.role == "dense" or dense is None:
                continue
            if k.seconds is not None and dense.seconds:
                out[k.role] = {"time": k.seconds / dense.seconds}
            elif k.cost is not None and dense.cost is not None:
                out[k.role] = cost_ratio(k.cost, dense.cost)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"layer": self.layer, "target": self.target, "icache_budget": self.budget,
                "ok": self.ok, "kernels": [k.to_json() for k in self.kernels],
                "ratios_vs_dense": self.ratios()}


def _write_sources(kernels: list[tuple[str, Kernel]], report: LayerReport, dest: Path) -> None:
    problem = folder_problem(dest)
    if problem is not None:
        raise ValueError(problem)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for role, k in kernels:
            d = tmp / f"{role}_{k.source.kind}_{k.source.dtype}_{k.target}"
            d.mkdir()
            for f in sorted(k.path.iterdir()):
                if f.suffix in (".c", ".h", ".bin"):
                    shutil.copyfile(f, d / f.name)
            name, text, commands = build_recipe(k.target)
            (d / name).write_text(text)
            (d / "BUILD.txt").write_text(commands)
        (tmp / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)       # mkdtemp's 0700 would hide the sources from others
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def run_layer(layer: Layer, target: str = "host", out: Path | None = None, *,
              dtype: str = "auto", image: tuple[int, int] = (16, 16),
              budget: int = ICACHE_BUDGET, measure: bool = True, repeats: int = 30,
              seed: int = 0, cache_dir: Path | None = None,
              folder: str | None = None) -> LayerReport:
    """Generate, build, check and cost every kernel of ``layer`` (see :mod:`mobile.layers`).

    ``out``: write ``out/<layer>/<role>_<kind>_<dtype>_<target>/`` (C source, header, data,
    runtime or harness main, ``BUILD.txt`` with the commands) and ``out/<layer>/report.json``,
    where ``<layer>`` is ``folder`` or else :func:`safe_name` of the layer's name (give
    :func:`folder_names` folders when several layers share ``out``). ``measure``: time (host)
    or model (aarch64) each kernel.
    """
    report = LayerReport(layer.name, target, budget)
    built = []
    plan = layer_kernels(layer, dtype, image)
    kernels = build_kernels([(kind, params) for _, kind, params in plan], target, cache_dir)
    for (role, kind, _), k in zip(plan, kernels, strict=True):
        check = check_kernel(k, seed=seed)
        fits, msg = k.icache_report(budget)
        kr = KernelReport(role, kind, k.source.dtype, target, check, k.text_bytes, fits, msg,
                          dict(k.source.info))
        if measure and check.ok:
            ins = random_inputs(k, seed)
            if target == "host":
                kr.seconds = time_host(k, ins, repeats)
            else:
                kr.cost = kernel_cost(k, ins)
        report.kernels.append(kr)
        built.append((role, k))
    if out is not None:
        _write_sources(built, report, Path(out) / (folder or safe_name(layer.name)))
    return report


def format_report(report: LayerReport) -> list[str]:
    """Human-readable lines: one per kernel, then the ratios to dense."""
    lines = [f"layer {report.layer} ({report.target}):"]
    for k in report.kernels:
        kept = k.info.get("kept_macs"), k.info.get("dense_macs")
        cost = ""
        if k.seconds is not None:
            cost = f", host {k.seconds * 1e6:.1f} us/call (median)"
        elif k.cost is not None:
            c = k.cost
            cost = (f", {c.instructions:,} instructions, modelled cycles "
                    + " / ".join(f"{c.cycles[m]:,.0f} ({m})" for m, _ in MCA_MODELS))
        lines.append(f"  {k.role:<6} {k.kind:<7} {k.dtype}: {k.check.message.split(': ', 1)[1]}; "
                     f"macs {kept[0]:,} of {kept[1]:,}; {k.text_bytes} B .text{cost}")
        if not k.icache_fits:
            lines.append(f"  WARNING {k.role} {k.kind}: {k.icache_message}")
    for role, r in report.ratios().items():
        if "time" in r:
            lines.append(f"  {role}/dense host time ratio: {r['time']:.3f}")
        else:
            lines.append(f"  {role}/dense modelled ARM ratio: cycles {r['low']:.3f} .. "
                         f"{r['high']:.3f} (band over {', '.join(m for m, _ in MCA_MODELS)}), "
                         f"instructions {r['instructions']:.3f}")
    return lines
