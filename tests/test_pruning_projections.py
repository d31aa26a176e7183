"""Projections: exactness against brute force, the BCR heuristic, pattern libraries, ir records."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ir import Layer
from ir import schemes as irs
from ir.bcr import bcr_violations
from ir.pattern import candidate_patterns
from pruning.projections import (
    PROJECTIONS,
    bcr_mask,
    mask_of,
    masks_global,
    project,
    project_global,
    select_pattern_library,
)
from pruning.schemes import (
    BCRConfig,
    ColumnConfig,
    DenseConfig,
    FilterConfig,
    NMConfig,
    PatternConfig,
    UnstructuredConfig,
    kept_count,
)

ALL_MASKS_12 = np.array(list(itertools.product((0, 1), repeat=12)), dtype=bool)   # (4096, 12)


def _dist2(w: torch.Tensor, p: torch.Tensor) -> float:
    return float(((w.double() - p.double()) ** 2).sum())


def _brute(w: torch.Tensor, feasible) -> float:
    """Smallest ||W - W*M||^2 over all masks M of a 12-entry weight that ``feasible`` (given
    every mask at once, shape ``(4096, *w.shape)``, returning 4096 bools) accepts."""
    assert w.numel() == 12
    w2 = w.double().reshape(-1).numpy() ** 2
    ok = feasible(ALL_MASKS_12.reshape(-1, *w.shape))
    return float(((~ALL_MASKS_12[ok]) * w2).sum(axis=1).min())


def _count(masks: np.ndarray) -> np.ndarray:
    return masks.reshape(len(masks), -1).sum(axis=1)


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_unstructured_is_exact(sparsity):
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        w = torch.randn(3, 4, generator=gen)
        config = UnstructuredConfig(sparsity)
        k = kept_count(sparsity, 12)
        p = project(config, w)
        assert int(mask_of(config, w).sum()) == k
        brute = _brute(w, lambda ms, k=k: _count(ms) <= k)
        assert _dist2(w, p) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("config, axis, n", [(FilterConfig(0.5), 1, 4), (FilterConfig(0.75), 1, 4),
                                             (ColumnConfig(1 / 3), 0, 3),
                                             (ColumnConfig(0.6), 0, 3)])
def test_filter_and_column_are_exact(config, axis, n):
    gen = torch.Generator().manual_seed(2)
    rec = config.to_ir()
    k = kept_count(config.sparsity, n)
    for _ in range(3):
        w = torch.randn(4, 3, generator=gen)
        p, m = project(config, w), mask_of(config, w)
        assert rec.violation(m.numpy()) is None
        assert int(m.numpy().any(axis=axis).sum()) == k

        def feasible(ms, k=k):
            ax = axis + 1                      # rows (filter) or columns (column) are whole
            whole = (ms.all(axis=ax) | ~ms.any(axis=ax)).all(axis=1)
            return whole & (ms.any(axis=ax).sum(axis=1) <= k)

        assert _dist2(w, p) == pytest.approx(_brute(w, feasible), abs=1e-12)


def _nm_ok(ms: np.ndarray, n: int, m: int) -> np.ndarray:
    k, rows, cols = ms.shape
    groups = -(-cols // m)
    padded = np.zeros((k, rows, groups * m), dtype=int)
    padded[:, :, :cols] = ms
    return (padded.reshape(k, rows, groups, m).sum(axis=3) <= n).all(axis=(1, 2))


@pytest.mark.parametrize("n, m, shape", [(2, 4, (2, 6)), (1, 3, (3, 4)), (3, 5, (2, 6)),
                                         (1, 1, (2, 6))])
def test_nm_is_exact(n, m, shape):
    gen = torch.Generator().manual_seed(3)
    config = NMConfig(n, m)
    rec = config.to_ir()
    for _ in range(2):
        w = torch.randn(*shape, generator=gen)
        p, mask = project(config, w), mask_of(config, w)
        assert rec.violation(mask.numpy()) is None
        brute = _brute(w, lambda ms: _nm_ok(ms, n, m))
        assert _dist2(w, p) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("connectivity", [0.0, 0.25, 0.5, 0.75])
def test_pattern_with_connectivity_is_exact(connectivity):
    gen = torch.Generator().manual_seed(4)
    cands = candidate_patterns()
    for _ in range(3):
        lib = cands[torch.randperm(56, generator=gen)[:3].numpy()]
        w = torch.randn(2, 2, 3, 3, generator=gen)
        config = PatternConfig(library_size=3, connectivity=connectivity)
        mask = mask_of(config, w, library=lib)
        rec = config.to_ir(library=lib)
        assert rec.violation(mask.numpy().astype(np.uint8)) is None
        k = kept_count(connectivity, 4)
        assert int(mask.reshape(4, 9).any(dim=1).sum()) == k
        # brute force: each kernel keeps nothing or one library pattern, at most k kernels kept
        kern2 = w.double().reshape(4, 9).numpy() ** 2
        total = kern2.sum()
        kept = kern2 @ lib.reshape(3, 9).T.astype(float)         # (4 kernels, 3 patterns)
        best = max(sum(kept[i, c] for i, c in enumerate(choice) if c < 3)
                   for choice in itertools.product(range(4), repeat=4)
                   if sum(c < 3 for c in choice) <= k)
        p = project(config, w, library=lib)
        assert _dist2(w, p) == pytest.approx(total - best, abs=1e-12)


def test_ties_go_to_the_lower_index():
    w = torch.ones(2, 3)
    assert mask_of(UnstructuredConfig(0.5), w).flatten().tolist() == [1, 1, 1, 0, 0, 0]
    assert mask_of(FilterConfig(0.5), torch.ones(4, 2))[:, 0].tolist() == [1, 1, 0, 0]
    assert mask_of(ColumnConfig(0.5), torch.ones(2, 4))[0].tolist() == [1, 1, 0, 0]
    assert mask_of(NMConfig(2, 4), torch.ones(1, 6))[0].tolist() == [1, 1, 0, 0, 1, 1]
    assert mask_of(BCRConfig((2, 2), 0.5, 0.5), torch.ones(2, 2)).tolist() == [[1, 0], [0, 0]]
    kern = torch.ones(1, 2, 3, 3)
    m = mask_of(PatternConfig(2, 0.5), kern, library=candidate_patterns()[[5, 2]])
    assert m[0, 0].flatten().tolist() == candidate_patterns()[5].flatten().tolist()
    assert not m[0, 1].any()


def test_projections_are_pure_idempotent_and_keep_dtype():
    gen = torch.Generator().manual_seed(5)
    lib = candidate_patterns()[:4]
    configs = [DenseConfig(), UnstructuredConfig(0.7), FilterConfig(0.5), ColumnConfig(0.5),
               NMConfig(2, 4), BCRConfig((2, 4), 0.5, 0.5), PatternConfig(4, 0.5)]
    for dtype in (torch.float32, torch.float64):
        w = torch.randn(4, 3, 3, 3, generator=gen, dtype=dtype)
        before = w.clone()
        for config in configs:
            ctx = {"library": lib} if isinstance(config, PatternConfig) else {}
            p = project(config, w, **ctx)
            assert p.shape == w.shape and p.dtype == dtype
            assert torch.equal(w, before)
            assert torch.equal(project(config, p, **ctx), p)
            m = mask_of(config, w, **ctx)
            assert m.dtype == torch.bool and torch.equal(p, torch.where(m, w, 0.0))
    assert set(PROJECTIONS) == {type(c) for c in configs}


def test_global_unstructured_is_exact_across_layers():
    gen = torch.Generator().manual_seed(6)
    a, b = torch.randn(2, 3, generator=gen), 3 * torch.randn(3, 2, generator=gen)
    config = UnstructuredConfig(0.5, scope="global")
    pa, pb = project_global([config, config], [a, b])
    both = torch.cat([a.flatten(), b.flatten()]).reshape(3, 4)
    brute = _brute(both, lambda ms: _count(ms) <= 6)
    assert _dist2(a, pa) + _dist2(b, pb) == pytest.approx(brute, abs=1e-12)
    assert int((pa != 0).sum() + (pb != 0).sum()) == 6
    # mixed with per-layer configs, and ties go to the earlier weight
    f = FilterConfig(0.5)
    masks = masks_global([config, f, config], [torch.ones(1, 2), a, torch.ones(1, 2)])
    assert masks[0].tolist() == [[True, True]] and masks[2].tolist() == [[False, False]]
    assert torch.equal(masks[1], mask_of(f, a))


def test_projection_errors():
    w = torch.randn(4, 4)
    cases = [
        (lambda: project(UnstructuredConfig(0.5, scope="global"), w), ValueError,
         "An unstructured config with scope='global' is projected across layers: use "
         "project_global(configs, weights)"),
        (lambda: project(PatternConfig(), w), ValueError,
         "Pattern pruning needs a 3x3 convolution weight (O, I, 3, 3), not shape [4, 4]"),
        (lambda: project(FilterConfig(0.5), w.numpy()), TypeError,
         "Weight must be a torch.Tensor, not ndarray"),
        (lambda: project(FilterConfig(0.5), torch.ones(4, 4, dtype=torch.int32)), TypeError,
         "Weight must be a floating-point tensor, not dtype torch.int32"),
        (lambda: project(FilterConfig(0.5), torch.ones(4)), ValueError,
         "Weight must have at least 2 dimensions, not shape [4]"),
        (lambda: project(FilterConfig(0.5), torch.full((2, 2), float("nan"))), ValueError,
         "Weight contains NaN or infinity"),
        (lambda: project(irs.Filter(0.5), w), TypeError,
         "No projection for Filter; allowed: BCRConfig, ColumnConfig, DenseConfig, FilterConfig, "
         "NMConfig, PatternConfig, UnstructuredConfig"),
        (lambda: project_global([UnstructuredConfig(0.5, "global"),
                                 UnstructuredConfig(0.7, "global")], [w, w]), ValueError,
         "Global unstructured configs must share one sparsity, not 0.5 and 0.7"),
        (lambda: project_global([DenseConfig()], [w, w]), ValueError,
         "Got 1 configs for 2 weights"),
        (lambda: project(PatternConfig(keep=3), torch.ones(1, 1, 3, 3),
                         library=candidate_patterns()[:2]), ValueError,
         "Library patterns keep 4 weights, but the config keeps 3"),
    ]
    for call, exc, message in cases:
        with pytest.raises(exc) as info:
            call()
        assert str(info.value) == message


def _planted(gen: torch.Generator, lib: np.ndarray, o: int, i: int) -> torch.Tensor:
    ids = torch.randint(len(lib), (o * i,), generator=gen)
    on = torch.as_tensor(lib.reshape(len(lib), 9)[ids.numpy()], dtype=torch.float32)
    big = (1 + torch.rand(o * i, 9, generator=gen)) * torch.sign(torch.randn(o * i, 9,
                                                                              generator=gen))
    noise = 0.05 * torch.randn(o * i, 9, generator=gen)
    return (on * big + (1 - on) * noise).reshape(o, i, 3, 3)


def test_library_selection_finds_planted_patterns():
    gen = torch.Generator().manual_seed(7)
    cands = candidate_patterns()
    planted = cands[[1, 17, 30, 44, 55]]
    weights = [_planted(gen, planted, 8, 6), _planted(gen, planted, 4, 8)]
    lib = select_pattern_library(weights, library_size=5)
    assert lib.shape == (5, 3, 3) and lib.dtype == np.uint8
    assert {p.tobytes() for p in lib} == {p.tobytes() for p in planted}
    # with the planted library and no connectivity, the projection keeps the planted support
    config = PatternConfig(5, 0.0)
    for w in weights:
        assert torch.equal(mask_of(config, w, library=lib), w.abs() > 0.5)
    # a larger library is filled with the remaining candidates in index order
    lib8 = select_pattern_library(weights[0], 8)
    assert {p.tobytes() for p in lib8[:5]} == {p.tobytes() for p in planted}
    assert np.array_equal(lib8[5:], cands[[0, 2, 3]])
    # an all-zero weight casts no vote
    assert np.array_equal(select_pattern_library(torch.zeros(2, 2, 3, 3), 3), cands[:3])


def _block_counts(mask: np.ndarray, block: tuple[int, int]):
    rows, cols = mask.shape
    br, bc = block
    for r0 in range(0, rows, br):
        for c0 in range(0, cols, bc):
            sub = mask[r0:r0 + br, c0:c0 + bc]
            yield (r0, c0), sub.any(axis=1).sum(), sub.any(axis=0).sum(), sub.shape


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(1, 13), cols=st.integers(1, 14), br=st.integers(1, 6),
       bc=st.integers(1, 7), rs=st.sampled_from([0.0, 0.25, 0.5, 0.6, 0.75, 0.9]),
       cs=st.sampled_from([0.0, 0.3, 0.5, 0.75, 0.9]), seed=st.integers(0, 2**16),
       zero_block=st.booleans())
def test_bcr_structure_counts_and_quality(rows, cols, br, bc, rs, cs, seed, zero_block):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    if zero_block:
        w[:br, :bc] = 0
    config = BCRConfig((br, bc), rs, cs)
    mask = mask_of(config, w).numpy()
    assert bcr_violations(mask, (br, bc)) == []
    assert config.to_ir().violation(mask) is None
    # documented counts: max(1, kept_count) rows and columns per non-zero block, none when zero
    wn = w.numpy()
    layout = []
    for (r0, c0), kr, kc, (h, wd) in _block_counts(mask, (br, bc)):
        if not wn[r0:r0 + br, c0:c0 + bc].any():
            assert kr == kc == 0
            continue
        assert (kr, kc) == (max(1, kept_count(rs, h)), max(1, kept_count(cs, wd)))
        layout.append((r0, c0, h, wd, kr, kc))
    # at least as close as the best of 100 random feasible points with the same kept counts
    ours = _dist2(w, project(config, w))
    rng = np.random.default_rng(seed)
    m = np.zeros((100, rows, cols), dtype=bool)
    trial = np.arange(100)[:, None, None]
    for r0, c0, h, wd, kr, kc in layout:
        rr = r0 + rng.random((100, h)).argsort(axis=1)[:, :kr]
        cc = c0 + rng.random((100, wd)).argsort(axis=1)[:, :kc]
        m[trial, rr[:, :, None], cc[:, None, :]] = True
    best_random = float(((~m) * wn ** 2).sum(axis=(1, 2)).min())
    assert ours <= best_random + 1e-12


@pytest.mark.parametrize("shape, block, rs, cs", [((3, 5), (3, 3), 0.6, 0.3),
                                                   ((5, 4), (5, 4), 0.5, 0.5),
                                                   ((7, 6), (4, 6), 0.25, 0.5),
                                                   ((6, 9), (6, 2), 0.5, 0.5)])
def test_bcr_is_exact_for_small_blocks(shape, block, rs, cs):
    gen = torch.Generator().manual_seed(10)
    config = BCRConfig(block, rs, cs)
    for _ in range(3):
        w = torch.randn(*shape, generator=gen, dtype=torch.float64)
        wn2 = w.numpy() ** 2
        best_kept = 0.0
        for (r0, c0), kr, kc, (h, wd) in _block_counts(mask_of(config, w).numpy(), block):
            sub = wn2[r0:r0 + h, c0:c0 + wd]
            best_kept += max(sub[np.ix_(rr, cc)].sum()
                             for rr in itertools.combinations(range(h), kr)
                             for cc in itertools.combinations(range(wd), kc))
        assert _dist2(w, project(config, w)) == pytest.approx(wn2.sum() - best_kept, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bcr_heuristic_for_large_blocks(seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(23, 30, generator=gen, dtype=torch.float64)
    config = BCRConfig((12, 14), 0.5, 0.5)          # C(12, 6) = 924 subsets: the heuristic
    mask = mask_of(config, w).numpy()
    assert bcr_violations(mask, (12, 14)) == []
    rng = np.random.default_rng(seed)
    wn2 = w.numpy() ** 2
    ours = float(wn2[~mask].sum())
    for (r0, c0), kr, kc, (h, wd) in _block_counts(mask, (12, 14)):
        kept = wn2[r0:r0 + h, c0:c0 + wd][mask[r0:r0 + h, c0:c0 + wd]].sum()
        for _ in range(100):
            rr, cc = rng.permutation(h)[:kr], rng.permutation(wd)[:kc]
            assert kept >= wn2[r0:r0 + h, c0:c0 + wd][np.ix_(rr, cc)].sum() - 1e-12
    assert ours < float(wn2.sum())


def test_bcr_keeps_weights_and_handles_conv_views():
    gen = torch.Generator().manual_seed(8)
    w = torch.randn(6, 3, 3, 3, generator=gen)
    config = BCRConfig((4, 8), 0.5, 0.5)
    m = mask_of(config, w)
    assert m.shape == w.shape
    assert bcr_violations(m.reshape(6, -1).numpy(), (4, 8)) == []
    assert torch.equal(bcr_mask(w.reshape(6, -1), (4, 8), 0.5, 0.5).reshape(w.shape), m)


def _layer_tensors(w: torch.Tensor, m: torch.Tensor, suffix: str = "") -> dict:
    return {"weight" + suffix: torch.where(m, w, 0.0).numpy().astype(np.float32),
            "mask" + suffix: m.numpy().astype(np.uint8)}


def test_ir_layers_accept_projected_masks_and_records():
    gen = torch.Generator().manual_seed(9)
    w = torch.randn(6, 4, 3, 3, generator=gen)
    shape = {"out_channels": 6, "in_channels": 4, "kernel": [3, 3], "stride": [1, 1],
             "padding": [1, 1], "groups": 1}
    lib = select_pattern_library(w, 4)
    configs = [DenseConfig(), UnstructuredConfig(0.8), FilterConfig(0.5), ColumnConfig(0.5),
               NMConfig(1, 4), BCRConfig((4, 8), 0.5, 0.75), PatternConfig(4, 0.5)]
    for config in configs:
        ctx = {"library": lib} if isinstance(config, PatternConfig) else {}
        layer = Layer(name="conv", op="conv2d", shape=shape, scheme=config.to_ir(**ctx),
                      quant=None, tensors=_layer_tensors(w, mask_of(config, w, **ctx)))
        assert layer.stats.numel == w.numel()
    # an LSTM: every weight matrix (input and hidden parts, gates stacked) pruned with BCR
    ih, hh = torch.randn(16, 5, generator=gen), torch.randn(16, 4, generator=gen)
    config = BCRConfig((4, 4), 0.5, 0.5)
    tensors = _layer_tensors(ih, mask_of(config, ih), "_ih") | _layer_tensors(
        hh, mask_of(config, hh), "_hh")
    Layer(name="lstm", op="lstm", shape={"input_size": 5, "hidden_size": 4,
                                         "gate_order": ["i", "f", "g", "o"]},
          scheme=config.to_ir(), quant=None, tensors=tensors)
