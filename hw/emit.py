"""Verilog emission: an Amaranth component in, ``<name>.v`` and a ``<name>.json`` sidecar out.

The sidecar tells a test bench or a synthesis flow everything it needs without reading Python:
the build parameters, every top-level port (name, direction, width) and the memory map of the
engine (each memory's name, depth, width, bench port signals and data layout, taken from the
component's ``memory_map()`` method when it has one).

Both files are deterministic (same component and parameters give byte-identical files: Verilog
from ``amaranth.back.verilog.convert(..., emit_src=False)``, JSON with sorted keys) and written
atomically (a temporary name in the same directory, then :func:`os.replace`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from amaranth.back import verilog
from amaranth.hdl import Shape, Value
from amaranth.lib import wiring

__all__ = ["emit_verilog", "sanitize_identifier", "component_ports", "VERILOG_KEYWORDS",
           "SIDECAR_VERSION", "write_atomic", "memory_bits_problem", "MAX_MEMORY_BITS"]

#: Version of the JSON sidecar layout.
SIDECAR_VERSION = 1

#: Reserved words of Verilog-2005 and SystemVerilog-2017 (IEEE 1800-2017, Annex B), which the
#: simulators (``iverilog -g2012``, Verilator) reject as identifiers.
VERILOG_KEYWORDS = frozenset("""
accept_on alias always always_comb always_ff always_latch and assert assign assume automatic
before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle
checker class clocking cmos config const constraint context continue cover covergroup coverpoint
cross deassign default defparam design disable dist do edge else end endcase endchecker endclass
endclocking endconfig endfunction endgenerate endgroup endinterface endmodule endpackage
endprimitive endprogram endproperty endspecify endsequence endtable endtask enum event eventually
expect export extends extern final first_match for force foreach forever fork forkjoin function
generate genvar global highz0 highz1 if iff ifnone ignore_bins illegal_bins implements implies
import incdir include initial inout input inside instance int integer interconnect interface
intersect join join_any join_none large let liblist library local localparam logic longint
macromodule matches medium modport module nand negedge nettype new nexttime nmos nor
noshowcancelled not notif0 notif1 null or output package packed parameter pmos posedge primitive
priority program property protected pull0 pull1 pulldown pullup pulsestyle_ondetect
pulsestyle_onevent pure rand randc randcase randsequence rcmos real realtime ref reg reject_on
release repeat restrict return rnmos rpmos rtran rtranif0 rtranif1 s_always s_eventually
s_nexttime s_until s_until_with scalared sequence shortint shortreal showcancelled signed small
soft solve specify specparam static string strong strong0 strong1 struct super supply0 supply1
sync_accept_on sync_reject_on table tagged task this throughout time timeprecision timeunit tran
tranif0 tranif1 tri tri0 tri1 triand trior trireg type typedef union unique unique0 unsigned
until until_with untyped use uwire var vectored virtual void wait wait_order wand weak weak0
weak1 while wildcard wire with within wor xnor xor
""".split())

#: Longest identifier :func:`sanitize_identifier` returns.
MAX_IDENTIFIER_LENGTH = 96

_INVALID = re.compile(r"[^A-Za-z0-9_]")


def sanitize_identifier(name: Any) -> str:
    """Turn any name into a safe Verilog (and C) identifier.

    Every character other than an ASCII letter, digit or underscore becomes ``_``; a name that
    starts with a digit gets a ``_`` prefix; a reserved word (:data:`VERILOG_KEYWORDS`) gets a
    ``_`` suffix; an empty name becomes ``"unnamed"``. Names longer than
    :data:`MAX_IDENTIFIER_LENGTH` are cut and end in ``_`` plus 8 hex digits of the SHA-256 of
    the original name, so distinct long names stay distinct. Deterministic; an identifier that is
    already safe is returned unchanged.

    Parameters
    ----------
    name : str
        Any string, e.g. a PyTorch module path such as ``"features.0"``.

    Returns
    -------
    str
        A non-empty identifier matching ``[A-Za-z_][A-Za-z0-9_]*``.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"Identifier must be a string, not {name!r}")
    ident = _INVALID.sub("_", name)
    if not ident:
        ident = "unnamed"
    if ident[0].isdigit():
        ident = "_" + ident
    if ident in VERILOG_KEYWORDS:
        ident += "_"
    if len(ident) > MAX_IDENTIFIER_LENGTH:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        ident = ident[:MAX_IDENTIFIER_LENGTH - 9] + "_" + digest
    return ident


def component_ports(component: wiring.Component) -> list[dict[str, Any]]:
    """Ports of a component's signature as Amaranth names them in Verilog.

    Returns
    -------
    list of dict
        One ``{"name", "direction", "width"}`` per signature port, in signature order;
        ``direction`` is ``"input"`` or ``"output"``, ``name`` the member path joined by
        ``"__"``. Clock and reset ports are not part of a signature (see :func:`emit_verilog`).
    """
    ports = []
    for path, member, value in component.signature.flatten(component):
        ports.append({
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": Shape.cast(Value.cast(value).shape()).width,
        })
    return ports


_PORT_DECL = re.compile(
    r"^\s*(input|output|inout)\s+(?:signed\s+)?(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_][A-Za-z0-9_$]*)\s*;",
    re.MULTILINE)


def _verilog_ports(text: str, module: str) -> list[dict[str, Any]]:
    start = re.search(rf"^module\s+{re.escape(module)}\s*\(", text, re.MULTILINE)
    if start is None:
        raise RuntimeError(f"Emitted Verilog has no module {module!r}")
    end = text.find("\nendmodule", start.end())
    body = text[start.end():end if end >= 0 else len(text)]
    ports = []
    for direction, msb, lsb, pname in _PORT_DECL.findall(body):
        width = abs(int(msb) - int(lsb)) + 1 if msb else 1
        ports.append({"name": pname, "direction": direction, "width": width})
    return ports


def _not_a_folder(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and rename it.

    The file gets the mode a plain ``open`` would give it (``0666`` less the umask);
    ``IsADirectoryError`` naming ``path`` when it is a folder (not the temporary file)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    _not_a_folder(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


MAX_MEMORY_BITS = 1 << 26
"""Most bits of on-chip memory (in the memory map) an engine may have for :func:`emit_verilog`.

Conversion costs about 140 bytes of RAM and 3.5 us per memory bit, whatever the lanes (a
1024 x 1024 dense engine at 8 bits: 8.4 Mbit, 1.1 GiB, 30 s), so 2**26 bits is about 9 GiB.
It is already 18 times the block RAM of the largest ECP5.
"""


def memory_bits_problem(memory_map: list[dict[str, Any]]) -> str | None:
    """Why :func:`emit_verilog` refuses an engine with this memory map, or None: its memories
    (``depth * width`` bits, times ``copies`` where an entry has it) hold more than
    :data:`MAX_MEMORY_BITS` bits. Cheap: no Verilog is converted."""
    sizes = [(m.get("name", "?"),
              int(m.get("depth", 0)) * int(m.get("width", 0)) * int(m.get("copies", 1)))
             for m in memory_map]
    total = sum(bits for _, bits in sizes)
    if total <= MAX_MEMORY_BITS:
        return None
    largest = max(sizes, key=lambda item: item[1])
    return (f"The engine's memories hold {total:,} bits (largest: {largest[0]}, "
            f"{largest[1]:,}); at most {MAX_MEMORY_BITS:,} are built: use a smaller shape")


def _check_memory_bits(memory_map: list[dict[str, Any]]) -> None:
    problem = memory_bits_problem(memory_map)
    if problem is not None:
        raise ValueError(problem)


def emit_verilog(component: wiring.Component, name: str, out_dir: str | os.PathLike,
                 parameters: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Convert ``component`` to Verilog and write it with its JSON sidecar.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The engine. If it has a ``memory_map()`` method, its list of dicts is recorded; if
        ``parameters`` is None and it has a ``parameters()`` method, that is recorded instead.
    name : str
        Name of the top-level module and of the files; sanitised with
        :func:`sanitize_identifier`.
    out_dir : path
        Directory to write into (created if missing).
    parameters : mapping, optional
        JSON-serialisable build parameters to record.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        ``out_dir/<ident>.v`` and ``out_dir/<ident>.json``.

    Raises
    ------
    TypeError
        If ``component`` is not a component or ``parameters`` is not JSON-serialisable.
    ValueError
        If the memories of its memory map hold more than :data:`MAX_MEMORY_BITS` bits.
    """
    if not isinstance(component, wiring.Component):
        raise TypeError(f"Component must be an amaranth.lib.wiring.Component, not {component!r}")
    ident = sanitize_identifier(name)
    if parameters is None:
        get = getattr(component, "parameters", None)
        parameters = get() if callable(get) else {}
    if not isinstance(parameters, Mapping):
        raise TypeError(f"Parameters must be a mapping, not {parameters!r}")
    get_map = getattr(component, "memory_map", None)
    memory_map = list(get_map()) if callable(get_map) else []
    _check_memory_bits(memory_map)

    ports = component_ports(component)
    text = verilog.convert(component, name=ident, emit_src=False)
    declared = _verilog_ports(text, ident)
    by_name = {p["name"]: p for p in declared}
    for port in ports:
        got = by_name.get(port["name"])
        if got is None or got["direction"] != port["direction"] or got["width"] != port["width"]:
            raise RuntimeError(f"Port {port['name']!r} of the signature does not match the "
                               f"emitted Verilog ({got!r})")
    known = {p["name"] for p in ports}
    domain_ports = [p for p in declared if p["name"] not in known]

    sidecar = {
        "sidecar_version": SIDECAR_VERSION,
        "name": ident,
        "toplevel": ident,
        "verilog": f"{ident}.v",
        "verilog_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "parameters": dict(parameters),
        "clock_reset_ports": domain_ports,
        "ports": domain_ports + ports,
        "memory_map": memory_map,
    }
    try:
        sidecar_text = json.dumps(sidecar, sort_keys=True, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Parameters and memory map must be JSON-serialisable: {exc}") from None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    v_path = out_dir / f"{ident}.v"
    j_path = out_dir / f"{ident}.json"
    for path in (v_path, j_path):   # both checked first: never a .v without its sidecar
        _not_a_folder(path)
    write_atomic(v_path, text)
    write_atomic(j_path, sidecar_text)
    return v_path, j_path
