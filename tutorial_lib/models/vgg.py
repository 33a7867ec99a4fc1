"""CIFAR-style VGG (11/13/16/19) with batch norm, built from a *signature*.

A signature lists the output channels of every 3x3 convolution in order, with ``"M"``
for a 2x2 max-pool, e.g. ``[64, 64, "M", 128, ...]``. The network is
conv3x3(bias) -> BN -> ReLU per entry, then a global average pool and one Linear, as in
the group's public CIFAR code. Because the signature is all a VGG needs, a pruned model
is rebuilt from its kept channel counts alone. At width 1 with 100 classes VGG19-BN has
20,086,692 parameters. The max-pools round odd sizes up (``ceil_mode``), so inputs whose
side is not a multiple of 32 (the tutorial's 24x24 digits_m) keep every stage; on 32x32 and
224x224 inputs this is the usual VGG.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

Signature = list[Union[int, str]]


def pooled(size: int) -> int:
    """The side after one of the VGG's 2x2 max-pools, which round odd sizes up (``ceil_mode``)."""
    return (size + 1) // 2

VGG_SIGNATURES: dict[str, Signature] = {
    # vgg8: one conv per stage at VGG's stage widths (RepDistiller's CIFAR student)
    "vgg8": [64, "M", 128, "M", 256, "M", 512, "M", 512, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def vgg_signature(arch: str, width: float = 1.0) -> Signature:
    """The signature of ``arch`` with every channel count scaled by ``width`` (at least 1)."""
    if arch not in VGG_SIGNATURES:
        raise ValueError(f"unknown VGG {arch!r}; valid choices: {', '.join(VGG_SIGNATURES)}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return [v if v == "M" else max(1, int(round(v * width))) for v in VGG_SIGNATURES[arch]]


def _check_signature(signature: Sequence[Union[int, str]]) -> Signature:
    sig = list(signature)
    bad = [v for v in sig if not (v == "M" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1))]
    if bad or not any(v != "M" for v in sig):
        raise ValueError(f"a VGG signature is a list of channel counts >= 1 and 'M' for max-pool; got {signature!r}")
    return sig


HEADS = ("cifar", "imagenet")


class VGG(nn.Module):
    """VGG from a signature: ``features``, a pool and a ``classifier``.

    ``head="cifar"`` (default): BN after every conv, global average pool, one Linear.
    ``head="imagenet"``: the torchvision layout, 7x7 average pool then
    Linear(512*49, 4096)-ReLU-Dropout-Linear(4096, 4096)-ReLU-Dropout-Linear(4096, classes);
    with ``batch_norm=False`` and the vgg11 signature it is torchvision's vgg11 (132,863,336
    parameters for 1,000 classes), the model of the seed's ImageNet table.
    """

    def __init__(self, signature: Sequence[Union[int, str]], num_classes: int = 100, in_channels: int = 3,
                 head: str = "cifar", batch_norm: bool = True):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown VGG head {head!r}; valid choices: {', '.join(HEADS)}")
        self.signature: Signature = _check_signature(signature)
        self.num_classes, self.in_channels, self.head, self.batch_norm = num_classes, in_channels, head, batch_norm
        layers: list[nn.Module] = []
        channels = in_channels
        for v in self.signature:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(v))
                layers.append(nn.ReLU(inplace=True))
                channels = v
        self.features = nn.Sequential(*layers)
        if head == "cifar":
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(channels, num_classes)
        else:
            self.pool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(channels * 49, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(4096, num_classes),
            )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)

    def spec(self) -> dict:
        """What is needed to rebuild this model: stored beside every checkpoint."""
        return {"class": "VGG", "signature": self.signature, "num_classes": self.num_classes,
                "in_channels": self.in_channels, "head": self.head, "batch_norm": self.batch_norm}


def from_spec(spec: dict) -> nn.Module:
    """Rebuild a model from :meth:`VGG.spec` (weights come from the state dict)."""
    if spec.get("class") != "VGG":
        raise ValueError(f"cannot rebuild a model of class {spec.get('class')!r}; known: VGG")
    return VGG(spec["signature"], num_classes=spec["num_classes"], in_channels=spec.get("in_channels", 3),
               head=spec.get("head", "cifar"), batch_norm=spec.get("batch_norm", True))


def resize_spec(spec: dict, widths: list[int]) -> dict:
    """``spec`` with its conv channel counts replaced, in order, by ``widths``."""
    convs = [v for v in spec["signature"] if v != "M"]
    if len(widths) != len(convs):
        raise ValueError(f"a VGG with {len(convs)} convolutions needs {len(convs)} widths, got {len(widths)}")
    it = iter(widths)
    return {**spec, "signature": ["M" if v == "M" else int(next(it)) for v in spec["signature"]]}
