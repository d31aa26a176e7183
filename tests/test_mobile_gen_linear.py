"""int8 BCR kernels with narrow blocks: kept columns padded to 4 or 8 run packed (several rows
to a 16-byte vector), mixed with 16- and wider blocks in one matrix, edge blocks, kept rows not a
multiple of 4; bit-exact against ir.golden on the host, under qemu (NEON sdot) and on the
portable backends (generic GCC vectors, NEON without dot product)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ir.bcr import encode_bcr
from ir.golden import RNNQuantConfig
from mobile import build as mbuild
from mobile.build import build_kernel, build_kernels, generate
from mobile.check import check_kernel
from mobile.gen_linear import padded_width

CACHE = Path(__file__).resolve().parent.parent / ".mobile_cache"
#: kept (rows, columns) cycled over the blocks: columns padding to 4, 8, 16 and 32.
KEEPS = [(1, 1), (3, 4), (5, 3), (2, 8), (7, 6), (4, 5), (6, 16), (9, 12), (3, 20), (2, 2)]


def _mixed(rng, shape, block, keeps=KEEPS, extreme=False):
    """Integer weights and a BCR mask whose blocks keep ``keeps`` rows x columns in turn
    (clipped to edge blocks; every 7th block empty); ``extreme``: all weights -128."""
    (rows, cols), (br, bc) = shape, block
    m = np.zeros(shape, bool)
    k = 0
    for r0 in range(0, rows, br):
        for c0 in range(0, cols, bc):
            k += 1
            if k % 7 == 0:
                continue
            kr, kc = keeps[k % len(keeps)]
            h, w = min(br, rows - r0), min(bc, cols - c0)
            rr = r0 + rng.choice(h, min(kr, h), replace=False)
            cc = c0 + rng.choice(w, min(kc, w), replace=False)
            m[np.ix_(rr, cc)] = True
    w = np.full(shape, -128) if extreme else rng.integers(-128, 128, shape)
    return np.where(m, w, 0), m


def _widths(w, m, block):
    return {padded_width(len(ca), "int8") for _, _, _, ca, _ in encode_bcr(w, block, m).blocks()}


#: (shape, block): blocks at most 16 columns wide gather by table lookup, wider ones by loads;
#: every shape leaves edge blocks.
CASES = [((37, 140), (16, 16)), ((30, 70), (12, 24)), ((21, 29), (5, 12)), ((19, 50), (8, 40))]


def _requests(seed=11):
    rng = np.random.default_rng(seed)
    out = []
    for shape, block in CASES:
        w, m = _mixed(rng, shape, block)
        out.append(("bcr", dict(weight=w, mask=m, bias=rng.integers(-2**30, 2**30, shape[0]),
                                dtype="int8", block=block)))
    w, m = _mixed(rng, (33, 40), (16, 16), extreme=True)
    out.append(("bcr", dict(weight=w, mask=m, bias=np.full(33, 2**31 - 1), dtype="int8",
                            block=(16, 16))))
    return out


def test_mixed_widths_are_covered():
    for _, p in _requests():
        widths = _widths(p["weight"], p["mask"], p["block"])
        assert {4, 8, 16} <= widths, (p["block"], widths)
    p = _requests()[1][1]
    assert 32 in _widths(p["weight"], p["mask"], p["block"])


def test_narrow_blocks_run_packed():
    rng = np.random.default_rng(2)
    w, m = _mixed(rng, (37, 140), (16, 16))
    enc = encode_bcr(w, (16, 16), m)
    src = generate("bcr", weight=w, mask=m, dtype="int8", block=(16, 16))
    lane = 0
    for width in (4, 8, 16):
        blocks = [(r, len(ra)) for r, _, ra, ca, _ in enc.blocks()
                  if padded_width(len(ca), "int8") == width]
        # full block rows (0, 1): all 16 rows of the block row, 16 x width weights a block
        whole = sum(r < 2 for r, _ in blocks)
        # the edge block row (rows 32..36): kept rows padded to 4, scatter-added
        edge = sum(-(-n // 4) * 4 for r, n in blocks if r == 2)
        assert whole and edge
        lane += whole * 16 * width
        assert len(src.data[f"mv_n{width}_val.bin"]) == edge * width
    # one row-lane loop for the three widths: 4 row groups x (4 + 2 + 1) column groups
    assert len(src.data["mv_l_val.bin"]) == lane
    assert src.code.count("vi_dotlane(") == 4 * 7 and "mv_l_rows.bin" not in src.data
    assert "vi_quarters(y + 16 * rb + 12, vi_add(a3, c3));" in src.code
    # y set to the bias on the edge rows only (the loop stores the full block rows)
    assert "for (int r = 32; r < 37; r++) y[r] = mv_b[r];" in src.code
    # the former block-row mode (16 row accumulators reduced per block row) is gone
    assert not any(f"{f}(s + 12, a" in src.code for f in ("vi_quarters", "vi_halves2", "vi_hsum4"))
    assert all(f"{f}(s, vi_dotx" in src.code for f in ("vi_quarters", "vi_halves2", "vi_hsum4"))
    assert "vb_gather16(" in src.code
    wide = generate("bcr", weight=w, mask=m, dtype="int8", block=(8, 40))
    assert "vb_gather16(" not in wide.code and "vb_rep4(" in wide.code and "vb_load(g)" in wide.code
    # fp32 keeps one loop over all blocks (vector width 4: nothing to pack)
    w32 = generate("bcr", weight=w.astype(np.float32), mask=m, block=(16, 16))
    assert "vi_dotx" not in w32.code and "vi_dotlane" not in w32.code
    assert "mv_n4_val.bin" not in w32.data and "mv_l_val.bin" not in w32.data


def _rowwise(rng, shape, block, rows_kept, cols_kept, contiguous=False):
    """Integer weights and a BCR mask whose block row ``i`` keeps ``rows_kept[i % len]`` rows
    in every block (the same rows: pruned per block row; 0: an empty block row) and block
    ``j`` of it ``cols_kept[j % len]`` columns (``contiguous``: the first ones), clipped to
    edge blocks."""
    (rows, cols), (br, bc) = shape, block
    m = np.zeros(shape, bool)
    for i, r0 in enumerate(range(0, rows, br)):
        h = min(br, rows - r0)
        rr = r0 + rng.choice(h, min(rows_kept[i % len(rows_kept)], h), replace=False)
        for j, c0 in enumerate(range(0, cols, bc)):
            wd = min(bc, cols - c0)
            n = min(cols_kept[j % len(cols_kept)], wd)
            cc = c0 + (np.arange(n) if contiguous else rng.choice(wd, n, replace=False))
            m[np.ix_(rr, cc)] = True
    return np.where(m, rng.integers(-128, 128, shape), 0), m


#: (shape, block, kept rows per block row, kept columns per block, contiguous, compacted):
#: the row-lane loop's layouts, with edge blocks and (but the last) an edge block row.
LANE_CASES = [
    # rows pruned per block row, mixed widths, an empty block row: compacted to 2 row groups
    ((70, 150), (16, 16), [8, 5, 0, 7], [16, 12, 7, 3, 9], False, True),
    # every block keeps 16 consecutive columns: x loaded, no gather, no table copy
    ((50, 96), (16, 16), [16, 9, 13], [16], True, False),
    # 12-high blocks, 3 of 12 rows: compacted to 1 row group; 8 and 4 consecutive columns
    ((40, 310), (12, 20), [3, 2], [8, 4], True, True),
    # few blocks a block row: compacting 12 of 16 rows saves 1 step a row, below the rule;
    # no edge block row: the loop stores every row
    ((64, 40), (16, 16), [12], [16, 8], False, False),
]


def _lane_requests(seed=23):
    rng = np.random.default_rng(seed)
    out = []
    for shape, block, rk, ck, contiguous, _ in LANE_CASES:
        w, m = _rowwise(rng, shape, block, rk, ck, contiguous)
        out.append(("bcr", dict(weight=w, mask=m, bias=rng.integers(-2**31, 2**31, shape[0]),
                                dtype="int8", block=block)))
    return out


def test_lane_rows_layouts():
    for (_, p), (shape, block, rk, _, contiguous, compacted) in zip(
            _lane_requests(), LANE_CASES, strict=True):
        src = generate("bcr", **p)
        br, full = block[0], shape[0] // block[0]
        assert ("mv_l_rows.bin" in src.data) == compacted, shape
        # compacted: the row groups of the block row keeping the most rows
        nq = -(-max(rk[i % len(rk)] for i in range(full)) // 4) if compacted else br // 4
        enc = encode_bcr(p["weight"], block, p["mask"])
        lane = sum(4 * nq * padded_width(len(ca), "int8")
                   for r, _, _, ca, _ in enc.blocks() if r < full)
        assert len(src.data["mv_l_val.bin"]) == lane, shape
        if compacted:
            assert len(src.data["mv_l_rows.bin"]) == full * 4 * nq  # uint8 row indices
            assert f"for (int r = 0; r < {shape[0]}; r++) y[r] = mv_b[r];" in src.code
        elif full * br < shape[0]:
            assert f"for (int r = {full * br}; r < {shape[0]}; r++) y[r]" in src.code
        else:  # every row stored by the loop: y is never set to the bias alone
            assert "y[r] = mv_b[r]" not in src.code
        assert ("vb_gather16(mv_xt + mv_l_w" in src.code) != contiguous
        if contiguous:  # no table copy of x; every width loads its inputs from x
            assert "mv_xt" not in src.code
            loads = {16: "vb_load", 8: "vb_rep8", 4: "vb_rep4"}
            for wd in {padded_width(len(ca), "int8") for r, _, _, ca, _ in enc.blocks()
                       if r < full}:
                # at a pointer when the blocks are the first of each block row in order
                assert (f"{loads[wd]}(x + mv_l_w{wd}_base[k{wd}])" in src.code) != (
                    f"{loads[wd]}(xp{wd})" in src.code), (shape, wd)
    stepped = [generate("bcr", **p).code for _, p in _lane_requests()]
    assert "vb_load(xp16)" in stepped[1] and "xp16 += 16" in stepped[1]
    assert "mv_l_w16_base" not in stepped[1]
    # blocks of width 8 and 4 alternate along a block row: not in order, base arrays
    assert "vb_rep8(x + mv_l_w8_base[k8])" in stepped[2] and "xp" not in stepped[2]


@pytest.mark.parametrize("target", ["host", "aarch64"])
def test_lane_rows_match_golden(target):
    requests = _lane_requests()
    for (_, p), k in zip(requests, build_kernels(requests, target, CACHE), strict=True):
        r = check_kernel(k, seed=9, vectors=3)
        assert r.ok, (p["weight"].shape, r.message)


@pytest.mark.parametrize("target", ["host", "aarch64"])
def test_mixed_bcr_matches_golden(target):
    requests = _requests()
    for (_, p), k in zip(requests, build_kernels(requests, target, CACHE), strict=True):
        r = check_kernel(k, seed=5, vectors=3)
        assert r.ok, (p["block"], r.message)


#: Backends the default builds do not reach: generic GCC vectors on an x86-64 without AVX2,
#: NEON without the dot-product extension, and the portable path on aarch64.
PORTABLE = {
    "x86-64 generic": ("host", ["gcc", *mbuild._COMMON, "-march=x86-64", "-fPIC"]),
    "neon no dotprod": ("aarch64", ["aarch64-linux-gnu-gcc", *mbuild._COMMON,
                                    "-mcpu=cortex-a57"]),
    "aarch64 portable": ("aarch64", ["aarch64-linux-gnu-gcc", *mbuild._COMMON,
                                     "-mcpu=cortex-a76", "-DMK_PORTABLE"]),
}


@pytest.mark.parametrize("backend", sorted(PORTABLE))
def test_portable_backends_match_golden(backend, monkeypatch, tmp_path):
    target, cc = PORTABLE[backend]
    monkeypatch.setitem(mbuild._FLAGS, target, (cc, mbuild._FLAGS[target][1]))
    requests = _requests()[:1] + _requests()[-1:] + _lane_requests()[:3]
    for (_, p), k in zip(requests, build_kernels(requests, target, tmp_path), strict=True):
        r = check_kernel(k, seed=6, vectors=2)
        assert r.ok, (backend, p["block"], r.message)


@pytest.mark.parametrize("target", ["host", "aarch64"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_steps_with_mixed_bcr_blocks(cell, target):
    rng = np.random.default_rng(17)
    g = 4 if cell == "lstm" else 3
    hid, inp = 22, 37
    w_ih, m_ih = _mixed(rng, (g * hid, inp), (16, 16))
    w_hh, m_hh = _mixed(rng, (g * hid, hid), (16, 16), keeps=KEEPS[::-1])
    k = build_kernel(cell, target=target, cache_dir=CACHE, dtype="int8", matvec="bcr",
                     block=(16, 16), weight_ih=np.clip(w_ih, -127, 127),
                     weight_hh=np.clip(w_hh, -127, 127), mask_ih=m_ih, mask_hh=m_hh,
                     bias_ih=rng.integers(-3000, 3000, g * hid),
                     bias_hh=rng.integers(-3000, 3000, g * hid),
                     config=RNNQuantConfig.from_scales(0.004, 1 / 64))
    r = check_kernel(k, seed=8, vectors=3)
    assert r.ok, r.message


@pytest.mark.parametrize("target", ["host", "aarch64"])
def test_rnn_step_with_compacted_rows(target):
    rng = np.random.default_rng(29)
    hid = 40  # 160 x 40 gates: 10 full block rows of 3 blocks, rows pruned per block row
    w_ih, m_ih = _rowwise(rng, (4 * hid, 90), (16, 16), [4, 3, 0], [16, 6])
    w_hh, m_hh = _rowwise(rng, (4 * hid, hid), (16, 16), [9], [16], contiguous=True)
    kw = dict(dtype="int8", matvec="bcr", block=(16, 16), weight_ih=np.clip(w_ih, -127, 127),
              weight_hh=np.clip(w_hh, -127, 127), mask_ih=m_ih, mask_hh=m_hh,
              bias_ih=rng.integers(-3000, 3000, 4 * hid),
              bias_hh=rng.integers(-3000, 3000, 4 * hid),
              config=RNNQuantConfig.from_scales(0.004, 1 / 64))
    src = generate("lstm", **kw)
    assert "ih_l_rows.bin" in src.data and "hh_l_rows.bin" not in src.data
    k = build_kernel("lstm", target=target, cache_dir=CACHE, **kw)
    r = check_kernel(k, seed=4, vectors=3)
    assert r.ok, r.message
