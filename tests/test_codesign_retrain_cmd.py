"""The data-free flow on the command line: ``codesign prune --data-free`` on a checkpoint (no data
read), then ``codesign retrain`` on the user's data: valid bundles, masks unchanged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from codesign.cli import main
from ir import Bundle
from pruning import zoo
from pruning.export import export_model


@pytest.fixture(scope="module", autouse=True)
def _gradients_on():
    """Another test module (tests/test_ir_golden.py) disables gradients globally at import."""
    with torch.enable_grad():
        yield


def run(capsys, *argv):
    code = main([*argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err, text):
    assert code == 2
    assert err.strip().splitlines() == [f"codesign: error: {text}"]


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """A tinycnn checkpoint pruned without data, with every dataset loader made to fail."""
    import pruning.data as pdata

    root = tmp_path_factory.mktemp("datafree")
    torch.save(zoo.build("tinycnn", seed=0).state_dict(), root / "trained.pt")
    plan = root / "plan.toml"
    plan.write_text('[types.conv2d]\nscheme = "pattern"\nconnectivity = 0.5\n\n'
                    '[types.linear]\nscheme = "bcr"\nblock = [4, 4]\nratio = 4\nbits = 8\n')

    def refuse(*_a, **_k):
        raise AssertionError("the data-free run read a dataset")

    mp = pytest.MonkeyPatch()
    mp.setattr(pdata, "load", refuse)
    mp.setattr(pdata, "loader", refuse)
    try:
        code = main(["prune", "--data-free", "--model", "tinycnn", "--checkpoint",
                     str(root / "trained.pt"), "--plan", str(plan), "--admm-iters", "2",
                     "--synthetic-batches", "2", "--batch-size", "32", "--no-progress",
                     "--out", str(root / "free")])
    finally:
        mp.undo()
    return code, root


def test_data_free_prune_writes_bundle_state_and_summary(pruned):
    code, root = pruned
    assert code == 0
    bundle = Bundle.load(root / "free" / "bundle")
    assert [(x.name, x.scheme.kind) for x in bundle.layers] == [
        ("conv1", "pattern"), ("conv2", "pattern"), ("fc1", "bcr"), ("fc2", "bcr")]
    for layer in bundle.layers:
        assert layer.scheme.violation(layer.tensors["mask"]) is None
    summary = json.loads((root / "free" / "summary.json").read_text())
    assert summary["data_free"] is True and summary["settings"]["synthetic"]["batches"] == 2
    assert [x["name"] for x in summary["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    state = torch.load(root / "free" / "pruned.pt", weights_only=True)
    assert set(state) == set(zoo.build("tinycnn").state_dict())


def test_retrain_keeps_masks_and_writes_valid_bundle(pruned, capsys):
    _, root = pruned
    code, out, err = run(capsys, "retrain", str(root / "free" / "bundle"), "--data", "digits",
                         "--epochs", "1", "--no-progress", "--out", str(root / "re"))
    assert code == 0, err
    assert "before retraining" in out and "masks unchanged" in out
    old, new = Bundle.load(root / "free" / "bundle"), Bundle.load(root / "re" / "bundle")
    assert [x.name for x in new.layers] == [x.name for x in old.layers]
    changed = False
    for a, b in zip(old.layers, new.layers, strict=True):
        assert np.array_equal(a.tensors["mask"], b.tensors["mask"]), a.name
        assert b.scheme == a.scheme and b.quant == a.quant
        assert b.scheme.violation(b.tensors["mask"]) is None
        assert not b.tensors["weight"][b.tensors["mask"] == 0].any()
        changed |= not np.array_equal(a.tensors["weight"], b.tensors["weight"])
        if b.quant is not None:
            assert np.array_equal(b.tensors["qweight"].astype(np.float32)
                                  * np.float32(b.quant.scale), b.tensors["weight"])
    assert changed
    summary = json.loads((root / "re" / "summary.json").read_text())
    assert set(summary["accuracy"]) == {"before", "after"} and summary["epochs"] == 1


def test_retrain_keeps_break_evens_and_activation_quantization(pruned, capsys, tmp_path,
                                                               monkeypatch):
    """Both were dropped (None in the new bundle), though the masks and weight scales, which
    they depend on, are unchanged. And `retrain .` inside the bundle folder looked for
    pruned.pt inside it, not beside it."""
    from dataclasses import replace

    _, root = pruned
    old = Bundle.load(root / "free" / "bundle")
    fc1 = old.layer("fc1")
    edited = old.with_layer(replace(fc1, break_even=0.45, quant=replace(
        fc1.quant, act_bits=8, act_scale=0.0625)))
    edited.save(tmp_path / "b" / "bundle")
    shutil.copyfile(root / "free" / "pruned.pt", tmp_path / "b" / "pruned.pt")
    monkeypatch.chdir(tmp_path / "b" / "bundle")
    code, _, err = run(capsys, "retrain", ".", "--data", "digits", "--epochs", "0",
                       "--no-progress", "--out", str(tmp_path / "re"))
    assert code == 0, err
    new = Bundle.load(tmp_path / "re" / "bundle")
    assert [(x.break_even, x.quant) for x in new.layers] == \
        [(x.break_even, x.quant) for x in edited.layers]
    assert new.layer("fc1").break_even == 0.45 and new.layer("fc1").quant.act_scale == 0.0625
    summary = json.loads((tmp_path / "re" / "summary.json").read_text())
    assert summary["state"] == str(tmp_path / "b" / "pruned.pt")


def test_retrain_bad_input(pruned, capsys, tmp_path):
    _, root = pruned
    out = str(tmp_path / "o")
    code, _, err = run(capsys, "retrain", str(tmp_path / "none"), "--data", "digits",
                       "--out", out)
    one_line(code, err, f"cannot load bundle: {tmp_path / 'none'}: not a "
                        "bundle directory")
    code, _, err = run(capsys, "retrain", str(root / "free" / "bundle"), "--data", "mnist5k",
                       "--out", out)
    one_line(code, err, "model 'tinycnn' reads inputs of shape (1, 8, 8); dataset 'mnist5k' "
                        "has (1, 28, 28)")
    vgg = tmp_path / "vgg" / "bundle"
    export_model(zoo.build("vggsmall", width=2), "vggsmall").save(vgg)
    code, _, err = run(capsys, "retrain", str(vgg), "--data", "mnist5k", "--out", out)
    one_line(code, err, "model 'vggsmall' has state outside the bundle (features.1.weight, "
                        "features.1.bias, features.1.running_mean, ...); give --checkpoint (the "
                        "pruned.pt that `codesign prune --data-free` wrote)")
    alone = tmp_path / "alone"
    shutil.copytree(root / "free" / "bundle", alone / "bundle")
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv1.weight": torch.zeros(2, 2)}, wrong)
    code, _, err = run(capsys, "retrain", str(alone / "bundle"), "--data", "digits",
                       "--checkpoint", str(wrong), "--out", out)
    assert code == 2 and err.startswith(f"codesign: error: cannot load checkpoint {wrong}: it "
                                        "does not fit the model: missing keys conv1.bias, ")
    assert not (tmp_path / "o").exists()


def test_retrain_an_lstm_bundle_on_mnist1d(capsys, tmp_path):
    """An RNN bundle (`codesign prune --model lstm`) retrains on MNIST-1D; the command offered
    only the image datasets, so no LSTM or GRU bundle could be retrained."""
    from pruning.admm import hard_project
    from pruning.export import export
    from pruning.plan import Plan, resolve

    model = zoo.build("lstm", seed=0)
    plans = resolve(Plan.uniform("unstructured", sparsity=0.75, bits=8), model)
    hard_project(model, plans)
    export(model, plans, model_name="lstm").save(tmp_path / "b" / "bundle")
    code, out, err = run(capsys, "retrain", str(tmp_path / "b" / "bundle"), "--data", "mnist1d",
                         "--epochs", "1", "--no-progress", "--out", str(tmp_path / "re"))
    assert code == 0, err
    assert "accuracy (mnist1d test): before retraining" in out
    old, new = Bundle.load(tmp_path / "b" / "bundle"), Bundle.load(tmp_path / "re" / "bundle")
    assert [x.name for x in new.layers] == ["rnn", "fc"]
    for a, b in zip(old.layers, new.layers, strict=True):
        masks = [k for k in a.tensors if k.startswith("mask")]
        assert masks and all(np.array_equal(a.tensors[k], b.tensors[k]) for k in masks)
