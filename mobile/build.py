"""Build generated kernels for the host or aarch64, cached by content hash, and run them.

Public API (used by ``bench/mobile.py`` and ``codesign mobile``)::

    from mobile.build import build_kernel
    k = build_kernel("bcr", weight=w, mask=m, bias=b, dtype="fp32", block=(4, 16))
    y, = k(x)                                   # host: ctypes; aarch64: qemu-aarch64
    from mobile.harness import time_host
    seconds = time_host(k, (x,), repeats=50)    # median seconds per call, one thread

Builds
------
host
    ``gcc -O3 -march=x86-64-v3 -fwrapv`` (a fixed target, never ``native``), a shared library
    with ``mk_run`` and ``mk_time`` loaded with ctypes.
aarch64
    ``aarch64-linux-gnu-gcc -O3 -mcpu=cortex-a76 -fwrapv -static``, a binary with the harness
    main of :mod:`mobile.csrc`, run with ``qemu-aarch64``.

Code size is the ``.text`` of the kernel object alone (data lives in ``.rodata``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobile import csrc
from mobile.source import KernelSource

__all__ = ["TARGETS", "KINDS", "Kernel", "BuildError", "build", "build_kernel", "build_kernels",
           "build_recipe",
           "generate",
           "default_cache_dir", "ICACHE_BUDGET"]

TARGETS = ("host", "aarch64")
KINDS = ("dense", "csr", "bcr", "conv", "pattern", "lstm", "gru")
#: Default instruction-cache budget for one kernel's code, bytes (a Cortex-A76 L1i is 64 KiB).
ICACHE_BUDGET = 64 * 1024

_COMMON = ["-O3", "-std=gnu11", "-fwrapv", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
_FLAGS = {
    "host": (["gcc", *_COMMON, "-march=x86-64-v3", "-fPIC"], "size"),
    "aarch64": (["aarch64-linux-gnu-gcc", *_COMMON, "-mcpu=cortex-a76"],
                "aarch64-linux-gnu-size"),
}
_TIMEOUT = 600
_lock = threading.Lock()


class BuildError(RuntimeError):
    """A compiler, linker or emulator failure (the message holds the command's output)."""


def default_cache_dir() -> Path:
    """``.mobile_cache`` in the current directory: build products keyed by content hash."""
    return Path(".mobile_cache")


def _check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    return target


def _run(cmd: list[str], cwd: Path) -> str:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise BuildError(f"{cmd[0]} not found on PATH (codesign doctor --install installs it)")
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{' '.join(cmd)} timed out after {_TIMEOUT} s") from None
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                         f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def _text_bytes(size_tool: str, obj: Path) -> int:
    out = _run([size_tool, "-A", obj.name], obj.parent)
    return sum(int(m.group(1)) for m in re.finditer(r"^\.text\S*\s+(\d+)", out, re.M))


@dataclass
class Kernel:
    """A built kernel.

    Attributes
    ----------
    source : KernelSource
        What was generated (kind, dtype, C text, data, arguments, structure info).
    target : str
        ``"host"`` or ``"aarch64"``.
    path : pathlib.Path
        Build folder: ``kernel.c``, ``mk_vec.h``, data ``*.bin``, ``kernel.o`` and
        ``libkernel.so`` (host) or ``kernel`` (aarch64, static).
    text_bytes : int
        ``.text`` size of the kernel code, bytes.
    params : dict or None
        The generator parameters (set by :func:`build_kernel`; used by :mod:`mobile.check`).
    """

    source: KernelSource
    target: str
    path: Path

    text_bytes: int = 0
    params: dict[str, Any] | None = None

    @property
    def binary(self) -> Path:
        """The shared library (host) or the static executable (aarch64)."""
        return self.path / ("libkernel.so" if self.target == "host" else "kernel")

    def icache_report(self, budget: int = ICACHE_BUDGET) -> tuple[bool, str]:
        """``(fits, message)`` for the kernel code against an instruction-cache ``budget``."""
        fits = self.text_bytes <= budget
        verdict = "fits" if fits else "EXCEEDS"
        msg = (f"code size {self.text_bytes} bytes of .text ({self.target}) {verdict} the "
               f"instruction-cache budget of {budget} bytes")
        return fits, msg

    def check_inputs(self, inputs: tuple[Any, ...]) -> list[np.ndarray]:
        """Convert ``inputs`` to the kernel's input dtypes and check their shapes."""
        specs = self.source.inputs
        if len(inputs) != len(specs):
            raise ValueError(f"kernel takes {len(specs)} inputs "
                             f"({', '.join(a.name for a in specs)}), not {len(inputs)}")
        out = []
        for a, v in zip(specs, inputs, strict=True):
            arr = np.asarray(v)
            if arr.shape != a.shape:
                raise ValueError(f"input {a.name} must have shape {a.shape}, not {arr.shape}")
            if np.dtype(a.dtype).kind == "i" and arr.dtype.kind in "iu":
                info = np.iinfo(a.dtype)
                if arr.size and (arr.min() < info.min or arr.max() > info.max):
                    raise ValueError(f"input {a.name} values must fit {np.dtype(a.dtype)}")
            out.append(np.ascontiguousarray(arr.astype(a.dtype)))
        return out

    def library(self) -> ctypes.CDLL:
        """The host shared library (loaded once per kernel)."""
        if self.target != "host":
            raise ValueError("only host kernels load as a shared library; run aarch64 kernels "
                             "with qemu (call the kernel)")
        lib = getattr(self, "_lib", None)
        if lib is None:
            lib = ctypes.CDLL(str(self.binary))
            lib.mk_run.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
            lib.mk_time.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_long,
                                    ctypes.c_long, ctypes.POINTER(ctypes.c_double)]
            self._lib = lib
        return lib

    def argv(self, inputs: tuple[Any, ...]) -> tuple[Any, list[np.ndarray]]:
        """``(void* array, outputs)`` for ``mk_run``/``mk_time`` (keep both alive)."""
        ins = self.check_inputs(inputs)
        outs = [np.zeros(a.shape, dtype=a.dtype) for a in self.source.outputs]
        arrays = ins + outs
        ptrs = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
        return (ptrs, arrays), outs

    def __call__(self, *inputs: Any) -> tuple[np.ndarray, ...]:
        """Run once on ``inputs``; return the outputs (host in-process, aarch64 under qemu)."""
        if self.target == "host":
            (ptrs, _keep), outs = self.argv(inputs)
            self.library().mk_run(ptrs)
            return tuple(outs)
        from mobile.harness import run_qemu

        return run_qemu(self, inputs)


def build_recipe(target: str) -> tuple[str, str, str]:
    """``(support file name, its C text, shell commands)`` that rebuild a kernel folder by hand
    exactly as :func:`build` does."""
    cc = " ".join(_FLAGS[_check_target(target)][0])
    if target == "host":
        return ("mk_runtime.c", csrc.RUNTIME_C,
                f"{cc} -c kernel.c -o kernel.o\n"
                f"{cc} -shared kernel.o mk_runtime.c -o libkernel.so -lm\n")
    return ("mk_main.c", csrc.MAIN_C,
            f"{cc} -c kernel.c -o kernel.o\n{cc} -static kernel.o mk_main.c -o kernel -lm\n"
            "qemu-aarch64 ./kernel REPEATS in0.bin ... out0.bin ...   # raw little-endian arrays\n")


def _support_object(cache: Path, target: str) -> Path:
    """The compiled runtime (host) or harness main (aarch64), built once per cache."""
    cc, _ = _FLAGS[target]
    text = csrc.RUNTIME_C if target == "host" else csrc.MAIN_C
    key = hashlib.sha256("\0".join([text, *cc]).encode()).hexdigest()[:16]
    obj = cache.resolve() / f"support-{target}-{key}.o"
    if not obj.exists():
        with tempfile.TemporaryDirectory(dir=cache, prefix=".support-") as tmp:
            (Path(tmp) / "support.c").write_text(text)
            _run([*cc, "-c", "support.c", "-o", "support.o"], Path(tmp))
            os.replace(Path(tmp) / "support.o", obj)
    return obj


def build(source: KernelSource, target: str = "host", cache_dir: Path | None = None) -> Kernel:
    """Compile ``source`` for ``target`` (cached by content hash); return the :class:`Kernel`."""
    _check_target(target)
    cc, size_tool = _FLAGS[target]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if cache.exists() and not cache.is_dir():
        raise ValueError(f"{cache}: the kernels' build cache must be a folder, not a file")
    key = hashlib.sha256("\0".join([source.digest(), csrc.VEC_H, csrc.RUNTIME_C, csrc.MAIN_C,
                                     *cc]).encode()).hexdigest()[:24]
    final = cache / f"{source.kind}-{source.dtype}-{target}-{key}"
    if (final / ("libkernel.so" if target == "host" else "kernel")).exists():
        text = int((final / "text_bytes").read_text())
        return Kernel(source, target, final, text)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
        d = Path(tmp) / "k"
        d.mkdir()
        (d / "mk_vec.h").write_text(csrc.VEC_H)
        (d / "kernel.c").write_text(source.code)
        for name, blob in source.data.items():
            (d / name).write_bytes(blob)
        _run([*cc, "-c", "kernel.c", "-o", "kernel.o"], d)
        text = _text_bytes(size_tool, d / "kernel.o")
        support = _support_object(cache, target)
        if target == "host":
            _run([*cc, "-shared", "kernel.o", str(support), "-o", "libkernel.so", "-lm"], d)
        else:
            _run([*cc, "-static", "kernel.o", str(support), "-o", "kernel", "-lm"], d)
        (d / "text_bytes").write_text(str(text))
        with _lock:
            try:
                os.replace(d, final)
            except OSError:  # another thread or process built the same kernel first
                if not (final / "text_bytes").exists():
                    raise
    return Kernel(source, target, final, text)


def generate(kind: str, **params: Any) -> KernelSource:
    """Generate a kernel's C source without building it (see :func:`build_kernel`)."""
    if kind in ("dense", "csr", "bcr"):
        from mobile.gen_linear import linear_source

        return linear_source(kind, **params)
    if kind in ("conv", "pattern"):
        from mobile.gen_conv import conv_source

        return conv_source(kind, **params)
    if kind in ("lstm", "gru"):
        from mobile.gen_rnn import rnn_source

        return rnn_source(kind, **params)
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


def build_kernel(kind: str, *, target: str = "host", cache_dir: Path | None = None,
                 **params: Any) -> Kernel:
    """Generate and build one kernel from plain numpy arrays.

    Parameters
    ----------
    kind : {"dense", "csr", "bcr", "conv", "pattern", "lstm", "gru"}
        ``dense``/``csr``/``bcr``: ``y = W x + b`` with ``weight`` (out, in), optional ``mask``
        (0/1, same shape; default all ones), optional ``bias`` (out,), ``block=(r, c)`` for bcr.
        ``conv`` (dense direct convolution) and ``pattern`` (3x3 pattern + connectivity
        pruned): ``weight`` (out, in, kh, kw), ``mask``, ``bias``, ``image=(h, w)``,
        ``stride``, ``padding``; pattern also takes ``library`` (K, 3, 3) (default: the
        patterns the mask uses). ``lstm``/``gru``: one cell step with ``weight_ih``,
        ``weight_hh``, ``mask_ih``, ``mask_hh``, ``bias_ih``, ``bias_hh``, ``matvec="dense"``
        or ``"bcr"`` (with ``block``) and, for int8, ``config`` (an ``ir.golden.RNNQuantConfig``).
    target : {"host", "aarch64"}
    cache_dir : path, optional
        Build cache (default ``.mobile_cache`` in the current directory).
    dtype : {"fp32", "int8"}
        fp32: float weights, float in/out. int8: int8 weights and activations, int32
        accumulator outputs equal to ``ir.golden`` bit for bit (RNN steps: the integer cell).

    Returns
    -------
    Kernel
        Call it with the inputs (``k(x)``; conv ``x`` is (in, h, w); lstm ``k(x, h, c)``;
        gru ``k(x, h)``) to get a tuple of outputs; time it with
        :func:`mobile.harness.time_host`.
    """
    _check_target(target)
    kernel = build(generate(kind, **params), target, cache_dir)
    kernel.params = dict(params)
    return kernel


def build_kernels(requests: list[tuple[str, dict[str, Any]]], target: str = "host",
                  cache_dir: Path | None = None, jobs: int = 2) -> list[Kernel]:
    """Build many kernels, ``jobs`` compilers at a time: ``[(kind, params), ...]`` in, kernels
    out in the same order (see :func:`build_kernel`)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(req: tuple[str, dict[str, Any]]) -> Kernel:
        return build_kernel(req[0], target=target, cache_dir=cache_dir, **req[1])

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, requests))
