"""Read channel dependencies from a model's graph (torch.fx), for any architecture.

A channel mask placed after ``conv -> BN -> activation`` switches off output channels of
that conv; the *next* layer's input channels go with them. Which mask feeds which layer
is read by walking the traced graph backwards through operations that keep a zero channel
zero (activations with f(0) = 0, pooling, dropout, flatten); a batch norm between a mask and
the next layer maps a zero channel to its shift, so that mask's channels cannot be removed
and it is not placed (:func:`zeros_reach_consumers`). The same walk tells
``masks.insert_masks`` where a mask belongs, and is what physical removal (packing)
builds on, so that no model needs a hand-written rule.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

# Activations with f(0) = 0: masking before or after them gives the same result.
ZERO_PRESERVING_MODULES = (nn.ReLU, nn.ReLU6, nn.ELU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Tanh)
ZERO_PRESERVING_FUNCTIONS = {F.relu, F.relu6, F.elu, F.leaky_relu, F.gelu, F.silu, torch.relu, torch.tanh, F.hardswish}
# Operations that keep channel c in channel c and a zero channel zero.
ZERO_CHANNEL_MODULES = ZERO_PRESERVING_MODULES + (
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, nn.Upsample,
)
# ... and batch norm, which keeps channel c in channel c but maps zero to beta - gamma * mean / std.
CHANNEL_PRESERVING_MODULES = ZERO_CHANNEL_MODULES + (nn.BatchNorm2d,)
CHANNEL_PRESERVING_FUNCTIONS = ZERO_PRESERVING_FUNCTIONS | {
    torch.flatten, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.interpolate, F.dropout, operator.getitem,
}


class _LayerTracer(fx.Tracer):
    """fx's tracer, with every convolution and linear layer a leaf, subclasses included (a
    fake-quantized ``QuantConv2d`` is a convolution to the channel walk, not its inside)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.Linear)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` (convolutions and linear layers as leaves) with a message
    that says what to do when tracing fails."""
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.GraphModule(model, _LayerTracer().trace(model), type(model).__name__)
    except Exception as err:  # data-dependent control flow, unsupported ops
        raise TypeError(
            f"{type(model).__name__} could not be traced by torch.fx ({err}); masks and packing read "
            "channel dependencies from the traced graph, so write forward() without data-dependent "
            "Python control flow."
        ) from err


def module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def is_channel_preserving(gm: fx.GraphModule, node: fx.Node, zeros: bool = False) -> bool:
    """Whether ``node`` keeps channel c in channel c (``zeros``: and a zero channel zero)."""
    if node.op == "call_module":
        return isinstance(module_of(gm, node), ZERO_CHANNEL_MODULES if zeros else CHANNEL_PRESERVING_MODULES)
    if node.op == "call_function":
        return node.target in CHANNEL_PRESERVING_FUNCTIONS
    if node.op == "call_method":
        return node.target in ("flatten", "relu", "contiguous")
    return False


def mask_site(gm: fx.GraphModule, conv_node: fx.Node) -> fx.Node:
    """The node after which a conv's mask goes: the end of its ``conv -> BN -> activation`` chain.

    The chain is followed only while each node has a single user and is a batch norm or an
    activation with f(0) = 0, so that a 0 mask still means "this channel is zero downstream".
    """
    node = conv_node
    while len(node.users) == 1:
        (user,) = node.users
        mod = module_of(gm, user)
        follows = isinstance(mod, (nn.BatchNorm2d, *ZERO_PRESERVING_MODULES)) or (
            user.op == "call_function" and user.target in ZERO_PRESERVING_FUNCTIONS
        ) or (user.op == "call_method" and user.target == "relu")
        if not follows or user.args[0] is not node:
            break
        node = user
    return node


def _is_channel_cat(node: fx.Node) -> bool:
    if node.op != "call_function" or node.target is not torch.cat:
        return False
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    return dim in (1, -3)


def _width(gm: fx.GraphModule, node: fx.Node) -> int | None:
    """Channel count of ``node``'s output, read from the nearest conv / BN before it (any op that
    keeps the channel count, e.g. sigmoid or a scalar product, is walked through)."""
    current = node
    while isinstance(current, fx.Node):
        mod = module_of(gm, current)
        if isinstance(mod, nn.Conv2d):
            return mod.out_channels
        if isinstance(mod, nn.BatchNorm2d):
            return mod.num_features
        if _is_channel_cat(current):
            widths = [_width(gm, n) for n in current.args[0]]
            return None if None in widths else sum(widths)
        current = next((a for a in current.args if isinstance(a, fx.Node)), None)
    return None


def channel_sources(gm: fx.GraphModule, node: fx.Node, is_mask) -> list[tuple[str | None, int | None]]:
    """Where the input channels of ``node`` (a conv or linear) come from, in order: a list of
    ``(mask name, channels)`` segments, ``mask name`` None for channels no mask controls.

    Walks back through operations that keep a zero channel zero (not through a batch norm:
    channels that pass one are no longer a mask's zeros); a ``torch.cat`` along
    the channels joins the segments of its inputs (monodepth's skip connections), so the
    layer after a concatenation loses exactly the channels removed on each branch.
    """

    def walk(current) -> list[tuple[str | None, int | None]]:
        if not isinstance(current, fx.Node):
            return [(None, None)]
        if current.op == "call_module" and is_mask(module_of(gm, current)):
            return [(current.target, module_of(gm, current).channels)]
        if _is_channel_cat(current):
            return [seg for part in current.args[0] for seg in walk(part)]
        if is_channel_preserving(gm, current, zeros=True):
            return walk(current.args[0] if current.args else None)
        return [(None, _width(gm, current))]

    return walk(node.args[0] if node.args else None)


def zeros_reach_consumers(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """None when a zero channel of ``node``'s output is still zero wherever it is consumed (the
    input of a conv or linear, through operations that keep zeros, or a channel concatenation);
    else the name of the first node where it stops being zero (a batch norm, an addition),
    the reason its channels could not be removed."""
    for user in node.users:
        mod = module_of(gm, user)
        if user.op == "output" or user.op == "call_method" and user.target == "size" or user.target is getattr:
            continue  # the model's output keeps the zeros; a shape read does not read values
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and user.args[0] is node:
            continue
        if not (_is_channel_cat(user) or is_channel_preserving(gm, user, zeros=True)):
            return user.name
        blocked = zeros_reach_consumers(gm, user)
        if blocked is not None:
            return blocked
    return None


def producer(gm: fx.GraphModule, node: fx.Node, types: tuple[type, ...]) -> fx.Node | None:
    """The nearest node before ``node`` (through channel-preserving operations) whose module
    is one of ``types``, e.g. the convolution that a batch norm normalises."""
    current = node.args[0] if node.args else None
    while isinstance(current, fx.Node):
        if isinstance(module_of(gm, current), types):
            return current
        if not is_channel_preserving(gm, current):
            return None
        current = current.args[0] if current.args else None
    return None
