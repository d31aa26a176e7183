"""Convolution generators: dense direct convolution and pattern + connectivity pruned 3x3.

Both share one loop structure, so their ratio measures sparsity alone.

fp32, stride 1 (the default): channel-blocked, output-stationary register tiles.

* row tiles of ``rows`` output rows, then column tiles of ``nv`` 8-float vectors (``vf8``: one
  AVX register, two NEON q registers); the last row and column tiles are moved back to end at
  the image edge (overlapping the one before, storing the same values), so there is no tail
  code; widths below one tile compute a full tile and store the valid part;
* per tile, per block of input channels (:func:`channel_block`: the packed window fits in
  L1), the block's input window is packed from ``x``, zero padding included: once for
  one-vector tiles (rows of 64 bytes, so a shifted load stays in one cache line), else once
  per column shift (3 copies for a 3x3 kernel, every load aligned);
* every stored filter then adds its kernels of the block into its ``rows x nv`` accumulators,
  held in registers between a load from and a store to its partial sums (which start at the
  bias and go to ``y`` after the last block); per kernel, per tap the weight is broadcast and
  multiplied into window vectors, two taps of one column sharing their loaded rows. One
  function for dense and every pattern: each kernel entry carries its tap offsets into the
  window (uint16) and its weights.

int8 and other strides take the plane-accumulator path: the input is copied once into a
zero-padded work buffer, an accumulator plane per filter, each kept kernel adds its taps row
by row (vectorised along the row for stride 1). ``tiled=True`` makes int8 use register tiles
too (without channel blocking, the input planes in L2 and software prefetch), ``cblock=0``
fp32 as well: both measured slower on the host (int8 tiles 0.6x the plane path).

``pattern`` uses the ``ir.pattern`` FKW form: filters reordered for load balance,
connectivity-pruned kernels simply absent. The plane path (and the unblocked tiles) groups
the kernels of a filter by pattern and runs one specialised function per pattern (tap
offsets constants, the switch on the pattern id outside the kernel loop). The blocked fp32
path has one generic loop instead, every entry carrying its tap offsets: per (channel block,
filter) there are only a few kernels of each pattern, and per-pattern loops dispatched inside
the blocks measured 1.34x slower on VGG-16's conv1_2/3_2/4_2/5_2 at 28% kept kernels.
``conv`` is the dense baseline: every ``kh x kw`` tap of every input channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ir.pattern import candidate_patterns, encode_pattern
from mobile.gen_linear import DTYPES
from mobile.requant import check_requant, requant_code
from mobile.source import CTYPES, Arg, KernelSource, SourceWriter, index_ctype

__all__ = ["conv_source", "conv_geometry", "default_library", "channel_block", "tile_shape"]


def _pair(v: Any, what: str, lo: int) -> tuple[int, int]:
    t = tuple(v) if isinstance(v, tuple | list) else (v, v)
    if len(t) != 2 or not all(isinstance(a, int | np.integer) and a >= lo for a in t):
        raise ValueError(f"{what} must be an integer >= {lo} or a pair of them, not {v!r}")
    return int(t[0]), int(t[1])


def conv_geometry(weight_shape: tuple[int, ...], image: Any, stride: Any, padding: Any
                  ) -> dict[str, int]:
    """Sizes of a convolution: c, h, w, o, kh, kw, sh, sw, ph, pw, oh, ow (checked)."""
    o, c, kh, kw = weight_shape
    h, w = _pair(image, "image", 1)
    sh, sw = _pair(stride, "stride", 1)
    ph, pw = _pair(padding, "padding", 0)
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"kernel {kh}x{kw} does not fit the padded image "
                         f"{h + 2 * ph}x{w + 2 * pw}")
    return {"o": o, "c": c, "h": h, "w": w, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "ph": ph,
            "pw": pw, "oh": (h + 2 * ph - kh) // sh + 1, "ow": (w + 2 * pw - kw) // sw + 1}


def default_library(mask: np.ndarray) -> np.ndarray:
    """The distinct kept 3x3 kernel masks of ``mask`` (sorted), or one 4-of-9 pattern if none."""
    k = mask.reshape(-1, 9).astype(np.uint8)
    k = k[k.any(axis=1)]
    if len(k) == 0:
        return candidate_patterns(4)[:1]
    return np.unique(k, axis=0)[::-1].reshape(-1, 3, 3).copy()


def _prepare(weight: Any, mask: Any, bias: Any, dtype: str
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    w = np.asarray(weight)
    if w.ndim != 4 or 0 in w.shape:
        raise ValueError(f"conv weight must be 4-D (out, in, kh, kw) and non-empty, not shape "
                         f"{w.shape} (grouped convolutions are not generated)")
    m = np.ones(w.shape, dtype=bool) if mask is None else np.asarray(mask).astype(bool)
    if m.shape != w.shape:
        raise ValueError(f"conv mask has shape {m.shape}, expected {w.shape}")
    if dtype == "int8":
        if w.dtype.kind not in "iu":
            raise ValueError(f"int8 kernels need integer weights, not dtype {w.dtype}")
        if w.size and (w.min() < -128 or w.max() > 127):
            raise ValueError("int8 kernels need weight values in [-128, 127]")
    wdt = np.float32 if dtype == "fp32" else np.int8
    bdt = np.float32 if dtype == "fp32" else np.int32
    w = np.where(m, w, 0).astype(wdt)
    b = np.zeros(w.shape[0], bdt) if bias is None else np.asarray(bias)
    if b.shape != (w.shape[0],):
        raise ValueError(f"conv bias has shape {b.shape}, expected {(w.shape[0],)}")
    if dtype == "int8" and b.dtype.kind not in "iu":
        raise ValueError("int8 kernels need an int32 bias")
    return w, m, b.astype(bdt)


def _tap_function(name: str, taps: list[tuple[int, int]], g: dict[str, int], dtype: str,
                  owp: int, hp: int, wp: int, idx_ctype: str) -> str:
    """C function adding ``nk`` kernels (channel list, tap weights) with fixed tap offsets."""
    tin = "float" if dtype == "fp32" else "int8_t"
    tacc = "float" if dtype == "fp32" else "int32_t"
    n = len(taps)
    lines = [f"static void {name}({tacc} *acc, const {idx_ctype} *ch, const {tin} *w, int nk) {{",
             f"    for (int k = 0; k < nk; k++, w += {n}) {{",
             f"        const {tin} *xc = mk_xp + (long)ch[k] * {hp * wp};"]
    vec = g["sw"] == 1
    if vec and dtype == "fp32":
        lines += [f"        const vf w{t} = vf_dup(w[{t}]);" for t in range(n)]
    else:
        lines += [f"        const {'float' if dtype == 'fp32' else 'int16_t'} w{t} = w[{t}];"
                  for t in range(n)]
    lines += [f"        for (int oy = 0; oy < {g['oh']}; oy++) {{",
              f"            {tacc} *a = acc + oy * {owp};"]
    lines += [f"            const {tin} *r{t} = xc + (oy * {g['sh']} + {dy}) * {wp} + {dx};"
              for t, (dy, dx) in enumerate(taps)]
    if vec and dtype == "fp32":
        lines += [f"            for (int ox = 0; ox < {owp}; ox += 4) {{",
                  "                vf v = vf_load(a + ox);"]
        lines += [f"                v = vf_fma(v, w{t}, vf_load(r{t} + ox));" for t in range(n)]
        lines += ["                vf_store(a + ox, v);", "            }"]
    elif vec:
        lines += [f"            for (int ox = 0; ox < {owp}; ox += 8) {{",
                  "                va8 v = va8_load(a + ox);"]
        lines += [f"                v = va8_mla(v, r{t} + ox, w{t});" for t in range(n)]
        lines += ["                va8_store(a + ox, v);", "            }"]
    else:
        terms = " + ".join(f"({tacc})w{t} * ({tacc})r{t}[ox * {g['sw']}]" for t in range(n))
        lines += [f"            for (int ox = 0; ox < {g['ow']}; ox++) a[ox] += {terms};"]
    lines += ["        }", "    }", "}", ""]
    return "\n".join(lines) + "\n"


#: Vector width of the tiled convolutions, floats (``vf8``: one AVX register, two NEON q).
VL = 8
#: Largest accumulator tile (rows x vectors): 8 of AVX2's 16 registers (16 of NEON's 32 q);
#: 12 (3 x 4) measured up to 1.4x slower for the dense conv, no faster for the pattern one.
MAX_TILE = 8
#: Bytes of packed input window the channel-blocked convolution keeps in L1 (the host's L1d
#: is 32 KiB, a Cortex-A76's 64 KiB); windows up to 2x this measured slower on the host.
L1_BUDGET = 32 * 1024
#: Work factor of tiles wider than one vector in the channel-blocked path (three window copies
#: instead of one, a third as many channels per block): at 28x28 the 7x1 tile (8% more padded
#: outputs) measured 1.05-1.07x faster than 2x4 on VGG-16's conv4_x.
WIDE_COST = 1.1
#: Software prefetch distance of the tiled convolutions, kernels (measured best of 1, 2, 4).
PREFETCH = 2


def tile_shape(oh: int, ow: int, wide_cost: float = 1.0) -> tuple[int, int]:
    """Output tile ``(rows, vectors)`` of the tiled stride-1 fp32 convolutions for an
    ``oh x ow`` output: the one computing the fewest padded outputs, per-kernel overhead
    (weight load, pointer, loop: about a third of a row vector's FMAs at 4 taps) counted, the
    work of tiles wider than one vector times ``wide_cost`` (the channel-blocked path packs
    their window once per column shift: :data:`WIDE_COST`)."""
    best = None
    for nv in (1, 2, 4):  # 3 vectors (26-float windows) measured slower everywhere
        for r in range(1, MAX_TILE // nv + 1):
            if r > oh and r > 1:
                continue
            tw = nv * VL
            rr = min(r, oh)
            cols = -(-ow // tw) * tw if ow >= tw else tw
            work = -(-oh // rr) * rr * cols * (1 + 3.0 / (rr * nv)) * (wide_cost if nv > 1 else 1)
            if best is None or work < best[0]:
                best = (work, rr, nv)
    return best[1], best[2]


def _tile_body(name: str, dtype: str, taps: list[tuple[int, int]], rows: int, nv: int,
               plane: int, wp: int, wstride: int, ictype: str | None) -> str:
    """C function accumulating kernels into one ``rows x nv*VL`` output tile held in
    registers: per kernel, per tap (constant offsets), broadcast the weight and multiply-add
    unaligned input row vectors. ``ictype`` None: every channel in order (dense)."""
    tw = nv * VL
    fp = dtype == "fp32"
    tin, tacc, vacc = ("float", "float", "vf8") if fp else ("int8_t", "int32_t", "va8")
    tw_ = "float" if fp else "int8_t"
    lines = [f"static void {name}({tacc} *restrict tile, const {tin} *restrict xb, "
             + (f"const {ictype} *ch, " if ictype else "") + f"const {tw_} *w, int nk) {{"]
    acc = [[f"a{r}_{v}" for v in range(nv)] for r in range(rows)]
    lines += [f"    {vacc} {acc[r][v]} = {vacc}_load(tile + {r * tw + v * VL});"
              for r in range(rows) for v in range(nv)]
    chan = "ch[k]" if ictype else "k"
    lines += [f"    for (int k = 0; k < nk; k++, w += {wstride}) {{",
              f"        const {tin} *xc = xb + (long){chan} * {plane};"]
    # Software prefetch of the input window PREFETCH kernels ahead (its channel planes are far
    # apart; the window of a tile spans rows + 2 rows of a few cache lines each).
    nxt = f"ch[k + {PREFETCH}]" if ictype else f"(k + {PREFETCH} < nk ? k + {PREFETCH} : k)"
    esize = 4 if fp else 1
    lines.append(f"        const char *xn = (const char *)(xb + (long){nxt} * {plane});")
    lines += [f"        __builtin_prefetch(xn + {r * wp * esize + 64 * j});"
              for r in range(rows + 2) for j in range(-(-(tw + 2) * esize // 64))]
    if fp:
        lines += [f"        const vf w{j} = vf_load(w + {4 * j});"
                  for j in range(-(-len(taps) // 4))]
    else:
        lines += [f"        const int16_t w{t} = w[{t}];" for t in range(len(taps))]
    for t, (dy, dx) in enumerate(taps):
        for r in range(rows):
            for v in range(nv):
                a, off = acc[r][v], (r + dy) * wp + dx + v * VL
                lines.append(f"        {a} = vf8_fma_lane({a}, vf8_load(xc + {off}), w{t // 4}, "
                             f"w + {4 * (t // 4)}, {t % 4});" if fp else
                             f"        {a} = va8_mla({a}, xc + {off}, w{t});")
    lines.append("    }")
    lines += [f"    {vacc}_store(tile + {r * tw + v * VL}, {acc[r][v]});"
              for r in range(rows) for v in range(nv)]
    return "\n".join(lines) + "\n}\n\n"


def _groups(o: int, kptr: np.ndarray, pid: np.ndarray) -> tuple[list[int], list[int], list[int]]:
    """Runs of same-pattern kernels per stored filter: ``(filter -> first run, run pattern,
    run first kernel + a final end)``."""
    grp_ptr, grp_pid, grp_k0 = [0], [], []
    for f in range(o):
        k0, k1 = int(kptr[f]), int(kptr[f + 1])
        for k in range(k0, k1):
            if k == k0 or pid[k] != pid[k - 1]:
                grp_pid.append(int(pid[k]))
                grp_k0.append(k)
        grp_ptr.append(len(grp_pid))
    grp_k0.append(int(kptr[o]))
    return grp_ptr, grp_pid, grp_k0


def _tiled(sw: SourceWriter, kind: str, dtype: str, g: dict[str, int], fkw: tuple,
           b: np.ndarray, hp: int, wp: int, shape: tuple[int, int]) -> str:
    """Body of the tiled stride-1 convolution (dense or pattern, fp32 or int8).

    Row tiles of ``rows`` output rows outermost (their input rows, every channel, stay in
    L2); per stored filter, per column tile of ``nv`` vectors: the tile starts at the bias,
    each run of same-pattern kernels (dense: every channel) adds into it through its specialised
    function, and it is stored once. The last row and column tiles are moved back to end at the image edge (they overlap
    the one before and store the same values), so no tail code.
    """
    order, kptr, chan, pid, values, positions = fkw
    o, c, kw, oh, ow = g["o"], g["c"], g["kw"], g["oh"], g["ow"]
    rows, nv = shape
    tw, plane = nv * VL, hp * wp
    n = positions.shape[1]
    wstride = -(-n // 4) * 4
    fp = dtype == "fp32"
    vals = np.zeros((len(values), wstride), np.float32 if fp else np.int8)
    vals[:, :n] = values
    sw.const("cv_order", order, index_ctype(o))
    sw.const("cv_val", vals, vals.dtype)
    sw.const("cv_b", b, b.dtype)
    if kind == "conv":
        taps = [(int(q) // kw, int(q) % kw) for q in positions[0]]
        sw.emit(_tile_body("dense_tile", dtype, taps, rows, nv, plane, wp, wstride, None))
        calls = (f"        dense_tile(tile, xb, cv_val + (long)f * {c * wstride}, {c});\n")
    else:
        grp_ptr, grp_pid, grp_k0 = _groups(o, kptr, pid)
        used = sorted(set(grp_pid))
        sw.const("cv_gptr", grp_ptr, np.int32)
        sw.const("cv_gpid", grp_pid, np.uint8 if len(positions) < 256 else np.int32)
        sw.const("cv_gk0", grp_k0, np.int32)
        # PREFETCH padding entries: the prefetch reads ch[k + PREFETCH] past a run's end.
        sw.const("cv_chan", np.concatenate([chan, np.zeros(PREFETCH, chan.dtype)]),
                 index_ctype(c))
        ictype = CTYPES[index_ctype(c)]
        for p in used:
            taps = [(int(q) // kw, int(q) % kw) for q in positions[p]]
            sw.emit(_tile_body(f"pat{p}", dtype, taps, rows, nv, plane, wp, wstride, ictype))
        cases = "".join(f"            case {p}: pat{p}(tile, xb, cv_chan + k0, cv_val + (long)k0"
                        f" * {wstride}, k1 - k0); break;\n" for p in used)
        calls = ("        for (int gi = cv_gptr[f]; gi < cv_gptr[f + 1]; gi++) {\n"
                 "            const int k0 = cv_gk0[gi], k1 = cv_gk0[gi + 1];\n"
                 "            switch (cv_gpid[gi]) {\n" + cases + "            default: break;\n"
                 "            }\n        }\n")
    tacc = "float" if fp else "int32_t"
    nty, ntx = -(-oh // rows), (-(-ow // tw) if ow >= tw else 1)
    ox = f"(tx * {tw} < {ow - tw} ? tx * {tw} : {ow - tw})" if ow >= tw else "0"
    return (f"    {tacc} tile[{rows * tw}] __attribute__((aligned(64)));\n"
            f"    for (int ty = 0; ty < {nty}; ty++) {{\n"
            f"      const int oy = ty * {rows} < {oh - rows} ? ty * {rows} : {oh - rows};\n"
            f"      for (int f = 0; f < {o}; f++) {{\n"
            "       const int oc = cv_order[f];\n"
            f"       for (int tx = 0; tx < {ntx}; tx++) {{\n"
            f"        const int ox = {ox};\n"
            f"        for (int i = 0; i < {rows * tw}; i++) tile[i] = cv_b[oc];\n"
            f"        const {'float' if fp else 'int8_t'} *xb = mk_xp + oy * {wp} + ox;\n"
            + calls +
            f"        {tacc} *yt = yo + ((long)oc * {oh} + oy) * {ow} + ox;\n"
            f"        for (int r = 0; r < {rows}; r++) memcpy(yt + r * {ow}, tile + r * {tw}, "
            f"{min(tw, ow)} * sizeof({tacc}));\n"
            "       }\n      }\n    }\n")


def _row_stride(tw: int, kw: int) -> int:
    """Floats per packed window row: the ``tw + kw - 1`` inputs of a tile row rounded up to
    whole 64-byte lines, so that a vector load at any column shift stays in one line when the
    tile is one vector wide."""
    return -(-(tw + kw - 1) // 16) * 16


def _pair_taps(dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pattern, two taps of one column (same ``dx``) to run as a pair: ``(perm, cls)``.

    ``perm[p]`` lists the pattern's taps with the pair first (upper tap, then lower), ``cls[p]``
    is 0 when the pair's rows are adjacent, 1 when they are two apart, 2 with no pair (taps in
    their own order). A pair's input rows are loaded once for both taps (a ``rows``-row tile
    needs ``rows + 1`` or ``rows + 2`` loads instead of ``2 rows``); a 4-of-9 pattern always
    has one (four taps, three columns).
    """
    n_pat, n = dy.shape
    perm = np.tile(np.arange(n), (n_pat, 1))
    cls = np.full(n_pat, 2, np.int64)
    for p in range(n_pat):
        for gap, c in ((1, 0), (2, 1)):
            pair = next(((i, j) for i in range(n) for j in range(n)
                         if dx[p, i] == dx[p, j] and dy[p, j] - dy[p, i] == gap), None)
            if pair is not None:
                rest = [t for t in range(n) if t not in pair]
                perm[p] = [*pair, *rest]
                cls[p] = c
                break
    return perm, cls


def _copies(nv: int, kw: int) -> int:
    """Copies of the packed window: one when the tile is one vector wide (a load at a column
    shift of up to 8 floats stays inside the 64-byte row), else one per column shift (every
    load aligned: a shifted load of a wider row would cross cache lines)."""
    return 1 if nv == 1 and kw <= 9 else kw


def channel_block(c: int, shape: tuple[int, int], kh: int, kw: int) -> int:
    """Input channels per block of the channel-blocked convolution: as many as keep the packed
    window (per channel ``rows + kh - 1`` rows, :func:`_copies` copies of them) within
    :data:`L1_BUDGET`, at least 1, evened out over the blocks ``c`` needs."""
    rows, nv = shape
    copies = _copies(nv, kw)
    per = (rows + kh - 1) * (_row_stride(nv * VL, kw) if copies == 1 else nv * VL) * copies * 4
    most = max(1, min(c, L1_BUDGET // per))
    nb = -(-c // most)
    return -(-c // nb)


def _blocked(sw: SourceWriter, g: dict[str, int], fkw: tuple, b: np.ndarray,
             shape: tuple[int, int], cblock: int) -> str:
    """Body of the channel-blocked stride-1 fp32 convolution (dense or pattern).

    Row tile, then column tile, then block of ``cblock`` input channels: ``mk_pack`` copies
    the block's input window, zero padding included, into ``mk_pk`` (:func:`_copies`: once,
    rows padded to 64 bytes, for one-vector tiles, whose shifted loads then stay inside a cache
    line; else once per column shift, every load aligned), prefetching the source two tiles
    ahead, and it stays in L1 while every stored filter adds its kernels of the block into its
    ``rows x nv`` register tile (loaded from and stored to ``mk_ps``, the partial sums of every
    filter, which start at the bias). The whole input is never copied.

    One function for every kernel of a (block, filter), no switch on the pattern: each entry
    carries its tap offsets into the packed window and its weights. Taps of one column share
    input rows (tap ``(dy, dx)`` of output row ``r`` reads window row ``r + dy``), so each
    kernel runs two taps of one column as a pair (:func:`_pair_taps`) whose ``rows + gap``
    input vectors are loaded once into registers and used by both taps (``vf8_keep``: GCC
    would fold each use into its multiply-add as a separate load); the entries of a (block,
    filter) are grouped by the pair's gap (1, 2, none), one loop each. With a single tap set
    (dense) the offsets are constants and every input vector is loaded once per kernel. At
    8x1 tiles a 4-tap kernel issues 25 or 26 vector loads for its 32 FMAs instead of 32, which
    made the VGG-16 pattern layers 1.10-1.19x faster (and the dense conv 1.08-1.26x).
    """
    order, kptr, chan, pid, values, positions = fkw
    o, c, kh, kw, oh, ow = g["o"], g["c"], g["kh"], g["kw"], g["oh"], g["ow"]
    rows, nv = shape
    tw = nv * VL
    n = positions.shape[1]
    wstride = -(-n // 4) * 4
    h, w, ph, pw = g["h"], g["w"], g["ph"], g["pw"]
    nb = -(-c // cblock)
    copies = _copies(nv, kw)
    rs = _row_stride(tw, kw) if copies == 1 else tw  # packed row stride (floats)
    cs = (rows + kh - 1) * rs                        # packed channel stride
    ds = 1 if copies == 1 else cblock * cs           # packed column shift stride
    filt = np.repeat(np.arange(o), np.diff(kptr))
    blk = chan // cblock
    dy, dx = positions // kw, positions % kw         # (patterns, n)
    tap = dx * ds + dy * rs                          # (patterns, n)
    if len(positions) == 1:
        # One tap set (dense; a one-pattern library): tap offsets are constants, so every
        # input vector is loaded once per kernel and used by each tap of its column.
        perm, cls = np.arange(n)[None, :], np.zeros(1, np.int64)
        nseg, noff = 1, 1
    else:
        perm, cls = _pair_taps(dy, dx)
        nseg, noff = 3, n
    ent = np.lexsort((chan, cls[pid], filt, blk))    # by block, stored filter, class, channel
    bptr = np.zeros(nb * o * nseg + 1, np.int64)
    np.add.at(bptr, (blk * o + filt) * nseg + cls[pid] + 1, 1)
    bptr = np.cumsum(bptr)
    pe = pid[ent]
    base = ((chan[ent] % cblock) * cs)[:, None]
    offs = base if noff == 1 else np.take_along_axis(tap[pe], perm[pe], axis=1) + base
    vals = np.zeros((len(ent), wstride), np.float32)
    vals[:, :n] = np.take_along_axis(values[ent], perm[pe], axis=1)
    otype = index_ctype(int(offs.max()) if offs.size else 0)
    sw.const("cv_order", order, index_ctype(o))
    sw.const("cv_val", vals, np.float32)
    sw.const("cv_off", offs, otype)
    sw.const("cv_bptr", bptr, np.int32)
    sw.const("cv_b", b, np.float32)
    oct_ = CTYPES[otype]
    acc = [[f"a{r}_{v}" for v in range(nv)] for r in range(rows)]
    segs = ["n0"] if nseg == 1 else ["n1", "n2", "n0"]
    fn = [f"static void blk_tile(float *restrict ps, const float *restrict pk, "
          f"const float *restrict w, const {oct_} *restrict off, "
          + ", ".join(f"int {q}" for q in segs) + ") {"]
    fn += [f"    vf8 {acc[r][v]} = vf8_load(ps + {r * tw + v * VL});"
           for r in range(rows) for v in range(nv)]

    def fma(a: str, x: str, t: int) -> str:
        return f"{a} = vf8_fma_lane({a}, {x}, w{t // 4}, w + {4 * (t // 4)}, {t % 4});"

    def column(base: str, taps: list[tuple[int, int]]) -> list[str]:
        """Each input row of a column of taps ``(tap, dy)`` loaded once, used by every tap."""
        out = []
        top = max(d for _, d in taps)
        for v in range(nv):
            for y in range(rows + top):
                uses = [(t, y - d) for t, d in taps if 0 <= y - d < rows]
                if uses:
                    out.append(f"        {{ vf8 x = vf8_load({base} + {y * rs + v * VL}); vf8_keep(x);")
                    out += [f"          {fma(acc[r][v], 'x', t)}" for t, r in uses]
                    out.append("        }")
        return out

    for q in segs:
        fn.append(f"    for (int k = 0; k < {q}; k++, w += {wstride}, off += {noff}) {{")
        fn += [f"        const vf w{j} = vf_load(w + {4 * j});" for j in range(wstride // 4)]
        if nseg == 1:
            fn.append("        const float *p = pk + off[0];")
            for c_ in range(kw):
                col = [(t, int(dy[0, t])) for t in range(n) if dx[0, t] == c_]
                if col:
                    fn += column(f"p + {c_ * ds}", col)
        else:
            d = {"n1": 1, "n2": 2, "n0": 0}[q]
            first = 0 if d == 0 else 2
            if d:
                fn.append("        const float *p0 = pk + off[0];")
                fn += column("p0", [(0, 0), (1, d)])
            fn += [f"        const float *p{t} = pk + off[{t}];" for t in range(first, n)]
            for t in range(first, n):
                for r in range(rows):
                    for v in range(nv):
                        fn.append(f"        {fma(acc[r][v], f'vf8_load(p{t} + {r * rs + v * VL})', t)}")
        fn.append("    }")
    fn += [f"    vf8_store(ps + {r * tw + v * VL}, {acc[r][v]});"
           for r in range(rows) for v in range(nv)]
    sw.emit("\n".join(fn) + "\n}\n\n")
    sw.emit(f"static float mk_pk[{copies * cblock * cs}] __attribute__((aligned(64)));\n"
            f"static float mk_ps[{o * rows * tw}] __attribute__((aligned(64)));\n\n")
    nty, ntx = -(-oh // rows), (-(-ow // tw) if ow >= tw else 1)
    ox = f"(tx * {tw} < {ow - tw} ? tx * {tw} : {ow - tw})" if ow >= tw else "0"
    t = rows * tw
    span = tw + kw - 1 if copies == 1 else tw     # floats packed per row and copy
    sw.emit(
        "/* Pack channels c0 .. c0+cn-1 of the input window at (oy, ox) (top-left output) into\n"
        "   mk_pk, zero padding included: no padded copy of the whole input. */\n"
        "static void mk_pack(const float *restrict x, int c0, int cn, int oy, int ox) {\n"
        f"    const int inside = ox - {pw} >= 0 && ox - {pw} + {kw - 1 + tw} <= {w};\n"
        "    for (int cl = 0; cl < cn; cl++)\n"
        f"      for (int r = 0; r < {rows + kh - 1}; r++) {{\n"
        f"        float *d = mk_pk + cl * {cs} + r * {rs};\n"
        f"        const int iy = oy + r - {ph};\n"
        f"        if (iy < 0 || iy >= {h}) {{\n"
        f"          for (int s = 0; s < {copies}; s++) memset(d + s * {ds}, 0, {span} * sizeof(float));\n"
        "          continue;\n        }\n"
        f"        const float *row = x + ((long)(c0 + cl) * {h} + iy) * {w};\n"
        f"        __builtin_prefetch(row + ox + {2 * tw});\n"
        "        if (inside)\n"
        f"          for (int s = 0; s < {copies}; s++)\n"
        f"            memcpy(d + s * {ds}, row + ox - {pw} + s, {span} * sizeof(float));\n"
        f"        else for (int s = 0; s < {copies}; s++)\n"
        f"          for (int j = 0, ix = ox - {pw} + s; j < {span}; j++, ix++)\n"
        f"            d[s * {ds} + j] = ix >= 0 && ix < {w} ? row[ix] : 0.0f;\n"
        "        }\n}\n\n")
    pack = "        mk_pack(x, c0, cn, oy, ox);\n"
    return (f"    for (int ty = 0; ty < {nty}; ty++) {{\n"
            f"     const int oy = ty * {rows} < {oh - rows} ? ty * {rows} : {oh - rows};\n"
            f"     for (int tx = 0; tx < {ntx}; tx++) {{\n"
            f"      const int ox = {ox};\n"
            f"      for (int f = 0; f < {o}; f++)\n"
            f"        for (int i = 0; i < {t}; i++) mk_ps[f * {t} + i] = cv_b[cv_order[f]];\n"
            f"      for (int bl = 0; bl < {nb}; bl++) {{\n"
            f"        const int c0 = bl * {cblock}, cn = {c} - c0 < {cblock} ? {c} - c0 : {cblock};\n"
            + pack +
            f"        const int32_t *bp = cv_bptr + bl * {o * nseg};\n"
            f"        for (int f = 0; f < {o}; f++, bp += {nseg})\n"
            f"          if (bp[{nseg}] > bp[0])\n"
            f"            blk_tile(mk_ps + f * {t}, mk_pk, cv_val + (long)bp[0] * {wstride}, "
            f"cv_off + (long)bp[0] * {noff}, "
            + ", ".join(f"bp[{i + 1}] - bp[{i}]" for i in range(nseg)) + ");\n"
            "      }\n"
            f"      for (int f = 0; f < {o}; f++) {{\n"
            f"        float *yt = yo + ((long)cv_order[f] * {oh} + oy) * {ow} + ox;\n"
            f"        for (int r = 0; r < {rows}; r++) memcpy(yt + r * {ow}, mk_ps + f * {t} + "
            f"r * {tw}, {min(tw, ow)} * sizeof(float));\n"
            "      }\n     }\n    }\n")


def _filter_loop(sw: SourceWriter, kind: str, dtype: str, g: dict[str, int], fkw: tuple,
                 b: np.ndarray, owp: int, hp: int, wp: int) -> str:
    """Body of the per-filter loop: an accumulator plane per stored filter, one specialised
    tap function per pattern called on each run of same-pattern kernels."""
    order, kptr, chan, pid, values, positions = fkw
    o, c, kw = g["o"], g["c"], g["kw"]
    tacc = "float" if dtype == "fp32" else "int32_t"
    grp_ptr, grp_pid, grp_k0 = _groups(o, kptr, pid)
    used = sorted(set(grp_pid))
    ictype = CTYPES[index_ctype(c)]
    sw.const("cv_order", order, index_ctype(o))
    sw.const("cv_gptr", grp_ptr, np.int32)
    sw.const("cv_gpid", grp_pid, np.uint8 if len(positions) < 256 else np.int32)
    sw.const("cv_gk0", grp_k0, np.int32)
    sw.const("cv_chan", chan, index_ctype(c))
    sw.const("cv_val", values, np.float32 if dtype == "fp32" else np.int8)
    sw.const("cv_b", b, b.dtype)
    sw.emit(f"static {tacc} mk_acc[{g['oh'] * owp}] __attribute__((aligned(64)));\n\n")
    n = positions.shape[1]
    for p in used:
        taps = [(int(q) // kw, int(q) % kw) for q in positions[p]]
        sw.emit(_tap_function(f"pat{p}", taps, g, dtype, owp, hp, wp, ictype))
    cases = "".join(f"            case {p}: pat{p}(mk_acc, cv_chan + k0, cv_val + (long)k0 * {n}, "
                    "k1 - k0); break;\n" for p in used)
    return (f"    for (int f = 0; f < {o}; f++) {{\n"
            "        const int oc = cv_order[f];\n"
            f"        for (int i = 0; i < {g['oh'] * owp}; i++) mk_acc[i] = cv_b[oc];\n"
            "        for (int gi = cv_gptr[f]; gi < cv_gptr[f + 1]; gi++) {\n"
            "            const int k0 = cv_gk0[gi], k1 = cv_gk0[gi + 1];\n"
            "            switch (cv_gpid[gi]) {\n" + cases + "            default: break;\n"
            "            }\n        }\n"
            f"        for (int oy = 0; oy < {g['oh']}; oy++)\n"
            f"            memcpy(yo + ((long)oc * {g['oh']} + oy) * {g['ow']}, mk_acc + oy * {owp}, "
            f"{g['ow']} * sizeof({tacc}));\n"
            "    }\n")


def conv_source(kind: str, weight: Any, mask: Any = None, bias: Any = None,
                dtype: str = "fp32", image: Any = (8, 8), stride: Any = 1, padding: Any = 0,
                library: Any = None, requant: Any = None, tiled: bool | None = None,
                tile: tuple[int, int] | None = None,
                cblock: int | None = None) -> KernelSource:
    """A convolution kernel ``mk_run(x (c, h, w), y (o, oh, ow))``: ``conv`` or ``pattern``.

    int8 outputs are int32 accumulators, or int8 after ``requant`` (see :mod:`mobile.requant`).
    ``tiled``: the register-tiled stride-1 loop (default: for fp32) or the plane-accumulator
    loop (``False``; always for other strides); ``tile``: its (rows, vectors), default
    :func:`tile_shape`; ``cblock``: input channels per block of the fp32 tiled loop (default
    :func:`channel_block`; 0: no channel blocking, the whole padded input in L2).

    ``pattern`` needs 3x3 kernels whose kept masks are ``library`` patterns (default: the
    distinct kept masks of ``mask``; all must keep the same number of positions).
    """
    if kind not in ("conv", "pattern"):
        raise ValueError(f"conv kind must be 'conv' or 'pattern', not {kind!r}")
    w, m, b = _prepare(weight, mask, bias, dtype)
    rq = check_requant(requant, dtype)
    g = conv_geometry(w.shape, image, stride, padding)
    o, c, kh, kw = w.shape
    if kind == "pattern":
        if (kh, kw) != (3, 3):
            raise ValueError(f"pattern kernels are 3x3, not {kh}x{kw}")
        lib = default_library(m) if library is None else library
        enc = encode_pattern(w, lib, m)
        order, kptr, chan, pid = enc.filter_order, enc.kernel_ptr, enc.channel, enc.pattern_id
        values, positions = enc.values, enc.positions
    else:
        order, kptr = np.arange(o), np.arange(o + 1) * c
        chan, pid = np.tile(np.arange(c), o), np.zeros(o * c, dtype=np.int64)
        values = w.reshape(o * c, kh * kw)
        positions = np.arange(kh * kw)[None, :]
    vw = 4 if dtype == "fp32" else 8
    owp = -(-g["ow"] // vw) * vw
    hp = g["h"] + 2 * g["ph"]
    wp = max(g["w"] + 2 * g["pw"], owp * g["sw"] + kw)
    # Default: tiled for fp32 only; int8 tiles measured 0.6x the plane path on the host (the
    # int8 multiply-add is vpmovsxbd + vpmulld + vpaddd either way, the plane path streams it).
    tiled = g["sh"] == g["sw"] == 1 and (dtype == "fp32" if tiled is None else tiled)
    if tiled:
        narrow = dtype == "fp32" and cblock != 0                # the channel-blocked path
        shape = tile_shape(g["oh"], g["ow"], WIDE_COST if narrow else 1.0) if tile is None else tile
        wp = max(g["w"] + 2 * g["pw"], shape[1] * VL + kw - 1)
    tin = "float" if dtype == "fp32" else "int8_t"
    sw = SourceWriter()
    blocked = tiled and dtype == "fp32" and cblock != 0
    if blocked and cblock is None:
        cblock = channel_block(c, shape, kh, kw)
    if not blocked:
        sw.emit(f"static {tin} mk_xp[{c * hp * wp + 16}] __attribute__((aligned(64)));\n")
    body = "" if blocked else (
            f"    for (int ci = 0; ci < {c}; ci++)\n"
            f"        for (int r = 0; r < {g['h']}; r++)\n"
            f"            memcpy(mk_xp + (long)ci * {hp * wp} + (r + {g['ph']}) * {wp} + "
            f"{g['pw']}, x + ((long)ci * {g['h']} + r) * {g['w']}, {g['w']} * sizeof({tin}));\n")
    n = positions.shape[1]
    fkw = (order, kptr, chan, pid, values, positions)
    if blocked:
        body += _blocked(sw, g, fkw, b, shape, cblock)
    elif tiled:
        body += _tiled(sw, kind, dtype, g, fkw, b, hp, wp, shape)
    else:
        body += _filter_loop(sw, kind, dtype, g, fkw, b, owp, hp, wp)
    n_out = o * g["oh"] * g["ow"]
    if rq:
        decl, loop = requant_code(n_out, rq)
        sw.emit(decl)
        body = "    int32_t *yo = mk_racc;\n" + body + loop
    else:
        body = "    __typeof__(y) yo = y;\n" + body
    out_dt = np.float32 if dtype == "fp32" else (np.int8 if rq else np.int32)
    args = (Arg("x", np.dtype(np.float32 if dtype == "fp32" else np.int8), (c, g["h"], g["w"])),
            Arg("y", np.dtype(out_dt), (o, g["oh"], g["ow"]), True))
    pix = g["oh"] * g["ow"]
    info = {"out": o, "in": c, "kernel": [kh, kw], "image": [g["h"], g["w"]],
            "stride": [g["sh"], g["sw"]], "padding": [g["ph"], g["pw"]],
            "nnz": int(m.sum()), "kept_kernels": int(len(chan)), "patterns_used": len(np.unique(pid)),
            "dense_macs": o * c * kh * kw * pix, "kept_macs": int(len(chan)) * n * pix}
    return sw.finish(kind, dtype, args, body, info)
