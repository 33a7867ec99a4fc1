"""The methods joint pruning is compared with, each at the same parameter count; the
methods that start from the baseline get the pruning epochs, the from-scratch twins the
baseline's schedule:

- ``scratch``: the pruned signature, freshly initialised, trained from scratch;
- ``scratch_kd``: the same with Hinton KD (T = 4) from the baseline;
- ``slimming``: Network Slimming (Liu et al., ICCV 2017): L1 on the BN scales during
  training (``slimming_s``, published 1e-4), one global threshold on |gamma| chosen so that the pruned model
  matches the parameter budget, then fine-tuning;
- ``l1_norm``: L1-norm filter pruning (Li et al., ICLR 2017): the filters of smallest L1
  norm removed from every layer at one per-layer rate (the layer-wise hyperparameter,
  here searched so that the budget is met), then fine-tuning;
- ``tp_l1_local``, ``tp_l1_global``, ``tp_bn_global``: Torch-Pruning, the maintained
  library (:mod:`tutorial_lib.pruning.depgraph`), one-shot to the budget by its L1 or
  BN-scale importance, per layer or ranked globally, then the same fine-tuning.

Our methods select channels by opening and closing the masks of lesson 01, and ``pack``
removes them: one surgery for all; Torch-Pruning does its own surgery.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import pandas as pd
import torch
from torch import nn

from tutorial_lib import data, graph, masks, models, repro, terms, train
from tutorial_lib.cost import count
from tutorial_lib.distill import memo
from tutorial_lib.pruning import depgraph
from tutorial_lib.pruning.pack import pack
from tutorial_lib.recipes import Schedule


def select_global(masked: nn.Module, scores: dict[str, torch.Tensor], budget: int) -> dict[str, torch.Tensor]:
    """Keep the channels of highest score across all layers (each layer keeps >= 1) so that
    the kept parameters are as many as possible but at most ``budget``."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    order = flat.sort(descending=True).values

    def pattern(k: int) -> dict[str, torch.Tensor]:  # a layer with no channel above the threshold keeps its best
        return {layer: on if (on := s >= order[k - 1]).any() else s == s.max() for layer, s in scores.items()}

    return _largest_under(masked, budget, len(order), pattern)


def select_per_layer(masked: nn.Module, scores: dict[str, torch.Tensor], budget: int) -> dict[str, torch.Tensor]:
    """One keep-rate for every layer: each keeps its ``ceil(rate * C)`` highest-scoring channels."""
    steps = 1000

    def pattern(k: int) -> dict[str, torch.Tensor]:
        out = {}
        for layer, s in scores.items():
            out[layer] = torch.zeros(s.numel(), dtype=torch.bool)
            out[layer][s.flatten().topk(max(1, math.ceil(k / steps * s.numel()))).indices] = True
        return out

    return _largest_under(masked, budget, steps, pattern)


def _largest_under(masked, budget: int, top: int, pattern: Callable[[int], dict]) -> dict[str, torch.Tensor]:
    """Binary search for the largest k in [1, top] whose pattern has at most ``budget`` parameters."""
    probe = copy.deepcopy(masked)

    def params(k: int) -> int:  # what the probe keeps once packed (parameters do not depend on the image size)
        masks.set_pattern(probe, pattern(k))
        return count(probe, "params")

    if params(1) > budget:
        raise ValueError(f"a budget of {budget:,} parameters is below the smallest model this method can make "
                         f"({params(1):,})")
    lo, hi = 1, top
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if params(mid) <= budget else (lo, mid - 1)
    return pattern(lo)


def scratch_epochs(cfg) -> int:
    """Epochs of a from-scratch twin: ``cfg.scratch_epochs``, else the baseline's ``cfg.epochs``."""
    return cfg.epochs if cfg.scratch_epochs is None else cfg.scratch_epochs


def scratch(spec: dict, bundle: data.DataBundle, cfg, teacher: nn.Module | None = None,
            checkpoint_dir=None) -> tuple[nn.Module, pd.DataFrame]:
    """Train the signature ``spec`` from scratch with the baseline's recipe for
    ``cfg.scratch_epochs`` epochs (default: the baseline's own schedule, Liu et al.'s
    "Scratch-E"; the pruning methods also inherit the baseline's epochs, so they see more);
    with ``teacher``, add KD."""
    schedule = train.stretched(cfg.baseline.schedule, scratch_epochs(cfg))
    with repro.seeded(cfg.seed):
        model = models.from_spec(spec)
    kd_term = None
    if teacher is not None:  # frozen: its logits per image, computed once
        kd_term = terms.teacher_kd(cfg.kd_weight, memo.remembered(teacher.eval(), cfg), cfg.kd_temperature)
    return model, train.fit(model, bundle, schedule, cfg.run, regularizer=terms.assemble(kd=kd_term),
                            checkpoint_dir=checkpoint_dir, desc="scratch+kd" if teacher is not None else "scratch")


def finetune_schedule(cfg, epochs: int) -> Schedule:
    """Fine-tuning at the joint-pruning weights' effective learning rate (task_weight x prune_lr)."""
    return cfg.baseline.schedule.replace(epochs=epochs, lr=cfg.prune_lr * max(cfg.task_weight, 1.0), milestones=())


def bn_scales(model: nn.Module) -> dict[str, torch.Tensor]:
    """|gamma| of the batch norm after each masked conv, keyed by the conv's name."""
    gm = graph.trace(model)
    return {graph.producer(gm, node, (nn.Conv2d,)).target: bn.weight.detach().abs().clone()
            for node in gm.graph.nodes if isinstance(bn := graph.module_of(gm, node), nn.BatchNorm2d)}


def filter_l1(model: nn.Module) -> dict[str, torch.Tensor]:
    """L1 norm of each conv filter, keyed by the conv's name."""
    return {name: m.weight.detach().abs().sum(dim=(1, 2, 3)) for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d)}


def sparse_epochs_of(cfg) -> int:
    """Network Slimming's sparse-training epochs: ``slimming_sparse_share`` of ``prune_epochs``, rounded down."""
    return int(cfg.prune_epochs * cfg.slimming_sparse_share + 1e-9)


def slimming(baseline: nn.Module, bundle: data.DataBundle, cfg, budget: int) -> tuple[nn.Module, dict]:
    """Network Slimming from the baseline: ``slimming_sparse_share`` of the ``prune_epochs``
    sparse training with ``slimming_s * sum|gamma|``, prune by one global |gamma| threshold to
    ``budget`` parameters, fine-tune for the rest."""
    sparse_epochs = sparse_epochs_of(cfg)
    model = copy.deepcopy(baseline)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def l1_gamma(m, x, y, logits):
        return {"l1_gamma": cfg.slimming_s * sum(bn.weight.abs().sum() for bn in bns)}

    ft = finetune_schedule(cfg, sparse_epochs)
    sparse_history = train.fit(model, bundle, ft, cfg.run, optimizer=train.sgd(model.parameters(), ft),
                               regularizer=l1_gamma, desc="slimming sparse")
    masked = masks.insert_masks(model, seed=cfg.seed)
    masks.set_pattern(masked, select_global(masked, bn_scales(model), budget))
    return _finetune(pack(masked), bundle, cfg, cfg.prune_epochs - sparse_epochs, sparse_history)


def l1_pruned(baseline: nn.Module, cfg, budget: int) -> nn.Module:
    """Li et al.'s selection: a packed copy of the baseline without the smallest-L1 filters of
    every layer, removed at one rate to ``budget`` parameters (not fine-tuned)."""
    model = copy.deepcopy(baseline)
    masked = masks.insert_masks(model, seed=cfg.seed)
    masks.set_pattern(masked, select_per_layer(masked, filter_l1(model), budget))
    return pack(masked)


def l1_norm(baseline: nn.Module, bundle: data.DataBundle, cfg, budget: int) -> tuple[nn.Module, dict]:
    """Li et al.: :func:`l1_pruned`, then fine-tune for the whole pruning budget of epochs."""
    return _finetune(l1_pruned(baseline, cfg, budget), bundle, cfg, cfg.prune_epochs, None)


def torch_pruning(baseline: nn.Module, bundle: data.DataBundle, cfg, budget: int,
                  method: str, cost: str = "params") -> tuple[nn.Module, dict]:
    """Torch-Pruning's ``method`` (a key of ``depgraph.CRITERIA``) to ``budget`` parameters (or
    FLOPs per image, ``cost="flops"``), then fine-tuned like L1-norm pruning for the whole
    pruning budget of epochs."""
    criterion, global_pruning = depgraph.CRITERIA[method]
    example = torch.zeros(1, bundle.in_channels, bundle.image_size, bundle.image_size)
    pruned = depgraph.prune_to(baseline, budget, criterion, global_pruning, example, cost=cost)
    return _finetune(pruned, bundle, cfg, cfg.prune_epochs, None)


def _finetune(packed: nn.Module, bundle, cfg, epochs: int, before) -> tuple[nn.Module, dict]:
    ft = finetune_schedule(cfg, epochs)
    history = train.fit(packed, bundle, ft, cfg.run, optimizer=train.sgd(packed.parameters(), ft), desc="fine-tune")
    return packed, {"before": before, "finetune": history}
