"""Dense layers in other inference runtimes, built offline from numpy weights and timed on one thread.

Given the float32 weights of a layer (a :class:`Linear`, one :class:`LstmCell` step or a 3x3
:class:`Conv3x3`), :func:`run_peer` builds the same dense layer in one peer runtime, runs it on
the given input, checks the output against a float64 numpy reference (:func:`reference`) and
times it (median of many calls after a warm-up). The peers, all installed from PyPI and built
with no network access:

- ``onnxruntime``: an ONNX graph written with ``onnx.helper``; one intra- and inter-op thread.
- ``mnn``: the same ONNX graph converted by MNN's converter (called in-process through the
  wheel's ``_tools`` module: the wheel's ``mnnconvert`` script tries to pip-install a logging
  SDK and send telemetry), run through the Module API with ``numThread=1``, precision high.
- ``litert``: a ``.tflite`` flatbuffer written by hand with the ``tflite`` schema package (no
  TensorFlow), run by ``ai-edge-litert`` with its default resolver, which applies XNNPACK;
  ``num_threads=1``. Conv runs in LiteRT's native NHWC layout (input and output transposed
  outside the timed call).
- ``tvm``: the ONNX graph through TVM's relax ONNX frontend, compiled for ``llvm -mcpu=<host>``
  with ``TVM_NUM_THREADS=1``, untuned (TVM's default schedules; every row says ``untuned``).
  MetaSchedule does not fit a benchmark run here: 64 trials on the LSTM step alone had not
  finished after 15 minutes on this shared 2-core host.
- ``torch``: ``nn.Linear`` / ``nn.LSTMCell`` / ``nn.Conv2d`` in eager mode under
  ``torch.inference_mode()`` with ``torch.set_num_threads(1)``.

Every peer runs in its own Python process (``python -m bench.peers --worker ...``): thread
settings stay per runtime, TVM's thread pool pins the calling thread to CPU 0 (which would slow
every later runtime in the same process), and a peer that crashes becomes a row saying so
instead of ending the benchmark. Arrays go to the worker as ``.npy`` files (no pickle).

The LSTM cell is PyTorch's (gate order i, f, g, o): ``gates = W @ [x; h] + b``,
``c' = sigmoid(f) * c + sigmoid(i) * tanh(g)``, ``h' = sigmoid(o) * tanh(c')``; every peer
returns ``[h'; c']``. The conv is stride 1, padding 1, with bias, NCHW, batch 1.

Run as a script it prints which peers are installed, with versions.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Peer runtimes in table order.
PEERS = ("onnxruntime", "mnn", "litert", "tvm", "torch")
#: Python distribution that provides each peer (for "not installed" rows and versions).
DISTRIBUTIONS = {"onnxruntime": "onnxruntime", "mnn": "mnn", "litert": "ai-edge-litert",
                 "tvm": "apache-tvm", "torch": "torch"}
#: Importable modules each peer needs (checked without importing them).
MODULES = {"onnxruntime": ("onnxruntime", "onnx"), "mnn": ("MNN", "onnx"),
           "litert": ("ai_edge_litert", "tflite", "flatbuffers"),
           "tvm": ("tvm", "onnx"), "torch": ("torch",)}
#: A peer output whose normwise relative error exceeds this is not trusted (status "wrong").
TOLERANCE = 1e-2
ROOT = Path(__file__).resolve().parent.parent
_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "TVM_NUM_THREADS": "1"}


# --------------------------------------------------------------------------- workloads

@dataclass(frozen=True, eq=False)
class Linear:
    """``y = weight @ x + bias``; ``weight`` is ``(out, in)``."""

    name: str
    weight: np.ndarray
    bias: np.ndarray
    x: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias, "x": self.x}


@dataclass(frozen=True, eq=False)
class LstmCell:
    """One LSTM step; ``weight`` is ``(4*hidden, input + hidden)`` (gates i, f, g, o)."""

    name: str
    weight: np.ndarray
    bias: np.ndarray
    x: np.ndarray
    h: np.ndarray
    c: np.ndarray

    @property
    def hidden(self) -> int:
        return int(self.h.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias, "x": self.x, "h": self.h, "c": self.c}


@dataclass(frozen=True, eq=False)
class Conv3x3:
    """3x3 convolution, stride 1, padding 1: ``weight`` ``(out, in, 3, 3)``, ``x`` ``(in, H, W)``."""

    name: str
    weight: np.ndarray
    bias: np.ndarray
    x: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias, "x": self.x}


Workload = Linear | LstmCell | Conv3x3
_KINDS = {"linear": Linear, "lstm": LstmCell, "conv": Conv3x3}


def _kind(w: Workload) -> str:
    return next(k for k, cls in _KINDS.items() if isinstance(w, cls))


def _validate(w: Workload) -> None:
    if not isinstance(w, Linear | LstmCell | Conv3x3):
        raise TypeError(f"Workload must be a Linear, LstmCell or Conv3x3, not {type(w).__name__}")
    for key, a in w.arrays().items():
        if not isinstance(a, np.ndarray) or a.dtype != np.float32:
            raise ValueError(f"{w.name}: {key} must be a float32 numpy array")
    wt, b = w.weight, w.bias
    if isinstance(w, Conv3x3):
        ok = (wt.ndim == 4 and wt.shape[2:] == (3, 3) and b.shape == (wt.shape[0],)
              and w.x.ndim == 3 and w.x.shape[0] == wt.shape[1])
        want = "weight (out, in, 3, 3), bias (out,), x (in, H, W)"
    elif isinstance(w, LstmCell):
        hid = w.h.shape[0] if w.h.ndim == 1 else -1
        ok = (wt.ndim == 2 and wt.shape[0] == 4 * hid and w.x.ndim == 1
              and wt.shape[1] == w.x.shape[0] + hid and b.shape == (4 * hid,)
              and w.c.shape == (hid,))
        want = "weight (4H, I+H), bias (4H,), x (I,), h (H,), c (H,)"
    else:
        ok = wt.ndim == 2 and b.shape == (wt.shape[0],) and w.x.shape == (wt.shape[1],)
        want = "weight (out, in), bias (out,), x (in,)"
    if not ok:
        shapes = ", ".join(f"{k} {tuple(a.shape)}" for k, a in w.arrays().items())
        raise ValueError(f"{w.name}: shapes {shapes} do not fit; expected {want}")


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def reference(w: Workload) -> np.ndarray:
    """The layer's output in float64 numpy (LSTM: ``[h'; c']``; conv: ``(out, H, W)``)."""
    _validate(w)
    wt, b = w.weight.astype(np.float64), w.bias.astype(np.float64)
    if isinstance(w, Linear):
        return wt @ w.x.astype(np.float64) + b
    if isinstance(w, LstmCell):
        xh = np.concatenate([w.x, w.h]).astype(np.float64)
        i, f, g, o = np.split(wt @ xh + b, 4)
        c2 = _sigmoid(f) * w.c.astype(np.float64) + _sigmoid(i) * np.tanh(g)
        return np.concatenate([_sigmoid(o) * np.tanh(c2), c2])
    cin, hh, ww = w.x.shape
    xp = np.pad(w.x.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    out = np.broadcast_to(b[:, None, None], (wt.shape[0], hh, ww)).copy()
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("oc,chw->ohw", wt[:, :, ky, kx], xp[:, ky:ky + hh, kx:kx + ww])
    return out


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """Normwise relative error ``max|out - ref| / max|ref|`` (shapes must agree)."""
    out = np.asarray(out, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference's {ref.shape}")
    return float(np.max(np.abs(out - ref)) / max(float(np.max(np.abs(ref))), 1e-30))


# --------------------------------------------------------------------------- results

@dataclass
class PeerResult:
    """One peer on one workload.

    ``status`` is ``ok`` (output within :data:`TOLERANCE`, time trusted), ``wrong`` (ran, output
    off), ``error`` (build or run failed; ``note`` says why) or ``missing`` (not installed).
    Times are per call in milliseconds; ``build_s`` is the offline build (convert + compile).
    """

    peer: str
    workload: str
    status: str
    version: str = ""
    median_ms: float | None = None
    min_ms: float | None = None
    repeats: int = 0
    max_rel_err: float | None = None
    build_s: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def installed(peer: str) -> str | None:
    """Why ``peer`` cannot run here (a missing module), or None if everything it needs imports."""
    if peer not in PEERS:
        raise ValueError(f"Peer must be one of {', '.join(PEERS)}, not {peer!r}")
    for mod in MODULES[peer]:
        if importlib.util.find_spec(mod) is None:
            return f"python module {mod} not installed (pip install -e '.[bench]')"
    return None


def peer_version(peer: str) -> str:
    """Installed version of the peer's distribution, or ``""``."""
    try:
        return importlib.metadata.version(DISTRIBUTIONS[peer])
    except importlib.metadata.PackageNotFoundError:
        return ""


def run_peer(peer: str, workloads: Sequence[Workload], *, warmup: int = 5, repeats: int = 50,
             max_seconds: float = 10.0, timeout: float = 1800.0) -> list[PeerResult]:
    """Build, check and time ``workloads`` in ``peer``, in a fresh single-threaded process.

    Parameters
    ----------
    peer
        One of :data:`PEERS`.
    workloads
        Layers with float32 weights; their names must be unique.
    warmup, repeats, max_seconds
        Per workload: ``warmup`` untimed calls, then timed calls until ``repeats`` are done or
        ``max_seconds`` have passed (at least 5 timed calls).
    timeout
        Seconds for the whole worker process; past it the remaining workloads get error rows.

    Returns
    -------
    list of PeerResult
        One per workload, in order. Never raises for a peer that is missing or fails: the
        row's ``status`` and ``note`` say what happened.
    """
    for w in workloads:
        _validate(w)
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise ValueError(f"Workload names must be unique, got {names}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, not {repeats} and {warmup}")
    version = peer_version(peer) if peer in PEERS else ""
    why = installed(peer)
    if why is not None:
        return [PeerResult(peer, w.name, "missing", version, note=why) for w in workloads]
    refs = [reference(w) for w in workloads]
    with tempfile.TemporaryDirectory(prefix=f"peer-{peer}-") as tmp:
        d = Path(tmp)
        spec = {"peer": peer, "warmup": warmup, "repeats": repeats, "max_seconds": max_seconds,
                "workloads": []}
        for k, w in enumerate(workloads):
            for key, a in w.arrays().items():
                np.save(d / f"w{k}_{key}.npy", a)
            spec["workloads"].append({"name": w.name, "kind": _kind(w)})
        (d / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, **_THREAD_ENV,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.peers", "--worker", str(d)],
                                  cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
            died = "" if proc.returncode == 0 else (
                f"worker exited with {proc.returncode}: " + _tail(proc.stderr))
        except subprocess.TimeoutExpired:
            died = f"worker timed out after {timeout:.0f} s"
        done = {}
        if (d / "results.jsonl").exists():
            for line in (d / "results.jsonl").read_text().splitlines():
                rec = json.loads(line)
                done[rec["k"]] = rec
        results = []
        for k, (w, ref) in enumerate(zip(workloads, refs, strict=True)):
            rec = done.get(k)
            if rec is None:
                results.append(PeerResult(peer, w.name, "error", version,
                                          note=died or "worker wrote no result"))
                continue
            r = PeerResult(peer, w.name, "error", version, build_s=rec.get("build_s"),
                           note=rec.get("note", ""), extra=rec.get("extra", {}))
            if rec.get("error"):
                r.note = "; ".join(x for x in (r.note, rec["error"]) if x)
            else:
                out = np.load(d / f"out{k}.npy", allow_pickle=False)
                try:
                    r.max_rel_err = relative_error(out, ref)
                except ValueError as e:
                    r.note = "; ".join(x for x in (r.note, str(e)) if x)
                    results.append(r)
                    continue
                times = np.asarray(rec["times_ms"])
                r.median_ms, r.min_ms = float(np.median(times)), float(times.min())
                r.repeats = len(times)
                r.status = "ok" if r.max_rel_err <= TOLERANCE else "wrong"
            results.append(r)
        return results


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-400:] or "no output"


# --------------------------------------------------------------------------- ONNX graphs

def onnx_model(w: Workload):
    """The dense layer as an ONNX model (opset 13): inputs ``x`` (and ``h``, ``c``), output ``y``.

    Linear and LSTM take row vectors ``(1, n)``; conv takes ``(1, C, H, W)``. Weights are
    initializers, so every runtime sees them as constants.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _validate(w)
    f32 = TensorProto.FLOAT
    inits = [numpy_helper.from_array(w.weight, "W"), numpy_helper.from_array(w.bias, "B")]
    if isinstance(w, Conv3x3):
        cin, hh, ww = w.x.shape
        cout = w.weight.shape[0]
        inputs = [helper.make_tensor_value_info("x", f32, [1, cin, hh, ww])]
        outputs = [helper.make_tensor_value_info("y", f32, [1, cout, hh, ww])]
        nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y"], kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1], strides=[1, 1])]
    elif isinstance(w, Linear):
        inputs = [helper.make_tensor_value_info("x", f32, [1, w.x.shape[0]])]
        outputs = [helper.make_tensor_value_info("y", f32, [1, w.weight.shape[0]])]
        nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)]
    else:
        hid = w.hidden
        inputs = [helper.make_tensor_value_info("x", f32, [1, w.x.shape[0]]),
                  helper.make_tensor_value_info("h", f32, [1, hid]),
                  helper.make_tensor_value_info("c", f32, [1, hid])]
        outputs = [helper.make_tensor_value_info("y", f32, [1, 2 * hid])]
        n = helper.make_node
        nodes = [n("Concat", ["x", "h"], ["xh"], axis=1),
                 n("Gemm", ["xh", "W", "B"], ["gates"], transB=1),
                 n("Split", ["gates"], ["gi", "gf", "gg", "go"], axis=1),
                 n("Sigmoid", ["gi"], ["si"]), n("Sigmoid", ["gf"], ["sf"]),
                 n("Tanh", ["gg"], ["tg"]), n("Sigmoid", ["go"], ["so"]),
                 n("Mul", ["sf", "c"], ["fc"]), n("Mul", ["si", "tg"], ["ig"]),
                 n("Add", ["fc", "ig"], ["c2"]), n("Tanh", ["c2"], ["tc"]),
                 n("Mul", ["so", "tc"], ["h2"]), n("Concat", ["h2", "c2"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, w.name.replace(" ", "_") or "layer", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="codesign-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _onnx_feeds(w: Workload) -> dict[str, np.ndarray]:
    if isinstance(w, Conv3x3):
        return {"x": w.x[None]}
    if isinstance(w, LstmCell):
        return {"x": w.x[None], "h": w.h[None], "c": w.c[None]}
    return {"x": w.x[None]}


def _out_shape(w: Workload) -> tuple[int, ...]:
    if isinstance(w, Conv3x3):
        return (w.weight.shape[0], *w.x.shape[1:])
    return (2 * w.hidden,) if isinstance(w, LstmCell) else (w.weight.shape[0],)


# --------------------------------------------------------------------------- TFLite flatbuffer

def tflite_model(w: Workload) -> bytes:
    """The dense layer as a ``.tflite`` flatbuffer (float32), built with the ``tflite`` schema.

    Linear and LSTM take row vectors ``(1, n)`` like the ONNX graph; conv takes NHWC
    ``(1, H, W, C)`` with OHWI weights and returns NHWC.
    """
    import flatbuffers
    import tflite as T

    _validate(w)
    tensors: list[tuple[str, list[int], int, int]] = []  # name, shape, type, buffer
    buffers: list[bytes | None] = [None]                 # buffer 0: the empty sentinel
    ops: list[tuple[int, list[int], list[int], int, Callable | None]] = []
    codes: list[int] = []
    f32, i32 = T.TensorType.FLOAT32, T.TensorType.INT32

    def tensor(name, shape, data=None, ttype=f32):
        buf = 0
        if data is not None:
            buffers.append(np.ascontiguousarray(data).tobytes())
            buf = len(buffers) - 1
        tensors.append((name, list(shape), ttype, buf))
        return len(tensors) - 1

    def op(code, ins, outs, opt_type=0, opt=None):
        if code not in codes:
            codes.append(code)
        ops.append((codes.index(code), ins, outs, opt_type, opt))

    B = T.BuiltinOperator

    def fc_opts(b):
        T.FullyConnectedOptionsStart(b)
        return T.FullyConnectedOptionsEnd(b)

    def concat_opts(b):
        T.ConcatenationOptionsStart(b)
        T.ConcatenationOptionsAddAxis(b, 1)
        return T.ConcatenationOptionsEnd(b)

    def fc(x_t, rows, out_name):
        wt = tensor("W", w.weight.shape, w.weight)
        bt = tensor("B", w.bias.shape, w.bias)
        y = tensor(out_name, [1, rows])
        op(B.FULLY_CONNECTED, [x_t, wt, bt], [y], T.BuiltinOptions.FullyConnectedOptions, fc_opts)
        return y

    if isinstance(w, Conv3x3):
        cin, hh, ww = w.x.shape
        cout = w.weight.shape[0]
        x = tensor("x", [1, hh, ww, cin])
        wt = tensor("W", [cout, 3, 3, cin], w.weight.transpose(0, 2, 3, 1))
        bt = tensor("B", [cout], w.bias)
        y = tensor("y", [1, hh, ww, cout])

        def conv_opts(b):
            T.Conv2DOptionsStart(b)
            T.Conv2DOptionsAddPadding(b, T.Padding.SAME)
            T.Conv2DOptionsAddStrideH(b, 1)
            T.Conv2DOptionsAddStrideW(b, 1)
            T.Conv2DOptionsAddDilationHFactor(b, 1)
            T.Conv2DOptionsAddDilationWFactor(b, 1)
            return T.Conv2DOptionsEnd(b)

        op(B.CONV_2D, [x, wt, bt], [y], T.BuiltinOptions.Conv2DOptions, conv_opts)
        inputs = [x]
    elif isinstance(w, Linear):
        x = tensor("x", [1, w.x.shape[0]])
        y = fc(x, w.weight.shape[0], "y")
        inputs = [x]
    else:
        hid, nin = w.hidden, w.x.shape[0]
        x, h, c = tensor("x", [1, nin]), tensor("h", [1, hid]), tensor("c", [1, hid])
        xh = tensor("xh", [1, nin + hid])
        op(B.CONCATENATION, [x, h], [xh], T.BuiltinOptions.ConcatenationOptions, concat_opts)
        gates = fc(xh, 4 * hid, "gates")
        axis = tensor("axis", [], np.array(1, np.int32), i32)
        parts = [tensor(f"g{k}", [1, hid]) for k in "ifgo"]

        def split_opts(b):
            T.SplitOptionsStart(b)
            T.SplitOptionsAddNumSplits(b, 4)
            return T.SplitOptionsEnd(b)

        op(B.SPLIT, [axis, gates], parts, T.BuiltinOptions.SplitOptions, split_opts)
        si, sf, tg, so = (tensor(n, [1, hid]) for n in ("si", "sf", "tg", "so"))
        for src, dst, code in zip(parts, (si, sf, tg, so),
                                  (B.LOGISTIC, B.LOGISTIC, B.TANH, B.LOGISTIC), strict=True):
            op(code, [src], [dst])
        fcm, ig, c2, tc, h2 = (tensor(n, [1, hid]) for n in ("fc", "ig", "c2", "tc", "h2"))

        def mul_opts(b):
            T.MulOptionsStart(b)
            return T.MulOptionsEnd(b)

        def add_opts(b):
            T.AddOptionsStart(b)
            return T.AddOptionsEnd(b)

        op(B.MUL, [sf, c], [fcm], T.BuiltinOptions.MulOptions, mul_opts)
        op(B.MUL, [si, tg], [ig], T.BuiltinOptions.MulOptions, mul_opts)
        op(B.ADD, [fcm, ig], [c2], T.BuiltinOptions.AddOptions, add_opts)
        op(B.TANH, [c2], [tc])
        op(B.MUL, [so, tc], [h2], T.BuiltinOptions.MulOptions, mul_opts)
        y = tensor("y", [1, 2 * hid])
        op(B.CONCATENATION, [h2, c2], [y], T.BuiltinOptions.ConcatenationOptions, concat_opts)
        inputs = [x, h, c]

    b = flatbuffers.Builder(1024 + sum(len(d) for d in buffers if d))

    def vec_i32(start, items):
        start(b, len(items))
        for v in reversed(items):
            b.PrependInt32(v)
        return b.EndVector()

    def vec_off(start, items):
        start(b, len(items))
        for v in reversed(items):
            b.PrependUOffsetTRelative(v)
        return b.EndVector()

    buf_offs = []
    for data in buffers:
        dvec = None
        if data:
            b.StartVector(1, len(data), 16)
            b.head = b.head - len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            dvec = b.EndVector()
        T.BufferStart(b)
        if dvec is not None:
            T.BufferAddData(b, dvec)
        buf_offs.append(T.BufferEnd(b))
    t_offs = []
    for name, shape, ttype, buf in tensors:
        n_off = b.CreateString(name)
        s_off = vec_i32(T.TensorStartShapeVector, shape)
        T.TensorStart(b)
        T.TensorAddShape(b, s_off)
        T.TensorAddType(b, ttype)
        T.TensorAddBuffer(b, buf)
        T.TensorAddName(b, n_off)
        t_offs.append(T.TensorEnd(b))
    o_offs = []
    for opcode, ins, outs, opt_type, opt in ops:
        opt_off = opt(b) if opt is not None else None
        i_off = vec_i32(T.OperatorStartInputsVector, ins)
        out_off = vec_i32(T.OperatorStartOutputsVector, outs)
        T.OperatorStart(b)
        T.OperatorAddOpcodeIndex(b, opcode)
        T.OperatorAddInputs(b, i_off)
        T.OperatorAddOutputs(b, out_off)
        if opt_off is not None:
            T.OperatorAddBuiltinOptionsType(b, opt_type)
            T.OperatorAddBuiltinOptions(b, opt_off)
        o_offs.append(T.OperatorEnd(b))
    sg_t = vec_off(T.SubGraphStartTensorsVector, t_offs)
    sg_i = vec_i32(T.SubGraphStartInputsVector, inputs)
    sg_o = vec_i32(T.SubGraphStartOutputsVector, [y])
    sg_ops = vec_off(T.SubGraphStartOperatorsVector, o_offs)
    sg_name = b.CreateString("main")
    T.SubGraphStart(b)
    T.SubGraphAddTensors(b, sg_t)
    T.SubGraphAddInputs(b, sg_i)
    T.SubGraphAddOutputs(b, sg_o)
    T.SubGraphAddOperators(b, sg_ops)
    T.SubGraphAddName(b, sg_name)
    sg = T.SubGraphEnd(b)
    c_offs = []
    for code in codes:
        T.OperatorCodeStart(b)
        T.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        T.OperatorCodeAddBuiltinCode(b, code)
        T.OperatorCodeAddVersion(b, 1)
        c_offs.append(T.OperatorCodeEnd(b))
    m_codes = vec_off(T.ModelStartOperatorCodesVector, c_offs)
    m_sgs = vec_off(T.ModelStartSubgraphsVector, [sg])
    m_bufs = vec_off(T.ModelStartBuffersVector, buf_offs)
    desc = b.CreateString("codesign bench")
    T.ModelStart(b)
    T.ModelAddVersion(b, 3)
    T.ModelAddOperatorCodes(b, m_codes)
    T.ModelAddSubgraphs(b, m_sgs)
    T.ModelAddDescription(b, desc)
    T.ModelAddBuffers(b, m_bufs)
    b.Finish(T.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# --------------------------------------------------------------------------- worker side

def _build_onnxruntime(w: Workload, tmp: Path, opts: dict):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_model(w).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    feeds = _onnx_feeds(w)
    return lambda: sess.run(["y"], feeds)[0], "CPUExecutionProvider, 1 thread"


def _build_mnn(w: Workload, tmp: Path, opts: dict):
    import _tools
    import MNN
    import MNN.expr as F
    import MNN.nn as nn

    src, dst = tmp / f"{id(w)}.onnx", tmp / f"{id(w)}.mnn"
    src.write_bytes(onnx_model(w).SerializeToString())
    _tools.mnnconvert(["mnnconvert", "-f", "ONNX", "--modelFile", str(src),
                       "--MNNModel", str(dst), "--bizCode", "codesign"])
    if not dst.exists():
        raise RuntimeError("MNN converter wrote no model")
    rt = nn.create_runtime_manager(({"backend": "CPU", "numThread": 1, "precision": "high"},))
    feeds = _onnx_feeds(w)
    mod = nn.load_module_from_file(str(dst), list(feeds), ["y"], runtime_manager=rt)
    vars_ = [F.const(a.ravel(), list(a.shape), F.NCHW) for a in feeds.values()]
    del MNN

    def step():
        out = mod.forward(vars_)
        out = out[0] if isinstance(out, list | tuple) else out
        if out.data_format != F.NCHW:
            out = F.convert(out, F.NCHW)
        return np.array(out.read(), copy=True)

    return step, "Module API, numThread=1, precision high"


def _build_litert(w: Workload, tmp: Path, opts: dict):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_model(w), num_threads=1)
    interp.allocate_tensors()
    ins, out = interp.get_input_details(), interp.get_output_details()[0]["index"]
    feeds = _onnx_feeds(w)
    if isinstance(w, Conv3x3):
        feeds = {"x": np.ascontiguousarray(w.x.transpose(1, 2, 0)[None])}
    for d in ins:
        interp.set_tensor(d["index"], feeds[d["name"]])

    def step():
        interp.invoke()
        return interp.get_tensor(out)

    delegated = _litert_xnnpack(interp)
    return step, f"XNNPACK {'on' if delegated else 'NOT applied'}, 1 thread"


def _litert_xnnpack(interp) -> bool:
    """Whether the default resolver added a delegate node (XNNPACK took over the graph)."""
    return any(o.get("op_name") == "DELEGATE" for o in interp._get_ops_details())


def _build_tvm(w: Workload, tmp: Path, opts: dict):
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(onnx_model(w), keep_params_in_input=False)
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    target = tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": 1})
    ex = tvm.compile(mod, target=target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    args = [tvm.runtime.tensor(a, tvm.cpu()) if hasattr(tvm.runtime, "tensor")
            else tvm.nd.array(a, tvm.cpu()) for a in _onnx_feeds(w).values()]
    fn = vm["main"]

    def step():
        out = fn(*args)
        return out.numpy()

    return step, f"untuned (default schedules), target {cpu}, 1 thread"


def _build_torch(w: Workload, tmp: Path, opts: dict):
    import torch

    torch.set_num_threads(1)
    if torch.get_num_interop_threads() != 1:
        torch.set_num_interop_threads(1)  # allowed once per process, before any parallel work
    with torch.no_grad():
        if isinstance(w, Conv3x3):
            m = torch.nn.Conv2d(w.x.shape[0], w.weight.shape[0], 3, padding=1)
            m.weight.copy_(torch.from_numpy(w.weight))
            m.bias.copy_(torch.from_numpy(w.bias))
            args = (torch.from_numpy(w.x[None]),)
        elif isinstance(w, Linear):
            m = torch.nn.Linear(w.weight.shape[1], w.weight.shape[0])
            m.weight.copy_(torch.from_numpy(w.weight))
            m.bias.copy_(torch.from_numpy(w.bias))
            args = (torch.from_numpy(w.x[None]),)
        else:
            nin = w.x.shape[0]
            m = torch.nn.LSTMCell(nin, w.hidden)
            m.weight_ih.copy_(torch.from_numpy(w.weight[:, :nin]))
            m.weight_hh.copy_(torch.from_numpy(w.weight[:, nin:]))
            m.bias_ih.copy_(torch.from_numpy(w.bias))
            m.bias_hh.zero_()
            args = (torch.from_numpy(w.x[None]),
                    (torch.from_numpy(w.h[None]), torch.from_numpy(w.c[None])))
    m.eval()

    def step():
        with torch.inference_mode():
            out = m(*args)
        if isinstance(out, tuple):
            return torch.cat(out, dim=1).numpy()
        return out.numpy()

    return step, f"eager, {torch.get_num_threads()} thread"


_BUILDERS = {"onnxruntime": _build_onnxruntime, "mnn": _build_mnn, "litert": _build_litert,
             "tvm": _build_tvm, "torch": _build_torch}


def time_calls(step: Callable[[], object], warmup: int, repeats: int,
               max_seconds: float) -> list[float]:
    """Milliseconds of each timed call of ``step`` after ``warmup`` untimed calls.

    Stops after ``repeats`` calls, or once ``max_seconds`` have passed and at least 5 were timed.
    """
    for _ in range(warmup):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter_ns()
        step()
        times.append((time.perf_counter_ns() - t0) / 1e6)
        if len(times) >= 5 and time.perf_counter() - start > max_seconds:
            break
    return times


def _load(d: Path, k: int, kind: str, name: str) -> Workload:
    cls = _KINDS[kind]
    keys = ("weight", "bias", "x", "h", "c") if cls is LstmCell else ("weight", "bias", "x")
    arrays = {key: np.load(d / f"w{k}_{key}.npy", allow_pickle=False) for key in keys}
    return cls(name, **arrays)


def _worker(d: Path) -> int:
    spec = json.loads((d / "spec.json").read_text())
    peer = spec["peer"]
    build = _BUILDERS[peer]
    for k, ws in enumerate(spec["workloads"]):
        w = _load(d, k, ws["kind"], ws["name"])
        rec: dict = {"k": k}
        try:
            t0 = time.perf_counter()
            step, note = build(w, d, spec)
            rec["build_s"] = round(time.perf_counter() - t0, 3)
            rec["note"] = note
            out = np.asarray(step(), dtype=np.float32)
            if isinstance(w, Conv3x3) and peer == "litert":
                out = out[0].transpose(2, 0, 1)
            np.save(d / f"out{k}.npy", out.reshape(_out_shape(w)) if out.size == np.prod(
                _out_shape(w)) else out)
            rec["times_ms"] = time_calls(step, spec["warmup"], spec["repeats"],
                                         spec["max_seconds"])
        except Exception as e:  # noqa: BLE001 - any failure of a peer becomes its row
            rec["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        with open(d / "results.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--worker":
        return _worker(Path(argv[1]))
    if argv:
        print("usage: python -m bench.peers   (prints which peers are installed)", file=sys.stderr)
        return 2
    for peer in PEERS:
        why = installed(peer)
        print(f"{peer:12s} {peer_version(peer) or '-':14s} {why or 'installed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
