"""The closed loop: compress -> measure each layer's break-even in RTL -> re-plan -> compress again.

A sparse engine only pays when a layer is pruned past its *break-even ratio*: below it the index
overhead makes the sparse engine slower than the dense engine with the same lanes and bits.
:func:`run_loop` compresses a trained model by a first plan (one engine's scheme on every layer
the engine can run), measures each such layer's break-even on that engine in RTL simulation
(:func:`sim.breakeven.find_breakeven`), and re-plans as ADMM-NN does:

* a layer whose sparsity (the larger of its target and what its first compression reached:
  the pattern scheme reaches 5/9 at any lower target) is at or above its break-even keeps its
  target (``kept``);
* a layer below it is pushed to ``break_even + margin`` (``pushed``), provided the model's
  accuracy after compressing again stays within ``tolerance`` percentage points of the first
  compression's;
* a layer that cannot be pushed (no break-even on the grid, ``break_even + margin`` above
  ``cap``, or the pushed plan loses too much accuracy) is left dense (``dense``): it runs on
  the dense engine.

The accuracy behind these decisions is whatever ``compress_fn`` reports (``accuracy_after``):
give it a *validation* split held out of the training data (:func:`loop_loaders`), not the test
set, and pass ``test_fn`` to have the test accuracy of each compression reported beside it.

Then it compresses again from the same trained weights with the new plan. Every break-even is
written into the final bundle's manifest (``Layer.break_even``).

Given the engines' Fmax (``fmax_mhz``, e.g. from ``codesign synth`` reports), every break-even
above is the *time* break-even (sparse cycles / sparse Fmax <= dense cycles / dense Fmax): a
sparse engine that closes timing lower than the dense one must be pruned further to pay.

Cycles per layer come from the engines' cycle models, which equal the RTL cycle counts exactly
(tested for every engine); :func:`check_in_rtl` re-runs the final layers in RTL to show it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["ENGINE_SCHEMES", "PUSH_ORDERS", "Decision", "LoopResult", "initial_plan", "decide",
           "plan_from", "layer_cycles", "model_cycles", "measure_breakevens", "run_loop",
           "check_in_rtl", "validation_split", "loop_loaders", "push_gain"]

#: The pruning scheme each sparse engine runs.
ENGINE_SCHEMES = {"bcr": "bcr", "unstructured": "unstructured", "pattern": "pattern"}

#: Highest sparsity the loop pushes a layer to; above it the layer is left dense.
DEFAULT_CAP = 0.98
#: Orders in which :func:`run_loop` tries the pushes when not all of them fit the tolerance:
#: ``"cycles"``: the push that saves the most engine cycles first (:func:`push_gain`);
#: ``"smallest"``: the smallest push (new sparsity minus target) first.
PUSH_ORDERS = ("cycles", "smallest")
#: Fraction of each class of the training split that :func:`loop_loaders` holds out for the
#: loop's accept/refuse decisions.
DEFAULT_VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Decision:
    """What the loop decided for one layer.

    Attributes
    ----------
    layer, op : str
        The layer and its op.
    target : float or None
        The first plan's sparsity (``None``: the layer was dense: the engine cannot run it).
    break_even : float or None
        The break-even sparsity measured in RTL (``None``: sparse never beat dense on the grid,
        or not measured).
    storage_break_even : float or None
        Sparsity from which weights plus index take no more bits than the dense weights.
    rtl_runs : int
        RTL simulations behind ``break_even``.
    action : str
        ``"kept"``, ``"pushed"``, ``"dense"`` (see the module docstring) or ``"not run"``
        (a layer the engine cannot run: dense in both plans).
    sparsity : float or None
        The new plan's sparsity; ``None`` when the layer is dense.
    """

    layer: str
    op: str
    target: float | None
    break_even: float | None
    storage_break_even: float | None
    rtl_runs: int
    action: str
    sparsity: float | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LoopResult:
    """Everything :func:`run_loop` produced.

    ``first`` and ``final`` are the two :class:`pruning.compress.CompressResult`; ``final.bundle``
    carries the break-evens. ``rejected`` is True when the pushed plan lost more than the
    tolerance and some of the pushed layers were left dense instead. ``cycles_before``/``cycles_after``
    map layer name to (engine, cycles) for one input of the model. ``test_first``/``test_final``
    are ``test_fn``'s accuracy of the two compressed models (``None`` without ``test_fn``).
    ``fmax_mhz`` is the (sparse, dense) Fmax the break-evens were measured with, if any.
    """

    first: Any
    final: Any
    plan_before: Any
    plan_after: Any
    decisions: tuple[Decision, ...]
    breakevens: Mapping[str, Any]
    cycles_before: Mapping[str, tuple[str, int]]
    cycles_after: Mapping[str, tuple[str, int]]
    rejected: bool
    tried: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    test_first: float | None = None
    test_final: float | None = None
    fmax_mhz: tuple[float, float] | None = None

    def time_us(self, cycles: Mapping[str, tuple[str, int]]) -> float | None:
        """Microseconds of one model input on ``cycles`` (``cycles_before``/``cycles_after``):
        each layer's cycles at the Fmax of the engine it runs on; None without Fmax."""
        if self.fmax_mhz is None:
            return None
        fs, fd = self.fmax_mhz
        return float(sum(c / (fd if engine == "dense" else fs) for engine, c in cycles.values()))

    def table(self) -> list[dict[str, Any]]:
        """One row per layer: plan before/after, break-even, RTL runs, cycles before/after."""
        rows = []
        for d in self.decisions:
            eb, cb = self.cycles_before.get(d.layer, ("-", None))
            ea, ca = self.cycles_after.get(d.layer, ("-", None))
            rows.append({"layer": d.layer, "op": d.op,
                         "target": _pct(d.target), "break_even": _pct(d.break_even),
                         "rtl_runs": d.rtl_runs, "action": d.action,
                         "new": _pct(d.sparsity), "engine_before": eb, "cycles_before": cb,
                         "engine_after": ea, "cycles_after": ca})
        return rows


def _pct(value: float | None) -> str:
    return "dense" if value is None else f"{100 * value:.1f}%"


def _block_fits(module: Any, block: tuple[int, int]) -> bool:
    from pruning.plan import weight_params

    return all(block[0] <= w.shape[0] and block[1] <= w[0].numel()
               for w in weight_params(module).values())


def eligible(module: Any, engine: str, block: tuple[int, int] = (8, 16)) -> bool:
    """Whether ``engine`` can run the layer ``module`` (conv2d/linear; 3x3 conv for pattern)."""
    from torch import nn

    if engine == "pattern":
        return (isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (3, 3)
                and module.groups == 1 and module.stride[0] == module.stride[1] in (1, 2)
                and module.padding[0] == module.padding[1] in (0, 1))
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        return False
    if isinstance(module, nn.Conv2d) and module.groups != 1:
        return False
    return engine != "bcr" or _block_fits(module, block)


def _rule(engine: str, sparsity: float | None, bits: int, block: tuple[int, int],
          index_bits: int, library_size: int) -> dict[str, Any]:
    if sparsity is None:
        return {"scheme": "dense", "bits": bits}
    rule: dict[str, Any] = {"scheme": ENGINE_SCHEMES[engine], "sparsity": float(sparsity),
                            "bits": bits}
    if engine == "bcr":
        rule["block"] = list(block)
    elif engine == "unstructured":
        rule |= {"scope": "layer", "index_bits": index_bits}
    else:
        rule["library_size"] = library_size
    return rule


def plan_from(sparsities: Mapping[str, float | None], engine: str, *, bits: int,
              block: tuple[int, int] = (8, 16), index_bits: int = 4, library_size: int = 8):
    """A :class:`pruning.plan.Plan` with one rule per layer: ``engine``'s scheme at the given
    sparsity, or dense (quantized to ``bits``) where the sparsity is ``None``."""
    from pruning.plan import Plan

    return Plan.from_dict({"layers": {
        name: _rule(engine, s, bits, block, index_bits, library_size)
        for name, s in sparsities.items()}})


def initial_plan(model: Any, engine: str, sparsity: float, *, bits: int,
                 block: tuple[int, int] = (8, 16), index_bits: int = 4,
                 library_size: int = 8) -> dict[str, float | None]:
    """The first plan's per-layer sparsities: ``sparsity`` on every layer ``engine`` can run,
    ``None`` (dense) on the others. ``ValueError`` if the engine can run no layer."""
    from pruning.plan import prunable_layers

    if engine not in ENGINE_SCHEMES:
        raise ValueError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINE_SCHEMES)}")
    out = {name: (sparsity if eligible(m, engine, block) else None)
           for name, m in prunable_layers(model).items()}
    if all(v is None for v in out.values()):
        raise ValueError(f"the {engine} engine can run no layer of this model")
    return out


def used_ratio(breakeven: Any) -> float | None:
    """The break-even the loop decides by: the time break-even (cycles / Fmax) when the
    measurement was given the engines' Fmax, else the cycle break-even."""
    if getattr(breakeven, "fmax_mhz", None) is not None:
        return breakeven.time_ratio
    return breakeven.ratio


def decide(targets: Mapping[str, float | None], breakevens: Mapping[str, Any],
           ops: Mapping[str, str], *, margin: float = 0.02, cap: float = DEFAULT_CAP,
           reached: Mapping[str, float] | None = None) -> list[Decision]:
    """The re-planning rule (module docstring) applied to each layer.

    ``breakevens`` maps layer name to an object with ``ratio``, ``storage_ratio`` and
    ``rtl_runs`` (a :class:`sim.breakeven.BreakEven`); a break-even measured with the engines'
    Fmax decides by its time break-even (:func:`used_ratio`). A pushed layer's new sparsity is
    ``break_even + margin`` rounded up to 0.1%. ``reached`` maps a layer to the sparsity its
    first compression has (default: its target): a layer is kept when that, rounded to 9
    digits as break-evens are, is at least its break-even. A scheme can reach more than its
    target: the pattern scheme keeps at most 4 of 9 weights (sparsity 5/9) at any target.
    """
    out = []
    for name, target in targets.items():
        be = breakevens.get(name)
        ratio = None if be is None else used_ratio(be)
        storage = None if be is None else be.storage_ratio
        runs = 0 if be is None else int(be.rtl_runs)
        has = None if target is None else round(max(target, (reached or {}).get(name, target)), 9)
        if target is None:
            out.append(Decision(name, ops[name], None, ratio, storage, runs, "not run", None))
        elif be is not None and ratio is not None and has >= ratio:
            out.append(Decision(name, ops[name], target, ratio, storage, runs, "kept", target))
        elif ratio is None or ratio + margin > cap:
            out.append(Decision(name, ops[name], target, ratio, storage, runs, "dense", None))
        else:
            pushed = math.ceil((ratio + margin) * 1000 - 1e-9) / 1000
            out.append(Decision(name, ops[name], target, ratio, storage, runs, "pushed",
                                min(pushed, cap)))
    return out


# -- cycles --------------------------------------------------------------------------------------
def layer_cycles(layer: Any, engine: str, lanes: int, positions: int = 1) -> int:
    """Cycles of one model input through ``layer`` on ``engine`` (``"dense"`` or the layer's
    sparse engine), from the engines' exact cycle models.

    ``positions`` is the number of output positions of a conv2d layer (H_out * W_out), each one
    matrix-vector product on the matrix engines; the pattern engine's model covers the whole
    output, so there ``positions`` is the output shape's product and the model is called once
    with an output of that many positions. The unstructured engine's cycles are taken for
    activations that are all non-zero (its worst case).
    """
    from ir.schemes import matrix_view

    qw = np.asarray(layer.tensors["qweight"], dtype=np.int64)
    mask = np.asarray(layer.tensors["mask"]).astype(bool)
    if engine == "dense":
        from hw.dense import dense_cycles

        rows, cols = matrix_view(qw).shape
        return dense_cycles(rows, cols, lanes) * positions
    if engine == "bcr":
        from hw.bcr import bcr_cycles
        from ir.bcr import encode_bcr

        w = matrix_view(qw)
        return bcr_cycles(encode_bcr(w, tuple(layer.scheme.block), mask=matrix_view(mask)),
                          lanes) * positions
    if engine == "unstructured":
        from hw.unstructured import unstructured_cycles
        from ir.csr import encode_csc_lanes

        w = matrix_view(qw) * matrix_view(mask)
        enc = encode_csc_lanes(w, lanes, getattr(layer.scheme, "index_bits", 4))
        return unstructured_cycles(enc, np.ones(w.shape[1], dtype=np.int64), lanes) * positions
    if engine == "pattern":
        from hw.pattern import pattern_cycles
        from ir.pattern import encode_pattern

        enc = encode_pattern(qw, layer.scheme.library(), mask=mask)
        return pattern_cycles(enc, (positions, 1), lanes)
    raise ValueError(f"unknown engine {engine!r}")


def model_cycles(bundle: Any, engine: str, lanes: int, positions: Mapping[str, int]
                 ) -> dict[str, tuple[str, int]]:
    """Per layer of ``bundle`` (linear/conv2d): the engine it runs on (``engine`` when the layer
    has that engine's scheme, else ``"dense"``) and its cycles for one model input."""
    out = {}
    for layer in bundle.layers:
        if layer.op not in ("linear", "conv2d") or layer.quant is None:
            continue
        run_on = engine if layer.scheme.kind == ENGINE_SCHEMES[engine] else "dense"
        out[layer.name] = (run_on, layer_cycles(layer, run_on, lanes, positions.get(layer.name, 1)))
    return out


def output_positions(model: Any) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Run one zero input of ``model.input_shape`` and record, per conv2d layer, its output
    positions (H_out * W_out) and its input image size (H, W)."""
    import torch
    from torch import nn

    positions: dict[str, int] = {}
    images: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            def hook(mod, inputs, output, name=name):
                positions[name] = int(output.shape[-2] * output.shape[-1])
                images[name] = (int(inputs[0].shape[-2]), int(inputs[0].shape[-1]))
            hooks.append(module.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *model.input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return positions, images


# -- break-even ----------------------------------------------------------------------------------
def measure_breakevens(bundle: Any, names: Iterable[str], config: Any, *,
                       images: Mapping[str, tuple[int, int]], seeds: int = 3,
                       simulator: str = "verilator", store: Any = None,
                       echo: Callable[[str], None] = print,
                       fmax_mhz: tuple[float, float] | None = None) -> dict[str, Any]:
    """:func:`sim.breakeven.find_breakeven` for each named layer of ``bundle`` on ``config``
    (with ``fmax_mhz`` = (sparse, dense) MHz, the time break-even too).

    Conv layers are given their input image size from ``images`` (the pattern engine needs
    it; the matrix engines run the layer's im2col matrix, one product per output position).
    """
    from sim.breakeven import LayerSpec, find_breakeven

    out = {}
    for name in names:
        layer = bundle.layer(name)
        spec = LayerSpec.from_layer(layer, image=images.get(name))
        echo(f"break-even of {name} ({'x'.join(map(str, spec.shape))}) on the {config.engine} "
             f"engine, {config.lanes} lanes, {config.weight_bits}-bit, in RTL ({simulator}) ...")
        be = find_breakeven(spec, config, seeds=seeds, simulator=simulator, store=store,
                            fmax_mhz=fmax_mhz)
        out[name] = be
        ratio = "never" if be.ratio is None else f"{100 * be.ratio:.1f}%"
        in_time = ""
        if fmax_mhz is not None:
            t = "never" if be.time_ratio is None else f"{100 * be.time_ratio:.1f}%"
            in_time = f", in time {t} at {fmax_mhz[0]:g}/{fmax_mhz[1]:g} MHz"
        echo(f"  {name}: break-even {ratio}{in_time} ({be.rtl_runs} RTL runs)")
    return out


def with_break_evens(bundle: Any, breakevens: Mapping[str, Any]) -> Any:
    """``bundle`` with each measured layer's ``break_even`` recorded (``None`` stays unknown:
    a layer whose sparse engine never beat dense on the grid records 1.0)."""
    for name, be in breakevens.items():
        ratio = used_ratio(be)
        value = 1.0 if ratio is None else float(ratio)
        bundle = bundle.with_layer(replace(bundle.layer(name), break_even=value))
    return bundle


# -- data: a validation split for the decisions ------------------------------------------------
def validation_split(dataset: str, fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
                     ) -> tuple[Any, Any]:
    """Split ``dataset``'s training split into (train, validation) datasets.

    From each class, ``round(fraction * count)`` samples (at least one when ``fraction > 0``)
    drawn with ``numpy.random.default_rng(seed)`` go to validation; both parts keep the training
    split's sample order. The same arguments give the same split on every run. The test split
    is untouched, so the loop can decide on validation and report test accuracy apart.

    Raises
    ------
    ValueError
        If ``fraction`` is not in [0, 1) or leaves a class with no training sample.
    """
    from pruning import data as pdata

    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 <= fraction < 1:
        raise ValueError(f"Validation fraction must be in [0, 1), not {fraction!r}")
    full = pdata.load(dataset, "train")
    labels = full.labels.numpy()
    rng = np.random.default_rng(seed)
    val = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = 0 if fraction == 0 else max(1, int(round(fraction * len(idx))))
        if n >= len(idx):
            raise ValueError(f"Validation fraction {fraction:g} leaves class {int(c)} of "
                             f"{dataset} with no training sample")
        val[rng.choice(idx, size=n, replace=False)] = True

    def part(keep: np.ndarray, split: str) -> Any:
        sel = np.flatnonzero(keep)
        return pdata.OfflineDataset(dataset, split, full.inputs[sel], full.labels[sel])

    return part(~val, "train"), part(val, "validation")


def loop_loaders(dataset: str, *, batch_size: int = 64, seed: int = 0,
                 val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = 0
                 ) -> tuple[Any, Any, Any]:
    """(train, validation, test) loaders for the loop: :func:`validation_split` of the training
    split (``split_seed``), training batches shuffled by a generator seeded with ``seed``;
    validation and test in order. With ``val_fraction == 0`` there is no held-out split and the
    validation loader is the test loader (the decisions then see the test set)."""
    import torch
    from torch.utils.data import DataLoader

    from pruning import data as pdata

    test = pdata.loader(dataset, "test", batch_size=512)
    if val_fraction == 0:
        return pdata.loader(dataset, "train", batch_size=batch_size, seed=seed), test, test
    train_ds, val_ds = validation_split(dataset, val_fraction, split_seed)
    train = DataLoader(train_ds, batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed), num_workers=0)
    return train, DataLoader(val_ds, batch_size=512, shuffle=False, num_workers=0), test


# -- the loop ------------------------------------------------------------------------------------
def push_gain(breakeven: Any, sparsity: float) -> float:
    """Engine cycles a layer saves by running sparse at ``sparsity`` instead of dense, estimated
    from its break-even measurement: the mean of ``dense - sparse`` RTL cycles over the points at
    the smallest measured ratio at or above ``sparsity`` (the largest ratio if none is). 0 when
    the measurement has no points. With the engines' Fmax (``breakeven.fmax_mhz``) the gain is
    in microseconds: ``dense / Fmax_dense - sparse / Fmax_sparse``."""
    points = list(getattr(breakeven, "points", ()) or ())
    if not points:
        return 0.0
    ratios = sorted({p.ratio for p in points})
    above = [r for r in ratios if r >= sparsity - 1e-9]
    at = above[0] if above else ratios[-1]
    chosen = [p for p in points if p.ratio == at]
    fmax = getattr(breakeven, "fmax_mhz", None)
    if fmax is not None:
        fs, fd = fmax
        return float(np.mean([p.dense_cycles / fd - p.sparse_cycles / fs for p in chosen]))
    return float(np.mean([p.dense_cycles - p.sparse_cycles for p in chosen]))


def run_loop(model: Any, targets: Mapping[str, float | None], compress_fn: Callable[..., Any],
             config: Any, *, bits: int, margin: float = 0.02, cap: float = DEFAULT_CAP,
             tolerance: float = 0.5, seeds: int = 3, simulator: str = "verilator",
             store: Any = None, echo: Callable[[str], None] = print,
             test_fn: Callable[[Any], float] | None = None,
             push_order: str = "cycles",
             fmax_mhz: tuple[float, float] | None = None) -> LoopResult:
    """Compress -> break-even in RTL -> re-plan -> compress again (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The trained dense model. It is not modified: each compression starts from a copy.
    targets : mapping of layer name to sparsity or None
        The first plan (:func:`initial_plan`).
    compress_fn : callable
        ``compress_fn(model, plan) -> CompressResult`` (``pruning.compress.compress`` with the
        loaders and training settings bound). Its ``accuracy_after`` decides: bind a validation
        loader as its evaluation loader (:func:`loop_loaders`), not the test set.
    config : sim.breakeven.EngineConfig
        The engine, lanes and bits every break-even is measured on.
    bits : int
        Weight bits of every layer (dense layers are quantized too).
    margin, cap : float
        A pushed layer goes to ``break_even + margin``; above ``cap`` it is left dense.
    tolerance : float
        Accuracy (percentage points) the pushed plan may lose against the first compression.
        If pushing every layer below its break-even loses more, the layers are pushed in the
        ``push_order`` and a bisection finds the longest such prefix that stays within the
        tolerance; the other layers are left dense (``LoopResult.tried`` lists the compressions
        tried).
    test_fn : callable, optional
        ``test_fn(compressed_model) -> accuracy``, called on every compressed model; reported
        (``LoopResult.test_first``/``test_final``, ``tried``), never used to decide.
    push_order : {"cycles", "smallest"}
        :data:`PUSH_ORDERS`.
    fmax_mhz : (float, float), optional
        Fmax of the sparse and the dense engine (``codesign synth``): the break-evens are then
        those of time (cycles / Fmax), and ``cycles`` orders pushes by the time they save.
    """
    from pruning.plan import layer_op as op_of
    from pruning.plan import prunable_layers

    if push_order not in PUSH_ORDERS:
        raise ValueError(f"unknown push order {push_order!r}; allowed: {', '.join(PUSH_ORDERS)}")
    engine = config.engine
    kw = {"bits": bits, "block": tuple(config.block), "index_bits": config.index_bits}
    ops = {n: op_of(m) for n, m in prunable_layers(model).items()}
    positions, images = output_positions(model)

    def run(plan: Any) -> tuple[Any, float | None]:
        m = copy.deepcopy(model)
        res = compress_fn(m, plan)
        return res, (None if test_fn is None else float(test_fn(m)))

    plan_before = plan_from(targets, engine, **kw)
    echo(f"compressing with the first plan ({engine} scheme on "
         f"{sum(v is not None for v in targets.values())} layers) ...")
    first, test_first = run(plan_before)
    measured = [n for n, s in targets.items() if s is not None]
    breakevens = measure_breakevens(first.bundle, measured, config, images=images, seeds=seeds,
                                    simulator=simulator, store=store, echo=echo,
                                    fmax_mhz=fmax_mhz)
    reached = {x.name: 1.0 - x.stats.density for x in first.bundle.layers if x.name in targets}
    decisions = decide(targets, breakevens, ops, margin=margin, cap=cap, reached=reached)
    tried = [{"plan": "first", "accuracy": first.accuracy_after, "test_accuracy": test_first,
              "pushed": []}]

    def lost(result: Any) -> float:
        if first.accuracy_after is None or result.accuracy_after is None:
            return 0.0
        return 100 * (first.accuracy_after - result.accuracy_after)

    def attempt(push: list[str]) -> tuple[Any, list[Decision], float | None]:
        ds = [replace(d, action="dense", sparsity=None)
              if d.action == "pushed" and d.layer not in push else d for d in decisions]
        res, test = run(plan_from({d.layer: d.sparsity for d in ds}, engine, **kw))
        tried.append({"plan": f"{len(push)} pushed", "accuracy": res.accuracy_after,
                      "test_accuracy": test, "pushed": list(push),
                      "lost_pp": round(lost(res), 3)})
        return res, ds, test

    # Layers to push, in the push order: if pushing all of them loses more than the tolerance,
    # bisect for the longest prefix that does not (the rest are left dense).
    pushes = [d for d in decisions if d.action == "pushed"]
    if push_order == "cycles":
        gains = {d.layer: push_gain(breakevens.get(d.layer), d.sparsity) for d in pushes}
        pushes.sort(key=lambda d: (-gains[d.layer], d.sparsity - d.target, d.layer))
    else:
        pushes.sort(key=lambda d: (d.sparsity - d.target, d.layer))
    order = [d.layer for d in pushes]
    rejected = False
    test_final = test_first
    if all(d.action in ("kept", "not run") for d in decisions):
        final = first
    else:
        echo(f"compressing again with the plan the break-evens changed ({len(order)} layer(s) "
             f"pushed: {', '.join(order) or 'none'}) ...")
        final, final_decisions, test_final = attempt(order)
        if order and lost(final) > tolerance:
            rejected = True
            echo(f"pushing all loses {lost(final):.2f} pp (> {tolerance} pp): searching for the "
                 "pushes that fit the tolerance, the others left dense ...")
            lo, hi, best = 0, len(order) - 1, None
            while lo < hi:
                mid = (lo + hi + 1) // 2
                got = attempt(order[:mid])
                if lost(got[0]) <= tolerance:
                    lo, best = mid, got
                else:
                    hi = mid - 1
            final, final_decisions, test_final = (best if best is not None and lo > 0
                                                  else attempt([]))
        decisions = final_decisions
    new = {d.layer: d.sparsity for d in decisions}
    bundle = with_break_evens(final.bundle, breakevens)
    final = replace(final, bundle=bundle)
    lanes = config.lanes
    return LoopResult(first=first, final=final, plan_before=plan_before,
                      plan_after=plan_from(new, engine, **kw), decisions=tuple(decisions),
                      breakevens=breakevens,
                      cycles_before=model_cycles(first.bundle, engine, lanes, positions),
                      cycles_after=model_cycles(bundle, engine, lanes, positions),
                      rejected=rejected, tried=tuple(tried), test_first=test_first,
                      test_final=test_final, fmax_mhz=fmax_mhz)


def check_in_rtl(bundle: Any, cycles: Mapping[str, tuple[str, int]], lanes: int, *,
                 simulator: str = "verilator", seed: int = 0) -> list[dict[str, Any]]:
    """Run every layer of ``cycles`` once on its engine's RTL and check it: outputs against the
    golden model, RTL cycles against the engine's cycle model for the same input.

    Matrix engines run one random activation vector (one output position of a conv layer);
    pattern layers run one random 8x8 image. Returns one row per layer."""
    from codesign.flow import simulate_layer

    rows = []
    for name, (engine, _) in cycles.items():
        layer = bundle.layer(name)
        r = simulate_layer(layer, engine, lanes=lanes, act_bits=8, simulator=simulator,
                           vectors=1, seed=seed)
        rows.append({"layer": name, "engine": engine, "outputs_match": r["outputs_match"],
                     "cycles_match": r["cycles"] == r["model_cycles"],
                     "rtl_cycles": r["cycles"][0]})
    return rows
