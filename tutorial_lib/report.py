"""REPORT.md: every table and figure of a profile in lesson order, with provenance
(git commit, torch version, CPU, threads, profile, seed, date, wall time per notebook)."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from pathlib import Path

import torch

from tutorial_lib import paths, profiles, scorecard, tables
from tutorial_lib.measure import timer

LESSON_TITLES = {
    "01": "Lesson 01: the binary mask module",
    "02": "Lesson 02: joint end-to-end filter pruning",
    "03": "Lesson 03: pruning a monocular depth network",
    "04": "Lesson 04: platform-aware constrained pruning",
    "05": "Lesson 05: knowledge distillation",
    "06": "Lesson 06: quantization",
    "07": "Lesson 07: the all-in-one pipeline",
}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.project_root(),
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=paths.project_root(),
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (out.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(profile: str) -> dict:
    cfg = profiles.resolve(profile)
    return {"git commit": git_commit(), "torch": torch.__version__, "python": platform.python_version(),
            "CPU": timer.cpu_name(), "threads": cfg.threads,
            "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "profile": profile, "seed": cfg.seed,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def timings(profile: str) -> dict[str, float]:
    path = paths.results_dir(profile) / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def build(profile: str) -> Path:
    """Write ``results/<profile>/REPORT.md`` from the manifest and return its path."""
    folder = paths.results_dir(profile)
    lines = [f"# Compression tutorials: results at the `{profile}` profile", ""]
    lines += ["| provenance | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in provenance(profile).items()]
    wall = timings(profile)
    if wall:
        lines += ["", "| notebook | wall time (s) |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in wall.items()]
    card = scorecard.card(folder / "tables")
    if len(card):
        lines += ["", "## The seed's claims: scorecard", "",
                  "Computed from the tables below (`tutorial_lib.scorecard`); each verdict says how it was judged.",
                  "", card.to_markdown(index=False)]
    lines.append("")
    current = None
    for item in tables.manifest(profile):
        if item["lesson"] != current:
            current = item["lesson"]
            lines += [f"## {LESSON_TITLES.get(current, 'Lesson ' + current)}", ""]
        if item["kind"] == "table":
            lines += [(folder / item["md"]).read_text().rstrip(), "", f"CSV: `{item['csv']}`", ""]
        else:
            lines += [f"**{item['title']}**", "", f"![{item['title']}]({item['png']})", ""]
    path = folder / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
