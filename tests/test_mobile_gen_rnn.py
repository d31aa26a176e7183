"""LSTM and GRU step kernels on dense and BCR products: bit-exact against ir.golden (int8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ir.golden import RNNQuantConfig
from mobile.build import build_kernel, build_kernels
from mobile.check import check_kernel

CACHE = Path(__file__).resolve().parent.parent / ".mobile_cache"
CONFIG = RNNQuantConfig.from_scales(0.004, 1 / 64)


def _params(rng, cell, hid, inp, dtype):
    g = 4 if cell == "lstm" else 3
    m_ih, m_hh = rng.random((g * hid, inp)) < 0.4, rng.random((g * hid, hid)) < 0.4
    m_ih[:, 0] = False
    if dtype == "fp32":
        def f(*s):
            return (rng.standard_normal(s) * 0.3).astype(np.float32)
        return dict(weight_ih=f(g * hid, inp), weight_hh=f(g * hid, hid), mask_ih=m_ih,
                    mask_hh=m_hh, bias_ih=f(g * hid), bias_hh=f(g * hid))

    def i(*s):
        return rng.integers(-127, 128, s)
    return dict(weight_ih=i(g * hid, inp), weight_hh=i(g * hid, hid), mask_ih=m_ih,
                mask_hh=m_hh, bias_ih=rng.integers(-3000, 3000, g * hid),
                bias_hh=rng.integers(-3000, 3000, g * hid), config=CONFIG)


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
@pytest.mark.parametrize("matvec", ["dense", "bcr"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_step_matches_golden(cell, matvec, dtype):
    rng = np.random.default_rng(4)
    sizes = ((13, 21), (1, 3)) if (matvec, dtype) == ("bcr", "int8") else ((13, 21),)
    requests = [(cell, dict(dtype=dtype, matvec=matvec, block=(4, 8) if matvec == "bcr" else None,
                            **_params(rng, cell, hid, inp, dtype))) for hid, inp in sizes]
    for size, k in zip(sizes, build_kernels(requests, cache_dir=CACHE), strict=True):
        r = check_kernel(k, seed=3, vectors=3)
        assert r.ok, (size, r.message)


def test_rnn_errors():
    rng = np.random.default_rng(0)
    p = _params(rng, "lstm", 4, 3, "int8")
    del p["config"]
    with pytest.raises(ValueError, match="int8 RNN kernels need config="):
        build_kernel("lstm", dtype="int8", cache_dir=CACHE, **p)
    p = _params(rng, "gru", 4, 3, "fp32")
    with pytest.raises(ValueError, match=r"gru weights must be \(3\*hidden, input\)"):
        build_kernel("gru", cache_dir=CACHE, **{**p, "weight_hh": p["weight_hh"][:, :3],
                                                 "mask_hh": p["mask_hh"][:, :3]})
    with pytest.raises(ValueError, match="matvec must be 'dense', 'bcr' or 'csr', not 'x'"):
        build_kernel("gru", matvec="x", cache_dir=CACHE, **p)
