"""What a plain model holds and computes: parameters, and FLOPs (torch.utils.flop_counter).
Latency is measured by ``tutorial_lib.measure``; ``tutorial_lib.cost`` counts masked and
described models too."""

from __future__ import annotations


import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (of a masked model, mask logits included: see ``masks.estimate``)."""
    return sum(p.numel() for p in model.parameters())


def _example(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    return torch.zeros(input_shape, device=device)


@torch.no_grad()
def _flop_counter(model: nn.Module, input_shape: tuple[int, ...]) -> FlopCounterMode:
    """Run one eval-mode forward pass under ``FlopCounterMode`` (training mode restored after)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(_example(model, input_shape))
    model.train(was_training)
    return counter


def flops_per_module(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """FLOPs (multiply and add counted separately, so 2 x MACs) per leaf module name, eval mode."""
    counter = _flop_counter(model, input_shape)
    leaves = {name for name, m in model.named_modules() if not list(m.children())}
    out: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        name = key.split(".", 1)[1] if "." in key else ""
        if name in leaves:
            out[name] = int(sum(ops.values()))
    return out


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Total FLOPs of one forward pass for ``input_shape`` (batch included)."""
    return int(_flop_counter(model, input_shape).get_total_flops())
