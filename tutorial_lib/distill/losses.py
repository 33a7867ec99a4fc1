"""The registry of distillation losses. KD (Hinton et al., 2015) is here; lesson 05 adds
FitNet, FSP and attention transfer under their names."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LOSSES: dict[str, Callable[..., torch.Tensor]] = {}


def register(name: str) -> Callable:
    """Decorator: make a loss available as ``get(name)``."""

    def wrap(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        LOSSES[name] = fn
        return fn

    return wrap


def get(name: str) -> Callable[..., torch.Tensor]:
    if name not in LOSSES:
        raise ValueError(f"unknown distillation method {name!r}; valid choices: {', '.join(LOSSES)}")
    return LOSSES[name]


@register("kd")
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton KD: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.

    The ``T^2`` keeps the gradient scale independent of the temperature. The teacher's
    logits carry no gradient.
    """
    if temperature <= 0:
        raise ValueError(f"the KD temperature must be > 0, got {temperature}")
    t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    s = F.log_softmax(student_logits / temperature, dim=1)
    return temperature**2 * F.kl_div(s, t, reduction="batchmean", log_target=True)
