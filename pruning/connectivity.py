"""Connectivity-aware unstructured pruning: no kept weight off every input-to-output path.

At extreme sparsity a magnitude mask wastes much of its budget on weights that cannot change the
model's output: a weight into a hidden unit none of whose outgoing weights is kept, or out of a
unit none of whose incoming weights is kept (that unit's output is a constant, worth a bias at
most). On LeNet-5 at 100x (bench/compression.py's seed-0 dense model), one global magnitude
threshold spends 1,159 of its 4,305 weights (27%) on dead ones: 1,153 fc1 inputs of units with no
kept fc2 weight, 6 fc2 weights out of units with no kept input.

:func:`chain_of` finds the prunable layers of a model whose data flow is one chain (each layer
feeds only the next, through channel-wise operations: activations, pooling, batch norm, dropout,
flatten), by tracing it with ``torch.fx``. :func:`live_masks` removes from a chain's masks every
weight that lies on no input-to-output path. :func:`connected_masks` is the projection that
``UnstructuredConfig(connected=True)`` layers use: the largest-magnitude weights (over the chain,
or per layer), where each round drops the weights found dead and takes the next largest instead,
until the kept set has no dead weight. It is a heuristic (the set of connected supports has no
closed-form projection): its result always satisfies the budget and has no dead weight.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ChainError", "chain_of", "live_masks", "connected_masks"]

#: Modules that act on each channel alone: a channel that is constant stays constant.
CHANNELWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardtanh,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity,
    nn.Flatten)
CHANNELWISE_FUNCTIONS = {
    torch.relu, torch.tanh, torch.sigmoid, torch.max_pool2d, torch.flatten,
    nn.functional.relu, nn.functional.relu6, nn.functional.leaky_relu, nn.functional.gelu,
    nn.functional.silu, nn.functional.max_pool2d, nn.functional.avg_pool2d,
    nn.functional.adaptive_avg_pool2d, nn.functional.adaptive_max_pool2d,
    nn.functional.dropout}
CHANNELWISE_METHODS = {"relu", "tanh", "sigmoid", "flatten", "contiguous"}


class ChainError(ValueError):
    """The model's prunable layers do not form one chain; the message says where."""


def _node_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    found: list[torch.fx.Node] = []
    torch.fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def chain_of(model: nn.Module, names: Sequence[str]) -> tuple[str, ...]:
    """The layers ``names`` (``named_modules()`` names of Conv2d/Linear layers) in data-flow
    order, checked to form one chain.

    The model is traced with ``torch.fx``; from its input to its output the signal must pass
    through every named layer once, with only channel-wise operations between them (see
    ``CHANNELWISE_*``), no branch and no other layer; each layer's input channels (a linear
    layer's features: channel-major flatten) a whole multiple of the previous layer's outputs.

    Raises
    ------
    ChainError
        Naming what breaks the chain (an operation, a branch, a layer type, a shape).
    """
    modules = dict(model.named_modules())
    wanted = set(names)
    for n in names:
        m = modules.get(n)
        if not isinstance(m, nn.Conv2d | nn.Linear):
            raise ChainError(f"layer {n!r}: connected pruning takes Conv2d and Linear layers, "
                             f"not {type(m).__name__}")
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise ChainError(f"layer {n!r}: connected pruning needs groups=1 convolutions")
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "not a known chain"
        raise ChainError(f"the model cannot be traced to check its layers form a chain ({exc})") \
            from None
    order: list[str] = []
    current: torch.fx.Node | None = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise ChainError("connected pruning needs a model with one input")
            current = node
            continue
        if node.op == "get_attr":
            raise ChainError(f"operation {node.target!r} reads a parameter outside a layer; "
                             "connected pruning needs a plain chain of layers")
        inputs = _node_inputs(node)
        if node.op == "output":
            if inputs != [current]:
                raise ChainError("the model's output is not the end of one chain of layers")
            break
        if inputs != [current]:
            raise ChainError(f"operation {node.name!r} combines several values (a branch or a "
                             "residual connection); connected pruning needs one chain of layers")
        if len(current.users) != 1:
            raise ChainError(f"the value of {current.name!r} is used more than once (a branch); "
                             "connected pruning needs one chain of layers")
        target = node.target
        if node.op == "call_module":
            if target in wanted:
                order.append(str(target))
            elif not isinstance(modules[str(target)], CHANNELWISE_MODULES):
                raise ChainError(f"module {target!r} ({type(modules[str(target)]).__name__}) "
                                 "between the pruned layers is not a channel-wise operation")
        elif node.op == "call_function":
            if target not in CHANNELWISE_FUNCTIONS and target is not operator.getitem:
                raise ChainError(f"operation {getattr(target, '__name__', target)!r} between the "
                                 "pruned layers is not a channel-wise operation")
            if target is operator.getitem:
                raise ChainError(f"indexing ({node.name!r}) between the pruned layers is not a "
                                 "channel-wise operation")
        elif node.op == "call_method":
            if target not in CHANNELWISE_METHODS:
                raise ChainError(f"method {target!r} between the pruned layers is not a "
                                 "channel-wise operation")
        current = node
    missing = [n for n in names if n not in order]
    if missing or len(order) != len(set(order)):
        raise ChainError(f"layers {', '.join(map(repr, missing or order))} are not each used "
                         "once on the model's path from input to output")
    for prev, name in zip(order, order[1:], strict=False):
        outs = modules[prev].weight.shape[0]
        ins = modules[name].weight.shape[1]
        if ins % outs:
            raise ChainError(f"layer {name!r} takes {ins} inputs, not a whole multiple of the "
                             f"{outs} outputs of {prev!r}")
    return tuple(order)


def _unit_links(masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, ``(out, previous layer's out)`` bool: some kept weight links the two units."""
    links = []
    for i, m in enumerate(masks):
        m2 = m.reshape(m.shape[0], m.shape[1], -1).any(-1)
        if i:
            prev = masks[i - 1].shape[0]
            m2 = m2.reshape(m.shape[0], prev, m.shape[1] // prev).any(-1)
        links.append(m2)
    return links


def live_masks(masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The masks of a chain (in data-flow order, each ``(out, in, ...)``, a layer's inputs
    grouped channel-major by the previous layer's outputs) without their dead weights.

    A weight is live when its input unit receives a kept weight (every input of the first
    layer does) and its output unit reaches the chain's output through kept weights (every
    output of the last layer does). Pure; bool masks of the same shapes."""
    if not masks:
        return []
    links = _unit_links(masks)
    fed: list[torch.Tensor] = []
    for i, link in enumerate(links):
        src = fed[-1] if i else torch.ones(link.shape[1], dtype=torch.bool, device=link.device)
        fed.append((link & src[None, :]).any(1))
    used: list[torch.Tensor] = [torch.empty(0)] * len(links)
    used[-1] = torch.ones(links[-1].shape[0], dtype=torch.bool, device=links[-1].device)
    for i in range(len(links) - 2, -1, -1):
        used[i] = (links[i + 1] & used[i + 1][:, None]).any(0)
    out = []
    for i, m in enumerate(masks):
        if i:
            src = fed[i - 1].repeat_interleave(m.shape[1] // fed[i - 1].numel())
        else:
            src = torch.ones(m.shape[1], dtype=torch.bool, device=m.device)
        keep = (used[i] & fed[i])[:, None] & src[None, :]
        out.append(m.bool() & keep.reshape(keep.shape + (1,) * (m.dim() - 2)))
    return out


def connected_masks(scores: Sequence[torch.Tensor], kept: int | Sequence[int],
                    max_rounds: int = 1000) -> list[torch.Tensor]:
    """Keep the largest ``scores`` (``|w|``) of a chain with no dead weight (:func:`live_masks`).

    ``kept`` is one count over the whole chain (global) or one per layer. Each round takes the
    top counts among the weights not yet excluded, and excludes those found dead, until a round
    finds none; a weight excluded once stays excluded. Returns bool masks with at most the
    budget kept (fewer only if fewer live weights remain) and no dead weight; deterministic
    (ties to the earlier layer, then the lower flat index).
    """
    from pruning.projections import _top_flat  # the same tie rule as the other projections

    flat = [s.detach().abs().double().flatten() for s in scores]
    sizes = [s.numel() for s in scores]
    per_layer = not isinstance(kept, int)
    excluded = [torch.zeros(n, dtype=torch.bool, device=f.device) for n, f in zip(sizes, flat,
                                                                                  strict=True)]
    for _ in range(max_rounds):
        score = [torch.where(e, torch.full_like(f, -1.0), f) for f, e in zip(flat, excluded,
                                                                              strict=True)]
        if per_layer:
            keep = [_top_flat(s, min(int(k), int((s >= 0).sum())))
                    for s, k in zip(score, kept, strict=True)]
        else:
            allk = _top_flat(torch.cat(score), min(int(kept), sum(int((s >= 0).sum())
                                                               for s in score)))
            keep = list(torch.split(allk, sizes))
        masks = [k.reshape(s.shape) for k, s in zip(keep, scores, strict=True)]
        live = live_masks(masks)
        dead = [(m & ~lv).flatten() for m, lv in zip(masks, live, strict=True)]
        if not any(bool(d.any()) for d in dead):
            return masks
        excluded = [e | d for e, d in zip(excluded, dead, strict=True)]
    return live_masks(masks)
