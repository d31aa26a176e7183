"""mobile.layers: the integer RNN step's biases are at the accumulators' scale."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from mobile_bundle import make_bundle

from codesign.flow import rnn_config
from ir import Bundle
from mobile.layers import layer_kernels


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    return Bundle.load(make_bundle(Path(tmp_path_factory.mktemp("ml")) / "b")).layer("lstm")


@pytest.mark.parametrize("act_scale", [0.1, 2.0 ** -4, None])
def test_rnn_biases_are_at_the_cells_accumulator_scale(lstm, act_scale):
    """With act_scale 0.1 the ARM kernels rounded the biases by scale * 0.1 while the integer
    cell (and the RNN engines) read the accumulators at scale * 2**-act_frac = scale / 8: the
    two platforms of `codesign compare` computed another function than the engines."""
    q = dataclasses.replace(lstm.quant, act_scale=act_scale)
    rng = np.random.default_rng(1)
    biases = {k: (rng.standard_normal(48) * 0.5).astype(np.float32)
              for k in ("bias_ih", "bias_hh")}
    lay = dataclasses.replace(lstm, quant=q, tensors={**lstm.tensors, **biases})
    for _, _, params in layer_kernels(lay, "int8"):
        cfg = params["config"]
        assert cfg == rnn_config(q.scale, q.bits, 8, act_scale if act_scale else 2.0 ** -6)
        for key in ("bias_ih", "bias_hh"):
            want = np.rint(biases[key] / (q.scale * 2.0 ** -cfg.act_frac))
            np.testing.assert_array_equal(params[key], want.astype(np.int32))
    if act_scale == 0.1:
        assert cfg.act_frac == 3
