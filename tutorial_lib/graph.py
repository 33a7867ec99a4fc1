"""Read channel dependencies from a model's graph (torch.fx), for any architecture.

A channel mask placed after ``conv -> BN -> activation`` switches off output channels of
that conv; the *next* layer's input channels go with them. Which mask feeds which layer
is read by walking the traced graph backwards through channel-preserving operations
(batch norm, activations with f(0) = 0, pooling, dropout, flatten). The same walk tells
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
# Operations that keep channel c in channel c (and map zero channels to zero channels).
CHANNEL_PRESERVING_MODULES = ZERO_PRESERVING_MODULES + (
    nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, nn.Upsample,
)
CHANNEL_PRESERVING_FUNCTIONS = ZERO_PRESERVING_FUNCTIONS | {
    torch.flatten, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.interpolate, F.dropout, operator.getitem,
}


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` with a message that says what to do when tracing fails."""
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as err:  # data-dependent control flow, unsupported ops
        raise TypeError(
            f"{type(model).__name__} could not be traced by torch.fx ({err}); masks and packing read "
            "channel dependencies from the traced graph, so write forward() without data-dependent "
            "Python control flow."
        ) from err


def module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def is_channel_preserving(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(module_of(gm, node), CHANNEL_PRESERVING_MODULES)
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


def source_mask(gm: fx.GraphModule, node: fx.Node, is_mask) -> str | None:
    """The name of the mask module whose channels reach ``node``'s first input, if any.

    Walks back through channel-preserving operations; stops (returning ``None``) at the
    model input or at an operation that mixes channels in a way not handled here.
    """
    current = node.args[0] if node.args else None
    while isinstance(current, fx.Node):
        if current.op == "call_module" and is_mask(module_of(gm, current)):
            return current.target
        if not is_channel_preserving(gm, current):
            return None
        current = current.args[0] if current.args else None
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
