"""Compression end to end on scikit-learn's digits (CI-sized), and export to the bundle."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from ir import Bundle
from ir.schemes import matrix_view
from pruning import data
from pruning.compress import compress, totals
from pruning.export import apply_bundle, export
from pruning.plan import Plan, resolve
from pruning.train import predict, train
from pruning.zoo import build


@pytest.fixture(scope="module", autouse=True)
def _gradients_on():
    """Another test module (tests/test_ir_golden.py) disables gradients globally at import."""
    with torch.enable_grad():
        yield

PLAN = {"default": {"scheme": "unstructured", "ratio": 4, "bits": 4},
        "layers": {"conv2": {"scheme": "pattern", "connectivity": 0.25, "bits": 5},
                   "fc1": {"scheme": "bcr", "block": [8, 16], "ratio": 4},
                   "fc2": {"scheme": "nm", "n": 2, "m": 4, "bits": 8}}}


@pytest.fixture(scope="module")
def loaders():
    return (data.loader("digits", "train", batch_size=64, seed=0),
            data.loader("digits", "test", batch_size=360))


@pytest.fixture(scope="module")
def trained(loaders):
    model = build("tinycnn", seed=0)
    train(model, loaders[0], 2, lr=3e-3)
    return model


def _mask_ok(layer) -> bool:
    for s in ("_ih", "_hh") if layer.op in ("lstm", "gru") else ("",):
        m = layer.tensors["mask" + s]
        if layer.scheme.violation(m if layer.scheme.kind == "pattern" else matrix_view(m)):
            return False
    return True


def test_model_to_bundle_reproduces_the_quantized_model(tmp_path, loaders, trained):
    model = copy.deepcopy(trained)
    res = compress(model, Plan.from_dict(PLAN), loaders[0], loaders[1], admm_iters=2,
                   retrain_epochs=1, rho=1e-2, lr=3e-3, seed=0, progress=False,
                   model_name="tinycnn")
    assert [h.iteration for h in res.history] == [1, 2] and res.history[0].phase == "joint"
    assert set(res.history[0].residual) == {"conv1", "conv2", "fc1", "fc2"}
    assert all(0 <= a <= 1 for a in (res.accuracy_before, res.accuracy_projected,
                                     res.accuracy_after))
    res.bundle.save(tmp_path / "bundle")
    bundle = Bundle.load(tmp_path / "bundle")
    assert bundle.manifest() == res.bundle.manifest() and bundle.model == "tinycnn"
    kinds = {x.name: (x.scheme.kind, x.quant.bits) for x in bundle.layers}
    assert kinds == {"conv1": ("unstructured", 4), "conv2": ("pattern", 5), "fc1": ("bcr", 4),
                     "fc2": ("nm", 8)}
    for layer in bundle.layers:
        assert _mask_ok(layer)
        module = getattr(model, layer.name)
        w = module.weight.detach().numpy()
        deq = layer.tensors["qweight"].astype(np.float32) * np.float32(layer.quant.scale)
        assert np.array_equal(deq, w) and np.array_equal(layer.tensors["weight"], w)
        assert np.all(w[layer.tensors["mask"] == 0] == 0)
    assert len(bundle.layer("conv2").scheme.patterns) == 8
    assert [r["layer"] for r in res.rows] == ["conv1", "conv2", "fc1", "fc2"]
    assert res.rows[0]["sparsity"] == 0.75 and res.rows[3]["sparsity"] == 0.5
    assert res.totals() == totals(bundle) and res.totals()["nnz"] == sum(r["nnz"] for r in res.rows)
    # the bundle's integer weights in a fresh model give exactly the quantized model's outputs
    fresh = apply_bundle(build("tinycnn", seed=9), bundle)
    assert torch.equal(predict(fresh, loaders[1], logits=True),
                       predict(model, loaders[1], logits=True))
    masks = {x.name: {"": x.tensors["mask"]} for x in bundle.layers}
    scales = {x.name: x.quant.scale for x in bundle.layers}
    again = export(model, res.plans, masks=masks, scales=scales)    # library from the masks
    assert set(again.layer("conv2").scheme.patterns) <= set(bundle.layer("conv2").scheme.patterns)
    for a, b in zip(again.layers, bundle.layers, strict=True):
        assert all(np.array_equal(a.tensors[k], b.tensors[k]) for k in b.tensors)
    summary = res.summary()
    assert summary["accuracy"]["after"] == res.accuracy_after and len(summary["admm"]) == 2


def test_two_phase_quantization(loaders, trained):
    model = copy.deepcopy(trained)
    plan = Plan.from_dict({"default": {"scheme": "unstructured", "ratio": 3},
                           "layers": {"fc1": {"bits": 3}}})
    res = compress(model, plan, loaders[0], None, admm_iters=1, retrain_epochs=1, progress=False,
                   quant="two-phase")
    assert [h.phase for h in res.history] == ["prune", "quant"]
    assert set(res.history[1].residual) == {"fc1"}
    assert res.accuracy_before is None and res.accuracy_after is None
    fc1 = res.bundle.layer("fc1")
    assert fc1.quant.bits == 3 and res.bundle.layer("fc2").quant is None
    assert np.array_equal(fc1.tensors["qweight"] * np.float32(fc1.quant.scale),
                          model.fc1.weight.detach().numpy())
    assert int(fc1.tensors["mask"].sum()) == 1024                 # 1/3 of 3072
    with pytest.raises(ValueError, match="unknown quantization mode 'both'"):
        compress(model, plan, loaders[0], quant="both")


def test_rnn_layer_both_matrices_bcr():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    loader = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    model = build("gru", hidden_size=6, dataset="digits")
    plan = Plan.from_dict({"types": {"gru": {"scheme": "bcr", "block": [6, 3], "ratio": 4,
                                             "bits": 6}}})
    res = compress(model, plan, loader, admm_iters=2, retrain_epochs=1, progress=False)
    rnn = res.bundle.layer("rnn")
    assert rnn.op == "gru" and rnn.scheme.kind == "bcr" and _mask_ok(rnn)
    assert res.bundle.layer("fc").scheme.kind == "dense" and res.bundle.layer("fc").quant is None
    for s in ("ih", "hh"):
        m = rnn.tensors[f"mask_{s}"]
        assert 0 < m.sum() < m.size
        deq = rnn.tensors[f"qweight_{s}"].astype(np.float32) * np.float32(rnn.quant.scale)
        assert np.array_equal(deq, getattr(model.rnn, f"weight_{s}_l0").detach().numpy())
    fresh = apply_bundle(build("gru", hidden_size=6, dataset="digits", seed=3), res.bundle)
    assert torch.equal(predict(fresh, loader, logits=True), predict(model, loader, logits=True))


def test_export_projects_an_uncompressed_model(trained):
    model = copy.deepcopy(trained)
    plans = resolve(Plan.from_dict(PLAN), model)
    bundle = export(model, Plan.from_dict(PLAN), model_name="tiny")
    assert [x.name for x in bundle.layers] == list(plans) and all(map(_mask_ok, bundle.layers))
    conv1 = bundle.layer("conv1")
    assert int(conv1.tensors["mask"].sum()) == 18                  # 72 / 4
    w = model.conv1.weight.detach().numpy()
    assert np.array_equal(conv1.tensors["mask"] == 1, np.abs(w) >= np.sort(np.abs(w), None)[-18])
    with pytest.raises(ValueError, match="layer 'nope': no such prunable layer in the model"):
        apply_bundle(model, Bundle("x", (replace(conv1, name="nope"),)))


def test_distillation_and_cosine_retraining(loaders, trained):
    plan = Plan.from_dict({"default": {"scheme": "unstructured", "ratio": 4}})
    runs = []
    for _ in range(2):
        model = copy.deepcopy(trained)
        fresh = data.loader("digits", "train", batch_size=64, seed=0)   # same batch order
        res = compress(model, plan, fresh, loaders[1], admm_iters=1, retrain_epochs=1,
                       progress=False, retrain_schedule="cosine", distill=3.0,
                       distill_weight=0.6)
        runs.append((res, {k: v.clone() for k, v in model.state_dict().items()}))
    (res, state), (_, again) = runs
    assert all(torch.equal(state[k], again[k]) for k in state)          # deterministic
    assert res.settings["distill"] == 3.0 and res.settings["retrain_schedule"] == "cosine"
    assert res.accuracy_after > 0.4 and totals(res.bundle)["pruning_ratio"] == pytest.approx(
        4, rel=0.02)
    plain = compress(copy.deepcopy(trained), plan, loaders[0], None, admm_iters=1,
                     retrain_epochs=1, progress=False)
    assert plain.settings["distill"] is None and plain.settings["retrain_schedule"] == "constant"
    with pytest.raises(ValueError, match=r"^distill must be a positive temperature or None, "
                                         r"not 0$"):
        compress(copy.deepcopy(trained), plan, loaders[0], distill=0)
    with pytest.raises(ValueError, match=r"^unknown retrain_schedule 'step'; known: constant, "
                                         r"cosine$"):
        compress(copy.deepcopy(trained), plan, loaders[0], retrain_schedule="step")
    with pytest.raises(ValueError, match=r"^Distillation weight must be a number in \[0, 1\], "
                                         r"not 2$"):
        compress(copy.deepcopy(trained), plan, loaders[0], distill=2.0, distill_weight=2,
                 admm_iters=0, retrain_epochs=0, progress=False)
