"""Models built from a signature, so that any pruned architecture can be rebuilt."""

from __future__ import annotations

from torch import nn

from tutorial_lib import repro
from tutorial_lib.models import monodepth, vgg
from tutorial_lib.models.monodepth import MonoDepth
from tutorial_lib.models.topology import Topology, describe
from tutorial_lib.models.vgg import VGG, VGG_SIGNATURES, vgg_signature

# Model classes that can be rebuilt from a spec: class name -> (from_spec, resize_spec).
_SPECS = {"VGG": (vgg.from_spec, vgg.resize_spec), "MonoDepth": (monodepth.from_spec, monodepth.resize_spec)}


def build(cfg, num_classes: int) -> nn.Module:
    """The VGG of ``cfg.arch`` at ``cfg.width`` for ``num_classes`` classes, initialised from
    ``cfg.seed`` (the global random state is left as it was). On ImageNet it is the
    torchvision layout without BN (the seed's VGG11 of 132.9M parameters); elsewhere the
    CIFAR layout with BN."""
    imagenet = cfg.dataset == "imagenet"
    with repro.seeded(cfg.seed):
        return VGG(vgg_signature(cfg.arch, cfg.width), num_classes=num_classes,
                   head="imagenet" if imagenet else "cifar", batch_norm=not imagenet)


def _lookup(spec: dict):
    name = spec.get("class") if isinstance(spec, dict) else None
    if name not in _SPECS:
        raise ValueError(f"cannot rebuild a model of class {name!r}; known: {', '.join(_SPECS)}")
    return _SPECS[name]


def from_spec(spec: dict) -> nn.Module:
    """Rebuild a model (freshly initialised) from its ``spec()``."""
    return _lookup(spec)[0](spec)


def resize_spec(spec: dict, widths: list[int]) -> dict:
    """The spec with the output channels of its convolutions, in graph order, set to ``widths``."""
    return _lookup(spec)[1](spec, widths)


__all__ = ["VGG", "MonoDepth", "VGG_SIGNATURES", "vgg_signature", "Topology", "describe", "build", "from_spec", "resize_spec"]
