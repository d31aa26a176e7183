"""Training and evaluation loops: deterministic, CPU, small.

``train`` runs plain supervised epochs with hooks that the compression work builds on: a
``regularizer`` added to the loss at every step (the ADMM penalty of the W-step) and a ``mask_fn``
called after every optimizer step (masked retraining re-applies the masks there, so momentum and
weight decay cannot revive a pruned weight). ``evaluate`` and ``predict`` run the model in eval
mode without gradients.

Determinism: ``train`` calls ``torch.manual_seed(seed)`` first, so with the same model weights,
loader and seed it produces identical weights. Loaders from :func:`pruning.data.loader` without a
``seed`` draw their shuffling order from that global generator; a loader with its own generator
keeps its own sequence (make a fresh one for each run to repeat a run exactly).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pruning.errors import TrainingDiverged

__all__ = ["DEFAULT_THREADS", "Distill", "EpochStats", "OPTIMIZERS", "TrainingDiverged",
           "distillation_loss",
           "evaluate", "make_optimizer", "predict", "train"]

#: Optimizer names accepted by :func:`train` and :func:`make_optimizer`.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
_SCHEDULES = ("constant", "cosine")
#: Intra-op threads of :func:`train`. Measured on the project's 2-core machines, which other jobs
#: share: with the second core free, 2 threads made a LeNet-5 epoch 1.6x faster; with it busy,
#: 2 threads made a VGGSmall epoch 4x *slower* (OpenMP threads waiting on a busy core). One thread
#: is the predictable choice; pass ``threads=2`` on an idle machine.
DEFAULT_THREADS = 1


@dataclass(frozen=True)
class EpochStats:
    """What one training epoch did.

    Attributes
    ----------
    epoch : int
        Epoch number, from 1.
    steps : int
        Optimizer steps taken in the epoch.
    loss : float
        Mean training loss over the epoch's samples (task loss plus regularizer).
    accuracy : float
        Fraction of the epoch's training samples classified correctly while training.
    lr : float
        Learning rate of the first parameter group during the epoch.
    seconds : float
        Wall-clock time of the epoch.
    """

    epoch: int
    steps: int
    loss: float
    accuracy: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class Distill:
    """Knowledge distillation from a teacher (Hinton et al.): see :func:`distillation_loss`.

    Attributes
    ----------
    teacher : torch.nn.Module
        Run in eval mode without gradients on every training batch (never trained).
    temperature : float
        Softening temperature ``T > 0`` of both softmaxes.
    weight : float
        Weight ``a`` in [0, 1] of the distillation term; the label loss gets ``1 - a``.
    """

    teacher: nn.Module
    temperature: float = 4.0
    weight: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, nn.Module):
            raise ValueError(f"The distillation teacher must be a torch.nn.Module, "
                             f"not {type(self.teacher).__name__}")
        t, a = self.temperature, self.weight
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) \
                or t <= 0:
            raise ValueError(f"Distillation temperature must be a positive number, not {t!r}")
        if isinstance(a, bool) or not isinstance(a, int | float) or not 0 <= a <= 1:
            raise ValueError(f"Distillation weight must be a number in [0, 1], not {a!r}")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 4.0, weight: float = 0.5,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                      ) -> torch.Tensor:
    """``(1 - a) * loss_fn(student, labels) + a * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    The KL divergence is averaged over the batch (``reduction="batchmean"``); the ``T^2`` factor
    keeps its gradient on the scale of the label loss. ``loss_fn`` defaults to cross-entropy;
    ``teacher`` logits are treated as constants.
    """
    loss_fn = loss_fn if loss_fn is not None else nn.functional.cross_entropy
    t = float(temperature)
    kl = nn.functional.kl_div(nn.functional.log_softmax(student / t, dim=1),
                              nn.functional.log_softmax(teacher.detach() / t, dim=1),
                              reduction="batchmean", log_target=True)
    return (1 - weight) * loss_fn(student, labels) + weight * t * t * kl


def make_optimizer(model: nn.Module, name: str = "adam", lr: float = 1e-3, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """A torch optimizer over ``model``'s trainable parameters.

    ``"sgd"`` (with ``momentum``, Nesterov off), ``"adam"`` or ``"adamw"``; ``ValueError`` for any
    other name or a learning rate that is not positive.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if not (isinstance(lr, int | float) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"Learning rate must be a positive number, not {lr!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _split_batch(batch: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, list | tuple):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    if isinstance(batch, torch.Tensor):
        return batch, None
    raise TypeError(f"a batch must be a tensor or an (inputs, labels) pair, not {type(batch).__name__}")


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def train(model: nn.Module, train_loader: Iterable, epochs: int,
          optimizer: str | torch.optim.Optimizer = "adam", lr: float = 1e-3, seed: int = 0,
          callback: Callable[[EpochStats], object] | None = None,
          mask_fn: Callable[[nn.Module], object] | None = None, *,
          momentum: float = 0.9, weight_decay: float = 0.0,
          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
          regularizer: Callable[[nn.Module], torch.Tensor] | None = None,
          schedule: str = "constant", clip_grad_norm: float | None = None,
          threads: int | None = DEFAULT_THREADS,
          distill: Distill | None = None) -> list[EpochStats]:
    """Train ``model`` in place for ``epochs`` passes over ``train_loader``.

    Each step: forward in train mode, loss = ``loss_fn(logits, labels)`` (cross-entropy by
    default; with ``distill``, :func:`distillation_loss` of the student's and the teacher's
    logits) + ``regularizer(model)`` if given, backward, optional gradient-norm clipping,
    ``optimizer.step()``, then ``mask_fn(model)`` if given (under ``torch.no_grad``).

    Parameters
    ----------
    model : torch.nn.Module
        The model; its train/eval mode is restored on return.
    train_loader : iterable
        Yields ``(inputs, labels)`` batches, e.g. :func:`pruning.data.loader`.
    epochs : int
        Number of epochs (0: nothing is trained).
    optimizer : str or torch.optim.Optimizer
        A name from ``OPTIMIZERS`` (built with ``lr``, ``momentum``, ``weight_decay``), or an
        optimizer over the model's parameters (used as is, its state kept: ``lr`` and the other
        optimizer arguments are then ignored).
    lr : float
        Learning rate for a named optimizer.
    seed : int
        Seeds the global torch RNG before the first epoch (data order, dropout).
    callback : callable, optional
        Called with the :class:`EpochStats` of every finished epoch.
    mask_fn : callable, optional
        Called with the model after every optimizer step, without gradient tracking; masked
        retraining re-applies its masks here.
    momentum, weight_decay : float
        For a named optimizer (``momentum`` for ``"sgd"`` only).
    loss_fn : callable, optional
        ``loss_fn(logits, labels) -> scalar``; default ``torch.nn.functional.cross_entropy``.
    regularizer : callable, optional
        ``regularizer(model) -> scalar`` tensor added to the loss at every step (the ADMM
        penalty).
    schedule : str
        ``"constant"`` learning rate, or ``"cosine"`` annealing to 0 over the epochs (per step).
    clip_grad_norm : float, optional
        Clip the gradients' global L2 norm to this value before each step.
    threads : int or None
        Torch intra-op threads for the run (the previous setting is restored afterwards);
        default ``DEFAULT_THREADS`` (1); ``None`` keeps torch's current setting.

    Returns
    -------
    list of EpochStats
        One entry per epoch.

    Raises
    ------
    ValueError
        For a negative or non-integer ``epochs``, an unknown optimizer or schedule, a bad ``lr``,
        ``threads`` or ``clip_grad_norm``, an empty loader, or a ``distill`` that is not a
        :class:`Distill` (or whose teacher is the model itself).
    TrainingDiverged
        When a batch's loss is NaN or infinite, or a parameter is at the end of an epoch.
    """
    if distill is not None and not isinstance(distill, Distill):
        raise ValueError(f"distill must be a pruning.train.Distill, not {distill!r}")
    if distill is not None and distill.teacher is model:
        raise ValueError("the distillation teacher must not be the model being trained")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"Epochs must be a non-negative integer, not {epochs!r}")
    if schedule not in _SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(_SCHEDULES)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads <= 0):
        raise ValueError(f"Threads must be a positive integer, not {threads!r}")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"Gradient clipping norm must be positive, not {clip_grad_norm!r}")
    if isinstance(optimizer, str):
        opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    elif isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        raise ValueError("optimizer must be one of "
                         f"{', '.join(OPTIMIZERS)} or a torch.optim.Optimizer, not {optimizer!r}")
    loss_fn = loss_fn if loss_fn is not None else nn.functional.cross_entropy
    try:
        steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        steps_per_epoch = None
    if steps_per_epoch == 0 and epochs > 0:
        raise ValueError("the training loader yields no batches")
    base_lrs = [group["lr"] for group in opt.param_groups]
    total_steps = (steps_per_epoch or 0) * epochs
    if schedule == "cosine" and steps_per_epoch is None:
        raise ValueError("the cosine schedule needs a loader with a length")

    was_training = model.training
    teacher_was_training = distill.teacher.training if distill is not None else False
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    device = _device(model)
    history: list[EpochStats] = []
    step = 0
    grad_was_enabled = torch.is_grad_enabled()
    try:
        torch.set_grad_enabled(True)  # training works even when called under no_grad
        torch.manual_seed(seed)
        model.train()
        if distill is not None:
            distill.teacher.eval()
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            epoch_lr = opt.param_groups[0]["lr"]
            loss_sum, correct, seen, steps = 0.0, 0, 0, 0
            for batch in train_loader:
                x, y = _split_batch(batch)
                if y is None:
                    raise ValueError("training needs (inputs, labels) batches")
                x, y = x.to(device), y.to(device)
                if schedule == "cosine":
                    factor = 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
                    for group, base in zip(opt.param_groups, base_lrs, strict=True):
                        group["lr"] = base * factor
                opt.zero_grad(set_to_none=True)
                logits = model(x)
                if distill is not None:
                    with torch.no_grad():
                        soft = distill.teacher(x)
                    loss = distillation_loss(logits, soft, y, distill.temperature, distill.weight,
                                             loss_fn)
                else:
                    loss = loss_fn(logits, y)
                if not math.isfinite(float(loss.detach())):
                    raise TrainingDiverged(
                        f"training diverged: the loss is {float(loss.detach())} at epoch {epoch}, "
                        f"step {steps + 1} (lr {opt.param_groups[0]['lr']:g}); lower the "
                        "learning rate")
                if regularizer is not None:
                    penalty = regularizer(model)
                    if not math.isfinite(float(penalty.detach())):
                        raise TrainingDiverged(
                            f"training diverged: the regularizer (ADMM's penalty) is "
                            f"{float(penalty.detach())} at epoch {epoch}, step {steps + 1}; "
                            "lower rho")
                    loss = loss + penalty
                loss.backward()
                if clip_grad_norm is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                opt.step()
                if mask_fn is not None:
                    with torch.no_grad():
                        mask_fn(model)
                n = int(y.shape[0])
                loss_sum += float(loss.detach()) * n
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += n
                steps += 1
                step += 1
            if steps == 0:
                raise ValueError("the training loader yields no batches")
            bad = next((name for name, p in model.named_parameters()
                        if not bool(torch.isfinite(p.detach()).all())), None)
            if bad is not None:
                raise TrainingDiverged(f"training diverged: parameter {bad!r} is NaN or infinite "
                                       f"after epoch {epoch} (lr {epoch_lr:g}); lower the "
                                       "learning rate")
            stats = EpochStats(epoch, steps, loss_sum / seen, correct / seen, epoch_lr,
                               time.perf_counter() - start)
            history.append(stats)
            if callback is not None:
                callback(stats)
    finally:
        if schedule == "cosine":
            for group, base in zip(opt.param_groups, base_lrs, strict=True):
                group["lr"] = base
        torch.set_num_threads(old_threads)
        torch.set_grad_enabled(grad_was_enabled)
        model.train(was_training)
        if distill is not None:
            distill.teacher.train(teacher_was_training)
    return history


def _batches(data: DataLoader | Dataset | Iterable, batch_size: int) -> Iterable:
    if isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    return data


def predict(model: nn.Module, data: DataLoader | Dataset | Iterable, logits: bool = False,
            batch_size: int = 256) -> torch.Tensor:
    """The model's predictions on every sample of ``data``, in order.

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode without gradients; its mode is restored on return.
    data : DataLoader, Dataset or iterable
        Batches of ``(inputs, labels)`` or of inputs alone; a map-style dataset is read in order
        in batches of ``batch_size``.
    logits : bool
        Return the ``(N, classes)`` logits instead of the predicted labels.
    batch_size : int
        Batch size when ``data`` is a dataset.

    Returns
    -------
    torch.Tensor
        ``(N,)`` int64 labels (argmax of the logits), or ``(N, classes)`` float logits.
    """
    was_training = model.training
    device = _device(model)
    outputs: list[torch.Tensor] = []
    model.eval()
    try:
        with torch.no_grad():
            for batch in _batches(data, batch_size):
                x, _ = _split_batch(batch)
                out = model(x.to(device)).cpu()
                outputs.append(out if logits else out.argmax(1))
    finally:
        model.train(was_training)
    if not outputs:
        return torch.empty((0,), dtype=torch.int64)
    return torch.cat(outputs)


def evaluate(model: nn.Module, loader: DataLoader | Dataset | Iterable,
             batch_size: int = 256) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``loader`` (eval mode, no gradients).

    ``loader`` yields ``(inputs, labels)`` batches (or is a dataset of such pairs, read in
    batches of ``batch_size``). ``ValueError`` if it yields no samples or no labels.
    """
    was_training = model.training
    device = _device(model)
    correct = seen = 0
    model.eval()
    try:
        with torch.no_grad():
            for batch in _batches(loader, batch_size):
                x, y = _split_batch(batch)
                if y is None:
                    raise ValueError("evaluation needs (inputs, labels) batches")
                pred = model(x.to(device)).argmax(1).cpu()
                correct += int((pred == y.cpu()).sum())
                seen += int(y.shape[0])
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("the evaluation loader yields no samples")
    return correct / seen
