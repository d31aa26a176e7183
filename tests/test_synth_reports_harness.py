"""The place-and-route harness: its Verilog, checked in Icarus against a model of what it promises
(every input bit from the ``sin`` shift register, every output bit into the ``sout`` signature),
and the harnesses of the real engines compile."""

from __future__ import annotations

import random
import subprocess

import pytest

from synth_reports.harness import harness_name, harness_verilog

CLOCK_RESET = [{"name": "clk", "direction": "input", "width": 1},
               {"name": "rst", "direction": "input", "width": 1}]
# A toy engine: y registers {a, b} (b in bit 0), z registers ~b, both cleared by rst and
# initialised to 0 (as Amaranth's registers are).
TOY = """
module toy(input clk, input rst, input [2:0] a, input b, output reg [3:0] y = 4'd0,
           output reg z = 1'b0);
  always @(posedge clk) begin
    if (rst) begin y <= 4'd0; z <= 1'b0; end
    else begin y <= {a, b}; z <= ~b; end
  end
endmodule
"""
TOY_PORTS = CLOCK_RESET + [
    {"name": "a", "direction": "input", "width": 3},
    {"name": "b", "direction": "input", "width": 1},
    {"name": "y", "direction": "output", "width": 4},
    {"name": "z", "direction": "output", "width": 1},
]


def _model(sins: list[int], rst: list[int]) -> list[int]:
    """sout after each clock edge, as harness.py documents the harness."""
    si = so = y = z = 0
    outs = []
    for s, r in zip(sins, rst, strict=True):
        a, b = si & 7, (si >> 3) & 1         # inputs in port order: a = si[2:0], b = si[3]
        o = y | (z << 4)                     # outputs in port order: y = o[3:0], z = o[4]
        so_next = ((so << 1) ^ o) & 0x1F
        y_next, z_next = (0, 0) if r else (((a << 1) | b) & 0xF, 1 - b)
        si = ((si << 1) | s) & 0xF
        so, y, z = so_next, y_next, z_next
        outs.append((so >> 4) & 1)
    return outs


def test_harness_shifts_inputs_in_and_signs_every_output(tmp_path, require_simulator):
    require_simulator("icarus")
    text = harness_verilog("toy", TOY_PORTS, CLOCK_RESET)
    assert "module toy_harness(input clk, input rst, input sin, output sout);" in text
    rng = random.Random(7)
    n = 200
    sins = [rng.randrange(2) for _ in range(n)]
    rst = [1, 1] + [int(rng.random() < 0.05) for _ in range(n - 2)]
    tb = ["module tb;", "  reg clk = 0, rst = 1, sin = 0;", "  wire sout;",
          "  toy_harness h(.clk(clk), .rst(rst), .sin(sin), .sout(sout));", "  initial begin"]
    for s, r in zip(sins, rst, strict=True):
        tb += [f"    sin = {s}; rst = {r}; #1 clk = 1; #1 clk = 0;", '    $display("%b", sout);']
    tb += ["    $finish;", "  end", "endmodule"]
    (tmp_path / "toy.v").write_text(TOY)
    (tmp_path / "h.v").write_text(text)
    (tmp_path / "tb.v").write_text("\n".join(tb) + "\n")
    subprocess.run(["iverilog", "-g2012", "-o", "sim", "toy.v", "h.v", "tb.v"], cwd=tmp_path,
                   check=True)
    run = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True,
                         text=True)
    got = [int(line) for line in run.stdout.split() if line in ("0", "1")]
    assert got == _model(sins, rst)
    assert 0 < sum(got) < n                   # the signature moves


def test_harness_single_bit_ports():
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "go", "direction": "input", "width": 1},
             {"name": "done", "direction": "output", "width": 1}]
    text = harness_verilog("one", ports, ports[:1])
    assert "si <= sin;" in text and "so <= 1'b0 ^ o;" in text
    assert ".rst(" not in text                # no reset port: none connected


@pytest.mark.parametrize("ports, clock_reset, message", [
    ([], [], "no clock port"),
    (CLOCK_RESET + [{"name": "a", "direction": "input", "width": 3}], CLOCK_RESET,
     "no output port"),
    (CLOCK_RESET + [{"name": "a", "direction": "inout", "width": 3}], CLOCK_RESET,
     "is inout"),
    (CLOCK_RESET, CLOCK_RESET + [{"name": "rst2", "direction": "input", "width": 1}],
     "3 clock/reset ports"),
])
def test_harness_refuses(ports, clock_reset, message):
    with pytest.raises(ValueError, match=message):
        harness_verilog("x", ports, clock_reset)


def test_harness_name_is_an_identifier():
    assert harness_name("dense_matvec") == "dense_matvec_harness"
    assert harness_name("module") == "module_harness"
