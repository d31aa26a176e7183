"""bench/mobile_int8.py: a tiny run end to end, its rows and ratios, its option errors."""

from __future__ import annotations

import pandas as pd
import pytest

import bench.mobile_int8 as mi


def test_tiny_run_checks_costs_and_saves_every_kernel(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(mi, "RESULTS", tmp_path)
    code = mi.main(["--linear", "32x32", "--cells", "gru", "--sizes", "16", "--block", "8x8",
                    "--keeps", "4x4"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| layer | kept per block | density | dense cycles | BCR cycles | BCR / dense |" in out
    assert "all match" in out
    f = pd.read_csv(tmp_path / "mobile_int8.csv")
    # per layer: the dense layer's dense kernel, then BCR, CSR and dense of the pruned one
    assert list(f.kernel) == ["dense", "bcr", "csr", "dense"] * 2
    assert list(f.layer) == ["linear 32x32"] * 4 + ["gru 16"] * 4
    assert list(f.density) == [1.0, 0.25, 0.25, 0.25] * 2
    assert list(f.kept) == ["all", "4x4", "4x4", "4x4"] * 2
    assert f.check.all() and (f.instructions > 0).all()
    for _, g in f.groupby(["layer", "kept"]):
        dense = g[g.kernel == "dense"].iloc[0]
        for _, r in g.iterrows():
            assert r.vs_dense_instructions == pytest.approx(
                r.instructions / dense.instructions, abs=1e-3)
            assert r["vs_dense_neoverse-n1"] == pytest.approx(
                r["cycles_neoverse-n1"] / dense["cycles_neoverse-n1"], abs=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["--keeps", "9x4", "--block", "8x8"], "--keeps: 9x4 does not fit the 8x8 block"),
    (["--linear", "8x64", "--sizes", ""], "a 16x16 block does not fit linear 8x64"),
    (["--linear", "", "--sizes", ""], "no layers: give --linear or --sizes"),
    (["--block", "8"], "must look like 16x32"),
])
def test_option_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        mi.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_settings_of_the_same_density_get_rows_of_their_own(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(mi, "RESULTS", tmp_path)
    assert mi.main(["--linear", "32x32", "--sizes", "", "--block", "8x8",
                    "--keeps", "4x2,2x4"]) == 0
    out = capsys.readouterr().out
    assert "| linear 32x32 | 4x2 | 0.125 |" in out and "| linear 32x32 | 2x4 | 0.125 |" in out
    f = pd.read_csv(tmp_path / "mobile_int8.csv")
    assert list(f.kept) == ["all", "4x2", "4x2", "4x2", "2x4", "2x4", "2x4"]
