"""Loss terms that joint pruning, the baselines and the constrained loop add to the task
loss, assembled by name into one regularizer for ``train.fit``: a method is its task weight
plus a list of terms, not a hand-written closure.

- :func:`mask`: ``lam * L_mask`` over the channel masks (lesson 01's sparsity term);
- :func:`teacher_kd`: ``weight * KD`` against a frozen teacher on the same batch (Hinton's
  softened logits for classification, or a task's own distillation, such as depth's
  disparity KD).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from tutorial_lib import kd, masks

# (model, inputs, targets, outputs) -> the term's value, or None where it does not apply
Term = Callable[[nn.Module, torch.Tensor, object, object], "torch.Tensor | None"]


def mask(lam: float, kind: str, scale: Callable[[], float] | None = None) -> Term:
    """``lam * masks.sparsity_loss(model, kind)``, times ``scale()`` at each step where given
    (a warm-up); absent while the model has no masks (the constrained loop's fine-tuning phase)."""

    def term(model, x, y, outputs):
        if not masks.masks_of(model):
            return None
        return (lam if scale is None else lam * scale()) * masks.sparsity_loss(model, kind)

    return term


def teacher_kd(weight: float, teacher: nn.Module, temperature: float = 4.0,
               distill: Callable[..., torch.Tensor] = kd.kd_loss) -> Term:
    """``weight * distill(outputs, teacher(x), temperature)``, the teacher run without
    gradients on the same batch (a ``TeacherMemo`` answers from memory)."""

    def term(model, x, y, outputs):
        with torch.no_grad():
            teacher_outputs = teacher(x)
        return weight * distill(outputs, teacher_outputs, temperature)

    return term


def assemble(**terms: Term | None) -> Callable[..., dict[str, torch.Tensor]] | None:
    """One regularizer for ``train.fit`` from named terms, in the order given (the order the
    loss sums them); ``None`` terms are left out, and no terms at all give ``None``."""
    active = {name: t for name, t in terms.items() if t is not None}
    if not active:
        return None

    def regularizer(model, x, y, outputs) -> dict[str, torch.Tensor]:
        values = {name: t(model, x, y, outputs) for name, t in active.items()}
        return {name: v for name, v in values.items() if v is not None}

    return regularizer
