"""Click parameter types shared by the commands, checked when the command line is parsed.

:class:`OutDir` (``OUT_DIR``): an output folder. The path, and every ancestor of it that exists,
must be a folder (a folder that does not exist yet is created by the command). A file in the way
is a user error naming it, not a ``FileExistsError`` traceback after minutes of work.

:class:`FiniteFloatRange`: ``click.FloatRange`` without NaN and infinities, which pass its
bounds checks (every comparison with NaN is false) and reached the optimizers as tracebacks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

__all__ = ["OutDir", "OUT_DIR", "FiniteFloatRange", "folder_problem", "file_problem"]


class OutDir(click.Path):
    """A ``click.Path`` for an output folder that may not exist yet; converts to ``Path``."""

    name = "folder"

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        path = Path(super().convert(value, param, ctx))
        problem = folder_problem(path)
        if problem is not None:
            self.fail(problem, param, ctx)
        return path


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a folder, or None: the first existing one of ``path``
    and its ancestors must be a folder. Also for the benchmarks' output options."""
    path = Path(path)
    for ancestor in (path, *path.parents):
        if ancestor.exists() or ancestor.is_symlink():
            if ancestor.is_dir():
                return None
            where = "is" if ancestor == path else f"cannot hold folder {str(path)!r}: it is"
            what = "a file" if ancestor.exists() else "a broken link"
            return f"{str(ancestor)!r} {where} {what}, not a folder"
    return None


OUT_DIR = OutDir()


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file, or None (its folder as :func:`folder_problem`).

    For output options checked before a long run, not after it."""
    path = Path(path)
    if path.is_dir():
        return f"{str(path)!r} is a folder, not a file"
    return folder_problem(path.parent)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and +-infinity."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
