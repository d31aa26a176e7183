"""Scheme configs: validation messages, ratio conversion, kept counts and ir records."""

import dataclasses
import math

import numpy as np
import pytest

from ir import schemes as irs
from ir.pattern import candidate_patterns
from pruning.schemes import (
    CONFIG_KINDS,
    BCRConfig,
    ColumnConfig,
    DenseConfig,
    FilterConfig,
    NMConfig,
    PatternConfig,
    UnstructuredConfig,
    kept_count,
    ratio_from_sparsity,
    sparsity_from_ratio,
)


@pytest.mark.parametrize("make, exc, message", [
    (lambda: UnstructuredConfig(1.2), ValueError, "Sparsity must be a number in [0, 1), not 1.2"),
    (lambda: UnstructuredConfig(1), ValueError, "Sparsity must be a number in [0, 1), not 1"),
    (lambda: UnstructuredConfig(-0.1), ValueError,
     "Sparsity must be a number in [0, 1), not -0.1"),
    (lambda: UnstructuredConfig(math.nan), ValueError,
     "Sparsity must be a number in [0, 1), not nan"),
    (lambda: UnstructuredConfig("0.5"), TypeError,
     "Sparsity must be a number in [0, 1), not '0.5'"),
    (lambda: UnstructuredConfig(True), TypeError, "Sparsity must be a number in [0, 1), not True"),
    (lambda: UnstructuredConfig(0.5, scope="model"), ValueError,
     "Scope must be 'layer' or 'global', not 'model'"),
    (lambda: UnstructuredConfig(0.5, scope=5), TypeError,      # was a ValueError
     "Scope must be 'layer' or 'global', not 5"),
    (lambda: UnstructuredConfig(0.5, connected="yes"), TypeError,
     "Connected must be true or false, not 'yes'"),
    (lambda: UnstructuredConfig(0.5, index_bits=0), ValueError,
     "Index bits must be an integer from 1 to 16, not 0"),
    (lambda: FilterConfig(1.0), ValueError, "Sparsity must be a number in [0, 1), not 1.0"),
    (lambda: ColumnConfig(None), TypeError, "Sparsity must be a number in [0, 1), not None"),
    (lambda: PatternConfig(library_size=0), ValueError,
     "Library size must be an integer from 1 to 56, not 0"),
    (lambda: PatternConfig(library_size=57), ValueError,
     "Library size must be an integer from 1 to 56, not 57"),
    (lambda: PatternConfig(library_size=29, keep=3), ValueError,
     "Library size must be an integer from 1 to 28, not 29"),
    (lambda: PatternConfig(library_size=8.0), TypeError,
     "Library size must be an integer from 1 to 56, not 8.0"),
    (lambda: PatternConfig(keep=10), ValueError, "Pattern size must be an integer from 1 to 9, not 10"),
    (lambda: PatternConfig(connectivity=1.5), ValueError,
     "Connectivity must be a number in [0, 1), not 1.5"),
    (lambda: BCRConfig(block=(0, 4)), ValueError,
     "Block must be a pair of positive integers, not (0, 4)"),
    (lambda: BCRConfig(block=8), TypeError, "Block must be a pair of positive integers, not 8"),
    (lambda: BCRConfig(block=(8, 4, 2)), TypeError,
     "Block must be a pair of positive integers, not (8, 4, 2)"),
    (lambda: BCRConfig(row_sparsity=1.2), ValueError,
     "Row sparsity must be a number in [0, 1), not 1.2"),
    (lambda: BCRConfig(col_sparsity=-1), ValueError,
     "Column sparsity must be a number in [0, 1), not -1"),
    (lambda: NMConfig(n=0), ValueError, "N must be a positive integer, not 0"),
    (lambda: NMConfig(m=4.0), TypeError, "M must be a positive integer, not 4.0"),
    (lambda: NMConfig(n=5, m=4), ValueError, "N must not exceed M, not 5:4"),
])
def test_config_errors(make, exc, message):
    with pytest.raises(exc) as info:
        make()
    assert str(info.value) == message


def test_configs_normalise_and_freeze():
    c = UnstructuredConfig(np.float32(0.5))
    assert type(c.sparsity) is float and c.sparsity == 0.5 and c.scope == "layer"
    assert BCRConfig(block=[4, np.int64(2)]).block == (4, 2)
    assert FilterConfig(0).sparsity == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.sparsity = 0.1
    assert NMConfig(2, 4).sparsity == 0.5
    assert PatternConfig().candidates().shape == (56, 3, 3)


@pytest.mark.parametrize("ratio, sparsity", [(85, 1 - 1 / 85), (2, 0.5), (1.25, 0.2)])
def test_sparsity_from_ratio(ratio, sparsity):
    assert sparsity_from_ratio(ratio) == pytest.approx(sparsity, abs=1e-15)
    assert ratio_from_sparsity(sparsity_from_ratio(ratio)) == pytest.approx(ratio)


@pytest.mark.parametrize("ratio, exc", [(1, ValueError), (0.5, ValueError), (-3, ValueError),
                                        (math.inf, ValueError), ("85", TypeError),
                                        (True, TypeError)])
def test_sparsity_from_ratio_errors(ratio, exc):
    with pytest.raises(exc) as info:
        sparsity_from_ratio(ratio)
    assert str(info.value) == ("Compression ratio must be a finite number greater than 1, "
                               f"not {ratio!r}")


@pytest.mark.parametrize("sparsity, n, kept", [
    (0.0, 10, 10), (0.5, 10, 5), (0.65, 10, 4), (0.7, 10, 3), (0.75, 2, 1), (0.8, 2, 0),
    (0.99, 10, 0), (0.25, 6, 5), (0.5, 0, 0),
])
def test_kept_count_rounds_half_up(sparsity, n, kept):
    assert kept_count(sparsity, n) == kept


def test_to_ir_records():
    assert DenseConfig().to_ir() == irs.Dense()
    assert UnstructuredConfig(0.9, index_bits=5).to_ir() == irs.Unstructured(0.9, 5)
    assert FilterConfig(0.5).to_ir() == irs.Filter(0.5)
    assert ColumnConfig(0.25).to_ir() == irs.Column(0.25)
    assert NMConfig(1, 3).to_ir() == irs.NM(1, 3)
    assert BCRConfig((4, 8), 0.5, 0.75).to_ir() == irs.BCR((4, 8), row_ratio=0.5, col_ratio=0.75)
    lib = candidate_patterns()[[3, 0, 7]]
    rec = PatternConfig(library_size=3, connectivity=0.5).to_ir(library=lib)
    assert isinstance(rec, irs.Pattern) and rec.connectivity == 0.5
    assert np.array_equal(rec.library(), lib)
    assert irs.scheme_from_json(rec.to_json()) == rec
    with pytest.raises(ValueError) as info:
        PatternConfig().to_ir()
    assert str(info.value) == "A pattern config needs its library: to_ir(library=...)"


def test_kinds_match_ir():
    assert set(CONFIG_KINDS) == set(irs.SCHEME_KINDS)
    examples = {"dense": DenseConfig(), "unstructured": UnstructuredConfig(0.5),
                "filter": FilterConfig(0.5), "column": ColumnConfig(0.5), "nm": NMConfig(),
                "bcr": BCRConfig(), "pattern": PatternConfig()}
    for kind, config in examples.items():
        assert isinstance(config, CONFIG_KINDS[kind])
        ctx = {"library": candidate_patterns()[:8]} if kind == "pattern" else {}
        assert config.to_ir(**ctx).kind == kind
