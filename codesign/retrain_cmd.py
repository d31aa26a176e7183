"""``codesign retrain``: masked retraining of a pruned bundle on the user's own data.

The client half of the data-free flow: ``codesign prune --data-free`` prunes a trained model
without reading any data and writes ``OUT/bundle`` and ``OUT/pruned.pt``; the user, who owns the
data, runs ``codesign retrain OUT/bundle --data NAME --epochs N --out DIR``. The zoo model named
in the bundle is rebuilt, given the whole pruned state (``--checkpoint``, default ``pruned.pt``
beside the bundle; a model whose every parameter and buffer is in the bundle needs none), then
the bundle's weights, and retrained with its masks (and quantization scales) held after every
optimizer step (:func:`pruning.admm.masked_retrain`). Writes ``DIR/bundle`` (same schemes and
masks, new weights), ``DIR/retrained.pt`` and ``DIR/summary.json``. Bad input is a
:class:`codesign.cli.UserError` (one line, exit status 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from codesign.options import LEARNING_RATE, OUT_DIR, SEED
from codesign.prune_cmd import _load_checkpoint, _save_state, _user_error, check_outputs

__all__ = ["retrain", "RETRAIN_DATASETS"]

RETRAIN_DATASETS = ("digits", "mnist5k", "mnist1d")
_STATE = "pruned.pt"


def _bundle(path: Path) -> Any:
    from ir import Bundle, BundleError

    try:
        return Bundle.load(path)
    except OSError as exc:
        raise _user_error(f"cannot load bundle: {exc.filename or path}: "
                          f"{exc.strerror or exc}") from None
    except (BundleError, ValueError) as exc:
        raise _user_error(f"cannot load bundle: {exc}") from None


def _masks_and_plans(bundle: Any) -> tuple[dict, Any]:
    """LayerPlans (bits only matter) and a Projection holding the bundle's masks and scales."""
    import torch

    from pruning.admm import Projection
    from pruning.plan import LayerPlan
    from pruning.schemes import DenseConfig

    plans, masks, weights, scales = {}, {}, {}, {}
    for layer in bundle.layers:
        parts = ("ih", "hh") if layer.op in ("lstm", "gru") else ("",)
        masks[layer.name] = {s: torch.from_numpy(layer.tensors["mask" + (f"_{s}" if s else "")]
                                                 .astype(bool)) for s in parts}
        weights[layer.name] = {s: torch.from_numpy(layer.tensors["weight" + (f"_{s}" if s
                                                                              else "")].copy())
                               for s in parts}
        bits = layer.quant.bits if layer.quant is not None else None
        scales[layer.name] = layer.quant.scale if layer.quant is not None else None
        plans[layer.name] = LayerPlan(layer.name, layer.op, DenseConfig(), bits)
    return plans, Projection(weights, masks, scales)


@click.command("retrain")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(path_type=Path))
@click.option("--data", type=click.Choice(RETRAIN_DATASETS), required=True,
              help="Your dataset to retrain on (its train split; accuracy on its test split).")
@click.option("--epochs", type=click.IntRange(min=0), default=3, show_default=True,
              help="Masked retraining epochs.")
@click.option("--out", type=OUT_DIR, required=True, help="Output folder.")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help=f"The pruned model's whole state dict (default: {_STATE} beside the bundle, "
                   "written by `codesign prune --data-free`).")
@click.option("--lr", type=LEARNING_RATE, default=1e-3,
              show_default=True, help="Adam learning rate.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
def retrain(bundle_path: Path, data: str, epochs: int, out: Path, checkpoint: Path | None,
            lr: float, batch_size: int, seed: int, progress: bool) -> None:
    """Retrain a pruned bundle on your data with its masks held; write a new bundle."""
    bundle = _bundle(bundle_path)
    check_outputs(out, ["retrained.pt", "summary.json"], ["bundle"])
    from pruning import zoo
    from pruning.data import INPUT_SHAPES

    if bundle.model not in zoo.MODELS:
        raise _user_error(f"bundle {bundle_path} is of model {bundle.model!r}, which is not a "
                          f"zoo model; known: {', '.join(zoo.MODELS)}")
    model = zoo.build(bundle.model, seed=seed, **zoo.model_kwargs(bundle.model, data))
    if not zoo.reads_dataset(model, data):
        raise _user_error(f"model {bundle.model!r} reads inputs of shape "
                          f"{tuple(model.input_shape)}; dataset {data!r} has "
                          f"{tuple(INPUT_SHAPES[data])}")
    state = checkpoint
    beside = bundle_path.resolve().parent / _STATE     # `retrain .` inside the bundle too
    if state is None and beside.is_file():
        state = beside
    if state is not None:
        _load_checkpoint(model, state)
    else:
        modules = dict(model.named_modules())
        covered = {id(t) for x in bundle.layers if x.name in modules
                   for t in modules[x.name].parameters()}
        rest = [k for k, t in model.state_dict(keep_vars=True).items() if id(t) not in covered]
        if rest:
            raise _user_error(f"model {bundle.model!r} has state outside the bundle "
                              f"({', '.join(rest[:3])}{', ...' if len(rest) > 3 else ''}); "
                              f"give --checkpoint (the {_STATE} that `codesign prune "
                              "--data-free` wrote)")
    _retrain_and_write(model, bundle, data, epochs, out, lr, batch_size, seed, progress,
                       state)


def _retrain_and_write(model: Any, bundle: Any, data: str, epochs: int, out: Path, lr: float,
                       batch_size: int, seed: int, progress: bool, state: Path | None) -> None:
    import dataclasses

    import pandas as pd
    import torch

    from codesign.flow import write_json
    from codesign.report import print_table
    from ir import Bundle
    from pruning import data as pdata
    from pruning.admm import masked_retrain
    from pruning.compress import layer_row
    from pruning.export import apply_bundle, layer_from_module
    from pruning.train import evaluate

    try:
        apply_bundle(model, bundle)
    except ValueError as exc:
        raise _user_error(f"the bundle does not fit model {bundle.model!r}: {exc}") from None
    plans, proj = _masks_and_plans(bundle)
    train_loader = pdata.loader(data, "train", batch_size=batch_size, seed=seed)
    test_loader = pdata.loader(data, "test", batch_size=512)
    before = evaluate(model, test_loader)
    click.echo(f"{bundle.model}: test accuracy on {data} before retraining {before:.2%}; "
               f"retraining {epochs} epochs with the masks held ...")
    with torch.enable_grad():
        stats = masked_retrain(model, plans, proj, train_loader, epochs, lr=lr, seed=seed,
                               progress=progress)
    after = evaluate(model, test_loader)
    modules = dict(model.named_modules())
    layers = []
    for old in bundle.layers:
        bits = old.quant.bits if old.quant is not None else None
        scale = old.quant.scale if old.quant is not None else None
        layer = layer_from_module(old.name, modules[old.name], old.scheme,
                                  proj.masks[old.name], bits, scale)
        # the same masks and weight scale: the loop's break-even and the activation
        # quantization (act_bits, act_scale) still hold
        layers.append(dataclasses.replace(layer, quant=old.quant, break_even=old.break_even))
    new = Bundle(model=bundle.model, layers=tuple(layers))
    new.save(out / "bundle")
    _save_state(model, out / "retrained.pt")
    write_json(out / "summary.json", {
        "model": bundle.model, "dataset": data, "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "seed": seed, "state": str(state) if state else None,
        "accuracy": {"before": before, "after": after},
        "loss": [s.loss for s in stats], "layers": [layer_row(x) for x in new.layers],
        "bundle": str(out / "bundle")})
    cols = ["layer", "op", "scheme", "sparsity", "bits", "nnz", "numel"]
    print_table(pd.DataFrame([{k: r[k] for k in cols} for r in map(layer_row, new.layers)]),
                title=f"{bundle.model} retrained on {data} (masks unchanged)")
    click.echo(f"accuracy ({data} test): before retraining {before:.2%}, after {after:.2%}")
    click.echo(f"wrote {out / 'bundle'}, {out / 'retrained.pt'} and {out / 'summary.json'}")
