"""Tests of hw.emit: identifier sanitising, deterministic Verilog + JSON sidecar, atomic writes."""

import json
import os
import re

import pytest
from amaranth.hdl import Fragment
from hypothesis import given, settings
from hypothesis import strategies as st

import hw.emit as emit_mod
from hw.dense import DenseMatVec
from hw.emit import (
    MAX_IDENTIFIER_LENGTH,
    VERILOG_KEYWORDS,
    component_ports,
    emit_verilog,
    sanitize_identifier,
    write_atomic,
)

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@pytest.mark.parametrize("name, expected", [
    ("dense", "dense"),
    ("conv1.weight", "conv1_weight"),
    ("features.0", "features_0"),
    ("1x1_conv", "_1x1_conv"),
    ("0", "_0"),
    ("module", "module_"),
    ("wire", "wire_"),
    ("logic", "logic_"),  # SystemVerilog keyword: iverilog -g2012 rejects it
    ("Module", "Module"),  # keywords are case-sensitive
    ("", "unnamed"),
    ("a b-c/d\\e", "a_b_c_d_e"),
    ("héllo", "h_llo"),
    ("$display", "_display"),
    ("_private", "_private"),
    ("layer[3]", "layer_3_"),
])
def test_sanitize_identifier(name, expected):
    assert sanitize_identifier(name) == expected


def test_sanitize_long_names_stay_distinct():
    a = sanitize_identifier("x" * 200 + "a")
    b = sanitize_identifier("x" * 200 + "b")
    assert len(a) == len(b) == MAX_IDENTIFIER_LENGTH
    assert a != b
    assert IDENT.fullmatch(a)
    assert sanitize_identifier("x" * 200 + "a") == a  # deterministic


def test_sanitize_rejects_non_strings():
    with pytest.raises(TypeError, match=r"^Identifier must be a string, not 3$"):
        sanitize_identifier(3)
    with pytest.raises(TypeError, match=r"^Identifier must be a string, not None$"):
        sanitize_identifier(None)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_sanitize_always_gives_a_safe_identifier(name):
    ident = sanitize_identifier(name)
    assert IDENT.fullmatch(ident)
    assert ident not in VERILOG_KEYWORDS
    assert 0 < len(ident) <= MAX_IDENTIFIER_LENGTH
    assert sanitize_identifier(ident) == ident  # idempotent


def test_keywords_cover_verilog_and_systemverilog():
    for kw in ("module", "always", "assign", "reg", "wire", "input", "output", "logic", "bit",
               "int", "class", "interface", "always_ff", "unique0", "nettype"):
        assert kw in VERILOG_KEYWORDS


@pytest.fixture
def small_dense():
    dut = DenseMatVec(2, weight_bits=4, act_bits=6, max_rows=3, max_cols=5)
    Fragment.get(dut, None)  # elaborated, so tests that never emit it raise no warning
    return dut


def test_emit_is_deterministic(tmp_path, small_dense):
    v1, j1 = emit_verilog(small_dense, "layer.0", tmp_path / "a")
    v2, j2 = emit_verilog(DenseMatVec(2, weight_bits=4, act_bits=6, max_rows=3, max_cols=5),
                          "layer.0", tmp_path / "b")
    assert v1.name == v2.name == "layer_0.v"
    assert j1.name == j2.name == "layer_0.json"
    assert v1.read_bytes() == v2.read_bytes()
    assert j1.read_bytes() == j2.read_bytes()
    # Re-emitting in place gives the same bytes and leaves no temporary file.
    before = v1.read_bytes(), j1.read_bytes()
    emit_verilog(DenseMatVec(2, weight_bits=4, act_bits=6, max_rows=3, max_cols=5), "layer.0",
                 tmp_path / "a")
    assert (v1.read_bytes(), j1.read_bytes()) == before
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["layer_0.json", "layer_0.v"]
    text = v1.read_text()
    assert re.search(r"^module layer_0\(", text, re.MULTILINE)
    assert "src = " not in text  # emit_src=False: no source locations


def test_sidecar_contents(tmp_path, small_dense):
    v_path, j_path = emit_verilog(small_dense, "dense_small", tmp_path,
                                  parameters={"lanes": 2, "note": "x"})
    raw = j_path.read_text()
    doc = json.loads(raw)
    assert raw == json.dumps(doc, sort_keys=True, indent=2) + "\n"
    assert doc["name"] == doc["toplevel"] == "dense_small"
    assert doc["verilog"] == "dense_small.v"
    assert doc["parameters"] == {"lanes": 2, "note": "x"}
    ports = {p["name"]: (p["direction"], p["width"]) for p in doc["ports"]}
    assert ports["clk"] == ("input", 1) and ports["rst"] == ("input", 1)
    assert [p["name"] for p in doc["clock_reset_ports"]] == ["clk", "rst"]
    assert ports["start"] == ("input", 1)
    assert ports["rows"] == ("input", 2)   # range(4)
    assert ports["cols"] == ("input", 3)   # range(6)
    assert ports["busy"] == ("output", 1)
    assert ports["done"] == ("output", 1)
    assert ports["cycles"] == ("output", 32)
    assert ports["w_wr__data"] == ("input", 2 * 4)
    assert ports["w_wr__addr"] == ("input", 4)  # depth 2 groups * 5 cols = 10
    assert ports["x_wr__data"] == ("input", 6)
    assert ports["out_rd__data"] == ("output", 2 * 32)
    assert ports["out_rd__en"] == ("input", 1)
    # Every declared port of the top module is listed, and nothing else.
    declared = re.findall(r"^\s*(input|output)\s+(?:\[\d+:\d+\]\s*)?(\w+);", v_path.read_text(),
                          re.MULTILINE)
    assert sorted(n for _, n in declared) == sorted(ports)
    assert doc["memory_map"] == json.loads(json.dumps(small_dense.memory_map()))
    import hashlib
    assert doc["verilog_sha256"] == hashlib.sha256(v_path.read_bytes()).hexdigest()


def test_sidecar_defaults_to_component_parameters(tmp_path, small_dense):
    _, j_path = emit_verilog(small_dense, "d", tmp_path)
    assert json.loads(j_path.read_text())["parameters"] == small_dense.parameters()


def test_component_ports_follow_signature(small_dense):
    names = [p["name"] for p in component_ports(small_dense)]
    assert names[:6] == ["start", "rows", "cols", "busy", "done", "cycles"]
    assert "w_wr__en" in names and "out_rd__data" in names


def test_emit_errors(tmp_path, small_dense):
    with pytest.raises(TypeError, match=r"^Component must be an amaranth\.lib\.wiring\.Component, "
                                        r"not 3$"):
        emit_verilog(3, "x", tmp_path)
    with pytest.raises(TypeError, match=r"^Parameters and memory map must be JSON-serialisable"):
        emit_verilog(small_dense, "x", tmp_path, parameters={"bad": object()})
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(TypeError, match=r"^Parameters must be a mapping, not \[1\]$"):
        emit_verilog(small_dense, "x", tmp_path, parameters=[1])


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # refused, never built
def test_memory_bits_are_bounded_before_conversion(tmp_path, monkeypatch):
    # 100000 x 100000 dense weights: refused at once (the conversion used to exhaust the RAM)
    big = DenseMatVec(8, max_rows=100_000, max_cols=100_000)
    with pytest.raises(ValueError, match=r"^The engine's memories hold 80,004,000,000 bits "
                                         r"\(largest: weights, 80,000,000,000\); at most "
                                         r"67,108,864 are built: use a smaller shape$"):
        emit_verilog(big, "big", tmp_path)
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(emit_mod, "MAX_MEMORY_BITS", 10_000)  # the bound is the total
    small = DenseMatVec(2, max_rows=16, max_cols=32)         # 16 x 32 x 8 = 4,096 weight bits
    bits = sum(m["depth"] * m["width"] for m in small.memory_map())
    assert 4096 < bits <= 10_000
    emit_verilog(small, "small", tmp_path)
    monkeypatch.setattr(emit_mod, "MAX_MEMORY_BITS", bits - 1)
    with pytest.raises(ValueError, match=f"hold {bits:,} bits"):
        emit_verilog(small, "small", tmp_path)


def test_write_atomic_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    write_atomic(target, "old")
    assert target.read_text() == "old"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(emit_mod.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


@pytest.mark.parametrize("umask", [0o077, 0o000])
def test_files_get_the_umask_mode(tmp_path, small_dense, umask):
    """Both files were 0644 whatever the umask."""
    old = os.umask(umask)
    try:
        v, j = emit_verilog(small_dense, "m", tmp_path)
    finally:
        os.umask(old)
    assert v.stat().st_mode & 0o777 == j.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_folder_in_the_way_of_the_sidecar_writes_nothing(tmp_path, small_dense):
    """The .v was written, then the sidecar failed naming its temporary file."""
    (tmp_path / "m.json").mkdir()
    with pytest.raises(IsADirectoryError) as exc:
        emit_verilog(small_dense, "m", tmp_path)
    assert exc.value.filename == str(tmp_path / "m.json")
    assert os.listdir(tmp_path) == ["m.json"]
