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
  int8 blocks keeping at most 16 columns are packed instead: kept columns padded to 4, 8 or 16,
  ``16 // width`` rows to a 16-byte vector against the inputs repeated as often (one table
  lookup gathers them when blocks are at most 16 wide); in whole block rows at most 16 high
  every row of the block row is computed, its sums kept in registers across its blocks and
  added to ``y`` once (no scatter), elsewhere the kept rows are scatter-added 4 at a time.
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


def _packed_gather(sw: SourceWriter, p: str, blocks: list[tuple], width: int, bc: int,
                   cols: int, table: str, indent: str = " " * 8) -> str:
    """C statements declaring ``xv``: block ``blk``'s kept inputs (padded to ``width``) repeated
    ``16 // width`` times. Blocks at most 16 columns wide (``bc``) look them up in the 16 inputs
    from the block's first column (``table``: ``x`` copied into a buffer with 16 spare bytes);
    wider ones load them one by one. Each line starts with ``indent``."""
    reps = 16 // width
    padded = [_pad_block(ra, ca, sub, len(ra), width, np.int8)[1] for _, _, ra, ca, sub in blocks]
    if bc <= 16:
        base = [bcol * bc for _, bcol, *_ in blocks]
        idx = [np.tile(c - b, reps) for c, b in zip(padded, base, strict=True)]
        sw.const(f"{p}_base", base, index_ctype(cols))
        sw.const(f"{p}_idx", _cat(idx, np.uint8), np.uint8)
        return (f"{indent}const vb xv = vb_gather16({table} + {p}_base[blk], "
                f"{p}_idx + 16 * blk);\n")
    sw.const(f"{p}_cols", _cat(padded, np.int64), index_ctype(cols))
    return (f"{indent}int8_t g[{width}];\n"
            f"{indent}for (int q = 0; q < {width}; q++) g[q] = x[{p}_cols[{width} * blk + q]];\n"
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


def _block_row_loop(sw: SourceWriter, p: str, blocks: list[tuple], width: int,
                    block: tuple[int, int], cols: int, table: str) -> str:
    """C statements: the int8 blocks of padded width ``width`` (4, 8 or 16) in whole block rows
    of height ``block[0]`` (a multiple of 4, at most 16), every row of the block row computed.

    Each block stores all ``br`` rows (the rows it does not keep as zero weights), row-major,
    ``16 // width`` rows to a vector; the ``br * width / 16`` accumulators of a block row stay
    in registers across its blocks and are added to ``y`` once, ``br`` consecutive rows: no
    per-row scatter, at the price of multiplying the zero rows.
    """
    br = block[0]
    nacc = br * width // 16
    starts, counts, vals = [], [], []
    for r, _, ra, ca, sub in blocks:
        padded = np.zeros((br, width), dtype=np.int8)
        padded[np.ix_(ra - r * br, np.arange(len(ca)))] = sub
        vals.append(padded.reshape(-1))
        if not starts or starts[-1] != r * br:
            starts.append(r * br)
            counts.append(0)
        counts[-1] += 1
    sw.const(f"{p}_row0", starts, np.int32)
    sw.const(f"{p}_nblk", counts, np.int32)
    sw.const(f"{p}_val", _cat(vals, np.int8), np.int8)
    reduce, per = {4: ("vi_quarters", 1), 8: ("vi_halves2", 2), 16: ("vi_hsum4", 4)}[width]
    sums = "".join(f"        {reduce}(s + {4 * q}, "
                   + ", ".join(f"a{per * q + k}" for k in range(per)) + ");\n"
                   for q in range(br // 4))
    return ("    {\n"
            f"    const int8_t *v = {p}_val;\n"
            "    long blk = 0;\n"
            f"    for (int g = 0; g < {len(starts)}; g++) {{\n"
            + "".join(f"        vi a{k} = vi_zero();\n" for k in range(nacc)) +
            f"        for (const long e = blk + {p}_nblk[g]; blk < e; blk++, v += {br * width}) "
            "{\n"
            + _packed_gather(sw, p, blocks, width, block[1], cols, table, " " * 12)
            + "".join(f"            a{k} = vi_dotx(a{k}, v + {16 * k}, xv);\n"
                      for k in range(nacc)) +
            "        }\n"
            f"        int32_t s[{br}];\n" + sums +
            f"        int32_t *yr = y + {p}_row0[g];\n"
            + "".join(f"        mk_add4(yr + {4 * q}, s + {4 * q});\n" for q in range(br // 4)) +
            "    }\n    }\n")


def _emit_bcr(sw: SourceWriter, p: str, w: np.ndarray, m: np.ndarray, b: np.ndarray,
              dtype: str, block: tuple[int, int]) -> str:
    """BCR ``y = W x + b``: ``y`` set to the bias, then one loop per class of blocks.

    int8 blocks whose kept columns pad to 4, 8 or 16 (:func:`padded_width`) run packed loops:
    :func:`_block_row_loop` for the blocks of whole block rows when the block height is a
    multiple of 4 up to 16, :func:`_packed_loop` (kept rows scatter-added) for the others. The
    wider ones, and every fp32 block, run the general loop. Block order does not matter: int8
    sums wrap (associative), and an fp32 kernel has one class.
    """
    rows, cols = w.shape
    tin, tacc, _, bdt = _types(dtype)
    vw = vector_width(dtype)
    blocks = list(encode_bcr(w, block, m).blocks())
    widths = [padded_width(len(ca), dtype) for _, _, _, ca, _ in blocks]
    packed = {wd: [blk for blk, x in zip(blocks, widths, strict=True) if x == wd]
              for wd in (PACKED_WIDTHS if dtype == "int8" else ())}
    rest = [blk for blk, x in zip(blocks, widths, strict=True) if x not in packed]
    decl, body = "", f"    for (int r = 0; r < {rows}; r++) y[r] = {p}_b[r];\n"
    table = "x"
    if block[1] <= 16 and any(packed.values()):
        table = f"{p}_xt"
        decl += f"static int8_t {table}[{_round_up(cols + 16, 64)}] __attribute__((aligned(64)));\n"
        body += f"    memcpy({table}, x, {cols});\n"
    whole = block[0] <= 16 and block[0] % 4 == 0  # block rows kept whole (_block_row_loop)
    full = rows // block[0]                          # block rows of full height
    for wd, group in packed.items():
        dense = [blk for blk in group if whole and blk[0] < full]
        if dense:
            body += _block_row_loop(sw, f"{p}_d{wd}", dense, wd, block, cols, table)
        scatter = [blk for blk in group if not (whole and blk[0] < full)]
        if scatter:
            body += _packed_loop(sw, f"{p}_n{wd}", scatter, wd, block[1], rows, cols, table)
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
