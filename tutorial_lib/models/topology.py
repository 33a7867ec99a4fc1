"""What the cost models need to know about a VGG, without building it: its signature,
classes, BN and input channels (:class:`Topology`), read from a model, a ``spec()`` dict or a
bare signature (:func:`describe`). The latency table, the closed-form parameter and FLOP
counts (``tutorial_lib.cost``) and the budgets all start from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

from torch import nn

from tutorial_lib.models import vgg


@dataclass(frozen=True)
class Topology:
    """What the estimate needs to know about a model: signature, classes, BN, input."""

    signature: tuple
    num_classes: int
    in_channels: int
    batch_norm: bool

    @property
    def widths(self) -> list[int]:
        return [v for v in self.signature if v != "M"]

    def resized(self, widths: Sequence[int]) -> "Topology":
        it = iter(widths)
        return Topology(tuple("M" if v == "M" else int(next(it)) for v in self.signature), self.num_classes,
                        self.in_channels, self.batch_norm)

    def spec(self) -> dict:
        return {"class": "VGG", "signature": list(self.signature), "num_classes": self.num_classes,
                "in_channels": self.in_channels, "head": "cifar", "batch_norm": self.batch_norm}


Describable = Union[nn.Module, dict, Sequence[Union[int, str]], Topology]


def describe(model_or_signature: Describable, num_classes: int | None = None, in_channels: int = 3,
             batch_norm: bool = True) -> Topology:
    """The :class:`Topology` of a VGG model, a ``spec()`` dict or a bare signature.

    A bare signature needs ``num_classes`` (default 100). Only the CIFAR head is supported.
    A masked model (from ``masks.insert_masks``) is described by the spec it was made from,
    all channels included: for what it would cost once packed see ``cost.count``.
    """
    if isinstance(model_or_signature, Topology):
        return model_or_signature
    if isinstance(model_or_signature, nn.Module):
        spec = getattr(model_or_signature, "meta", {}).get("source_spec")
        if spec is None:
            if not callable(getattr(model_or_signature, "spec", None)):
                raise TypeError(f"{type(model_or_signature).__name__} has no spec(): the latency table knows VGGs "
                                "built from a signature (models.VGG)")
            spec = model_or_signature.spec()
        model_or_signature = spec
    if isinstance(model_or_signature, dict):
        spec = model_or_signature
        if spec.get("class") != "VGG" or spec.get("head", "cifar") != "cifar":
            raise NotImplementedError("the latency table covers VGGs with the CIFAR head (global pool + one Linear); "
                                      f"got class {spec.get('class')!r}, head {spec.get('head')!r}")
        return Topology(tuple(spec["signature"]), int(spec["num_classes"]), int(spec.get("in_channels", 3)),
                        bool(spec.get("batch_norm", True)))
    sig = tuple(vgg._check_signature(model_or_signature))
    return Topology(sig, 100 if num_classes is None else int(num_classes), in_channels, batch_norm)
