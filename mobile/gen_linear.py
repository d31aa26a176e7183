"""Matrix-vector generators: dense (blocked, vectorised), CSR and BCR, fp32 and int8.

Each ``emit_*`` writes one ``static void NAME(const T *x, A *y)`` into a
:class:`~mobile.source.SourceWriter` computing ``y = W x + b`` (int8: int32 accumulators that
wrap, exactly ``ir.golden.linear``) and returns ``NAME``; :func:`linear_source` wraps one of
them into a whole kernel. The LSTM/GRU steps reuse the same functions.

* dense: rows in groups of 4 stored as interleaved panels (one contiguous weight stream per
  group), columns padded with zeros to the vector width, one vector accumulator per row (the
  baseline every speedup is measured against).
* csr: row pointers, column indices, values, indirect loads of ``x`` (the generic sparse
  baseline).
* bcr: loops over stored blocks of the ``ir.bcr`` compact form: gather the kept inputs into
  a small buffer, dense kept-rows x kept-columns product vectorised over the columns (rows in
  groups of 4), scatter-add into ``y``. Sub-block rows are padded with zero weights to the
  vector width and the gather list with a valid column, so every loop runs whole vectors.
  int8 blocks keeping at most 16 columns are packed instead, kept columns padded to 4, 8 or
  16. Their inputs come as one 16-byte vector per block: loaded from ``x`` when every block of
  a width keeps that many consecutive columns (at a pointer stepping by the block width when
  they are the first blocks of each block row, in order, each from its first column), else
  one table lookup (blocks at most 16 wide) or byte loads. In whole block rows at most 16 high (a multiple of 4) the blocks of all three
  widths run one loop over block rows whose row sums stay in registers, 4 rows to a vector
  (row ``k`` in lane ``k``: ``sdot`` by element, one 4-row x 4-column weight vector against
  one group of 4 inputs, no reduction) across all the block row's blocks, and reach ``y`` once:
  either every row of the block row (the sums start at the bias and are stored, ``y`` needs
  no initialisation there) or, by the rule below, the rows that some block of the block row
  keeps, compacted (scatter-added 4 at a time). Elsewhere (the edge block row, other heights)
  each block's kept rows are scatter-added 4 at a time, ``16 // width`` rows to a vector.

  Compaction rule (per layer, from counts): ``nq`` groups of 4 rows hold the kept rows of
  the block row keeping the most; compact when ``nq < height / 4`` and the vector steps
  saved, ``(height / 4 - nq) x sum over blocks of width / 4``, are at least 2 per row of the
  full block rows (llvm-mca: pays from 2 on, loses at 1). Blocks that keep random rows leave
  every row kept by some block (no compaction, half the products of density 0.5 are zeros);
  rows pruned per block row (every block of it keeping the same rows) make a dense kept-rows
  x kept-columns panel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ir.bcr import encode_bcr
from mobile.requant import check_requant, requant_code
from mobile.source import CTYPES, Arg, KernelSource, SourceWriter, index_ctype

__all__ = ["DTYPES", "LINEAR_KINDS", "emit_matvec", "linear_source", "vector_width",
           "prepare_matrix"]

DTYPES = ("fp32", "int8")
LINEAR_KINDS = ("dense", "csr", "bcr")


def vector_width(dtype: str) -> int:
    """Elements per vector step: 4 floats (fp32) or 16 int8 (int8)."""
    return 4 if dtype == "fp32" else 16


def _types(dtype: str) -> tuple[str, str, np.dtype, np.dtype]:
    """(input C type, accumulator C type, weight dtype, bias dtype)."""
    if dtype == "fp32":
        return "float", "float", np.dtype(np.float32), np.dtype(np.float32)
    return "int8_t", "int32_t", np.dtype(np.int8), np.dtype(np.int32)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def prepare_matrix(weight: Any, mask: Any, bias: Any, dtype: str, what: str = "weight"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check and convert a 2-D weight, its mask and bias for a ``dtype`` kernel.

    Returns ``(w, mask, b)``: ``w`` float32 (fp32) or int8 (int8) with zeros where ``mask`` is
    0, ``mask`` bool, ``b`` float32 or int32 (zeros when ``bias`` is None).

    Raises
    ------
    ValueError
        Naming ``what`` for a bad dtype, shape, or int8 weights outside [-128, 127].
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    w = np.asarray(weight)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"{what} must be a non-empty 2-D array (out, in), not shape {w.shape}")
    m = np.ones(w.shape, dtype=bool) if mask is None else np.asarray(mask).astype(bool)
    if m.shape != w.shape:
        raise ValueError(f"mask of {what} has shape {m.shape}, expected {w.shape}")
    _, _, wdt, bdt = _types(dtype)
    if dtype == "int8":
        if w.dtype.kind not in "iu":
            raise ValueError(f"int8 kernels need integer {what}, not dtype {w.dtype}")
        if w.size and (w.min() < -128 or w.max() > 127):
            raise ValueError(f"int8 kernels need {what} values in [-128, 127]; found "
                             f"{int(w.min())} .. {int(w.max())}")
    elif w.dtype.kind not in "iuf":
        raise ValueError(f"{what} must be numeric, not dtype {w.dtype}")
    w = np.where(m, w, 0).astype(wdt)
    if bias is None:
        b = np.zeros(w.shape[0], dtype=bdt)
    else:
        b = np.asarray(bias)
        if b.shape != (w.shape[0],):
            raise ValueError(f"bias of {what} has shape {b.shape}, expected {(w.shape[0],)}")
        if dtype == "int8" and (b.dtype.kind not in "iu" or (b.size and (
                b.min() < -2**31 or b.max() >= 2**31))):
            raise ValueError(f"int8 kernels need an int32 bias for {what}")
        b = b.astype(bdt)
    return w, m, b


def _dot_rows(dtype: str, nrows: int, wptr: str, stride: str, xs: str, ncols: str,
              panel: bool = False) -> str:
    """C statements: sums ``s`` (4 rows) or ``s0`` (1 row) of ``nrows`` weight rows times ``xs``.

    Rows start ``stride`` elements apart, or (``panel``) the 4 rows are interleaved in chunks of
    one vector: chunk ``j`` of row ``k`` at ``wptr + 4 * j + k * vector_width``.
    """
    vw = vector_width(dtype)
    z, acc = ("vf_zero()", "vf") if dtype == "fp32" else ("vi_zero()", "vi")

    def waddr(k: int) -> str:
        return f"{wptr} + 4 * j + {k * vw}" if panel else f"w{k} + j"
    lines = [f"            {acc} a{k} = {z};" for k in range(nrows)]
    if not panel:
        wt = "float" if dtype == "fp32" else "int8_t"
        lines += [f"            const {wt} *w{k} = {wptr} + {k} * {stride};" for k in range(nrows)]
    lines.append(f"            for (long j = 0; j < {ncols}; j += {vw}) {{")
    if dtype == "fp32":
        lines.append(f"                vf xv = vf_load({xs} + j);")
        lines += [f"                a{k} = vf_fma(a{k}, vf_load({waddr(k)}), xv);"
                  for k in range(nrows)]
    else:
        lines += [f"                a{k} = vi_dot16(a{k}, {waddr(k)}, {xs} + j);"
                  for k in range(nrows)]
    lines.append("            }")
    hs = "vf_hsum" if dtype == "fp32" else "vi_hsum"
    ctype = "float" if dtype == "fp32" else "int32_t"
    if nrows == 4:
        lines.append(f"            {ctype} s[4];")
        lines.append(f"            {hs}4(s, a0, a1, a2, a3);")
    else:
        lines += [f"            {ctype} s{k} = {hs}(a{k});" for k in range(nrows)]
    return "\n".join(lines) + "\n"


def _add(dtype: str, a: str, b: str) -> str:
    return f"{a} + {b}" if dtype == "fp32" else f"mk_wrap_add({a}, {b})"


def _emit_dense(sw: SourceWriter, p: str, w: np.ndarray, b: np.ndarray, dtype: str) -> str:
    rows, cols = w.shape
    tin, tacc, wdt, bdt = _types(dtype)
    vw = vector_width(dtype)
    cp, rp = _round_up(cols, vw), _round_up(rows, 4)
    wp = np.zeros((rp, cp), dtype=wdt)
    wp[:rows, :cols] = w
    # panels of 4 rows interleaved vector by vector: one contiguous stream per row group
    panels = wp.reshape(rp // 4, 4, cp // vw, vw).transpose(0, 2, 1, 3)
    sw.const(f"{p}_w", panels, wdt)
    sw.const(f"{p}_b", b, bdt)
    sw.emit(f"static {tin} {p}_xs[{cp}] __attribute__((aligned(64)));\n"
            f"static void {p}(const {tin} *x, {tacc} *y) {{\n"
            f"    memcpy({p}_xs, x, {cols} * sizeof({tin}));\n"
            f"    for (int r = 0; r < {rp}; r += 4) {{\n"
            f"        const {tin} *wr = {p}_w + (long)r * {cp};\n"
            "        {\n"
            + _dot_rows(dtype, 4, "wr", str(cp), f"{p}_xs", str(cp), panel=True) +
            f"            for (int k = 0; k < 4 && r + k < {rows}; k++) "
            f"y[r + k] = {_add(dtype, 's[k]', f'{p}_b[r + k]')};\n"
            "        }\n    }\n}\n\n")
    return p


def _emit_csr(sw: SourceWriter, p: str, w: np.ndarray, m: np.ndarray, b: np.ndarray,
              dtype: str) -> str:
    rows, cols = w.shape
    tin, tacc, wdt, bdt = _types(dtype)
    r_idx, c_idx = np.nonzero(m)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(r_idx, minlength=rows))])
    sw.const(f"{p}_ptr", ptr, np.int32)
    sw.const(f"{p}_col", c_idx, index_ctype(cols))
    sw.const(f"{p}_val", w[r_idx, c_idx], wdt)
    sw.const(f"{p}_b", b, bdt)
    sw.emit(f"static void {p}(const {tin} *x, {tacc} *y) {{\n"
            f"    for (int r = 0; r < {rows}; r++) {{\n"
            f"        {tacc} s = {p}_b[r];\n"
            f"        for (int k = {p}_ptr[r]; k < {p}_ptr[r + 1]; k++)\n"
            f"            s += ({tacc}){p}_val[k] * ({tacc})x[{p}_col[k]];\n"
            "        y[r] = s;\n    }\n}\n\n")
    return p


#: int8 kept-column widths run by the packed loops, ``16 // width`` rows to a 16-byte vector.
PACKED_WIDTHS = (4, 8, 16)
#: Rows per iteration of a packed block loop (its kept rows are padded to a multiple).
_PACK_ROWS = 4


def padded_width(ncols: int, dtype: str) -> int:
    """Kept columns of a BCR block padded for its kernel loop.

    fp32: a multiple of 4. int8: the next of 4, 8 and 16 (:data:`PACKED_WIDTHS`), then
    multiples of 16; ``ncols`` >= 1.
    """
    if dtype == "int8":
        for width in PACKED_WIDTHS:
            if ncols <= width:
                return width
    return _round_up(ncols, vector_width(dtype))


def _pad_block(ra: np.ndarray, ca: np.ndarray, sub: np.ndarray, nrp: int, ncp: int, wdt: Any
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block's rows padded to ``nrp`` and columns to ``ncp`` (zero weights; padded rows and
    columns repeat the block's first row and column, so every index stays valid)."""
    padded = np.zeros((nrp, ncp), dtype=wdt)
    padded[:len(ra), :len(ca)] = sub
    rows = np.concatenate([ra, np.full(nrp - len(ra), ra[0])])
    cols = np.concatenate([ca, np.full(ncp - len(ca), ca[0])])
    return rows, cols, padded


def _general_loop(sw: SourceWriter, p: str, blocks: list[tuple], dtype: str, rows: int,
                  cols: int) -> str:
    """C statements: every block of ``blocks`` one at a time, kept columns padded to the vector
    width, rows in groups of 4 then one by one, gathered through ``{p}_xs``."""
    tin, _, wdt, _ = _types(dtype)
    rptr, cptr, vptr = [0], [0], [0]
    rows_abs, cols_abs, vals = [], [], []
    for _, _, ra, ca, sub in blocks:
        ra, ca, padded = _pad_block(ra, ca, sub, len(ra), padded_width(len(ca), dtype), wdt)
        rows_abs.append(ra)
        cols_abs.append(ca)
        vals.append(padded.reshape(-1))
        rptr.append(rptr[-1] + len(ra))
        cptr.append(cptr[-1] + len(ca))
        vptr.append(vptr[-1] + padded.size)
    sw.const(f"{p}_rptr", rptr, np.int32)
    sw.const(f"{p}_cptr", cptr, np.int32)
    sw.const(f"{p}_vptr", vptr, np.int32)
    sw.const(f"{p}_rows", _cat(rows_abs, np.int64), index_ctype(rows))
    sw.const(f"{p}_cols", _cat(cols_abs, np.int64), index_ctype(cols))
    sw.const(f"{p}_val", _cat(vals, wdt), wdt)
    return (f"    for (int blk = 0; blk < {len(blocks)}; blk++) {{\n"
            f"        const long c0 = {p}_cptr[blk], ncp = {p}_cptr[blk + 1] - c0;\n"
            f"        const {CTYPES[index_ctype(cols)]} *cl = {p}_cols + c0;\n"
            "        for (long j = 0; j < ncp; j += 4) {\n"
            + "".join(f"            {p}_xs[j + {q}] = x[cl[j + {q}]];\n" for q in range(4)) +
            "        }\n"
            f"        const {tin} *v = {p}_val + {p}_vptr[blk];\n"
            f"        long i = {p}_rptr[blk];\n"
            f"        const long i1 = {p}_rptr[blk + 1];\n"
            "        for (; i + 4 <= i1; i += 4, v += 4 * ncp) {\n"
            + _dot_rows(dtype, 4, "v", "ncp", f"{p}_xs", "ncp") +
            "".join(f"            y[{p}_rows[i + {k}]] = "
                    f"{_add(dtype, f'y[{p}_rows[i + {k}]]', f's[{k}]')};\n" for k in range(4)) +
            "        }\n"
            "        for (; i < i1; i++, v += ncp) {\n"
            + _dot_rows(dtype, 1, "v", "ncp", f"{p}_xs", "ncp") +
            f"            y[{p}_rows[i]] = {_add(dtype, f'y[{p}_rows[i]]', 's0')};\n"
            "        }\n    }\n")


def _contiguous(blocks: list[tuple], width: int) -> bool:
    """Whether every block of ``blocks`` keeps exactly ``width`` consecutive columns (its
    inputs then load straight from ``x``, no gather)."""
    return all(len(ca) == width and ca[-1] - ca[0] == width - 1 for _, _, _, ca, _ in blocks)


def _in_order(blocks: list[tuple], width: int, bc: int) -> bool:
    """Whether the blocks of each block row in ``blocks`` are its column blocks 0, 1, 2 ...
    each keeping the ``width`` columns from its first (inputs at a pointer stepping by
    ``bc``, no base array)."""
    seen: dict[int, int] = {}
    for r, c, _, ca, _ in sorted(blocks, key=lambda b: (b[0], b[1])):
        first = c * bc
        if c != seen.get(r, 0) or len(ca) != width or ca[0] != first \
                or ca[-1] != first + width - 1:
            return False
        seen[r] = c + 1
    return True


def _uses_table(blocks: list[tuple], width: int, bc: int) -> bool:
    """Whether :func:`_packed_gather` looks ``blocks`` up in the copied input table."""
    return bool(blocks) and bc <= 16 and not _contiguous(blocks, width)


def _packed_gather(sw: SourceWriter, p: str, blocks: list[tuple], width: int, bc: int,
                   cols: int, table: str, indent: str = " " * 8, var: str = "blk") -> str:
    """C statements declaring ``xv``: block ``var``'s kept inputs (padded to ``width``) repeated
    ``16 // width`` times. Blocks keeping ``width`` consecutive columns (all of ``blocks``, see
    :func:`_contiguous`) load them from ``x``; blocks at most 16 columns wide (``bc``) look
    them up in the 16 inputs from the block's first column (``table``: ``x`` copied into a
    buffer with 16 spare bytes); wider ones load them one by one. Each line starts with
    ``indent``."""
    reps = 16 // width
    padded = [_pad_block(ra, ca, sub, len(ra), width, np.int8)[1] for _, _, ra, ca, sub in blocks]
    load = {16: "vb_load", 8: "vb_rep8", 4: "vb_rep4"}[width]
    if _contiguous(blocks, width):
        sw.const(f"{p}_base", [c[0] for c in padded], index_ctype(cols))
        return f"{indent}const vb xv = {load}(x + {p}_base[{var}]);\n"
    if bc <= 16:
        base = [bcol * bc for _, bcol, *_ in blocks]
        idx = [np.tile(c - b, reps) for c, b in zip(padded, base, strict=True)]
        sw.const(f"{p}_base", base, index_ctype(cols))
        sw.const(f"{p}_idx", _cat(idx, np.uint8), np.uint8)
        return (f"{indent}const vb xv = vb_gather16({table} + {p}_base[{var}], "
                f"{p}_idx + 16 * {var});\n")
    sw.const(f"{p}_cols", _cat(padded, np.int64), index_ctype(cols))
    return (f"{indent}int8_t g[{width}];\n"
            f"{indent}for (int q = 0; q < {width}; q++) g[q] = x[{p}_cols[{width} * {var} + q]];\n"
            f"{indent}const vb xv = {'vb_load' if width == 16 else f'vb_rep{width}'}(g);\n")


def _packed_loop(sw: SourceWriter, p: str, blocks: list[tuple], width: int, bc: int,
                 rows: int, cols: int, table: str) -> str:
    """C statements: the int8 blocks whose kept columns pad to ``width`` (4, 8 or 16), ``16 //
    width`` rows to a vector against the replicated inputs, 4 rows an iteration (kept rows
    padded to a multiple of 4 with zero weights), 4 int32 sums scatter-added into ``y``.

    ``{p}_val`` holds each block's padded ``rows x width`` weights row-major, which is exactly
    4 rows per 16 bytes (``width`` 4: one ``vi_dotx``, lane sums by ``vi_quarters``), 2
    (``width`` 8: two, row sums by ``vi_halves2``) or 1 (``width`` 16: four, ``vi_hsum4``).
    """
    rptr, rows_abs, vals = [0], [], []
    for _, _, ra, ca, sub in blocks:
        ra, _, padded = _pad_block(ra, ca, sub, _round_up(len(ra), _PACK_ROWS), width, np.int8)
        rows_abs.append(ra)
        vals.append(padded.reshape(-1))
        rptr.append(rptr[-1] + len(ra))
    sw.const(f"{p}_rptr", rptr, np.int32)
    sw.const(f"{p}_rows", _cat(rows_abs, np.int64), index_ctype(rows))
    sw.const(f"{p}_val", _cat(vals, np.int8), np.int8)
    step = _PACK_ROWS * width
    dots = ", ".join(f"vi_dotx(vi_zero(), v + {16 * k}, xv)" for k in range(width // 4))
    reduce = {4: "vi_quarters", 8: "vi_halves2", 16: "vi_hsum4"}[width]
    sums = f"            {reduce}(s, {dots});\n"
    return (f"    for (int blk = 0; blk < {len(blocks)}; blk++) {{\n"
            + _packed_gather(sw, p, blocks, width, bc, cols, table) +
            f"        const int8_t *v = {p}_val + {width} * (long){p}_rptr[blk];\n"
            f"        for (long i = {p}_rptr[blk]; i < {p}_rptr[blk + 1]; "
            f"i += {_PACK_ROWS}, v += {step}) {{\n"
            "            int32_t s[4];\n" + sums +
            "".join(f"            y[{p}_rows[i + {k}]] = "
                    f"mk_wrap_add(y[{p}_rows[i + {k}]], s[{k}]);\n" for k in range(4)) +
            "        }\n    }\n")


#: :func:`_lane_rows` compacts rows when that saves at least this many ``vi_dotlane`` steps per
#: row of the full block rows (llvm-mca, 16x16 blocks: 256 x 256 layers gain 6-40% from 3 on,
#: 256 x 64 ones 4-7% at 2 and lose 7-25% at 1: the scatter-add and ``y`` set to the bias).
COMPACT_STEPS_PER_ROW = 2


def _lane_rows(classes: dict[int, list[tuple]], br: int, nfull: int
               ) -> tuple[list[np.ndarray], bool]:
    """Rows computed for each of the ``nfull`` full block rows of height ``br`` by
    :func:`_lane_rows_loop` (``classes``: padded width -> blocks), and whether they are
    compacted.

    The rule: ``nq`` groups of 4 rows are enough for the block row keeping the most rows (the
    union over its blocks). When ``nq < br / 4`` and dropping the other ``br / 4 - nq`` groups
    saves at least :data:`COMPACT_STEPS_PER_ROW` steps (``width / 4`` per group and block) per
    row of the full block rows, every block row computes its kept rows only, in order, padded
    with its first row (zero weights) to ``4 * nq``. Otherwise every row of the block row.
    """
    union = [set() for _ in range(nfull)]
    for group in classes.values():
        for r, _, ra, _, _ in group:
            union[r].update(int(i) for i in ra)
    nq = max(-(-len(u) // 4) for u in union)
    steps = sum(len(group) * (wd // 4) for wd, group in classes.items())
    if (br // 4 - nq) * steps < COMPACT_STEPS_PER_ROW * nfull * br:
        return [np.arange(r * br, (r + 1) * br) for r in range(nfull)], False
    out = []
    for r, u in enumerate(union):
        kept = sorted(u) or [r * br]
        out.append(np.array(kept + [kept[0]] * (4 * nq - len(kept))))
    return out, True


def _lane_weights(blk: tuple, width: int, rows: np.ndarray) -> np.ndarray:
    """A block's weights for :func:`_lane_rows_loop`: for each group ``i`` of 4 of ``rows`` and
    each group ``g`` of 4 kept columns (padded to ``width``), one 16-byte vector, row ``k``'s 4
    weights at bytes ``4k .. 4k+3`` (zeros for rows the block does not keep); ``i``-major."""
    _, _, ra, ca, sub = blk
    at = {}
    for k, r in enumerate(rows):  # padding repeats a row: its first place holds the weights
        at.setdefault(int(r), k)
    padded = np.zeros((len(rows), width), dtype=np.int8)
    padded[[at[int(r)] for r in ra], :len(ca)] = sub
    nq, ng = len(rows) // 4, width // 4
    return padded.reshape(nq, 4, ng, 4).transpose(0, 2, 1, 3).reshape(-1)


def _lane_rows_loop(sw: SourceWriter, p: str, classes: dict[int, list[tuple]],
                    block: tuple[int, int], nfull: int, cols: int, table: str, bias: str
                    ) -> tuple[str, bool]:
    """C statements: the int8 blocks of the ``nfull`` full block rows (height ``block[0]``, a
    multiple of 4 up to 16), ``classes`` mapping a padded width (4, 8, 16) to its blocks.

    Each block row keeps its row sums in registers, 4 rows to a ``vi`` (row ``k`` in quarter
    ``k``), across all its blocks, and writes ``y`` once. A block multiplies each group of 4 of
    those rows by each group of 4 of its kept inputs with one ``vi_dotlane`` (groups 0-1 and 2-3
    into two accumulator sets: shorter dependency chains); its input vector ``xv`` is
    loaded or gathered once (:func:`_packed_gather`), or loaded at a pointer stepping from
    block to block (:func:`_in_order`). Rows as :func:`_lane_rows`: every row of
    the block row (the sums start at the bias, the C array ``bias``, and are stored: ``y``
    needs no initialisation there), or compacted (the sums are added to ``y`` at their row
    indices, 4 at a time).

    Returns ``(code, compacted)``.
    """
    br, bc = block
    rowsets, compact = _lane_rows(classes, br, nfull)
    nq = len(rowsets[0]) // 4
    two = any(wd > 4 for wd, group in classes.items() if group)
    vals, loops, counters = [], [], []
    for wd, group in classes.items():
        if not group:
            continue
        group = sorted(group, key=lambda b: (b[0], b[1]))
        ng = wd // 4
        k = f"k{wd}"
        counters.append(k)
        counts = np.bincount([b[0] for b in group], minlength=nfull)
        sw.const(f"{p}_n{wd}", counts, np.int32)
        dots = "".join(
            f"            {'a' if g < max(1, ng // 2) else 'c'}{i} = vi_dotlane("
            f"{'a' if g < max(1, ng // 2) else 'c'}{i}, v + {16 * (ng * i + g)}, xv, {g});\n"
            for i in range(nq) for g in range(ng))
        if _in_order(group, wd, bc):
            load = {16: "vb_load", 8: "vb_rep8", 4: "vb_rep4"}[wd]
            step, gather = f", xp{wd} += {bc}", f"            const vb xv = {load}(xp{wd});\n"
            head = f"        const int8_t *xp{wd} = x;\n"
        else:
            step, head = "", ""
            gather = _packed_gather(sw, f"{p}_w{wd}", group, wd, bc, cols, table, " " * 12, k)
        loops.append(head + f"        for (const long e = {k} + {p}_n{wd}[rb]; {k} < e; "
                     f"{k}++, v += {16 * nq * ng}{step}) {{\n" + gather + dots + "        }\n")
        vals += [(b[0], wd, _lane_weights(b, wd, rowsets[b[0]])) for b in group]
    # the weight stream in execution order: block row by block row, each class in turn
    order = {wd: n for n, wd in enumerate(classes)}
    vals.sort(key=lambda t: (t[0], order[t[1]]))
    sw.const(f"{p}_val", _cat([v for *_, v in vals], np.int8), np.int8)
    if compact:
        idt = index_ctype(nfull * br)
        sw.const(f"{p}_rows", np.concatenate(rowsets), idt)
        init = "".join(f"        vi a{i} = vi_zero();\n" for i in range(nq))
    else:
        init = "".join(f"        vi a{i} = vi_set4({bias} + {br} * rb + {4 * i});\n"
                       for i in range(nq))
    if two:
        init += "".join(f"        vi c{i} = vi_zero();\n" for i in range(nq))
    total = [f"vi_add(a{i}, c{i})" if two else f"a{i}" for i in range(nq)]
    if compact:
        store = "".join(
            "        {\n            int32_t s[4];\n"
            f"            vi_quarters(s, {total[i]});\n"
            f"            const {CTYPES[idt]} *r = {p}_rows + {4 * nq} * rb + {4 * i};\n"
            + "".join(f"            y[r[{q}]] = mk_wrap_add(y[r[{q}]], s[{q}]);\n"
                      for q in range(4)) + "        }\n" for i in range(nq))
    else:
        store = "".join(f"        vi_quarters(y + {br} * rb + {4 * i}, {total[i]});\n"
                        for i in range(nq))
    return ("    {\n"
            f"    const int8_t *v = {p}_val;\n"
            f"    long {' = 0, '.join(counters)} = 0;\n"
            f"    for (int rb = 0; rb < {nfull}; rb++) {{\n"
            + init + "".join(loops) + store +
            "    }\n    }\n"), compact


def _emit_bcr(sw: SourceWriter, p: str, w: np.ndarray, m: np.ndarray, b: np.ndarray,
              dtype: str, block: tuple[int, int]) -> str:
    """BCR ``y = W x + b``: one loop per class of blocks, ``y`` set to the bias first where no
    loop stores it.

    int8 blocks whose kept columns pad to 4, 8 or 16 (:func:`padded_width`) run packed: when
    the block height is a multiple of 4 up to 16, those of the full block rows run one
    :func:`_lane_rows_loop` (first: it stores the bias plus its sums unless it compacts rows),
    the others (the edge block row) :func:`_packed_loop` (kept rows scatter-added). The wider
    ones, and every fp32 block, run the general loop. Block order does not matter: int8 sums
    wrap (associative), and an fp32 kernel has one class.
    """
    rows, cols = w.shape
    tin, tacc, _, bdt = _types(dtype)
    vw = vector_width(dtype)
    blocks = list(encode_bcr(w, block, m).blocks())
    widths = [padded_width(len(ca), dtype) for _, _, _, ca, _ in blocks]
    packed = {wd: [blk for blk, x in zip(blocks, widths, strict=True) if x == wd]
              for wd in (PACKED_WIDTHS[::-1] if dtype == "int8" else ())}
    rest = [blk for blk, x in zip(blocks, widths, strict=True) if x not in packed]
    whole = block[0] <= 16 and block[0] % 4 == 0  # full block rows run _lane_rows_loop
    full = rows // block[0] if whole else 0        # block rows of full height
    lanes = {wd: [blk for blk in group if blk[0] < full] for wd, group in packed.items()}
    scatter = {wd: [blk for blk in group if blk[0] >= full] for wd, group in packed.items()}
    decl, body, init0 = "", "", 0
    table = "x"
    if any(_uses_table(g, wd, block[1]) for c in (lanes, scatter) for wd, g in c.items()):
        table = f"{p}_xt"
        decl += f"static int8_t {table}[{_round_up(cols + 16, 64)}] __attribute__((aligned(64)));\n"
        body += f"    memcpy({table}, x, {cols});\n"
    if any(lanes.values()):
        code, compact = _lane_rows_loop(sw, f"{p}_l", lanes, block, full, cols, table,
                                        f"{p}_b")
        init0 = 0 if compact else full * block[0]
    else:
        code = ""
    if init0 < rows:
        body += f"    for (int r = {init0}; r < {rows}; r++) y[r] = {p}_b[r];\n"
    body += code
    for wd, group in scatter.items():
        if group:
            body += _packed_loop(sw, f"{p}_n{wd}", group, wd, block[1], rows, cols, table)
    if rest:
        decl += (f"static {tin} {p}_xs[{_round_up(block[1], vw)}] "
                 "__attribute__((aligned(64)));\n")
        body += _general_loop(sw, p, rest, dtype, rows, cols)
    sw.const(f"{p}_b", b, bdt)  # last: fp32 sources stay as they were before the packed loops
    sw.emit(f"{decl}static void {p}(const {tin} *x, {tacc} *y) {{\n{body}}}\n\n")
    return p


def _cat(parts: list[np.ndarray], dt: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)


def emit_matvec(sw: SourceWriter, prefix: str, kind: str, w: np.ndarray, m: np.ndarray,
                b: np.ndarray, dtype: str, block: tuple[int, int] | None = None) -> str:
    """Write a ``kind`` matrix-vector function named ``prefix``; return its name.

    ``w``, ``m``, ``b`` come from :func:`prepare_matrix`; ``block`` (rows, cols) is needed by
    ``bcr``.
    """
    if kind == "dense":
        return _emit_dense(sw, prefix, w, b, dtype)
    if kind == "csr":
        return _emit_csr(sw, prefix, w, m, b, dtype)
    if kind == "bcr":
        if block is None:
            raise ValueError("bcr kernels need a block size (rows, cols)")
        return _emit_bcr(sw, prefix, w, m, b, dtype, tuple(block))
    raise ValueError(f"matrix kind must be one of {', '.join(LINEAR_KINDS)}, not {kind!r}")


def matvec_info(kind: str, w: np.ndarray, m: np.ndarray, block: tuple[int, int] | None,
                dtype: str) -> dict[str, Any]:
    """Structure figures of a matrix kernel: dense and executed multiply-adds, nnz."""
    rows, cols = w.shape
    info = {"rows": rows, "cols": cols, "nnz": int(m.sum()), "dense_macs": rows * cols}
    if kind == "dense":
        info["kept_macs"] = rows * cols
    elif kind == "csr":
        info["kept_macs"] = int(m.sum())
    else:
        enc = encode_bcr(w, tuple(block), m)
        info["kept_macs"] = enc.value_count
        info["blocks"] = enc.block_count
        info["block"] = list(block)
    return info


def linear_source(kind: str, weight: Any, mask: Any = None, bias: Any = None,
                  dtype: str = "fp32", block: tuple[int, int] | None = None,
                  requant: Any = None) -> KernelSource:
    """A whole ``y = W x + b`` kernel (``mk_run(x, y)``) of ``kind`` dense, csr or bcr.

    int8 outputs are int32 accumulators, or int8 after ``requant`` (see :mod:`mobile.requant`).
    """
    w, m, b = prepare_matrix(weight, mask, bias, dtype)
    rq = check_requant(requant, dtype)
    sw = SourceWriter()
    fn = emit_matvec(sw, "mv", kind, w, m, b, dtype, block)
    rows, cols = w.shape
    out_dt = np.float32 if dtype == "fp32" else (np.int8 if rq else np.int32)
    args = (Arg("x", np.dtype(np.float32 if dtype == "fp32" else np.int8), (cols,)),
            Arg("y", np.dtype(out_dt), (rows,), True))
    body = f"    {fn}(x, y);\n"
    if rq:
        decl, loop = requant_code(rows, rq)
        sw.emit(decl)
        body = f"    {fn}(x, mk_racc);\n" + loop
    return sw.finish(kind, dtype, args, body, matvec_info(kind, w, m, block, dtype))
