"""A place-and-route harness: the engine's wide ports behind two shift registers and four pins.

nextpnr gives every top-level port of the design a pin, and an engine has hundreds of port bits
(an 8-lane dense engine: 110 in, 290 out) where an iCE40UP5K has 39 pins. The harness keeps the
engine whole and observable with four pins:

* ``clk`` and ``rst`` go to the engine's clock and reset;
* every other input bit of the engine is a stage of a shift register fed from pin ``sin``, so
  the memories' write ports are driven and Yosys cannot optimise a memory away;
* every output bit goes into a multiple-input signature register (``so <= (so << 1) ^ out``)
  whose last bit is pin ``sout``, so no output logic is dead.

Every engine input and output is then a register in the harness, so the paths nextpnr times are
the engine's own register-to-register paths, as they would be inside a larger design. The
harness's registers are counted in nextpnr's utilisation (the ``harness`` figures of a report),
never in the engine's resources, which come from synthesising the engine alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hw.emit import sanitize_identifier

__all__ = ["harness_verilog", "harness_name", "HARNESS_PINS"]

#: The harness's own ports.
HARNESS_PINS = ("clk", "rst", "sin", "sout")


def harness_name(toplevel: str) -> str:
    """Module name of the harness around ``toplevel``."""
    return sanitize_identifier(f"{toplevel}_harness")


def _split(ports: Sequence[Mapping[str, Any]], clock_reset: Sequence[Mapping[str, Any]]
           ) -> tuple[str, str | None, list[tuple[str, int]], list[tuple[str, int]]]:
    special = [p["name"] for p in clock_reset]
    if not special:
        raise ValueError("the engine has no clock port; the harness needs one")
    clock = "clk" if "clk" in special else special[0]
    resets = [n for n in special if n != clock]
    if len(resets) > 1:
        raise ValueError(f"the engine has {len(special)} clock/reset ports ({', '.join(special)});"
                         " the harness takes one clock and one reset")
    ins, outs = [], []
    for p in ports:
        name, width, direction = p["name"], int(p["width"]), p["direction"]
        if name in special:
            continue
        if width < 1:
            raise ValueError(f"port {name!r} has width {width}")
        if direction == "input":
            ins.append((name, width))
        elif direction == "output":
            outs.append((name, width))
        else:
            raise ValueError(f"port {name!r} is {direction}; the harness takes inputs and outputs")
    if not outs:
        raise ValueError("the engine has no output port: place and route would remove it all")
    return clock, (resets[0] if resets else None), ins, outs


def _slices(ports: list[tuple[str, int]], vector: str) -> list[str]:
    """Connections of ``ports`` to consecutive slices of ``vector``, the first at bit 0."""
    out, lo = [], 0
    for name, width in ports:
        out.append(f".{name}({vector}[{lo + width - 1}:{lo}])")
        lo += width
    return out


def harness_verilog(toplevel: str, ports: Sequence[Mapping[str, Any]],
                    clock_reset: Sequence[Mapping[str, Any]]) -> str:
    """Verilog of a harness module that instantiates ``toplevel`` behind :data:`HARNESS_PINS`.

    Parameters
    ----------
    toplevel : str
        The engine's module name (the sidecar's ``toplevel``).
    ports : sequence of mapping
        The engine's ports as the sidecar lists them: ``name``, ``direction``
        (``"input"``/``"output"``) and ``width``.
    clock_reset : sequence of mapping
        The sidecar's ``clock_reset_ports``: the clock (named ``clk`` when there are two) and at
        most one reset.

    Returns
    -------
    str
        The module :func:`harness_name` ``(toplevel)``; deterministic.

    Raises
    ------
    ValueError
        No clock, more than one reset, an inout port, or no output port.
    """
    clock, reset, ins, outs = _split(ports, clock_reset)
    n_in = sum(w for _, w in ins)
    n_out = sum(w for _, w in outs)
    lines = [f"// Place-and-route harness for {toplevel}: inputs from a shift register fed by "
             "sin, outputs",
             "// into a signature register that ends at sout (synth_reports/harness.py).",
             f"module {harness_name(toplevel)}(input clk, input rst, input sin, output sout);"]
    conns = [f".{clock}(clk)"] + ([f".{reset}(rst)"] if reset else [])
    if n_in:
        lines.append(f"  reg [{n_in - 1}:0] si = {n_in}'d0;")
        shift = "sin" if n_in == 1 else f"{{si[{n_in - 2}:0], sin}}"
        lines.append(f"  always @(posedge clk) si <= {shift};")
        conns += _slices(ins, "si")
    lines.append(f"  reg [{n_out - 1}:0] so = {n_out}'d0;")
    lines.append(f"  wire [{n_out - 1}:0] o;")
    shifted = "1'b0" if n_out == 1 else f"{{so[{n_out - 2}:0], 1'b0}}"
    lines.append(f"  always @(posedge clk) so <= {shifted} ^ o;")
    lines.append(f"  assign sout = so[{n_out - 1}];")
    conns += _slices(outs, "o")
    lines.append(f"  {toplevel} dut (")
    lines.append(",\n".join(f"    {c}" for c in conns))
    lines.append("  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"
