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

__all__ = ["OutDir", "OUT_DIR", "FiniteFloatRange"]


class OutDir(click.Path):
    """A ``click.Path`` for an output folder that may not exist yet; converts to ``Path``."""

    name = "folder"

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        path = Path(super().convert(value, param, ctx))
        for ancestor in (path, *path.parents):
            if ancestor.exists() or ancestor.is_symlink():
                if not ancestor.is_dir():
                    where = "is" if ancestor == path else f"cannot hold folder {str(path)!r}: it is"
                    what = "a file" if ancestor.exists() else "a broken link"
                    self.fail(f"{str(ancestor)!r} {where} {what}, not a folder", param, ctx)
                break
        return path


OUT_DIR = OutDir()


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and +-infinity."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
