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
    row = -(-(nv * VL + kw - 1) // 16) * 16 if nv == 1 else nv * VL   # 64-byte rows, one copy
    per = (1 if nv == 1 else kw) * (rows + kh - 1) * row * 4          # or kw aligned copies
    assert 1 <= cb <= c and cb * per <= max(L1_BUDGET, per)
    nb = -(-c // cb)
    assert nb * cb - c < nb                           # the blocks differ by at most one
    assert nb == -(-c // max(1, min(c, L1_BUDGET // per)))   # no more blocks than needed


def test_pair_taps_pairs_two_taps_of_one_column():
    from mobile.gen_conv import _pair_taps
    for k, centre in ((4, True), (4, False), (3, False), (2, False)):
        pats = candidate_patterns(k, keep_centre=centre).reshape(-1, 9)
        pos = np.array([np.flatnonzero(p) for p in pats])
        dy, dx = pos // 3, pos % 3
        perm, cls = _pair_taps(dy, dx)
        for p in range(len(pats)):
            assert sorted(perm[p]) == list(range(k))
            cols = [sorted(dy[p][dx[p] == c]) for c in range(3)]
            gaps = {b - a for col in cols for i, a in enumerate(col) for b in col[i + 1:]}
            if cls[p] == 2:
                assert not gaps                              # no two taps share a column
                assert list(perm[p]) == list(range(k))
            else:
                i, j = perm[p][:2]
                assert dx[p, i] == dx[p, j] and dy[p, j] - dy[p, i] == cls[p] + 1
                assert cls[p] == 0 or 1 not in gaps           # adjacent rows preferred
        if k == 4:
            assert (cls < 2).all()        # four taps in three columns: always a pair


def test_blocked_pattern_loops_share_loads_and_pack_once():
    rng = np.random.default_rng(4)
    wt, m, b = _layer(rng, 4, 6, 0.6, "fp32", "pattern")
    src = generate("pattern", weight=wt, mask=m, bias=b, image=(16, 16), padding=1)
    rows, nv = tile_shape(16, 16, 1.1)
    assert nv == 1
    body = src.code[src.code.index("static void blk_tile"):src.code.index("static float mk_pk")]
    assert body.count("for (int k = 0; k < n") == 3              # gap 1, gap 2, no pair
    # a gap-1 pair: rows + 1 loads held in registers for 2 * rows multiply-adds
    gap1 = body[body.index("k < n1"):body.index("k < n2")]
    assert gap1.count("vf8_keep(x)") == rows + 1
    assert gap1.count("vf8_fma_lane") == 4 * rows
    cb = channel_block(6, (rows, nv), 3, 3)
    assert f"static float mk_pk[{cb * (rows + 2) * 16}]" in src.code   # one copy, 64 B rows
    dense = generate("conv", weight=wt, bias=b, image=(16, 16), padding=1)
    dbody = dense.code[dense.code.index("static void blk_tile"):]
    assert dbody.count("vf8_keep(x)") == 3 * (rows + 2)          # each window vector once
    wide = generate("pattern", weight=wt, mask=m, bias=b, image=(16, 16), padding=1,
                    tile=(4, 2))
    cb = channel_block(6, (4, 2), 3, 3)
    assert f"static float mk_pk[{3 * cb * 6 * 16}]" in wide.code       # one copy per shift


@pytest.mark.parametrize("tile", [None, (4, 2), (3, 1)])
def test_pattern_classes_match_golden(tile):
    """Libraries whose patterns pair taps 1 and 2 rows apart, or not at all (3-tap patterns
    in three columns), with unequal class counts per filter and block."""
    lib = np.zeros((4, 3, 3), np.uint8)
    for p, taps in enumerate([[(0, 0), (1, 1), (2, 2)], [(0, 1), (1, 1), (2, 0)],
                              [(0, 0), (2, 0), (1, 2)], [(2, 0), (0, 1), (1, 2)]]):
        for dy, dx in taps:
            lib[p, dy, dx] = 1
    rng = np.random.default_rng(8)
    requests = []
    for o, c, h, w in ((5, 7, 9, 11), (3, 20, 6, 17)):
        pid = rng.integers(0, len(lib), (o, c))
        keep = rng.random((o, c)) < 0.7
        mask = (lib[pid] * keep[..., None, None]).astype(bool)
        wt = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
        requests.append(("pattern", dict(weight=wt, mask=mask, library=lib, image=(h, w),
                                         padding=1, tile=tile, cblock=3,
                                         bias=rng.standard_normal(o).astype(np.float32))))
    for k in build_kernels(requests, cache_dir=CACHE):
        r = check_kernel(k, seed=3)
        assert r.ok, r.message
