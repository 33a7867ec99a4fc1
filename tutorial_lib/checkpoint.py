"""Checkpoints: a state dict (loaded with ``weights_only=True``) plus a JSON of what made it.

The JSON holds the model's signature (``spec``) and the run's configuration, so a
checkpoint that does not fit a model is refused with a message saying what it expected,
instead of a wall of missing-key errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from tutorial_lib import distributed


class CheckpointMismatchError(ValueError):
    """The checkpoint was made for another model (signature, layers or shapes differ)."""


def model_spec(model: nn.Module) -> dict | None:
    spec = getattr(model, "spec", None)
    return spec() if callable(spec) else None


def save(path: str | os.PathLike, model: nn.Module, state: dict | None = None, meta: dict | None = None) -> Path:
    """Write ``<path>`` (tensors: model and optional training state) and ``<path>.json`` (meta).

    Under torchrun, rank 0 writes and every process waits until it has, so none reads a
    checkpoint that is not there yet."""
    path = Path(path)
    if distributed.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"model": model.state_dict(), **(state or {})}, tmp)
        os.replace(tmp, path)  # a crash mid-write never leaves a half checkpoint behind
        info = {"spec": model_spec(model), **(meta or {})}
        path.with_suffix(".json").write_text(json.dumps(info, indent=1, default=str))
    distributed.barrier()
    return path


def read_meta(path: str | os.PathLike) -> dict:
    meta = Path(path).with_suffix(".json")
    return json.loads(meta.read_text()) if meta.exists() else {}


def _normalized(spec: dict) -> dict:
    """A saved spec with the defaults of keys added since it was written filled in."""
    from tutorial_lib import models

    try:
        return models.from_spec(spec).spec()
    except (ValueError, KeyError, TypeError):
        return spec


def load(path: str | os.PathLike, model: nn.Module, map_location: str = "cpu") -> dict:
    """Load ``path`` into ``model``; return the rest of the saved state and the meta.

    Raises :class:`CheckpointMismatchError` naming the expected signature, or the first
    layers whose names or shapes differ.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    meta = read_meta(path)
    have = model_spec(model)
    if meta.get("spec") and have and _normalized(meta["spec"]) != have:
        raise CheckpointMismatchError(
            f"checkpoint {path} was saved for {meta['spec']}, but the model is {have}; "
            "build the model from the checkpoint's signature (models.vgg.from_spec) or pick the right file"
        )
    saved = torch.load(path, map_location=map_location, weights_only=True)
    state = saved.pop("model")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"checkpoint {path} does not fit this model (saved spec: {meta.get('spec')}). "
            f"Missing in checkpoint: {missing[:5]}; not in model: {unexpected[:5]}; shape differences: {shapes[:5]}"
        )
    model.load_state_dict(state)
    return {**saved, "meta": meta}
