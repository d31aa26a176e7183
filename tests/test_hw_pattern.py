"""Tests of hw.pattern: parameters, memory images, the cycle model, and the engine in amaranth.sim.

The emitted Verilog is simulated with Verilator and Icarus in tests/test_sim_pattern.py.
"""

import gc
import json
import re
import subprocess

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Fragment, Value, signed
from amaranth.sim import Simulator

from hw.bcr import pack_fields
from hw.dense import pack_words, unpack_words
from hw.pattern import (
    PIPELINE_LATENCY,
    PatternConv,
    ReplicatedMemory,
    check_pattern_parameters,
    pack_pattern,
    pattern_cycles,
    pattern_steps,
)
from ir.golden import conv2d
from ir.pattern import candidate_patterns, encode_pattern
from sim.pattern import out_size, random_pattern_layer

# ------------------------------------------------------------------------ parameters


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"lanes": 0}, ValueError, "Lanes must be a positive integer, not 0"),
    ({"lanes": 2.0}, TypeError, "Lanes must be a positive integer, not 2.0"),
    ({"lanes": True}, TypeError, "Lanes must be a positive integer, not True"),
    ({"weight_bits": 1}, ValueError, "Weight width must be an integer between 2 and 16, not 1"),
    ({"act_bits": 17}, ValueError,
     "Activation width must be an integer between 2 and 16, not 17"),
    ({"acc_bits": 65}, ValueError,
     "Accumulator width must be an integer between 2 and 64, not 65"),
    ({"library_size": 0}, ValueError, "Library size must be an integer between 1 and 126, not 0"),
    ({"library_size": "8"}, TypeError,
     "Library size must be an integer between 1 and 126, not '8'"),
    ({"kept": 10}, ValueError, "Kept weights must be an integer between 1 and 9, not 10"),
    ({"max_channels": 0}, ValueError, "Maximum input channels must be a positive integer, not 0"),
    ({"max_filters": None}, TypeError, "Maximum filters must be a positive integer, not None"),
    ({"max_height": 0}, ValueError, "Maximum height must be a positive integer, not 0"),
    ({"max_width": 1.5}, TypeError, "Maximum width must be a positive integer, not 1.5"),
    # 8 filters on 4 lanes = 2 groups x 6 channels = 12 kernel words at most.
    ({"max_kernel_words": 13}, ValueError,
     "Maximum kernel words must be an integer between 1 and 12, not 13"),
    ({"max_kernel_words": 0}, ValueError,
     "Maximum kernel words must be an integer between 1 and 12, not 0"),
    ({"max_channels": 1 << 12, "max_height": 1 << 10, "max_width": 1 << 10}, ValueError,
     "Maximum of 8192 kernel words at 1024x1024 positions takes 8589934595 cycles, more than "
     "the 32-bit cycle counter holds"),
])
def test_constructor_errors(kwargs, exc, message):
    args = {"lanes": 4, "max_channels": 6, "max_filters": 8, "max_height": 7, "max_width": 5,
            **kwargs}
    lanes = args.pop("lanes")
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        check_pattern_parameters(lanes, **args)
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        PatternConv(lanes, **args)


def test_defaults_and_memory_map():
    p = check_pattern_parameters(np.int64(3), max_channels=5, max_filters=7)
    assert p["max_kernel_words"] == 3 * 5
    dut = PatternConv(3, weight_bits=6, act_bits=5, acc_bits=24, library_size=8, kept=4,
                      max_channels=5, max_filters=7, max_height=6, max_width=9)
    Fragment.get(dut, None)
    mm = {m["name"]: m for m in dut.memory_map()}
    assert list(mm) == ["groups", "kernels", "values", "library", "activations", "outputs"]
    # HB = 3, WB = 4
    assert (mm["groups"]["depth"], mm["groups"]["width"]) == (3, 3 + 4)
    assert (mm["kernels"]["depth"], mm["kernels"]["width"]) == (15, 3 * (3 + 3))
    assert (mm["values"]["depth"], mm["values"]["width"]) == (15, 3 * 4 * 6)
    assert (mm["library"]["depth"], mm["library"]["width"]) == (8, 16)
    assert (mm["activations"]["depth"], mm["activations"]["width"]) == (5 << 7, 5)
    assert (mm["outputs"]["depth"], mm["outputs"]["width"]) == (3 << 7, 3 * 24)
    assert len(Value.cast(dut.kern_wr.data)) == 18
    assert dut.parameters()["engine"] == "pattern"


# ------------------------------------------------------------------------ cycle model / images

def test_cycle_model_and_images():
    lib = candidate_patterns(4)[:6]
    rng = np.random.default_rng(1)
    w, mask = random_pattern_layer(rng, (7, 5), lib, 0.5)
    w[3] = 0
    mask[3] = False                          # one filter fully pruned
    pc = encode_pattern(w, lib, mask)
    counts = sorted(np.diff(pc.kernel_ptr).tolist(), reverse=True)
    for lanes in (1, 2, 3, 7):
        steps = sum(counts[i] for i in range(0, 7, lanes))
        assert pattern_steps(pc, lanes) == steps
        assert pattern_cycles(pc, (4, 3), lanes) == 12 * steps + PIPELINE_LATENCY
        img = pack_pattern(pc, lanes)
        assert img.groups[:, 0].tolist() == [c for c in counts[::lanes] if c]
        assert len(img.kernels) == len(img.values) == steps
        assert sorted(img.out_filter[img.out_filter >= 0].tolist()) == list(range(7))
        # Each filter's kernels are in its lane, in order, with zero padding after them.
        for s, f in enumerate(img.out_filter):
            if f < 0:
                continue
            g, p = divmod(s, lanes)
            if g >= img.n_groups:
                assert not mask[f].any()
                continue
            base, cnt = img.groups[g, 1], img.groups[g, 0]
            vals = img.values[base:base + cnt, p * 4:(p + 1) * 4]
            chans = img.kernels[base:base + cnt, 2 * p]
            dense = np.zeros((5, 9), dtype=np.int64)
            for t in range(cnt):
                pid = img.kernels[base + t, 2 * p + 1]
                dense[chans[t], img.library[pid]] += vals[t]
            np.testing.assert_array_equal(dense.reshape(5, 3, 3), w[f])
    empty = encode_pattern(np.zeros((3, 2, 3, 3), dtype=int), lib)
    assert pattern_cycles(empty, (5, 5), 2) == 0 and pack_pattern(empty, 2).n_groups == 0
    assert pattern_cycles(pc, (0, 5), 2) == 0
    with pytest.raises(TypeError, match=r"^Pattern convolution must be an ir.pattern.PatternConv"
                                        r", not ndarray$"):
        pattern_cycles(np.ones(3), (1, 1), 1)


# ------------------------------------------------------------------------ amaranth.sim

def _simulate(dut, layers):
    """Run ``layers`` [(qweight, mask, library, x, stride, padding)]; return [(y, cycles)]."""
    P = dut.lanes
    wd = dut.widths
    hb, wbits = wd["height"], wd["width"]
    results = []

    async def write(ctx, port, words, addrs=None):
        ctx.set(port.en, 1)
        for a, word in zip(range(len(words)) if addrs is None else addrs, words, strict=True):
            ctx.set(port.addr, a)
            ctx.set(Value.cast(port.data), word)
            await ctx.tick()
        ctx.set(port.en, 0)

    async def bench(ctx):
        ctx.set(dut.out_rd.en, 1)
        for w, mask, lib, x, stride, pad in layers:
            img = pack_pattern(encode_pattern(w, lib, mask), P)
            c, h, wi = x.shape
            ho, wo = out_size(h, stride, pad), out_size(wi, stride, pad)
            await write(ctx, dut.group_wr, pack_fields(img.groups, [wd["count"], wd["base"]]))
            await write(ctx, dut.kern_wr, pack_fields(img.kernels,
                                                      [wd["channel"], wd["pattern"]] * P))
            await write(ctx, dut.w_wr, pack_words(img.values, dut.weight_bits))
            await write(ctx, dut.lib_wr, pack_fields(img.library, 4))
            ci, yi, xi = np.meshgrid(range(c), range(h), range(wi), indexing="ij")
            addrs = ((ci << (hb + wbits)) | (yi << wbits) | xi).ravel().tolist()
            await write(ctx, dut.x_wr, pack_words(x.reshape(-1, 1), dut.act_bits), addrs)
            for sig, v in ((dut.h, h), (dut.w, wi), (dut.ho, ho), (dut.wo, wo),
                           (dut.stride2, stride == 2), (dut.pad, pad),
                           (dut.groups, img.n_groups)):
                ctx.set(sig, int(v))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            polled = 0
            while not ctx.get(dut.done):
                assert ctx.get(dut.busy)
                await ctx.tick()
                polled += 1
            cycles = ctx.get(dut.cycles)
            assert polled == cycles
            o = w.shape[0]
            y = np.zeros((len(img.out_filter), ho, wo), dtype=np.int64)
            for g in range(len(img.out_filter) // P):
                for oy in range(ho):
                    for ox in range(wo):
                        ctx.set(dut.out_rd.addr, (g << (hb + wbits)) | (oy << wbits) | ox)
                        await ctx.tick()
                        word = ctx.get(Value.cast(dut.out_rd.data))
                        y[g * P:(g + 1) * P, oy, ox] = unpack_words([word], dut.acc_bits, P)[0]
            out = np.zeros((o, ho, wo), dtype=np.int64)
            keep = img.out_filter >= 0
            out[img.out_filter[keep]] = y[keep]
            results.append((out, cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_engine_matches_golden_and_cycle_model():
    rng = np.random.default_rng(11)
    lib = candidate_patterns(4)[[0, 5, 17, 30, 41, 55]]
    dut = PatternConv(3, library_size=6, max_channels=4, max_filters=7, max_height=6,
                      max_width=7)
    layers = []
    for (o, c, h, wi), keep, stride, pad in [((7, 4, 6, 7), 0.6, 1, 1), ((5, 3, 5, 4), 1.0, 1, 0),
                                            ((4, 2, 3, 3), 0.5, 1, 1), ((7, 4, 6, 7), 0.3, 2, 1),
                                            ((2, 1, 5, 6), 1.0, 2, 0)]:
        w, mask = random_pattern_layer(rng, (o, c), lib, keep)
        if o == 7:
            w[2], mask[2] = 0, False             # a fully pruned filter
        layers.append((w, mask, lib, rng.integers(-128, 128, (c, h, wi)), stride, pad))
    z = np.zeros((3, 2, 3, 3), dtype=np.int64)
    layers.append((z, z != 0, lib, rng.integers(-128, 128, (2, 4, 4)), 1, 1))
    for (w, mask, lib_, x, s, pd), (y, cycles) in zip(layers, _simulate(dut, layers),
                                                       strict=True):
        np.testing.assert_array_equal(y, conv2d(w, x, stride=s, padding=pd))
        ho, wo = y.shape[1:]
        assert cycles == pattern_cycles(encode_pattern(w, lib_, mask), (ho, wo), 3)


# ------------------------------------------------------------------------ memories Yosys maps

@pytest.mark.parametrize("read_ports", [1, 2, 5])
def test_replicated_memory_reads_every_port_exactly(read_ports):
    rng = np.random.default_rng(read_ports)
    dut = ReplicatedMemory(signed(6), 20, read_ports)
    assert dut.copies == -(-read_ports // 2)
    image = rng.integers(-32, 32, 20)

    async def bench(ctx):
        ctx.set(dut.wr.en, 1)
        for a, v in enumerate(image):
            ctx.set(dut.wr.addr, a)
            ctx.set(dut.wr.data, int(v))
            await ctx.tick()
        ctx.set(dut.wr.en, 0)
        for _ in range(12):
            addrs = rng.integers(0, 20, read_ports)
            for port, a in zip(dut.rd, addrs, strict=True):
                ctx.set(port.addr, int(a))
            await ctx.tick()
            assert [ctx.get(port.data) for port in dut.rd] == image[addrs].tolist()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 1}, "Depth must be an integer"),
    ({"read_ports": 0}, "Read ports must be a positive integer, not 0"),
])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")  # refused, never built
def test_replicated_memory_refuses(kwargs, message):
    args = {"shape": 8, "depth": 16, "read_ports": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        ReplicatedMemory(**args)
    gc.collect()                 # while the warning is filtered


def _rtlil_memories(text: str) -> dict[tuple[str, str], dict]:
    """Every memory of an RTLIL design: ``(module, name) -> {"attrs", "sync_reads", "writes",
    "comb_reads"}``, the read and write lists holding each port's address connection."""
    mems: dict[tuple[str, str], dict] = {}
    module, attrs, cell = "", [], None
    for line in text.splitlines():
        if line.startswith("module "):
            module = line.split()[1]
        elif line.startswith("  attribute "):
            attrs.append(line.split()[1])
        elif line.startswith("  memory "):
            mems[module, line.split()[-1]] = {"attrs": attrs, "sync_reads": [], "writes": [],
                                              "comb_reads": 0}
            attrs = []
        elif line.startswith("  cell "):
            cell = {"type": line.split()[1]} if line.split()[1] in ("$memrd_v2",
                                                                    "$memwr_v2") else None
            attrs = []
        elif cell is not None and line.startswith("    parameter \\MEMID "):
            cell["mem"] = "\\" + line.split('"')[1].removeprefix("\\\\")
        elif cell is not None and line.startswith("    parameter \\CLK_ENABLE "):
            cell["sync"] = line.split()[-1] == "1"
        elif cell is not None and line.startswith("    connect \\ADDR "):
            cell["addr"] = line.split(None, 2)[2]
        elif line == "  end" and cell is not None:
            mem = mems[module, cell["mem"]]
            if cell["type"] == "$memwr_v2":
                mem["writes"].append(cell["addr"])
            elif cell["sync"]:
                mem["sync_reads"].append(cell["addr"])
            else:
                mem["comb_reads"] += 1
            cell = None
        elif not line.startswith("    "):
            attrs = []
    return mems


@pytest.mark.parametrize("lanes, kept", [(8, 4), (3, 3)])
def test_every_memory_fits_a_true_dual_port_block_ram(lanes, kept):
    # What Yosys's memory_libmap needs (one memory of lanes * kept read ports crashed Yosys
    # 0.70 for ECP5 and xc7): no memory has more than two synchronous read ports, and the
    # synchronous reads and the writes of a memory use at most two addresses, the two ports of
    # an ECP5 DP16KD / 7-series RAMB18E1. Activation copies of two read ports share the write
    # address on one of them and tell Yosys not to add read-during-write logic.
    dut = PatternConv(lanes, kept=kept, library_size=8, max_channels=16, max_filters=16,
                      max_height=8, max_width=8)
    mems = _rtlil_memories(rtlil.convert(dut, name="top"))
    copies = {k: v for k, v in mems.items() if k[0] == "\\top.activations"}
    assert len(copies) == -(-lanes * kept // 2)
    assert sum(len(m["sync_reads"]) for m in copies.values()) == lanes * kept
    assert {k[1] for k in mems if k[0] == "\\top"} == {
        "\\groups_mem", "\\kernels", "\\values", "\\library", "\\outputs"}
    for (_, name), m in mems.items():
        assert len(m["sync_reads"]) <= 2, name
        assert len(set(m["sync_reads"] + m["writes"])) <= 2, name
        assert len(m["writes"]) == 1, name
    for m in copies.values():
        assert "\\no_rw_check" in m["attrs"]
        if len(m["sync_reads"]) == 2:
            assert m["writes"][0] in m["sync_reads"]


# ------------------------------------------------------------------------ lint

ALLOWED_LINT = {"PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC", "DECLFILENAME"}


def test_verilator_lint_only_documented_waivers(tmp_path):
    import hw.pattern
    from hw.emit import emit_verilog
    from sim.toolchain import toolchain_environ

    v_path, j_path = emit_verilog(PatternConv(2, library_size=5, max_channels=3, max_filters=5,
                                              max_height=6, max_width=5), "pattern_lint", tmp_path)
    sidecar = json.loads(j_path.read_text())
    assert sidecar["parameters"]["engine"] == "pattern"
    assert [m["name"] for m in sidecar["memory_map"]] == [
        "groups", "kernels", "values", "library", "activations", "outputs"]
    with toolchain_environ():
        proc = subprocess.run(["verilator", "--lint-only", "-Wall", str(v_path)],
                              capture_output=True, text=True, timeout=120)
    kinds = set(re.findall(r"%Warning-([A-Z0-9_]+):", proc.stderr))
    assert kinds <= ALLOWED_LINT, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines()
              if ln.startswith("%Error") and "Exiting due to" not in ln]
    assert not errors, proc.stderr[-3000:]
    for kind in ALLOWED_LINT:
        assert kind in hw.pattern.__doc__


def test_engine_wraps_to_acc_bits():
    # 16-bit extremes: 4 products of 2**30 per kernel, 4 kernels per output overflow int32.
    rng = np.random.default_rng(5)
    lib = candidate_patterns(4)[:3]
    w, mask = random_pattern_layer(rng, (2, 4), lib, 1.0, bits=16, full=True)
    w = np.where(mask, -(1 << 15), 0)
    x = np.full((4, 3, 3), -(1 << 15))
    for acc in (32, 20):
        dut = PatternConv(2, weight_bits=16, act_bits=16, acc_bits=acc, library_size=3,
                          max_channels=4, max_filters=2, max_height=3, max_width=3)
        (y, cycles), = _simulate(dut, [(w, mask, lib, x, 1, 1)])
        exact = conv2d(w, x, padding=1).astype(np.int64)      # int32-wrapped
        full_sum = np.einsum("ocij,cij->o", w.astype(object), x.astype(object)[:, :3, :3])
        assert abs(int(full_sum.max())) >= 1 << 31
        expect = (exact + (1 << (acc - 1))) % (1 << acc) - (1 << (acc - 1))
        np.testing.assert_array_equal(y, expect)
        assert cycles == pattern_cycles(encode_pattern(w, lib, mask), (3, 3), 2)
