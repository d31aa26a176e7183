"""LSTM and GRU cell steps built on the dense or BCR matrix-vector generators.

A step is two generated matrix-vector products (``W_ih x + b_ih`` and ``W_hh h + b_hh``, each
dense or BCR) followed by an element-wise loop over the hidden units.

int8
    int8 weights and activations, int32 accumulators, then exactly the integer cell of
    ``ir.golden.lstm_step`` / ``gru_step``: requantized pre-activations, the sigmoid/tanh ROMs
    of the :class:`ir.golden.RNNQuantConfig` (emitted as tables), round-half-up shifts and
    symmetric saturation. ``mk_run(x, h, c, h_out, c_out)`` (LSTM; ``c`` int32) or
    ``mk_run(x, h, h_out)`` (GRU).
fp32
    Float gates with ``expf``/``tanhf`` (``torch.nn.LSTMCell``/``GRUCell`` semantics).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ir.golden import RNNQuantConfig
from mobile.gen_linear import emit_matvec, matvec_info, prepare_matrix
from mobile.source import Arg, KernelSource, SourceWriter

__all__ = ["rnn_source", "GATES"]

GATES = {"lstm": 4, "gru": 3}


def _int_cell(kind: str, hid: int, cfg: RNNQuantConfig) -> tuple[str, str]:
    """(helper definitions, loop body) of the integer cell."""
    gf, lo = cfg.gate_frac, -(2 ** (cfg.lut_index_bits - 1))
    hi = 2 ** (cfg.lut_index_bits - 1) - 1
    helpers = (
        "static inline int64_t rnn_pre(int32_t acc) {\n"
        f"    return mk_sat(mk_round_shift((int64_t)acc * {cfg.multiplier}, {cfg.shift}), "
        f"{cfg.lut_index_bits});\n}}\n"
        "static inline int64_t rnn_lut(const int32_t *t, int64_t q) {\n"
        f"    if (q < {lo}) q = {lo};\n    if (q > {hi}) q = {hi};\n"
        f"    return t[q - ({lo})];\n}}\n"
        f"#define GSUM(k) mk_wrap_add(ga[(k) * {hid} + j], gb[(k) * {hid} + j])\n\n")
    if kind == "lstm":
        body = (
            f"    for (int j = 0; j < {hid}; j++) {{\n"
            "        int64_t i = rnn_lut(rnn_sig, rnn_pre(GSUM(0)));\n"
            "        int64_t f = rnn_lut(rnn_sig, rnn_pre(GSUM(1)));\n"
            "        int64_t g = rnn_lut(rnn_tanh, rnn_pre(GSUM(2)));\n"
            "        int64_t o = rnn_lut(rnn_sig, rnn_pre(GSUM(3)));\n"
            f"        int64_t cs = mk_round_shift(f * c[j], -{gf}) + "
            f"mk_round_shift(i * g, -{cfg.cell_frac});\n"
            f"        int64_t cn = mk_sat(mk_round_shift(cs, {2 * gf}), {cfg.cell_bits});\n"
            f"        int64_t tc = rnn_lut(rnn_tanh, mk_round_shift(cn, "
            f"{cfg.cell_frac - cfg.lut_frac}));\n"
            f"        h_out[j] = (int8_t)mk_sat(mk_round_shift(o * tc, {2 * gf - cfg.act_frac}), "
            f"{cfg.act_bits});\n"
            "        c_out[j] = (int32_t)cn;\n    }\n")
    else:
        body = (
            f"    for (int j = 0; j < {hid}; j++) {{\n"
            "        int64_t r = rnn_lut(rnn_sig, rnn_pre(GSUM(0)));\n"
            "        int64_t z = rnn_lut(rnn_sig, rnn_pre(GSUM(1)));\n"
            f"        int64_t na = (int64_t)ga[{2 * hid} + j] + "
            f"mk_round_shift(r * gb[{2 * hid} + j], {gf});\n"
            "        int64_t n = rnn_lut(rnn_tanh, rnn_pre((int32_t)(uint32_t)(uint64_t)na));\n"
            f"        int64_t hs = mk_round_shift(({1 << gf} - z) * n, -{cfg.act_frac}) + "
            f"mk_round_shift(z * h[j], -{gf});\n"
            f"        h_out[j] = (int8_t)mk_sat(mk_round_shift(hs, {2 * gf}), {cfg.act_bits});\n"
            "    }\n")
    return helpers, body


def _float_cell(kind: str, hid: int) -> tuple[str, str]:
    helpers = ("static inline float rnn_sigf(float v) { return 1.0f / (1.0f + expf(-v)); }\n"
               f"#define GSUM(k) (ga[(k) * {hid} + j] + gb[(k) * {hid} + j])\n\n")
    if kind == "lstm":
        body = (f"    for (int j = 0; j < {hid}; j++) {{\n"
                "        float i = rnn_sigf(GSUM(0)), f = rnn_sigf(GSUM(1));\n"
                "        float g = tanhf(GSUM(2)), o = rnn_sigf(GSUM(3));\n"
                "        float cn = f * c[j] + i * g;\n"
                "        c_out[j] = cn;\n        h_out[j] = o * tanhf(cn);\n    }\n")
    else:
        body = (f"    for (int j = 0; j < {hid}; j++) {{\n"
                "        float r = rnn_sigf(GSUM(0)), z = rnn_sigf(GSUM(1));\n"
                f"        float n = tanhf(ga[{2 * hid} + j] + r * gb[{2 * hid} + j]);\n"
                "        h_out[j] = (1.0f - z) * n + z * h[j];\n    }\n")
    return helpers, body


def rnn_source(kind: str, weight_ih: Any, weight_hh: Any, mask_ih: Any = None,
               mask_hh: Any = None, bias_ih: Any = None, bias_hh: Any = None,
               dtype: str = "fp32", matvec: str = "dense", block: tuple[int, int] | None = None,
               config: RNNQuantConfig | None = None) -> KernelSource:
    """One LSTM (``kind="lstm"``) or GRU step kernel; see the module docstring.

    ``matvec`` is ``"dense"`` or ``"bcr"`` (with ``block``) for both products; int8 needs
    ``config`` with weight and activation widths of at most 8 bits.
    """
    if kind not in GATES:
        raise ValueError(f"rnn kind must be 'lstm' or 'gru', not {kind!r}")
    if matvec not in ("dense", "bcr", "csr"):
        raise ValueError(f"matvec must be 'dense', 'bcr' or 'csr', not {matvec!r}")
    w_ih, m_ih, b_ih = prepare_matrix(weight_ih, mask_ih, bias_ih, dtype, "weight_ih")
    w_hh, m_hh, b_hh = prepare_matrix(weight_hh, mask_hh, bias_hh, dtype, "weight_hh")
    ngates = GATES[kind]
    hid, inp = w_hh.shape[1], w_ih.shape[1]
    if w_hh.shape != (ngates * hid, hid) or w_ih.shape[0] != ngates * hid:
        raise ValueError(f"{kind} weights must be ({ngates}*hidden, input) and ({ngates}*hidden,"
                         f" hidden), not {w_ih.shape} and {w_hh.shape}")
    if dtype == "int8":
        if not isinstance(config, RNNQuantConfig):
            raise ValueError("int8 RNN kernels need config=ir.golden.RNNQuantConfig(...)")
        if config.weight_bits > 8 or config.act_bits > 8:
            raise ValueError(f"int8 RNN kernels need weight and activation bits <= 8, not "
                             f"{config.weight_bits} and {config.act_bits}")
    sw = SourceWriter()
    ih = emit_matvec(sw, "ih", matvec, w_ih, m_ih, b_ih, dtype, block)
    hh = emit_matvec(sw, "hh", matvec, w_hh, m_hh, b_hh, dtype, block)
    tacc = "float" if dtype == "fp32" else "int32_t"
    sw.emit(f"static {tacc} ga[{ngates * hid}], gb[{ngates * hid}];\n")
    if dtype == "int8":
        sw.const("rnn_sig", config.sigmoid.table, np.int32)
        sw.const("rnn_tanh", config.tanh.table, np.int32)
        helpers, cell = _int_cell(kind, hid, config)
        act, cell_t = np.dtype(np.int8), np.dtype(np.int32)
    else:
        helpers, cell = _float_cell(kind, hid)
        act = cell_t = np.dtype(np.float32)
    sw.emit(helpers)
    args = [Arg("x", act, (inp,)), Arg("h", act, (hid,))]
    if kind == "lstm":
        args.append(Arg("c", cell_t, (hid,)))
    args.append(Arg("h_out", act, (hid,), True))
    if kind == "lstm":
        args.append(Arg("c_out", cell_t, (hid,), True))
    body = f"    {ih}(x, ga);\n    {hh}(h, gb);\n" + cell
    i1 = matvec_info(matvec, w_ih, m_ih, block, dtype)
    i2 = matvec_info(matvec, w_hh, m_hh, block, dtype)
    info = {"hidden": hid, "input": inp, "matvec": matvec,
            **{k: i1[k] + i2[k] for k in ("nnz", "dense_macs", "kept_macs")}}
    if block is not None and matvec == "bcr":
        info["block"] = list(block)
    return sw.finish(kind, dtype, tuple(args), body, info)
