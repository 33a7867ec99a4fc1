"""Torch-Pruning (Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023), the
maintained pruning library, as compared methods: one-shot pruning of the baseline by an
importance criterion to joint pruning's parameter count, then the same fine-tuning as
L1-norm pruning.

What the library does differently from joint pruning: it traces the network into a
dependency graph (DepGraph) and removes coupled channels together (a conv's filters, its
BN, the next layer's inputs) in one shot, ranked by a fixed importance of the trained
weights (filter L1 norm, or |gamma| of the BN), not learned; ``global_pruning`` ranks the
channels of all layers together (after normalising each group's scores by their mean),
otherwise every layer loses the same share. The share itself is the library's knob, and
here it is searched so that the pruned model has at most the budget's parameters.
"""

from __future__ import annotations

import copy

import torch
import torch_pruning as tp
from torch import nn

from tutorial_lib.cost import count

# method name -> (importance criterion, global ranking?)
CRITERIA = {
    "tp_l1_local": ("l1", False),
    "tp_l1_global": ("l1", True),
    "tp_bn_global": ("bn_scale", True),
}


def importance(criterion: str) -> tp.importance.Importance:
    """The library's importance by name: ``l1`` (group L1 norm of the weights, Li et al.'s
    criterion) or ``bn_scale`` (|gamma| of the BN, Network Slimming's, without its sparse phase)."""
    if criterion == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if criterion == "bn_scale":
        return tp.importance.BNScaleImportance()
    raise ValueError(f"unknown Torch-Pruning criterion {criterion!r}; valid choices: l1, bn_scale")


def _classifier(model: nn.Module) -> nn.Module:
    """The last Linear: its outputs are the classes, never pruned."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear classifier for Torch-Pruning to leave whole")
    return linears[-1]


def pruned_at(model: nn.Module, ratio: float, criterion: str, global_pruning: bool,
              example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of its channels removed by the library, one shot."""
    model = copy.deepcopy(model).eval()
    pruner = tp.pruner.BasePruner(model, example, importance=importance(criterion), pruning_ratio=ratio,
                                  global_pruning=global_pruning, ignored_layers=[_classifier(model)])
    pruner.step()
    return model


def prune_to(model: nn.Module, budget: int, criterion: str, global_pruning: bool, example: torch.Tensor,
             cost: str = "params", grid: int = 20, steps: int = 12) -> nn.Module:
    """The least-pruned copy of ``model`` with at most ``budget`` parameters (or FLOPs per
    ``example`` image, ``cost="flops"``: ``cost.count``'s measures). The library's
    pruning ratio is found on a grid of ``grid`` steps, then by bisection below the first
    ratio that meets the budget (near 1 the library skips layers it would empty, so the
    parameters stop falling with the ratio: only the first crossing is searched)."""
    measure = lambda m: count(m, cost, tuple(example.shape))  # noqa: E731
    if measure(model) <= budget:
        return copy.deepcopy(model)
    scan = ((k / grid, pruned_at(model, k / grid, criterion, global_pruning, example)) for k in range(1, grid))
    hi, best = next(((ratio, m) for ratio, m in scan if measure(m) <= budget), (None, None))
    if best is None:
        raise ValueError(f"a budget of {budget:,} {cost} is below the smallest model Torch-Pruning makes "
                         f"here at a pruning ratio up to {(grid - 1) / grid:.2f}")
    lo = hi - 1 / grid  # over budget
    for _ in range(steps):
        mid = (lo + hi) / 2
        candidate = pruned_at(model, mid, criterion, global_pruning, example)
        if measure(candidate) <= budget:
            hi, best = mid, candidate
        else:
            lo = mid
    return best
