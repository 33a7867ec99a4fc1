"""Reproducible tables: what a re-run must match exactly, and what within a tolerance.

A lesson's figures fall in three groups:

- **exact**: architectures, parameter and FLOP counts of fixed models, published figures,
  verdicts of checks. They do not depend on the order in which floating-point sums are
  taken, so any machine gives the same text; nbval compares them (``NBVAL_CHECK_OUTPUT``).
- **measured**: every figure that training produces (accuracy, kept channels, losses,
  D1-all, budgets reached). Another CPU runs other kernels that round differently, and
  training carries the last-bit difference into every trained number, much as another
  seed would. So they are compared with the committed tables within a tolerance per cell,
  derived from the spread of the same lesson re-run with other seeds (:func:`derive`).
- **timed**: milliseconds, frames per second, speedups, and every cell of a row that says it
  rests on a timing (a scorecard verdict judged on a speedup). They are printed figures and
  never decide whether a check passes (:func:`is_timed`, :func:`timed_rows`).

The committed tables live in ``notebooks/tables/`` (copied from ``results/tutorial/tables``
by ``make notebooks``), the tolerances in ``notebooks/tables/tolerances.csv``::

    make notebooks      # seed 0: the committed outputs, and their tables in notebooks/tables
    make tolerances     # seeds 1 and 2 into notebooks/tables/seed<N>/, then tolerances.csv
    make kernels        # seed 0 under AVX2 kernels into notebooks/tables/kernels/avx2/, then tolerances.csv
    python -m tutorial_lib.reproduce check          # results/tutorial against notebooks/tables
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from tutorial_lib import paths, seeds, tables

# Three standard deviations of the difference of two independent runs (sd * sqrt(2)).
SIGMAS = 3.0
DIFFERENCE_SCALE = SIGMAS * math.sqrt(2.0)
MIN_SEEDS = 3

# Tables that hold nothing but timings, and the names of timed columns or rows elsewhere.
TIMED_TABLES = ("03_fps", "03_time_by_part", "04_bounds", "04_bounds_layers", "04_latency_table", "04_platform_speedups",
                "06_int8_profile", "07_latency")
TIMED = re.compile(r"(\bms\b|latency|speedup|\bfps\b|frames per second|seconds|s / epoch|wall|time|error_pct|"
                   r"estimate error)", re.I)  # an estimate's error is against a measured latency
REST_COLUMN = "rests on"  # a row may say what it rests on; "timing" makes the whole row timed
# Tables written only by sweeps that `make test` does not re-run (NBVAL_SKIP cells): checked
# against the committed ones after `make tables`, not required after nbval.
SWEEPS = ("02_frontier", "02_frontier_ranking", "02_frontier_flops", "02_frontier_flops_ranking", "02_settling_hard",
          "02_slimming_sweep", "07_budget_bytes", "07_budget_latency")
# Lessons whose seeds vary only a short fine-tune of the shared baseline (lesson 06's QAT runs):
# their spread is far below a retrained model's (0.1-0.5 points against 1-3), yet on another
# CPU the baseline they start from moves by as much as a retrained one (lesson 01: 87.0% on
# AVX-512, 84.3% on AVX2). So their spread does not lower the kinds' pooled floor, which their
# cells are held to like every other lesson's.
FINE_TUNE_LESSONS = ("06",)
# Kinds of measure whose cells share one noise level: a cell's tolerance is never below the
# typical spread of its kind (three seeds estimate one cell's spread poorly; a kind has many cells).
KINDS = (
    ("top-1 (points)", re.compile(r"top-1|accuracy|\bacc\b", re.I)),
    ("D1-all (points)", re.compile(r"d1", re.I)),
    ("share kept or removed (%)", re.compile(r"%|pct", re.I)),
    # trained figures without a unit of their own: a training loss, a count of channels kept
    # (exact-looking when three seeds agree, yet another CPU moves them: lesson 01 under AVX2)
    ("training loss", re.compile(r"\bloss", re.I)),
    ("channels kept (count)", re.compile(r"(^|: )kept$", re.I)),
)
PUBLISHED = re.compile(r"published|source|wanted", re.I)  # columns that are never measured
COMMITTED = "notebooks/tables"
LEARNED_COUNT = r"\s*\([\d,]+ params\)"
TUTORIAL_TEST_IMAGES = 1620  # digits_m's test split (540 digits x 3 blends): the standard error's n
TOLERANCES = "tolerances.csv"
KERNELS = "kernels"  # notebooks/tables/kernels/<name>/: seed 0 again under other CPU kernels
KEY = ["table", "row", "column"]


def committed_dir() -> Path:
    return paths.project_root() / COMMITTED


def is_timed(table: str, label: str, column: str) -> bool:
    """Whether a cell is a timing (never compared): a timing table, or a timed row or column."""
    return table in TIMED_TABLES or bool(TIMED.search(str(column))) or bool(TIMED.search(str(label)))


def timed_rows(df: pd.DataFrame) -> set[str]:
    """Rows (named by :func:`row_names`) whose ``rests on`` column names a timing: a verdict a
    timing can flip (the scorecard's speed and latency claims) is timed in every cell."""
    if REST_COLUMN not in df.columns:
        return set()
    return {row for row, v in zip(row_names(df), df[REST_COLUMN].astype(str)) if "timing" in v}


def kind_of(label: str, column: str) -> str | None:
    """The kind of measure a cell belongs to (its row label and column name), if any."""
    text = f"{label} {column}"
    return next((name for name, pattern in KINDS if pattern.search(text) or pattern.search(str(column))), None)


def _tables_dir(folder: str | Path) -> Path:
    """A run's folder of CSV tables: ``folder/tables`` where there is one, else ``folder``."""
    folder = Path(folder)
    return folder / "tables" if (folder / "tables").is_dir() else folder


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)  # every cell as its text


def read_tables(folder: str | Path) -> dict[str, pd.DataFrame]:
    """``{<lesson>_<name>: table}`` for every CSV in ``folder`` (or its ``tables/``)."""
    return {p.stem: _read(p) for p in sorted(_tables_dir(folder).glob("*.csv")) if p.name != TOLERANCES}


def read_table(folder: str | Path, name: str) -> pd.DataFrame | None:
    """One table of :func:`read_tables` (``None`` where ``folder`` lacks it), without reading the rest."""
    path = _tables_dir(folder) / f"{name}.csv"
    return _read(path) if path.exists() else None


def _number(text: str) -> float | None:
    try:
        value = float(str(text).replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def row_names(df: pd.DataFrame) -> list[str]:
    """Each row's name: its first column and, where that repeats, its position (``label #2``)."""
    seen: dict[str, int] = {}
    names = []
    for label in df.iloc[:, 0].astype(str) if len(df.columns) else []:
        seen[label] = seen.get(label, 0) + 1
        names.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return names


def cells(name: str, df: pd.DataFrame) -> Iterable[tuple[str, str, str]]:
    """``(row, column, text)`` of every cell, rows named by :func:`row_names`."""
    for row, (_, record) in zip(row_names(df), df.iterrows()):
        for column in df.columns:
            yield row, str(column), str(record[column])


def _record(name: str, row: str, column: str, texts: list[str], timed_row: bool = False) -> dict:
    """One cell's status over the runs that wrote it (see :func:`derive`)."""
    numbers = [_number(t) for t in texts]
    label = row.split(" #")[0]
    record = {"table": name, "row": row, "column": column, "kind": kind_of(label, column), "seeds": len(texts),
              "sd": 0.0}
    if timed_row or is_timed(name, label, column):
        record["status"] = "timed"
    elif record["kind"] is not None and PUBLISHED.search(column):
        record["status"] = "exact" if len(set(texts)) == 1 else "varies"
    elif record["kind"] is not None and numbers[0] is None:  # text about a trained figure (a verdict, "met")
        record["status"] = "exact" if len(texts) > 1 and len(set(texts)) == 1 else \
            "underived" if len(texts) == 1 else "varies"
    elif len(texts) == 1:  # one run: a trained figure gets its kind's noise, anything else is not compared
        record["status"] = "measured" if record["kind"] is not None else "underived"
    elif len(set(texts)) == 1:  # the same in every run: exact, unless a trained figure of a pooled kind
        record["status"] = "exact" if record["kind"] is None else "measured"
    elif all(n is not None for n in numbers):
        record.update(status="measured", sd=float(np.std(numbers, ddof=1)))
    else:
        record["status"] = "varies"
    return record


def seed_groups(name: str, df: pd.DataFrame) -> Iterable[tuple[list[str], str, str, float]]:
    """``(rows, column, kind, sd)`` of each method in a table that lists every seed of a
    lesson's own ranked comparison (a ``seed`` column: lessons 02, 04, 05): the rows of one
    method (its label columns alike), a trained column, and that method's spread over the seeds."""
    if "seed" not in df.columns or df["seed"].nunique() < 2 or name in TIMED_TABLES:
        return  # one seed (a sweep such as lesson 02's frontier): its rows differ by setting, not seed
    labels = [c for c in df.columns if c != "seed" and pd.to_numeric(df[c].str.replace(",", ""),
                                                                      errors="coerce").isna().any()]
    names = pd.Series(row_names(df), index=df.index)
    for column in df.columns:
        if column in labels or column == "seed" or is_timed(name, "", column):
            continue
        values = pd.to_numeric(df[column].str.replace(",", ""), errors="coerce")
        for key, part in values.groupby([df[c] for c in labels] if labels else [0] * len(df), sort=False):
            label = str(key[0] if isinstance(key, tuple) else key)
            sd = part.std()
            if pd.notna(sd) and sd > 0 and kind_of(label, column):
                yield list(names[part.index]), str(column), kind_of(label, column), float(sd)


SD_COLUMN = re.compile(r"^(.*?) sd\b")


def reported_spread(name: str, df: pd.DataFrame) -> Iterable[tuple[str, str, float]]:
    """``(row, column, sd)`` where a table reports its own spread over seeds beside a figure: a
    column ``<figure> sd ...`` (``top-1 sd (seeds)``, ``accuracy sd``) gives the sd of every
    column that starts with the same words (``top-1 %``; ``accuracy (seed 2000)``) in its row."""
    for sd_column in df.columns:
        match = SD_COLUMN.match(str(sd_column))
        if match is None or is_timed(name, "", sd_column):
            continue
        figures = [c for c in df.columns if str(c).startswith(match.group(1)) and not SD_COLUMN.match(str(c))
                   and not PUBLISHED.search(str(c)) and not is_timed(name, "", c)]
        for row, value in zip(row_names(df), df[sd_column]):
            sd = _number(value)
            if sd is not None and sd > 0:
                yield from ((row, str(c), sd) for c in figures)


def in_lesson_spread(tables_of_run: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``table``, ``kind``, ``sd`` of every method of every in-lesson seed table (:func:`seed_groups`):
    the same noise the seed re-runs measure."""
    rows = [{"table": name, "kind": kind, "sd": sd} for name, df in tables_of_run.items()
            for _, _, kind, sd in seed_groups(name, df)]
    return pd.DataFrame(rows, columns=["table", "kind", "sd"])


def _kernel_spread(record: dict, texts: list[str], other_kernels: list[str]) -> dict:
    """Widen one cell's record by what the same seed gave under other CPU kernels (another
    instruction set sums in another order): a cell that moved there is measured with the
    spread over every run, or ``varies`` where it is text; a cell that did not move keeps
    its record. Kernel runs never make a cell stricter: they repeat seed 0, not a new seed."""
    if not other_kernels or all(t == texts[0] for t in other_kernels):
        return record
    numbers = [_number(t) for t in texts + other_kernels]
    if record["status"] in ("measured", "exact") and all(n is not None for n in numbers):
        # each machine's run against the seeds on its own too: a run that lands near the others
        # must not dilute the spread another machine showed
        spreads = [np.std(numbers, ddof=1)] + [np.std(numbers[:len(texts)] + [k], ddof=1)
                                              for k in numbers[len(texts):]]
        return {**record, "status": "measured", "sd": max(record["sd"], float(max(spreads)))}
    return {**record, "status": "varies"} if record["status"] == "exact" else record


def derive(runs: Sequence[str | Path], kernels: Sequence[str | Path] = (), min_seeds: int = MIN_SEEDS) -> pd.DataFrame:
    """Per-cell tolerances from the same lessons run with several seeds (one folder a seed).

    Each cell gets a status from the runs that wrote its table: ``exact`` (the same text in
    every run, or a published figure), ``measured`` (a number that moved: its tolerance is
    ``3 * sqrt(2)`` standard deviations, the sd taken as the larger of the cell's own and the
    median sd of its kind's cells), ``timed`` (never compared) or ``varies`` (text that
    changes with the seed, such as a learned signature: not compared).

    A kind's median sd pools every cell that moved between runs and the spread of every
    in-lesson ranked comparison (:func:`in_lesson_spread`). So a trained figure of a kind
    (top-1, D1-all, a share in %) in a table that only one run wrote (a lesson whose seed
    re-runs are older than its notebook) is still held to its kind's noise; a cell of no kind
    there stays ``underived``: listed, not compared, until the seeds are run again.

    Two more sources of spread widen a cell, never narrow it: the spread of its own method
    over the seeds where the cell is one seed of an in-lesson comparison (:func:`seed_groups`:
    a method that trains erratically moves as much on another host) or where its table reports
    that spread beside it (:func:`reported_spread`), and ``kernels``,
    the first run's seed again under other CPU kernels (``make kernels``; :func:`_kernel_spread`).
    """
    if len(runs) < min_seeds:
        raise ValueError(f"tolerances need at least {min_seeds} runs with different seeds, got {len(runs)}")
    per_run = [read_tables(r) for r in runs]
    per_kernel = [read_tables(r) for r in kernels]
    rows = []
    for name in sorted(set.union(*(set(t) for t in per_run))):
        having = [run_tables[name] for run_tables in per_run if name in run_tables]
        if any(list(df.columns) != list(having[0].columns) for df in having):  # an older layout: not comparable
            having = having[:1]
        values: dict[tuple[str, str], list[str]] = {}
        for df in having:
            for row, column, text in cells(name, df):
                values.setdefault((row, column), []).append(text)
        kernel_values: dict[tuple[str, str], list[str]] = {}
        for df in (run_tables[name] for run_tables in per_kernel if name in run_tables):
            if list(df.columns) != list(having[0].columns):
                continue
            # paired by place where the shape is the same, as :func:`compare` pairs a run's cells
            # (a row named by a learned count, "joint-pruned (181,579 params)", is the same row)
            paired = zip(cells(name, having[0]), cells(name, df)) if len(df) == len(having[0]) else \
                ((cell, cell) for cell in cells(name, df))
            for (row, column, _), (_, _, text) in paired:
                kernel_values.setdefault((row, column), []).append(text)
        group_sd = {(row, column): sd for rows_of, column, _, sd in seed_groups(name, having[0]) for row in rows_of}
        for row, column, sd in reported_spread(name, having[0]):
            group_sd[(row, column)] = max(sd, group_sd.get((row, column), 0.0))
        timed = set.union(*(timed_rows(df) for df in having))
        for (row, column), texts in values.items():
            record = _record(name, row, column, texts, row in timed)
            record["seed_sd"] = record["sd"]  # what the seed re-runs alone measured: the kinds pool it
            if record["status"] == "measured":
                record["sd"] = max(record["sd"], group_sd.get((row, column), 0.0))
            record = _kernel_spread(record, texts, kernel_values.get((row, column), []))
            rows.append({**record, "kernels": len(kernel_values.get((row, column), []))})
    out = pd.DataFrame(rows, columns=KEY + ["status", "kind", "seeds", "kernels", "sd", "seed_sd"])
    measured = out["status"] == "measured"
    # the kind's typical spread: the median over the cells that moved between seeds and the
    # in-lesson seed spreads (robust to one erratic row, such as a method that collapses with one
    # seed, which keeps its own larger spread); kernel runs do not enter it
    moved = out.loc[measured & (out["seed_sd"] > 0), ["table", "kind", "seed_sd"]].rename(columns={"seed_sd": "sd"})
    spreads = pd.concat([moved, in_lesson_spread(per_run[0])[["table", "kind", "sd"]]])
    spreads = spreads[~spreads["table"].str[:2].isin(FINE_TUNE_LESSONS)][["kind", "sd"]]
    out = out.drop(columns="seed_sd")
    pooled = spreads.groupby("kind")["sd"].median()
    out["kind_sd"] = out["kind"].map(pooled).fillna(0.0)
    out["tolerance"] = np.where(measured, DIFFERENCE_SCALE * np.maximum(out["sd"], out["kind_sd"]), 0.0)
    out.loc[measured & (out["tolerance"] == 0), "status"] = "underived"  # a kind nobody measured the noise of
    out[["sd", "kind_sd", "tolerance"]] = out[["sd", "kind_sd", "tolerance"]].round(4)
    return out


def kind_summary(tolerances: pd.DataFrame) -> pd.DataFrame:
    """One row per kind of measure: cells, the kind's median sd and the tolerances it implies."""
    m = tolerances[tolerances["status"] == "measured"].fillna({"kind": "(own spread only)"})
    return (m.groupby("kind").agg(cells=("sd", "size"), median_cell_sd=("sd", "median"),
                                  kind_sd=("kind_sd", "max"), median_tolerance=("tolerance", "median"),
                                  max_tolerance=("tolerance", "max"))
            .reset_index().round(3))


def seed_runs(folder: str | Path | None = None) -> list[Path]:
    """The committed runs of the tutorial profile: seed 0 (``notebooks/tables``) and each
    ``seed<N>/`` folder beside it (``make tolerances`` writes them)."""
    folder = Path(folder) if folder else committed_dir()
    return [folder] + sorted(p for p in folder.glob("seed[0-9]*") if p.is_dir())


def kernel_runs(folder: str | Path | None = None) -> list[Path]:
    """The committed re-runs of seed 0 under other CPU kernels: ``kernels/<name>/`` beside the
    seed runs (``make kernels`` writes them, e.g. ``kernels/avx2``)."""
    folder = (Path(folder) if folder else committed_dir()) / KERNELS
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def seed_summary(table: str, labels: Sequence[str], values: Sequence[str], runs: Sequence[str | Path] | None = None,
                 test_images: int | None = None) -> pd.DataFrame:
    """Mean ± standard deviation over the committed runs of the ``values`` columns of ``table``,
    one row per ``labels`` (:func:`seeds.summarize`); rows are matched by their labels, so a
    learned row (another signature with another seed) still pairs with its counterparts."""
    runs = list(runs) if runs is not None else seed_runs()
    frames = []
    for i, run in enumerate(runs):
        df = read_table(run, table)
        if df is None:
            raise FileNotFoundError(f"{table}.csv is missing from {run}")
        df = df[list(labels) + list(values)].assign(run=i)
        for label in labels:  # "joint-pruned (113,108 params)": the count is learned, the row is the same
            df[label] = df[label].str.replace(LEARNED_COUNT, "", regex=True)
        frames.append(df)
    return seeds.summarize(pd.concat(frames), labels, values, test_images, seed_column="run")


# The tables that rank methods, summarised over seeds by ``python -m tutorial_lib.reproduce spread``.
RANKED = (
    ("01_summary", ["quantity"], ["ours"], None, None),
    ("02_vgg19", ["method"], ["top-1 % (digits_m)", "params"], "top-1 % (digits_m)",
     {"method": "Joint end-to-end pruning (ours)"}),
    ("03_monodepth", None, None, None, None),
    ("05_distillation", ["student", "method"], ["top-1 %", "gain over scratch"], "gain over scratch",
     {"method": "student from scratch"}),
)


def spread_report(runs: Sequence[str | Path] | None = None) -> str:
    """Markdown: every ranked table as mean ± sd over the seeds, with each gap judged."""
    runs = list(runs) if runs is not None else seed_runs()
    parts = [f"# The lessons over {len(runs)} seeds (tutorial profile)\n",
             "Mean and standard deviation over the committed runs (seed 0 in `notebooks/tables/`, the "
             "others in `seed<N>/`). A gap is read as a difference only where it exceeds two standard "
             "errors of a difference of means; otherwise the two are a tie. Test-set standard error: "
             f"{TUTORIAL_TEST_IMAGES:,} test images.\n"]
    for table, labels, values, judged, reference in RANKED:
        having = [r for r in runs if read_table(r, table) is not None]  # the "seeds" column says how many
        if len(having) < 2:
            continue
        first = read_table(having[0], table)
        if labels is None:  # the first column names the rows, every numeric column is summarised
            labels = [first.columns[0]]
            values = [c for c in first.columns[1:] if not is_timed(table, "", c) and not PUBLISHED.search(c)
                      and pd.to_numeric(first[c].str.replace(",", ""), errors="coerce").notna().all()]
        summary = seed_summary(table, labels, values, having, TUTORIAL_TEST_IMAGES)
        if judged and reference:  # judged within each group of the first label where there are two
            groups = summary.groupby(labels[0], sort=False) if len(labels) > 1 else [(None, summary)]
            summary = pd.concat([seeds.versus(g, judged, reference) for _, g in groups])
        parts.append(f"## {table}\n\n{tables.to_markdown(summary)}\n")
    return "\n".join(parts)


def compare(fresh: dict[str, pd.DataFrame], committed: dict[str, pd.DataFrame],
            tolerances: pd.DataFrame) -> pd.DataFrame:
    """Every cell of ``fresh`` that differs from ``committed`` by more than its tolerance.

    Exact and unknown cells must match as text; measured cells within ``tolerance``; timed
    and varying cells are not compared. A table missing on either side, or with other
    columns, is a difference too (tables of ``committed`` that ``fresh`` lacks are left to
    the caller: a run may leave out a sweep).
    """
    tol = {(t.table, t.row, t.column): (t.status, float(t.tolerance)) for t in tolerances.itertuples()}
    problems = []
    for name, df in fresh.items():
        if name in TIMED_TABLES:  # timings only, and their rows can follow timings too
            continue
        if name not in committed:
            problems.append({"table": name, "row": "", "column": "", "committed": "(no committed table)",
                             "fresh": "", "allowed": ""})
            continue
        want = committed[name]
        if list(want.columns) != list(df.columns) or len(want) != len(df):
            problems.append({"table": name, "row": "", "column": "", "allowed": "same shape",
                             "committed": f"{len(want)} rows x {list(want.columns)}",
                             "fresh": f"{len(df)} rows x {list(df.columns)}"})
            continue
        timed = timed_rows(want) | timed_rows(df)
        for (row, column, old), (_, _, new) in zip(cells(name, want), cells(name, df)):
            status, allowed = tol.get((name, row, column), ("exact", 0.0))
            if status in ("timed", "varies", "underived") or row in timed or old == new:
                continue
            a, b = _number(old), _number(new)
            if status == "measured" and a is not None and b is not None and abs(a - b) <= allowed + 1e-9:
                continue
            problems.append({"table": name, "row": row, "column": column, "committed": old, "fresh": new,
                             "allowed": f"±{allowed:g}" if status == "measured" else "exact"})
    return pd.DataFrame(problems, columns=KEY + ["committed", "fresh", "allowed"])


def freeze(results: str | Path | None = None, target: str | Path | None = None) -> list[Path]:
    """Copy a tutorial run's CSV tables into ``notebooks/tables`` (what ``make notebooks`` commits)."""
    source = Path(results) if results else paths.results_dir("tutorial") / "tables"
    target = Path(target) if target else committed_dir()
    target.mkdir(parents=True, exist_ok=True)
    return [shutil.copyfile(p, target / p.name) for p in sorted(source.glob("*.csv"))]


def load_tolerances(folder: str | Path | None = None) -> pd.DataFrame:
    path = Path(folder or committed_dir()) / TOLERANCES
    if not path.exists():
        raise FileNotFoundError(f"no tolerances at {path}: derive them with `python -m tutorial_lib.reproduce derive`")
    return pd.read_csv(path, keep_default_na=False).replace({"kind": {"": None}})


def check(fresh: str | Path | None = None, committed: str | Path | None = None) -> pd.DataFrame:
    """:func:`compare` a run's tables (default ``results/tutorial``) with the committed ones."""
    committed = Path(committed) if committed else committed_dir()
    fresh_tables = read_tables(fresh or paths.results_dir("tutorial"))
    return compare(fresh_tables, read_tables(committed), load_tolerances(committed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("derive", help="per-cell tolerances from runs with different seeds")
    d.add_argument("runs", nargs="*", help="result folders (each holding tables/), one per seed "
                                          f"(default: {COMMITTED} and its seed<N>/ folders)")
    d.add_argument("--kernels", nargs="*", default=None, help="result folders of seed 0 under other CPU kernels "
                                                              f"(default: {COMMITTED}/{KERNELS}/*)")
    d.add_argument("--out", default=None, help=f"where to write {TOLERANCES} (default: {COMMITTED})")
    c = sub.add_parser("check", help="compare a run's tables with the committed ones")
    c.add_argument("--fresh", default=None, help="result folder of the run (default: results/tutorial)")
    f = sub.add_parser("freeze", help="copy a run's tables (default results/tutorial/tables) into notebooks/tables")
    f.add_argument("--source", default=None, help="folder of CSV tables to copy")
    f.add_argument("--target", default=None, help=f"where to (default: {COMMITTED})")
    sub.add_parser("spread", help=f"write {COMMITTED}/SEEDS.md: ranked tables as mean ± sd over the seeds")
    args = parser.parse_args(argv)
    if args.command == "spread":
        path = committed_dir() / "SEEDS.md"
        path.write_text(spread_report())
        print(f"written: {path}")
        return 0
    if args.command == "derive":
        tolerances = derive(args.runs or seed_runs(), kernel_runs() if args.kernels is None else args.kernels)
        out = Path(args.out) if args.out else committed_dir()
        out.mkdir(parents=True, exist_ok=True)
        tolerances.to_csv(out / TOLERANCES, index=False)
        print(tolerances["status"].value_counts().to_string())
        print(kind_summary(tolerances).to_string(index=False))
        return 0
    if args.command == "freeze":
        print(f"{len(freeze(args.source, args.target))} tables copied to {args.target or committed_dir()}")
        return 0
    problems = check(args.fresh)
    print("every table within its tolerances" if problems.empty else problems.to_string(index=False))
    return int(not problems.empty)


if __name__ == "__main__":
    raise SystemExit(main())
