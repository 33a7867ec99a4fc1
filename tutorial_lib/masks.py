"""The learnable binary channel mask (straight-through estimator) and its bookkeeping.

One real-valued parameter ``m`` per output channel, shape ``(1, C, 1, 1)``, initialised
``m ~ U[0, 0.01)`` so every mask starts at 1. Forward: ``b = 1[sigmoid(m) > 0.5]`` and the
layer output is multiplied by ``b``. A hard threshold has zero gradient almost everywhere,
so the backward pass is *straight-through*: ``dL/dm = dL/db * sigmoid'(m)``, as in the
group's public code. ``insert_masks`` puts one mask after every convolution of any
traceable model (after its BN and activation), and the functions below read which
channels are kept and what the kept model would cost.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd
import torch
from torch import fx, nn

from tutorial_lib import graph, metrics
from tutorial_lib.taps import Taps


class StraightThroughStep(torch.autograd.Function):
    """``b = 1[sigmoid(m) > 0.5]`` forward; ``dL/dm = dL/db * sigmoid'(m)`` backward."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits)
        return (torch.sigmoid(logits) > 0.5).to(logits.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (logits,) = ctx.saved_tensors
        s = torch.sigmoid(logits)
        return grad_output * s * (1 - s)


def binarize(logits: torch.Tensor) -> torch.Tensor:
    """The binary mask of ``logits``, differentiable through the straight-through estimator."""
    return StraightThroughStep.apply(logits)


class ChannelMask(nn.Module):
    """Multiplies each channel of its input by a learnable binary gate ``b`` in {0, 1}."""

    def __init__(self, channels: int, init_high: float = 0.01, layer: str = "",
                 generator: torch.Generator | None = None):
        super().__init__()
        if channels < 1:
            raise ValueError(f"a mask needs at least one channel, got {channels}")
        self.layer = layer  # the convolution this mask switches channels of
        self.cost: float | None = None  # one filter's share of the cost, set by attach_costs
        self.logits = nn.Parameter(torch.rand(1, channels, 1, 1, generator=generator) * init_high)

    @property
    def channels(self) -> int:
        return self.logits.shape[1]

    def binary(self) -> torch.Tensor:
        """``b`` with straight-through gradient, shape ``(1, C, 1, 1)``."""
        return binarize(self.logits)

    def is_open(self) -> torch.Tensor:
        """Boolean vector of the channels that are switched on."""
        return (torch.sigmoid(self.logits.detach()) > 0.5).flatten()

    def survivors(self) -> torch.Tensor:
        """The channels packing keeps: those switched on or, when every gate of the layer is
        closed, the strongest one (highest logit), so that the network stays connected."""
        on = self.is_open()
        if not on.any():
            on = torch.zeros_like(on)
            on[self.logits.detach().flatten().argmax()] = True
        return on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.binary()

    def extra_repr(self) -> str:
        return f"channels={self.channels}, layer={self.layer!r}"


def _is_mask(module) -> bool:
    return isinstance(module, ChannelMask)


def insert_masks(model: nn.Module, init_high: float = 0.01, seed: int = 0,
                 layers: list[str] | None = None) -> fx.GraphModule:
    """A traced copy of ``model`` with a :class:`ChannelMask` after every ``Conv2d`` (or after
    the convs named in ``layers``; by default the model's ``prunable_convs()`` when it has
    one, e.g. monodepth's encoder convs and upconvs, else every conv).

    The mask goes after the conv's BN and zero-preserving activation (conv -> BN -> ReLU
    -> mask); since ReLU(0) = 0 this is the same as masking the BN output. A conv whose
    zeros would not reach the next layers as zeros (a batch norm or an addition on the way,
    ``graph.zeros_reach_consumers``) gets no mask: its channels could not be removed; naming
    it in ``layers`` is an error. The returned
    module shares its weights with ``model``; masks live under ``.masks``. Their initial
    logits are drawn from ``seed``, so the same call gives the same masks.
    """
    if masks_of(model):
        raise ValueError("this model already has channel masks")
    if layers is None and callable(getattr(model, "prunable_convs", None)):
        layers = model.prunable_convs()
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    unknown = sorted(set(layers or ()) - convs)
    if unknown:
        raise KeyError(f"no convolution named {unknown} in {type(model).__name__}; convolutions: {sorted(convs)}")
    generator = torch.Generator().manual_seed(seed)
    gm = graph.trace(model)
    spec = getattr(model, "spec", None)
    gm.meta["source_spec"] = spec() if callable(spec) else None  # what packing rebuilds
    for node in list(gm.graph.nodes):
        conv = graph.module_of(gm, node)
        if not isinstance(conv, nn.Conv2d) or (layers is not None and node.target not in layers):
            continue
        site = graph.mask_site(gm, node)
        blocked = graph.zeros_reach_consumers(gm, site)
        if blocked is not None:
            if layers is not None:
                raise ValueError(f"{node.target}'s channels cannot be masked: a zero channel is no longer zero at "
                                 f"{blocked!r} (a batch norm or an addition), so removing it would change the output")
            continue
        name = "masks." + node.target.replace(".", "_")
        gm.add_submodule(name, ChannelMask(conv.out_channels, init_high, node.target, generator))
        with gm.graph.inserting_after(site):
            mask_node = gm.graph.call_module(name, (site,))
        site.replace_all_uses_with(mask_node, delete_user_cb=lambda user: user is not mask_node)
    gm.graph.lint()
    gm.recompile()
    return gm


def masks_of(model: nn.Module) -> dict[str, ChannelMask]:
    """The masks of ``model`` keyed by the convolution they belong to, in graph order."""
    return {m.layer: m for m in model.modules() if _is_mask(m)}


def mask_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [m.logits for m in masks_of(model).values()]


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter except the mask logits (what a packed model keeps)."""
    ids = {id(p) for p in mask_parameters(model)}
    return [p for p in model.parameters() if id(p) not in ids]


def sparsity_layer_mean(model: nn.Module) -> torch.Tensor:
    """Mean over layers of the mean |b| per layer: every layer weighs the same (classification code)."""
    bs = [m.binary().abs().mean() for m in masks_of(model).values()]
    return torch.stack(bs).mean()


def sparsity_filter_sum(model: nn.Module) -> torch.Tensor:
    """Sum of |b| over all filters, un-normalised: wide layers weigh more (monodepth paper)."""
    return torch.stack([m.binary().abs().sum() for m in masks_of(model).values()]).sum()


@torch.no_grad()
def attach_costs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """Price one filter of every masked conv, for the ``cost_sum`` mask term, and return the prices.

    A filter of conv ``l`` (``C_in`` inputs, ``k x k`` kernel, ``H x W`` output for
    ``input_shape``) holds ``p_l = C_in k^2 + 1`` parameters and costs ``f_l = p_l H W``
    multiply-adds. Its price is the mean of its shares of the masked convs' parameters and
    FLOPs, ``(p_l / sum_j C_j p_j + f_l / sum_j C_j f_j) / 2``, so the prices of all filters
    sum to 1. Counting FLOPs makes a filter at full resolution dear and one at 1/64 cheap,
    which is what frames per second need; counting parameters keeps the deep, wide layers
    worth pruning too (filter_sum prices every filter the same).
    """
    mask_list = masks_of(model)
    if not mask_list:
        raise ValueError("the model has no channel masks: call insert_masks(model) first")
    modules = dict(model.named_modules())
    was_training = model.training
    try:
        with Taps(model, list(mask_list)) as taps:
            model.eval()(torch.zeros(input_shape, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
    per_filter = {}
    for layer, mask in mask_list.items():
        conv = modules[layer]
        params = conv.weight[0].numel() + (1 if conv.bias is not None else 0)
        per_filter[layer] = (params, params * taps[layer].shape[-2:].numel(), mask.channels)
    total_p = sum(p * c for p, _, c in per_filter.values())
    total_f = sum(f * c for _, f, c in per_filter.values())
    for layer, (p, f, _) in per_filter.items():
        mask_list[layer].cost = 0.5 * (p / total_p + f / total_f)
    return {layer: m.cost for layer, m in mask_list.items()}


def sparsity_cost_sum(model: nn.Module) -> torch.Tensor:
    """Sum of |b| over all filters, each weighted by its price (:func:`attach_costs`): the
    share of the masked convs' parameters and FLOPs still switched on.

    Each layer's strongest filter (highest logit) is left unpriced: packing keeps one filter
    per layer anyway, and a layer whose gates all close cuts the signal during training.
    Whether the last filter stays open is left to the task loss."""
    priced = masks_of(model).values()
    if any(m.cost is None for m in priced):
        raise ValueError("the cost_sum mask term needs each filter's price: call "
                         "masks.attach_costs(model, input_shape) after insert_masks")
    terms = []
    for m in priced:
        b = m.binary().abs().flatten()
        terms.append(m.cost * (b.sum() - b[m.logits.detach().flatten().argmax()]))
    return torch.stack(terms).sum()


SPARSITY_LOSSES: dict[str, Callable[[nn.Module], torch.Tensor]] = {
    "layer_mean": sparsity_layer_mean,
    "filter_sum": sparsity_filter_sum,
    "cost_sum": sparsity_cost_sum,
}


def sparsity_loss(model: nn.Module, kind: str = "layer_mean") -> torch.Tensor:
    """The mask term by name (see ``SPARSITY_LOSSES``)."""
    if kind not in SPARSITY_LOSSES:
        raise ValueError(f"unknown mask loss {kind!r}; valid choices: {', '.join(SPARSITY_LOSSES)}")
    if not masks_of(model):
        raise ValueError("the model has no channel masks: call insert_masks(model) first")
    return SPARSITY_LOSSES[kind](model)


def kept_channels(model: nn.Module) -> pd.DataFrame:
    """One row per masked layer: ``layer``, ``kept``, ``total``, ``kept_pct`` (what packing keeps)."""
    rows = [
        {"layer": name, "kept": int(m.survivors().sum()), "total": m.channels}
        for name, m in masks_of(model).items()
    ]
    df = pd.DataFrame(rows, columns=["layer", "kept", "total"])
    df["kept_pct"] = (100 * df["kept"] / df["total"]).round(1)
    return df


def input_kept(gm: fx.GraphModule, node: fx.Node) -> torch.Tensor | None:
    """Which input channels of ``node`` (a conv or linear) survive packing, as a boolean vector
    over its input channels (segments of a concatenation in order); None when no mask reaches it."""
    by_mask_name = {name: m for name, m in gm.named_modules() if _is_mask(m)}
    segments = graph.channel_sources(gm, node, _is_mask)
    if all(name is None for name, _ in segments):
        return None
    parts = []
    for name, width in segments:
        if name is not None:
            parts.append(by_mask_name[name].survivors())
        elif width is None:
            raise ValueError(f"cannot tell how many channels reach {node.target} unmasked: trace shows no conv before them")
        else:
            parts.append(torch.ones(width, dtype=torch.bool))
    return torch.cat(parts)


def _channel_fractions(gm: fx.GraphModule) -> dict[str, tuple[float, float]]:
    """For each conv / BN / linear module: (kept fraction of inputs, kept fraction of outputs)."""
    by_layer = masks_of(gm)

    def frac(mask: ChannelMask | None) -> float:
        return 1.0 if mask is None else float(mask.survivors().float().mean())

    fractions: dict[str, tuple[float, float]] = {}
    for node in gm.graph.nodes:
        mod = graph.module_of(gm, node)
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            kin = input_kept(gm, node)
            fin = 1.0 if kin is None else float(kin.float().mean())
            fout = frac(by_layer.get(node.target)) if isinstance(mod, nn.Conv2d) else 1.0
            fractions[node.target] = (fin, fout)
        elif isinstance(mod, nn.BatchNorm2d):
            conv = graph.producer(gm, node, (nn.Conv2d,))
            fractions[node.target] = (1.0, frac(by_layer.get(conv.target)) if conv is not None else 1.0)
    return fractions


def estimate(model: nn.Module, input_shape: tuple[int, ...] | None = None, flops: bool = True) -> dict[str, float]:
    """Parameters and FLOPs of the model with masked-off channels removed, and of the full one.

    Mask logits are not counted (they are dropped when the model is packed). FLOPs come from
    ``torch.utils.flop_counter`` per layer, scaled by the kept input and output fractions
    (skipped with ``flops=False``, for searches that only need parameters; then no
    ``input_shape`` is needed).
    """
    if flops and input_shape is None:
        raise ValueError("counting FLOPs needs the input shape, e.g. (1, 3, image_size, image_size)")
    gm = graph.trace(model)
    fractions = _channel_fractions(gm)
    mask_ids = {id(p) for p in mask_parameters(gm)}
    params_total = sum(p.numel() for p in gm.parameters() if id(p) not in mask_ids)
    params_kept = 0.0
    counted: set[int] = set()
    for name, mod in gm.named_modules():
        if name in fractions:
            fin, fout = fractions[name]
            for pname, p in mod.named_parameters(recurse=False):
                # weights scale with kept inputs and outputs; biases and BN affine with outputs
                scale = fout if (pname == "bias" or isinstance(mod, nn.BatchNorm2d)) else fin * fout
                params_kept += p.numel() * scale
                counted.add(id(p))
    params_kept += sum(p.numel() for p in gm.parameters() if id(p) not in counted and id(p) not in mask_ids)
    if not flops:
        return {"params_kept": int(round(params_kept)), "params_total": int(params_total)}
    per_layer = metrics.flops_per_module(gm, input_shape)
    flops_total = sum(per_layer.values())
    flops_kept = sum(f * fractions.get(name, (1.0, 1.0))[0] * fractions.get(name, (1.0, 1.0))[1]
                     for name, f in per_layer.items())
    return {
        "params_kept": int(round(params_kept)), "params_total": int(params_total),
        "flops_kept": int(round(flops_kept)), "flops_total": int(flops_total),
    }


def set_pattern(model: nn.Module, keep: dict[str, torch.Tensor]) -> None:
    """Open exactly the channels in ``keep`` (layer -> boolean vector) and close the rest."""
    layers = masks_of(model)
    with torch.no_grad():
        for layer, on in keep.items():
            layers[layer].logits.copy_(torch.where(on, 1.0, -1.0).view_as(layers[layer].logits))


def gradient_check(logits: torch.Tensor, x: torch.Tensor, eps: float = 1e-4) -> dict[str, float]:
    """Check the straight-through gradient numerically, for ``L = sum((x * b)^2) / 2``.

    Returns the largest finite-difference derivative of the *true* (thresholded) loss with
    respect to ``m`` (zero: a step has no slope), and the largest gap between the
    straight-through gradient and ``dL/db * sigmoid'(m)`` computed by central differences.
    """
    logits = logits.detach().double().clone().requires_grad_(True)
    x = x.detach().double()

    def loss_of_b(b: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x * b) ** 2).sum()

    loss_of_b(binarize(logits)).backward()
    ste = logits.grad.clone()
    with torch.no_grad():
        b = (torch.sigmoid(logits) > 0.5).double()
        true_slope = torch.zeros_like(logits)
        dl_db = torch.zeros_like(logits)
        dsig = torch.zeros_like(logits)
        for i in range(logits.numel()):
            step = torch.zeros_like(logits).flatten()
            step[i] = eps
            step = step.view_as(logits)
            hard = lambda m: loss_of_b((torch.sigmoid(m) > 0.5).double())  # noqa: E731
            true_slope.view(-1)[i] = (hard(logits + step) - hard(logits - step)) / (2 * eps)
            dl_db.view(-1)[i] = (loss_of_b(b + step) - loss_of_b(b - step)) / (2 * eps)
            dsig.view(-1)[i] = ((torch.sigmoid(logits + step) - torch.sigmoid(logits - step)) / (2 * eps)).view(-1)[i]
    return {
        "max_true_slope": float(true_slope.abs().max()),
        "max_ste_error": float((ste - dl_db * dsig).abs().max()),
    }
