"""Hinton knowledge distillation (Hinton, Vinyals & Dean 2015): the loss term any trainer
can add, the classification trainer included, so it sits below ``train``; the registry of
distillation methods (``tutorial_lib.distill``) lists it as ``kd`` beside the feature methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


def teacher_kd(teacher: nn.Module, x: torch.Tensor, student_logits: torch.Tensor,
               temperature: float = 4.0) -> torch.Tensor:
    """KD against a frozen teacher run on the same batch (no gradient reaches the teacher)."""
    with torch.no_grad():
        teacher_logits = teacher(x)
    return kd_loss(student_logits, teacher_logits, temperature)
