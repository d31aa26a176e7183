"""bench/retrain_screen.py: the variant parser, the RigL-style regrowth schedule and step (count
kept, smallest kept weights dropped, largest-gradient pruned ones grown at zero), regrowth
retraining never reviving a weight outside its mask, dropout on the linear layers' inputs in
training mode only, and a smoke run of the whole screen."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from bench import compression as bc
from bench import retrain_screen as rs


def test_parse_variants_accepts_kinds_and_epochs_and_names_bad_items():
    assert rs.parse_variants("standard:6, regrow:18") == [rs.Variant("standard", 6),
                                                          rs.Variant("regrow", 18)]
    for bad, msg in (("sgd:6", "'sgd:6' is not kind:epochs"), ("regrow", "'regrow' is not"),
                     ("standard:0", "'standard:0'"), ("standard:x", "'standard:x'"),
                     ("standard:\u00b2", "'standard:\u00b2'"),
                     ("", "at least one"), ("standard:6,standard:6", "listed twice")):
        with pytest.raises(ValueError, match=msg):
            rs.parse_variants(bad)


def test_regrow_fraction_is_a_cosine_on_update_steps_only():
    r = rs.Regrow(every=10, alpha=0.4, stop=0.5)
    assert r.fraction(5, 100) == 0.0                      # not an update step
    assert r.fraction(10, 100) == pytest.approx(0.2 * (1 + math.cos(math.pi * 10 / 50)))
    assert r.fraction(40, 100) < r.fraction(20, 100) < r.fraction(10, 100)
    assert r.fraction(50, 100) == 0.0 and r.fraction(90, 100) == 0.0   # after stop
    for bad in ((0, 0.3, 0.75), (25, 0.0, 0.75), (25, 1.0, 0.75), (25, 0.3, 0.0)):
        with pytest.raises(ValueError, match="regrowth needs"):
            rs.Regrow(*bad)


def test_regrow_step_swaps_smallest_kept_for_largest_gradient_pruned():
    w = torch.tensor([0.5, -0.1, 0.0, 0.0, 2.0, 0.0, -0.3, 0.0])
    mask = w != 0
    grad = torch.tensor([9.0, 9.0, 0.1, -5.0, 9.0, 3.0, 9.0, 0.2])
    k = rs.regrow_step(w, grad, mask, 0.5)   # 4 kept -> 2 swapped
    assert k == 2
    assert int(mask.sum()) == 4
    assert mask.tolist() == [True, False, False, True, True, True, False, False]
    assert w[3] == 0 and w[5] == 0           # grown at zero
    assert rs.regrow_step(w, None, mask, 0.5) == 0
    full = torch.ones(4, dtype=torch.bool)
    assert rs.regrow_step(torch.ones(4), torch.ones(4), full, 0.5) == 0   # nothing to grow


def test_regrow_retrain_keeps_counts_and_never_revives_outside_the_mask():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    plans = {"1": None, "3": None}
    masks = {}
    with torch.no_grad():
        for name in plans:
            lin = model.get_submodule(name)
            m = torch.rand_like(lin.weight) < 0.2
            lin.weight.mul_(m)
            masks[name] = {"": m.clone()}
    before = {n: masks[n][""].clone() for n in plans}
    x = torch.randn(96, 16)
    y = (x[:, :3].argmax(1))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    swapped = rs.regrow_retrain(model, plans, masks, loader, 3, rs.Regrow(every=2, alpha=0.5),
                                optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)
    assert swapped > 0
    for name in plans:
        w = model.get_submodule(name).weight
        assert int(masks[name][""].sum()) == int(before[name].sum())
        assert not torch.equal(masks[name][""], before[name])
        assert torch.count_nonzero(w[~masks[name][""]]) == 0


def test_parse_args_splits_at_double_dash_and_checks_the_bench_options():
    args, bargs, rest = rs.parse_args(["--seeds", "2", "--variants", "regrow:3", "--",
                                       "--ratios", "100", "--val", "100"])
    assert args.seeds == 2 and args.variant_list == [rs.Variant("regrow", 3)]
    assert bargs.ratio_list == [100.0] and bargs.val == 100 and rest[:2] == ["--ratios", "100"]
    with pytest.raises(SystemExit):
        rs.parse_args(["--", "--ratios", "85,100"])
    with pytest.raises(SystemExit):
        rs.parse_args(["--", "--ratios", "100", "--stages", "10"])
    with pytest.raises(SystemExit):
        rs.parse_args(["--variants", "bogus:1"])
    assert rs.parse_args(["--variants", "dropout:2", "--dropout", "0.1", "--",
                          "--ratios", "100"])[0].dropout == 0.1
    for bad in ("0", "1", "-0.2"):
        with pytest.raises(SystemExit):
            rs.parse_args(["--dropout", bad, "--", "--ratios", "100"])


def test_linear_input_dropout_acts_in_training_only_and_is_removable():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(200, 1, bias=False))
    nn.init.ones_(model[0].weight)
    x = torch.ones(4, 200)
    hooks = rs.linear_input_dropout(model, 0.5)
    assert len(hooks) == 1
    out = model(x)                               # training mode: inputs dropped, kept ones x2
    kept = out / 2
    assert torch.equal(kept, kept.round()) and (kept < 200).all() and (kept > 50).all()
    model.eval()
    assert torch.equal(model(x), torch.full((4, 1), 200.0))
    model.train()
    for h in hooks:
        h.remove()
    assert torch.equal(model(x), torch.full((4, 1), 200.0))


def test_screen_smoke_run_writes_paired_rows(tmp_path, capsys):
    pytest.importorskip("mlxtend")
    csv = tmp_path / "screen.csv"
    assert rs.main(["--seeds", "1", "--variants", "standard:1,regrow:1,dropout:1", "--csv", str(csv), "--",
                    "--quick", "--bits", "", "--dense-epochs", "1", "--scope", "global",
                    "--conv-relu"]) == 0
    assert bc.MODEL_KWARGS == {}                 # --conv-relu held for the run only
    df = pd.read_csv(csv)
    assert list(df.variant) == ["standard:1", "regrow:1", "dropout:1"]
    assert (df.nnz == 4305).all()               # 430,500 / 100, every variant
    assert df.swapped.tolist()[0] == 0 and df.swapped.iloc[1] > 0 and df.swapped.iloc[2] == 0
    assert df.accuracy.iloc[2] != df.accuracy.iloc[0] or \
        df.train_accuracy.iloc[2] != df.train_accuracy.iloc[0]   # dropout changed the training
    assert df.accuracy.between(0, 1).all() and df.train_accuracy.between(0, 1).all()
    out = capsys.readouterr().out
    assert "(ReLU after the convolutions)" in out
    assert "vs standard:1 pp" in out and "reproduce: python bench/retrain_screen.py" in out


def _rows(seeds, variants, where="test"):
    return pd.DataFrame([{"seed": s, "variant": v, "accuracy": 0.97 + 0.001 * i + 0.0001 * s,
                          "train_accuracy": 0.999, "nnz": 4305, "swapped": 0, "seconds": 1.0,
                          "dense_accuracy": 0.98, "drop_pp": 1.0, "evaluated_on": where,
                          "command": "python bench/retrain_screen.py"}
                         for s in seeds for i, v in enumerate(variants)])


def test_merge_reports_paired_changes_over_all_seeds(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _rows([0, 1], ["standard:6", "regrow:6"]).to_csv(a, index=False)
    _rows([2], ["standard:6", "regrow:6"]).to_csv(b, index=False)
    out = tmp_path / "all.csv"
    assert rs.main(["--merge", str(a), str(b), "--csv", str(out)]) == 0
    assert len(pd.read_csv(out)) == 6
    text = capsys.readouterr().out
    assert "3 seed(s) [0, 1, 2]" in text and "+0.10 (s.e. 0.00; 3 up, 0 down)" in text
    _rows([3], ["standard:6", "regrow:18"]).to_csv(b, index=False)
    with pytest.raises(SystemExit, match="different variants"):
        rs.main(["--merge", str(a), str(b), "--csv", str(out)])
    _rows([1], ["standard:6", "regrow:6"]).to_csv(b, index=False)
    with pytest.raises(SystemExit, match="repeat a"):
        rs.main(["--merge", str(a), str(b), "--csv", str(out)])
    with pytest.raises(SystemExit, match="cannot read .*missing.csv"):
        rs.main(["--merge", str(a), str(tmp_path / "missing.csv"), "--csv", str(out)])
    pd.DataFrame({"seed": [0], "accuracy": [0.9]}).to_csv(b, index=False)
    with pytest.raises(SystemExit, match="b.csv has no column variant"):
        rs.main(["--merge", str(a), str(b), "--csv", str(out)])
    other = _rows([2], ["standard:6", "regrow:6"])     # a run of another command
    other["command"] = "python bench/retrain_screen.py --seeds 1 --first-seed 2 -- --scope global"
    other.to_csv(b, index=False)
    with pytest.raises(SystemExit, match="runs of different commands"):
        rs.main(["--merge", str(a), str(b), "--csv", str(out)])


def test_compression_merge_refuses_runs_of_different_commands(tmp_path):
    """A --val run merged with test runs was labelled 'test (1,000 digits)' and pooled."""
    rows = [{"seed": 0, "method": "dense", "target_ratio": None, "accuracy": 0.98,
             "seconds": 1.0, "ratio": 1.0, "drop_pp": 0.0, "evaluated_on": "test",
             "command": "python bench/compression.py --quick --csv a.csv"}]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame(rows).to_csv(a, index=False)
    pd.DataFrame([rows[0] | {"seed": 1, "evaluated_on": "validation", "command":
                             "python bench/compression.py --quick --first-seed 1 --val 50 "
                             "--csv b.csv"}]).to_csv(b, index=False)
    with pytest.raises(SystemExit, match="runs of different commands .*--val 50"):
        bc.main(["--merge", str(a), str(b), "--csv", str(tmp_path / "out.csv")])
    assert not (tmp_path / "out.csv").exists()
    assert bc.setup_of("python bench/compression.py --seeds 2 --first-seed=3 --quick --csv "
                       "x.csv") == ("python", "bench/compression.py", "--quick")


def test_bench_merge_names_a_missing_empty_or_foreign_csv(tmp_path):
    empty, foreign = tmp_path / "empty.csv", tmp_path / "foreign.csv"
    empty.write_text("")
    _rows([0], ["standard:6"]).to_csv(foreign, index=False)
    for path, msg in ((tmp_path / "missing.csv", "cannot read .*missing.csv"),
                      (empty, "cannot read .*empty.csv"), (tmp_path, "cannot read"),
                      (foreign, "foreign.csv has no column method, target_ratio")):
        with pytest.raises(SystemExit, match=msg):
            bc.main(["--merge", str(path), "--csv", str(tmp_path / "out.csv")])
    assert not (tmp_path / "out.csv").exists()


def test_csv_path_checked_before_the_run(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(SystemExit):
        rs.parse_args(["--csv", str(afile / "s.csv"), "--", "--ratios", "100"])
    assert f"error: --csv: '{afile}' is a file, not a folder" in capsys.readouterr().err
