"""Seeding and deterministic mode: the same profile and seed give the same table."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator
import random

import numpy as np
import torch
import torch.utils.deterministic

from tutorial_lib import distributed


def seed_everything(seed: int, threads: int | None = None, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch, switch torch to deterministic kernels, fix the threads.

    The thread count is part of reproducibility: CPU reductions split work by thread, so
    a different count can change the last bits of a sum. Returns a ``torch.Generator``
    seeded with ``seed`` for data shuffling. ``deterministic=False`` (a GPU run that wants
    speed over bit-for-bit repeats) lets cuDNN benchmark and pick the fastest kernels.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # Deterministic mode also fills every new tensor's memory with NaN, to expose kernels that
    # read memory they never wrote. Ours don't: turning the fill off leaves every result
    # bit-for-bit the same (tests/test_train.py checks it) and saves about a sixth of a VGG
    # training step on the CPU (`aten::fill_` in torch.profiler).
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if threads is not None:
        torch.set_num_threads(threads)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def resolve_threads(threads: int) -> int:
    """The threads that will really be used: never more than this machine's cores, shared
    among the processes torchrun started on it."""
    return max(1, min(threads, (os.cpu_count() or 1) // distributed.local_world_size()))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw from torch's global generator seeded with ``seed``, then leave it as it was: a
    model's initial weights come from the run's seed, not from whatever earlier runs (or a
    DataLoader's shuffling) drew from the generator before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
