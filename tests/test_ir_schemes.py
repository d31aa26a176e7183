"""Scheme records: JSON round trip, parameter validation messages, structure checks."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ir.schemes import (
    BCR,
    NM,
    SCHEME_KINDS,
    Column,
    Dense,
    Filter,
    Pattern,
    SchemeError,
    Unstructured,
    scheme_from_json,
)

CROSS = (0, 1, 0, 1, 1, 1, 0, 0, 0)


@pytest.mark.parametrize("scheme", [
    Dense(), Unstructured(sparsity=0.9, index_bits=5), Filter(sparsity=0.5),
    Column(sparsity=0.25), NM(n=2, m=4), BCR(block=(8, 16), row_ratio=0.5, col_ratio=0.25),
    Pattern(patterns=(CROSS,), connectivity=0.5),
])
def test_json_round_trip(scheme):
    rec = scheme.to_json()
    assert rec["kind"] == scheme.kind
    assert scheme_from_json(rec) == scheme


def test_kinds():
    assert sorted(SCHEME_KINDS) == ["bcr", "column", "dense", "filter", "nm", "pattern",
                                    "unstructured"]


@pytest.mark.parametrize("record, message", [
    ({"kind": "bcr", "block": [0, 4]}, "Block size must be a positive integer, not 0"),
    ({"kind": "bcr", "block": 4}, "Block must be a pair of positive integers, not 4"),
    ({"kind": "bcr", "row_ratio": 1.0}, "Row ratio must be a number in [0, 1), not 1.0"),
    ({"kind": "nm", "n": 5, "m": 4}, "N must not exceed M, not 5:4"),
    ({"kind": "unstructured", "index_bits": 0}, "Index bits must be an integer from 1 to 16, not 0"),
    ({"kind": "filter", "sparsity": -0.1}, "Sparsity must be a number in [0, 1), not -0.1"),
    ({"kind": "pattern", "patterns": []}, "Patterns must be a non-empty list of 3x3 0/1 patterns"),
    ({"kind": "pattern", "patterns": [[1, 2, 0, 0, 0, 0, 0, 0, 0]]},
     "Pattern [1, 2, 0, 0, 0, 0, 0, 0, 0] is not a 3x3 0/1 pattern"),
    ({"kind": "pattern", "patterns": [CROSS, (1,) * 9]},
     "Patterns must all keep the same, non-zero number of weights"),
    ({"kind": "dense", "ratio": 3}, "unknown parameter 'ratio' for scheme 'dense'; allowed: none"),
    ({"kind": "nope"}, "unknown scheme kind 'nope'; allowed: bcr, column, dense, filter, nm, "
                       "pattern, unstructured"),
    ([1], "must be an object with a 'kind', not list"),
    ({"kind": ["bcr"]}, "unknown scheme kind ['bcr']; allowed: bcr, column, dense, filter, nm, "
                        "pattern, unstructured"),
    ({"kind": {}}, "unknown scheme kind {}; allowed: bcr, column, dense, filter, nm, "
                   "pattern, unstructured"),
])
def test_bad_parameters(record, message):
    with pytest.raises(SchemeError, match="^" + re.escape(message) + "$"):
        scheme_from_json(record)


def test_column_and_nm_checks():
    m = np.ones((3, 6), np.uint8)
    m[:, 2] = 0
    assert Column().violation(m) is None
    m[1, 4] = 0
    assert Column().violation(m) == "column 4 is partly pruned"
    nm = np.array([[1, 1, 0, 0, 1, 0, 1]], np.uint8)  # groups of 4: [1,1,0,0], [1,0,1]
    assert NM(n=2, m=4).violation(nm) is None
    assert NM(n=1, m=4).violation(nm) == "row 0, group 0 keeps 2 of 4, more than 1"


def test_pattern_needs_3x3():
    p = Pattern(patterns=(CROSS,))
    assert p.violation(np.ones((2, 2, 5, 5), np.uint8)) == (
        "pattern pruning needs 3x3 convolution kernels, not shape [2, 2, 5, 5]")
    ok = np.zeros((2, 2, 3, 3), np.uint8)
    ok[0, 1] = np.array(CROSS).reshape(3, 3)
    assert p.violation(ok) is None


def test_pattern_values_are_checked_before_they_are_made_ints():
    """0.9 became 0, 1.7 became 1 and "1" became 1: a manifest loaded another pattern."""
    from ir.schemes import Pattern, SchemeError

    for bad in ([[1, 1, 0.9], [0, 1, 0], [0, 1, 0]], [[1, 1, "1"], [0, 1, 0], [0, 1, 0]],
                [[1, 1, float("inf")], [0, 1, 0], [0, 1, 0]]):
        with pytest.raises(SchemeError, match="is not a 3x3 0/1 pattern"):
            Pattern(patterns=(bad,))
    ok = Pattern(patterns=(np.array([[1, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=bool),
                           [[1.0, 0, 0], [1, 1, 0], [0, 1, 0]]))
    assert ok.patterns == ((1, 1, 0, 0, 1, 0, 0, 1, 0), (1, 0, 0, 1, 1, 0, 0, 1, 0))


def test_nm_violation_with_a_huge_m_and_empty_views():
    """m = 10**12 padded every row to 10**12 entries (MemoryError), 2**70 failed in numpy; a
    view with no rows failed to reshape."""
    from ir.schemes import NM, matrix_view

    assert NM(2, 10**12).violation(np.ones((3, 5), np.uint8)) == \
        "row 0, group 0 keeps 5 of 1000000000000, more than 2"
    assert NM(2, 2**70).violation(np.eye(3, dtype=np.uint8)) is None
    assert matrix_view(np.zeros((0, 5))).shape == (0, 5)
    assert matrix_view(np.zeros((0, 2, 3, 3))).shape == (0, 18)
    assert NM(2, 4).violation(np.ones((0, 3), np.uint8)) is None
    assert NM(2, 4).violation(np.ones((3, 0), np.uint8)) is None
    rng = np.random.default_rng(0)
    for _ in range(300):     # against a brute force over groups
        r, c, m = (int(v) for v in rng.integers(1, 9, 3))
        n = int(rng.integers(1, m + 1))
        mask = (rng.random((r, c)) < 0.6).astype(np.uint8)
        bad = [(i, g // m) for i in range(r) for g in range(0, c, m)
               if mask[i, g:g + m].sum() > n]
        got = NM(n, m).violation(mask)
        assert (got is None) == (not bad)
        if bad:
            assert got.startswith(f"row {bad[0][0]}, group {bad[0][1]} keeps ")
