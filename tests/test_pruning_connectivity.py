"""Connectivity-aware pruning: chains, dead weights, the connected projection, plans and ADMM."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from pruning import data
from pruning.admm import admm, hard_project, project_weights
from pruning.compress import compress
from pruning.connectivity import ChainError, chain_of, connected_masks, live_masks
from pruning.plan import Plan, PlanError, Rule, prunable_layers, resolve
from pruning.schemes import UnstructuredConfig
from pruning.zoo import build

LENET = ("conv1", "conv2", "fc1", "fc2")


class Chain(nn.Module):
    """conv (2 -> 3) -> relu -> flatten (3 x 2 x 2 = 12) -> linear 12 -> 4 -> relu -> 4 -> 2."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(2, 3, 2)
        self.a = nn.Linear(12, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c(x)).flatten(1)
        return self.b(torch.relu(self.a(x)))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x) + x)


class Softmaxed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.softmax(self.a(x), dim=1))


def _brute_live(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Independent reference: a weight is live when some path of kept weights runs from a model
    input through it to a model output (units of a layer's input: the previous layer's outputs,
    channel-major)."""
    n_layers = len(masks)

    def edges(i: int) -> set[tuple[int, int]]:
        m = masks[i]
        group = m.shape[1] // masks[i - 1].shape[0] if i else 1
        return {(int(o), int(c) // group) for o, c in
                zip(*torch.nonzero(m.reshape(m.shape[0], m.shape[1], -1).any(-1),
                                   as_tuple=True), strict=True)}

    e = [edges(i) for i in range(n_layers)]
    fed = [{o for o, _ in e[0]}]
    for i in range(1, n_layers):
        fed.append({o for o, c in e[i] if c in fed[-1]})
    used = [set()] * n_layers
    used[-1] = set(range(masks[-1].shape[0]))
    for i in range(n_layers - 2, -1, -1):
        used[i] = {c for o, c in e[i + 1] if o in used[i + 1]}
    out = []
    for i, m in enumerate(masks):
        group = m.shape[1] // masks[i - 1].shape[0] if i else 1
        live = torch.zeros_like(m, dtype=torch.bool)
        for idx in itertools.product(*map(range, m.shape)):
            o, c = idx[0], idx[1] // group
            if m[idx] and o in used[i] and o in fed[i] and (i == 0 or c in fed[i - 1]):
                live[idx] = True
        out.append(live)
    return out


def test_chain_of_finds_the_data_flow_order():
    assert chain_of(build("lenet5"), ["fc2", "conv1", "fc1", "conv2"]) == LENET
    vgg = build("vggsmall")
    assert chain_of(vgg, list(prunable_layers(vgg)))[-2:] == ("fc1", "fc2")
    assert chain_of(Chain(), ["a", "b", "c"]) == ("c", "a", "b")


@pytest.mark.parametrize("model,message", [
    (Residual(), "the value of 'x' is used more than once (a branch)"),
    (Softmaxed(), "'softmax' between the pruned layers is not a channel-wise operation"),
    (build("resnet18"), "used more than once (a branch)"),
    (build("mobilenetv2"), "needs groups=1 convolutions"),
    (build("lstm"), "takes Conv2d and Linear layers, not LSTM"),
])
def test_chain_of_rejects_what_is_not_a_chain(model, message):
    with pytest.raises(ChainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        chain_of(model, list(prunable_layers(model)))


def test_live_masks_by_hand():
    # fc 3 -> 2 -> 2: hidden unit 0 has inputs but no output; unit 1 has an output but no input
    m1 = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    m2 = torch.tensor([[0, 1], [0, 1]], dtype=torch.bool)
    l1, l2 = live_masks([m1, m2])
    assert not l1.any() and not l2.any()
    m2 = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
    l1, l2 = live_masks([m1, m2])
    assert torch.equal(l1, m1) and torch.equal(l2, torch.tensor([[1, 0], [0, 0]]).bool())


@pytest.mark.parametrize("seed", range(12))
def test_live_masks_equal_a_path_search(seed):
    g = torch.Generator().manual_seed(seed)
    density = 0.15 + 0.05 * (seed % 6)
    shapes = [(3, 2, 2, 2), (4, 12), (3, 4), (2, 3)]      # conv, then channel-major flatten x 4
    masks = [torch.rand(s, generator=g) < density for s in shapes]
    got = live_masks(masks)
    assert all(torch.equal(a, b) for a, b in zip(got, _brute_live(masks), strict=True))
    assert all(not (a & ~m).any() for a, m in zip(got, masks, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(live_masks(got), got, strict=True))  # idempotent


def test_removing_dead_weights_into_unused_units_keeps_the_output():
    torch.manual_seed(0)
    model = Chain()
    g = torch.Generator().manual_seed(1)
    layers = [model.c, model.a, model.b]
    masks = [torch.rand(x.weight.shape, generator=g) < 0.5 for x in layers]
    masks[2][:, 0] = False                          # hidden unit 0 of a feeds nothing...
    masks[1][0, :3] = True                          # ... but receives weights
    with torch.no_grad():
        for x, m in zip(layers, masks, strict=True):
            x.weight.mul_(m)
    x = torch.rand(5, 2, 3, 3, generator=g)
    before = model(x)
    live = live_masks(masks)
    assert not live[1][0].any() and not live[2][:, 0].any()
    with torch.no_grad():
        model.a.weight[0] = 0.0                     # the dead weights into unit 0
    assert torch.equal(model(x), before)


def test_connected_masks_on_trained_lenet_keep_the_budget_and_no_dead_weight():
    model = build("lenet5", seed=0)
    loader = data.loader("mnist5k", "train", batch_size=64, seed=0)
    from pruning.train import train
    train(model, loader, 1, lr=1e-3, seed=0)
    ws = [prunable_layers(model)[n].weight for n in LENET]
    plain = [m.reshape(w.shape) for m, w in zip(torch.split(
        _top(torch.cat([w.detach().abs().flatten() for w in ws]), 4305),
        [w.numel() for w in ws]), ws, strict=True)]
    conn = connected_masks(ws, 4305)
    assert sum(int(m.sum()) for m in conn) == 4305
    assert all(torch.equal(a, b) for a, b in zip(live_masks(conn), conn, strict=True))
    wasted = 4305 - sum(int(m.sum()) for m in live_masks(plain))
    assert wasted > 400                              # the magnitude mask wastes a lot here
    again = connected_masks(ws, 4305)
    assert all(torch.equal(a, b) for a, b in zip(conn, again, strict=True))
    per = connected_masks(ws, [300, 1000, 2000, 200])
    assert [int(m.sum()) for m in per] == [300, 1000, 2000, 200]
    assert all(torch.equal(a, b) for a, b in zip(live_masks(per), per, strict=True))


def _top(flat: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, k).indices] = True
    return keep


def test_connected_masks_equal_magnitude_masks_when_nothing_is_dead():
    g = torch.Generator().manual_seed(3)
    ws = [torch.randn(4, 6, generator=g), torch.randn(3, 4, generator=g)]
    for kept in ([20, 10], [24, 12]):
        got = connected_masks(ws, kept)
        plain = [_top(w.abs().flatten(), k).reshape(w.shape) for w, k in zip(ws, kept,
                                                                             strict=True)]
        if all(torch.equal(a, b) for a, b in zip(live_masks(plain), plain, strict=True)):
            assert all(torch.equal(a, b) for a, b in zip(got, plain, strict=True))


def test_plan_connected_key_and_errors():
    model = build("lenet5")
    plans = resolve(Plan.uniform("unstructured", ratio=100, scope="global", connected=True), model)
    assert all(p.config.connected and p.chain == LENET for p in plans.values())
    assert resolve(Plan.uniform("unstructured", ratio=100), model)["fc1"].chain is None
    with pytest.raises(PlanError, match="layer 'conv1': connected pruning needs every prunable "
                                        "layer unstructured with connected = true; this one is "
                                        "not planned"):
        resolve(Plan(layers={"fc1": Rule("unstructured", ratio=10,
                                         params=(("connected", True),))}), model)
    with pytest.raises(PlanError, match="this one is planned filter"):
        resolve(Plan(default=Rule("unstructured", ratio=10, params=(("connected", True),)),
                     layers={"fc2": Rule("filter", ratio=2)}), model)
    with pytest.raises(PlanError, match="connected pruning needs one scope"):
        resolve(Plan(default=Rule("unstructured", ratio=10, params=(("connected", True),)),
                     layers={"fc2": Rule(params=(("scope", "global"),))}), model)
    with pytest.raises(PlanError, match=r"connected pruning: .*branch"):
        resolve(Plan.uniform("unstructured", ratio=10, connected=True), build("resnet18"))
    with pytest.raises(PlanError, match="Connected must be true or false"):
        resolve(Plan.uniform("unstructured", ratio=10, connected="yes"), model)
    with pytest.raises(TypeError, match="Connected must be true or false"):   # a wrong type
        UnstructuredConfig(0.5, connected=1)


def test_projection_and_admm_keep_connected_masks():
    model = build("lenet5", seed=0)
    for scope in ("global", "layer"):
        plans = resolve(Plan.uniform("unstructured", ratio=100, scope=scope, connected=True),
                        model)
        w = {n: {"": m.weight.detach()} for n, m in prunable_layers(model).items()}
        proj = project_weights(plans, w, mode="prune")
        masks = [proj.masks[n][""] for n in LENET]
        kept = 4305 if scope == "global" else [
            round(m.weight.numel() / 100) for m in prunable_layers(model).values()]
        ref = connected_masks([w[n][""] for n in LENET], kept)
        assert all(torch.equal(a, b) for a, b in zip(masks, ref, strict=True))
    loader = data.loader("mnist5k", "train", batch_size=256, seed=0)
    small = [b for _, b in zip(range(3), loader, strict=False)]
    plans = resolve(Plan.uniform("unstructured", ratio=100, scope="global", connected=True),
                    model)
    res = admm(model, plans, small, iterations=2, progress=False, mode="prune")
    zm = [res.z.masks[n][""] for n in LENET]
    assert all(torch.equal(a, b) for a, b in zip(live_masks(zm), zm, strict=True))
    proj = hard_project(model, plans, mode="prune")
    hm = [proj.masks[n][""] for n in LENET]
    assert sum(int(m.sum()) for m in hm) == 4305
    assert all(torch.equal(a, b) for a, b in zip(live_masks(hm), hm, strict=True))
    with pytest.raises(ValueError, match="layers 'conv1', 'conv2', 'fc2' are missing"):
        project_weights({"fc1": plans["fc1"]}, {"fc1": {"": model.fc1.weight.detach()}},
                        mode="prune")


def test_compress_with_connected_plan_and_label_smoothing():
    loader = data.loader("mnist5k", "train", batch_size=256, seed=0)
    small = [b for _, b in zip(range(2), loader, strict=False)]
    model = build("lenet5", seed=0)
    res = compress(model, Plan.uniform("unstructured", ratio=50, scope="global", connected=True,
                                       bits=4),
                   small, admm_iters=1, retrain_epochs=1, progress=False,
                   label_smoothing=0.1)
    assert res.settings["label_smoothing"] == 0.1
    masks = [res.bundle.layer(n).tensors["mask"].astype(bool) for n in LENET]
    masks = [torch.from_numpy(m) for m in masks]
    assert all(torch.equal(a, b) for a, b in zip(live_masks(masks), masks, strict=True))
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\)"):
        compress(build("lenet5"), Plan.uniform("unstructured", ratio=50), small,
                 admm_iters=0, retrain_epochs=0, progress=False, label_smoothing=1.0)


def test_data_free_refuses_connected_plans():
    from pruning.datafree import prune_layerwise

    model = build("lenet5", seed=0)
    with pytest.raises(ValueError, match="layer 'conv1': connected pruning projects the whole "
                                         "chain of layers at once; the data-free mode prunes one "
                                         "layer at a time"):
        prune_layerwise(model, Plan.uniform("unstructured", ratio=10, connected=True),
                        [torch.rand(2, 1, 28, 28)], iterations=1)
