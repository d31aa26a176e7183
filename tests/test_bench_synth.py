"""bench/synth.py's break-even reading of a speedup curve."""

from __future__ import annotations

import pytest

from bench.synth import _break_even


def test_break_even_interpolates_the_first_crossing():
    assert _break_even([0.5, 0.6, 0.7], [0.8, 0.9, 1.1]) == "0.6500"
    assert _break_even([0.5, 0.6], [1.0, 2.0]) == "<= 0.5"     # at or below the grid
    assert _break_even([0.5, 0.6], [0.5, 0.9]) == "none (> 0.6)"
    assert _break_even([0.1, 0.2, 0.3, 0.4], [0.5, 1.5, 0.9, 2.0]) == "0.1500"


def test_quick_keeps_the_devices_given_even_abbreviated(monkeypatch, tmp_path):
    """`--quick --dev up5k,ecp5-85k` ran on ecp5-85k only: the default was decided from the
    raw text '--devices'."""
    import bench.synth as bs

    seen = []

    def fake_rows(specs, devices, *a, **k):
        seen.append(list(devices))
        raise SystemExit(0)

    monkeypatch.setattr(bs, "synth_rows", fake_rows)
    monkeypatch.setattr(bs, "RESULTS", tmp_path)
    for argv, want in ((["--quick"], ["ecp5-85k"]), ([], ["up5k", "ecp5-85k", "xc7"]),
                       (["--quick", "--dev", "up5k,ecp5-85k"], ["up5k", "ecp5-85k"])):
        try:
            bs.main(argv)
        except SystemExit:
            pass
        assert seen[-1] == want


def test_router_reaches_synth_rows(monkeypatch, tmp_path):
    import bench.synth as bs

    seen = []

    def fake_rows(specs, devices, lanes, seeds, work, router, pnr_timeout_s, first_seed):
        seen.append((router, pnr_timeout_s, first_seed))
        raise SystemExit(0)

    monkeypatch.setattr(bs, "synth_rows", fake_rows)
    monkeypatch.setattr(bs, "RESULTS", tmp_path)
    for argv, want in (([], ("router1", 1800, 1)), (["--router", "router2"], ("router2", 1800, 1)),
                       (["--pnr-timeout", "600"], ("router1", 600, 1)),
                       (["--first-seed", "7"], ("router1", 1800, 7))):
        with pytest.raises(SystemExit):
            bs.main(["--quick", *argv])
        assert seen[-1] == want


def test_synth_rows_passes_the_time_limit_and_notes_an_engine_every_seed_of_which_stopped(
        monkeypatch, tmp_path):
    import bench.synth as bs
    from synth_reports.tools import ToolTimeout

    seen = []

    def stuck(verilog, device, folder, *, seeds, router, pnr_timeout_s):
        seen.append((device, seeds, pnr_timeout_s))
        raise ToolTimeout(f"nextpnr ran longer than {pnr_timeout_s} s on every seed")

    monkeypatch.setattr(bs, "synth_engine", stuck)
    specs = [s for s in bs.engine_specs(16, 16) if s[0] == "dense"]
    rows = bs.synth_rows(specs, ["ecp5-85k"], 4, 2, tmp_path, "router1", 45)
    assert seen == [("ecp5-85k", (1, 2), 45)]
    assert rows[0]["note"] == "nextpnr ran longer than 45 s on every seed"
    assert "fmax_mhz" not in rows[0]
    bs.synth_rows(specs, ["ecp5-85k"], 4, 2, tmp_path / "b", "router1", 45, first_seed=3)
    assert seen[-1] == ("ecp5-85k", (3, 4), 45)
