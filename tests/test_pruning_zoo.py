"""The model zoo: registry, parameter counts, input shapes, determinism, exportability."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from pruning import zoo
from pruning.data import INPUT_SHAPES
from pruning.export import export_model
from pruning.train import train

NAMES = ("tinycnn", "lenet5", "vggsmall", "resnet18", "mobilenetv2", "vgg16", "lstm", "gru")


def _weights(model: nn.Module) -> dict[str, int]:
    """Element counts of the ``weight`` tensors of every Conv2d and Linear (biases excluded)."""
    return {name: m.weight.numel() for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d | nn.Linear)}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_names_and_unknown_name():
    assert tuple(zoo.MODELS) == NAMES
    with pytest.raises(ValueError) as err:
        zoo.build("nope")
    assert str(err.value) == ("unknown model 'nope'; known: tinycnn, lenet5, vggsmall, resnet18, "
                              "mobilenetv2, vgg16, lstm, gru")
    with pytest.raises(ValueError, match="unknown model 'alexnet'"):
        zoo.default_dataset("alexnet")


def test_lenet5_is_the_caffe_variant_with_430_5k_weights():
    model = zoo.build("lenet5")
    # Counted: the weight tensors of conv1, conv2, fc1, fc2; biases (580) are not weights here.
    assert _weights(model) == {"conv1": 20 * 1 * 5 * 5, "conv2": 50 * 20 * 5 * 5,
                               "fc1": 500 * 800, "fc2": 10 * 500}
    assert sum(_weights(model).values()) == 430_500
    assert _params(model) == 430_500 + 20 + 50 + 500 + 10
    assert model.conv1.padding == (0, 0) and model.conv2.kernel_size == (5, 5)
    assert zoo.build("lenet5", conv_relu=True)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_on_its_dataset_input(name):
    model = zoo.build(name, seed=1)
    assert model.DATASET == zoo.default_dataset(name)
    assert model.dataset == model.DATASET
    if model.dataset is not None:
        assert model.input_shape == INPUT_SHAPES[model.dataset]
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(3, *model.input_shape))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            assert isinstance(module.padding, tuple)  # integer padding, never "same"
        if isinstance(module, nn.LSTM | nn.GRU):
            assert module.num_layers == 1 and module.batch_first and not module.bidirectional


def test_reference_parameter_counts():
    # Known totals of the standard definitions (torchvision / the usual CIFAR ports), 10 classes.
    assert _params(zoo.build("resnet18", in_channels=3, image_size=32)) == 11_173_962
    assert _params(zoo.build("mobilenetv2", in_channels=3, image_size=32)) == 2_236_682
    assert _params(zoo.build("vgg16")) == 14_724_042  # BN, bias-free convs, Linear(512, 10)
    vggsmall = _weights(zoo.build("vggsmall"))
    assert list(vggsmall) == ["features.0", "features.3", "features.7", "features.10",
                              "features.14", "fc1", "fc2"]
    assert sum(vggsmall.values()) == 16 * 9 * (1 + 16 + 32 + 64 + 128) + 576 * 128 + 128 * 10


def test_vgg16_imagenet_shapes():
    with torch.device("meta"):  # 138M parameters: shapes only, no memory
        model = zoo.VGG16(classes=1000, image_size=224, batch_norm=False)
    assert _params(model) == 138_357_544  # torchvision's vgg16
    assert model.classifier[0].in_features == 512 * 7 * 7 and model.classifier[-1].out_features == 1000
    assert model.input_shape == (3, 224, 224) and model.dataset is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    small = zoo.build("vgg16", image_size=64)  # the same multi-layer head, cheap to run
    assert small.classifier[0].in_features == 512 * 2 * 2
    assert small.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    with pytest.raises(ValueError, match="^Image size must be a positive multiple of 32, not 40$"):
        zoo.VGG16(image_size=40)


def test_mobilenetv2_width_multiplier():
    half = zoo.build("mobilenetv2", width=0.5)
    assert half.features[0].out_channels == 16
    depthwise = [m for m in half.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert _params(half) < _params(zoo.build("mobilenetv2"))
    with pytest.raises(ValueError, match=r"^Width multiplier must be a positive number, not 0$"):
        zoo.build("mobilenetv2", width=0)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rnn_reads_digits_row_by_row(name):
    model = zoo.build(name, dataset="mnist5k", hidden_size=32)
    assert model.input_shape == (28, 28) and model.dataset == "mnist5k"
    images = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(images), model(images[:, 0]))
    with pytest.raises(ValueError, match="reads the datasets mnist1d, mnist5k, digits, not 'cifar'"):
        zoo.build(name, dataset="cifar")
    with pytest.raises(ValueError, match=r"not a tensor of shape \(2, 28\)"):
        model(torch.randn(2, 28))


def test_which_models_read_which_dataset():
    """`codesign prune --model lstm --data mnist5k` was refused: the check compared the
    LSTM's (28, 28) sequences with the images' (1, 28, 28), which it reads row by row."""
    for name in ("lstm", "gru"):
        for data in ("mnist1d", "mnist5k", "digits"):
            model = zoo.build(name, hidden_size=8, **zoo.model_kwargs(name, data))
            assert zoo.reads_dataset(model, data)
            assert not any(zoo.reads_dataset(model, d) for d in ("mnist1d", "mnist5k", "digits")
                           if d != data)
    assert zoo.model_kwargs("lenet5", "mnist5k") == {}
    assert zoo.reads_dataset(zoo.build("lenet5"), "mnist5k")
    assert not zoo.reads_dataset(zoo.build("lenet5"), "digits")
    assert not zoo.reads_dataset(zoo.build("tinycnn"), "mnist1d")


def test_build_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = zoo.build("vggsmall", seed=5), zoo.build("vggsmall", seed=5), zoo.build("vggsmall", seed=6)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fc1.weight"], sc["fc1.weight"])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="^Number of classes must be a positive integer, not 0$"):
        zoo.build("lenet5", classes=0)
    with pytest.raises(ValueError, match="^Hidden size must be a positive integer, not -3$"):
        zoo.build("gru", hidden_size=-3)


@pytest.mark.parametrize("name", ["lenet5", "vggsmall", "lstm", "gru"])
def test_zoo_models_export_to_a_bundle(name):
    model = zoo.build(name)
    bundle = export_model(model, name, bits=8)
    ops = [layer.op for layer in bundle.layers]
    if name in ("lstm", "gru"):
        assert [x.name for x in bundle.layers] == ["rnn", "fc"] and ops == [name, "linear"]
    else:
        assert ops[-2:] == ["linear", "linear"] and set(ops) == {"conv2d", "linear"}


def test_recipes_name_zoo_models_and_train_arguments():
    accepted = set(inspect.signature(train).parameters) | {"batch_size"}
    for name, recipe in zoo.RECIPES.items():
        assert name in zoo.MODELS and set(recipe) <= accepted
