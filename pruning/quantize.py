"""Per-layer equal-interval weight quantization and its projection.

A ``bits``-bit layer with scale ``q`` has the levels ``{0, +-q, ..., +-L q}``,
``L = 2**(bits-1) - 1`` (symmetric, as :class:`ir.QuantSpec` and ADMM-NN). For a fixed ``q`` the
Euclidean projection rounds each weight to the nearest level: ``n = clip(rint(w / q), -L, L)``,
computed in float64 (round half to even, as :func:`ir.fixedpoint.quantize` and
``pruning.export``), then ``n * q``. Pruned weights (``mask == 0``) are zero, not rounded.

The scale is chosen to minimise the projection error ``||W - Q_q(W)||^2`` over the kept weights
(:func:`best_scale`), not from ``max|W|``. Scales are float32-representable and a projected weight
is the exact ``n * q`` rounded once to the weight's dtype, so for float32
``to_integers(...).astype(float32) * float32(q)`` reproduces it bit for bit (and float64 weights
hold ``n * q`` exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch

__all__ = ["MIN_BITS", "MAX_BITS", "max_level", "levels", "best_scale", "quantize_fixed",
           "project_quant", "project_joint", "to_integers", "quant_error"]

MIN_BITS, MAX_BITS = 2, 16
_LLOYD_ITERS = 60
_STARTS = 16
_BUDGET = 2**18


def _bits(bits: Any) -> int:
    msg = f"Bits must be an integer from {MIN_BITS} to {MAX_BITS}, not {bits!r}"
    if isinstance(bits, bool) or not isinstance(bits, Integral):
        raise TypeError(msg)
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(msg)
    return int(bits)


def _scale(q: Any) -> float:
    msg = f"Scale must be a positive finite number, not {q!r}"
    try:
        value = float(q)
    except (TypeError, ValueError):
        raise TypeError(msg) from None
    if isinstance(q, bool) or not (np.isfinite(value) and value > 0):
        raise ValueError(msg)
    return value


def max_level(bits: int) -> int:
    """``L = 2**(bits-1) - 1``, the largest integer level of ``bits`` bits."""
    return 2 ** (_bits(bits) - 1) - 1


def levels(bits: int, q: float) -> np.ndarray:
    """The float64 levels ``q * [-L, ..., L]`` in increasing order."""
    lv = max_level(bits)
    return np.arange(-lv, lv + 1, dtype=np.float64) * _scale(q)


def _as_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:   # numpy has no bfloat16; float32 holds it exactly
            a = a.float()
        return a.numpy()
    return np.asarray(a)


def _kept_abs(weights: Sequence[Any], masks: Sequence[Any] | None) -> np.ndarray:
    """Sorted float64 ``|w|`` of the kept, non-zero weights of all tensors."""
    parts = []
    for i, w in enumerate(weights):
        a = np.abs(_as_numpy(w).astype(np.float64)).reshape(-1)
        if masks is not None and masks[i] is not None:
            m = _as_numpy(masks[i]).reshape(-1)
            if m.size != a.size:
                raise ValueError(f"Mask has {m.size} entries for a weight of {a.size}")
            a = a[m != 0]
        if not np.all(np.isfinite(a)):
            raise ValueError("Weight contains NaN or infinity")
        parts.append(a[a > 0])
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0)


def _moments(a: np.ndarray, c1: np.ndarray, q: np.ndarray, lv: int) -> tuple[np.ndarray, np.ndarray]:
    """For each scale in ``q`` (1-D), ``B = sum n|w|`` and ``C = sum n^2`` of the nearest-level
    assignment ``n = min(L, round(|w| / q))``; the error is ``sum w^2 - 2 q B + q^2 C``.
    (A weight exactly between two levels is equally far from both, so the error does not depend
    on which one it is given.)"""
    j = np.arange(1, lv + 1, dtype=np.float64)
    # index of the first |w| at or above the lower edge (j - 1/2) q of level j, j = 1..L
    edge = np.searchsorted(a, (j[None, :] - 0.5) * q[:, None], side="left")
    edge = np.concatenate([edge, np.full((len(q), 1), len(a))], axis=1)
    n_j = np.diff(edge, axis=1)                                   # weights at level j
    s_j = c1[edge[:, 1:]] - c1[edge[:, :-1]]                      # their sum of |w|
    return s_j @ j, n_j @ (j * j)


def _sweep(a: np.ndarray, c1: np.ndarray, lv: int, qa: float,
           qb: float) -> tuple[float, float]:
    """Exact minimum ``(q, E)`` of the error over ``q`` in ``[qa, qb]``.

    As ``q`` decreases past ``t = |w| / (j + 1/2)`` the weight moves from level ``j`` to
    ``j + 1``, adding ``|w|`` to ``B`` and ``2j + 1`` to ``C``; between consecutive breakpoints
    ``E = sum w^2 - 2 q B + q^2 C`` is one convex quadratic, minimised at ``B / C`` clamped to
    the piece.
    """
    total2 = float(a @ a)
    b0, c0 = (_moments(a, c1, np.array([qb]), lv) if np.isfinite(qb)
              else (np.zeros(1), np.zeros(1)))
    jlo = np.floor(a / qb - 0.5).astype(np.int64) + 1                     # t < qb
    jhi = (np.minimum(np.floor(a / qa - 0.5), lv - 1).astype(np.int64) if qa > 0
           else np.full(a.shape, lv - 1, dtype=np.int64))                  # t >= qa
    jlo = np.maximum(jlo, 0)
    count = np.maximum(jhi - jlo + 1, 0)
    idx = np.repeat(np.arange(len(a)), count)
    j = np.arange(len(idx), dtype=np.float64)
    j -= np.repeat(np.cumsum(count) - count - jlo, count)          # level left, per breakpoint
    aa = a[idx]
    t = aa / (j + 0.5)
    order = np.argsort(-t)          # equal breakpoints may go in any order: E is continuous
    t = t[order]
    big_b = np.concatenate([b0[:1], aa[order]]).cumsum()
    big_c = np.concatenate([c0[:1], 2.0 * j[order] + 1.0]).cumsum()
    hi = np.concatenate([[qb], t])
    lo = np.concatenate([t, [qa]])
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(big_c > 0, np.clip(big_b / big_c, lo, hi), lo)
        err = np.where(big_c > 0, total2 - 2 * q * big_b + q * q * big_c, total2)
    k = int(np.argmin(err))
    return float(q[k]), float(err[k])


def _direct_error(a: np.ndarray, q: float, lv: int) -> float:
    n = np.minimum(np.rint(a / q), lv)
    return float(np.sum((a - n * q) ** 2))


def best_scale(weights: torch.Tensor | Sequence[torch.Tensor], bits: int,
               masks: Any = None) -> float:
    """The scale ``q`` minimising the projection error of the kept weights (one ``q`` for all).

    Parameters
    ----------
    weights : tensor or sequence of tensors (torch or numpy)
        One layer's weights; several (an RNN's ``weight_ih`` and ``weight_hh``) share one ``q``.
    bits : int
        2 to 16.
    masks : tensor or sequence of tensors/None, optional
        0/1 masks matching ``weights``; pruned weights are excluded (they project to zero
        whatever ``q`` is).

    Returns
    -------
    float
        A positive, float32-representable ``q``. 1.0 when every kept weight is zero.

    Notes
    -----
    The error ``E(q) = sum (|w| - q n(q))^2`` is piecewise quadratic in ``q`` with a breakpoint
    wherever a weight changes level. When ``numel * L <= 2**18`` every piece is visited and the
    global minimum is exact. Otherwise ``q`` is first searched on a geometric grid of
    ``q * L / max|w|`` in ``[0.01, 2]``, Lloyd iterations ``q <- sum n|w| / sum n^2`` (which never
    increase ``E``) refine the best grid minima and ``max|w| / L``, and the pieces in a bracket
    around the best of them (as wide as the breakpoint budget allows) are visited exactly.
    Finally the two float32 neighbours of the minimiser are compared and the better kept.
    """
    lv = max_level(bits)
    if isinstance(weights, (torch.Tensor, np.ndarray)):
        weights = [weights]
        masks = None if masks is None else [masks]
    a = _kept_abs(list(weights), None if masks is None else list(masks))
    if a.size == 0:
        return 1.0
    c1 = np.concatenate([[0.0], np.cumsum(a)])
    if a.size * lv <= _BUDGET:
        q_best, _ = _sweep(a, c1, lv, 0.0, np.inf)
    else:
        total2, peak = float(a @ a), float(a[-1])
        grid = peak / lv * np.geomspace(0.01, 2.0, int(max(64, min(4096, 4_000_000 // lv))))

        def error(q: np.ndarray) -> np.ndarray:
            b, c = _moments(a, c1, q, lv)
            return total2 - 2 * q * b + q * q * c

        e = error(grid)
        local = np.flatnonzero((e <= np.roll(e, 1)) & (e <= np.roll(e, -1)))
        starts = grid[local[np.argsort(e[local], kind="stable")[:_STARTS]]]
        q = np.concatenate([starts, [peak / lv, grid[int(np.argmin(e))]]])
        for _ in range(_LLOYD_ITERS):
            b, c = _moments(a, c1, q, lv)
            nxt = np.where(c > 0, b / np.maximum(c, 1e-300), q)
            if np.allclose(nxt, q, rtol=1e-12, atol=0):
                break
            q = nxt
        centre = float(q[int(np.argmin(error(q)))])
        half = min(0.5, _BUDGET * centre / (2.0 * float(c1[-1])))
        q_best, _ = _sweep(a, c1, lv, centre / (1 + half), centre * (1 + half))
    cands = {float(np.float32(q_best)), float(np.nextafter(np.float32(q_best), np.float32(0))),
             float(np.nextafter(np.float32(q_best), np.float32(np.inf)))}
    return min((c for c in sorted(cands) if c > 0), key=lambda c: _direct_error(a, c, lv))


def quantize_fixed(weight: torch.Tensor, q: float, bits: int,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """The Euclidean projection of ``weight`` onto the levels of scale ``q`` (pruned entries,
    ``mask == 0``, set to zero): a new tensor of ``weight``'s shape, dtype and device, equal to
    ``n * q`` (float64) in ``weight``'s dtype, ``n = to_integers(weight, q, bits, mask)``. For a
    float32-representable ``q`` (as :func:`best_scale` gives) ``n * q`` is exact and rounded
    once, so a float32 result is exactly the float32 product ``float32(n) * float32(q)``."""
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        what = f"dtype {weight.dtype}" if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise TypeError(f"Weight must be a floating-point torch.Tensor, not {what}")
    n = to_integers(weight, q, bits, mask).astype(np.float64)
    product = torch.from_numpy(n * _scale(q))       # exact when q is float32: 16 + 24 bits < 53
    return product.to(device=weight.device, dtype=weight.dtype)


def project_quant(weight: torch.Tensor, bits: int,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Project ``weight`` onto the ``bits``-bit levels of its error-minimising scale.

    Returns
    -------
    (torch.Tensor, float)
        The projected weight (see :func:`quantize_fixed`) and its scale ``q``
        (:func:`best_scale`). Pure: ``weight`` is not modified.
    """
    q = best_scale(weight, bits, mask)
    return quantize_fixed(weight, q, bits, mask), q


def project_joint(config: Any, weight: torch.Tensor, bits: int,
                  **ctx: Any) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Prune, then quantize the kept weights (ADMM-NN's sequential projection; not the exact
    projection onto the intersection, which has no closed form).

    Returns ``(projected, q, mask)``: ``mask = pruning.projections.mask_of(config, weight,
    **ctx)``, and ``projected`` is :func:`project_quant` of ``weight`` under that mask.
    """
    from pruning.projections import mask_of

    mask = mask_of(config, weight, **ctx)
    projected, q = project_quant(weight, bits, mask)
    return projected, q, mask


def to_integers(weight: Any, q: float, bits: int, mask: Any = None) -> np.ndarray:
    """The integer levels ``n = clip(rint(w / q), -L, L)`` (float64 division, round half to
    even; zero where ``mask == 0``), as int8 for up to 8 bits, else int16.

    Applied to the output of :func:`quantize_fixed` or :func:`project_quant` with the same
    ``q`` it returns the same integers, and for a float32-representable ``q``
    ``n.astype(float32) * float32(q)`` equals that float32 output exactly.
    """
    lv = max_level(bits)
    scale = _scale(q)
    w = _as_numpy(weight).astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("Weight contains NaN or infinity")
    n = np.clip(np.rint(w / scale), -lv, lv)
    if mask is not None:
        m = _as_numpy(mask)
        if m.shape != w.shape:
            raise ValueError(f"Mask shape {list(m.shape)} does not match weight shape "
                             f"{list(w.shape)}")
        n = np.where(m != 0, n, 0.0)
    return n.astype(np.int8 if bits <= 8 else np.int16)


def quant_error(weight: Any, q: float, bits: int, mask: Any = None) -> float:
    """``||W_kept - Q_q(W_kept)||^2`` in float64 over the kept weights (pruned ones ignored)."""
    w = _as_numpy(weight).astype(np.float64)
    n = to_integers(w, q, bits, mask).astype(np.float64)
    keep = np.ones(w.shape, bool) if mask is None else _as_numpy(mask) != 0
    return float(np.sum(((w - n * _scale(q)) * keep) ** 2))
