"""bench/peers.py: every installed peer builds a small dense linear, LSTM step and 3x3 conv and
matches the float64 numpy reference; a missing or crashing peer becomes a row, not an exception."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import peers
from bench.peers import (
    PEERS,
    TOLERANCE,
    Conv3x3,
    Linear,
    LstmCell,
    installed,
    reference,
    relative_error,
    run_peer,
    tflite_model,
    time_calls,
)


def _f(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(7)
    return [Linear("lin", _f(rng, 12, 20), _f(rng, 12), _f(rng, 20)),
            LstmCell("lstm", _f(rng, 24, 10 + 6, scale=0.5), _f(rng, 24), _f(rng, 10),
                     _f(rng, 6), _f(rng, 6)),
            Conv3x3("conv", _f(rng, 8, 5, 3, 3), _f(rng, 8), _f(rng, 5, 9, 7))]


def test_reference_linear_lstm_conv_match_torch(small):
    lin, cell, conv = small
    with torch.no_grad():
        w64 = torch.from_numpy(lin.weight.astype(np.float64))
        want = w64 @ torch.from_numpy(lin.x.astype(np.float64)) + torch.from_numpy(
            lin.bias.astype(np.float64))
        np.testing.assert_allclose(reference(lin), want.numpy(), rtol=1e-12)
        m = torch.nn.LSTMCell(10, 6).double()
        m.weight_ih.copy_(torch.from_numpy(cell.weight[:, :10]))
        m.weight_hh.copy_(torch.from_numpy(cell.weight[:, 10:]))
        m.bias_ih.copy_(torch.from_numpy(cell.bias))
        m.bias_hh.zero_()
        h2, c2 = m(torch.from_numpy(cell.x[None]).double(),
                   (torch.from_numpy(cell.h[None]).double(), torch.from_numpy(cell.c[None]).double()))
        np.testing.assert_allclose(reference(cell), np.concatenate([h2[0], c2[0]]), rtol=1e-10)
        y = torch.nn.functional.conv2d(torch.from_numpy(conv.x[None]).double(),
                                       torch.from_numpy(conv.weight).double(),
                                       torch.from_numpy(conv.bias).double(), padding=1)
        np.testing.assert_allclose(reference(conv), y[0].numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("peer", PEERS)
def test_peer_builds_and_matches_numpy(peer, small):
    why = installed(peer)
    if why is not None:
        pytest.skip(f"{peer}: {why}")
    rows = run_peer(peer, small, warmup=1, repeats=3, max_seconds=1.0, timeout=300)
    assert [r.workload for r in rows] == ["lin", "lstm", "conv"]
    for r in rows:
        assert r.status == "ok", (r.workload, r.status, r.note)
        assert r.peer == peer and r.version
        assert r.max_rel_err <= TOLERANCE
        assert r.repeats == 3 and 0 < r.min_ms <= r.median_ms
        assert r.build_s is not None and r.build_s >= 0
    # float32 dense layers: only MNN's reduced-precision conv path may be looser than 1e-5
    assert all(r.max_rel_err < 1e-5 for r in rows if not (peer == "mnn" and r.workload == "conv"))
    if peer == "litert":
        assert all("XNNPACK on" in r.note for r in rows)
    if peer == "tvm":
        assert all("untuned" in r.note for r in rows)


def test_missing_peer_is_a_row(monkeypatch, small):
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    rows = run_peer("mnn", small)
    assert [r.status for r in rows] == ["missing"] * 3
    assert rows[0].note == "python module MNN not installed (pip install -e '.[bench]')"
    assert rows[0].median_ms is None


def test_crashing_worker_is_a_row(monkeypatch, small):
    if installed("onnxruntime") is not None:
        pytest.skip("onnxruntime not installed")
    monkeypatch.setattr(peers.sys, "executable", "false")
    rows = run_peer("onnxruntime", small[:1])
    assert rows[0].status == "error"
    assert rows[0].note.startswith("worker exited with 1")


def test_wrong_output_is_flagged(monkeypatch, small):
    if installed("onnxruntime") is not None:
        pytest.skip("onnxruntime not installed")
    good = reference

    def off(w):  # the peer is right; a reference that disagrees must mark the row "wrong"
        return good(w) + 1.0

    monkeypatch.setattr(peers, "reference", off)
    rows = run_peer("onnxruntime", small[:1], warmup=0, repeats=1)
    assert rows[0].status == "wrong" and rows[0].max_rel_err > TOLERANCE
    assert rows[0].median_ms is not None


def test_bad_input_messages(small):
    lin = small[0]
    with pytest.raises(ValueError, match=r"^Peer must be one of onnxruntime, mnn, litert, tvm, "
                                         r"torch, not 'tflite'$"):
        run_peer("tflite", [lin])
    with pytest.raises(ValueError, match=r"^lin: weight must be a float32 numpy array$"):
        reference(Linear("lin", lin.weight.astype(np.float64), lin.bias, lin.x))
    with pytest.raises(ValueError, match=r"^c: shapes weight \(8, 5, 3, 3\), bias \(8,\), "
                                         r"x \(4, 9, 7\) do not fit; expected weight"):
        reference(Conv3x3("c", small[2].weight, small[2].bias, small[2].x[:4]))
    with pytest.raises(ValueError, match=r"^Workload names must be unique, got \['lin', 'lin'\]$"):
        run_peer("onnxruntime", [lin, lin])
    with pytest.raises(TypeError, match=r"^Workload must be a Linear, LstmCell or Conv3x3, not "
                                        r"str$"):
        reference("lin")
    with pytest.raises(ValueError, match=r"^output shape \(2,\) differs from the reference's"):
        relative_error(np.zeros(2), np.zeros(3))


def test_tflite_model_is_deterministic(small):
    pytest.importorskip("tflite")
    for w in small:
        blob = tflite_model(w)
        assert blob == tflite_model(w) and blob[4:8] == b"TFL3"


def test_time_calls_counts_and_stops():
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=2, repeats=7, max_seconds=10)
    assert len(times) == 7 and len(calls) == 9 and all(t >= 0 for t in times)
    times = time_calls(lambda: None, warmup=0, repeats=10**9, max_seconds=0.0)
    assert len(times) == 5
