"""Data-free pruning: the reconstruction objective, layer order, input sources, the closed form
against the iterative solver, every scheme through one code path, and the no-data guarantee."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ir import Bundle
from pruning import zoo
from pruning.data import DataAccessError, forbid_data_access
from pruning.data import load as load_dataset
from pruning.datafree import (
    capture_inputs,
    layer_order,
    least_squares_refit,
    magnitude_prune,
    prune_data_free,
    reconstruction_errors,
    reconstruction_loss,
    scope_of,
)
from pruning.plan import Plan, resolve
from pruning.synthetic import SyntheticSpec


@pytest.fixture(scope="module", autouse=True)
def _gradients_on():
    """Another test module (tests/test_ir_golden.py) disables gradients globally at import."""
    with torch.enable_grad():
        yield


class Backwards(nn.Module):
    """Modules defined in the reverse of the order the forward pass runs them."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (6,)
        self.last = nn.Linear(8, 4)
        self.first = nn.Linear(6, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(torch.relu(self.first(x)))


def small(seed: int = 0) -> Backwards:
    torch.manual_seed(seed)
    return Backwards()


SPEC = SyntheticSpec(batches=4, batch_size=32, seed=3)


def test_reconstruction_loss_and_gradient():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    x, t = torch.randn(16, 5), torch.randn(16, 3)
    loss = reconstruction_loss(layer(x), t)
    residual = x @ layer.weight.T + layer.bias - t
    expected = residual.square().sum() / t.square().sum()
    assert torch.allclose(loss, expected, rtol=1e-6)
    loss.backward()
    grad = 2 * residual.T @ x / t.square().sum()
    assert torch.allclose(layer.weight.grad, grad.detach(), rtol=1e-5, atol=1e-7)
    assert torch.allclose(layer.bias.grad, 2 * residual.sum(0).detach() / t.square().sum(),
                          rtol=1e-5, atol=1e-7)


def test_layers_are_processed_in_execution_order():
    model = small()
    assert list(dict(model.named_modules())) == ["", "last", "first"]
    assert layer_order(model, ["last", "first"], torch.randn(2, 6)) == ["first", "last"]
    result = prune_data_free(model, Plan.uniform("unstructured", ratio=2, scope="layer"),
                             synthetic=SPEC, iterations=1)
    assert [r.name for r in result.layers] == ["first", "last"]


@pytest.mark.parametrize("inputs", ["prefix", "original"])
def test_layer_inputs_from_pruned_prefix_or_original(inputs):
    """With no ADMM iteration and the closed-form polish, every layer's weights are exactly the
    least-squares refit on its magnitude mask, fitted on the chosen inputs with targets from
    the original layer on those same inputs."""
    model, original = small(), small()
    plan = Plan.uniform("unstructured", ratio=2, scope="layer")
    prune_data_free(model, plan, synthetic=SPEC, iterations=0, inputs=inputs, polish="lstsq",
                    ridge=1e-8)

    from pruning.synthetic import synthetic_batches

    xs = synthetic_batches(SPEC, (6,))
    expect = copy.deepcopy(original)
    projection = magnitude_prune(copy.deepcopy(original), resolve(plan, original))
    for name in ("first", "last"):
        source = expect if inputs == "prefix" else original
        got = capture_inputs(source, name, xs)
        with torch.no_grad():
            targets = [getattr(original, name)(x) for x in got]
        w, b = least_squares_refit(getattr(expect, name), got, targets,
                                   projection.masks[name][""])
        with torch.no_grad():
            getattr(expect, name).weight.copy_(w)
            getattr(expect, name).bias.copy_(b)
        assert torch.allclose(getattr(model, name).weight, w, atol=1e-5), name
        assert torch.allclose(getattr(model, name).bias, b, atol=1e-5), name
    if inputs == "prefix":       # the two sources differ once the first layer is pruned
        other = copy.deepcopy(original)
        prune_data_free(other, plan, synthetic=SPEC, iterations=0, inputs="original",
                        polish="lstsq", ridge=1e-8)
        assert not torch.allclose(other.last.weight, model.last.weight, atol=1e-4)


def test_original_targets_correct_the_prefix_error():
    """targets="original": the second layer is fitted from the pruned prefix's activations to
    the original model's own activations."""
    model, original = small(), small()
    plan = Plan.uniform("unstructured", ratio=2, scope="layer")
    prune_data_free(model, plan, synthetic=SPEC, iterations=0, polish="lstsq",
                    targets="original", ridge=1e-8)
    from pruning.synthetic import synthetic_batches

    xs = synthetic_batches(SPEC, (6,))
    pruned_first = copy.deepcopy(original)
    pruned_first.first.load_state_dict(model.first.state_dict())
    got = capture_inputs(pruned_first, "last", xs)
    with torch.no_grad():
        targets = [original.last(x) for x in capture_inputs(original, "last", xs)]
    mask = magnitude_prune(copy.deepcopy(original), resolve(plan, original)).masks["last"][""]
    w, b = least_squares_refit(original.last, got, targets, mask)
    assert torch.allclose(model.last.weight, w, atol=1e-5)
    assert torch.allclose(model.last.bias, b, atol=1e-5)


def test_ridge_pulls_the_closed_form_toward_the_prior():
    torch.manual_seed(3)
    lin = nn.Linear(6, 3)
    xs = [torch.randn(40, 6)]
    ts = [torch.randn(40, 3)]
    mask = torch.ones(3, 6, dtype=torch.bool)
    prior = (torch.full((3, 6), 0.7), torch.full((3,), -0.2))
    w0, b0 = least_squares_refit(lin, xs, ts, mask)
    x = torch.cat([xs[0], torch.ones(40, 1)], 1)
    exact = torch.linalg.lstsq(x, ts[0]).solution.T
    assert torch.allclose(w0, exact[:, :6], atol=1e-5) and torch.allclose(b0, exact[:, 6],
                                                                          atol=1e-5)
    w1, b1 = least_squares_refit(lin, xs, ts, mask, ridge=1e6, prior=prior)
    assert torch.allclose(w1, prior[0], atol=1e-3) and torch.allclose(b1, prior[1], atol=1e-3)


def test_closed_form_agrees_with_iterative_solver():
    """On a fixed mask (no ADMM iteration: the magnitude mask), the closed-form refit and the
    iterative masked solver of the same loss reach the same weights and error."""
    torch.manual_seed(1)
    lin = nn.Sequential(nn.Linear(10, 5))
    lin.input_shape = (10,)
    plan = Plan.uniform("unstructured", ratio=2, scope="layer")
    spec = SyntheticSpec(batches=1, batch_size=256, seed=5)     # one batch: plain descent
    closed, iterative = copy.deepcopy(lin), copy.deepcopy(lin)
    a = prune_data_free(closed, plan, synthetic=spec, iterations=0, polish="lstsq", ridge=1e-8)
    b = prune_data_free(iterative, plan, synthetic=spec, iterations=0, polish="masked",
                        polish_epochs=300, optimizer="sgd", lr=0.3)
    assert torch.equal(a.projection.masks["0"][""], b.projection.masks["0"][""])
    assert b.layers[0].polish == "masked" and a.layers[0].polish == "lstsq"
    assert torch.allclose(closed[0].weight, iterative[0].weight, atol=1e-4)
    assert torch.allclose(closed[0].bias, iterative[0].bias, atol=1e-4)
    assert a.layers[0].error_final == pytest.approx(b.layers[0].error_final, rel=1e-3, abs=1e-5)
    assert a.layers[0].error_final < a.layers[0].error_magnitude


def test_closed_form_convolution_is_stationary():
    """The refit of a convolution zeroes the loss gradient on its kept weights."""
    torch.manual_seed(2)
    conv, ref = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
    xs = [torch.randn(8, 3, 6, 6) for _ in range(2)]
    with torch.no_grad():
        ts = [ref(x) for x in xs]
    mask = torch.rand(conv.weight.shape) < 0.5
    w, b = least_squares_refit(conv, xs, ts, mask)
    assert not w[~mask].any()
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    loss = sum((conv(x) - t).square().sum() for x, t in zip(xs, ts, strict=True))
    loss.backward()
    scale = float(loss.detach()) + 1.0
    assert conv.weight.grad[mask].abs().max() < 1e-3 * scale
    assert conv.bias.grad.abs().max() < 1e-3 * scale
    with pytest.raises(ValueError, match="needs a Linear or Conv2d"):
        least_squares_refit(nn.ReLU(), xs, ts, mask)


def tiny_vgg() -> nn.Module:
    return zoo.build("vggsmall", seed=0, width=2)


@pytest.mark.parametrize("rules", [
    {"types": {"conv2d": {"scheme": "pattern", "connectivity": 0.5},
               "linear": {"scheme": "unstructured", "ratio": 4, "scope": "layer"}}},
    {"default": {"scheme": "bcr", "block": [2, 4], "ratio": 4}},
    {"default": {"scheme": "unstructured", "ratio": 4, "scope": "layer", "bits": 6}},
])
def test_schemes_share_one_path_and_export_valid_bundles(rules, tmp_path):
    model = tiny_vgg()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    result = prune_data_free(model, Plan.from_dict(rules), synthetic=SPEC, iterations=2)
    assert [r.name for r in result.layers] == ["features.0", "features.3", "features.7",
                                               "features.10", "features.14", "fc1", "fc2"]
    for r in result.layers:
        assert r.error_final <= r.error_admm + 1e-6 and 0 <= r.error_final < 1.5
    bundle = result.export(model, "vggsmall")
    bundle.save(tmp_path / "b")
    loaded = Bundle.load(tmp_path / "b")
    for layer in loaded.layers:
        mask = layer.tensors["mask"]
        assert layer.scheme.violation(mask) is None, layer.name
        assert np.array_equal(mask, result.projection.masks[layer.name][""].numpy()), layer.name
        w = dict(model.named_modules())[layer.name].weight.detach().numpy()
        assert not w[mask == 0].any()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_an_rnn_planned_dense_and_float_is_kept_whole(tmp_path):
    """It was an AttributeError ('LSTM' object has no attribute 'weight') when the data-free
    mode filled in the layers it does not prune."""
    model = zoo.build("lstm", seed=0)
    before = {k: v.clone() for k, v in model.rnn.state_dict().items()}
    plan = Plan.from_dict({"types": {"linear": {"scheme": "unstructured", "ratio": 4,
                                                "scope": "layer"},
                                     "lstm": {"scheme": "dense"}}})
    result = prune_data_free(model, plan, synthetic=SyntheticSpec(batches=1, batch_size=8),
                             iterations=1)
    assert [r.name for r in result.layers] == ["fc"]
    assert set(result.projection.masks["rnn"]) == {"ih", "hh"}
    assert all(bool(m.all()) for m in result.projection.masks["rnn"].values())
    bundle = result.export(model, "lstm")
    bundle.save(tmp_path / "b")
    rnn = Bundle.load(tmp_path / "b").layer("rnn")
    assert rnn.quant is None and rnn.tensors["mask_ih"].all() and rnn.tensors["mask_hh"].all()
    assert all(torch.equal(model.rnn.state_dict()[k], v) for k, v in before.items())


def test_global_unstructured_keeps_the_global_split_of_the_trained_weights():
    """Global scope (the CLI's default) was pruned per layer: every layer at the same sparsity."""
    from pruning.datafree import global_split
    from pruning.projections import masks_global
    from pruning.schemes import kept_count

    model = tiny_vgg()
    plan = Plan.from_dict({"default": {"scheme": "unstructured", "ratio": 4,
                                       "scope": "global"}})
    plans = resolve(plan, model)
    weights = [dict(model.named_modules())[n].weight.detach() for n in plans]
    expected = [int(m.sum()) for m in masks_global([p.config for p in plans.values()], weights)]
    split = global_split(model, plans)
    assert all(p.config.scope == "layer" for p in split.values())
    assert [kept_count(p.config.sparsity, w.numel()) for p, w in
            zip(split.values(), weights, strict=True)] == expected
    assert len(set(expected)) > 1 and sum(expected) == kept_count(0.75, sum(w.numel()
                                                                          for w in weights))
    result = prune_data_free(model, plan, synthetic=SPEC, iterations=1)
    assert [int(result.projection.masks[n][""].sum()) for n in plans] == expected


def test_scopes():
    model = tiny_vgg()
    assert scope_of(model, "features.0", "activation") == (
        "features.0", ["features.0", "features.1", "features.2"], "activation")
    assert scope_of(model, "fc1", "activation") == ("fc1", ["fc1"], "output")
    assert scope_of(model, "features.0", "block") == ("features.0", ["features.0"], "output")
    outer = nn.Sequential()
    outer.add_module("blk", _Block())
    assert scope_of(outer, "blk.conv2", "block") == ("blk", ["blk"], "block")
    with pytest.raises(ValueError, match="unknown scope 'nowhere'; known: output, "
                                         "activation, block"):
        scope_of(model, "fc1", "nowhere")


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


def test_block_and_activation_scopes_run():
    torch.manual_seed(0)
    model = nn.Sequential(_Block(), _Block())
    model.input_shape = (2, 5, 5)
    result = prune_data_free(model, Plan.uniform("unstructured", ratio=2, scope="layer"),
                             synthetic=SPEC, scope="block", iterations=2, polish_epochs=2)
    assert [(r.name, r.scope, r.polish) for r in result.layers] == [
        ("0.conv1", "block", "masked"), ("0.conv2", "block", "masked"),
        ("1.conv1", "block", "masked"), ("1.conv2", "block", "masked")]
    vgg = tiny_vgg()
    result = prune_data_free(vgg, Plan.uniform("unstructured", ratio=2, scope="layer"),
                             synthetic=SPEC, scope="activation", iterations=1, polish_epochs=1)
    assert result.layers[0].scope == "activation" and result.layers[-1].scope == "output"
    errs = reconstruction_errors(vgg, tiny_vgg(), ["features.0", "fc2"], [torch.randn(4, 1, 28, 28)])
    assert set(errs) == {"features.0", "fc2"} and all(e >= 0 for e in errs.values())


def test_bad_settings():
    model = small()
    plan = Plan.uniform("unstructured", ratio=2)
    for kwargs, message in (({"inputs": "real"}, "unknown input source 'real'; known: prefix, "
                                                  "original"),
                            ({"polish": "x"}, "unknown polish 'x'; known: auto, lstsq, masked, "
                                              "none"),
                            ({"iterations": -1}, "iterations must be a non-negative integer, "
                                                 "not -1"),
                            ({"targets": "z"}, "unknown targets 'z'; known: same, original")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            prune_data_free(model, plan, **kwargs)
    with pytest.raises(ValueError, match="synthetic distribution 'bn' needs a model"):
        prune_data_free(model, plan, synthetic=SyntheticSpec("bn"))
    with pytest.raises(ValueError, match="closed-form polish needs the 'output' scope"):
        prune_data_free(tiny_vgg(), plan, synthetic=SPEC, scope="activation", polish="lstsq",
                        iterations=0)


def test_data_free_run_never_reads_data():
    """Every dataset access raises during the run, and the modules do not import pruning.data."""
    model = zoo.build("tinycnn", seed=0)
    with forbid_data_access():
        with pytest.raises(DataAccessError):
            load_dataset("digits", "train")
        result = prune_data_free(model, Plan.uniform("bcr", ratio=4, block=[4, 4]),
                                 synthetic=SPEC, iterations=1)
        result.export(model, "tinycnn")
    code = ("import sys, pruning.datafree, pruning.synthetic; "
            "bad = sorted(m for m in sys.modules if m == 'pruning.data' or m.startswith("
            "('sklearn', 'mlxtend', 'mnist1d'))); print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stdout + done.stderr


def test_same_seed_same_result():
    plan = Plan.uniform("bcr", ratio=4, block=[4, 4])
    runs = []
    for _ in range(2):
        model = zoo.build("tinycnn", seed=0)
        prune_data_free(model, plan, synthetic=SPEC, iterations=2, polish="masked",
                        polish_epochs=1)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
