"""Artifacts computed once per configuration and reused: a trained baseline is trained by
the first lesson that needs it and loaded by every later one.

An entry lives in ``results/<profile>/cache/<name>-<hash>/``, where the hash covers the
recipes that make it (their keyed knobs: not the device or the data loader's workers) and the code
that makes it: the source of the modules named as its producers and of every library module
they import, directly or not (:func:`code_version`; the shipped datasets are made by code in
``tutorial_lib.data``, so they are covered too). A fix to, say, the stereo sampler retrains
what depends on it, and nothing else. Training writes per-epoch checkpoints into the same
folder, so an interrupted run resumes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Callable, Iterable, Sequence

import grimp
import pandas as pd
from torch import nn

from tutorial_lib import checkpoint, distributed, paths

BASELINE = ("baseline",)  # the recipe of the baseline every lesson shares
BASELINE_CODE = ("tutorial_lib.train",)  # the trainer, the models and the datasets it imports


@functools.lru_cache(maxsize=1)
def _import_graph() -> grimp.ImportGraph:
    return grimp.build_graph("tutorial_lib", cache_dir=None)  # 10 ms, and no cache folder left behind


def code_closure(producers: Sequence[str]) -> list[str]:
    """The library modules an artifact's producers are made of: themselves and every module
    of ``tutorial_lib`` they import, directly or not."""
    graph = _import_graph()
    names = set(producers)
    for module in producers:
        if module not in graph.modules:
            raise ValueError(f"{module!r} is not a module of tutorial_lib")
        names |= graph.find_upstream_modules(module)
    return sorted(names)


@functools.lru_cache(maxsize=None)
def code_version(producers: tuple[str, ...]) -> str:
    """A short hash of the source of :func:`code_closure` (each module's name and text)."""
    digest = hashlib.sha256()
    for name in code_closure(producers):
        digest.update(name.encode() + b"\0" + Path(importlib.util.find_spec(name).origin).read_bytes())
    return digest.hexdigest()[:12]


def key(cfg, recipes: Iterable[str], code: Sequence[str], **extra) -> str:
    """A short hash of the ``recipes`` of ``cfg`` that produced an artifact (by attribute,
    e.g. ``("baseline", "joint")``; the run's seed, threads and step limit always count), any
    extra settings, and the code that produced it (:func:`code_version` of the ``code``
    modules); other recipes and code outside the closure do not invalidate it."""
    settings = {name: getattr(cfg, name).keyed() for name in ("run", *recipes)}
    blob = json.dumps({**settings, **extra, "_code": code_version(tuple(sorted(code)))}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def entry_dir(name: str, cfg, recipes: Iterable[str], code: Sequence[str], **extra) -> Path:
    return paths.results_dir(cfg.profile) / "cache" / f"{name}-{key(cfg, recipes, code, **extra)}"


def get_or_train(name: str, cfg, build: Callable[[], nn.Module], train: Callable[[nn.Module, Path], pd.DataFrame],
                 recipes: Iterable[str], code: Sequence[str], **extra) -> tuple[nn.Module, pd.DataFrame]:
    """Return ``(model, history)``: loaded from the cache, or built, trained and stored.

    ``train(model, folder)`` trains in place, checkpointing into ``folder`` (so it resumes),
    and returns the per-epoch history. ``recipes`` names the recipes the result depends on,
    ``code`` the modules that produce it (see :func:`code_version`).
    """
    folder = entry_dir(name, cfg, recipes, code, **extra)
    final = folder / "final.pt"
    model = build()
    if distributed.exists(final):
        state = checkpoint.load(final, model)
        return model, pd.DataFrame(state["meta"]["history"])
    if distributed.is_main():
        folder.mkdir(parents=True, exist_ok=True)
    history = train(model, folder)
    checkpoint.save(final, model, meta={"history": history.to_dict("records"), "config": cfg.to_dict(), **extra})
    return model, history


def baseline(cfg, bundle) -> tuple[nn.Module, pd.DataFrame]:
    """The profile's trained baseline, shared by every lesson: trained by the first that asks."""
    from tutorial_lib import models, train

    return get_or_train("baseline", cfg, build=lambda: models.build(cfg, bundle.num_classes),
                        train=lambda model, folder: train.fit(model, bundle, cfg.baseline.schedule, cfg.run,
                                                              checkpoint_dir=folder, desc="baseline"),
                        recipes=BASELINE, code=BASELINE_CODE)


def store(name: str, cfg, recipes: Iterable[str], code: Sequence[str], model: nn.Module, **meta) -> Path:
    """Keep a finished model (one with ``spec()``) for later lessons, keyed like ``get_or_train``."""
    return checkpoint.save(entry_dir(name, cfg, recipes, code) / "final.pt", model,
                           meta={"config": cfg.to_dict(), **meta})


def get_or_make(name: str, cfg, recipes: Iterable[str], code: Sequence[str], make: Callable[[], nn.Module]) -> nn.Module:
    """A stored model rebuilt from its spec, or ``make()``'s result, stored for next time.

    For artifacts whose architecture is only known once they exist (a pruned model)."""
    from tutorial_lib import models

    final = entry_dir(name, cfg, recipes, code) / "final.pt"
    if distributed.exists(final):
        model = models.from_spec(checkpoint.read_meta(final)["spec"])
        checkpoint.load(final, model)
        return model
    model = make()
    store(name, cfg, recipes, code, model)
    return model
