"""The in-project model zoo: small, offline, deterministic model definitions.

``build(name, seed, **kwargs)`` returns a freshly initialised model; the same name, seed and
arguments always give the same weights. Nothing is downloaded: there are no pretrained weights,
models are trained here on the offline datasets of :mod:`pruning.data`.

Every zoo model carries

* ``DATASET`` (class attribute): the :mod:`pruning.data` dataset the model trains on when built
  with its default arguments, or ``None`` for models kept only for layer shapes (VGG-16);
* ``input_shape`` (instance attribute): the shape of one input sample, without the batch
  dimension, for the arguments it was built with (images ``(C, H, W)``, sequences ``(T, F)``);
* ``dataset`` (instance attribute): the dataset whose samples have exactly ``input_shape``, or
  ``None`` when no offline dataset matches (for example a CIFAR-shaped ResNet-18).

Every model returns class logits of shape ``(N, classes)``. Convolutions use integer padding
(the bundle exporter rejects string padding); recurrent layers are single-layer, unidirectional,
``batch_first`` ``nn.LSTM`` / ``nn.GRU`` as the exporter requires.

- ``tinycnn``: :class:`TinyCNN`, input ``(1, 8, 8)``, ``DATASET = "digits"``
- ``lenet5``: :class:`LeNet5` (Caffe), ``(1, 28, 28)``, ``"mnist5k"``
- ``vggsmall``: :class:`VGGSmall` (3x3 convs + BN, the default CNN), ``(1, 28, 28)``, ``"mnist5k"``
- ``resnet18``: :class:`ResNet18` (CIFAR-style), ``(1, 28, 28)``, ``"mnist5k"``
- ``mobilenetv2``: :class:`MobileNetV2` (width multiplier), ``(1, 28, 28)``, ``"mnist5k"``
- ``vgg16``: :class:`VGG16` (CIFAR or ImageNet size), ``(3, 32, 32)``, ``None`` (shapes only)
- ``lstm``: :class:`LSTMClassifier`, ``(40, 1)``, ``"mnist1d"``
- ``gru``: :class:`GRUClassifier`, ``(40, 1)``, ``"mnist1d"``

``RECIPES`` holds measured dense-training settings for the models that have them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from pruning.data import INPUT_SHAPES

__all__ = [
    "DEFAULT_CNN",
    "GRUClassifier",
    "LSTMClassifier",
    "LeNet5",
    "MODELS",
    "MobileNetV2",
    "RECIPES",
    "model_kwargs",
    "reads_dataset",
    "ResNet18",
    "TinyCNN",
    "VGG16",
    "VGGSmall",
    "build",
    "default_dataset",
]

#: The zoo's default CNN for 28x28 digits in later work (3x3 convolutions, so every scheme applies).
DEFAULT_CNN = "vggsmall"


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def _dataset_of(shape: tuple[int, ...]) -> str | None:
    for name, known in INPUT_SHAPES.items():
        if tuple(known) == tuple(shape):
            return name
    return None


class TinyCNN(nn.Module):
    """A small CNN for 1x8x8 digit images: two 3x3 convolutions and two linear layers.

    Input ``(N, 1, 8, 8)`` (scikit-learn digits); output ``(N, classes)`` logits.
    Layers: ``conv1`` 1->8 3x3 pad 1, ReLU, 2x2 max pool; ``conv2`` 8->16 3x3 pad 1, ReLU,
    2x2 max pool; ``fc1`` 64->48, ReLU; ``fc2`` 48->classes.
    """

    DATASET: ClassVar[str | None] = "digits"

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        classes = _positive_int(classes, "Number of classes")
        self.input_shape: tuple[int, ...] = (1, 8, 8)
        self.dataset: str | None = "digits"
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 2 * 2, 48)
        self.fc2 = nn.Linear(48, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class LeNet5(nn.Module):
    """LeNet-5 as in Caffe's ``lenet_train_test.prototxt``, the variant used by the ADMM papers.

    Input ``(N, 1, 28, 28)`` (``mnist5k``); output ``(N, classes)`` logits.
    Layers: ``conv1`` 1->20 5x5 (no padding, 24x24), 2x2 max pool; ``conv2`` 20->50 5x5 (8x8),
    2x2 max pool; ``fc1`` 800->500, ReLU; ``fc2`` 500->classes.

    With 10 classes the conv and linear *weights* (biases excluded) hold
    500 + 25,000 + 400,000 + 5,000 = 430,500 values; the 580 biases make 431,080 parameters.

    Parameters
    ----------
    classes : int
        Number of output classes.
    conv_relu : bool
        Caffe's LeNet has no non-linearity after the convolutions (only max pooling); ``True``
        adds a ReLU after each convolution, as many PyTorch ports do. Weight shapes are the same.
    """

    DATASET: ClassVar[str | None] = "mnist5k"

    def __init__(self, classes: int = 10, conv_relu: bool = False) -> None:
        super().__init__()
        classes = _positive_int(classes, "Number of classes")
        self.input_shape: tuple[int, ...] = (1, 28, 28)
        self.dataset: str | None = "mnist5k"
        self.conv_relu = bool(conv_relu)
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = torch.max_pool2d(torch.relu(x) if self.conv_relu else x, 2)
        x = self.conv2(x)
        x = torch.max_pool2d(torch.relu(x) if self.conv_relu else x, 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class VGGSmall(nn.Module):
    """A VGG-style CNN of 3x3 convolutions with batch norm for 28x28 digits; the default CNN.

    Input ``(N, 1, 28, 28)`` (``mnist5k``); output ``(N, classes)`` logits.
    ``features``: five 3x3 convolutions (padding 1, no bias) each followed by BatchNorm and ReLU,
    channels ``w, w, M, 2w, 2w, M, 4w, M`` (``M`` = 2x2 max pool: 28 -> 14 -> 7 -> 3);
    ``fc1`` ``4w*3*3`` -> ``8w``, ReLU; ``fc2`` ``8w`` -> classes. With ``width=16``: about 52K
    conv weights, 74K fc1 weights, 5.5M multiply-accumulates per image.

    Parameters
    ----------
    classes : int
        Number of output classes.
    width : int
        Channels of the first convolution ``w``; the others scale with it.
    """

    DATASET: ClassVar[str | None] = "mnist5k"

    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        classes = _positive_int(classes, "Number of classes")
        w = _positive_int(width, "Width")
        self.input_shape: tuple[int, ...] = (1, 28, 28)
        self.dataset: str | None = "mnist5k"
        self.features = nn.Sequential(
            *_conv_bn(1, w), *_conv_bn(w, w), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(4 * w * 3 * 3, 8 * w)
        self.fc2 = nn.Linear(8 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18, CIFAR-style: a 3x3 stride-1 stem and no stem max pool.

    Input ``(N, in_channels, image_size, image_size)``; output ``(N, classes)`` logits.
    ``conv1`` 3x3 -> ``width`` channels + BN + ReLU, then four stages of two basic blocks with
    ``width x (1, 2, 4, 8)`` channels and strides (1, 2, 2, 2) (1x1 projection shortcuts where the
    shape changes), global average pooling, ``fc``. With ``width=64`` and 10 classes:
    11.2M parameters. The defaults (1 channel, 28x28) train on ``mnist5k``;
    ``in_channels=3, image_size=32`` gives the CIFAR-10 shapes.

    Parameters
    ----------
    classes : int
        Number of output classes.
    in_channels : int
        Input channels.
    image_size : int
        Input height and width; only recorded in ``input_shape`` (the network pools globally).
    width : int
        Channels of the stem and the first stage.
    """

    DATASET: ClassVar[str | None] = "mnist5k"

    def __init__(self, classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 width: int = 64) -> None:
        super().__init__()
        classes = _positive_int(classes, "Number of classes")
        cin = _positive_int(in_channels, "Input channels")
        size = _positive_int(image_size, "Image size")
        w = _positive_int(width, "Width")
        self.input_shape: tuple[int, ...] = (cin, size, size)
        self.dataset: str | None = _dataset_of(self.input_shape)
        self.conv1 = nn.Conv2d(cin, w, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        stages: list[nn.Module] = []
        chans = w
        for i, mult in enumerate((1, 2, 4, 8)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(_BasicBlock(chans, w * mult, stride),
                                        _BasicBlock(w * mult, w * mult, 1)))
            chans = w * mult
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(chans, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels as torchvision's MobileNetV2 does: to a multiple of ``divisor``, >= 90%."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden,
                             bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 with a width multiplier, CIFAR-style (stride-1 stem, first stride-2 removed).

    Input ``(N, in_channels, image_size, image_size)``; output ``(N, classes)`` logits.
    Stem 3x3 conv (stride 1) to ``32*width`` channels, the 17 inverted-residual blocks of the
    paper with settings (expand t, channels c, repeats n, stride s) = (1,16,1,1), (6,24,2,1),
    (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1), channels scaled by ``width``
    and rounded to multiples of 8, a 1x1 conv to ``1280*max(1, width)`` channels, global average
    pooling and ``classifier``. Depthwise 3x3 convolutions have ``groups`` = channels.
    With ``width=1.0`` and 10 classes: 2.2M parameters. The defaults (1 channel, 28x28) train on
    ``mnist5k``; ``in_channels=3, image_size=32`` gives the CIFAR-10 shapes.

    Parameters
    ----------
    classes : int
        Number of output classes.
    width : float
        Width multiplier (> 0), e.g. 0.35, 0.5, 0.75, 1.0, 1.4.
    in_channels : int
        Input channels.
    image_size : int
        Input height and width; only recorded in ``input_shape`` (the network pools globally).
    """

    DATASET: ClassVar[str | None] = "mnist5k"
    SETTINGS: ClassVar[tuple[tuple[int, int, int, int], ...]] = (
        (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
        (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, classes: int = 10, width: float = 1.0, in_channels: int = 1,
                 image_size: int = 28) -> None:
        super().__init__()
        classes = _positive_int(classes, "Number of classes")
        cin = _positive_int(in_channels, "Input channels")
        size = _positive_int(image_size, "Image size")
        if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
            raise ValueError(f"Width multiplier must be a positive number, not {width!r}")
        self.width = float(width)
        self.input_shape: tuple[int, ...] = (cin, size, size)
        self.dataset: str | None = _dataset_of(self.input_shape)
        chans = _make_divisible(32 * self.width)
        last = _make_divisible(1280 * max(1.0, self.width))
        layers: list[nn.Module] = [nn.Conv2d(cin, chans, 3, stride=1, padding=1, bias=False),
                                   nn.BatchNorm2d(chans), nn.ReLU6(inplace=True)]
        for t, c, n, s in self.SETTINGS:
            out = _make_divisible(c * self.width)
            for i in range(n):
                layers.append(_InvertedResidual(chans, out, s if i == 0 else 1, t))
                chans = out
        layers += [nn.Conv2d(chans, last, 1, bias=False), nn.BatchNorm2d(last),
                   nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class VGG16(nn.Module):
    """VGG-16 (configuration D) for layer shapes in speed work; CIFAR or ImageNet input size.

    Input ``(N, in_channels, image_size, image_size)``; output ``(N, classes)`` logits.
    ``features``: 13 3x3 convolutions (padding 1) with channels 64, 64, M, 128, 128, M,
    256 x3, M, 512 x3, M, 512 x3, M (``M`` = 2x2 max pool), each followed by an optional BatchNorm
    and ReLU. Classifier: for ``image_size=32`` (CIFAR) one linear layer 512 -> classes, as in the
    ADMM/PCONV CIFAR-10 VGG-16; for larger sizes (224: ImageNet) the original head
    ``512*(s/32)^2`` -> 4096 -> 4096 -> classes with ReLU and dropout. No dataset here matches its
    shapes (``DATASET`` is ``None``). The ImageNet form has 138M parameters: build it under
    ``torch.device("meta")`` when only shapes are needed.

    Parameters
    ----------
    classes : int
        Number of output classes (1000 for the ImageNet shapes).
    image_size : int
        Input height and width, a positive multiple of 32.
    in_channels : int
        Input channels.
    batch_norm : bool
        Insert BatchNorm after every convolution (the CIFAR practice); the ImageNet original has
        none.
    """

    DATASET: ClassVar[str | None] = None
    CONFIG: ClassVar[tuple[int | str, ...]] = (
        64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, classes: int = 10, image_size: int = 32, in_channels: int = 3,
                 batch_norm: bool = True) -> None:
        super().__init__()
        classes = _positive_int(classes, "Number of classes")
        size = _positive_int(image_size, "Image size")
        if size % 32:
            raise ValueError(f"Image size must be a positive multiple of 32, not {size}")
        cin = _positive_int(in_channels, "Input channels")
        self.input_shape: tuple[int, ...] = (cin, size, size)
        self.dataset: str | None = _dataset_of(self.input_shape)
        layers: list[nn.Module] = []
        chans = cin
        for item in self.CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            assert isinstance(item, int)
            layers.append(nn.Conv2d(chans, item, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(nn.ReLU(inplace=True))
            chans = item
        self.features = nn.Sequential(*layers)
        side = size // 32
        if side == 1:
            self.classifier = nn.Sequential(nn.Linear(512, classes))
        else:
            self.classifier = nn.Sequential(
                nn.Linear(512 * side * side, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(4096, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


#: Sequence layout of each dataset a recurrent classifier can read: (time steps, features).
_SEQUENCES: dict[str, tuple[int, int]] = {"mnist1d": (40, 1), "mnist5k": (28, 28), "digits": (8, 8)}


class _RNNClassifier(nn.Module):
    """A single-layer unidirectional ``batch_first`` RNN (``rnn``) and a linear head (``fc``)."""

    DATASET: ClassVar[str | None] = "mnist1d"
    CELL: ClassVar[type[nn.Module]] = nn.LSTM

    def __init__(self, classes: int = 10, hidden_size: int = 64, dataset: str = "mnist1d") -> None:
        super().__init__()
        classes = _positive_int(classes, "Number of classes")
        hidden = _positive_int(hidden_size, "Hidden size")
        if dataset not in _SEQUENCES:
            raise ValueError(f"{type(self).__name__} reads the datasets "
                             f"{', '.join(_SEQUENCES)}, not {dataset!r}")
        steps, features = _SEQUENCES[dataset]
        self.input_shape: tuple[int, ...] = (steps, features)
        self.dataset: str | None = dataset
        self.rnn = self.CELL(features, hidden, num_layers=1, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]  # (N, 1, H, W) images are read row by row: T = H, F = W
        if x.dim() != 3:
            raise ValueError(f"{type(self).__name__} expects (N, T, F) sequences or (N, 1, H, W) "
                             f"images, not a tensor of shape {tuple(x.shape)}")
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class LSTMClassifier(_RNNClassifier):
    """An LSTM classifier: ``rnn`` = ``nn.LSTM`` (one layer, ``batch_first``), ``fc`` on its last output.

    Input ``(N, T, F)`` sequences, or ``(N, 1, H, W)`` images read row by row (T = H, F = W);
    output ``(N, classes)`` logits from the hidden state after the last step.
    ``dataset`` fixes ``(T, F)``: ``"mnist1d"`` (40, 1, the default), ``"mnist5k"`` (28, 28),
    ``"digits"`` (8, 8).

    Parameters
    ----------
    classes : int
        Number of output classes.
    hidden_size : int
        LSTM hidden size H (gate matrices are 4H x F and 4H x H, gate order i, f, g, o).
    dataset : str
        The dataset whose samples the model reads.
    """

    CELL = nn.LSTM


class GRUClassifier(_RNNClassifier):
    """A GRU classifier: ``rnn`` = ``nn.GRU`` (one layer, ``batch_first``), ``fc`` on its last output.

    Input ``(N, T, F)`` sequences, or ``(N, 1, H, W)`` images read row by row (T = H, F = W);
    output ``(N, classes)`` logits from the hidden state after the last step.
    ``dataset`` fixes ``(T, F)``: ``"mnist1d"`` (40, 1, the default), ``"mnist5k"`` (28, 28),
    ``"digits"`` (8, 8).

    Parameters
    ----------
    classes : int
        Number of output classes.
    hidden_size : int
        GRU hidden size H (gate matrices are 3H x F and 3H x H, gate order r, z, n).
    dataset : str
        The dataset whose samples the model reads.
    """

    CELL = nn.GRU


#: Registry: model name -> factory (the model class); keyword arguments of ``build`` go to it.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "tinycnn": TinyCNN,
    "lenet5": LeNet5,
    "vggsmall": VGGSmall,
    "resnet18": ResNet18,
    "mobilenetv2": MobileNetV2,
    "vgg16": VGG16,
    "lstm": LSTMClassifier,
    "gru": GRUClassifier,
}


#: Dense training recipes measured here (keyword arguments of :func:`pruning.train.train` plus
#: ``batch_size`` for :func:`pruning.data.loader`), each on the model's default dataset, seed 0,
#: Adam, cosine schedule, one thread. Test accuracy reached and CPU time per epoch on this
#: project's 2-core machine: tinycnn 95.8% on digits (0.1 s/epoch); lenet5 97.2-97.7% on
#: mnist5k (1.5-2.5 s; 20 epochs: 97.45% over seeds 0-11, against 97.26% after 10, higher on 10
#: of the 12 seeds, and 98.22% against 97.97% over seeds 0-23 with label smoothing 0.1; 30
#: epochs on six of those seeds: no more); vggsmall 98.0-98.3% (4.6 s); lstm 95.4% and gru 97.3% on mnist1d
#: (hidden 64, 1.2-1.4 s). Models without an entry have no measured recipe.
RECIPES: dict[str, dict[str, object]] = {
    "tinycnn": {"epochs": 10, "lr": 3e-3, "batch_size": 32, "optimizer": "adam",
                "schedule": "cosine"},
    "lenet5": {"epochs": 20, "lr": 1e-3, "batch_size": 64, "optimizer": "adam",
               "schedule": "cosine"},
    "vggsmall": {"epochs": 10, "lr": 2e-3, "batch_size": 64, "optimizer": "adam",
                 "schedule": "cosine"},
    "lstm": {"epochs": 40, "lr": 5e-3, "batch_size": 64, "optimizer": "adam",
             "schedule": "cosine", "clip_grad_norm": 1.0},
    "gru": {"epochs": 40, "lr": 5e-3, "batch_size": 64, "optimizer": "adam",
            "schedule": "cosine", "clip_grad_norm": 1.0},
}


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def build(name: str, seed: int = 0, **kwargs: object) -> nn.Module:
    """A freshly initialised zoo model.

    Parameters
    ----------
    name : str
        A key of ``MODELS``.
    seed : int
        Seed of the weight initialisation: the same name, seed and arguments give identical
        weights. The global torch RNG is left as it was.
    **kwargs
        Passed to the model's constructor (for example ``width=0.5`` for ``mobilenetv2``).

    Returns
    -------
    torch.nn.Module
        The model in training mode, with ``input_shape`` and ``dataset`` attributes.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones) or an invalid argument.
    """
    _check_name(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](**kwargs)


def reads_dataset(model: nn.Module, dataset: str) -> bool:
    """Whether ``model`` reads ``dataset``'s samples: its ``input_shape`` is theirs, or it is a
    recurrent classifier built for ``dataset`` (images ``(1, H, W)`` read row by row as
    ``(T, F) = (H, W)``)."""
    from pruning.data import INPUT_SHAPES

    sample = tuple(INPUT_SHAPES[dataset])
    shape = tuple(model.input_shape)
    if isinstance(model, _RNNClassifier):
        return model.dataset == dataset and sample in (shape, (1, *shape))
    return shape == sample


def model_kwargs(name: str, dataset: str) -> dict[str, object]:
    """Constructor arguments that fit zoo model ``name`` to ``dataset``: the recurrent
    classifiers take it (``{"dataset": dataset}``), the others fix their input."""
    _check_name(name)
    return {"dataset": dataset} if issubclass(MODELS[name], _RNNClassifier) else {}


def default_dataset(name: str) -> str | None:
    """The :mod:`pruning.data` dataset a zoo model trains on with its default arguments.

    ``None`` for models kept for layer shapes only (``vgg16``); ``ValueError`` for an unknown name.
    """
    _check_name(name)
    return getattr(MODELS[name], "DATASET", None)
