"""Optional int8 output stage of linear and convolution kernels: ``ir.golden.requantize``.

``requant=(multiplier, shift, out_bits)`` or ``(multiplier, shift, out_bits, relu)`` turns a
kernel's int32 accumulators into ``saturate(round_shift(acc * multiplier, shift), out_bits)``
(round half up, symmetric saturation), then ``max(., 0)`` when ``relu``, stored as int8.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ir.fixedpoint import check_int

__all__ = ["check_requant", "requant_code"]


def check_requant(requant: Any, dtype: str) -> tuple[int, int, int, bool] | None:
    """Validate ``requant``; None stays None. ``ValueError`` names the bad field."""
    if requant is None:
        return None
    if dtype != "int8":
        raise ValueError("requant is an int8 output stage; fp32 kernels output floats")
    if isinstance(requant, str | bytes):    # "123" would be (1, 2, 3)
        raise ValueError(f"requant must be (multiplier, shift, out_bits[, relu]), not "
                         f"{requant!r}")
    items = tuple(requant)
    if len(items) not in (3, 4):
        raise ValueError("requant must be (multiplier, shift, out_bits[, relu]), not "
                         f"{requant!r}")
    # check_int: an integer, not a bool or a float (a shift of 3.9 was taken as 3)
    m, s, bits = (check_int(v, f"requant {name}", lo, hi) for v, (name, lo, hi) in zip(
        items[:3], (("multiplier", 0, 2**15 - 1), ("shift", 0, 62), ("out_bits", 2, 8)),
        strict=True))
    relu = items[3] if len(items) == 4 else False
    if not isinstance(relu, bool | np.bool_):     # "False" was true
        raise ValueError(f"requant relu must be True or False, not {relu!r}")
    return m, s, bits, bool(relu)


def requant_code(n: int, rq: tuple[int, int, int, bool]) -> tuple[str, str]:
    """``(declaration, loop)``: an int32 buffer ``mk_racc[n]`` and the loop writing ``y``."""
    m, s, bits, relu = rq
    value = f"mk_sat(mk_round_shift((int64_t)mk_racc[i] * {m}, {s}), {bits})"
    if relu:
        value = f"mk_relu({value})"
    return (f"static int32_t mk_racc[{n}];\nstatic inline int64_t mk_relu(int64_t v) "
            "{ return v > 0 ? v : 0; }\n",
            f"    for (int i = 0; i < {n}; i++) y[i] = (int8_t){value};\n")
