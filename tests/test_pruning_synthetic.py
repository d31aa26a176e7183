"""Synthetic inputs: shapes, determinism, ranges, and the input statistics of the first BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning import zoo
from pruning.synthetic import SyntheticSpec, input_statistics, synthetic_batches


def test_normal_and_uniform_batches():
    spec = SyntheticSpec("normal", batches=3, batch_size=5, seed=1)
    xs = synthetic_batches(spec, (1, 8, 8))
    assert spec.samples == 15 and [tuple(x.shape) for x in xs] == [(5, 1, 8, 8)] * 3
    assert all(x.dtype == torch.float32 for x in xs)
    again = synthetic_batches(spec, (1, 8, 8))
    assert all(torch.equal(a, b) for a, b in zip(xs, again, strict=True))
    other = synthetic_batches(SyntheticSpec("normal", 3, 5, seed=2), (1, 8, 8))
    assert not torch.equal(xs[0], other[0])
    big = torch.cat(synthetic_batches(SyntheticSpec("normal", 4, 2048), (3,)))
    assert abs(float(big.mean())) < 0.05 and abs(float(big.std()) - 1) < 0.05
    uni = torch.cat(synthetic_batches(SyntheticSpec("uniform", 2, 512, low=-2, high=3), (4,)))
    assert float(uni.min()) >= -2 and float(uni.max()) <= 3 and abs(float(uni.mean()) - 0.5) < 0.1


def test_bn_on_the_input_gives_its_running_statistics():
    model = nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 3, 3))
    model[0].running_mean.copy_(torch.tensor([0.5, -1.0]))
    model[0].running_var.copy_(torch.tensor([4.0, 0.25]))
    mean, std = input_statistics(model, 2)
    assert torch.allclose(mean, torch.tensor([0.5, -1.0])) and torch.allclose(std,
                                                                               torch.tensor([2.0, 0.5]))
    xs = torch.cat(synthetic_batches(SyntheticSpec("bn", 4, 1024), (2, 4, 4), model))
    assert torch.allclose(xs.mean(dim=(0, 2, 3)), mean, atol=0.05)
    assert torch.allclose(xs.std(dim=(0, 2, 3)), std, rtol=0.05)


def test_bn_after_the_first_conv_gives_the_implied_input_statistics():
    """Running statistics measured on inputs of known per-channel mean and std give them back."""
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 6, 3, padding=0, bias=True), nn.BatchNorm2d(6, momentum=None)
    model = nn.Sequential(conv, bn, nn.ReLU())
    mu, sd = torch.tensor([0.3, -0.7]), torch.tensor([1.5, 0.6])
    x = torch.randn(4096, 2, 5, 5) * sd.view(1, 2, 1, 1) + mu.view(1, 2, 1, 1)
    model.train()
    with torch.no_grad():
        model(x)            # cumulative average: the exact batch statistics (unbiased var)
    mean, std = input_statistics(model, 2)
    assert torch.allclose(mean, mu, atol=0.03) and torch.allclose(std, sd, rtol=0.03)
    assert input_statistics(model, 3) is None


def test_models_without_usable_statistics():
    assert input_statistics(zoo.build("tinycnn"), 1) is None
    vgg = zoo.build("vggsmall", width=2)
    mean, std = input_statistics(vgg, 1)          # default BN: mean 0, var 1 per output
    assert mean.shape == (1,) and std.shape == (1,) and float(std) > 0
    with pytest.raises(ValueError, match="synthetic distribution 'bn' needs a model"):
        synthetic_batches(SyntheticSpec("bn"), (1, 8, 8), zoo.build("tinycnn"))


@pytest.mark.parametrize("kwargs, message", [
    ({"distribution": "gauss"}, "unknown synthetic distribution 'gauss'; known: normal, uniform, bn"),
    ({"batches": 0}, "Synthetic batches must be a positive integer, not 0"),
    ({"batch_size": 2.5}, "Synthetic batch_size must be a positive integer, not 2.5"),
    ({"low": 1.0, "high": 1.0}, "The uniform range must be finite with low < high, not [1.0, 1.0]"),
])
def test_bad_specs(kwargs, message):
    with pytest.raises(ValueError) as err:
        SyntheticSpec(**kwargs)
    assert str(err.value) == message
