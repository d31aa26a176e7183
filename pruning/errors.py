"""Errors of ``pruning`` that the command line reports as user errors, importable without torch
(``codesign`` imports this module at start-up; :mod:`pruning.train` imports torch)."""

from __future__ import annotations

__all__ = ["TrainingDiverged"]


class TrainingDiverged(ArithmeticError):
    """Training made the loss or a weight NaN or infinite (usually: the learning rate is too
    high). The message says where and with which learning rate."""
