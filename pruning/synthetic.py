"""Synthetic inputs for the data-free mode: random batches shaped like the model's input.

Three distributions (:data:`DISTRIBUTIONS`):

* ``"normal"``: independent standard normal values;
* ``"uniform"``: independent values uniform on ``[low, high]`` (default ``[-1, 1]``);
* ``"bn"``: independent normal values whose per-channel mean and standard deviation are the input
  statistics stored in the model's first BatchNorm layer (:func:`input_statistics`).

Nothing here reads a dataset: this module imports torch only, never :mod:`pruning.data`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["DISTRIBUTIONS", "SyntheticSpec", "input_statistics", "synthetic_batches"]

#: The distributions of :class:`SyntheticSpec`.
DISTRIBUTIONS: tuple[str, ...] = ("normal", "uniform", "bn")
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class SyntheticSpec:
    """How many synthetic samples to draw, and from which distribution.

    Attributes
    ----------
    distribution : {"normal", "uniform", "bn"}
        See the module docstring.
    batches, batch_size : int
        Number of batches and samples per batch (both positive).
    low, high : float
        The range of ``"uniform"`` (``low < high``).
    seed : int
        Seed of the batches' own generator (the global torch RNG is not touched).
    """

    distribution: str = "normal"
    batches: int = 8
    batch_size: int = 64
    low: float = -1.0
    high: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown synthetic distribution {self.distribution!r}; known: "
                             f"{', '.join(DISTRIBUTIONS)}")
        for key in ("batches", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"Synthetic {key} must be a positive integer, not {v!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"The uniform range must be finite with low < high, not "
                             f"[{self.low!r}, {self.high!r}]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"Seed must be an integer, not {self.seed!r}")

    @property
    def samples(self) -> int:
        """``batches * batch_size``."""
        return self.batches * self.batch_size


def _first_bn(model: nn.Module) -> tuple[list[nn.Module], nn.Module] | None:
    """The modules (conv/linear) met before the first BatchNorm, in ``named_modules`` order,
    and that BatchNorm; ``None`` if the model has none."""
    before: list[nn.Module] = []
    for _, m in model.named_modules():
        if isinstance(m, _BN):
            return before, m
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            before.append(m)
    return None


def input_statistics(model: nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-input-channel mean and standard deviation implied by the model's first BatchNorm.

    * A BatchNorm met before any convolution or linear layer, with ``channels`` features,
      normalises the input itself: its running mean and ``sqrt(running_var)`` are returned.
    * A BatchNorm right after the first layer (a convolution or linear layer whose outputs it
      normalises) holds the statistics of that layer's outputs. Inputs with independent values
      of mean ``mu_c`` and variance ``s_c^2`` per input channel ``c`` give output ``o`` the mean
      ``b_o + sum_c mu_c S_oc`` and variance ``sum_c s_c^2 Q_oc``, with ``S_oc`` the sum and
      ``Q_oc`` the sum of squares of the weights joining ``c`` to ``o`` (zero padding at the
      borders ignored; a linear layer's inputs are one channel). ``mu`` and ``s^2`` are the
      least-squares fits of those equations to the stored running mean and variance (``s^2``
      kept at least 1e-6 of its largest value).

    Returns ``None`` when the model has no BatchNorm, or its first one fits neither case.
    """
    found = _first_bn(model)
    if found is None:
        return None
    before, bn = found
    mean = bn.running_mean.detach().double() if bn.running_mean is not None else None
    var = bn.running_var.detach().double() if bn.running_var is not None else None
    if mean is None or var is None:
        return None
    if not before:
        if bn.num_features != channels:
            return None
        return mean.float(), var.clamp_min(0).sqrt().float()
    layer = before[0]
    if len(before) != 1:
        return None
    w = layer.weight.detach().double()
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or w.shape[1] != channels:
            return None
        s, q = w.sum(dim=(2, 3)), w.square().sum(dim=(2, 3))          # (O, C)
    else:
        if channels != 1:
            return None
        s, q = w.sum(dim=1, keepdim=True), w.square().sum(dim=1, keepdim=True)
    if w.shape[0] != bn.num_features:
        return None
    b = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(mean)
    mu = torch.linalg.lstsq(s, (mean - b).unsqueeze(1)).solution.squeeze(1)
    s2 = torch.linalg.lstsq(q, var.unsqueeze(1)).solution.squeeze(1)
    floor = max(float(s2.max()), 1e-12) * 1e-6
    return mu.float(), s2.clamp_min(floor).sqrt().float()


def synthetic_batches(spec: SyntheticSpec, input_shape: Sequence[int],
                      model: nn.Module | None = None) -> list[torch.Tensor]:
    """``spec.batches`` float32 tensors of shape ``(spec.batch_size, *input_shape)``.

    ``model`` is needed for ``"bn"`` (its first BatchNorm, :func:`input_statistics`); the
    channel axis is ``input_shape[0]`` (``(C, H, W)`` images; other inputs are one channel).
    Deterministic: the same spec and shape give the same tensors. ``ValueError`` for ``"bn"``
    on a model without usable BatchNorm statistics.
    """
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"Input shape must be positive sizes, not {tuple(input_shape)!r}")
    gen = torch.Generator().manual_seed(spec.seed)
    full = (spec.batch_size, *shape)
    mean = std = None
    if spec.distribution == "bn":
        channels = shape[0] if len(shape) == 3 else 1
        stats = input_statistics(model, channels) if model is not None else None
        if stats is None:
            raise ValueError("synthetic distribution 'bn' needs a model whose first BatchNorm "
                             "normalises its input or the outputs of its first layer; use "
                             "'normal' or 'uniform'")
        view = (1, channels, 1, 1) if len(shape) == 3 else (1,) * len(full)
        mean, std = stats[0].reshape(view), stats[1].reshape(view)
    out = []
    for _ in range(spec.batches):
        if spec.distribution == "uniform":
            x = torch.rand(full, generator=gen) * (spec.high - spec.low) + spec.low
        else:
            x = torch.randn(full, generator=gen)
            if mean is not None:
                x = x * std + mean
        out.append(x.float())
    return out
