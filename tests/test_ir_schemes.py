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
