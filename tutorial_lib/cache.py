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
from typing import Callable

import pandas as pd
from torch import nn

from tutorial_lib import checkpoint, paths

# Settings that do not change what is learned.
_NOT_HASHED = {"device", "num_workers", "data_root", "download"}


def key(cfg, **extra) -> str:
    """A short hash of the configuration (and any extra settings) that produced an artifact."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED}
    blob = json.dumps({**settings, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def entry_dir(name: str, cfg, **extra) -> Path:
    return paths.results_dir(cfg.profile) / "cache" / f"{name}-{key(cfg, **extra)}"


def get_or_train(
    name: str,
    cfg,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module, Path], pd.DataFrame],
    **extra,
) -> tuple[nn.Module, pd.DataFrame]:
    """Return ``(model, history)``: loaded from the cache, or built, trained and stored.

    ``train(model, folder)`` trains in place, checkpointing into ``folder`` (so it resumes),
    and returns the per-epoch history.
    """
    folder = entry_dir(name, cfg, **extra)
    final = folder / "final.pt"
    model = build()
    if final.exists():
        state = checkpoint.load(final, model)
        return model, pd.DataFrame(state["meta"]["history"])
    folder.mkdir(parents=True, exist_ok=True)
    history = train(model, folder)
    checkpoint.save(final, model, meta={"history": history.to_dict("records"), "config": cfg.to_dict(), **extra})
    return model, history
