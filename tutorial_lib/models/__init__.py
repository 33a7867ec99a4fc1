"""Models built from a signature, so that any pruned architecture can be rebuilt."""

from __future__ import annotations

import torch
from torch import nn

from tutorial_lib.models.vgg import VGG, VGG_SIGNATURES, vgg_signature


def build(cfg, num_classes: int) -> nn.Module:
    """The VGG of ``cfg.arch`` at ``cfg.width`` for ``num_classes`` classes, initialised from
    ``cfg.seed`` (the global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return VGG(vgg_signature(cfg.arch, cfg.width), num_classes=num_classes)


__all__ = ["VGG", "VGG_SIGNATURES", "vgg_signature", "build"]
