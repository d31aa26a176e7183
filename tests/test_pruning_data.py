"""Offline datasets: sizes, fixed splits, normalisation, determinism, laziness, the access guard."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from pruning import data


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]


@pytest.mark.parametrize(("name", "train", "test", "shape"), [
    ("mnist5k", 4000, 1000, (1, 28, 28)),
    ("digits", 1437, 360, (1, 8, 8)),
    ("mnist1d", 4000, 1000, (40, 1)),
])
def test_sizes_shapes_and_dtypes(name, train, test, shape):
    before_py, before_np = random.getstate(), np.random.get_state()
    tr, te = data.load(name, "train"), data.load(name, "test")
    # mnist1d's generator reseeds the global RNGs: load() must put them back.
    assert random.getstate() == before_py
    assert all(np.array_equal(a, b) for a, b in zip(before_np, np.random.get_state(), strict=True))
    assert (len(tr), len(te)) == (train, test) == (data.SIZES[name]["train"], data.SIZES[name]["test"])
    assert tr.inputs.shape == (train, *shape) and te.inputs.shape == (test, *shape)
    assert data.INPUT_SHAPES[name] == shape
    assert tr.inputs.dtype == torch.float32 and tr.labels.dtype == torch.int64
    assert set(tr.labels.tolist()) == set(range(10)) and tr.classes == 10
    x, y = tr[0]
    assert x.shape == shape and y.dtype == torch.int64
    assert repr(te) == f"OfflineDataset({name!r}, 'test', {test} samples, input {shape})"
    # Normalised to roughly zero mean and unit standard deviation.
    assert abs(float(tr.inputs.mean())) < 0.02 and abs(float(tr.inputs.std()) - 1) < 0.02


def test_stratified_splits_are_disjoint():
    for name, per_class in (("mnist5k", 100), ("digits", 36)):
        tr, te = data.load(name, "train"), data.load(name, "test")
        assert torch.bincount(te.labels).tolist() == [per_class] * 10
        rows = {bytes(r) for r in tr.inputs.flatten(1).numpy()}
        assert not rows & {bytes(r) for r in te.inputs.flatten(1).numpy()}
    assert torch.bincount(data.load("mnist5k", "train").labels).tolist() == [400] * 10
    # The sample order is shuffled, not grouped by class as the shipped file is.
    assert len(set(data.load("mnist5k", "test").labels[:20].tolist())) > 5


def test_splits_are_fixed():
    # Pinned: these change only if the split seed, the split rule or the shipped data change.
    assert _digest(data.load("mnist5k", "test").labels) == "b4dbf252c65ce4c4"
    assert _digest(data.load("digits", "test").labels) == "b8fa167105fd522e"
    assert _digest(data.load("mnist1d", "test").labels) == "8de99be3ff9dab15"
    assert _digest(data.load("mnist5k", "test").inputs) == "ff384eb71744416b"
    assert _digest(data.load("digits", "test").inputs) == "fcd03170651f1bcd"
    first = data.load("digits", "train")
    data.clear_cache()
    again = data.load("digits", "train")
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.labels, again.labels)


def test_pixel_scaling_follows_the_documented_normalisation():
    mean, std = data.NORMALISATION["mnist5k"]
    pixels = data.load("mnist5k", "test").inputs * std + mean
    assert float(pixels.min()) == pytest.approx(0.0, abs=1e-6)
    assert float(pixels.max()) == pytest.approx(1.0, abs=1e-6)
    levels = torch.unique(torch.round(pixels * 255))
    assert torch.allclose(pixels * 255, torch.round(pixels * 255), atol=1e-3) and len(levels) <= 256
    mean, std = data.NORMALISATION["digits"]
    pixels = data.load("digits", "train").inputs * std + mean
    assert torch.allclose(pixels * 16, torch.round(pixels * 16), atol=1e-4)
    assert float(pixels.max() * 16) == pytest.approx(16.0, abs=1e-4)


def test_load_returns_fresh_tensors():
    a = data.load("digits", "test")
    a.inputs.zero_()
    assert float(data.load("digits", "test").inputs.abs().sum()) > 0


def test_unknown_names():
    with pytest.raises(ValueError) as err:
        data.load("cifar10")
    assert str(err.value) == "unknown dataset 'cifar10'; known: mnist5k, digits, mnist1d"
    with pytest.raises(ValueError) as err:
        data.load("digits", "val")
    assert str(err.value) == "unknown split 'val' of dataset 'digits'; known: train, test"
    with pytest.raises(ValueError, match=r"^Batch size must be a positive integer, not 0$"):
        data.loader("digits", batch_size=0)


def test_loader_batches_and_order():
    train = data.loader("digits", "train", batch_size=100, seed=3)
    x, y = next(iter(train))
    assert x.shape == (100, 1, 8, 8) and y.shape == (100,)
    again = next(iter(data.loader("digits", "train", batch_size=100, seed=3)))[1]
    assert torch.equal(y, again)
    test = data.loader("digits", "test", batch_size=360)
    assert torch.equal(next(iter(test))[1], data.load("digits", "test").labels)  # not shuffled


def test_forbid_data_access():
    ready = data.loader("digits", "test", batch_size=10)
    assert data.data_access_allowed()
    with data.forbid_data_access():
        assert not data.data_access_allowed()
        with pytest.raises(data.DataAccessError) as err:
            data.load("mnist5k", "train")
        assert str(err.value) == (
            "dataset 'mnist5k' (train) was requested while data access is forbidden "
            "(pruning.data.forbid_data_access is active): the data-free mode must not read any "
            "dataset")
        with pytest.raises(data.DataAccessError, match=r"^reading dataset 'digits' \(test\) while"):
            next(iter(ready))
        with pytest.raises(data.DataAccessError):
            data.loader("mnist1d")
        with data.forbid_data_access():
            pass
        assert not data.data_access_allowed()  # still inside the outer context
    assert data.data_access_allowed()
    assert next(iter(ready))[0].shape == (10, 1, 8, 8)


def test_imports_are_lazy():
    code = (
        "import sys\n"
        "import pruning.data, pruning.zoo, pruning.train\n"
        "heavy = ('mlxtend', 'sklearn', 'mnist1d', 'matplotlib')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in heavy], 'eager import'\n"
        "pruning.data.load('digits')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # digits come from the shipped file, no sklearn import


# ------------------------------------------------------------------------------ augmentation
def test_augmented_loader_is_deterministic_keeps_labels_and_varies_by_epoch():
    def epochs(seed: int, n: int = 2) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        aug = data.AugmentedLoader(data.loader("digits", "train", batch_size=256, seed=3),
                                   data.Augment(), seed=seed)
        return [list(aug) for _ in range(n)]

    a, b, c = epochs(5), epochs(5), epochs(6)
    plain = data.loader("digits", "train", batch_size=256, seed=3)
    assert len(a[0]) == len(plain) == 6
    for ea, eb in zip(a, b, strict=True):                 # same seeds: identical batches
        assert all(torch.equal(x, y) and torch.equal(u, v)
                   for (x, u), (y, v) in zip(ea, eb, strict=True))
    labels = [y for _, y in plain]
    for ea in (a[0], c[0]):                               # labels pass through unchanged
        assert all(torch.equal(y, ref) for (_, y), ref in zip(ea, labels, strict=True))
    assert not torch.equal(a[0][0][0], a[1][0][0])        # a new transform every epoch
    assert not torch.equal(a[0][0][0], c[0][0][0])        # and for another seed
    x0 = next(iter(data.loader("digits", "train", batch_size=256, seed=3)))[0]
    assert a[0][0][0].shape == x0.shape and a[0][0][0].dtype == torch.float32
    assert not torch.equal(a[0][0][0], x0)


def test_augment_batch_identity_background_and_shift():
    x = data.load("mnist5k", "train").inputs[:16]
    g = torch.Generator().manual_seed(0)
    same = data.augment_batch(x, data.Augment(0, 0, 0, 0), g)
    assert torch.allclose(same, x, atol=1e-5)            # zero ranges: the identity
    out = data.augment_batch(x, data.Augment(rotate=15, scale=0.1, shear=0.1, shift=3), g)
    bg = x.amin(dim=(1, 2, 3))
    assert torch.allclose(out.amin(dim=(1, 2, 3)), bg, atol=1e-5)   # black stays black
    assert torch.allclose(out[:, :, 0, 0], bg[:, None], atol=1e-5)  # corners filled with it
    # a pure shift: bilinear resampling keeps the mass and moves its centre by the drawn offsets
    img = torch.full((1, 1, 28, 28), -1.0)
    img[0, 0, 10:14, 10:14] = 1.0
    g = torch.Generator().manual_seed(1)
    moved = data.augment_batch(img, data.Augment(0, 0, 0, 2), g)
    g = torch.Generator().manual_seed(1)
    draws = [(torch.rand(1, generator=g, dtype=torch.float64) * 2 - 1) for _ in range(5)]
    dx, dy = draws[3] * 2, draws[4] * 2          # drawn after rotation, scale and shear
    assert moved.sum().item() == pytest.approx(img.sum().item(), abs=1e-3)
    mass = (moved[0, 0] + 1).clamp(min=0)
    rows = torch.arange(28, dtype=torch.float64)
    cy = float((mass.sum(1).double() * rows).sum() / mass.sum())
    cx = float((mass.sum(0).double() * rows).sum() / mass.sum())
    assert (cx, cy) == (pytest.approx(11.5 - float(dx), abs=1e-3),
                        pytest.approx(11.5 - float(dy), abs=1e-3))


def test_augmentation_errors():
    with pytest.raises(ValueError, match=r"^Augmentation rotate must be a finite number in "
                                         r"\[0, 180\], not -1$"):
        data.Augment(rotate=-1)
    with pytest.raises(ValueError, match=r"^Augmentation scale must be a finite number in "
                                         r"\[0, 0.9\], not 1.5$"):
        data.Augment(scale=1.5)
    with pytest.raises(ValueError, match=r"^augmentation needs a float batch of images "
                                         r"\(N, C, H, W\), not \(4, 40, 1\)$"):
        data.augment_batch(torch.zeros(4, 40, 1), data.Augment(), torch.Generator())
    with pytest.raises(ValueError, match=r"^augment must be a pruning.data.Augment, not 3$"):
        data.AugmentedLoader([], 3)
    with pytest.raises(ValueError, match=r"^Augmentation seed must be an integer, not 'a'$"):
        data.AugmentedLoader([], data.Augment(), seed="a")
