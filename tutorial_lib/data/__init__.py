"""Datasets by name: ``load(cfg)`` returns the train and test sets of ``cfg.dataset``.

Embedded (no network, shipped with scikit-learn / scikit-image): ``digits``, ``digits_m``.
Real (read from a data root, downloaded only when allowed): ``cifar10``, ``cifar100``,
``imagenet`` (an ImageFolder tree). ``fake`` (torchvision FakeData) serves the smoke
profile only. A table always names the dataset it was computed on: there is never a
silent fallback from one dataset to another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from tutorial_lib import distributed


class DatasetNotFoundError(FileNotFoundError):
    """A real dataset is missing; the message says where to put it and how to get it."""


@dataclass
class DataBundle:
    """A dataset's two splits plus what a model and a table need to know about it."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    image_size: int
    description: str
    in_channels: int = 3


_REGISTRY: dict[str, Callable[..., DataBundle]] = {}


def register(name: str) -> Callable:
    """Decorator: make a dataset builder available under ``name``."""

    def wrap(fn: Callable[..., DataBundle]) -> Callable[..., DataBundle]:
        _REGISTRY[name] = fn
        return fn

    return wrap


def names() -> list[str]:
    """Every dataset name ``load`` accepts."""
    return list(_REGISTRY)


def load(cfg) -> DataBundle:
    """Build ``cfg.dataset`` with the profile's limits applied (first N images of a split)."""
    if cfg.dataset not in _REGISTRY:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; valid choices: {', '.join(names())}")
    bundle = _REGISTRY[cfg.dataset](cfg)
    if cfg.train_limit is not None and cfg.train_limit < len(bundle.train):
        bundle.train = Subset(bundle.train, range(cfg.train_limit))
    if cfg.test_limit is not None and cfg.test_limit < len(bundle.test):
        bundle.test = Subset(bundle.test, range(cfg.test_limit))
    return bundle


def loaders(bundle: DataBundle, batch_size: int, run, generator: torch.Generator | None = None,
            shard: bool = False) -> tuple[DataLoader, DataLoader]:
    """Shuffled training loader (seeded by ``generator``, else ``run.seed``) and ordered test
    loader, with ``run.num_workers`` workers (kept alive between epochs) and pinned memory when
    the run is on CUDA.

    ``shard`` (``train.fit`` under torchrun): the training loader takes this process's share of
    every global batch of ``batch_size`` from a ``DistributedSampler``
    (``tutorial_lib.distributed``). Otherwise every process reads every image, so a BatchNorm
    re-estimate or an int8 calibration comes out the same on each; the test loader is never
    sharded, so every process scores the same model on the same images."""
    if generator is None:
        generator = torch.Generator().manual_seed(run.seed)
    extra = dict(num_workers=run.num_workers, persistent_workers=run.num_workers > 0,
                 pin_memory=run.device.startswith("cuda"))
    if shard and distributed.launched():
        train = DataLoader(bundle.train, batch_size=distributed.local_batch(batch_size),
                           sampler=distributed.sampler(bundle.train, run.seed), drop_last=False, **extra)
    else:
        train = DataLoader(bundle.train, batch_size=batch_size, shuffle=True, generator=generator, drop_last=False,
                           **extra)
    test = DataLoader(bundle.test, batch_size=max(batch_size, 256), shuffle=False, **extra)
    return train, test


def first_batch(bundle: DataBundle, batch_size: int, run) -> torch.Tensor:
    """The images of the first batch of the seeded training order (a quantizer's first look)."""
    return next(iter(loaders(bundle, batch_size, run)[0]))[0]


# Builders register themselves on import.
from tutorial_lib.data import digits as _digits  # noqa: E402,F401
from tutorial_lib.data import vision as _vision  # noqa: E402,F401
