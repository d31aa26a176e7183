"""Training and evaluation loops on scikit-learn's digits: learning, determinism, hooks, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning import data, zoo
from pruning.train import (
    Distill,
    EpochStats,
    TrainingDiverged,
    distillation_loss,
    evaluate,
    make_optimizer,
    predict,
    train,
)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tinycnn_learns_digits_well_above_chance():
    model = zoo.build("tinycnn", seed=0)
    test = data.loader("digits", "test", batch_size=360)
    before = evaluate(model, test)
    seen: list[EpochStats] = []
    history = train(model, data.loader("digits", "train", batch_size=32), epochs=4, lr=3e-3,
                    seed=0, callback=seen.append)
    after = evaluate(model, test)
    assert seen == history and [s.epoch for s in history] == [1, 2, 3, 4]
    assert all(s.steps == 45 and s.seconds >= 0 and s.lr == 3e-3 for s in history)
    assert history[-1].loss < history[0].loss and history[-1].accuracy > 0.8
    assert before < 0.3 and after > 0.85, (before, after)
    assert model.training  # mode restored


def test_same_seed_same_weights():
    runs = []
    for seed in (7, 7, 8):
        model = zoo.build("tinycnn", seed=1)
        train(model, data.loader("digits", "train", batch_size=64), epochs=1, optimizer="sgd",
              lr=0.05, seed=seed)
        runs.append(_state(model))
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])  # the seed sets the data order


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_mask_fn_runs_after_every_step_and_keeps_pruned_weights_zero(optimizer):
    model = zoo.build("tinycnn", seed=2)
    mask = (torch.rand(model.fc1.weight.shape, generator=torch.Generator().manual_seed(0)) > 0.5)
    calls = []

    def apply_mask(m: nn.Module) -> None:
        assert not torch.is_grad_enabled()
        m.fc1.weight.mul_(mask)
        calls.append(1)

    with torch.no_grad():
        model.fc1.weight.mul_(mask)
    history = train(model, data.loader("digits", "train", batch_size=128), epochs=2,
                    optimizer=optimizer, lr=0.05, weight_decay=1e-2, seed=0, mask_fn=apply_mask)
    assert len(calls) == sum(s.steps for s in history) == 2 * 12
    assert torch.count_nonzero(model.fc1.weight[~mask]) == 0
    assert torch.count_nonzero(model.fc1.weight[mask]) == int(mask.sum())


def test_regularizer_is_added_to_the_loss():
    loader = data.loader("digits", "train", batch_size=256)
    plain, shifted = zoo.build("tinycnn"), zoo.build("tinycnn")
    a = train(plain, loader, epochs=1, seed=0)
    b = train(shifted, loader, epochs=1, seed=0, regularizer=lambda m: torch.tensor(5.0))
    assert b[0].loss == pytest.approx(a[0].loss + 5.0, abs=1e-4)  # constant: same trajectory
    assert _same(_state(plain), _state(shifted))
    decayed = zoo.build("tinycnn")
    train(decayed, loader, epochs=1, seed=0,
          regularizer=lambda m: 10.0 * m.fc1.weight.pow(2).sum())
    assert decayed.fc1.weight.norm() < plain.fc1.weight.norm()


def test_divergence_is_reported_where_it_happens():
    """A NaN loss, an infinite penalty or NaN weights stop training with TrainingDiverged,
    instead of NaN weights reaching the projections (a ValueError traceback there)."""
    loader = data.loader("digits", "train", batch_size=256)
    model = zoo.build("tinycnn")
    with pytest.raises(TrainingDiverged, match=r"^training diverged: the loss is nan at epoch 1, "
                                               r"step 2 \(lr 1e\+30\); lower the learning "
                                               r"rate$"):
        train(model, loader, epochs=1, lr=1e30, seed=0)
    with pytest.raises(TrainingDiverged, match=r"^training diverged: the regularizer \(ADMM's "
                                               r"penalty\) is inf at epoch 1, step 1; lower rho$"):
        train(zoo.build("tinycnn"), loader, epochs=1, seed=0,
              regularizer=lambda m: torch.tensor(float("inf")))

    def poison(m: nn.Module) -> None:       # a mask_fn that leaves a NaN weight after the step
        m.fc1.weight[0, 0] = float("nan")

    with pytest.raises(TrainingDiverged, match=r"^training diverged: parameter 'fc1.weight' is "
                                               r"NaN or infinite after epoch 1 \(lr 0.001\)"):
        train(zoo.build("tinycnn"), [next(iter(loader))], epochs=1, seed=0, mask_fn=poison)


def test_optimizer_instance_schedule_and_threads():
    model = zoo.build("tinycnn")
    opt = make_optimizer(model, "sgd", lr=0.1)
    threads = torch.get_num_threads()
    history = train(model, data.loader("digits", "train", batch_size=256), epochs=2,
                    optimizer=opt, seed=0, schedule="cosine", threads=1)
    assert history[0].lr == 0.1 and 0 < history[1].lr < 0.1
    assert opt.param_groups[0]["lr"] == 0.1 and opt.state  # lr restored, momentum kept
    assert torch.get_num_threads() == threads
    assert train(model, [], epochs=0) == []


def test_predict_and_evaluate_agree():
    model = zoo.build("tinycnn", seed=4)
    test = data.load("digits", "test")
    labels = predict(model, test)
    logits = predict(model, data.loader("digits", "test", batch_size=50), logits=True)
    assert labels.shape == (360,) and labels.dtype == torch.int64 and logits.shape == (360, 10)
    assert torch.equal(logits.argmax(1), labels)
    assert evaluate(model, test) == pytest.approx(float((labels == test.labels).float().mean()))
    assert torch.equal(predict(model, [test.inputs[:5]]), labels[:5])  # batches of inputs alone
    model.eval()
    evaluate(model, test)
    assert not model.training  # mode restored


def test_errors():
    model = zoo.build("tinycnn")
    loader = data.loader("digits", "test", batch_size=64)
    with pytest.raises(ValueError, match=r"^Epochs must be a non-negative integer, not -1$"):
        train(model, loader, epochs=-1)
    with pytest.raises(ValueError, match=r"^unknown optimizer 'rmsprop'; known: sgd, adam, adamw$"):
        train(model, loader, epochs=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"^unknown schedule 'step'; known: constant, cosine$"):
        train(model, loader, epochs=1, schedule="step")
    with pytest.raises(ValueError, match=r"^Learning rate must be a positive number, not 0$"):
        train(model, loader, epochs=1, lr=0)
    with pytest.raises(ValueError, match=r"^the training loader yields no batches$"):
        train(model, [], epochs=1)
    with pytest.raises(ValueError, match=r"^the evaluation loader yields no samples$"):
        evaluate(model, [])
    with pytest.raises(ValueError, match=r"^evaluation needs \(inputs, labels\) batches$"):
        evaluate(model, [torch.zeros(2, 1, 8, 8)])


# ------------------------------------------------------------------------------ distillation
def test_distillation_loss_value():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    ce = nn.functional.cross_entropy(s, y)
    ps, pt = torch.softmax(s / 3, 1), torch.softmax(t / 3, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()                 # KL(teacher || student)
    assert distillation_loss(s, t, y, 3.0, 0.25).item() == pytest.approx(
        (0.75 * ce + 0.25 * 9 * kl).item(), rel=1e-5)
    assert distillation_loss(s, t, y, 3.0, 0.0).item() == pytest.approx(ce.item(), rel=1e-6)
    assert distillation_loss(s, s, y, 2.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    sq = distillation_loss(s, t, y, 1.0, 0.5, loss_fn=lambda a, b: a.square().mean())
    assert sq.item() == pytest.approx(0.5 * s.square().mean().item()
                                      + 0.5 * distillation_loss(s, t, y, 1.0, 1.0).item(),
                                      rel=1e-5)
    st = s.clone().requires_grad_(True)
    tt = t.clone().requires_grad_(True)
    distillation_loss(st, tt, y, 2.0, 0.5).backward()
    assert tt.grad is None and st.grad is not None                  # teacher is a constant


def test_train_with_distillation_is_deterministic_and_leaves_the_teacher_alone():
    loader = data.loader("digits", "train", batch_size=128, seed=0)
    teacher = zoo.build("tinycnn", seed=2)
    train(teacher, loader, 1, lr=3e-3, seed=0)
    teacher.train()
    before = _state(teacher)
    runs = []
    for weight in (0.7, 0.7, 0.0):
        model = zoo.build("tinycnn", seed=1)
        hist = train(model, data.loader("digits", "train", batch_size=128, seed=0), 1, lr=3e-3,
                     seed=0, distill=Distill(teacher, temperature=2.0, weight=weight))
        runs.append((_state(model), hist[0].loss))
    plain = zoo.build("tinycnn", seed=1)
    train(plain, data.loader("digits", "train", batch_size=128, seed=0), 1, lr=3e-3, seed=0)
    assert _same(runs[0][0], runs[1][0]) and not _same(runs[0][0], runs[2][0])
    assert _same(runs[2][0], _state(plain))           # weight 0: plain cross-entropy
    assert _same(before, _state(teacher)) and teacher.training


def test_distillation_errors():
    model = zoo.build("tinycnn")
    loader = data.loader("digits", "test", batch_size=64)
    with pytest.raises(ValueError, match=r"^Distillation temperature must be a positive number, "
                                         r"not 0$"):
        Distill(model, temperature=0)
    with pytest.raises(ValueError, match=r"^Distillation weight must be a number in \[0, 1\], "
                                         r"not 1.5$"):
        Distill(model, weight=1.5)
    with pytest.raises(ValueError, match=r"^The distillation teacher must be a torch.nn.Module, "
                                         r"not str$"):
        Distill("teacher")
    with pytest.raises(ValueError, match=r"^distill must be a pruning.train.Distill, not 4.0$"):
        train(model, loader, 1, distill=4.0)
    with pytest.raises(ValueError, match=r"^the distillation teacher must not be the model "
                                         r"being trained$"):
        train(model, loader, 1, distill=Distill(model))
