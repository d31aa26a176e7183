"""``codesign prune``: a tiny run on digits writes the bundle; bad input is one line, exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from codesign.cli import main
from ir import Bundle


@pytest.fixture(scope="module", autouse=True)
def _gradients_on():
    """Another test module (tests/test_ir_golden.py) disables gradients globally at import."""
    with torch.enable_grad():
        yield

TINY = ["--model", "tinycnn", "--epochs", "1", "--admm-iters", "2", "--retrain-epochs", "1",
        "--no-progress"]


def run(capsys, *argv):
    code = main(["prune", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, text):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0] == f"codesign: error: {text}"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prune") / "out"
    code = main(["prune", *TINY, "--scheme", "unstructured", "--ratio", "4", "--bits", "4",
                 "--out", str(out)])
    return code, out


def test_prune_on_digits_writes_bundle_and_summary(first_run, capsys):
    code, out = first_run
    assert code == 0
    bundle = Bundle.load(out / "bundle")
    assert [x.name for x in bundle.layers] == ["conv1", "conv2", "fc1", "fc2"]
    assert all(x.quant.bits == 4 and x.scheme.kind == "unstructured" for x in bundle.layers)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "digits" and summary["totals"]["nnz"] == 1194
    assert set(summary["accuracy"]) == {"before", "projected", "after"}
    assert len(summary["admm"]) == 2 and summary["settings"]["admm_iters"] == 2
    assert summary["dense_epochs"] == 1 and summary["checkpoint"] is None
    assert summary["batch_size"] == 32                    # tinycnn's recipe
    assert isinstance(torch.load(out / "dense.pt", weights_only=True), dict)


def test_saved_state_dicts_are_byte_identical(tmp_path):
    """dense.pt, pruned.pt and retrained.pt: torch.save given the temporary file's path named
    the archive's records after that random name, so two identical runs differed."""
    from codesign.prune_cmd import _save_state
    from pruning.zoo import build

    model = build("tinycnn", seed=3)
    _save_state(model, tmp_path / "a" / "dense.pt")
    _save_state(model, tmp_path / "b" / "dense.pt")
    data = (tmp_path / "a" / "dense.pt").read_bytes()
    assert data == (tmp_path / "b" / "dense.pt").read_bytes()
    assert b".dense." not in data
    assert torch.load(tmp_path / "a" / "dense.pt", weights_only=True).keys() == \
        model.state_dict().keys()


def test_prune_with_plan_and_checkpoint_prints_table(first_run, capsys, tmp_path):
    _, first = first_run
    plan = tmp_path / "plan.toml"
    plan.write_text('[default]\nscheme = "unstructured"\nratio = 2\n\n'
                    '[layers.fc1]\nscheme = "bcr"\nblock = [8, 16]\nratio = 4\nbits = 6\n'
                    'rho = 0.05\n')
    code, out, err = run(capsys, *TINY, "--plan", str(plan), "--checkpoint",
                         str(first / "dense.pt"), "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert f"loaded {first / 'dense.pt'}: test accuracy" in out
    for text in ("layer", "scheme", "sparsity", "bits", "nnz", "bcr(8x16)", "unstructured",
                 "accuracy (digits test): before", "after retraining", "weights only"):
        assert text in out
    assert Bundle.load(tmp_path / "o" / "bundle").layer("fc1").quant.bits == 6
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["admm"][0]["rho"] == {"conv1": 0.01, "conv2": 0.01, "fc1": 0.05, "fc2": 0.01}
    assert summary["admm"][1]["rho"]["fc1"] == pytest.approx(0.075)
    assert not (tmp_path / "o" / "dense.pt").exists()


@pytest.mark.parametrize("argv, message", [
    (["--scheme", "unstructured", "--ratio", "0.5"],
     "--ratio must be a compression ratio greater than 1 (85 keeps 1/85 of the weights), not 0.5"),
    (["--scheme", "unstructured", "--sparsity", "1.5"],
     "--sparsity must be a number in [0, 1), not 1.5"),
    (["--scheme", "sparse", "--ratio", "4"],
     "unknown scheme 'sparse'; allowed: unstructured, filter, column, pattern, bcr, nm, dense"),
    (["--scheme", "unstructured", "--ratio", "1e30"], "--ratio must be at most 1e+12, not 1e+30"),
    (["--scheme", "unstructured", "--ratio", "4", "--sparsity", "0.5"],
     "give --ratio or --sparsity, not both"),                    # named no option
    (["--ratio", "4"], "give --scheme (with --ratio or --sparsity) or --plan FILE"),
    (["--scheme", "unstructured", "--ratio", "4", "--bits", "1"],
     "bits must be an integer from 2 to 16 (or false for float weights), not 1"),
    (["--scheme", "unstructured", "--ratio", "4", "--block", "8x16"],
     "--block applies to --scheme bcr only"),
    (["--scheme", "bcr", "--ratio", "4", "--block", "8by16"],
     "--block must look like 8x16 (positive), not '8by16'"),
    (["--scheme", "bcr", "--ratio", "4", "--block", "0x16"],
     "--block must look like 8x16 (positive), not '0x16'"),
    (["--scheme", "nm", "--nm", "0:4"], "--nm must look like 2:4 (positive), not '0:4'"),
    (["--scheme", "bcr", "--ratio", "4", "--block", "\u00b2x2"],    # isdigit() but not int()
     "--block must look like 8x16 (positive), not '\u00b2x2'"),
    (["--scheme", "nm", "--nm", "\u00b9:\u00b2"], "--nm must look like 2:4 (positive), not "
                                                "'\u00b9:\u00b2'"),
    (["--scheme", "nm", "--nm", "2:" + "9" * 5000],     # int() refuses over 4,300 digits
     "--nm must look like 2:4 (positive), not '2:" + "9" * 5000 + "'"),
    (["--scheme", "bcr", "--ratio", "4"],
     "layer 'conv1': BCR block 8x16 is larger than the 8x9 weight matrix"),
    (["--scheme", "pattern"],
     "layer 'fc1': the pattern scheme needs a 3x3 convolution, not a linear layer; use --plan "
     "to give the other layers another scheme"),
])
def test_bad_options_are_one_line_exit_2(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, "--model", "tinycnn", "--out", str(tmp_path / "o"), *argv)
    assert_user_error(code, err, message)
    assert not (tmp_path / "o").exists()


def test_bad_model_plan_and_checkpoint(capsys, tmp_path):
    out = str(tmp_path / "o")
    code, _, err = run(capsys, "--model", "vgg16", "--scheme", "unstructured", "--ratio", "4",
                       "--out", out)     # was "give --data", which no --data choice satisfied
    assert_user_error(code, err, "model 'vgg16' reads inputs of shape (3, 32, 32), which no "
                                 "offline dataset has; prune a trained checkpoint of it with "
                                 "--data-free --checkpoint FILE")
    code, _, err = run(capsys, "--model", "alexnet", "--scheme", "unstructured", "--ratio", "4",
                       "--out", out)
    assert_user_error(code, err, "unknown model 'alexnet'; known: tinycnn, lenet5, vggsmall, "
                                 "resnet18, mobilenetv2, vgg16, lstm, gru")
    code, _, err = run(capsys, "--model", "lenet5", "--data", "digits", "--scheme",
                       "unstructured", "--ratio", "4", "--out", out)
    assert_user_error(code, err, "model 'lenet5' reads inputs of shape (1, 28, 28); dataset "
                                 "'digits' has (1, 8, 8)")
    missing = tmp_path / "plan.toml"
    code, _, err = run(capsys, "--model", "tinycnn", "--plan", str(missing), "--out", out)
    assert_user_error(code, err, f"cannot read plan {missing}: No such file or directory")
    code, _, err = run(capsys, "--model", "tinycnn", "--plan", str(missing), "--bits", "4",
                       "--out", out)
    assert_user_error(code, err, "--plan cannot be combined with --bits; put every setting in "
                                 "the plan file")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4",
                       "--checkpoint", str(junk), "--out", out)
    assert_user_error(code, err, f"cannot load checkpoint {junk}: not a state dict written by "
                                 "torch.save (unreadable or truncated file)")
    truncated = tmp_path / "truncated.pt"
    torch.save({"w": torch.zeros(64)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    code, _, err = run(capsys, "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4",
                       "--checkpoint", str(truncated), "--out", out)
    assert_user_error(code, err, f"cannot load checkpoint {truncated}: not a state dict "
                                 "written by torch.save (unreadable or truncated file)")
    pickled = tmp_path / "pickled.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    code, _, err = run(capsys, "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4",
                       "--checkpoint", str(pickled), "--out", out)
    assert_user_error(code, err, f"cannot load checkpoint {pickled}: it holds a pickled Python "
                                 "object (torch.nn.modules.linear.Linear), which is never "
                                 "unpickled here; save model.state_dict() with torch.save and "
                                 "give that")
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc1.weight": torch.zeros(3, 3)}, wrong)
    code, _, err = run(capsys, "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4",
                       "--checkpoint", str(wrong), "--out", out)
    assert code == 2 and err.startswith(f"codesign: error: cannot load checkpoint {wrong}: it "
                                        "does not fit the model: ")
    assert len(err.strip().splitlines()) == 1
    from pruning.zoo import build

    nan = tmp_path / "nan.pt"          # used to fail in the projection with a traceback
    state = build("tinycnn").state_dict()
    state["fc1.weight"][0, 0] = float("nan")
    torch.save(state, nan)
    code, _, err = run(capsys, "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4",
                       "--checkpoint", str(nan), "--out", out)
    assert_user_error(code, err, f"cannot load checkpoint {nan}: tensor 'fc1.weight' holds NaN "
                                 "or infinite values")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("change, message", [
    (lambda s: {1: torch.zeros(1)}, "key 1 is not a parameter name (a state dict's keys are "
                                    "strings such as 'conv1.weight')"),
    (lambda s: s | {"fc1.weight": s["fc1.weight"].to("meta")},
     "tensor 'fc1.weight' is on the meta device (it holds no values)"),
    (lambda s: s | {"fc1.weight": s["fc1.weight"].to_sparse()}, "tensor 'fc1.weight' is a "
                                                                 "sparse_coo tensor"),
    (lambda s: s | {"fc2.bias": s["fc2.bias"].to(torch.complex64)},
     "tensor 'fc2.bias' is complex (complex64)"),
])
def test_checkpoint_with_odd_tensors_is_refused(capsys, tmp_path, change, message):
    """Each of these was a traceback (TypeError, RuntimeError, NotImplementedError), or for a
    complex tensor a run on its real part, or 'training diverged' when it held inf."""
    from pruning.zoo import build

    path = tmp_path / "odd.pt"
    torch.save(change(build("tinycnn").state_dict()), path)
    code, _, err = run(capsys, "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4",
                       "--checkpoint", str(path), "--out", str(tmp_path / "o"))
    assert_user_error(code, err, f"cannot load checkpoint {path}: {message}; a state dict here "
                                 "holds dense, real tensors on the CPU"
                      if "key" not in message else f"cannot load checkpoint {path}: {message}")
    assert not (tmp_path / "o").exists()


def test_diverging_training_is_one_error(capsys, tmp_path):
    """--lr 1e300 overflowed Adam's float32 step (RuntimeError); --lr 1e30 made the weights NaN
    and --rho 1e38 the penalty infinite, which the projection refused with a traceback."""
    out = str(tmp_path / "o")
    code, _, err = run(capsys, "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4",
                       "--lr", "1e300", "--out", out)
    assert_user_error(code, err, "Invalid value for '--lr': 1e+300 is not in the range "
                                 "0<x<=1000000.0.")
    code, _, err = run(capsys, "--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4",
                       "--rho", "1e38", "--epochs", "1", "--no-progress", "--out", out)
    assert_user_error(code, err, "training diverged: the regularizer (ADMM's penalty) is inf at "
                                 "epoch 1, step 1; lower rho")
    assert not (tmp_path / "o" / "bundle").exists()      # only the dense.pt it trained


@pytest.mark.parametrize("argv, message", [
    (["--data-free", "--scheme", "unstructured", "--ratio", "4"],
     "--data-free needs --checkpoint TRAINED.pt: the data-free mode prunes your trained model "
     "and never trains on data (without --data-free, `codesign prune` trains one and saves "
     "OUT/dense.pt)"),
    (["--data-free", "--checkpoint", "x.pt", "--scheme", "unstructured", "--ratio", "4",
      "--retrain-epochs", "2"],
     "--retrain-epochs does not apply to --data-free, which reads no data; retrain on your data "
     "with `codesign retrain`"),
    (["--data-free", "--checkpoint", "x.pt", "--scheme", "unstructured", "--ratio", "4",
      "--data", "digits"],
     "--data does not apply to --data-free, which reads no data; retrain on your data with "
     "`codesign retrain`"),
    (["--scheme", "unstructured", "--ratio", "4", "--synthetic", "uniform"],
     "--synthetic applies to --data-free only"),
    (["--scheme", "unstructured", "--ratio", "4", "--recon-at", "block"],
     "--recon-at applies to --data-free only"),
])
def test_data_free_option_errors(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, "--model", "tinycnn", "--out", str(tmp_path / "o"), *argv)
    assert_user_error(code, err, message)
    assert not (tmp_path / "o").exists()


def test_data_free_checkpoint_mismatch_and_bn_synthetic(capsys, tmp_path):
    from pruning import zoo

    wrong = tmp_path / "wrong.pt"
    state = zoo.build("tinycnn").state_dict()
    state["fc2.weight"] = torch.zeros(3, 48)
    del state["fc1.bias"]
    state["extra"] = torch.zeros(1)
    torch.save(state, wrong)
    code, _, err = run(capsys, "--model", "tinycnn", "--data-free", "--checkpoint", str(wrong),
                       "--scheme", "unstructured", "--ratio", "4", "--out", str(tmp_path / "o"))
    assert_user_error(code, err, f"cannot load checkpoint {wrong}: it does not fit the model: "
                                 "missing keys fc1.bias; unexpected keys extra; shape of "
                                 "fc2.weight is [3, 48], not [10, 48]")
    good = tmp_path / "good.pt"
    torch.save(zoo.build("tinycnn").state_dict(), good)
    code, _, err = run(capsys, "--model", "tinycnn", "--data-free", "--checkpoint", str(good),
                       "--scheme", "unstructured", "--ratio", "4", "--synthetic", "bn",
                       "--out", str(tmp_path / "o"))
    assert_user_error(code, err, "synthetic distribution 'bn' needs a model whose first "
                                 "BatchNorm normalises its input or the outputs of its first "
                                 "layer; use 'normal' or 'uniform'")
    assert not (tmp_path / "o").exists()


def test_connected_option(capsys, tmp_path, first_run):
    """--connected: a bundle whose masks have no dead weight; clear errors where it cannot
    apply."""
    from pruning.connectivity import live_masks

    code, out, err = run(capsys, *TINY, "--scheme", "unstructured", "--ratio", "20",
                         "--connected", "--checkpoint", str(first_run[1] / "dense.pt"),
                         "--out", str(tmp_path / "o"))
    assert code == 0, err
    bundle = Bundle.load(tmp_path / "o" / "bundle")
    masks = [torch.from_numpy(x.tensors["mask"].astype(bool)) for x in bundle.layers]
    assert all(torch.equal(a, b) for a, b in zip(live_masks(masks), masks, strict=True))
    for argv, message in (
            (["--model", "tinycnn", "--scheme", "bcr", "--ratio", "4", "--connected"],
             "--connected applies to --scheme unstructured only"),
            (["--model", "resnet18", "--scheme", "unstructured", "--ratio", "4", "--connected"],
             "connected pruning: the value of 'relu' is used more than once (a branch); "
             "connected pruning needs one chain of layers"),
            (["--model", "tinycnn", "--scheme", "unstructured", "--ratio", "4", "--connected",
              "--data-free", "--checkpoint", str(first_run[1] / "dense.pt")],
             "connected pruning does not apply to --data-free, which prunes one layer at a "
             "time")):
        code, _, err = run(capsys, *argv, "--out", str(tmp_path / "bad"))
        assert_user_error(code, err, message)
        assert not (tmp_path / "bad").exists()


def test_rnn_models_prune_and_retrain_on_image_data(capsys, tmp_path):
    """The recurrent classifiers read mnist5k and digits row by row; prune and retrain refused
    both ("reads inputs of shape (8, 8); dataset 'digits' has (1, 8, 8)")."""
    from ir import Bundle

    out = tmp_path / "gru"
    code, stdout, err = run(capsys, "--model", "gru", "--data", "digits", "--scheme",
                            "unstructured", "--ratio", "2", "--bits", "8", "--epochs", "1",
                            "--admm-iters", "1", "--retrain-epochs", "0", "--no-progress",
                            "--out", str(out))
    assert code == 0, err
    assert "accuracy (digits test)" in stdout
    layer = Bundle.load(out / "bundle").layer("rnn")
    assert (layer.shape.input_size, layer.shape.hidden_size) == (8, 64)
    from codesign.cli import main

    code = main(["retrain", str(out / "bundle"), "--data", "digits", "--epochs", "1",
                 "--no-progress", "--out", str(tmp_path / "client")])
    _, err = capsys.readouterr()
    assert code == 0, err
    code = main(["retrain", str(out / "bundle"), "--data", "mnist5k", "--epochs", "1",
                 "--no-progress", "--out", str(tmp_path / "client2")])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err


def test_max_ratio_agrees_with_the_plan():
    from codesign.prune_cmd import MAX_RATIO
    from pruning.plan import MAX_RATIO as PLAN_MAX_RATIO

    assert MAX_RATIO == PLAN_MAX_RATIO


def test_everything_pruned_is_reported_as_such(capsys, tmp_path):
    code, out, _ = run(capsys, "--model", "tinycnn", "--data", "digits", "--epochs", "1",
                       "--admm-iters", "1", "--retrain-epochs", "1", "--scheme", "filter",
                       "--ratio", "1e12", "--out", str(tmp_path / "o"))
    assert code == 0
    assert "weights: 4,776 -> 0 kept (all pruned); storage" in out


def test_dense_training_follows_the_zoo_recipe(monkeypatch, capsys):
    """Without --epochs the dense model trains as pruning.zoo.RECIPES says. Before, every model
    got 5 epochs of Adam at --lr: the LSTM reached 29.9% on MNIST-1D instead of 94.8%, TinyCNN
    84.4% on digits instead of 95.8%."""
    import pruning.train
    from codesign.prune_cmd import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_DENSE_EPOCHS,
        _train_dense,
        recipe_batch_size,
    )
    from pruning.zoo import RECIPES

    calls = []
    monkeypatch.setattr(pruning.train, "train",
                        lambda model, loader, epochs, **kw: calls.append((epochs, kw)) or [])
    assert _train_dense(None, "lstm", "mnist1d", [], None, 0.1, 3) == RECIPES["lstm"]["epochs"]
    assert calls.pop() == (40, {"seed": 3, "lr": 0.005, "optimizer": "adam",
                                "schedule": "cosine", "clip_grad_norm": 1.0})
    assert "training dense lstm on mnist1d for 40 epochs (lr 0.005, optimizer adam, schedule " \
           "cosine, clip_grad_norm 1.0) ..." in capsys.readouterr().out
    assert _train_dense(None, "lstm", "mnist1d", [], 2, 0.1, 3) == 2      # --epochs overrides
    assert calls.pop()[0] == 2
    assert _train_dense(None, "resnet18", "mnist5k", [], None, 0.1, 3) == DEFAULT_DENSE_EPOCHS
    assert calls.pop() == (DEFAULT_DENSE_EPOCHS, {"seed": 3, "lr": 0.1})   # no recipe: --lr
    assert recipe_batch_size("tinycnn") == RECIPES["tinycnn"]["batch_size"] == 32
    assert recipe_batch_size("resnet18") == DEFAULT_BATCH_SIZE == 64
