"""Compress a model by a recipe, outside Jupyter::

    python -m tutorial_lib.compress prune-distill-quantize            # a shipped recipe, tutorial profile
    python -m tutorial_lib.compress my_recipe.yaml --model my_vgg.pt --out results/mine
    python -m tutorial_lib.compress budget-bytes --profile smoke       # budget mode, seconds
    python -m tutorial_lib.compress --list                             # the shipped recipes

The model is the profile's baseline (trained first if the shared cache lacks it) or ``--model``:
a whole ``nn.Module`` saved with ``torch.save(model, path)`` whose class has ``spec()`` (pruning
rebuilds the packed model from it, like ``models.vgg.VGG``). The data are the profile's dataset.

The result folder holds each stage's model (``stages/``, checkpoints a killed run resumes from:
run the same command again), ``table.csv``/``table.md`` (what each stage left, and the final
model measured), ``figure.png``, and the final model exported with ``torch.export`` as
``model.pt2`` beside ``predict.py``, which runs it with torch alone. Lesson 07 calls
:func:`compress` too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn

from tutorial_lib import cache, data, distributed, paths, plots, profiles, tables
from tutorial_lib.compress import budget, experiment, export, pipeline, recipe
from tutorial_lib.run import parse_value


@dataclass
class Report:
    """What :func:`compress` wrote and measured."""

    folder: Path
    table: pd.DataFrame
    result: pipeline.Stepped | None
    recipe: recipe.Pipeline
    candidates: pd.DataFrame | None = None  # budget mode's


def resolve_recipe(text: str) -> recipe.Pipeline:
    """A recipe from a file path, or a shipped recipe by name."""
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return recipe.load(path)
    names = sorted(p.stem for p in recipe.shipped_dir().glob("*.yaml"))
    if text not in names:
        raise ValueError(f"no recipe file {text!r} and no shipped recipe of that name; shipped: {', '.join(names)}")
    return recipe.shipped(text)


def load_model(path: str | Path) -> nn.Module:
    """A whole model saved with ``torch.save(model, path)``; a clear error for anything else."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: save one with torch.save(model, {str(path)!r})")
    try:
        model = torch.load(path, weights_only=False, map_location="cpu")
    except Exception as err:  # not a torch file at all
        raise ValueError(f"{path} is not a file torch.load can read ({err}); expected torch.save(model, path) "
                         "of a whole nn.Module") from None
    if not isinstance(model, nn.Module):
        what = "a state dict" if isinstance(model, dict) else type(model).__name__
        raise ValueError(f"{path} holds {what}, expected a whole nn.Module saved with torch.save(model, path) "
                         "(a state dict has no architecture to prune)")
    pipeline.check_input_model(model)
    return model


def _write(df: pd.DataFrame, stem: Path) -> None:
    df.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(tables.to_markdown(df) + "\n")


def compress(pipe: recipe.Pipeline, model: nn.Module, bundle: data.DataBundle, cfg, out: str | Path,
             progress: Callable[[str], None] = print, from_baseline: bool = False) -> Report:
    """Run ``pipe`` (stages, or a budget-mode target) on ``model``, keeping every stage under
    ``out/stages`` (a second call resumes or reloads), then write the table, the figure and the
    exported final model into ``out``. Under torchrun every process trains and rank 0 writes."""
    out = Path(out)
    main = distributed.is_main()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(json.dumps(pipe.to_dict(), indent=1))
    start = pipeline.evaluate(model, bundle, cfg)
    candidates = None
    if pipe.target is not None:
        outcome = budget.run(pipe, model, bundle, cfg, out / "stages", progress, from_baseline)
        candidates, result, ran = outcome.candidates, outcome.chosen, outcome.recipe
        if main:
            _write(candidates, out / "candidates")
    else:
        result, ran = pipeline.run(pipe, model, bundle, cfg, out / "stages", progress, from_baseline), pipe
    if result is None:
        return Report(out, pd.DataFrame(), None, pipe, candidates)
    rows = [{"stage": "start (the model given)", "top-1 %": round(start, 2)}] + \
        experiment.stage_log(result).to_dict("records")
    final = {f"final: {k}": v for k, v in pipeline.measure(result, bundle, cfg).items() if k != "top-1 %"}
    log = pd.DataFrame([{**r, **(final if i == len(rows) - 1 else {k: "" for k in final})}
                        for i, r in enumerate(rows)])
    if main:
        _write(log, out / "table")
        plots.stages(log, f"{ran.name} on {bundle.name}").savefig(out / "figure.png", dpi=110)
        example = torch.stack([bundle.test[i][0] for i in range(2)])
        export.save(pipeline.deployable(result), out / "model.pt2", example)
        shutil.copy(export.PREDICT, out / "predict.py")
    return Report(out, log, result, ran, candidates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.compress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", help="a recipe file (YAML) or the name of a shipped recipe")
    parser.add_argument("--profile", default="tutorial", choices=list(profiles.PROFILES))
    parser.add_argument("--seed", type=int, default=None, help="the run's seed (default: the profile's)")
    parser.add_argument("--model", default=None, help="torch.save(model) file (default: the profile's baseline)")
    parser.add_argument("--out", default=None, help="result folder (default: results/<profile>/compress/<recipe>)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a profile knob, as the lessons take it (repeatable), e.g. -p quant_steps 80")
    parser.add_argument("--list", action="store_true", help="list the shipped recipes and stop")
    args = parser.parse_args(argv)
    if args.list or not args.recipe:
        for path in sorted(recipe.shipped_dir().glob("*.yaml")):
            print(f"{path.stem:24s} {recipe.load(path).describe()}")
        return 0
    try:  # every check before any work
        pipe = resolve_recipe(args.recipe)
        overrides = {name: parse_value(value) for name, value in args.parameter}
        if args.seed is not None:
            overrides["seed"] = args.seed
        cfg = profiles.resolve(args.profile, **overrides)
        model = load_model(args.model) if args.model else None
    except (ValueError, FileNotFoundError, TypeError) as err:
        parser.error(str(err))
    bundle = data.load(cfg)
    if model is None:
        model, _ = cache.baseline(cfg, bundle)
    stem = Path(args.recipe).stem
    out = Path(args.out) if args.out else paths.results_dir(cfg.profile) / "compress" / stem
    say = print if distributed.is_main() else (lambda *_: None)  # under torchrun, rank 0 speaks
    report = compress(pipe, model, bundle, cfg, out, progress=say, from_baseline=args.model is None)
    if report.candidates is not None:
        say(report.candidates.to_string(index=False))
    if report.result is None:
        say("no candidate met the target; see candidates.csv")
        return 1
    say(report.table.to_string(index=False))
    say(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
