"""The ADMM engine: penalty, rho schedule, Z/U steps, hard projection, masked retraining."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from pruning.admm import (
    RhoSchedule,
    admm,
    hard_project,
    masked_retrain,
    penalty,
    penalty_grad,
    project_weights,
    ramped_plans,
)
from pruning.plan import Plan, resolve
from pruning.projections import mask_of
from pruning.quantize import to_integers
from pruning.schemes import BCRConfig, UnstructuredConfig
from pruning.train import train
from pruning.zoo import build


@pytest.fixture(scope="module", autouse=True)
def _gradients_on():
    """Another test module (tests/test_ir_golden.py) disables gradients globally at import."""
    with torch.enable_grad():
        yield


def test_penalty_value_and_gradient_match_formula_and_autograd():
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (2, 3, 3, 3)]
    ws = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]
    zs = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    us = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    rho = [0.3, 2.5]
    with torch.enable_grad():            # another test module may disable gradients globally
        value = penalty(ws, zs, us, rho)
    expected = sum(r / 2 * float(((w.detach() - z + u) ** 2).sum())
                   for w, z, u, r in zip(ws, zs, us, rho, strict=True))
    assert float(value.detach()) == pytest.approx(expected, rel=1e-12)
    value.backward()
    for w, z, u, r, grad in zip(ws, zs, us, rho, penalty_grad(ws, zs, us, rho), strict=True):
        torch.testing.assert_close(w.grad, grad)
        torch.testing.assert_close(grad, r * (w.detach() - z + u))
    assert float(penalty(ws, zs, us, 1.0).detach()) == pytest.approx(
        sum(0.5 * float(((w.detach() - z + u) ** 2).sum()) for w, z, u in zip(ws, zs, us, strict=True)))
    with pytest.raises(ValueError, match="Got 2 weights, 2 Z, 2 U and 1 rho values"):
        penalty(ws, zs, us, [1.0])
    # one number of any kind: np.float32 and a 0-d tensor were iterated (TypeError)
    for one in (np.float32(1.0), torch.tensor(1.0)):
        assert float(penalty(ws, zs, us, one).detach()) == pytest.approx(
            float(penalty(ws, zs, us, 1.0).detach()))
        assert all(torch.equal(a, b) for a, b in zip(penalty_grad(ws, zs, us, one),
                                                     penalty_grad(ws, zs, us, 1.0), strict=True))


def test_a_float_rho_above_the_default_maximum_raises_it():
    """admm(rho=2.0) said 'Rho maximum must be a finite number >= 2, not 1.0', a maximum the
    caller never gave."""
    loader, model = _toy(128)
    plans = resolve(Plan.uniform("unstructured", sparsity=0.5), model)
    res = admm(model, plans, loader, iterations=2, epochs=1, rho=2.0, progress=False)
    assert [it.rho for it in res.history] == [{"0": 2.0}, {"0": 2.0}]


def test_rho_schedule():
    s = RhoSchedule(1e-3, 10.0, 0.5)
    assert [s.at(k) for k in range(4)] == pytest.approx([1e-3, 1e-2, 1e-1, 0.5])
    assert s.at(1, initial=0.02) == pytest.approx(0.2)
    # a float power past 1.8e308 raises OverflowError (--rho-factor 1e300 at k=2, or 10 at
    # k=309): it was a traceback mid-run; the schedule is at its maximum long before
    assert RhoSchedule(1e-2, 1e300, 1.0).at(2) == 1.0
    assert RhoSchedule(1e-2, 10.0, 1.0).at(400) == 1.0
    with pytest.raises(ValueError, match=r"Rho factor must be a finite number >= 1, not 0.5"):
        RhoSchedule(1e-3, 0.5)
    with pytest.raises(ValueError, match=r"Rho initial must be a finite number > 0, not 0"):
        RhoSchedule(0)


def _toy(n: int = 512) -> tuple[list, nn.Module]:
    """A linear classifier whose best weights are sparse."""
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(4, 16, generator=g) * (torch.rand(4, 16, generator=g) < 0.25)
    x = torch.randn(n, 16, generator=g)
    y = (x @ w_true.T).argmax(1)
    return [(x[i:i + 64], y[i:i + 64]) for i in range(0, n, 64)], nn.Sequential(
        nn.Linear(16, 4, bias=False))


def test_admm_on_toy_problem_converges():
    loader, model = _toy()
    train(model, loader, 10, optimizer="sgd", lr=0.5)
    plans = resolve(Plan.uniform("unstructured", sparsity=0.75), model)
    res = admm(model, plans, loader, iterations=6, epochs=4, rho=RhoSchedule(0.5, 1.5, 2.0),
               optimizer="sgd", lr=0.5, progress=False)
    r = [h.residual["0"] for h in res.history]
    assert len(r) == 6 and r[-1] < r[0] / 5 and r[-1] < 0.01, r
    assert [h.rho["0"] for h in res.history] == pytest.approx([0.5, 0.75, 1.125, 1.6875, 2, 2])
    z, m = res.z.weights["0"][""], res.z.masks["0"][""]
    assert int(m.sum()) == 16 and bool((z[~m] == 0).all())     # Z is on the set: 16 of 64 kept
    assert torch.equal(mask_of(UnstructuredConfig(0.75), model[0].weight), m)   # W agrees


def test_per_layer_rho_from_the_plan_and_its_override():
    loader, _ = _toy()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 4, bias=False))
    train(model, loader, 10, optimizer="sgd", lr=0.2)
    plan = Plan.from_dict({"default": {"scheme": "unstructured", "sparsity": 0.5},
                           "layers": {"2": {"rho": 1e-4}}})
    plans = resolve(plan, model)
    assert plans["0"].rho is None and plans["2"].rho == 1e-4
    sched = RhoSchedule(0.5, 1.5, 2.0)
    runs = {}
    for label, override in (("plan", None), ("override", {"2": 0.5})):
        m = copy.deepcopy(model)
        res = admm(m, plans, loader, iterations=4, epochs=2, rho=sched, layer_rho=override,
                   optimizer="sgd", lr=0.2, progress=False)
        runs[label] = res.history
    assert [h.rho["0"] for h in runs["plan"]] == pytest.approx([0.5, 0.75, 1.125, 1.6875])
    assert [h.rho["2"] for h in runs["plan"]] == pytest.approx([1e-4, 1.5e-4, 2.25e-4, 3.375e-4])
    assert [h.rho["2"] for h in runs["override"]] == pytest.approx([0.5, 0.75, 1.125, 1.6875])
    # the penalty uses them: a layer with a tiny rho is barely pulled to its set
    assert runs["plan"][-1].residual["2"] > 3 * runs["override"][-1].residual["2"]


def test_ramped_sparsity_reaches_the_plan_and_admm_ends_on_its_set():
    loader, model = _toy()
    train(model, loader, 10, optimizer="sgd", lr=0.5)
    plans = resolve(Plan.uniform("unstructured", sparsity=0.75), model)
    got = [ramped_plans(plans, k, 4)["0"].config.sparsity for k in range(6)]
    assert got == pytest.approx([0.75 * (1 - (1 - j / 4) ** 3) for j in (1, 2, 3)] + [0.75] * 3)
    assert ramped_plans(plans, 0, 0) == plans and ramped_plans(plans, 0, 1) == plans
    res = admm(model, plans, loader, iterations=6, epochs=2, rho=RhoSchedule(0.5, 1.5, 2.0),
               optimizer="sgd", lr=0.5, progress=False, ramp=4)
    kept = [int(res.z.masks["0"][""].sum())]
    assert kept == [16]                                      # the last Z: the plan's 75%
    with pytest.raises(ValueError, match=r"^ramp must be a non-negative integer, not -1$"):
        admm(model, plans, loader, iterations=1, progress=False, ramp=-1)
    # a negative count used to run no iteration and return as if it had converged
    with pytest.raises(ValueError, match=r"^iterations must be a non-negative integer, not -1$"):
        admm(model, plans, loader, iterations=-1, progress=False)
    with pytest.raises(ValueError, match=r"^epochs must be a non-negative integer, not 1.5$"):
        admm(model, plans, loader, iterations=1, epochs=1.5, progress=False)


@pytest.mark.parametrize("rescale, z_last", [(False, [0.0, 1.8]), (True, [0.0, 1.35])])
def test_rescale_dual_keeps_rho_times_u_when_rho_grows(rescale, z_last):
    """W = [1, 0.9] held fixed (no W-step epochs), keep 1 of 2, rho 1 then 2. Iteration 1:
    Z = [1, 0], U = [0, 0.9]. Iteration 2: Z = Proj(W + U) with U = [0, 0.9] as the issue's
    update leaves it, or [0, 0.45] = U * rho_1 / rho_2 when the dual is rescaled."""
    model = nn.Sequential(nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.9]]))
    plans = resolve(Plan.uniform("unstructured", sparsity=0.5), model)
    res = admm(model, plans, [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))],
               iterations=2, epochs=0, rho=RhoSchedule(1.0, 2.0, 4.0), progress=False,
               rescale_dual=rescale)
    assert [h.rho["0"] for h in res.history] == [1.0, 2.0]
    assert res.z.weights["0"][""].flatten().tolist() == pytest.approx(z_last)


def test_project_weights_joint_rnn_shares_one_scale():
    lstm = nn.Module()
    lstm.rnn = nn.LSTM(6, 5)
    plans = resolve(Plan.uniform("bcr", block=[4, 3], sparsity=0.5, bits=4), lstm)
    ws = {"rnn": {"ih": lstm.rnn.weight_ih_l0.detach(), "hh": lstm.rnn.weight_hh_l0.detach()}}
    proj = project_weights(plans, ws, mode="joint")
    q, config = proj.scales["rnn"], plans["rnn"].config
    assert config == BCRConfig((4, 3), round(1 - 0.5 ** 0.5, 12), round(1 - 0.5 ** 0.5, 12))
    for s in ("ih", "hh"):
        m = proj.masks["rnn"][s]
        assert torch.equal(m, mask_of(config, ws["rnn"][s]))
        assert config.to_ir().violation(m.numpy().astype("uint8")) is None
        n = to_integers(proj.weights["rnn"][s], q, 4, m)
        assert torch.equal(torch.from_numpy(n).float() * torch.tensor(q, dtype=torch.float32),
                           proj.weights["rnn"][s])
        assert abs(n).max() <= 7 and (n[~m.numpy()] == 0).all()
    pruned = project_weights(plans, ws, mode="prune")
    assert pruned.scales["rnn"] is None
    assert torch.equal(pruned.weights["rnn"]["ih"], torch.where(proj.masks["rnn"]["ih"],
                                                                ws["rnn"]["ih"], 0.0))
    with pytest.raises(ValueError, match="mode 'quant' needs the masks"):
        project_weights(plans, ws, mode="quant")


def _digits_like(n: int = 96) -> list:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_masked_retraining_never_revives_a_pruned_weight(opt):
    loader = _digits_like()
    model = build("tinycnn", seed=0)
    train(model, loader, 1, optimizer=opt, lr=0.05, weight_decay=0.1)
    plans = resolve(Plan.uniform("unstructured", sparsity=0.8), model)
    control = copy.deepcopy(model)
    proj = hard_project(model, plans, mode="prune")
    hard_project(control, plans, mode="prune")
    params = {n: getattr(model, n).weight for n in plans}
    before = {n: p.detach().clone() for n, p in params.items()}
    forwards = []

    def check(module, args):
        forwards.append(all(bool((p[~proj.masks[n][""]] == 0).all()) for n, p in params.items()))

    model.register_forward_pre_hook(check)
    masked_retrain(model, plans, proj, loader, 2, optimizer=opt, lr=0.05, momentum=0.9,
                   weight_decay=0.1, progress=False)
    assert len(forwards) == 12 and all(forwards)
    for n, p in params.items():
        assert bool((p[~proj.masks[n][""]] == 0).all())
        assert not torch.equal(p.detach(), before[n])           # kept weights did train
    # the same run without re-applying the masks does revive pruned weights
    train(control, loader, 2, optimizer=opt, lr=0.05, momentum=0.9, weight_decay=0.1)
    assert any(bool((getattr(control, n).weight[~proj.masks[n][""]] != 0).any()) for n in plans)


def test_quant_phase_w_step_keeps_every_pruned_layers_mask():
    """Pruning then quantization with a float layer (fc1 bits = false): the quant phase's
    W-step held only the quantized layers' masks, and fc1 regrew its pruned weights in every
    forward pass until the final projection."""
    loader = _digits_like()
    model = build("tinycnn", seed=0)
    train(model, loader, 1)
    plans = resolve(Plan.from_dict({"default": {"scheme": "unstructured", "sparsity": 0.75,
                                                "bits": 4, "scope": "layer"},
                                    "layers": {"fc1": {"bits": False}}}), model)
    masks = hard_project(model, plans, mode="prune").masks
    params = {n: getattr(model, n).weight for n in plans}
    forwards = []

    def check(module, args):
        forwards.append({n: bool((p[~masks[n][""]] == 0).all()) for n, p in params.items()})

    model.register_forward_pre_hook(check)
    admm(model, plans, loader, iterations=2, epochs=1, mode="quant", masks=masks,
         progress=False)
    assert len(forwards) == 12 and all(all(f.values()) for f in forwards), forwards
    assert any(bool((p[masks[n][""]] != 0).any()) for n, p in params.items())


def test_quantization_aware_retraining_keeps_levels_and_zeros():
    loader = _digits_like()
    model = build("tinycnn", seed=0)
    plans = resolve(Plan.uniform("unstructured", sparsity=0.5, bits=3), model)
    proj = hard_project(model, plans, mode="joint")
    start = model.fc1.weight.detach().clone()
    masked_retrain(model, plans, proj, loader, 3, optimizer="sgd", lr=0.5, momentum=0.9,
                   weight_decay=0.01, progress=False)
    assert not torch.equal(model.fc1.weight.detach(), start)
    for n in plans:
        w, m, q = getattr(model, n).weight.detach(), proj.masks[n][""], proj.scales[n]
        ints = torch.from_numpy(to_integers(w, q, 3, m)).float()
        assert torch.equal(ints * torch.tensor(q, dtype=torch.float32), w)
        assert ints.abs().max() <= 3 and bool((w[~m] == 0).all())
