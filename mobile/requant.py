"""Optional int8 output stage of linear and convolution kernels: ``ir.golden.requantize``.

``requant=(multiplier, shift, out_bits)`` or ``(multiplier, shift, out_bits, relu)`` turns a
kernel's int32 accumulators into ``saturate(round_shift(acc * multiplier, shift), out_bits)``
(round half up, symmetric saturation), then ``max(., 0)`` when ``relu``, stored as int8.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_requant", "requant_code"]


def check_requant(requant: Any, dtype: str) -> tuple[int, int, int, bool] | None:
    """Validate ``requant``; None stays None. ``ValueError`` names the bad field."""
    if requant is None:
        return None
    if dtype != "int8":
        raise ValueError("requant is an int8 output stage; fp32 kernels output floats")
    items = tuple(requant)
    if len(items) not in (3, 4):
        raise ValueError("requant must be (multiplier, shift, out_bits[, relu]), not "
                         f"{requant!r}")
    m, s, bits = (int(v) for v in items[:3])
    relu = bool(items[3]) if len(items) == 4 else False
    if not 0 <= m < 2**15:
        raise ValueError(f"requant multiplier must be from 0 to 32767, not {m}")
    if not 0 <= s <= 62:
        raise ValueError(f"requant shift must be from 0 to 62, not {s}")
    if not 2 <= bits <= 8:
        raise ValueError(f"requant out_bits must be from 2 to 8 (int8 outputs), not {bits}")
    return m, s, bits, relu


def requant_code(n: int, rq: tuple[int, int, int, bool]) -> tuple[str, str]:
    """``(declaration, loop)``: an int32 buffer ``mk_racc[n]`` and the loop writing ``y``."""
    m, s, bits, relu = rq
    value = f"mk_sat(mk_round_shift((int64_t)mk_racc[i] * {m}, {s}), {bits})"
    if relu:
        value = f"mk_relu({value})"
    return (f"static int32_t mk_racc[{n}];\nstatic inline int64_t mk_relu(int64_t v) "
            "{ return v > 0 ? v : 0; }\n",
            f"    for (int i = 0; i < {n}; i++) y[i] = (int8_t){value};\n")
