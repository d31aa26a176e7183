from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ir.pattern import (
    PatternConv,
    candidate_patterns,
    encode_pattern,
    match_pattern,
    pattern_violations,
)

CANDIDATES = candidate_patterns()


@st.composite
def cases(draw):
    """(w, library, mask, ids): kernel (o, i) keeps pattern ids[o, i] (-1: pruned)."""
    o, i = draw(st.integers(0, 7)), draw(st.integers(0, 7))
    k = draw(st.integers(1, 8))
    pick = draw(st.lists(st.integers(0, 55), min_size=k, max_size=k, unique=True))
    library = CANDIDATES[pick]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pruned = draw(st.sampled_from([0.0, 0.3, 0.8, 1.0]))
    ids = np.where(rng.random((o, i)) < pruned, -1, rng.integers(0, k, (o, i)))
    mask = np.zeros((o, i, 3, 3), dtype=bool)
    mask[ids >= 0] = library[ids[ids >= 0]].astype(bool)
    dtype = draw(st.sampled_from([np.int8, np.int32, np.float32, np.float64]))
    w = (rng.integers(-5, 6, mask.shape) * mask).astype(dtype)  # may hold zeros in a pattern
    return w, library, mask, ids


@settings(max_examples=200, deadline=None)
@given(cases())
def test_roundtrip_with_mask(case):
    w, library, mask, ids = case
    enc = encode_pattern(w, library, mask=mask)
    out = enc.decode()
    assert out.dtype == w.dtype and np.array_equal(out, w)
    o, i = w.shape[:2]
    kept = (ids >= 0).sum(axis=1)
    assert sorted(enc.filter_order.tolist()) == list(range(o))
    assert np.all(np.diff(kept[enc.filter_order]) <= 0)  # descending
    for a, b in zip(enc.filter_order[:-1], enc.filter_order[1:], strict=True):
        assert kept[a] > kept[b] or a < b  # stable
    assert enc.kernel_ptr.tolist() == [0] + np.cumsum(kept[enc.filter_order]).tolist()
    for f, filt in enumerate(enc.filter_order):
        s = slice(enc.kernel_ptr[f], enc.kernel_ptr[f + 1])
        keys = list(zip(enc.pattern_id[s].tolist(), enc.channel[s].tolist(), strict=True))
        assert keys == sorted(keys)
        assert all(ids[filt, c] == p for p, c in keys)
        assert enc.pattern_counts[f].tolist() == [int((ids[filt] == p).sum())
                                                  for p in range(len(library))]
    assert enc.values.shape == (enc.kernel_count, 4) and enc.value_count == 4 * enc.kernel_count
    assert pattern_violations(mask, library) == []


@settings(max_examples=200, deadline=None)
@given(cases())
def test_roundtrip_without_mask(case):
    w, library, _, _ = case
    enc = encode_pattern(w, library)
    assert np.array_equal(enc.decode(), w)
    nz = (w != 0).reshape(*w.shape[:2], 9).any(axis=2)
    assert enc.kernel_count == int(nz.sum())


@settings(max_examples=200, deadline=None)
@given(cases(), st.integers(0, 2**32 - 1))
def test_violations_match_definition(case, seed):
    _, library, mask, _ = case
    rng = np.random.default_rng(seed)
    mask = mask ^ (rng.random(mask.shape) < 0.05)
    expect = [(o, i) for o in range(mask.shape[0]) for i in range(mask.shape[1])
              if mask[o, i].any() and match_pattern(mask[o, i], library) < 0]
    assert pattern_violations(mask.astype(np.uint8), library) == expect


def test_candidate_patterns():
    assert CANDIDATES.shape == (56, 3, 3) and CANDIDATES.dtype == np.uint8
    flat = CANDIDATES.reshape(56, 9)
    assert np.all(flat[:, 4] == 1) and np.all(flat.sum(axis=1) == 4)
    keys = [tuple(np.flatnonzero(p)) for p in flat]
    assert keys == sorted(keys) and len(set(keys)) == 56
    assert keys[0] == (0, 1, 2, 4) and keys[-1] == (4, 6, 7, 8)
    assert candidate_patterns(4, keep_centre=False).shape == (126, 3, 3)
    assert [tuple(np.flatnonzero(p)) for p in candidate_patterns(2, False)] == \
        list(combinations(range(9), 2))
    assert candidate_patterns(1).tolist() == [[[0, 0, 0], [0, 1, 0], [0, 0, 0]]]
    assert candidate_patterns(9).shape == (1, 3, 3)


@pytest.mark.parametrize("k, exc", [(0, ValueError), (10, ValueError), ("4", TypeError),
                                    (4.0, TypeError), (True, TypeError)])
def test_candidate_patterns_error(k, exc):
    with pytest.raises(exc) as info:
        candidate_patterns(k)
    assert str(info.value) == f"Pattern size must be an integer from 1 to 9, not {k!r}"


def test_candidate_patterns_keep_centre_error():
    with pytest.raises(TypeError) as info:
        candidate_patterns(4, keep_centre=1)
    assert str(info.value) == "Keep centre must be a bool, not 1"


def test_match_pattern():
    lib = CANDIDATES[[3, 10, 20]]
    assert match_pattern(lib[1], lib) == 1
    assert match_pattern(lib[2].astype(bool), lib) == 2
    assert match_pattern(np.zeros((3, 3), dtype=np.uint8), lib) == -1
    assert match_pattern(CANDIDATES[0], lib) == -1
    sub = lib[2].copy()
    sub[1, 1] = 0
    assert match_pattern(sub, lib) == -1
    assert match_pattern(sub, lib, subset=True) == 2
    centre = np.zeros((3, 3), dtype=np.uint8)
    centre[1, 1] = 1
    assert match_pattern(centre, lib, subset=True) == 0
    with pytest.raises(ValueError) as info:
        match_pattern(np.ones((2, 3), dtype=np.uint8), lib)
    assert str(info.value) == "Kernel mask must have shape (3, 3), not (2, 3)"


def test_exact_arrays():
    lib = CANDIDATES[[0, 55]]  # {0, 1, 2, 4} and {4, 6, 7, 8}
    w = np.zeros((3, 2, 3, 3), dtype=np.int16)
    w[0, 1].flat[[4, 6, 7, 8]] = [1, 2, 3, 4]
    w[2, 0].flat[[4, 6, 7, 8]] = [5, 6, 7, 8]
    w[2, 1].flat[[0, 1, 2, 4]] = [9, 10, 11, 12]
    enc = encode_pattern(w, lib)
    assert isinstance(enc, PatternConv) and enc.shape == (3, 2, 3, 3)
    assert enc.filter_order.tolist() == [2, 0, 1]
    assert enc.kernel_ptr.tolist() == [0, 2, 3, 3]
    assert enc.channel.tolist() == [1, 0, 1]
    assert enc.pattern_id.tolist() == [0, 1, 1]
    assert enc.values.tolist() == [[9, 10, 11, 12], [5, 6, 7, 8], [1, 2, 3, 4]]
    assert enc.values.dtype == np.int16
    assert enc.positions.tolist() == [[0, 1, 2, 4], [4, 6, 7, 8]]
    assert enc.pattern_counts.tolist() == [[1, 1], [0, 1], [0, 0]]
    # 3 kernels x (clog2(2) + clog2(2)) + 4 offsets x bitlen(3) + 3 filters x clog2(3)
    assert enc.index_bits == 3 * (1 + 1) + 4 * 2 + 3 * 2
    assert np.array_equal(enc.decode(), w)


def test_degenerate_shapes():
    lib = CANDIDATES[:4]
    for shape in [(0, 3, 3, 3), (3, 0, 3, 3), (1, 1, 3, 3)]:
        w = np.zeros(shape, dtype=np.float32)
        enc = encode_pattern(w, lib)
        assert enc.kernel_count == 0 and np.array_equal(enc.decode(), w)


def test_errors():
    lib = CANDIDATES[[0, 55]]
    w = np.zeros((2, 3, 3, 3), dtype=np.int32)
    w[1, 2].flat[[0, 1, 2, 4]] = 1
    mask = w != 0
    w[1, 2, 2, 2] = 7
    with pytest.raises(ValueError) as info:
        encode_pattern(w, lib, mask=mask)
    assert str(info.value) == "Weight is non-zero outside the mask in kernel (filter 1, channel 2)"
    with pytest.raises(ValueError) as info:
        encode_pattern(w, lib)
    assert str(info.value) == "Kernel (filter 1, channel 2) matches no library pattern"
    with pytest.raises(ValueError) as info:
        encode_pattern(w, lib, mask=w != 0)
    assert str(info.value) == "Kernel (filter 1, channel 2) matches no library pattern"
    assert pattern_violations(w != 0, lib) == [(1, 2)]
    with pytest.raises(ValueError) as info:
        encode_pattern(w, lib, mask=mask[:1])
    assert str(info.value) == "Mask shape (1, 3, 3, 3) does not match weight shape (2, 3, 3, 3)"
    with pytest.raises(ValueError) as info:
        encode_pattern(np.zeros((2, 3, 5, 5)), lib)
    assert str(info.value) == "Weight must have shape (O, I, 3, 3), not (2, 3, 5, 5)"
    with pytest.raises(TypeError) as info:
        encode_pattern(w.astype(bool), lib)
    assert str(info.value) == "Weight must be an integer or floating-point array, not dtype bool"
    with pytest.raises(ValueError) as info:
        pattern_violations(np.zeros((3, 3), dtype=bool), lib)
    assert str(info.value) == "Mask must have shape (O, I, 3, 3), not (3, 3)"


@pytest.mark.parametrize("library, exc, msg", [
    (np.zeros((0, 3, 3), dtype=np.uint8), ValueError,
     "Pattern library must have shape (K, 3, 3) with K >= 1, not (0, 3, 3)"),
    (np.ones((3, 3), dtype=np.uint8), ValueError,
     "Pattern library must have shape (K, 3, 3) with K >= 1, not (3, 3)"),
    (np.ones((1, 3, 3)) * 0.5, TypeError,
     "Pattern library must be a boolean or 0/1 integer array, not dtype float64"),
    (np.full((1, 3, 3), 2), ValueError, "Pattern library must contain only 0 and 1"),
    (CANDIDATES[[0, 0]], ValueError, "Pattern library patterns must be distinct"),
    (np.concatenate([CANDIDATES[:1], candidate_patterns(3)[:1]]), ValueError,
     "Pattern library patterns must all keep the same, non-zero number of positions, not [3, 4]"),
    (np.zeros((1, 3, 3), dtype=np.uint8), ValueError,
     "Pattern library patterns must all keep the same, non-zero number of positions, not [0]"),
])
def test_library_errors(library, exc, msg):
    with pytest.raises(exc) as info:
        encode_pattern(np.zeros((1, 1, 3, 3)), library)
    assert str(info.value) == msg
