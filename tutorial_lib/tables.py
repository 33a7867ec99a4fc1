"""Tables and figures of the lessons: our measurement beside the published figure.

``publish`` writes a pandas table as CSV and Markdown under ``results/<profile>/`` with the
dataset and profile named in its caption, and records it in the profile's manifest so
that ``report.build`` gathers everything into REPORT.md in lesson order. Published
figures come from one data file, ``tutorial_lib/reference/published.csv``, and always sit
in columns of their own, named with their source: a published number is never printed
as if we measured it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pandas as pd

from tutorial_lib import distributed, paths

PUBLISHED_CSV = paths.PACKAGE_DIR / "reference" / "published.csv"


@lru_cache(maxsize=1)
def _published() -> pd.DataFrame:
    return pd.read_csv(PUBLISHED_CSV)


def published(table: str | None = None) -> pd.DataFrame:
    """The published figures (all, or of one table): table, row, metric, value, unit, source."""
    df = _published()
    return df if table is None else df[df["table"] == table].reset_index(drop=True)


def published_value(table: str, row: str, metric: str) -> float | int:
    """One published figure (counts as ``int``); ``KeyError`` naming what exists when it is not there."""
    df = published(table)
    hit = df[(df["row"] == row) & (df["metric"] == metric)]
    if hit.empty:
        raise KeyError(f"no published {metric!r} for {row!r} in {table!r}; rows: {sorted(set(df['row']))}")
    value = float(hit["value"].iloc[0])
    return int(value) if hit["unit"].iloc[0] == "count" else value


def published_or_blank(table: str, row: str | None, metric: str) -> float | int | str:
    """:func:`published_value`, or ``""`` (a blank table cell) where nothing was published."""
    if row is None:
        return ""
    try:
        return published_value(table, row, metric)
    except KeyError:
        return ""


def published_source(table: str, row: str, metric: str) -> str:
    df = published(table)
    return str(df[(df["row"] == row) & (df["metric"] == metric)]["source"].iloc[0])


def _manifest_path(profile: str) -> Path:
    return paths.results_dir(profile) / "manifest.json"


def manifest(profile: str) -> list[dict]:
    """Every table and figure published for ``profile``, in lesson order."""
    path = _manifest_path(profile)
    return json.loads(path.read_text()) if path.exists() else []


def _register(profile: str, item: dict) -> None:
    """Add ``item`` to the manifest, replacing an earlier one of the same lesson and name."""
    items = [i for i in manifest(profile) if (i["lesson"], i["name"]) != (item["lesson"], item["name"])]
    items.append(item)
    items.sort(key=lambda i: (i["lesson"], i.get("order", 0)))
    _manifest_path(profile).write_text(json.dumps(items, indent=1))


def format_cell(value) -> str:
    """How a number reads in a Markdown table: integers with thousands separators, floats as
    given (round them before publishing), never in exponent notation."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, float)):  # bool is caught above
        if value != value:  # NaN
            return ""
        if float(value).is_integer() and (isinstance(value, int) or abs(value) >= 1000):
            return f"{int(value):,}"
        return f"{value:,.10g}"
    if hasattr(value, "item"):  # numpy scalars
        return format_cell(value.item())
    return str(value)


def to_markdown(df: pd.DataFrame) -> str:
    return df.map(format_cell).to_markdown(index=False, disable_numparse=True)


def caption(dataset: str, profile: str, seed: int | None = None) -> str:
    return f"Measured on: {dataset}; profile: {profile}{f', seed {seed}' if seed is not None else ''}."


def publish(df: pd.DataFrame, name: str, *, lesson: str, title: str, profile: str, dataset: str,
            seed: int | None = None, notes: str = "", order: int = 0) -> str:
    """Write ``df`` as ``results/<profile>/tables/<lesson>_<name>.{csv,md}``; return the Markdown
    (under torchrun, rank 0 alone writes)."""
    stem = f"{lesson}_{name}"
    text = f"**{title}**\n\n{caption(dataset, profile, seed)}\n\n{to_markdown(df)}\n"
    if notes:
        text += f"\n{notes}\n"
    if not distributed.is_main():
        return text
    folder = paths.results_dir(profile) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / f"{stem}.csv", index=False)
    (folder / f"{stem}.md").write_text(text)
    _register(profile, {"lesson": lesson, "name": name, "kind": "table", "title": title, "order": order,
                        "csv": f"tables/{stem}.csv", "md": f"tables/{stem}.md"})
    return text


def save_figure(fig, name: str, *, lesson: str, title: str, profile: str, order: int = 0) -> Path:
    """Save a matplotlib figure as ``results/<profile>/figures/<lesson>_<name>.png`` (under
    torchrun, rank 0 alone writes)."""
    if not distributed.is_main():
        return paths.results_root() / profile / "figures" / f"{lesson}_{name}.png"
    folder = paths.results_dir(profile) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{lesson}_{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _register(profile, {"lesson": lesson, "name": name, "kind": "figure", "title": title, "order": order,
                        "png": f"figures/{lesson}_{name}.png"})
    return path


_SAME = object()  # "the publisher's own" (a seed of None is a real choice: no seed in the caption)


class Publisher:
    """One lesson's tables and figures: knows its lesson, profile, dataset and seed, and
    numbers what it publishes in the order it is published (the order of ``REPORT.md``), so a
    notebook cell names only what differs: the table, its name, its title.

    >>> pub = Publisher("02", cfg.profile, seed=cfg.seed)
    >>> pub.dataset = bundle.name            # once the data are loaded
    >>> print(pub.table(ranked, "ranking", "Every method against joint pruning"))
    """

    def __init__(self, lesson: str, profile: str, dataset: str | None = None, seed: int | None = None):
        self.lesson, self.profile, self.dataset, self.seed = lesson, profile, dataset, seed
        self.published = 0

    @property
    def folder(self) -> Path:
        """Where this lesson's tables are written (``results/<profile>/tables``)."""
        return paths.results_dir(self.profile) / "tables"

    def _next(self) -> int:
        self.published += 1
        return self.published

    def table(self, df: pd.DataFrame, name: str, title: str, *, notes: str = "", dataset: str | None = None,
              seed=_SAME) -> str:
        """:func:`publish` ``df`` as ``<lesson>_<name>``; returns the Markdown."""
        dataset = dataset if dataset is not None else self.dataset
        if dataset is None:
            raise ValueError(f"say what table {name!r} was measured on: Publisher(dataset=...) or table(dataset=...)")
        return publish(df, name, lesson=self.lesson, title=title, profile=self.profile, dataset=dataset,
                       seed=self.seed if seed is _SAME else seed, notes=notes, order=self._next())

    def figure(self, fig, name: str, title: str) -> Path:
        """:func:`save_figure` ``fig`` as ``<lesson>_<name>.png``."""
        return save_figure(fig, name, lesson=self.lesson, title=title, profile=self.profile, order=self._next())
