"""Projections onto the pruning schemes' constraint sets, found through a registry.

Each scheme's constraint set is a union of supports (masks), and the closest point on a support
is ``W`` zeroed outside it, so the registry maps a config type to a *mask function*
``fn(config, weight, **ctx) -> bool tensor``; :func:`project` applies it, :func:`mask_of`
returns it. The mask is the *structural* support (a kept BCR sub-block or pattern may hold zero
weights), so it always passes the :mod:`ir.schemes` check of ``config.to_ir(...)``.

All functions are pure (the input is never modified) and work on the 2-D weight view
``weight.reshape(out, -1)`` (conv ``out x in*kh*kw``; linear as is; an RNN ``weight_ih`` or
``weight_hh`` with its gates stacked), except the pattern scheme, which needs the 4-D
``(O, I, 3, 3)`` weight of a 3x3 convolution.

Counts are :func:`pruning.schemes.kept_count` (round half up). Ties between equal scores are
broken towards the *lower* index (flat row-major index, row, column, kernel, candidate or
pattern id), so every result is deterministic.

Exact projections (the Euclidean projection onto the set)
    * unstructured: the ``k = kept_count(sparsity, numel)`` largest ``|w|``;
    * filter / column: the ``k`` rows / columns of largest L2 norm;
    * N:M: the ``n`` largest ``|w|`` in each group of ``m`` consecutive weights along a row;
    * pattern + connectivity: each kernel's best library pattern (most kept energy), then the
      ``kept_count(connectivity, O*I)`` kernels whose best pattern keeps the most energy.

BCR (no closed form in general; see :func:`bcr_mask` for the rounding rules)
    Per block, the kept counts follow from the ratios; the kept rows x columns are found by
    enumerating the smaller side's subsets when there are few (exact; always when a block has
    at most 10 rows or 10 columns, e.g. the default 8 x 16), else by a heuristic: columns by L2
    norm, then rows by L2 norm over the kept columns, then alternating refinements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import torch

from ir.pattern import candidate_patterns
from ir.schemes import Pattern as IRPattern
from pruning.schemes import (
    BCRConfig,
    ColumnConfig,
    DenseConfig,
    FilterConfig,
    NMConfig,
    PatternConfig,
    SchemeConfig,
    UnstructuredConfig,
    kept_count,
)

__all__ = ["PROJECTIONS", "register", "project", "mask_of", "project_global", "masks_global",
           "select_pattern_library", "bcr_mask", "BCR_ROUNDS", "BCR_EXACT_SUBSETS"]

MaskFn = Callable[..., torch.Tensor]
PROJECTIONS: dict[type[SchemeConfig], MaskFn] = {}
BCR_ROUNDS = 8            # alternating refinements of the BCR heuristic
BCR_EXACT_SUBSETS = 256   # BCR blocks are solved exactly up to this many subsets of a side


def register(config_type: type[SchemeConfig]) -> Callable[[MaskFn], MaskFn]:
    """Decorator: register ``fn(config, weight, **ctx) -> bool mask`` for ``config_type``."""
    def deco(fn: MaskFn) -> MaskFn:
        PROJECTIONS[config_type] = fn
        return fn
    return deco


def _check_weight(weight: Any, min_dim: int = 2) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"Weight must be a torch.Tensor, not {type(weight).__name__}")
    if not weight.is_floating_point():
        raise TypeError(f"Weight must be a floating-point tensor, not dtype {weight.dtype}")
    if weight.dim() < min_dim:
        raise ValueError(f"Weight must have at least {min_dim} dimensions, not shape "
                         f"{list(weight.shape)}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("Weight contains NaN or infinity")
    return weight.detach()


def _lookup(config: Any) -> MaskFn:
    fn = PROJECTIONS.get(type(config))
    if fn is None:
        allowed = ", ".join(sorted(t.__name__ for t in PROJECTIONS))
        raise TypeError(f"No projection for {type(config).__name__}; allowed: {allowed}")
    return fn


def mask_of(config: SchemeConfig, weight: torch.Tensor, **ctx: Any) -> torch.Tensor:
    """The kept support of ``weight``'s projection under ``config``: a bool tensor of
    ``weight``'s shape and device. ``ctx`` is passed to the scheme's mask function (pattern:
    ``library=``)."""
    return _lookup(config)(config, _check_weight(weight), **ctx)


def project(config: SchemeConfig, weight: torch.Tensor, **ctx: Any) -> torch.Tensor:
    """The projection of ``weight`` onto ``config``'s constraint set (see the module notes):
    a new tensor of ``weight``'s shape, dtype and device, ``weight`` where :func:`mask_of`
    keeps and ``+0.0`` elsewhere."""
    w = _check_weight(weight)
    mask = _lookup(config)(config, w, **ctx)
    return torch.where(mask, w, torch.zeros((), dtype=w.dtype, device=w.device))


def _rank_desc(score: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Rank of each entry along ``dim`` by decreasing score, ties to the lower index."""
    order = torch.argsort(-score, dim=dim, stable=True)
    return torch.argsort(order, dim=dim, stable=True)


def _top_flat(score: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest entries of a 1-D score, ties to the lower index; O(n)."""
    n = score.numel()
    if k >= n or k <= 0:
        return torch.full((n,), k > 0, dtype=torch.bool, device=score.device)
    t = torch.kthvalue(score, n - k + 1).values      # the k-th largest score
    keep = score > t
    ties = torch.nonzero(score == t).flatten()[:k - int(keep.sum())]
    keep[ties] = True
    return keep


@register(DenseConfig)
def _dense(config: DenseConfig, weight: torch.Tensor, **ctx: Any) -> torch.Tensor:
    return torch.ones_like(weight, dtype=torch.bool)


@register(UnstructuredConfig)
def _unstructured(config: UnstructuredConfig, weight: torch.Tensor, **ctx: Any) -> torch.Tensor:
    if config.scope == "global":
        raise ValueError("An unstructured config with scope='global' is projected across layers: "
                         "use project_global(configs, weights)")
    k = kept_count(config.sparsity, weight.numel())
    return _top_flat(weight.abs().flatten(), k).reshape(weight.shape)


@register(FilterConfig)
def _filter(config: FilterConfig, weight: torch.Tensor, **ctx: Any) -> torch.Tensor:
    w2 = weight.reshape(weight.shape[0], -1).double()
    keep = _top_flat(w2.square().sum(dim=1), kept_count(config.sparsity, w2.shape[0]))
    return keep[:, None].expand(w2.shape).reshape(weight.shape)


@register(ColumnConfig)
def _column(config: ColumnConfig, weight: torch.Tensor, **ctx: Any) -> torch.Tensor:
    w2 = weight.reshape(weight.shape[0], -1).double()
    keep = _top_flat(w2.square().sum(dim=0), kept_count(config.sparsity, w2.shape[1]))
    return keep[None, :].expand(w2.shape).reshape(weight.shape)


@register(NMConfig)
def _nm(config: NMConfig, weight: torch.Tensor, **ctx: Any) -> torch.Tensor:
    w2 = weight.reshape(weight.shape[0], -1).abs().double()
    rows, cols = w2.shape
    groups = -(-cols // config.m)
    padded = torch.full((rows, groups * config.m), -1.0, dtype=torch.float64,
                        device=w2.device)                        # padding ranks last
    padded[:, :cols] = w2
    keep = _rank_desc(padded.reshape(rows, groups, config.m)) < config.n
    return keep.reshape(rows, -1)[:, :cols].reshape(weight.shape)


# ------------------------------------------------------------------------------------ pattern
def _kernels(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError("Pattern pruning needs a 3x3 convolution weight (O, I, 3, 3), not shape "
                         f"{list(weight.shape)}")
    return weight.detach().reshape(-1, 9).double()


def _best_fit(kernels: torch.Tensor, library: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per kernel (rows of ``kernels``, 9 wide): the energy kept by its best library pattern
    and that pattern's id (ties to the lower id)."""
    lib = torch.as_tensor(library.reshape(len(library), 9), dtype=torch.float64,
                          device=kernels.device)
    energy = kernels.square() @ lib.T                            # (n_kernels, K)
    best = torch.argsort(-energy, dim=1, stable=True)[:, 0]      # best, ties to lowest id
    return energy.gather(1, best[:, None]).squeeze(1), best


def select_pattern_library(weights: torch.Tensor | Iterable[torch.Tensor], library_size: int = 8,
                           keep: int = 4) -> np.ndarray:
    """Choose a ``(library_size, 3, 3)`` uint8 pattern library from trained weights.

    ``weights`` is one ``(O, I, 3, 3)`` tensor or several, whose kernels vote together. Each
    kernel with a non-zero weight votes for its best-fitting candidate: the
    :func:`ir.pattern.candidate_patterns` pattern of ``keep`` positions (1 to 9, centre kept)
    keeping the most energy, ties to the lower candidate index. The ``library_size`` candidates
    (1 to ``C(8, keep - 1)``) with the most votes form the library, most votes first; ties, and
    unvoted candidates filling a library that few kernels vote for, go by candidate index.
    """
    config = PatternConfig(library_size=library_size, keep=keep)     # validates both
    cands = candidate_patterns(config.keep)
    tensors = [weights] if isinstance(weights, torch.Tensor) else list(weights)
    votes = torch.zeros(len(cands), dtype=torch.int64)
    for w in tensors:
        k = _kernels(_check_weight(w, 4))
        energy, best = _best_fit(k, cands)
        voting = k.square().sum(dim=1) > 0
        votes += torch.bincount(best[voting].cpu(), minlength=len(cands))
    order = torch.argsort(-votes, stable=True)[:config.library_size].numpy()
    return cands[order].copy()


def _as_library(library: Any, config: PatternConfig) -> np.ndarray:
    lib = IRPattern(patterns=tuple(np.asarray(p).reshape(-1).tolist() for p in library)).library()
    if int(lib[0].sum()) != config.keep:
        raise ValueError(f"Library patterns keep {int(lib[0].sum())} weights, but the config "
                         f"keeps {config.keep}")
    return lib


@register(PatternConfig)
def _pattern(config: PatternConfig, weight: torch.Tensor, *, library: Any = None,
             **ctx: Any) -> torch.Tensor:
    """Joint pattern + connectivity projection. Without ``library``, the library is selected
    from ``weight`` alone with :func:`select_pattern_library` (ADMM should select it once, on
    the trained weights, and pass it in)."""
    k = _kernels(weight)
    if library is None:
        library = select_pattern_library(weight, config.library_size, config.keep)
    lib = _as_library(library, config)
    energy, best = _best_fit(k, lib)
    kept = _top_flat(energy, kept_count(config.connectivity, k.shape[0]))
    pats = torch.as_tensor(lib.reshape(len(lib), 9).astype(bool), device=weight.device)
    return (pats[best] & kept[:, None]).reshape(weight.shape)


# ---------------------------------------------------------------------------------------- BCR
def _pick(score: torch.Tensor, real: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The ``k`` best real entries along the last axis (padding scores -1, so never wins)."""
    return _rank_desc(torch.where(real, score, -1.0)) < k


def _rows_by_enumeration(energy: torch.Tensor, heights: list[int], kr: list[int],
                         col_real: torch.Tensor, kc: torch.Tensor) -> torch.Tensor:
    """Exact kept rows ``(gr, gc, br)`` of blocked ``energy`` ``(gr, gc, br, bc)``: for every
    ``kr``-subset of a block's real rows (lexicographic order) the best ``kc`` columns are the
    ones of most energy over those rows; the first subset whose best columns keep the most
    wins."""
    gr, gc, br, bc = energy.shape
    keep_r = torch.zeros(gr, gc, br, dtype=torch.bool, device=energy.device)
    for h, k in sorted(set(zip(heights, kr, strict=True))):
        idx = [i for i in range(gr) if (heights[i], kr[i]) == (h, k)]
        subsets = torch.zeros(math.comb(h, k), br, dtype=torch.float64, device=energy.device)
        for c, combo in enumerate(combinations(range(h), k)):
            subsets[c, list(combo)] = 1.0
        sub = energy[idx].reshape(-1, br, bc)                            # (blocks, br, bc)
        real = col_real.expand(len(idx), gc, bc).reshape(-1, 1, bc)
        need = (kc - 1).expand(len(idx), gc, 1).reshape(-1, 1, 1)
        best = torch.empty(len(sub), dtype=torch.long, device=energy.device)
        step = max(1, 2**22 // (len(subsets) * bc))                      # bounded memory
        for s in range(0, len(sub), step):
            col = torch.where(real[s:s + step],
                              torch.einsum("cr,brl->bcl", subsets, sub[s:s + step]), -1.0)
            top = col.sort(dim=-1, descending=True).values.cumsum(-1)
            value = top.gather(-1, need[s:s + step].expand(-1, len(subsets), 1)).squeeze(-1)
            best[s:s + step] = value.argmax(dim=1)                       # the first best
        keep_r[idx] = subsets[best].bool().reshape(len(idx), gc, br)
    return keep_r


def bcr_mask(weight: torch.Tensor, block: tuple[int, int], row_sparsity: float,
             col_sparsity: float) -> torch.Tensor:
    """The BCR projection's mask of a 2-D (or 2-D-viewed) ``weight``.

    Rounding rules, per block of ``h x w`` (``h <= br``, ``w <= bc``; smaller at the bottom and
    right edges):

    * kept rows ``kr = max(1, kept_count(row_sparsity, h))``, i.e.
      ``max(1, floor((1 - row_sparsity) * h + 1/2))``;
    * kept columns ``kc = max(1, kept_count(col_sparsity, w))``;
    * a block whose weights are all zero keeps nothing (its distance is 0 either way);
    * every other block keeps exactly its ``kr`` rows x ``kc`` columns.

    Selection, to keep the most energy (sum of squares) per block:

    * when the rows or the columns of the blocks have at most :data:`BCR_EXACT_SUBSETS`
      possible kept subsets (``C(h, kr)`` or ``C(w, kc)``; always when ``br <= 10`` or
      ``bc <= 10``), every subset of the smaller side is tried with the best columns (rows)
      for it, the first best subset in lexicographic order wins: exact;
    * otherwise (a heuristic): columns by L2 norm over the block, rows by L2 norm over the kept
      columns, then alternately columns given the rows and rows given the columns, until
      unchanged or :data:`BCR_ROUNDS` rounds; no round loses energy.

    Ties go to the lower index. The result always passes :func:`ir.bcr.bcr_violations`.
    """
    config = BCRConfig(block, row_sparsity, col_sparsity)                  # validates them
    (br, bc), w = config.block, _check_weight(weight)
    row_sparsity, col_sparsity = config.row_sparsity, config.col_sparsity
    w2 = w.reshape(w.shape[0], -1).double()
    rows, cols = w2.shape
    gr, gc = -(-rows // br), -(-cols // bc)
    padded = torch.zeros(gr * br, gc * bc, dtype=torch.float64, device=w.device)
    padded[:rows, :cols] = w2
    energy = padded.square().reshape(gr, br, gc, bc).transpose(1, 2)      # (gr, gc, br, bc)
    heights = [min(br, rows - i * br) for i in range(gr)]
    widths = [min(bc, cols - j * bc) for j in range(gc)]
    kr = [max(1, kept_count(row_sparsity, h)) for h in heights]
    kc = [max(1, kept_count(col_sparsity, v)) for v in widths]
    row_real = (torch.arange(gr * br, device=w.device) < rows).reshape(gr, 1, br)
    col_real = (torch.arange(gc * bc, device=w.device) < cols).reshape(1, gc, bc)
    kr_t = torch.tensor(kr, device=w.device).reshape(gr, 1, 1)
    kc_t = torch.tensor(kc, device=w.device).reshape(1, gc, 1)
    n_rows = max(math.comb(h, k) for h, k in zip(heights, kr, strict=True))
    n_cols = max(math.comb(v, k) for v, k in zip(widths, kc, strict=True))
    if min(n_rows, n_cols) <= BCR_EXACT_SUBSETS and n_rows <= n_cols:
        keep_r = _rows_by_enumeration(energy, heights, kr, col_real, kc_t)
        keep_c = _pick((energy * keep_r[..., None]).sum(2), col_real, kc_t)
    elif min(n_rows, n_cols) <= BCR_EXACT_SUBSETS:
        e_t = energy.transpose(0, 1).transpose(2, 3)                       # the transpose
        keep_c = _rows_by_enumeration(e_t, widths, kc, row_real.transpose(0, 1),
                                      kr_t.transpose(0, 1)).transpose(0, 1)
        keep_r = _pick((energy * keep_c[:, :, None, :]).sum(3), row_real, kr_t)
    else:
        keep_c = _pick(energy.sum(2), col_real, kc_t)
        keep_r = _pick((energy * keep_c[:, :, None, :]).sum(3), row_real, kr_t)
        for _ in range(BCR_ROUNDS):
            new_c = _pick((energy * keep_r[..., None]).sum(2), col_real, kc_t)
            new_r = _pick((energy * new_c[:, :, None, :]).sum(3), row_real, kr_t)
            if torch.equal(new_c, keep_c) and torch.equal(new_r, keep_r):
                break
            keep_c, keep_r = new_c, new_r
    nonzero = energy.sum((2, 3)) > 0
    m = keep_r[:, :, :, None] & keep_c[:, :, None, :] & nonzero[:, :, None, None]
    return m.transpose(1, 2).reshape(gr * br, gc * bc)[:rows, :cols].reshape(w.shape)


@register(BCRConfig)
def _bcr(config: BCRConfig, weight: torch.Tensor, **ctx: Any) -> torch.Tensor:
    return bcr_mask(weight, config.block, config.row_sparsity, config.col_sparsity)


# ------------------------------------------------------------------------------------- global
def masks_global(configs: Sequence[SchemeConfig],
                 weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Masks of a whole model: ``configs[i]`` applies to ``weights[i]``.

    The weights whose config is an :class:`UnstructuredConfig` with ``scope="global"`` are
    pruned together: the ``kept_count(sparsity, total numel)`` largest ``|w|`` over all of them
    are kept (ties to the earlier weight, then the lower flat index); all global configs must
    share one sparsity. Every other weight gets :func:`mask_of` of its own config.
    """
    if len(configs) != len(weights):
        raise ValueError(f"Got {len(configs)} configs for {len(weights)} weights")
    ws = [_check_weight(w) for w in weights]
    out: list[torch.Tensor | None] = [None] * len(ws)
    glob = [i for i, c in enumerate(configs)
            if isinstance(c, UnstructuredConfig) and c.scope == "global"]
    for i, (c, w) in enumerate(zip(configs, ws, strict=True)):
        if i not in glob:
            out[i] = mask_of(c, w)
    if glob:
        sparsities = sorted({configs[i].sparsity for i in glob})
        if len(sparsities) > 1:
            raise ValueError("Global unstructured configs must share one sparsity, not "
                             + " and ".join(map(repr, sparsities)))
        flat = torch.cat([ws[i].abs().flatten().double().cpu() for i in glob])
        keep = _top_flat(flat, kept_count(sparsities[0], flat.numel()))
        start = 0
        for i in glob:
            n = ws[i].numel()
            out[i] = keep[start:start + n].reshape(ws[i].shape).to(ws[i].device)
            start += n
    return [m for m in out if m is not None]


def project_global(configs: Sequence[SchemeConfig],
                   weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Project every weight of a model (see :func:`masks_global`); pure, shapes and dtypes
    kept. With global unstructured configs this is the exact projection onto "at most ``k``
    non-zeros across those layers"."""
    masks = masks_global(configs, weights)
    return [torch.where(m, w.detach(), torch.zeros((), dtype=w.dtype, device=w.device))
            for m, w in zip(masks, weights, strict=True)]
