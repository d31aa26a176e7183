"""nextpnr's report into Fmax and use, and the fit check made before place and route."""

from __future__ import annotations

import pytest

from synth_reports.pnr import DEVICES, fit_problem, parse_report, place_and_route
from synth_reports.yosys import Resources

REPORT = {"fmax": {"clk$SB_IO_IN_$glb_clk": {"achieved": 40.2, "constraint": 48}},
          "utilization": {"ICESTORM_LC": {"available": 5280, "used": 2033},
                          "ICESTORM_DSP": {"available": 8, "used": 8}},
          "critical_paths": []}


def test_parse_report():
    fmax, target, util = parse_report(REPORT)
    assert (fmax, target) == (40.2, 48.0)
    assert util == {"ICESTORM_DSP": (8, 8), "ICESTORM_LC": (2033, 5280)}


@pytest.mark.parametrize("report, message", [
    ({"utilization": {}}, "no 'fmax'"),
    ({"fmax": {}, "utilization": {}}, "0 clocks"),
    ({"fmax": {"a": {"achieved": 1, "constraint": 1}, "b": {"achieved": 1, "constraint": 1}},
      "utilization": {}}, "2 clocks"),
    ({"fmax": REPORT["fmax"]}, "no 'utilization'"),
])
def test_parse_report_refuses(report, message):
    with pytest.raises(ValueError, match=message):
        parse_report(report)


def _res(**kw):
    base = dict(target="ice40", luts=100, ffs=100, carries=0, brams=1, dsps=1)
    return Resources(**(base | kw))


def test_fit_problem_names_each_resource_over():
    up5k, hx8k = DEVICES["up5k"], DEVICES["hx8k"]
    assert fit_problem(_res(), up5k) is None
    assert fit_problem(_res(luts=5280, ffs=5280, brams=30, dsps=8, spram=4), up5k) is None
    msg = fit_problem(_res(luts=6000, ffs=7000, brams=31, dsps=9, spram=5), up5k)
    assert msg == ("does not fit the iCE40UP5K: it needs at least 7,000 logic cells (LUTs 6,000, "
                   "flip-flops 7,000) of 5,280; 31 block RAMs of 30; 9 SB_MAC16 of 8; "
                   "5 SPRAM blocks of 4")
    assert fit_problem(_res(), hx8k) == "does not fit the iCE40HX8K: it needs 1 SB_MAC16 of 0"
    assert "synthesised for xc7, not ice40" in fit_problem(_res(target="xc7"), up5k)


def test_fit_problem_ecp5_counts_carries_and_lutram_as_luts():
    e25 = DEVICES["ecp5-25k"]
    assert fit_problem(_res(target="ecp5", luts=24288 - 10, carries=5), e25) is None
    assert fit_problem(_res(target="ecp5", luts=24288 - 12, lutram=3), e25) is None
    assert fit_problem(_res(target="ecp5", luts=24288 - 11, lutram=3), e25) is not None
    msg = fit_problem(_res(target="ecp5", luts=24000, carries=100, lutram=50, ffs=30000,
                           brams=57, dsps=29), e25)
    assert msg == ("does not fit the LFE5U-25F: it needs at least 24,400 LUT4s (logic 24,000, "
                   "carries 100 x 2, LUT-RAM 50 x 4) of 24,288; 30,000 flip-flops of 24,288; "
                   "57 block RAMs of 56; 29 MULT18X18D of 28")
    assert "synthesised for ice40, not ecp5" in fit_problem(_res(), e25)


@pytest.mark.parametrize("kw, message", [
    (dict(device="ecp5"), "unknown device 'ecp5'"),
    (dict(target_mhz=0), "must be positive"),
    (dict(seed=-1), "0 or more"),
    (dict(router="Router2"), "unknown router 'Router2'; known: router1, router2"),
])
def test_place_and_route_refuses(tmp_path, kw, message):
    args = dict(device="up5k") | kw
    with pytest.raises(ValueError, match=message):
        place_and_route(tmp_path / "n.json", args.pop("device"), tmp_path, **args)
