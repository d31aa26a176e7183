"""Quantization: fixed-q projection against brute force, the chosen scale against a fine grid,
integer export consistency."""

import itertools

import numpy as np
import pytest
import torch

from ir import Layer, QuantSpec
from pruning.export import quantize_symmetric
from pruning.projections import mask_of
from pruning.quantize import (
    best_scale,
    levels,
    max_level,
    project_joint,
    project_quant,
    quant_error,
    quantize_fixed,
    to_integers,
)
from pruning.schemes import BCRConfig, UnstructuredConfig


def _grid_best(w: np.ndarray, bits: int, n: int = 3000, mask=None) -> float:
    """Smallest error over a fine linear grid of q in (0, 2.5 max|w| / L]."""
    a = np.abs(w.astype(np.float64)).ravel()
    if mask is not None:
        a = a[np.asarray(mask).ravel() != 0]
    lv = max_level(bits)
    q = a.max() / lv * np.linspace(1e-3, 2.5, n)
    lev = np.minimum(np.rint(a[None, :] / q[:, None]), lv)
    return float(((a[None, :] - lev * q[:, None]) ** 2).sum(axis=1).min())


@pytest.mark.parametrize("bits", [2, 3])
def test_fixed_q_is_the_euclidean_projection(bits):
    gen = torch.Generator().manual_seed(0)
    lv = max_level(bits)
    for _ in range(4):
        w = torch.randn(3, generator=gen, dtype=torch.float64) * 2
        q = float(np.float32(0.2 + torch.rand(1, generator=gen).item()))
        p = quantize_fixed(w, q, bits)
        grid = levels(bits, q)
        assert np.isin(p.numpy(), grid).all() and len(grid) == 2 * lv + 1
        brute = min(float(((w.numpy() - np.array(c)) ** 2).sum())
                    for c in itertools.product(grid, repeat=3))
        assert float(((w - p) ** 2).sum()) == pytest.approx(brute, abs=1e-9)
        assert quant_error(w, q, bits) == pytest.approx(brute, abs=1e-9)


def test_fixed_q_keeps_pruned_zeros():
    w = torch.tensor([[0.9, -0.04, 0.0], [2.5, 0.3, -0.7]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]], dtype=torch.uint8)
    p = quantize_fixed(w, 0.25, 3, mask)
    assert p.tolist() == [[0.75, 0.0, 0.0], [0.0, 0.25, -0.75]]       # 3.6 saturates at 3
    assert to_integers(w, 0.25, 3, mask).tolist() == [[3, 0, 0], [0, 1, -3]]


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_scale_is_no_worse_than_a_fine_grid(bits):
    gen = torch.Generator().manual_seed(bits)
    for shape in [(7,), (5, 9), (40, 50)]:
        w = torch.randn(*shape, generator=gen) * torch.rand(*shape, generator=gen) * 3
        p, q = project_quant(w, bits)
        err = quant_error(w, q, bits)
        assert err == pytest.approx(float(((w.double() - p.double()) ** 2).sum()), rel=1e-5)
        assert err <= _grid_best(w.numpy(), bits) * (1 + 1e-9) + 1e-15
        assert err <= quant_error(w, float(w.abs().max()) / max_level(bits), bits) * (1 + 1e-9)


def test_scale_search_on_a_large_layer_with_a_mask():
    # numel * L above the exact sweep's budget: grid + Lloyd + bracketed exact sweep
    gen = torch.Generator().manual_seed(11)
    w = torch.randn(80, 300, generator=gen) ** 3
    mask = mask_of(UnstructuredConfig(0.5), w)
    for bits in (4, 8):
        p, q = project_quant(w, bits, mask)
        assert not p[~mask].any()
        err = quant_error(w, q, bits, mask)
        assert err <= _grid_best(w.numpy(), bits, 1500, mask) * (1 + 1e-9)


def test_scale_is_shared_across_tensors_and_accepts_16_bits():
    gen = torch.Generator().manual_seed(12)
    ih, hh = torch.randn(8, 5, generator=gen), 0.5 * torch.randn(8, 4, generator=gen)
    q = best_scale([ih, hh], 4)
    both = torch.cat([ih.flatten(), hh.flatten()])
    assert q == best_scale(both, 4)
    assert quant_error(both, q, 4) <= _grid_best(both.numpy(), 4) * (1 + 1e-9)
    p, q16 = project_quant(ih, 16)
    n = to_integers(ih, q16, 16)
    assert n.dtype == np.int16 and np.abs(n).max() <= 32767
    assert np.array_equal(n.astype(np.float32) * np.float32(q16), p.numpy())


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 12])
def test_integers_reproduce_the_projection_exactly(bits):
    gen = torch.Generator().manual_seed(13 + bits)
    w = torch.randn(16, 3, 3, 3, generator=gen) * 0.1
    mask = mask_of(BCRConfig((4, 9), 0.5, 0.5), w)
    p, q = project_quant(w, bits, mask)
    assert q == float(np.float32(q)) and q > 0
    n = to_integers(w, q, bits, mask)
    assert n.dtype == (np.int8 if bits <= 8 else np.int16)
    assert np.abs(n).max() <= max_level(bits)
    assert np.array_equal(n.astype(np.float32) * np.float32(q), p.numpy())      # bit for bit
    assert np.array_equal(to_integers(p, q, bits), n)
    assert np.array_equal(quantize_symmetric(p.numpy(), bits, q)[0], n)         # the exporter
    assert torch.equal(quantize_fixed(p, q, bits, mask), p)                     # idempotent
    layer = Layer(name="conv", op="conv2d",
                  shape={"out_channels": 16, "in_channels": 3, "kernel": [3, 3],
                         "stride": [1, 1], "padding": [0, 0], "groups": 1},
                  scheme=BCRConfig((4, 9), 0.5, 0.5).to_ir(), quant=QuantSpec(bits, q),
                  tensors={"weight": p.numpy(), "mask": mask.numpy().astype(np.uint8),
                           "qweight": n})
    assert layer.stats.nnz == int(mask.sum())


def test_joint_projection_and_degenerate_cases():
    gen = torch.Generator().manual_seed(14)
    w = torch.randn(8, 8, generator=gen, dtype=torch.float64)
    p, q, mask = project_joint(UnstructuredConfig(0.75), w, 3)
    assert p.dtype == torch.float64 and int(mask.sum()) == 16
    assert not p[~mask].any() and set(to_integers(p, q, 3).ravel()) <= set(range(-3, 4))
    z, qz = project_quant(torch.zeros(3, 3), 4)
    assert qz == 1.0 and not z.any()
    w2 = w.clone()
    project_quant(w2, 3)
    assert torch.equal(w2, w)


@pytest.mark.parametrize("call, exc, message", [
    (lambda: project_quant(torch.ones(2), 1), ValueError,
     "Bits must be an integer from 2 to 16, not 1"),
    (lambda: best_scale(torch.ones(2), 17), ValueError,
     "Bits must be an integer from 2 to 16, not 17"),
    (lambda: to_integers(np.ones(2), 0.5, True), TypeError,
     "Bits must be an integer from 2 to 16, not True"),
    (lambda: quantize_fixed(torch.ones(2), 0.0, 4), ValueError,
     "Scale must be a positive finite number, not 0.0"),
    (lambda: to_integers(np.ones(2), float("inf"), 4), ValueError,
     "Scale must be a positive finite number, not inf"),
    (lambda: quantize_fixed(np.ones(2), 0.5, 4), TypeError,
     "Weight must be a floating-point torch.Tensor, not ndarray"),
    (lambda: to_integers(np.array([np.nan]), 0.5, 4), ValueError,
     "Weight contains NaN or infinity"),
    (lambda: to_integers(np.ones(2), 0.5, 4, np.ones(3)), ValueError,
     "Mask shape [3] does not match weight shape [2]"),
])
def test_quantize_errors(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value) == message


def test_bfloat16_weights_quantize():
    """numpy has no bfloat16: 'Got unsupported ScalarType BFloat16' from every entry point."""
    from pruning.quantize import best_scale, quantize_fixed

    w = torch.randn(3, 3, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    got = quantize_fixed(w, 0.125, 4)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got.float(), quantize_fixed(w.float(), 0.125, 4))
    assert best_scale([w], 4) == best_scale([w.float()], 4)
