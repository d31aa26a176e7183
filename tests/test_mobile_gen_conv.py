"""Dense and pattern convolution kernels on the host against ir.golden / float64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ir.pattern import candidate_patterns
from mobile.build import build_kernels, generate
from mobile.check import check_kernel
from mobile.gen_conv import L1_BUDGET, MAX_TILE, VL, channel_block, tile_shape

CACHE = Path(__file__).resolve().parent.parent / ".mobile_cache"
LIB = candidate_patterns(4)

# (out, in, h, w, stride, padding, kept kernel fraction): stride 1 takes the tiled path
# (widths below, at and above a tile, not multiples of the vector, odd heights, overlapping
# edge tiles, more than 255 channels); other strides the plane-accumulator path.
GEOMETRIES = [(5, 3, 7, 9, 1, 1, 0.6), (3, 2, 3, 3, 1, 0, 0.0), (7, 5, 6, 13, (2, 1), (0, 1), 0.3),
              (4, 6, 13, 37, 1, 1, 0.5), (3, 300, 5, 4, 1, 0, 0.3), (6, 3, 11, 17, (1, 2), 1, 1.0),
              (2, 4, 9, 70, 1, 0, 0.5)]


def _layer(rng, o, c, kept, dtype, kind):
    pid = rng.integers(0, len(LIB), (o, c))
    keep = rng.random((o, c)) < kept
    mask = (LIB[pid] * keep[..., None, None]).astype(bool) if kind == "pattern" else None
    if dtype == "fp32":
        return (rng.standard_normal((o, c, 3, 3)).astype(np.float32), mask,
                rng.standard_normal(o).astype(np.float32))
    return rng.integers(-128, 128, (o, c, 3, 3)), mask, rng.integers(-2**20, 2**20, o)


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
@pytest.mark.parametrize("kind", ["conv", "pattern"])
def test_conv_matches_golden(kind, dtype):
    rng = np.random.default_rng(11)
    requests = []
    for o, c, h, w, s, p, kept in GEOMETRIES:
        wt, m, b = _layer(rng, o, c, kept, dtype, kind)
        requests.append((kind, dict(weight=wt, mask=m, bias=b, dtype=dtype, image=(h, w),
                                    stride=s, padding=p, tiled=True)))
        if dtype == "int8" and s == 1 and h < 10:       # int8's default plane path
            requests.append((kind, dict(requests[-1][1], tiled=None)))
        if dtype == "fp32" and s == 1:
            # channel blocks of 2 (an uneven last block), and the unblocked register tiles
            requests.append((kind, dict(requests[-1][1], cblock=2)))
            requests.append((kind, dict(requests[-1][1], cblock=0)))
    for (_, params), k in zip(requests, build_kernels(requests, cache_dir=CACHE), strict=True):
        r = check_kernel(k, seed=2)
        assert r.ok, (params["image"], params["tiled"], r.message)


def test_dense_conv_other_kernel_sizes():
    rng = np.random.default_rng(5)
    requests = []
    for kh, kw in ((1, 1), (5, 3)):
        requests.append(("conv", dict(weight=rng.integers(-128, 128, (4, 3, kh, kw)),
                                      dtype="int8", image=(9, 7), padding=(1, 2))))
        requests.append(("conv", dict(weight=rng.standard_normal((6, 3, kh, kw)).astype(
            np.float32), image=(9, 7), padding=(1, 2))))  # 6 filters: a partial block of 4
    for k in build_kernels(requests, cache_dir=CACHE):
        assert check_kernel(k).ok


def test_pattern_structure_one_function_per_used_pattern():
    rng = np.random.default_rng(1)
    wt, m, _ = _layer(rng, 8, 6, 0.5, "fp32", "pattern")
    src = generate("pattern", weight=wt, mask=m, image=(8, 8), padding=1)
    kernels = m.reshape(8, 6, 9)
    used = sum(bool((kernels == LIB[p].reshape(9)).all(-1).any()) for p in range(len(LIB)))
    assert src.info["patterns_used"] == used
    plane = generate("pattern", weight=wt, mask=m, image=(8, 8), padding=1, tiled=False)
    assert plane.code.count("static void pat") == used
    assert src.code.count("static void pat") == 0                  # blocked: one generic loop
    assert src.code.count("static void blk_tile") == 1
    assert src.info["kept_kernels"] == int(m.reshape(8, 6, 9).any(-1).sum())
    assert src.info["kept_macs"] == src.info["kept_kernels"] * 4 * 64


@pytest.mark.parametrize("oh, ow", [(224, 224), (112, 112), (56, 56), (28, 28), (14, 14),
                                     (1, 1), (3, 5), (7, 100)])
def test_tile_shape_fits_registers_and_image(oh, ow):
    rows, nv = tile_shape(oh, ow)
    assert 1 <= rows <= oh and 1 <= nv and rows * nv <= MAX_TILE
    if ow % 16 == 0 and oh % 4 == 0:
        assert (oh % rows, ow % (nv * VL)) == (0, 0)      # VGG's sides: no overlapping tiles


def test_tiled_is_the_stride_one_path():
    rng = np.random.default_rng(3)
    wt, m, b = _layer(rng, 4, 3, 0.5, "fp32", "pattern")
    tiled = generate("pattern", weight=wt, mask=m, bias=b, image=(9, 20), padding=1)
    plain = generate("pattern", weight=wt, mask=m, bias=b, image=(9, 20), padding=1,
                     tiled=False)
    strided = generate("pattern", weight=wt, mask=m, bias=b, image=(9, 20), stride=2)
    assert "vf8_fma_lane" in tiled.code and "mk_pack" in tiled.code
    assert "mk_xp" not in tiled.code                   # packed straight from x
    unblocked = generate("pattern", weight=wt, mask=m, bias=b, image=(9, 20), padding=1, cblock=0)
    assert "tile[" in unblocked.code and "mk_pack" not in unblocked.code
    assert "tile[" not in plain.code
    assert "tile[" not in strided.code
    assert tiled.info == plain.info == unblocked.info
    i8 = dict(weight=rng.integers(-9, 9, (4, 3, 3, 3)), mask=m, dtype="int8", image=(9, 20))
    assert "tile[" not in generate("pattern", **i8).code
    assert "tile[" in generate("pattern", **i8, tiled=True).code


def test_conv_errors():
    with pytest.raises(ValueError, match="pattern kernels are 3x3, not 5x5"):
        generate("pattern", weight=np.ones((2, 2, 5, 5), np.float32), image=8)
    with pytest.raises(ValueError, match="kernel 3x3 does not fit the padded image 2x2"):
        generate("conv", weight=np.ones((2, 2, 3, 3), np.float32), image=2)
    with pytest.raises(ValueError, match="matches no library pattern"):
        generate("pattern", weight=np.ones((1, 1, 3, 3), np.float32), image=4,
                 library=LIB[:2])


@pytest.mark.parametrize("c, shape, kh, kw", [(64, (4, 2), 3, 3), (512, (4, 2), 3, 3),
                                              (3, (4, 2), 3, 3), (300, (1, 1), 5, 3),
                                              (7, (6, 1), 1, 1)])
def test_channel_block_fits_l1_and_evens_blocks(c, shape, kh, kw):
    cb = channel_block(c, shape, kh, kw)
    rows, nv = shape
    per = kw * (rows + kh - 1) * nv * VL * 4
    assert 1 <= cb <= c and cb * per <= max(L1_BUDGET, per)
    nb = -(-c // cb)
    assert nb * cb - c < nb                           # the blocks differ by at most one
    assert nb == -(-c // max(1, min(c, L1_BUDGET // per)))   # no more blocks than needed
