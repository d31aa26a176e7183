"""bench/fpga_mobile.py: its layers, a tiny run end to end, its option errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bench.fpga_mobile as fm


def test_make_layer_keeps_exactly_the_asked_rows_and_columns():
    lay = fm.make_layer("lstm", 16, (8, 8), (4, 2), seed=3)
    assert lay.op == "lstm" and lay.scheme.kind == "bcr" and lay.scheme.block == (8, 8)
    for k in ("ih", "hh"):
        m = lay.tensors[f"mask_{k}"]
        assert m.shape == (64, 16)
        for r0 in range(0, 64, 8):
            for c0 in range(0, 16, 8):
                blk = m[r0:r0 + 8, c0:c0 + 8]
                assert blk.any(axis=1).sum() == 4 and blk.any(axis=0).sum() == 2
        q = lay.tensors[f"qweight_{k}"]
        assert np.all(q[m == 0] == 0) and np.abs(q).max() <= 127
    dense = fm.make_layer("gru", 8, None, None, seed=0)
    assert dense.scheme.kind == "dense" and dense.tensors["mask_ih"].all()
    assert dense.tensors["qweight_hh"].shape == (24, 8)


def test_tiny_run_prints_the_table_and_saves_csv(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(fm, "RESULTS", tmp_path)
    code = fm.main(["--cells", "gru", "--sizes", "8", "--block", "8x8", "--keeps", "4x4",
                    "--lanes", "4", "--steps", "2", "--fmax", "40,25"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| cell | size | density | FPGA dense gates us |" in out
    assert "all match" in out
    s = pd.read_csv(tmp_path / "fpga_mobile_summary.csv")
    assert list(s.density) == [1.0, 0.25] and s.ok.all()
    assert s.fpga_best.notna().all()
    bcr = s.iloc[1]
    assert bcr.fpga_speedup == pytest.approx(
        (bcr.fpga_dense_cycles / 40) / (bcr.fpga_bcr_cycles / 25), abs=1e-3)
    rows = pd.read_csv(tmp_path / "fpga_mobile.csv")
    assert len(rows) == 2 + 5              # dense: 1 engine + 1 kernel; BCR: 2 + 3
    import csv

    with open(tmp_path / "fpga_mobile.csv", newline="") as fh:
        assert {r["lanes"] for r in csv.DictReader(fh)} == {"4", ""}     # not 4.0


@pytest.mark.parametrize("argv, message", [
    (["--keeps", "9x4", "--block", "8x8"], "--keeps: 9x4 does not fit the 8x8 block"),
    (["--lanes", "6"], "must be a multiple of 4"),
    (["--block", "8"], "must look like 16x32"),
    (["--fmax", "0"], "must be DENSE or DENSE,SPARSE"),
    (["--sizes", "4", "--fmax", "40"], "a 16x16 block does not fit the gate matrices of size 4"),
    (["--slices", "17"], "--slices"),
    (["--slices", "0"], "--slices"),
    (["--pnr-timeout", "0"], "argument --pnr-timeout: must be an integer from 1 to 86400"),
])
def test_option_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        fm.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_runs_as_a_script():
    """Run as a script, bench/ comes first on sys.path and bench/mobile.py shadowed the mobile
    package: `python bench/fpga_mobile.py` died on its imports."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(fm.__file__)
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                          text=True, cwd=script.parent, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "--keeps" in proc.stdout


def test_each_layer_is_saved_as_it_is_measured(monkeypatch, tmp_path):
    """The CSVs were written at the end only: a run stopped after an hour kept nothing."""
    monkeypatch.setattr(fm, "RESULTS", tmp_path)
    real = fm.compare_rnn_layer
    calls = []

    def second_fails(layer, **kw):
        calls.append(layer.name)
        assert kw["slices"] == 2 and kw["bcr_memory"] is not None
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(layer, **kw)

    monkeypatch.setattr(fm, "compare_rnn_layer", second_fails)
    with pytest.raises(KeyboardInterrupt):
        fm.main(["--cells", "gru", "--sizes", "8", "--block", "8x8", "--keeps", "4x4",
                 "--lanes", "4", "--slices", "2", "--steps", "2", "--fmax", "40,25"])
    s = pd.read_csv(tmp_path / "fpga_mobile_summary.csv")
    assert list(s.density) == [1.0] and len(pd.read_csv(tmp_path / "fpga_mobile.csv")) == 2


def test_placer_passes_the_time_limit_and_reports_an_engine_every_seed_of_which_stopped(
        monkeypatch, tmp_path):
    """``--pnr-timeout`` reaches each nextpnr run; an engine whose every seed ran past it is a
    "not placed" row with synth_engine's message, and the run goes on."""
    from synth_reports.tools import ToolTimeout

    seen = []

    def stuck(verilog, device, folder, *, seeds, router, pnr_timeout_s):
        seen.append((seeds, router, pnr_timeout_s))
        raise ToolTimeout(f"nextpnr ran longer than {pnr_timeout_s} s on every seed\nlog: x")

    monkeypatch.setattr(fm, "synth_engine", stuck)
    monkeypatch.setattr(fm, "read_sidecar",
                        lambda v: ("", {"verilog_sha256": v, "toplevel": "lstm_x"}))
    placer = fm.Placer("ecp5-85k", 2, tmp_path, "router1", pnr_timeout_s=60)
    fmax, _, resources, _, note = placer("bcr", "a.v")
    assert seen == [((1, 2), "router1", 60)]
    assert fmax is None and resources is None
    assert note == "nextpnr ran longer than 60 s on every seed"
    assert placer("bcr", "a.v")[4] == note and len(seen) == 1      # one run per Verilog
    fm.Placer("ecp5-85k", 2, tmp_path / "b", "router1", 60, first_seed=5)("bcr", "b.v")
    assert seen[-1] == ((5, 6), "router1", 60)


def test_pnr_timeout_reaches_the_placer(monkeypatch, tmp_path):
    made = []

    class Spy(fm.Placer):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append((self.pnr_timeout_s, self.first_seed))
            raise SystemExit(0)

    monkeypatch.setattr(fm, "Placer", Spy)
    monkeypatch.setattr(fm, "RESULTS", tmp_path)
    for argv, want in (([], (1800, 1)), (["--pnr-timeout", "300"], (300, 1)),
                       (["--first-seed", "3"], (1800, 3))):
        with pytest.raises(SystemExit):
            fm.main(["--quick", *argv])
        assert made[-1] == want
