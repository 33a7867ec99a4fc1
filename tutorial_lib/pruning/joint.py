"""Joint training of weights and channel masks: task loss (+ KD) + lambda * mask term.

Lesson 01 uses it for a short run that shows the sparsity term switching channels off;
lesson 02 for joint end-to-end pruning with distillation from the frozen baseline. The
weights and the masks are trained together, in one stage, with no per-layer rates.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from tutorial_lib import data, masks, terms, train
from tutorial_lib.distill import memo
from tutorial_lib.recipes import Schedule


def mask_optimizer(model: nn.Module, cfg, weight_lr: float) -> torch.optim.Optimizer:
    """``cfg.mask_optimizer`` with two groups: the weights (``weight_lr``) and the mask logits
    (``cfg.mask_lr``). SGD (the tutorial's): momentum and the profile's weight decay on the
    weights, none on the logits, which it would pull towards the threshold. Adam (the group's
    code): no weight decay."""
    groups = [{"params": masks.weight_parameters(model), "lr": weight_lr},
              {"params": masks.mask_parameters(model), "lr": cfg.mask_lr}]
    if cfg.mask_optimizer == "adam":
        return torch.optim.Adam(groups, lr=weight_lr)
    groups[0]["weight_decay"], groups[1]["weight_decay"] = cfg.weight_decay, 0.0
    return torch.optim.SGD(groups, lr=weight_lr, momentum=cfg.momentum)


def kept_share(model: nn.Module) -> dict[str, float]:
    """Share of all masked channels that are switched on, in percent (logged per epoch)."""
    table = masks.kept_channels(model)
    return {"kept_channels_pct": 100.0 * table["kept"].sum() / table["total"].sum()}


class GateTrace:
    """An ``on_epoch_end`` log of the gates: the share kept, how many gates changed state since
    the previous epoch (``gate_flips``; the first epoch counts against the all-open start, and
    so does the first epoch after a resume), and each layer's kept channels (``per_layer``)."""

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.per_layer: list[dict[str, int]] = []

    def __call__(self, model: nn.Module) -> dict[str, float]:
        state = torch.cat([m.is_open() for m in masks.masks_of(model).values()])
        flips = int((state != self.previous).sum()) if self.previous is not None else int((~state).sum())
        self.previous = state
        table = masks.kept_channels(model)
        self.per_layer.append(dict(zip(table["layer"], table["kept"].astype(int))))
        return {**kept_share(model), "gate_flips": flips}


def train_joint(model: nn.Module, bundle: data.DataBundle, cfg, *, epochs: int, lam: float, weight_lr: float,
                mask_loss: str = "layer_mean", teacher: nn.Module | None = None, task_weight: float = 1.0,
                kd_weight: float = 0.0, temperature: float = 4.0, checkpoint_dir: str | Path | None = None,
                desc: str = "joint", task: train.Task = train.CLASSIFICATION,
                optimizer: torch.optim.Optimizer | None = None, schedule: Schedule | None = None,
                settle_epochs: int = 0, warmup_epochs: int = 0, on_epoch_end=None) -> pd.DataFrame:
    """Train weights and masks together on ``task_weight * task loss + kd_weight * KD + lam * mask term``.

    ``teacher`` (frozen, eval mode, no gradients) supplies the KD targets; without one the
    KD term is left out. ``task`` is what the task loss measures (lesson 03 passes the
    stereo depth task) and what KD means (``task.distill``: softened logits for
    classification, the teacher's disparity maps for depth). ``optimizer`` replaces the
    default SGD of :func:`mask_optimizer` (lesson 03: Adam, as monodepth was trained); it must
    hold the mask logits; ``schedule`` gives the batch size (default: the baseline's). Returns
    the per-epoch history with the share of channels kept (``on_epoch_end`` replaces that log).

    Two additions of ours, off by default: ``warmup_epochs``, the mask term rises from zero
    over the first epochs (:class:`Warmup`); ``settle_epochs``, the gates stop moving for the
    last epochs (their learning rate is zero there) while the weights go on training on the
    architecture the gates chose (:func:`settling_schedule`).
    """
    if not masks.masks_of(model):
        raise ValueError("the model has no channel masks: call masks.insert_masks(model) first")
    if teacher is not None:
        teacher.eval()  # frozen: it runs under no_grad and is never given to the optimizer
        if isinstance(task, train.Classification):  # its logits per image, computed once
            teacher = memo.remembered(teacher, cfg)

    optimizer = optimizer or mask_optimizer(model, cfg, weight_lr)
    # Cosine decay to zero: gates near the threshold flip less as the run ends (one stage, no
    # separate fine-tuning).
    scheduler = settling_schedule(optimizer, epochs, settle_epochs, masks.mask_parameters(model)) \
        if settle_epochs else torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    schedule = schedule or cfg.baseline.schedule
    warmup = Warmup(scheduler, warmup_epochs, math.ceil(len(bundle.train) / schedule.batch_size)) \
        if warmup_epochs else None
    kd = terms.teacher_kd(kd_weight, teacher, temperature, task.distill) \
        if teacher is not None and kd_weight > 0 else None
    regularizer = terms.assemble(mask=terms.mask(lam, mask_loss, scale=warmup), kd=kd)
    return train.fit(model, bundle, schedule, cfg.run, epochs=epochs, optimizer=optimizer, scheduler=scheduler,
                     regularizer=regularizer, on_epoch_end=on_epoch_end or kept_share, checkpoint_dir=checkpoint_dir,
                     desc=desc, task_weight=task_weight, task=task)


class Warmup:
    """The mask term's share during the first ``epochs`` epochs: it rises linearly, step by
    step, from 0 to 1 (``steps`` per epoch), then stays at 1. The epoch is read from the
    learning-rate ``scheduler``, so a run resumed from its checkpoint picks up where it was.

    Why: every gate starts a hair above its threshold, and the full mask term closes gates
    faster than the task gradient can show which ones the network needs (the measurement is in
    ``recipes.WARMUP_WHY``). Our addition, not in the seed."""

    def __init__(self, scheduler, epochs: int, steps: int) -> None:
        self.scheduler, self.epochs, self.steps = scheduler, epochs, max(steps, 1)
        self.epoch, self.step = -1, 0

    def __call__(self) -> float:
        epoch = self.scheduler.last_epoch  # 0 during the first epoch
        if epoch != self.epoch:
            self.epoch, self.step = epoch, 0
        self.step += 1
        return min(1.0, (epoch + min(self.step, self.steps) / self.steps) / self.epochs)


def settling_schedule(optimizer: torch.optim.Optimizer, epochs: int, settle_epochs: int,
                      gates: list[nn.Parameter]) -> torch.optim.lr_scheduler.LambdaLR:
    """Joint pruning's cosine decay for every parameter group, except that the groups holding
    the mask logits (``gates``) get rate zero for the last ``settle_epochs`` epochs.

    Why: in a short run the straight-through gates do not settle; each minibatch's task
    gradient flips those near the threshold both ways, so the weights never train on the
    architecture that is finally packed (the measurement is in ``recipes.SETTLE_WHY``). Our
    addition, not in the seed; lesson 02 shows its effect on its own."""
    ids = {id(p) for p in gates}
    cosine = lambda e: (1 + math.cos(math.pi * e / max(epochs, 1))) / 2  # noqa: E731
    settled = lambda e: cosine(e) if e < epochs - settle_epochs else 0.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [settled if any(id(p) in ids for p in g["params"]) else cosine for g in optimizer.param_groups])


def train_masks(model: nn.Module, bundle: data.DataBundle, cfg,
                checkpoint_dir: str | Path | None = None) -> pd.DataFrame:
    """Lesson 01's short run: ``CE + cfg.mask_lambda * mask term`` for ``cfg.mask_epochs``."""
    return train_joint(model, bundle, cfg, epochs=cfg.mask_epochs, lam=cfg.mask_lambda, weight_lr=cfg.mask_weight_lr,
                       checkpoint_dir=checkpoint_dir, desc="masks")


def prune(masked: nn.Module, teacher: nn.Module, bundle: data.DataBundle, cfg, lam: float | None = None,
          checkpoint_dir: str | Path | None = None, trace: GateTrace | None = None) -> pd.DataFrame:
    """Joint end-to-end pruning (lesson 02): one stage, no layer-wise rates, no fine-tuning.

    ``cfg.task_weight * CE + cfg.kd_weight * KD(T = cfg.kd_temperature, teacher) +
    lam * mask term (cfg.mask_loss)`` for ``cfg.prune_epochs``, the mask term warmed up over the
    first ``cfg.prune_warmup_epochs`` and the gates fixed for the last ``cfg.prune_settle_epochs``
    (our two additions); the published defaults are 10, 1, T = 4, the layer-mean mask term, no
    warm-up and no settling. ``trace`` logs the gates per epoch (a fresh
    :class:`GateTrace` by default).
    """
    return train_joint(masked, bundle, cfg, epochs=cfg.prune_epochs, lam=cfg.prune_lambda if lam is None else lam,
                       weight_lr=cfg.prune_lr, mask_loss=cfg.mask_loss, teacher=teacher, task_weight=cfg.task_weight,
                       kd_weight=cfg.kd_weight, temperature=cfg.kd_temperature, checkpoint_dir=checkpoint_dir,
                       desc="prune", settle_epochs=cfg.prune_settle_epochs, warmup_epochs=cfg.prune_warmup_epochs,
                       on_epoch_end=trace or GateTrace())


def summary_table(base: dict, after: dict, kept: pd.DataFrame, estimate: dict, full_vgg19_params: int) -> pd.DataFrame:
    """Lesson 01's table: our short mask run beside the seed's joint-pruning result.

    ``base``/``after`` come from ``train.evaluate``, ``kept`` from ``masks.kept_channels``,
    ``estimate`` from ``masks.estimate``. Published figures (CIFAR-100, VGG19-BN) stand in
    their own columns; rows without one leave them empty.
    """
    from tutorial_lib import tables

    t = "vgg19_cifar100"
    removed_params = 100 * (1 - estimate["params_kept"] / estimate["params_total"])
    removed_flops = 100 * (1 - estimate["flops_kept"] / estimate["flops_total"])
    rows = [
        ("VGG19-BN, 100 classes, width 1: parameters", full_vgg19_params, t, "VGG19-BN baseline", "params_exact"),
        ("baseline top-1 (%)", round(base["accuracy"], 1), t, "VGG19-BN baseline", "top1"),
        ("top-1 with masks (%)", round(after["accuracy"], 1), t, "Joint end-to-end pruning", "top1"),
        ("change in top-1 (points)", round(after["accuracy"] - base["accuracy"], 1), None, None, None),
        ("channels kept (%)", round(100 * kept["kept"].sum() / kept["total"].sum(), 1), None, None, None),
        ("parameters, full model", estimate["params_total"], t, "VGG19-BN baseline", "params"),
        ("parameters kept (estimate)", estimate["params_kept"], t, "Joint end-to-end pruning", "params"),
        ("parameters removed (%)", round(removed_params, 1), t, "Joint end-to-end pruning", "params_removed_pct"),
        ("FLOPs per image, full model", estimate["flops_total"], None, None, None),
        ("FLOPs kept (estimate)", estimate["flops_kept"], None, None, None),
        ("FLOPs removed (%)", round(removed_flops, 1), None, None, None),
    ]
    records = [{"quantity": label, "ours": ours,
                "published (CIFAR-100, VGG19-BN)": tables.published_value(table, row, metric) if table else "",
                "published source": tables.published_source(table, row, metric) if table else ""}
               for label, ours, table, row, metric in rows]
    return pd.DataFrame(records, dtype=object)  # counts stay integers in the CSV
