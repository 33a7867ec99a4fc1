"""One cost model: the parameters and FLOPs of a plain model, a masked model (what it will
cost once packed) or a VGG described by a spec, a signature or a :class:`~tutorial_lib.models.Topology`
(counted in closed form, without building it), from one function, :func:`count`.

FLOPs count multiply and add separately (``torch.utils.flop_counter``: convolutions and the
Linear) for the input shape given, which comes from the data (``(batch, C, H, W)``);
parameters need no input.
"""

from __future__ import annotations

from typing import Sequence, Union

from torch import nn

from tutorial_lib import masks, metrics, models
from tutorial_lib.models import Topology

KINDS = ("params", "flops")
Countable = Union[nn.Module, dict, Sequence[Union[int, str]], Topology]


def spec_params(topo: Topology) -> int:
    """Parameters of a CIFAR-head VGG from its signature (conv weights and biases, BN affine,
    Linear), without building it."""
    total, c = 0, topo.in_channels
    for v in topo.signature:
        if v == "M":
            continue
        total += c * v * 9 + v + (2 * v if topo.batch_norm else 0)
        c = v
    return total + c * topo.num_classes + topo.num_classes


def spec_flops(topo: Topology, input_shape: tuple[int, ...]) -> int:
    """FLOPs (2 x MACs of the convolutions and the Linear, as ``torch.utils.flop_counter``
    counts them) of a CIFAR-head VGG for ``input_shape``, without building it."""
    batch, size, c, total = input_shape[0], input_shape[-1], topo.in_channels, 0
    for v in topo.signature:
        if v == "M":
            size = models.vgg.pooled(size)
            continue
        total += 2 * batch * size * size * c * v * 9
        c = v
    return total + 2 * batch * c * topo.num_classes


def count(what: Countable, kind: str, input_shape: tuple[int, ...] | None = None,
          num_classes: int | None = None) -> int:
    """``kind`` (``params`` or ``flops``) of ``what``:

    - a masked model: what it will cost once packed (``masks.estimate``);
    - a plain model: counted (``metrics``: its parameters, ``torch.utils.flop_counter``);
    - a spec dict, signature or ``Topology`` of a CIFAR-head VGG: in closed form (a bare
      signature takes ``num_classes``; the input channels come from ``input_shape``);
      any other spec is built and counted.

    ``input_shape`` is needed for FLOPs only.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown cost kind {kind!r}; valid choices: {', '.join(KINDS)}")
    if kind == "flops" and input_shape is None:
        raise ValueError("counting FLOPs needs the input shape, e.g. (1, 3, image_size, image_size)")
    if isinstance(what, nn.Module):
        if masks.masks_of(what):
            return int(masks.estimate(what, input_shape, flops=kind == "flops")[f"{kind}_kept"])
        return metrics.count_parameters(what) if kind == "params" else metrics.count_flops(what, input_shape)
    if isinstance(what, dict) and what.get("head", "cifar") != "cifar":
        return count(models.from_spec(what), kind, input_shape)
    in_channels = input_shape[1] if input_shape is not None else 3
    topo = models.describe(what, num_classes, in_channels)
    return spec_params(topo) if kind == "params" else spec_flops(topo, input_shape)
