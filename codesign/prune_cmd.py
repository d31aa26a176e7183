"""``codesign prune``: ADMM-compress a zoo model and save its bundle.

Either one scheme for every prunable layer (``--scheme`` with ``--ratio`` or ``--sparsity``,
``--bits``, ``--block``, ``--nm``; unstructured pruning reaches the ratio over all layers together
unless ``--scope layer``) or a per-layer plan file (``--plan plan.toml``, see
:mod:`pruning.plan`). Without ``--checkpoint`` the dense model is trained first (``--epochs``)
and its state dict saved as ``OUT/dense.pt`` for the next run. Writes ``OUT/bundle`` (atomic,
via :meth:`ir.Bundle.save`) and ``OUT/summary.json``; prints the per-layer table and the
accuracy before and after. Every bad input is a :class:`codesign.cli.UserError`: one line on
stderr, exit status 2. Torch is imported only when the command runs.

``--data-free`` (with a required ``--checkpoint``) prunes layer by layer on synthetic inputs
(:mod:`pruning.datafree`) inside :func:`pruning.data.forbid_data_access`, so no dataset is read;
it writes ``OUT/bundle``, ``OUT/pruned.pt`` (the whole pruned state dict) and
``OUT/summary.json``, and the user retrains on their own data with ``codesign retrain``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from codesign.options import (
    LEARNING_RATE,
    OUT_DIR,
    SEED,
    FiniteFloatRange,
    outputs_problem,
    positive_pair,
)

__all__ = ["prune", "DATASETS"]

DATASETS = ("mnist5k", "digits", "mnist1d")
SCHEMES = ("unstructured", "filter", "column", "pattern", "bcr", "nm", "dense")
DISTRIBUTIONS = ("normal", "uniform", "bn")     # pruning.synthetic.DISTRIBUTIONS (torch-free here)
RECON_AT = ("output", "activation", "block")    # pruning.datafree.SCOPES
MAX_RATIO = 1e12                                # pruning.plan.MAX_RATIO


def _user_error(message: str) -> Exception:
    from codesign.cli import UserError  # imported here: codesign.cli imports this module

    return UserError(" ".join(str(message).split()))


def check_outputs(out: Path, files: list[str], bundles: list[str]) -> None:
    """A user error, before any work, when ``out`` cannot take the command's outputs
    (:func:`codesign.options.outputs_problem`)."""
    problem = outputs_problem(out, files, bundles)
    if problem is not None:
        raise _user_error(f"--out: {problem}")


def _pair(text: str | None, sep: str, option: str, example: str) -> tuple[int, int] | None:
    if text is None:
        return None
    pair = positive_pair(text, sep)
    if pair is None:
        raise _user_error(f"{option} must look like {example} (positive), not {text!r}")
    return pair


def _plan(scheme: str | None, ratio: float | None, sparsity: float | None, bits: int | None,
          block: str | None, nm: str | None, scope: str | None, plan_path: Path | None,
          connected: bool = False) -> Any:
    from pruning.plan import Plan, PlanError, load_plan

    given = [o for o, v in (("--ratio", ratio), ("--sparsity", sparsity), ("--bits", bits),
                            ("--block", block), ("--nm", nm), ("--scope", scope),
                            ("--connected", True if connected else None))
             if v is not None]
    if plan_path is not None:
        if scheme is not None or given:
            other = "--scheme" if scheme is not None else given[0]
            raise _user_error(f"--plan cannot be combined with {other}; put every setting in "
                              "the plan file")
        try:
            return load_plan(plan_path)
        except PlanError as exc:
            raise _user_error(str(exc)) from None
    if scheme is None:
        raise _user_error("give --scheme (with --ratio or --sparsity) or --plan FILE")
    if scheme not in SCHEMES:
        raise _user_error(f"unknown scheme {scheme!r}; allowed: {', '.join(SCHEMES)}")
    if ratio is not None and sparsity is not None:
        raise _user_error("give --ratio or --sparsity, not both")
    if ratio is not None and not ratio > 1:
        raise _user_error(f"--ratio must be a compression ratio greater than 1 (85 keeps 1/85 "
                          f"of the weights), not {ratio:g}")
    if ratio is not None and ratio > MAX_RATIO:
        raise _user_error(f"--ratio must be at most {MAX_RATIO:g}, not {ratio:g}")
    if sparsity is not None and not 0 <= sparsity < 1:
        raise _user_error(f"--sparsity must be a number in [0, 1), not {sparsity:g}")
    params: dict[str, Any] = {}
    for option, value, kinds in (("--block", block, ("bcr",)), ("--nm", nm, ("nm",)),
                                 ("--scope", scope, ("unstructured",)),
                                 ("--connected", True if connected else None,
                                  ("unstructured",))):
        if value is not None and scheme not in kinds:
            raise _user_error(f"{option} applies to --scheme {kinds[0]} only")
    if block is not None:
        params["block"] = list(_pair(block, "x", "--block", "8x16"))
    if nm is not None:
        params["n"], params["m"] = _pair(nm, ":", "--nm", "2:4")
    if scheme == "unstructured":
        params["scope"] = scope or "global"
        if connected:
            params["connected"] = True
    try:
        return Plan.uniform(scheme, ratio=ratio, sparsity=sparsity, bits=bits, **params)
    except PlanError as exc:
        raise _user_error(str(exc).removeprefix("default: ")) from None


def _model(name: str, data: str | None, seed: int, data_free: bool = False) -> tuple[Any, str]:
    from pruning import zoo
    from pruning.data import INPUT_SHAPES

    if name not in zoo.MODELS:
        raise _user_error(f"unknown model {name!r}; known: {', '.join(zoo.MODELS)}")
    dataset = data or zoo.default_dataset(name)
    if dataset is None and data_free:        # no data is read: the model's own input shape
        return zoo.build(name, seed=seed), ""
    if dataset is None:
        shape = tuple(zoo.build(name).input_shape)
        fits = [d for d, s in INPUT_SHAPES.items() if tuple(s) == shape]
        raise _user_error(f"model {name!r} has no offline dataset; give --data "
                          f"{'/'.join(fits)}" if fits else
                          f"model {name!r} reads inputs of shape {shape}, which no offline "
                          "dataset has; prune a trained checkpoint of it with --data-free "
                          "--checkpoint FILE")
    model = zoo.build(name, seed=seed, **zoo.model_kwargs(name, dataset))
    if not zoo.reads_dataset(model, dataset):
        raise _user_error(f"model {name!r} reads inputs of shape {tuple(model.input_shape)}; "
                          f"dataset {dataset!r} has {tuple(INPUT_SHAPES[dataset])}")
    return model, dataset


#: Dense training epochs of a model without a zoo recipe, when --epochs is not given.
DEFAULT_DENSE_EPOCHS = 5

#: ``--epochs`` help of the commands that train the dense model.
DENSE_EPOCHS_HELP = ("Dense training epochs when no --checkpoint is given (default: the model's "
                     f"zoo recipe, or {DEFAULT_DENSE_EPOCHS} without one).")


#: Training batch size of a model without a zoo recipe (and of --data-free's synthetic batches).
DEFAULT_BATCH_SIZE = 64


def recipe_batch_size(model_name: str) -> int:
    """The zoo recipe's batch size of ``model_name``, or :data:`DEFAULT_BATCH_SIZE`."""
    from pruning.zoo import RECIPES

    return int(RECIPES.get(model_name, {}).get("batch_size", DEFAULT_BATCH_SIZE))


def _train_dense(model: Any, model_name: str, dataset: str, loader: Any, epochs: int | None,
                 lr: float, seed: int) -> int:
    """Train the dense model as its zoo recipe says (``pruning.zoo.RECIPES``: optimizer, lr,
    schedule, gradient clipping and epochs; ``epochs`` overrides the recipe's). A model without
    a recipe gets Adam at ``lr`` for ``epochs`` (default :data:`DEFAULT_DENSE_EPOCHS`). The
    batches are ``loader``'s (:func:`recipe_batch_size` unless ``--batch-size`` is given).
    Returns the epochs trained."""
    import torch

    from pruning.train import train
    from pruning.zoo import RECIPES

    recipe = dict(RECIPES.get(model_name, {"epochs": DEFAULT_DENSE_EPOCHS, "lr": lr}))
    recipe.pop("batch_size", None)
    recipe_epochs = int(recipe.pop("epochs"))
    epochs = recipe_epochs if epochs is None else epochs
    how = ", ".join(f"{k} {v}" for k, v in recipe.items())
    click.echo(f"training dense {model_name} on {dataset} for {epochs} epochs ({how}) ...")
    with torch.enable_grad():
        train(model, loader, epochs, seed=seed, **recipe)
    return epochs


def _load_checkpoint(model: Any, path: Path) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable or malformed file is the user's error
        raise _user_error(f"cannot load checkpoint {path}: {_load_failure(exc)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _user_error(f"cannot load checkpoint {path}: not a state dict of tensors")
    key = next((k for k in state if not isinstance(k, str)), None)
    if key is not None:
        raise _user_error(f"cannot load checkpoint {path}: key {key!r} is not a parameter name "
                          "(a state dict's keys are strings such as 'conv1.weight')")
    odd = next(((k, _odd_tensor(v)) for k, v in state.items() if _odd_tensor(v)), None)
    if odd is not None:
        raise _user_error(f"cannot load checkpoint {path}: tensor {odd[0]!r} is {odd[1]}; a "
                          "state dict here holds dense, real tensors on the CPU")
    problem = _mismatch(model.state_dict(), state)
    if problem is None:
        bad = next((k for k, v in state.items()
                    if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        if bad is not None:
            raise _user_error(f"cannot load checkpoint {path}: tensor {bad!r} holds NaN or "
                              "infinite values")
    if problem is None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            problem = str(exc).strip().splitlines()[-1].strip()
    if problem is not None:
        raise _user_error(f"cannot load checkpoint {path}: it does not fit the model: "
                          f"{problem}") from None


def _odd_tensor(tensor: Any) -> str | None:
    """What makes ``tensor`` unfit for a model's state dict (sparse, on the meta device,
    complex), or None. ``torch.load`` gives such tensors back; ``load_state_dict`` would drop a
    complex tensor's imaginary part with a warning, and the others fail deep in training."""
    import torch

    if tensor.layout != torch.strided:
        return f"a {str(tensor.layout).removeprefix('torch.')} tensor"
    if tensor.device.type == "meta":
        return "on the meta device (it holds no values)"
    if tensor.is_complex():
        return f"complex ({str(tensor.dtype).removeprefix('torch.')})"
    return None


def _load_failure(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in one line for the user.

    The reader's own messages are poor guidance here: an unpickling refusal suggests loading the
    file unsafely, and a file that is not a torch archive fails with a bare ``KeyError``.
    """
    import re

    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if found:
        return (f"it holds a pickled Python object ({found.group(1)}), which is never "
                "unpickled here; save model.state_dict() with torch.save and give that")
    return "not a state dict written by torch.save (unreadable or truncated file)"


def _mismatch(expected: dict, state: dict) -> str | None:
    """Missing keys, unexpected keys and shape mismatches of ``state`` against ``expected``."""
    def some(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} is {list(state[k].shape)}, not {list(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = ([f"missing keys {some(missing)}"] if missing else []) + \
        ([f"unexpected keys {some(unexpected)}"] if unexpected else []) + \
        ([f"shape of {some(shapes)}"] if shapes else [])
    return "; ".join(parts) if parts else None


def _save_state(model: Any, path: Path) -> None:
    import torch

    from codesign.atomic import atomic_write

    def write(tmp: Path) -> None:
        # Through a file object: given a path, torch names the records inside the archive after
        # it, here the random temporary name, and the same state dict gave different bytes.
        with tmp.open("wb") as f:
            torch.save(model.state_dict(), f)

    atomic_write(path, write)


_DATA_OPTIONS = ("epochs", "retrain_epochs", "quant", "data")
_FREE_OPTIONS = ("synthetic", "synthetic_batches", "recon_at", "layer_inputs", "recon_targets",
                 "polish", "polish_epochs")


def _check_mode(data_free: bool, checkpoint: Path | None) -> None:
    """Options of the other mode given on the command line, and --data-free without a
    checkpoint, are user errors."""
    ctx = click.get_current_context()
    given = [p for p in ctx.params
             if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE]
    flag = {p.name: p.opts[0] for p in ctx.command.params}
    if data_free:
        if checkpoint is None:
            raise _user_error("--data-free needs --checkpoint TRAINED.pt: the data-free mode "
                              "prunes your trained model and never trains on data (without "
                              "--data-free, `codesign prune` trains one and saves OUT/dense.pt)")
        bad = [p for p in _DATA_OPTIONS if p in given]
        if bad:
            raise _user_error(f"{flag[bad[0]]} does not apply to --data-free, which reads no "
                              "data; retrain on your data with `codesign retrain`")
    else:
        bad = [p for p in _FREE_OPTIONS if p in given]
        if bad:
            raise _user_error(f"{flag[bad[0]]} applies to --data-free only")


def _run_data_free(model: Any, model_name: str, plans: Any, spec: Any,
                   settings: dict[str, Any], checkpoint: Path, out: Path) -> None:
    """Prune ``model`` without data (under ``forbid_data_access``) and write OUT/bundle,
    OUT/pruned.pt (the whole pruned state dict, for ``codesign retrain``) and
    OUT/summary.json."""
    import pandas as pd

    from codesign.flow import write_json
    from codesign.report import print_table
    from pruning.compress import layer_row, totals
    from pruning.data import forbid_data_access
    from pruning.datafree import prune_data_free

    click.echo(f"loaded {checkpoint}; pruning {model_name} layer by layer on "
               f"{spec.samples} synthetic inputs ({spec.distribution}), reading no data ...")
    try:
        with forbid_data_access():
            result = prune_data_free(model, plans, synthetic=spec, **settings)
            bundle = result.export(model, model_name)
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    bundle.save(out / "bundle")
    _save_state(model, out / "pruned.pt")
    summary = {"model": model_name, "data_free": True, "checkpoint": str(checkpoint),
               **result.summary(), "totals": totals(bundle),
               "bundle": str(out / "bundle"), "state": str(out / "pruned.pt")}
    write_json(out / "summary.json", summary)
    rows = {r["layer"]: r for r in map(layer_row, bundle.layers)}
    table = [{"layer": rec.name, "scheme": rows[rec.name]["scheme"],
              "sparsity": rows[rec.name]["sparsity"], "bits": rows[rec.name]["bits"],
              "err magnitude": round(rec.error_magnitude, 4),
              "err ADMM": round(rec.error_admm, 4), "err final": round(rec.error_final, 4),
              "polish": rec.polish} for rec in result.layers]
    print_table(pd.DataFrame(table),
                title=f"{model_name} pruned without data (relative reconstruction error on "
                      "synthetic inputs)")
    t = totals(bundle)
    click.echo(f"weights: {_kept(t)}")
    click.echo(f"wrote {out / 'bundle'}, {out / 'pruned.pt'} and {out / 'summary.json'}; "
               f"retrain on your data with: codesign retrain {out / 'bundle'} --data NAME "
               "--epochs N --out DIR")


def _kept(totals: dict) -> str:
    """``"4,776 -> 1,196 kept (4.0x pruning)"``, or ``"... -> 0 kept (all pruned)"``."""
    ratio = totals["pruning_ratio"]
    how = f"{ratio:.1f}x pruning" if ratio else "all pruned"
    return f"{totals['numel']:,} -> {totals['nnz']:,} kept ({how})"


def _kib(bits: int) -> str:
    return f"{bits / 8192:,.1f} KiB"


@click.command("prune")
@click.option("--model", "model_name", required=True, metavar="NAME",
              help="Zoo model: tinycnn, lenet5, vggsmall, resnet18, mobilenetv2, lstm, gru, "
                   "vgg16 (no offline dataset has its 3x32x32 inputs: --data-free only).")
@click.option("--scheme", metavar="KIND", help=f"One scheme for every layer: {', '.join(SCHEMES)}.")
@click.option("--ratio", type=float, help="Compression ratio (> 1): 85 keeps 1/85 of the weights.")
@click.option("--sparsity", type=float, help="Pruned fraction in [0, 1) (instead of --ratio).")
@click.option("--bits", type=int, help="Weight bits, 2 to 16 (default: float weights).")
@click.option("--block", metavar="RxC", help="BCR block size, e.g. 8x16.")
@click.option("--nm", metavar="N:M", help="N:M group sparsity, e.g. 2:4.")
@click.option("--scope", type=click.Choice(["global", "layer"]),
              help="Unstructured: one ratio over all layers together (default), or per layer. "
                   "With --data-free the global split is taken from the trained weights' "
                   "magnitudes, then each layer is pruned to its share.")
@click.option("--connected", is_flag=True,
              help="Unstructured: keep no weight off every input-to-output path (the model's "
                   "layers must form one chain).")
@click.option("--plan", "plan_path", type=click.Path(path_type=Path),
              help="Per-layer plan (.toml or .json) instead of --scheme.")
@click.option("--out", type=OUT_DIR, required=True, help="Output folder.")
@click.option("--data", type=click.Choice(DATASETS), help="Dataset (default: the model's).")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Trained state dict (torch.save); loaded with weights_only=True.")
@click.option("--epochs", type=click.IntRange(min=0), help=DENSE_EPOCHS_HELP)
@click.option("--admm-iters", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--admm-epochs", type=click.IntRange(min=0), default=1, show_default=True,
              help="W-step epochs per ADMM iteration.")
@click.option("--retrain-epochs", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--rho", type=FiniteFloatRange(min=0, min_open=True), default=1e-2,
              show_default=True, help="Initial ADMM penalty.")
@click.option("--rho-factor", type=FiniteFloatRange(min=1), default=1.5, show_default=True,
              help="rho is multiplied by this after every ADMM iteration (up to 1).")
@click.option("--lr", type=LEARNING_RATE, default=1e-3,
              show_default=True, help="Adam learning rate of ADMM and the retraining (the dense "
              "training follows the model's zoo recipe; a model without one uses this).")
@click.option("--quant", type=click.Choice(["joint", "two-phase"]), default="joint",
              show_default=True, help="Quantize jointly with pruning, or after it.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Training batch size (default: the model's zoo recipe's, or 64); with "
                   "--data-free: samples per synthetic batch (default 64).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
@click.option("--data-free", is_flag=True,
              help="Prune layer by layer on synthetic inputs, reading no data (needs "
                   "--checkpoint); retrain on your data afterwards with `codesign retrain`.")
@click.option("--synthetic", type=click.Choice(DISTRIBUTIONS), default="normal",
              show_default=True, help="--data-free: distribution of the synthetic inputs "
                                      "(bn: matched to the model's first BatchNorm).")
@click.option("--synthetic-batches", type=click.IntRange(min=1), default=8, show_default=True,
              help="--data-free: number of synthetic batches.")
@click.option("--recon-at", type=click.Choice(RECON_AT), default="output", show_default=True,
              help="--data-free: measure each layer's reconstruction at its output, after the "
                   "following activation, or at the end of its residual block.")
@click.option("--layer-inputs", type=click.Choice(["prefix", "original"]), default="prefix",
              show_default=True, help="--data-free: each layer's inputs come from the pruned "
                                      "prefix or from the original model.")
@click.option("--recon-targets", type=click.Choice(["same", "original"]), default="same",
              show_default=True, help="--data-free: reconstruct the original layer's output "
                                      "on the same inputs, or the original model's activations.")
@click.option("--polish", type=click.Choice(["auto", "lstsq", "masked", "none"]),
              default="auto", show_default=True,
              help="--data-free: refit the kept weights after the hard projection (lstsq: "
                   "closed form; masked: optimizer on the fixed mask).")
@click.option("--polish-epochs", type=click.IntRange(min=0), default=5, show_default=True,
              help="--data-free: epochs of the masked polish.")
def prune(model_name: str, scheme: str | None, ratio: float | None, sparsity: float | None,
          bits: int | None, block: str | None, nm: str | None, scope: str | None,
          connected: bool, plan_path: Path | None, out: Path,
          data: str | None, checkpoint: Path | None, epochs: int | None, admm_iters: int,
          admm_epochs: int, retrain_epochs: int, rho: float, rho_factor: float, lr: float,
          quant: str, batch_size: int | None, seed: int, progress: bool, data_free: bool,
          synthetic: str, synthetic_batches: int, recon_at: str, layer_inputs: str,
          recon_targets: str, polish: str, polish_epochs: int) -> None:
    """ADMM-compress a zoo model (pruning + quantization) and save the bundle."""
    from codesign.flow import write_json
    from codesign.report import print_table

    _check_mode(data_free, checkpoint)
    plan = _plan(scheme, ratio, sparsity, bits, block, nm, scope, plan_path, connected)
    state = "pruned.pt" if data_free else "dense.pt" if checkpoint is None else None
    check_outputs(out, ["summary.json", *([state] if state else [])], ["bundle"])
    model, dataset = _model(model_name, data, seed, data_free)

    import pandas as pd

    from pruning import data as pdata
    from pruning.compress import compress
    from pruning.plan import PlanError, resolve
    from pruning.train import evaluate

    try:
        plans = resolve(plan, model)
    except PlanError as exc:
        hint = ("; use --plan to give the other layers another scheme"
                if scheme == "pattern" and "needs a 3x3 convolution" in str(exc) else "")
        raise _user_error(f"{exc}{hint}") from None
    if not plans:
        raise _user_error("the plan reaches no layer of the model")
    if data_free and any(getattr(p.config, "connected", False) for p in plans.values()):
        raise _user_error("connected pruning does not apply to --data-free, which prunes one "
                          "layer at a time")
    if data_free:
        assert checkpoint is not None
        _load_checkpoint(model, checkpoint)
        from pruning.synthetic import SyntheticSpec

        spec = SyntheticSpec(synthetic, synthetic_batches, batch_size or DEFAULT_BATCH_SIZE,
                             seed=seed)
        settings = {"iterations": admm_iters, "epochs": admm_epochs, "rho": rho,
                    "rho_factor": rho_factor, "lr": lr, "scope": recon_at,
                    "inputs": layer_inputs, "targets": recon_targets, "polish": polish, "polish_epochs": polish_epochs,
                    "seed": seed, "progress": progress}
        _run_data_free(model, model_name, plans, spec, settings, checkpoint, out)
        return
    batch_size = batch_size or recipe_batch_size(model_name)
    train_loader = pdata.loader(dataset, "train", batch_size=batch_size, seed=seed)
    test_loader = pdata.loader(dataset, "test", batch_size=512)
    if checkpoint is not None:
        _load_checkpoint(model, checkpoint)
        click.echo(f"loaded {checkpoint}: test accuracy {evaluate(model, test_loader):.2%}")
    else:
        epochs = _train_dense(model, model_name, dataset, train_loader, epochs, lr, seed)
        _save_state(model, out / "dense.pt")
    result = compress(model, plans, train_loader, test_loader, epochs_admm=admm_epochs,
                      admm_iters=admm_iters, retrain_epochs=retrain_epochs, rho=rho,
                      rho_factor=rho_factor, lr=lr, quant=quant, seed=seed, progress=progress,
                      model_name=model_name)
    result.bundle.save(out / "bundle")
    summary = result.summary() | {
        "dataset": dataset, "checkpoint": str(checkpoint) if checkpoint else None,
        "dense_epochs": None if checkpoint else epochs, "batch_size": batch_size,
        "bundle": str(out / "bundle")}
    write_json(out / "summary.json", summary)
    cols = ["layer", "op", "scheme", "sparsity", "ratio", "bits", "nnz", "numel"]
    print_table(pd.DataFrame([{k: r[k] for k in cols} for r in result.rows]),
                title=f"{model_name} compressed ({dataset})")
    t = result.totals()
    click.echo(f"weights: {_kept(t)}; storage "
               f"{_kib(t['dense_bits'])} -> {_kib(t['weight_bits'])} weights only, "
               f"{_kib(t['weight_bits'] + t['index_bits'])} with index")
    click.echo(f"accuracy ({dataset} test): before {result.accuracy_before:.2%}, after hard "
               f"projection {result.accuracy_projected:.2%}, after retraining "
               f"{result.accuracy_after:.2%}")
    click.echo(f"wrote {out / 'bundle'} and {out / 'summary.json'}")
