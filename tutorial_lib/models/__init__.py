"""Models built from a signature, so that any pruned architecture can be rebuilt."""

from __future__ import annotations

from torch import nn

from tutorial_lib.models.vgg import VGG, VGG_SIGNATURES, vgg_signature


def build(cfg, num_classes: int) -> nn.Module:
    """The VGG of ``cfg.arch`` at ``cfg.width`` for ``num_classes`` classes."""
    return VGG(vgg_signature(cfg.arch, cfg.width), num_classes=num_classes)


__all__ = ["VGG", "VGG_SIGNATURES", "vgg_signature", "build"]
