"""Run built kernels: on the host through ctypes, on aarch64 under ``qemu-aarch64``; time them.

``time_host`` is the measurement the benchmarks use: the kernel's own ``mk_time`` loop in C
(no Python between calls), one thread, the median of many samples.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mobile.build import BuildError, Kernel

__all__ = ["run_qemu", "time_host", "qemu_command"]

_QEMU_TIMEOUT = 900


def qemu_command() -> str:
    """Path of ``qemu-aarch64``; :class:`~mobile.build.BuildError` if it is missing."""
    exe = shutil.which("qemu-aarch64")
    if exe is None:
        raise BuildError("qemu-aarch64 not found on PATH (codesign doctor --install installs "
                         "Debian's qemu-user)")
    return exe


def run_qemu(kernel: Kernel, inputs: tuple[Any, ...], repeats: int = 1,
             qemu_args: tuple[str, ...] = ()) -> tuple[np.ndarray, ...]:
    """Run an aarch64 kernel ``repeats`` times under qemu on ``inputs``; return its outputs."""
    if kernel.target != "aarch64":
        raise ValueError("run_qemu needs an aarch64 kernel")
    ins = kernel.check_inputs(inputs)
    with tempfile.TemporaryDirectory(prefix="mk-qemu-") as tmp:
        paths = []
        for k, a in enumerate(ins):
            p = Path(tmp) / f"in{k}.bin"
            p.write_bytes(a.astype(a.dtype.newbyteorder("<")).tobytes())
            paths.append(str(p))
        outs = [str(Path(tmp) / f"out{k}.bin") for k in range(len(kernel.source.outputs))]
        cmd = [qemu_command(), *qemu_args, str(kernel.binary), str(int(repeats)), *paths, *outs]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_QEMU_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise BuildError(f"qemu-aarch64 timed out after {_QEMU_TIMEOUT} s") from None
        if proc.returncode != 0:
            raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                             f"{(proc.stdout + proc.stderr)[-2000:]}")
        return tuple(np.fromfile(p, dtype=np.dtype(a.dtype).newbyteorder("<")).reshape(a.shape)
                     .astype(a.dtype) for p, a in zip(outs, kernel.source.outputs, strict=True))


def time_host(kernel: Kernel, inputs: tuple[Any, ...], repeats: int = 50,
              min_seconds: float = 0.002) -> float:
    """Median seconds per call of a host kernel on ``inputs``, single-threaded.

    One warm-up call, then ``repeats`` samples; each sample averages enough back-to-back calls
    (timed inside C with ``CLOCK_MONOTONIC``) to last about ``min_seconds``.
    """
    if kernel.target != "host":
        raise ValueError("time_host needs a host kernel; aarch64 cost is modelled "
                         "(mobile.cost), never timed")
    if repeats < 1:
        raise ValueError(f"repeats must be a positive integer, not {repeats}")
    lib = kernel.library()
    (ptrs, _keep), _ = kernel.argv(inputs)
    one = (ctypes.c_double * 1)()
    lib.mk_time(ptrs, 1, 1, one)  # warm-up
    lib.mk_time(ptrs, 1, 1, one)
    inner = max(1, int(min_seconds / max(one[0], 1e-9)))
    samples = (ctypes.c_double * repeats)()
    lib.mk_time(ptrs, inner, repeats, samples)
    return float(np.median(np.frombuffer(samples, dtype=np.float64)))
