"""Export of torch modules into bundle layers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from ir import Bundle, Unstructured
from pruning.export import export_model, layer_from_module, quantize_symmetric
from pruning.zoo import build


def test_export_tinycnn_round_trip(tmp_path):
    model = build("tinycnn", seed=3)
    bundle = export_model(model, "tinycnn", bits=6)
    assert [x.name for x in bundle.layers] == ["conv1", "conv2", "fc1", "fc2"]
    conv = bundle.layer("conv2")
    assert conv.shape.kernel == (3, 3) and conv.shape.padding == (1, 1)
    w = model.conv2.weight.detach().numpy()
    np.testing.assert_array_equal(conv.tensors["weight"], w)
    q = conv.tensors["qweight"]
    assert q.dtype == np.int8 and np.abs(q).max() == 31
    assert np.max(np.abs(q * conv.quant.scale - w)) <= conv.quant.scale / 2 + 1e-7
    bundle.save(tmp_path / "b")
    again = Bundle.load(tmp_path / "b")
    assert again.manifest() == bundle.manifest()


def test_export_rnn_and_mask():
    lstm = nn.LSTM(5, 7)
    mask = {"ih": (torch.rand(28, 5) > 0.5).to(torch.uint8), "hh": torch.ones(28, 7)}
    layer = layer_from_module("rnn", lstm, scheme=Unstructured(sparsity=0.5), mask=mask, bits=8)
    assert layer.op == "lstm" and layer.shape.gate_order == ("i", "f", "g", "o")
    assert set(layer.tensors) == {"weight_ih", "weight_hh", "mask_ih", "mask_hh", "qweight_ih",
                                  "qweight_hh", "bias_ih", "bias_hh"}
    assert np.all(layer.tensors["weight_ih"][layer.tensors["mask_ih"] == 0] == 0)
    gru = layer_from_module("g", nn.GRU(3, 4))
    assert gru.op == "gru" and gru.tensors["weight_hh"].shape == (12, 4)


def test_export_rejects():
    with pytest.raises(ValueError, match="only single-layer, unidirectional LSTM"):
        layer_from_module("x", nn.LSTM(3, 4, num_layers=2))
    with pytest.raises(TypeError, match="ReLU is not a prunable layer"):
        layer_from_module("x", nn.ReLU())
    with pytest.raises(ValueError, match="unknown model 'nope'; known: "):
        build("nope")


def test_quantize_symmetric_levels():
    q, s = quantize_symmetric(np.array([-1.0, -0.5, 0.0, 0.26, 1.0]), bits=3)
    assert s == pytest.approx(1 / 3)
    assert q.tolist() == [-3, -2, 0, 1, 3]


@pytest.mark.parametrize("conv, message", [
    (nn.Conv2d(1, 2, 3, dilation=2), "dilation=(2, 2) is not supported; the bundle's "
                                     "convolutions have dilation 1"),
    (nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"),
     "padding_mode='circular' is not supported; the bundle's convolutions pad with zeros"),
])
def test_convolutions_a_bundle_cannot_hold_are_refused(conv, message):
    """Both were exported as plain 3x3 convolutions: the integer model gave another output
    shape (dilation) or other values (circular padding) than the model."""
    from pruning.export import export
    from pruning.plan import Plan, PlanError, resolve

    model = nn.Sequential(conv)
    with pytest.raises(PlanError, match=f"^layer '0': {re.escape(message)}$"):
        resolve(Plan.uniform("dense", bits=8), model)       # before any training
    with pytest.raises(PlanError, match="^layer '0': "):
        export(model, Plan.uniform("dense", bits=8))
    with pytest.raises(ValueError, match=f"^layer '0': {re.escape(message)}$"):
        export_model(model, "m")


def test_apply_bundle_names_a_layer_of_another_kind_or_bias():
    """An LSTM's bundle layer on a Linear was a bare KeyError; a bias on one side only was
    dropped, or left as it was, without a word."""
    from pruning.export import apply_bundle

    class Holder(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

    lstm = export_model(Holder(nn.LSTM(4, 3)), "m")
    with pytest.raises(ValueError, match="^layer 'rnn': the bundle has a lstm layer, the model "
                                         r"a linear \(Linear\)$"):
        apply_bundle(Holder(nn.Linear(4, 12)), lstm)
    with_bias = export_model(Holder(nn.Linear(4, 12)), "m")
    with pytest.raises(ValueError, match="the bundle has bias, the model has no bias"):
        apply_bundle(Holder(nn.Linear(4, 12, bias=False)), with_bias)
    without = export_model(Holder(nn.Linear(4, 12, bias=False)), "m")
    with pytest.raises(ValueError, match="the bundle has no bias, the model has bias"):
        apply_bundle(Holder(nn.Linear(4, 12)), without)
    apply_bundle(Holder(nn.Linear(4, 12)), with_bias)      # a match still loads
