"""Modelled aarch64 cost: exact executed instructions from qemu, llvm-mca cycle band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mobile.build import build_kernel
from mobile.check import random_inputs
from mobile.cost import MCA_MODELS, cost_ratio, kernel_cost

CACHE = Path(__file__).resolve().parent.parent / ".mobile_cache"


@pytest.fixture(scope="module")
def require_cost_tools():
    from mobile.toolchain import missing_tools

    missing = missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `codesign doctor --install`")


def _csr(nnz_per_row):
    w = np.zeros((8, 32), np.float32)
    for r in range(8):
        w[r, :nnz_per_row] = 1.0
    return build_kernel("csr", weight=w, mask=w != 0, target="aarch64", cache_dir=CACHE)


def test_instruction_counts_are_exact_and_linear(require_cost_tools):
    costs = [kernel_cost(k, random_inputs(k)) for k in (_csr(4), _csr(5), _csr(6))]
    again = kernel_cost(_csr(4), random_inputs(_csr(4)))
    assert again == costs[0]
    # one more kept weight per row adds the same inner-loop body on each of the 8 rows
    d1 = costs[1].instructions - costs[0].instructions
    d2 = costs[2].instructions - costs[1].instructions
    assert d1 == d2 and d1 % 8 == 0 and 3 <= d1 // 8 <= 12
    for c in costs:
        assert set(c.cycles) == {m for m, _ in MCA_MODELS}
        assert 0 < c.cycles["neoverse-n1"] and 0 < c.cycles["cortex-a57"]


def test_sparse_dense_ratio_band(require_cost_tools):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 128)).astype(np.float32)
    m = np.zeros(w.shape, bool)
    m[::4, ::2] = True  # 1/8 dense, rows and columns kept per 16x32 block: BCR
    dense = build_kernel("dense", weight=w, target="aarch64", cache_dir=CACHE)
    bcr = build_kernel("bcr", weight=w, mask=m, block=(16, 32), target="aarch64",
                       cache_dir=CACHE)
    r = cost_ratio(kernel_cost(bcr, random_inputs(bcr)), kernel_cost(dense, random_inputs(dense)))
    assert r["low"] <= r["high"] < 1.0
    assert r["low"] == min(r[m] for m, _ in MCA_MODELS)
    assert 0 < r["instructions"] < 1.0


def test_cost_needs_aarch64():
    k = build_kernel("dense", weight=np.ones((2, 2), np.float32), cache_dir=CACHE)
    with pytest.raises(ValueError, match="cost needs an aarch64 kernel"):
        kernel_cost(k, random_inputs(k))
