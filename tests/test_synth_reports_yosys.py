"""Yosys's ``stat -json`` into resources, and the Yosys script."""

from __future__ import annotations

import pytest

from synth_reports.yosys import parse_stat, yosys_script

# Trimmed from real reports of an 8-lane 64x64 dense engine (Yosys 0.70).
ICE40_STAT = {"design": {"num_cells": 2433, "num_cells_by_type": {
    "SB_CARRY": 307, "SB_DFF": 423, "SB_DFFE": 257, "SB_DFFESR": 327, "SB_DFFSR": 143,
    "SB_LUT4": 943, "SB_MAC16": 8, "SB_RAM40_4K": 25, "$scopeinfo": 1}}}
ECP5_STAT = {"design": {"num_cells_by_type": {
    "$scopeinfo": 1, "CCU2C": 164, "DP16KD": 2, "L6MUX21": 1, "LUT4": 687, "MULT18X18D": 8,
    "PFUMX": 13, "TRELLIS_DPR16X4": 72, "TRELLIS_FF": 1134}}}
XC7_STAT = {"modules": {"\\dense_matvec": {"num_cells_by_type": {
    "BUFG": 1, "CARRY4": 19, "DSP48E1": 8, "FDRE": 606, "IBUF": 110, "INV": 11, "LUT2": 263,
    "LUT3": 4, "LUT4": 14, "LUT5": 5, "LUT6": 4, "OBUF": 290, "RAM32M": 43, "RAM64M": 3,
    "RAMB36E1": 1, "RAMB18E1": 3, "MUXF7": 2}}}}


def test_parse_stat_ice40():
    r = parse_stat(ICE40_STAT, "ice40")
    assert (r.luts, r.ffs, r.carries, r.brams, r.dsps, r.lutram, r.spram) == \
        (943, 423 + 257 + 327 + 143, 307, 25, 8, 0, 0)
    assert r.cells["SB_MAC16"] == 8 and list(r.cells) == sorted(r.cells)


def test_parse_stat_ecp5():
    r = parse_stat(ECP5_STAT, "ecp5")
    assert (r.luts, r.ffs, r.carries, r.brams, r.dsps, r.lutram, r.spram) == \
        (687, 1134, 164, 2, 8, 72, 0)


def test_parse_stat_xc7_reads_the_only_module_and_counts_half_brams():
    r = parse_stat(XC7_STAT, "xc7")
    assert r.luts == 263 + 4 + 14 + 5 + 4 + 11          # LUT1-6 and INV, not MUXF7 or IO
    assert (r.ffs, r.carries, r.dsps, r.lutram) == (606, 19, 8, 46)
    assert r.brams == 2.5                                 # one RAMB36E1 + three RAMB18E1


@pytest.mark.parametrize("stat, target, message", [
    (ICE40_STAT, "gowin", "unknown synthesis target 'gowin'"),
    ({"modules": {}}, "ice40", "not exactly one module"),
    ({"design": {}}, "ice40", "no 'num_cells_by_type'"),
    ({"design": {"num_cells_by_type": {"SB_LUT4": 3, "$mul": 1}}}, "ice40",
     r"left cells unmapped: \$mul"),
])
def test_parse_stat_refuses(stat, target, message):
    with pytest.raises(ValueError, match=message):
        parse_stat(stat, target)


def test_yosys_script():
    s = yosys_script(["e.v", "h.v"], "h", "ice40", "n.json", "s.json")
    assert s == ("read_verilog e.v\nread_verilog h.v\nsynth_ice40 -dsp -top h -json n.json\n"
                 "tee -q -o s.json stat -json\n")
    assert "synth_ice40 -top h\n" in yosys_script(["e.v"], "h", "ice40", None, "s.json",
                                                    dsp=False)
    assert "synth_xilinx -family xc7 -flatten -top e\n" in yosys_script(["e.v"], "e", "xc7", None, "s")
    assert yosys_script(["e.v"], "e", "ecp5", "n", "s") == (
        "read_verilog e.v\nsynth_ecp5 -top e -run :map_luts\nabc -lut 4 -dress\nclean\n"
        "synth_ecp5 -top e -run map_cells: -json n\ntee -q -o s stat -json\n")
