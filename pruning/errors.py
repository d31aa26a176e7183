"""Errors of ``pruning`` that the command line reports as user errors, importable without torch
(``codesign`` imports this module at start-up; :mod:`pruning.train` imports torch)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec

__all__ = ["TrainingDiverged", "reports_divergence"]

_P = ParamSpec("_P")


class TrainingDiverged(ArithmeticError):
    """Training made the loss or a weight NaN or infinite (usually: the learning rate is too
    high). The message says where and with which learning rate."""


def reports_divergence(prog: str) -> Callable[[Callable[_P, int]], Callable[_P, int]]:
    """Decorate a script's ``main`` so that :class:`TrainingDiverged` is one line on stderr,
    ``prog: training diverged: ...``, and exit status 1, not a traceback.

    Parameters
    ----------
    prog : str
        The script's name, put first on the line.

    Returns
    -------
    callable
        The decorator; the decorated ``main`` returns 1 when training diverged, else what
        ``main`` returns.
    """
    def decorate(main: Callable[_P, int]) -> Callable[_P, int]:
        @functools.wraps(main)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except TrainingDiverged as exc:
                print(f"{prog}: {exc}", file=sys.stderr)
                return 1
        return run
    return decorate
