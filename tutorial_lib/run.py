"""Run every lesson notebook with papermill at one profile, then build REPORT.md.

    python -m tutorial_lib.run --profile tutorial             # what `make tables` does
    python -m tutorial_lib.run --profile tutorial --in-place  # refresh the committed outputs
    python -m tutorial_lib.run --seed 1 --results results/seeds/seed1   # the lessons with another seed
    python -m tutorial_lib.run --only 02 -p prune_lambda 0.02          # one lesson, one parameter
    python -m tutorial_lib.run --profile paper --parameters             # every knob, by recipe
    torchrun --standalone --nproc-per-node 4 -m tutorial_lib.run --profile paper   # data parallel

Executed notebooks go to ``results/<profile>/notebooks/``; wall times to ``timings.json``.
Every parameter is checked against each notebook's parameters cell, and every value against
its recipe, before the first one starts (``tutorial_lib.parameters``,
``tutorial_lib.recipes``). Progress bars are switched off (``TQDM_DISABLE``):
an executed notebook keeps its outputs, and a stored progress bar is noise in them.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from tutorial_lib import distributed, parameters, paths, profiles, report, reproduce


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The lesson notebooks in order (``NN_name.ipynb``), optionally only those whose number is given."""
    found = sorted((paths.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [nb for nb in found if not only or nb.name[:2] in only]


def execute(notebook: Path, profile: str, output: Path, parameters: dict | None = None) -> float:
    """Execute one notebook with papermill; return its wall time in seconds."""
    import papermill as pm

    params = {} if profile == "tutorial" and not parameters else {"profile": profile, **(parameters or {})}
    output.parent.mkdir(parents=True, exist_ok=True)
    os.environ["TQDM_DISABLE"] = "1"  # inherited by the kernel
    start = time.perf_counter()
    pm.execute_notebook(str(notebook), str(output), parameters=params, cwd=str(notebook.parent),
                        kernel_name="python3", progress_bar=False)
    return time.perf_counter() - start


def parse_value(text: str):
    """A ``-p NAME VALUE`` value as papermill's ``-y``/``-p`` would read it: a Python literal
    (number, None, True, list) where it parses as one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run(profile: str, only: list[str] | None = None, in_place: bool = False, params: dict | None = None) -> Path:
    """Execute the lessons (all, or ``only``) at ``profile`` and build the report.

    ``params`` go to every notebook that declares them; a name that no selected notebook
    declares, a bad value of a knob, or a bad profile is rejected before any notebook starts.
    """
    params = dict(params or {})
    selected = notebooks(only)
    declared = parameters.check_notebooks(selected, params)
    profiles.resolve(profile, **{k: v for k, v in params.items() if k in profiles.KNOBS})
    folder = paths.results_dir(profile)
    timing_file = folder / "timings.json"
    wall = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    wall = {name: t for name, t in wall.items() if name in {nb.name for nb in notebooks()}}  # drop removed lessons
    main = distributed.is_main()
    scratch = None if main else Path(tempfile.mkdtemp(prefix=f"tutorial-rank{distributed.rank()}-"))
    for i, nb in enumerate(selected):
        out = (nb if in_place else folder / "notebooks" / nb.name) if main else scratch / nb.name
        mine = {k: v for k, v in params.items() if k in declared[nb.name]}
        if distributed.launched():  # each kernel joins its own process group (tutorial_lib.distributed)
            os.environ[distributed.GROUP_ENV] = f"notebook{i}-{nb.stem}"
        if main:
            print(f"[{profile}] {nb.name} {mine or ''}...", flush=True)
        wall[nb.name] = execute(nb, profile, out, mine)
        if main:
            print(f"[{profile}] {nb.name} done in {wall[nb.name]:.1f} s", flush=True)
            timing_file.write_text(json.dumps(dict(sorted(wall.items())), indent=1))
    if not main:  # under torchrun, the other ranks' notebooks are copies of rank 0's: dropped
        shutil.rmtree(scratch, ignore_errors=True)
        return folder
    if in_place:
        print(f"{len(reproduce.freeze())} tables copied to {reproduce.committed_dir()} (the committed figures)")
    path = report.build(profile)
    print(f"report: {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tutorial", choices=list(profiles.PROFILES))
    parser.add_argument("--only", nargs="*", help="lesson numbers to run, e.g. 01 02")
    parser.add_argument("--in-place", action="store_true", help="write outputs into notebooks/ (tutorial profile)")
    parser.add_argument("--seed", type=int, default=None, help="the seed of every lesson (default: the profile's)")
    parser.add_argument("--results", default=None, help="results folder (default: $TUTORIAL_RESULTS or results/)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a notebook parameter, as papermill's -p (repeatable)")
    parser.add_argument("--parameters", action="store_true", help="print the profile's knobs, by recipe, and stop")
    args = parser.parse_args(argv)
    if args.parameters:
        print(profiles.describe(args.profile))
        return
    if args.in_place and (args.profile != "tutorial" or args.seed is not None or args.parameter):
        parser.error("--in-place is for the tutorial profile with its defaults only: the committed outputs are those")
    if args.results:
        os.environ["TUTORIAL_RESULTS"] = str(Path(args.results).resolve())
    params = {name: parse_value(value) for name, value in args.parameter}
    if args.seed is not None:
        params["seed"] = args.seed
    try:
        run(args.profile, args.only, args.in_place, params)
    except ValueError as e:  # an unknown name or a bad value, before any notebook started
        parser.error(str(e))


if __name__ == "__main__":
    main()
