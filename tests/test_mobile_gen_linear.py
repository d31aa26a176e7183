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
    for width in (4, 8, 16):
        blocks = [(r, len(ra)) for r, _, ra, ca, _ in enc.blocks()
                  if padded_width(len(ca), "int8") == width]
        # whole block rows: all 16 rows of a block, ``width`` weights each (4, 8: not 16)
        whole = sum(r < 2 for r, _ in blocks)
        # the edge block row (rows 32..36): kept rows padded to 4, scatter-added
        edge = sum(-(-n // 4) * 4 for r, n in blocks if r == 2)
        assert whole and edge
        assert len(src.data[f"mv_d{width}_val.bin"]) == whole * 16 * width
        assert len(src.data[f"mv_n{width}_val.bin"]) == edge * width
    assert all(f"{f}(s, vi_dotx" in src.code for f in ("vi_quarters", "vi_halves2", "vi_hsum4"))
    assert all(f"{f}(s + 12, a" in src.code for f in ("vi_quarters", "vi_halves2", "vi_hsum4"))
    assert "vb_gather16(" in src.code
    wide = generate("bcr", weight=w, mask=m, dtype="int8", block=(8, 40))
    assert "vb_gather16(" not in wide.code and "vb_rep4(" in wide.code and "vb_load(g)" in wide.code
    # fp32 keeps one loop over all blocks (vector width 4: nothing to pack)
    w32 = generate("bcr", weight=w.astype(np.float32), mask=m, block=(16, 16))
    assert "vi_dotx" not in w32.code and "mv_n4_val.bin" not in w32.data


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
    requests = _requests()[:1] + _requests()[-1:]
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
