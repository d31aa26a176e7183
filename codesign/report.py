"""Tables for people: per-layer summaries of a bundle as pandas DataFrames, printed with rich."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ir import Bundle, ConvShape, Layer, LinearShape

__all__ = ["layer_table", "print_table", "shape_text", "scheme_text"]


def shape_text(layer: Layer) -> str:
    """A compact shape, e.g. ``16x8x3x3 s1 p1`` or ``16x8x3x3 s1x2 p1x0`` (a stride or padding
    that differs between height and width shows both) or ``48x64`` or ``128->256``."""
    s = layer.shape
    if isinstance(s, ConvShape):
        g = f" g{s.groups}" if s.groups != 1 else ""

        def pair(v: tuple[int, int]) -> str:
            return f"{v[0]}" if v[0] == v[1] else f"{v[0]}x{v[1]}"

        return (f"{s.out_channels}x{s.in_channels // s.groups}x{s.kernel[0]}x{s.kernel[1]}"
                f" s{pair(s.stride)} p{pair(s.padding)}{g}")
    if isinstance(s, LinearShape):
        return f"{s.out_features}x{s.in_features}"
    return f"{s.input_size}->{s.hidden_size}"


def scheme_text(layer: Layer) -> str:
    """The scheme and its parameters in one short string, e.g. ``bcr 8x16 r0.5 c0.5``."""
    rec = layer.scheme.to_json()
    kind = rec.pop("kind")
    if kind == "pattern":
        return f"pattern {len(rec['patterns'])}p conn{rec['connectivity']:g}"
    if kind == "bcr":
        return (f"bcr {rec['block'][0]}x{rec['block'][1]} r{rec['row_ratio']:g} "
                f"c{rec['col_ratio']:g}")
    if kind == "nm":
        return f"nm {rec['n']}:{rec['m']}"
    if "sparsity" in rec:
        return f"{kind} s{rec['sparsity']:g}"
    return kind


def layer_table(bundle: Bundle) -> pd.DataFrame:
    """One row per layer: op, shape, scheme, density, bits, storage with and without index."""
    rows = []
    for layer in bundle.layers:
        st = layer.stats
        rows.append({
            "layer": layer.name, "op": layer.op, "shape": shape_text(layer),
            "scheme": scheme_text(layer), "nnz": st.nnz, "density": round(st.density, 4),
            "bits": layer.quant.bits if layer.quant else 32,
            "weights_kib": round(st.weight_bits / 8192, 3),
            "with_index_kib": round(st.storage_bits / 8192, 3),
            "break_even": layer.break_even,
        })
    return pd.DataFrame(rows)


def print_table(df: pd.DataFrame, title: str | None = None, console: Console | None = None) -> None:
    """Print a DataFrame as a rich table (plain text when not on a terminal).

    The title, headers and cells are text, never rich markup: a path or layer name with
    ``[bold]`` or ``[/red]`` in it is printed as it is (it was styled, or a MarkupError)."""
    table = Table(title=escape(title) if title is not None else None)
    for col in df.columns:
        table.add_column(escape(str(col)),
                         justify="right" if df[col].dtype.kind in "iuf" else "left")
    for _, row in df.iterrows():
        table.add_row(*(Text("-" if v is None or (isinstance(v, float) and pd.isna(v))
                             else str(v)) for v in row))
    (console or Console(width=140)).print(table)
