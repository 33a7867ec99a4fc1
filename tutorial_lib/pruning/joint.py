"""Joint training of weights and channel masks: task loss + lambda * mask sparsity term.

Lesson 01 uses it for a short run that shows the sparsity term switching channels off;
the weights and the masks are trained together, in one stage, with no per-layer rates.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from tutorial_lib import data, masks, train


def mask_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """SGD with two groups: the weights (``cfg.mask_weight_lr``, the profile's weight decay)
    and the mask logits (``cfg.mask_lr``, no weight decay, which would pull every logit
    towards the threshold)."""
    return torch.optim.SGD(
        [
            {"params": masks.weight_parameters(model), "lr": cfg.mask_weight_lr, "weight_decay": cfg.weight_decay},
            {"params": masks.mask_parameters(model), "lr": cfg.mask_lr, "weight_decay": 0.0},
        ],
        lr=cfg.mask_weight_lr, momentum=cfg.momentum,
    )


def train_masks(
    model: nn.Module,
    bundle: data.DataBundle,
    cfg,
    mask_loss: str = "layer_mean",
    checkpoint_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Train a masked model for ``cfg.mask_epochs`` on ``task + cfg.mask_lambda * mask term``.

    Returns the per-epoch history with the share of channels kept after each epoch.
    """
    if not masks.masks_of(model):
        raise ValueError("the model has no channel masks: call masks.insert_masks(model) first")
    optimizer = mask_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)

    def regularizer(m, x, y, logits):
        return {"mask": cfg.mask_lambda * masks.sparsity_loss(m, mask_loss)}

    def kept(m):
        table = masks.kept_channels(m)
        return {"kept_channels_pct": 100.0 * table["kept"].sum() / table["total"].sum()}

    return train.fit(
        model, bundle, cfg, epochs=cfg.mask_epochs, optimizer=optimizer, scheduler=scheduler,
        regularizer=regularizer, on_epoch_end=kept, checkpoint_dir=checkpoint_dir, desc="masks",
    )


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
    records = []
    for label, ours, table, row, metric in rows:
        published = tables.published_value(table, row, metric) if table else ""
        source = tables.published_source(table, row, metric) if table else ""
        records.append({"quantity": label, "ours": ours, "published (CIFAR-100, VGG19-BN)": published,
                        "published source": source})
    return pd.DataFrame(records)
