"""Every generator under qemu-aarch64 (NEON build, -mcpu=cortex-a76) against the golden model,
one awkward layer each; host timing API."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ir.golden import RNNQuantConfig
from ir.pattern import candidate_patterns
from mobile.build import build_kernel, build_kernels
from mobile.check import check_kernel, random_inputs
from mobile.harness import run_qemu, time_host

CACHE = Path(__file__).resolve().parent.parent / ".mobile_cache"


@pytest.fixture(scope="module")
def require_aarch64():
    """Fail (not skip) when the cross compiler or qemu is missing, naming the install."""
    from mobile.toolchain import missing_tools

    missing = [t for t in missing_tools() if t in ("aarch64-linux-gnu-gcc", "qemu-aarch64")]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `codesign doctor --install`")


def _cases(dtype):
    rng = np.random.default_rng(21)
    fp = dtype == "fp32"

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32) if fp else rng.integers(-127, 128,
                                                                                     shape)

    def b(n):
        return rng.standard_normal(n).astype(np.float32) if fp else rng.integers(-9999, 9999, n)
    m = rng.random((19, 35)) < 0.3
    m[:, 3] = False
    lib = candidate_patterns(4)
    pm = (lib[rng.integers(0, 56, (5, 3))] * (rng.random((5, 3)) < 0.6)[..., None, None]) > 0
    cfg = {} if fp else {"config": RNNQuantConfig.from_scales(0.004, 1 / 64)}
    rnn = dict(weight_ih=w(4 * 9, 11), weight_hh=w(4 * 9, 9), bias_ih=b(36), bias_hh=b(36),
               mask_ih=rng.random((36, 11)) < 0.4, mask_hh=rng.random((36, 9)) < 0.4, **cfg)
    gru = dict(weight_ih=w(3 * 5, 6), weight_hh=w(3 * 5, 5), bias_ih=b(15), bias_hh=b(15), **cfg)
    return [
        ("dense", dict(weight=w(19, 35), mask=m, bias=b(19))),
        ("csr", dict(weight=w(19, 35), mask=m, bias=b(19))),
        ("bcr", dict(weight=w(19, 35), mask=m, bias=b(19), block=(8, 16),
                     **({} if fp else {"requant": (5000, 20, 8, True)}))),
        ("conv", dict(weight=w(5, 3, 3, 3), bias=b(5), image=(6, 11), padding=1)),
        ("pattern", dict(weight=w(5, 3, 3, 3), mask=pm, bias=b(5), image=(7, 6), stride=2,
                         padding=1)),
        ("lstm", dict(rnn, matvec="bcr", block=(8, 4))),
        ("gru", dict(gru, matvec="dense")),
    ]


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_every_generator_under_qemu(dtype, require_aarch64):
    cases = _cases(dtype)

    kernels = build_kernels([(kind, {**p, "dtype": dtype}) for kind, p in cases], "aarch64",
                            CACHE)
    with ThreadPoolExecutor(2) as pool:
        for (kind, _), r in zip(cases, pool.map(check_kernel, kernels), strict=True):
            assert r.ok, (kind, r.message)
            assert r.target == "aarch64"


def test_tiled_convs_under_qemu(require_aarch64):
    """The tiled stride-1 convolutions on NEON: overlapping edge tiles, a width below one
    vector, odd heights, a 9-row tile loop, channel blocks (one, and uneven ones of 2), fp32
    and int8 with requantization."""
    rng = np.random.default_rng(13)
    lib = candidate_patterns(4)[:8]
    requests = []
    for o, c, h, w, pad in ((3, 5, 11, 37, 1), (4, 2, 6, 5, 0), (2, 3, 19, 16, (0, 1))):
        pm = (lib[rng.integers(0, 8, (o, c))] * (rng.random((o, c)) < 0.5)[..., None, None]) > 0
        wf = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
        wi = rng.integers(-127, 128, (o, c, 3, 3))
        geo = dict(image=(h, w), padding=pad)
        requests += [("conv", dict(weight=wf, bias=rng.standard_normal(o).astype(np.float32),
                                   **geo)),
                     ("pattern", dict(weight=wf, mask=pm, **geo)),
                     ("pattern", dict(weight=wf, mask=pm, cblock=2, **geo)),
                     ("conv", dict(weight=wi, dtype="int8", bias=rng.integers(-999, 999, o),
                                   tiled=True, **geo)),
                     ("pattern", dict(weight=wi, mask=pm, dtype="int8", tiled=True,
                                      requant=(3000, 16, 8, True), **geo))]
    kernels = build_kernels(requests, "aarch64", CACHE)
    with ThreadPoolExecutor(2) as pool:
        for (kind, p), r in zip(requests, pool.map(check_kernel, kernels), strict=True):
            assert r.ok, (kind, p["image"], r.message)


def test_qemu_repeats_give_the_same_outputs(require_aarch64):
    k = build_kernel("csr", weight=np.eye(5, dtype=np.float32) * 2, target="aarch64",
                     cache_dir=CACHE)
    x = np.arange(5, dtype=np.float32)
    (y,) = run_qemu(k, (x,), repeats=3)
    assert np.array_equal(y, 2 * x)


def test_time_host_median_is_positive_and_host_only():
    k = build_kernel("dense", weight=np.ones((64, 64), np.float32), cache_dir=CACHE)
    t = time_host(k, random_inputs(k), repeats=5, min_seconds=1e-4)
    assert 0 < t < 1e-2
    with pytest.raises(ValueError, match="repeats must be a positive integer, not 0"):
        time_host(k, random_inputs(k), repeats=0)


def test_awkward_matrices_under_qemu(require_aarch64):
    rng = np.random.default_rng(8)
    w = rng.integers(-128, 128, (9, 20))
    empty = np.zeros((9, 20), bool)
    one = rng.integers(-128, 128, (1, 1))
    requests = [("csr", dict(weight=w, mask=empty, dtype="int8")),
                ("bcr", dict(weight=w, mask=empty, dtype="int8", block=(4, 8))),
                ("bcr", dict(weight=one, dtype="int8", block=(4, 8))),
                ("dense", dict(weight=one, dtype="int8"))]
    for k in build_kernels(requests, "aarch64", CACHE):
        r = check_kernel(k, seed=9, vectors=2)
        assert r.ok, r.message


def test_folder_names_are_distinct_and_deterministic():
    from mobile.run import folder_names

    got = folder_names(["fc.1", "fc_1", "fc_1_2", "fc-1", "fc.1", "1x"])
    assert got == {"fc.1": "fc_1", "fc_1": "fc_1_3", "fc_1_2": "fc_1_2", "fc-1": "fc_1_4",
                   "1x": "l_1x"}
    assert len(set(got.values())) == len(got)
