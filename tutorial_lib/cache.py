"""Artifacts computed once per configuration and reused: a trained baseline is trained by
the first lesson that needs it and loaded by every later one.

An entry lives in ``results/<profile>/cache/<name>-<hash>/``, where the hash covers every
setting that changes the result (not the device or the data loader's workers). Training
writes per-epoch checkpoints into the same folder, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
from torch import nn

from tutorial_lib import checkpoint, paths

# Bumped whenever a change to the code or the shipped data changes what an artifact would be
# (settings alone cannot tell): 2 = digits_m at 24x24 with round-up pools.
ARTIFACT_VERSION = 2


def key(cfg, fields: Iterable[str], **extra) -> str:
    """A short hash of the settings ``fields`` of ``cfg`` (and any extra settings) that
    produced an artifact, with :data:`ARTIFACT_VERSION`; settings outside ``fields`` do not
    invalidate it."""
    settings = {k: getattr(cfg, k) for k in fields}
    blob = json.dumps({**settings, **extra, "_artifact_version": ARTIFACT_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def entry_dir(name: str, cfg, fields: Iterable[str], **extra) -> Path:
    return paths.results_dir(cfg.profile) / "cache" / f"{name}-{key(cfg, fields, **extra)}"


def get_or_train(
    name: str,
    cfg,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module, Path], pd.DataFrame],
    fields: Iterable[str],
    **extra,
) -> tuple[nn.Module, pd.DataFrame]:
    """Return ``(model, history)``: loaded from the cache, or built, trained and stored.

    ``train(model, folder)`` trains in place, checkpointing into ``folder`` (so it resumes),
    and returns the per-epoch history. ``fields`` names the settings the result depends on.
    """
    folder = entry_dir(name, cfg, fields, **extra)
    final = folder / "final.pt"
    model = build()
    if final.exists():
        state = checkpoint.load(final, model)
        return model, pd.DataFrame(state["meta"]["history"])
    folder.mkdir(parents=True, exist_ok=True)
    history = train(model, folder)
    checkpoint.save(final, model, meta={"history": history.to_dict("records"), "config": cfg.to_dict(), **extra})
    return model, history


def baseline(cfg, bundle) -> tuple[nn.Module, pd.DataFrame]:
    """The profile's trained baseline, shared by every lesson: trained by the first that asks."""
    from tutorial_lib import models, profiles, train

    return get_or_train(
        "baseline", cfg, build=lambda: models.build(cfg, bundle.num_classes),
        train=lambda model, folder: train.fit(model, bundle, cfg, checkpoint_dir=folder, desc="baseline"),
        fields=profiles.BASELINE_FIELDS,
    )


def store(name: str, cfg, fields: Iterable[str], model: nn.Module, **meta) -> Path:
    """Keep a finished model (one with ``spec()``) for later lessons, keyed like ``get_or_train``."""
    return checkpoint.save(entry_dir(name, cfg, fields) / "final.pt", model, meta={"config": cfg.to_dict(), **meta})


def get_or_make(name: str, cfg, fields: Iterable[str], make: Callable[[], nn.Module]) -> nn.Module:
    """A stored model rebuilt from its spec, or ``make()``'s result, stored for next time.

    For artifacts whose architecture is only known once they exist (a pruned model)."""
    from tutorial_lib import models

    final = entry_dir(name, cfg, fields) / "final.pt"
    if final.exists():
        model = models.from_spec(checkpoint.read_meta(final)["spec"])
        checkpoint.load(final, model)
        return model
    model = make()
    store(name, cfg, fields, model)
    return model
