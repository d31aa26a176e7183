"""A small numpy-only bundle for the mobile tests: BCR and unstructured linear layers, a
pattern-pruned 3x3 convolution, a BCR LSTM and a dense GRU, all with 8-bit weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ir import BCR, Bundle, Dense, Layer, Pattern, QuantSpec, Unstructured
from ir.pattern import candidate_patterns


def _bcr_mask(rng, shape, block):
    m = np.zeros(shape, dtype=np.uint8)
    for r0 in range(0, shape[0], block[0]):
        for c0 in range(0, shape[1], block[1]):
            rr = r0 + np.flatnonzero(rng.random(min(block[0], shape[0] - r0)) < 0.5)
            cc = c0 + np.flatnonzero(rng.random(min(block[1], shape[1] - c0)) < 0.4)
            m[np.ix_(rr, cc)] = 1
    return m


def _tensors(rng, mask, key=""):
    w = (rng.standard_normal(mask.shape) * 0.1).astype(np.float32) * mask
    scale = float(np.abs(w).max() / 127) or 1.0
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8) * mask.astype(np.int8)
    return {f"weight{key}": w.astype(np.float32), f"mask{key}": mask,
            f"qweight{key}": q}, scale


def make_bundle(path: Path, seed: int = 0) -> Path:
    """Write the bundle to ``path`` and return it."""
    rng = np.random.default_rng(seed)
    layers = []
    m = _bcr_mask(rng, (20, 37), (8, 16))
    t, s = _tensors(rng, m)
    t["bias"] = rng.standard_normal(20).astype(np.float32) * 0.1
    layers.append(Layer("fc.bcr", "linear", {"out_features": 20, "in_features": 37},
                        BCR(block=(8, 16), row_ratio=0.5, col_ratio=0.6), QuantSpec(8, s), t))
    m = (rng.random((10, 20)) < 0.3).astype(np.uint8)
    t, s = _tensors(rng, m)
    layers.append(Layer("fc2", "linear", {"out_features": 10, "in_features": 20},
                        Unstructured(sparsity=0.7), QuantSpec(8, s), t))
    lib = candidate_patterns(4)[:6]
    pid = rng.integers(0, 6, (6, 5))
    keep = rng.random((6, 5)) < 0.7
    m = (lib[pid] * keep[..., None, None]).astype(np.uint8)
    t, s = _tensors(rng, m)
    layers.append(Layer("conv", "conv2d", {"out_channels": 6, "in_channels": 5, "kernel": [3, 3],
                                           "stride": [1, 1], "padding": [1, 1], "groups": 1},
                        Pattern(patterns=tuple(map(tuple, lib.reshape(6, 9))),
                                connectivity=0.3), QuantSpec(8, s), t))
    t, s = _tensors(rng, _bcr_mask(rng, (4 * 12, 10), (4, 8)), "_ih")
    t2, s2 = _tensors(rng, _bcr_mask(rng, (4 * 12, 12), (4, 8)), "_hh")
    t.update(t2)
    t["qweight_hh"] = np.clip(np.rint(t["weight_hh"] / s), -127, 127).astype(np.int8)
    layers.append(Layer("lstm", "lstm", {"input_size": 10, "hidden_size": 12,
                                         "gate_order": ["i", "f", "g", "o"]},
                        BCR(block=(4, 8)), QuantSpec(8, s), t))
    t, s = _tensors(rng, np.ones((3 * 6, 7), np.uint8), "_ih")
    t2, _ = _tensors(rng, np.ones((3 * 6, 6), np.uint8), "_hh")
    t.update(t2)
    t["qweight_hh"] = np.clip(np.rint(t["weight_hh"] / s), -127, 127).astype(np.int8)
    layers.append(Layer("gru", "gru", {"input_size": 7, "hidden_size": 6,
                                       "gate_order": ["r", "z", "n"]}, Dense(), QuantSpec(8, s), t))
    Bundle("mobiletest", tuple(layers)).save(path)
    return path
