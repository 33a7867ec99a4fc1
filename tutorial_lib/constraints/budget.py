"""Budgets on parameters, FLOPs or latency, what a model costs, and what a budget can ask for.

A :class:`Budget` is a kind (``params``, ``flops`` or ``latency``), a value (a count, or
milliseconds) and, for latency, the platform it is measured on and the batch size. Every
budget is checked *before any training* (:func:`check`): an unknown kind or platform is
rejected with the valid choices, and a value outside the model's **feasible range** with
the range itself, measured for that model::

    low  = the same topology with one channel per convolution (the smallest packed model)
    high = the full model

Costs come in three flavours, all in the budget's units:

- :func:`cost` of a plain model: counted parameters and FLOPs, and latency estimated by
  the latency table (or measured, ``measure=True``);
- :func:`spec_cost` of a VGG spec or signature without building it: closed-form
  parameters and FLOPs, table latency (what packing would produce);
- :func:`masked_cost` of a masked model: what it would cost once packed (``masks.estimate``
  for parameters and FLOPs; for latency the kept signature goes through the table).

FLOPs count multiply and add separately (``torch.utils.flop_counter``: convolutions and
the Linear), for the budget's batch (1 by default: per image). A latency budget is held
against the latency table's estimate (deterministic once the table is filled, and
available for masked models that cannot run packed yet); the table estimates the
undisturbed latency, which on a quiet machine is the median that ``measure=True``
reports, and on a busy one is below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

from torch import nn

from tutorial_lib import masks, models
from tutorial_lib.cost import count
from tutorial_lib.constraints import latency_table
from tutorial_lib.measure import platforms

KINDS = ("params", "flops", "latency")
UNITS = {"params": "parameters", "flops": "FLOPs", "latency": "ms"}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown budget kind {kind!r}; valid choices: {', '.join(KINDS)}")


def _check(kind: str, platform: str | None) -> None:
    _check_kind(kind)
    if kind == "latency":
        if platform is None:
            raise ValueError("a latency budget needs a platform; available on this machine: "
                             f"{', '.join(platforms.available())}")
        platforms.get(platform)  # ValueError listing the available ones


@dataclass(frozen=True)
class Budget:
    """At most ``value`` of ``kind`` (parameters, FLOPs, or ms on ``platform`` at ``batch``)."""

    kind: str
    value: float
    platform: str | None = None
    batch: int = 1

    def __post_init__(self):
        _check_kind(self.kind)
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not self.value > 0:
            raise ValueError(f"a budget value must be a number > 0, got {self.value!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"the batch size of a budget must be a whole number >= 1, got {self.batch!r}")
        _check(self.kind, self.platform)

    def input_shape(self, in_channels: int, image_size: int) -> tuple[int, int, int, int]:
        return (self.batch, in_channels, image_size, image_size)

    def describe(self) -> str:
        where = f" on {self.platform}, batch {self.batch}" if self.kind == "latency" else ""
        return f"{self.kind} <= {self.value:,.4g} {UNITS[self.kind]}{where}"


def _latency(topo, input_shape, platform, table) -> float:
    return (table if table is not None else latency_table.default_table()).estimate(topo, input_shape, platform)


def cost(model: nn.Module, kind: str, input_shape: tuple[int, ...], platform: str | None = None, *,
         table: latency_table.LatencyTable | None = None, measure: bool = False,
         min_run_time: float = 0.2) -> float:
    """What ``model`` costs: parameters, FLOPs for ``input_shape``, or latency (ms) on
    ``platform``, estimated by the latency table or, with ``measure=True``, measured
    (median, :func:`platforms.measure`). A masked model costs what it would once packed."""
    _check(kind, platform)
    if masks.masks_of(model):
        if measure:
            raise ValueError("a masked model cannot be timed as it would run packed: pack it first, or use the "
                             "estimate (measure=False)")
        return masked_cost(model, kind, input_shape, platform, table=table)
    if kind != "latency":
        return float(count(model, kind, input_shape))
    if measure:
        return platforms.measure(model, platform, input_shape, min_run_time=min_run_time).median_ms
    return _latency(models.describe(model), input_shape, platform, table)


SpecLike = Union[dict, nn.Module, Sequence[Union[int, str]], models.Topology]


def spec_cost(spec: SpecLike, kind: str, input_shape: tuple[int, ...], platform: str | None = None, *,
              table: latency_table.LatencyTable | None = None, num_classes: int | None = None) -> float:
    """The cost of the VGG described by ``spec`` (a ``spec()`` dict, model or signature)."""
    _check(kind, platform)
    if kind != "latency":  # closed form for a CIFAR-head VGG, built and counted otherwise
        return float(count(spec, kind, input_shape, num_classes))
    if isinstance(spec, dict) and spec.get("head", "cifar") != "cifar":  # built and estimated
        return cost(models.from_spec(spec), kind, input_shape, platform, table=table)
    return _latency(models.describe(spec, num_classes, input_shape[1]), input_shape, platform, table)


def lower_bound_spec(spec: SpecLike, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> models.Topology:
    """The same topology with one channel per convolution (the seed's lower bound)."""
    topo = models.describe(spec, None, input_shape[1])
    return topo.resized([1] * len(topo.widths))


def feasible_range(spec: SpecLike, kind: str, input_shape: tuple[int, ...], platform: str | None = None, *,
                   table: latency_table.LatencyTable | None = None) -> tuple[float, float]:
    """``(low, high)``: the cost of the one-channel-per-conv model and of the full one.

    Parameters and FLOPs always grow with the channels. A latency does not have to: on a
    small model, timing noise (or a platform where one-channel convs run no faster) can put
    the one-channel model at or above the full one. Such an inverted range is returned in
    order, ``(cheaper, dearer)``, so that a budget between the two is still accepted rather
    than a timing deciding that no budget is possible."""
    if isinstance(spec, nn.Module):
        spec = models.describe(spec)
    # the full model first: a latency table calibrates on the first model it is asked about, and the
    # references it derives from the full model (half widths, random prunings) span the range; from the
    # one-channel model they would all collapse to that one model
    high = spec_cost(spec, kind, input_shape, platform, table=table)
    low = spec_cost(lower_bound_spec(spec, input_shape), kind, input_shape, platform, table=table)
    return (low, high) if low <= high else (high, low)


def check(budget: Budget, spec: SpecLike, input_shape: tuple[int, ...] | None = None, *,
          image_size: int = 32, table: latency_table.LatencyTable | None = None) -> tuple[float, float]:
    """Reject ``budget`` for ``spec`` before any training; return the feasible range.

    ``input_shape`` defaults to ``(budget.batch, in channels, image_size, image_size)``.
    Raises ``ValueError`` for an unknown kind or platform (listing the valid ones) and for a
    value outside ``[low, high]`` (stating the range measured for this model).
    """
    _check(budget.kind, budget.platform)
    if isinstance(spec, nn.Module):
        spec = models.describe(spec)
    if input_shape is None:
        in_channels = spec.in_channels if isinstance(spec, models.Topology) else \
            (spec.get("in_channels", 3) if isinstance(spec, dict) else 3)
        input_shape = budget.input_shape(in_channels, image_size)
    low, high = feasible_range(spec, budget.kind, input_shape, budget.platform, table=table)
    if not low <= budget.value <= high:
        where = f" on {budget.platform} at batch {input_shape[0]}" if budget.kind == "latency" else ""
        raise ValueError(
            f"the {budget.kind} budget {budget.value:,.6g} {UNITS[budget.kind]} is outside the feasible range of "
            f"this model{where}: [{low:,.6g}, {high:,.6g}] {UNITS[budget.kind]} (low = one channel per "
            f"convolution, high = the full model)"
        )
    return low, high


# -- masked models ----------------------------------------------------------------------
def kept_widths(masked: nn.Module) -> list[int]:
    """The conv widths packing would keep (``ChannelMask.keep``), in graph order."""
    return [int(m.survivors().sum()) for m in masks.masks_of(masked).values()]


def kept_spec(masked: nn.Module) -> dict:
    """The spec of the model that packing ``masked`` would produce."""
    spec = getattr(masked, "meta", {}).get("source_spec")
    if spec is None:
        raise ValueError("the masked model was made from a model without spec(): cannot tell its kept signature")
    return models.resize_spec(spec, kept_widths(masked))


def masked_cost(masked: nn.Module, kind: str, input_shape: tuple[int, ...], platform: str | None = None, *,
                table: latency_table.LatencyTable | None = None) -> float:
    """What ``masked`` would cost once packed: ``masks.estimate`` for parameters and FLOPs,
    the latency table on the kept signature for latency."""
    _check(kind, platform)
    if not masks.masks_of(masked):
        raise ValueError("the model has no channel masks: call masks.insert_masks(model) first")
    if kind != "latency":
        return float(count(masked, kind, input_shape))
    return _latency(models.describe(kept_spec(masked)), input_shape, platform, table)


def costs(model: nn.Module, input_shape: tuple[int, ...], platform: str | None = None, *,
          table: latency_table.LatencyTable | None = None, latency: bool = True) -> dict[str, float]:
    """All three costs of a plain or masked model (latency NaN without a platform or with
    ``latency=False``); parameters and FLOPs per image, latency for ``input_shape``."""
    per_image = (1, *input_shape[1:])
    return {"params": cost(model, "params", per_image), "flops": cost(model, "flops", per_image),
            "latency_ms": cost(model, "latency", input_shape, platform, table=table)
            if latency and platform is not None else float("nan")}
