"""``codesign compare`` on a linear layer: the dense engine and the layer's sparse engine (BCR,
or unstructured for any other sparse scheme) in RTL against the layer's int8 kernels on
aarch64, over random input vectors; see :mod:`codesign.compare` for what is checked and how
the two sides are compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codesign.compare import (
    ArmResult,
    Comparison,
    FpgaResult,
    Synth,
    _check_fmax,
    check_compare_layer,
    with_clock,
)

__all__ = ["compare_linear_layer", "linear_engines", "linear_engine_params", "matrix_engines",
           "matrix_engine_params", "engine_problem", "bcr_slice_memory"]


def matrix_engines(scheme: Any) -> list[str]:
    """The matrix engines a weight matrix pruned by ``scheme`` runs on, sparse first:
    ``["bcr", "dense"]`` for BCR, ``["dense"]`` for dense, ``["unstructured", "dense"]`` for
    any other sparse scheme (the unstructured engine runs any mask)."""
    from ir import BCR, Dense

    if isinstance(scheme, BCR):
        return ["bcr", "dense"]
    return ["dense"] if isinstance(scheme, Dense) else ["unstructured", "dense"]


def linear_engines(layer: Any) -> list[str]:
    """The matrix engines a linear layer runs on (:func:`matrix_engines` of its scheme), as
    :func:`mobile.layers.layer_kernels` picks the ARM kernels."""
    return matrix_engines(layer.scheme)


def _linear_matrix(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(qweight, mask)`` of a linear layer: int64 integer weights zero outside the mask (the
    weights :func:`mobile.layers.layer_kernels` gives the ARM kernels), boolean mask."""
    mask = np.asarray(layer.tensors["mask"]) != 0
    return np.where(mask, np.asarray(layer.tensors["qweight"], dtype=np.int64), 0), mask


def bcr_slice_memory(bcr: Any, lanes: int, slices: int = 1) -> tuple[int, int]:
    """``(max_blocks, max_value_words)`` a BCR engine of ``slices`` slices with ``lanes`` lanes
    each needs for the ``ir.bcr.BCRMatrix`` ``bcr``: the stored blocks and value words of its
    largest slice (:func:`hw.bcr.pack_bcr`; with one slice, the matrix's blocks and
    :func:`hw.bcr.bcr_items`), at least 1 each (the memories' depths are per slice)."""
    from hw.bcr import pack_bcr

    img = pack_bcr(bcr, lanes, slices)
    banks = [img.bank(s) for s in range(slices)]
    return (max(1, *(b.blocks for b in banks)), max(1, *(len(b.values) for b in banks)))


def matrix_engine_params(qw: np.ndarray, mask: np.ndarray, scheme: Any, weight_bits: int,
                         engine: str, lanes: int, slices: int = 1) -> dict[str, Any]:
    """Constructor keywords (besides ``lanes``) of ``engine`` with memories sized to the integer
    matrix ``qw`` (zero outside the boolean ``mask``) pruned by ``scheme``: its rows and
    columns, 8-bit activations, ``weight_bits``; BCR: the scheme's block, ``max_blocks`` the
    stored blocks and ``max_value_words`` their value words on ``lanes`` lanes (of the largest
    slice, :func:`bcr_slice_memory`) and ``slices`` when more than 1; unstructured: the
    scheme's index bits (else 4, as ``codesign simulate``) and ``max_entries`` the busiest
    lane's entries (``slices`` is for the BCR engine only and ignored by the others). Also the
    keywords of :mod:`sim`'s ``emit_*`` and ``run_*_batch``."""
    from ir.bcr import encode_bcr
    from ir.csr import encode_csc_lanes

    rows, cols = qw.shape
    params: dict[str, Any] = {"weight_bits": weight_bits, "act_bits": 8,
                              "max_rows": rows, "max_cols": cols}
    if engine == "bcr":
        block = tuple(scheme.block)
        enc = encode_bcr(qw, block, mask)
        blocks, words = bcr_slice_memory(enc, lanes, slices)
        params.update(block=block, max_blocks=blocks, max_value_words=words)
        if slices > 1:
            params["slices"] = slices
    elif engine == "unstructured":
        index_bits = int(getattr(scheme, "index_bits", 4))
        enc = encode_csc_lanes(qw, lanes, index_bits)
        params.update(index_bits=index_bits,
                      max_entries=max(1, int(enc.lane_value_counts.max(initial=0))))
    return params


def linear_engine_params(layer: Any, engine: str, lanes: int, slices: int = 1
                         ) -> dict[str, Any]:
    """:func:`matrix_engine_params` of a linear ``layer``'s weight matrix."""
    qw, mask = _linear_matrix(layer)
    return matrix_engine_params(qw, mask, layer.scheme, layer.quant.bits, engine, lanes, slices)


def engine_problem(engine: str, lanes: int, params: dict[str, Any]) -> str | None:
    """Why ``engine`` built with ``lanes`` and ``params`` cannot be (a parameter out of
    range, the cycle counter, more memory bits than :func:`hw.emit.emit_verilog` converts),
    or None. ``engine``: a matrix engine or ``"pattern"``."""
    from hw.bcr import BCRMatVec
    from hw.dense import DenseMatVec
    from hw.emit import memory_bits_problem
    from hw.pattern import PatternConv
    from hw.unstructured import UnstructuredMatVec

    cls = {"dense": DenseMatVec, "bcr": BCRMatVec, "unstructured": UnstructuredMatVec,
           "pattern": PatternConv}[engine]
    try:
        component = cls(lanes, **params)
    except (TypeError, ValueError) as exc:
        return str(exc)
    component._MustUse__silence = True      # only its memory map is used (as hw.rnn does)
    problem = memory_bits_problem(component.memory_map())
    return None if problem is None else problem.replace("The engine's", "its")


def _linear_engine_problem(layer: Any, engine: str, lanes: int, slices: int = 1
                           ) -> str | None:
    """Why ``engine`` sized to ``layer`` cannot be built (:func:`engine_problem`), or None."""
    return engine_problem(engine, lanes, linear_engine_params(layer, engine, lanes, slices))


def _linear_model(engine: str, qw: np.ndarray, mask: np.ndarray, x: np.ndarray, lanes: int,
                  params: dict[str, Any]) -> list[int]:
    """The engine's cycle model for each row of ``x``."""
    from hw.bcr import bcr_cycles
    from hw.dense import dense_cycles
    from hw.unstructured import unstructured_cycles
    from ir.bcr import encode_bcr
    from ir.csr import encode_csc_lanes

    if engine == "dense":
        return [dense_cycles(*qw.shape, lanes)] * len(x)
    if engine == "bcr":
        enc = encode_bcr(qw, params["block"], mask)
        return [bcr_cycles(enc, lanes, params.get("slices", 1))] * len(x)
    enc = encode_csc_lanes(qw, lanes, params["index_bits"])
    return [unstructured_cycles(enc, v, lanes) for v in x]


def _run_linear_engine(engine: str, qw: np.ndarray, mask: np.ndarray, x: np.ndarray,
                       lanes: int, params: dict[str, Any], simulator: str,
                       cache_dir: str | Path | None) -> tuple[np.ndarray, list[int], Path]:
    """RTL run of every vector of ``x`` on ``engine`` built with ``params``: ``(int32 outputs
    (vectors, rows), cycles per vector, the Verilog that ran)``."""
    from sim.bcr import emit_bcr, run_bcr_batch
    from sim.dense import emit_dense, run_dense_batch
    from sim.unstructured import emit_unstructured, run_unstructured_batch

    emit, run = {"dense": (emit_dense, run_dense_batch), "bcr": (emit_bcr, run_bcr_batch),
                 "unstructured": (emit_unstructured, run_unstructured_batch)}[engine]
    job = (qw, mask, x) if engine == "bcr" else (qw, x)
    result = run([job], lanes=lanes, simulator=simulator, cache_dir=cache_dir, **params)[0]
    verilog, _ = emit(lanes, cache_dir=cache_dir, **params)
    return result.outputs, list(result.cycles), Path(verilog)


def _linear_fpga(engine: str, layer: Any, qw: np.ndarray, mask: np.ndarray, x: np.ndarray,
                 want: np.ndarray, bias: np.ndarray | None, *, lanes: int, simulator: str,
                 cache_dir: str | Path | None, slices: int = 1
                 ) -> tuple[FpgaResult, np.ndarray]:
    """One engine on every vector, checked: ``(result without a clock, the RTL's outputs
    plus the bias)``; ``want`` is ``ir.golden.linear`` with the bias."""
    from ir.golden import wrap32

    params = linear_engine_params(layer, engine, lanes, slices)
    outputs, cycles, verilog = _run_linear_engine(engine, qw, mask, x, lanes, params,
                                                  simulator, cache_dir)
    with_bias = wrap32(outputs.astype(np.int64) + (0 if bias is None else bias))
    model = _linear_model(engine, qw, mask, x, lanes, params)
    rows = max(1, qw.shape[0])
    serial = _linear_model(engine, qw, mask, np.ones((1, qw.shape[1]), np.int64), rows, params)
    result = FpgaResult(engine, lanes, len(x), int(sum(cycles)), int(sum(model)), 0,
                        bool(np.array_equal(with_bias, want)), str(verilog),
                        params.get("block"), unit="vector", cycles_each=tuple(cycles),
                        model_each=tuple(int(m) for m in model), serial_cycles=int(serial[0]),
                        slices=params.get("slices"))
    return result, with_bias


def arm_kernel(role: str, kind: str, params: dict[str, Any], x: np.ndarray,
               rtl: Sequence[np.ndarray], *, seed: int, mobile_cache: Path | None,
               echo: Callable[[str], None], unit: str = "vector") -> ArmResult:
    """One aarch64 kernel of a linear or conv2d layer: built, checked against ``ir.golden``,
    run on every input of ``x`` (vectors, or feature maps with ``unit="image"``) under qemu
    (its outputs must equal each of ``rtl``, every engine's outputs plus the bias; an empty
    ``rtl`` matches nothing) and costed on the first input."""
    from mobile.build import build_kernel
    from mobile.check import check_kernel
    from mobile.cost import kernel_cost

    echo(f"  ARM {kind} kernel: aarch64 build, qemu check and trace ...")
    k = build_kernel(kind, target="aarch64", cache_dir=mobile_cache, **params)
    chk = check_kernel(k, seed=seed)
    got = np.stack([k(v)[0].astype(np.int64) for v in x])
    same = bool(rtl) and all(np.array_equal(got, r) for r in rtl)
    cost = kernel_cost(k, (x[0],))
    return ArmResult(role, kind, chk.ok, chk.message, bool(same), cost.instructions,
                     dict(cost.cycles), int(k.text_bytes), unit=unit)


def compare_linear_layer(layer: Any, *, lanes: int = 8, vectors: int = 4, seed: int = 0,
                         simulator: str = "verilator", synth: Synth | None = None,
                         fmax: dict[str, float] | None = None, device: str | None = None,
                         cache_dir: str | Path | None = None, mobile_cache: Path | None = None,
                         slices: int = 1, echo: Callable[[str], None] = lambda s: None
                         ) -> Comparison:
    """Run one linear bundle layer on the FPGA engines and the ARM kernels (module docstring).

    Parameters
    ----------
    layer : ir.Layer
        Checked by :func:`check_compare_layer`.
    lanes, vectors, seed, simulator
        Engine lanes, how many random int8 input vectors (uniform in [-127, 127], drawn from
        ``seed``) run on both sides, the RTL simulator.
    slices : int, optional
        Slices of the BCR engine (a BCR layer's; 1 to :data:`hw.bcr.MAX_SLICES`, default 1),
        each with ``lanes`` lanes and its memories sized to its share of the layer.
    synth : callable, optional
        ``synth(engine, verilog) -> (fmax_mhz or None, source, resources or None, report path
        or None, note)`` with ``engine`` one of :func:`linear_engines`: places the engine.
    fmax : dict, optional
        Given Fmax per engine (``{"dense": MHz, "bcr" or "unstructured": MHz}``; ``"sparse"``
        stands for the layer's sparse engine); used instead of ``synth``.
    device : str, optional
        The part ``synth`` places on, recorded.
    cache_dir, mobile_cache
        The simulator build cache and the ARM build cache.
    echo
        Progress lines.

    Returns
    -------
    Comparison
        ``op == "linear"``, one :class:`FpgaResult` per engine (sparse first), one
        :class:`ArmResult` per kernel; ``ok`` when every RTL output plus the bias equals
        ``ir.golden.linear``, every vector's cycles equal the cycle model, every kernel passes
        its check and equals the RTL on every vector.

    Raises
    ------
    ValueError
        The layer is refused (:func:`check_compare_layer`), ``vectors`` is below 1, or a given
        Fmax is no positive finite number.
    """
    from ir.golden import linear
    from mobile.layers import layer_kernels

    check_compare_layer(layer, lanes, slices=slices)
    if isinstance(vectors, bool) or not isinstance(vectors, int) or vectors < 1:
        raise ValueError(f"vectors must be a positive integer, not {vectors!r}")
    _check_fmax(fmax, "{} engine")
    kernels = layer_kernels(layer, "int8")
    qw, mask = _linear_matrix(layer)
    bias = kernels[-1][2]["bias"]
    bias = None if bias is None else np.asarray(bias, dtype=np.int64)
    x = np.random.default_rng(seed).integers(-127, 128, size=(vectors, qw.shape[1]),
                                             dtype=np.int64)
    want = linear(qw, x, bias)
    fpga, rtl = [], []
    for engine in linear_engines(layer):
        echo(f"  FPGA {engine} engine: RTL ({simulator}), {vectors} vectors ...")
        result, with_bias = _linear_fpga(engine, layer, qw, mask, x, want, bias, lanes=lanes,
                                         simulator=simulator, cache_dir=cache_dir,
                                         slices=slices)
        rtl.append(with_bias)
        fpga.append(with_clock(result, fmax, synth, device, echo))
    arm = [arm_kernel(role, kind, params, x, rtl, seed=seed, mobile_cache=mobile_cache,
                      echo=echo) for role, kind, params in kernels]
    block = tuple(layer.scheme.block) if "bcr" in linear_engines(layer) else None
    return Comparison(layer.name, "linear", qw.shape[1], qw.shape[0], layer.scheme.kind,
                      float(np.count_nonzero(mask)) / max(1, mask.size), layer.quant.bits,
                      vectors, fpga, arm, device, seed, block, simulator)
