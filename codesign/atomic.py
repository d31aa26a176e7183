"""Atomic file output: write under a temporary name in the same folder, then rename.

A reader never sees a half-written file, and a failed or interrupted write leaves the old file
(or none) in place. Used for every file the command line and the benchmarks write.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_csv"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Create ``path``'s folder, call ``write(tmp)`` on a temporary file next to it, rename.

    The file gets the mode a plain ``open`` would give it (``0666`` less the umask). The
    temporary name keeps ``path``'s suffix (some writers choose the format by it). On any
    exception, including ``KeyboardInterrupt``, the temporary file is removed and the exception
    re-raised; ``IsADirectoryError`` naming ``path`` when it is a folder. Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.is_dir():   # else the rename fails, naming the temporary file
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())    # mkstemp's 0600 would hide the file from others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(frame: Any, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame to ``path`` as CSV without its index, atomically."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
