"""Run every lesson notebook with papermill at one profile, then build REPORT.md.

    python -m tutorial_lib.run --profile tutorial          # what `make tables` does
    python -m tutorial_lib.run --profile tutorial --in-place  # refresh the committed outputs

Executed notebooks go to ``results/<profile>/notebooks/``; wall times to ``timings.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tutorial_lib import paths, profiles, report


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The lesson notebooks in order (``NN_name.ipynb``), optionally only those whose number is given."""
    found = sorted((paths.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [nb for nb in found if not only or nb.name[:2] in only]


def execute(notebook: Path, profile: str, output: Path, parameters: dict | None = None) -> float:
    """Execute one notebook with papermill; return its wall time in seconds."""
    import papermill as pm

    params = {} if profile == "tutorial" and not parameters else {"profile": profile, **(parameters or {})}
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pm.execute_notebook(str(notebook), str(output), parameters=params, cwd=str(notebook.parent),
                        kernel_name="python3", progress_bar=False)
    return time.perf_counter() - start


def run(profile: str, only: list[str] | None = None, in_place: bool = False) -> Path:
    profiles.resolve(profile)  # reject a bad profile before any work
    folder = paths.results_dir(profile)
    timing_file = folder / "timings.json"
    wall = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    wall = {name: t for name, t in wall.items() if name in {nb.name for nb in notebooks()}}  # drop removed lessons
    for nb in notebooks(only):
        out = nb if in_place else folder / "notebooks" / nb.name
        print(f"[{profile}] {nb.name} ...", flush=True)
        wall[nb.name] = execute(nb, profile, out)
        print(f"[{profile}] {nb.name} done in {wall[nb.name]:.1f} s", flush=True)
        timing_file.write_text(json.dumps(dict(sorted(wall.items())), indent=1))
    path = report.build(profile)
    print(f"report: {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tutorial", choices=list(profiles.PROFILES))
    parser.add_argument("--only", nargs="*", help="lesson numbers to run, e.g. 01 02")
    parser.add_argument("--in-place", action="store_true", help="write outputs into notebooks/ (tutorial profile)")
    args = parser.parse_args(argv)
    if args.in_place and args.profile != "tutorial":
        parser.error("--in-place is for the tutorial profile only: the committed outputs are tutorial outputs")
    run(args.profile, args.only, args.in_place)


if __name__ == "__main__":
    main()
