"""Budget mode: given targets (bytes on disk, latency on a named platform), the pipeline chooses
its own stages, then verifies them by measurement.

- **Pruning** is lesson 04's adaptive loop: to the latency target itself when there is one
  (measured latency is what the loop lands on), else to each share of the parameters in
  ``shares``, one candidate each.
- **Bits** come from the bytes target, by arithmetic: bytes on disk depend on the layer sizes and
  bits only, not on training, so each pruned candidate gets the most bits that fit. Real int8
  (8-bit weights and activations, CPU kernels) where its bytes fit and no latency target says
  otherwise, else lesson 06's HAWQ allocation at the largest average bits (a grid of quarter
  bits) whose bit-packed model fits. With a latency target the model runs as float32 (its
  quantized weights dequantized when loaded: there are no CPU kernels below 8 bits, and the
  latency the loop lands on is float32's), so its latency is the pruned model's.
- **Choosing**: every candidate trains on the training split less ``held_out_images`` images;
  among those that meet every target on measurement, the one with the best top-1 on the
  held-out images is chosen (never by the test set); the test top-1 is reported beside it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from torch import nn

from tutorial_lib import data
from tutorial_lib.compress import pipeline
from tutorial_lib.compress.recipe import Pipeline, Prune, Quantize, Target
from tutorial_lib.measure import platforms
from tutorial_lib.quant import allocate, int8, packing, qat

SHARES = (0.15, 0.3)  # parameter shares tried when no latency target fixes the pruning
BIT_GRID = tuple(float(b) for b in np.arange(2.0, 8.01, 0.25).round(2))  # average weight bits tried, fewest first


@dataclass
class Outcome:
    """Budget mode's candidates (one row each, measured) and the one chosen."""

    candidates: pd.DataFrame
    chosen: pipeline.Stepped | None
    recipe: Pipeline | None


def _prunes(target: Target, cfg, shares: tuple[float, ...]) -> list[Prune]:
    if target.latency is not None:
        return [Prune(budget="latency", fraction=target.latency, platform=target.platform or cfg.latency_platform)]
    return [Prune(budget="params", fraction=s) for s in shares]


def quantize_to_fit(pruned: nn.Module, bundle: data.DataBundle, cfg, limit: float | None,
                    allow_int8: bool = True) -> tuple[Quantize | None, int | None]:
    """The quantize stage with the most bits whose model fits ``limit`` bytes, and those bytes
    (computed, not estimated: the model is quantized and serialised, untrained); ``(None, None)``
    when not even 2 bits fit."""
    if limit is None:
        stage = Quantize(bits=8, int8=allow_int8)
        return stage, None
    if allow_int8:
        size = int8.int8_bytes(int8.ptq(pruned, bundle, cfg.run, 1, cfg.batch_size))
        if size <= limit:
            return Quantize(bits=8, int8=True), size
    q = cfg.quant
    problem = allocate.Problem(pruned, allocate.held_out(bundle, q.held_out_images, cfg.seed), cfg.run, 8.0,
                               q.probe_steps, q.quant_lr, q.quant_keep_first_last)
    sensitivity = allocate.sensitivities(problem, allocate.hessian_traces(problem))

    @functools.cache
    def size_at(b: float) -> int:  # HAWQ lowers bits greedily to the budget: more budget, never fewer bytes
        bits = allocate.hawq(dataclasses.replace(problem, budget=b), sensitivity)
        quantized = qat.quantized_copy(pruned, bits, None, q.quant_keep_first_last)
        return packing.model_bytes(pipeline.steps_from_first_batch(quantized, bundle, cfg))

    grid = BIT_GRID
    if size_at(grid[0]) > limit:
        return None, None
    low, high = 0, len(grid) - 1  # bisection: grid[low] fits; find the largest that does
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if size_at(grid[mid]) <= limit else (low, mid - 1)
    return Quantize(bits=8, activations=False, allocation="hawq", budget=grid[low]), size_at(grid[low])


def _latency_ratio(model: nn.Module, start: nn.Module, target: Target, bundle: data.DataBundle, cfg,
                   rounds: int = 5) -> float:
    """The deployed model's latency over the starting model's, both timed in turn on the target's
    platform (median of ``rounds`` ratios: a slow spell of the machine cancels)."""
    shape = (target.batch, bundle.in_channels, bundle.image_size, bundle.image_size)
    platform = target.platform or cfg.latency_platform
    ratios = []
    for _ in range(rounds):
        ms = platforms.measure_in_turn({"model": model, "start": start}, platform, shape, 1, 0.2)
        ratios.append(ms["model"] / ms["start"])
    return float(np.median(ratios))


def run(target_recipe: Pipeline, model: nn.Module, bundle: data.DataBundle, cfg, store: str | Path,
        progress: Callable[[str], None] = print, from_baseline: bool = False,
        shares: tuple[float, ...] = SHARES) -> Outcome:
    """Budget mode for a recipe with a ``target``: build each candidate recipe (prune, then
    quantize to fit), run it through :func:`pipeline.run` (its stages checkpointed and shared like
    any recipe's), measure it and choose (see the module's docstring)."""
    target = target_recipe.target
    if target is None:
        raise ValueError(f"{target_recipe.name!r} has stages, not a target: run it with pipeline.run")
    cfg = cfg.replace(latency_batch=target.batch, latency_platform=target.platform or cfg.latency_platform)
    start_bytes = packing.model_bytes(model)
    limit = None if target.bytes is None else target.bytes * start_bytes
    search = allocate.held_out(bundle, cfg.held_out_images, cfg.seed)  # train: the rest; test: held out
    rows, results = [], {}
    for prune in _prunes(target, cfg, shares):
        try:  # lesson 04 refuses a budget outside the model's feasible range, before it trains
            pruned = pipeline.run(Pipeline(f"{target_recipe.name}: {prune.describe()}", (prune,)), model, search,
                                  cfg, store, progress, from_baseline).model
        except ValueError as err:
            rows.append({"candidate": prune.describe(), "verdict": f"infeasible: {err}"})
            continue
        quant, planned = quantize_to_fit(pruned, search, cfg, limit, allow_int8=target.latency is None)
        row = {"candidate": prune.describe(), "target bytes": round(limit) if limit else "",
               "kept params": sum(p.numel() for p in pruned.parameters())}
        if quant is None:
            rows.append({**row, "stages": "", "verdict": "infeasible: not even 2 bits fit"})
            continue
        recipe = Pipeline(f"{target_recipe.name}: {prune.describe()}", (prune, quant))
        result = pipeline.run(recipe, model, search, cfg, store, progress, from_baseline)
        measured = pipeline.measure(result, bundle, cfg)  # top-1 on the test set
        row.update({"stages": recipe.describe(), "bytes": measured["bytes"], "planned bytes": planned or "",
                    "weight bits": measured["weight bits"], "int8 kernels": measured["int8 kernels"],
                    "top-1 % held-out": round(pipeline.evaluate(result.deployed, search, cfg), 2),
                    "top-1 %": measured["top-1 %"]})
        met = limit is None or measured["bytes"] <= limit
        if limit is not None:
            row["bytes / target"] = round(measured["bytes"] / limit, 4)
        if target.latency is not None:
            ratio = _latency_ratio(pipeline.deployable(result), copy.deepcopy(model).eval(), target, bundle, cfg)
            row["latency / start"] = round(ratio, 3)
            row["latency / target"] = round(ratio / target.latency, 3)
            met = met and ratio <= target.latency
        row["verdict"] = "meets every target" if met else "misses a target"
        rows.append(row)
        results[row["candidate"]] = (result, recipe)
    table = pd.DataFrame(rows)
    ok = table[table["verdict"] == "meets every target"] if len(table) else table
    if ok.empty:
        table["chosen"] = ""
        return Outcome(table, None, None)
    best = ok.sort_values("top-1 % held-out", ascending=False)["candidate"].iloc[0]
    table["chosen"] = np.where(table["candidate"] == best, "yes", "")
    return Outcome(table, *results[best])
