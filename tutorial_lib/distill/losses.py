"""The registry of distillation losses, by name, as the seed lists them:

- ``kd``: Hinton et al. 2015, softened logits;
- ``fitnet``: Romero et al. 2015, a regressor maps the student's guided layer to the
  teacher's hint layer, L2 between them;
- ``fsp``: Yim et al. 2017, Gram ("flow of solution procedure") matrices between pairs of
  layers, MSE between teacher and student matrices;
- ``at``: Zagoruyko & Komodakis 2017, attention maps (normalised channel mean of x^2),
  squared difference at the ends of stages;
- ``disparity``: KD for a dense regressor (lesson 03): the teacher's disparity maps are the
  soft targets, L1 between them at every output scale, in pixels of the input image.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tutorial_lib.kd import kd_loss, teacher_kd  # noqa: F401  (re-exported: distill.kd_loss, distill.teacher_kd)

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


register("kd")(kd_loss)  # Hinton KD lives below the trainer (tutorial_lib.kd): every trainer can add it


def _same_size(s: torch.Tensor, t: torch.Tensor, what: str) -> None:
    if s.shape[-2:] != t.shape[-2:]:
        raise ValueError(f"{what}: student map {tuple(s.shape[-2:])} and teacher map {tuple(t.shape[-2:])} differ in "
                         "spatial size; tap layers of equal resolution (e.g. the same stage ends)")


@register("fitnet")
def fitnet_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, regressor: nn.Module) -> torch.Tensor:
    """FitNet hint loss: ``mean((regressor(student) - teacher)^2)``; the regressor (a conv)
    maps the student's width to the teacher's."""
    mapped = regressor(student_feature)
    _same_size(mapped, teacher_feature, "fitnet")
    if mapped.shape[1] != teacher_feature.shape[1]:
        raise ValueError(f"fitnet: the regressor gives {mapped.shape[1]} channels, the teacher's hint has "
                         f"{teacher_feature.shape[1]}")
    return F.mse_loss(mapped, teacher_feature.detach())


def hint_regressor(student_channels: int, teacher_channels: int) -> nn.Module:
    """FitNet's regressor as RepDistiller builds it (``ConvReg``): a 3x3 conv, BN and ReLU
    from the student's width to the teacher's (the hint is a post-ReLU map)."""
    return nn.Sequential(nn.Conv2d(student_channels, teacher_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(teacher_channels), nn.ReLU())


def fsp_matrix(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``G = F1 F2^T / (h w)``: (batch, C1, C2), from two maps; the larger is adaptive-average-
    pooled to the smaller's size first, as RepDistiller does (a 3x3 stage end meets a 2x2 one)."""
    if first.shape[-2:] != second.shape[-2:]:
        big, small = (first, second) if first.shape[-1] > second.shape[-1] else (second, first)
        pooled = F.adaptive_avg_pool2d(big, small.shape[-2:])
        first, second = (pooled, second) if big is first else (first, pooled)
    b, c1, h, w = first.shape
    return torch.bmm(first.flatten(2), second.flatten(2).transpose(1, 2)) / (h * w)


@register("fsp")
def fsp_loss(student_pairs: list[tuple[torch.Tensor, torch.Tensor]],
             teacher_pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Sum over layer pairs of the MSE between student and teacher FSP matrices (RepDistiller)."""
    if len(student_pairs) != len(teacher_pairs):
        raise ValueError(f"fsp: {len(student_pairs)} student pairs but {len(teacher_pairs)} teacher pairs")
    losses = []
    for (s1, s2), (t1, t2) in zip(student_pairs, teacher_pairs):
        gs, gt = fsp_matrix(s1, s2), fsp_matrix(t1.detach(), t2.detach())
        if gs.shape != gt.shape:
            raise ValueError(f"fsp: student matrix {tuple(gs.shape[1:])} and teacher matrix {tuple(gt.shape[1:])} "
                             "differ: FSP needs layers of equal width in teacher and student")
        losses.append(F.mse_loss(gs, gt))
    return torch.stack(losses).sum()


def attention_map(x: torch.Tensor) -> torch.Tensor:
    """``at(x) = normalise(mean over channels of x^2)``, flattened per sample (unit L2 norm)."""
    return F.normalize(x.pow(2).mean(1).flatten(1), dim=1)


@register("at")
def at_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor],
            beta: float = 1e3) -> torch.Tensor:
    """Attention transfer: ``beta * sum over taps of mean((at(s) - at(t))^2)`` (RepDistiller's
    form; the paper's ``beta / 2`` with a norm per map differs by a constant factor)."""
    if len(student_features) != len(teacher_features):
        raise ValueError(f"at: {len(student_features)} student taps but {len(teacher_features)} teacher taps")
    terms = []
    for s, t in zip(student_features, teacher_features):
        _same_size(s, t, "at")
        terms.append((attention_map(s) - attention_map(t.detach())).pow(2).mean())
    return beta * torch.stack(terms).sum()


@register("disparity")
def disparity_kd(student_disps, teacher_disps, width: int | None = None) -> torch.Tensor:
    """Disparity distillation: ``sum over scales of mean |d_s - d_t|`` in pixels of an image
    ``width`` pixels wide (default: the finest map's width), for disparities given as a
    fraction of the width (monodepth's output). A classifier's soft targets are its logits;
    a depth network's are its disparity maps. The teacher's maps carry no gradient."""
    if len(student_disps) != len(teacher_disps):
        raise ValueError(f"disparity: {len(student_disps)} student scales but {len(teacher_disps)} teacher scales")
    width = student_disps[0].shape[-1] if width is None else width
    terms = []
    for s, t in zip(student_disps, teacher_disps):
        if s.shape != t.shape:
            raise ValueError(f"disparity: student map {tuple(s.shape)} and teacher map {tuple(t.shape)} differ")
        terms.append((s - t.detach()).abs().mean())
    return width * torch.stack(terms).sum()
