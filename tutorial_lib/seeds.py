"""Comparisons that survive a reseed: one experiment run with several seeds, summarised as
mean ± standard deviation with the test-set standard error beside it, and every gap judged
against its noise.

A gap between two methods is read as a difference only where it exceeds two standard errors
of a difference of means over the seeds (``2 * sqrt((sd_a^2 + sd_b^2) / n)``); below that
the two are a tie. Lessons 02, 04 and 05 rank methods this way; ``reproduce`` uses the same
summary for lessons re-run with other seeds.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")


def seed_list(cfg) -> list[int]:
    """The seeds of a ranked comparison: ``cfg.seed``, ``cfg.seed + 1``, ... (``cfg.seeds`` of them)."""
    return [cfg.seed + k for k in range(cfg.seeds)]


def over_seeds(run: Callable[[object], T], cfg) -> dict[int, T]:
    """``run(cfg with seed s)`` for every seed of :func:`seed_list`, keyed by seed."""
    return {s: run(cfg.replace(seed=s)) for s in seed_list(cfg)}


def standard_error(accuracy_pct: pd.Series | float, test_images: int):
    """Binomial standard error (points) of a top-1 measured on ``test_images`` images."""
    p = np.clip(np.asarray(accuracy_pct, dtype=float), 0, 100) / 100
    return 100 * np.sqrt(p * (1 - p) / test_images)


def summarize(long: pd.DataFrame, labels: Sequence[str], values: Sequence[str], test_images: int | None = None,
              seed_column: str = "seed") -> pd.DataFrame:
    """Mean and sd over seeds of ``values``, one row per ``labels`` (first-seen order), the
    number of seeds, and with ``test_images`` the test-set standard error of each top-1 mean."""
    long = long.copy()
    for column in values:
        long[column] = pd.to_numeric(long[column].astype(str).str.replace(",", ""), errors="coerce")
    grouped = long.groupby(list(labels), sort=False)
    out = grouped[list(values)].agg(["mean", "std"]).round(2)
    out.columns = [f"{c} {stat}".replace(" std", " sd") for c, stat in out.columns]
    out.insert(0, "seeds", grouped[seed_column].nunique())
    if test_images:
        for column in values:
            if column.lower().startswith("top-1"):
                out[f"{column} test-set SE"] = standard_error(out[f"{column} mean"], test_images).round(2)
    return out.reset_index()


def versus(summary: pd.DataFrame, value: str, reference: dict[str, str]) -> pd.DataFrame:
    """Each row's gap to the ``reference`` row (``{label column: label}``) in mean ``value``,
    and the verdict: ``above``/``below`` only beyond two standard errors of the gap, else ``tie``."""
    key, label = next(iter(reference.items()))
    ref = summary[summary[key] == label].iloc[0]
    mean, sd, n = summary[f"{value} mean"], summary[f"{value} sd"].fillna(0.0), summary["seeds"]
    gap = (mean - ref[f"{value} mean"]).round(2)
    se = ((sd**2 + (ref[f"{value} sd"] if pd.notna(ref[f"{value} sd"]) else 0.0) ** 2) / n) ** 0.5
    out = summary.copy()
    out[f"gap to {label}"] = gap
    out["2 SE of gap"] = (2 * se).round(2)
    out["verdict"] = [verdict(g, e, int(k), r[key] == label) for (_, r), g, e, k in zip(summary.iterrows(), gap, se, n)]
    return out


def verdict(gap: float, se: float, seeds: int, is_reference: bool = False) -> str:
    """``reference``, ``above``, ``below`` or ``tie`` (a gap within two standard errors, or
    one that no spread backs: a single seed)."""
    if is_reference:
        return "reference"
    if seeds < 2 or not np.isfinite(se) or abs(gap) <= 2 * se or gap == 0:
        return "tie"
    return "above" if gap > 0 else "below"


def sentences(judged: pd.DataFrame, label: str, value: str, reference: str) -> list[str]:
    """One line per judged row, for a lesson to print under its table."""
    words = {"tie": "ties with", "above": "is above", "below": "is below"}
    return [f"{r[label]} {words[r['verdict']]} {reference}: {r[f'gap to {reference}']:+.2f} points "
            f"(2 SE of the gap {r['2 SE of gap']:.2f}, {int(r['seeds'])} seeds)"
            for _, r in judged.iterrows() if r["verdict"] != "reference"]
