"""Generated matrix-vector kernels (dense, CSR, BCR) on the host: golden checks on awkward
shapes, the build cache, code size and the instruction-cache budget, input and option errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ir.pattern import candidate_patterns
from mobile.build import build_kernel, build_kernels, generate
from mobile.check import check_kernel

CACHE = Path(__file__).resolve().parent.parent / ".mobile_cache"


def _mask(rng, shape, density):
    if density in (0.0, 1.0):
        return np.full(shape, density == 1.0)
    m = rng.random(shape) < density
    m[shape[0] // 2, :] = False  # an empty row
    m[:, shape[1] // 2] = False  # an empty column
    return m


def _arrays(rng, shape, dtype):
    if dtype == "fp32":
        return (rng.standard_normal(shape).astype(np.float32),
                rng.standard_normal(shape[0]).astype(np.float32))
    return rng.integers(-128, 128, shape), rng.integers(-2**30, 2**30, shape[0])


SHAPES = [((1, 1), 1.0), ((17, 33), 0.3), ((33, 17), 0.0)]


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
@pytest.mark.parametrize("kind", ["dense", "csr", "bcr"])
def test_matvec_matches_golden_on_awkward_shapes(kind, dtype):
    rng = np.random.default_rng(7)
    extra = {"block": (4, 8)} if kind == "bcr" else {}
    requests = []
    for shape, density in SHAPES:
        w, b = _arrays(rng, shape, dtype)
        requests.append((kind, dict(weight=w, mask=_mask(rng, shape, density), bias=b,
                                    dtype=dtype, **extra)))
    for (shape, density), k in zip(SHAPES, build_kernels(requests, cache_dir=CACHE),
                                   strict=True):
        r = check_kernel(k, seed=1, vectors=2)
        assert r.ok, (shape, density, r.message)


def test_bcr_all_zero_blocks_and_full_blocks():
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (24, 48))
    m = np.zeros((24, 48), bool)
    m[0:8, 0:16] = True          # a full block
    m[np.ix_([9, 13], [17, 20, 30])] = True  # a 2x3 sub-block; other blocks all zero
    k = build_kernel("bcr", weight=w, mask=m, dtype="int8", block=(8, 16), cache_dir=CACHE)
    assert k.source.info["blocks"] == 2 and k.source.info["kept_macs"] == 128 + 6
    assert check_kernel(k).ok


def test_int8_accumulators_wrap_like_golden():
    w = np.full((4, 300), -128)
    k = build_kernel("dense", weight=w, bias=np.full(4, 2**31 - 1), dtype="int8",
                     cache_dir=CACHE)
    (y,) = k(np.full(300, -128))
    expected = np.int64(2**31 - 1) + 300 * 128 * 128
    assert np.all(y == ((expected + 2**31) % 2**32) - 2**31)


def test_same_source_is_byte_identical_and_cached():
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    a, b = generate("csr", weight=w), generate("csr", weight=w)
    assert a.code == b.code and a.data == b.data
    k1 = build_kernel("csr", weight=w, cache_dir=CACHE)
    k2 = build_kernel("csr", weight=w, cache_dir=CACHE)
    assert k1.path == k2.path and k1.text_bytes == k2.text_bytes > 0


def test_icache_budget_message():
    k = build_kernel("dense", weight=np.ones((4, 4), np.float32), cache_dir=CACHE)
    fits, msg = k.icache_report(budget=16)
    assert not fits
    assert msg == (f"code size {k.text_bytes} bytes of .text (host) EXCEEDS the "
                   "instruction-cache budget of 16 bytes")
    assert k.icache_report()[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "sparse"}, "kind must be one of dense, csr, bcr, conv, pattern, lstm, gru, not "
                         "'sparse'"),
    ({"kind": "dense", "dtype": "fp16"}, "dtype must be one of fp32, int8, not 'fp16'"),
    ({"kind": "dense", "target": "riscv"}, "target must be one of host, aarch64, not 'riscv'"),
    ({"kind": "bcr"}, "bcr kernels need a block size (rows, cols)"),
    ({"kind": "dense", "dtype": "int8", "weight": np.full((2, 2), 200)},
     "int8 kernels need weight values in [-128, 127]; found 200 .. 200"),
    ({"kind": "dense", "weight": np.ones(3)}, "weight must be a non-empty 2-D array (out, in), "
                                             "not shape (3,)"),
    ({"kind": "dense", "mask": np.ones((3, 2))}, "mask of weight has shape (3, 2), expected "
                                                "(2, 2)"),
])
def test_bad_arguments(kwargs, message):
    kw = {"weight": np.ones((2, 2), np.float32), **kwargs}
    kind = kw.pop("kind")
    with pytest.raises(ValueError) as exc:
        build_kernel(kind, cache_dir=CACHE, **kw)
    assert str(exc.value) == message


def test_kernel_input_checks():
    k = build_kernel("dense", weight=np.ones((2, 3), np.int8), dtype="int8", cache_dir=CACHE)
    with pytest.raises(ValueError, match=r"input x must have shape \(3,\), not \(2,\)"):
        k(np.zeros(2))
    with pytest.raises(ValueError, match="input x values must fit int8"):
        k(np.array([0, 300, 0]))
    with pytest.raises(ValueError, match="kernel takes 1 inputs"):
        k(np.zeros(3), np.zeros(3))


def test_requantized_int8_outputs():
    rng = np.random.default_rng(12)
    w = rng.integers(-128, 128, (13, 29))
    m = rng.random((13, 29)) < 0.5
    b = rng.integers(-5000, 5000, 13)
    requests = [(kind, dict(weight=w, mask=m, bias=b, dtype="int8", requant=rq,
                            **({"block": (4, 16)} if kind == "bcr" else {})))
                for kind in ("dense", "csr", "bcr") for rq in ((300, 16, 8), (77, 12, 6, True))]
    wc = rng.integers(-128, 128, (5, 3, 3, 3))
    pmask = candidate_patterns(4)[rng.integers(0, 56, (5, 3))] > 0
    requests += [("conv", dict(weight=wc, dtype="int8", image=(6, 7), padding=1,
                               requant=(1000, 18, 8, True))),
                 ("pattern", dict(weight=wc, mask=pmask, dtype="int8",
                                  image=(6, 7), requant=(1000, 18, 8)))]
    for k in build_kernels(requests, cache_dir=CACHE):
        assert k.source.outputs[0].dtype == np.int8
        r = check_kernel(k, seed=4, vectors=2)
        assert r.ok, r.message


@pytest.mark.parametrize("requant, message", [
    ((1, 2), "requant must be (multiplier, shift, out_bits[, relu]), not (1, 2)"),
    ((2**15, 2, 8), "requant multiplier must be an integer from 0 to 32767, not 32768"),
    ((1, 63, 8), "requant shift must be an integer from 0 to 62, not 63"),
    ((1, 2, 9), "requant out_bits must be an integer from 2 to 8, not 9"),
    # each of these was taken as something else, or a traceback naming no field
    ((100, 3.9, 8), "requant shift must be an integer from 0 to 62, not 3.9"),
    ((100, 3, 8, "False"), "requant relu must be True or False, not 'False'"),
    ("123", "requant must be (multiplier, shift, out_bits[, relu]), not '123'"),
    ((float("inf"), 3, 8), "requant multiplier must be an integer from 0 to 32767, not inf"),
    ((None, 3, 8), "requant multiplier must be an integer from 0 to 32767, not None"),
    ((True, 3, 8), "requant multiplier must be an integer from 0 to 32767, not True"),
])
def test_requant_errors(requant, message):
    with pytest.raises(ValueError) as exc:
        generate("dense", weight=np.ones((2, 2), np.int8), dtype="int8", requant=requant)
    assert str(exc.value) == message
    with pytest.raises(ValueError, match="requant is an int8 output stage"):
        generate("dense", weight=np.ones((2, 2), np.float32), requant=(1, 2, 8))
