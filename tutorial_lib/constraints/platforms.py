"""The platforms this machine can time a model on, by name.

- ``torch-cpu-1t``: eager PyTorch on the CPU with one thread;
- ``torch-cpu-<N>t``: the same with every thread (N = ``os.cpu_count()``), when N > 1;
- ``cuda``: eager PyTorch on the first GPU, only when ``torch.cuda.is_available()``.

A latency budget always names its platform: the same model can be fast on one and slow on
another, and the order of two models can change between platforms. (ONNX Runtime or
TensorRT would be further platforms; they are not dependencies of this package.)
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from torch import nn

from tutorial_lib import metrics


@dataclass(frozen=True)
class Platform:
    """Where a latency is measured: device and CPU threads."""

    name: str
    device: str
    threads: int
    description: str


def all_threads() -> int:
    """The thread count of the ``torch-cpu-<N>t`` platform."""
    return os.cpu_count() or torch.get_num_threads()


def registry() -> dict[str, Platform]:
    """Every platform available here, by name (recomputed on each call: cheap)."""
    out = {"torch-cpu-1t": Platform("torch-cpu-1t", "cpu", 1, "eager PyTorch, CPU, 1 thread")}
    n = all_threads()
    if n > 1:
        out[f"torch-cpu-{n}t"] = Platform(f"torch-cpu-{n}t", "cpu", n, f"eager PyTorch, CPU, {n} threads")
    if torch.cuda.is_available():
        out["cuda"] = Platform("cuda", "cuda", 1, f"eager PyTorch, {torch.cuda.get_device_name(0)}")
    return out


def available() -> list[str]:
    """The names :func:`measure` accepts on this machine."""
    return list(registry())


def get(platform: str | Platform) -> Platform:
    """The platform called ``platform``; ``ValueError`` listing the available ones otherwise."""
    if isinstance(platform, Platform):
        return platform
    platforms = registry()
    if platform not in platforms:
        raise ValueError(f"unknown platform {platform!r}; available on this machine: {', '.join(platforms)}")
    return platforms[platform]


# glibc's largest dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit): freeing an
# mmapped block up to this size raises the threshold to it (and the heap trim threshold to
# twice that), so later blocks below it come from the heap instead of fresh pages.
_MMAP_THRESHOLD_MAX = 32 * 2**20


def warm_allocator() -> None:
    """Put the C allocator in the state of a process that has already run a model.

    With glibc, every tensor above the *dynamic* mmap threshold (128 KiB in a fresh process)
    is mapped fresh and page-faulted on first touch; the threshold rises to the size of the
    largest such block freed so far (up to 32 MiB). So the same forward pass is up to 40%
    slower in a process that has not yet freed a large tensor than in one that has (e.g.
    after training), and a layer timed alone is slower than inside a model. Allocating and
    freeing one block just under 32 MiB raises the threshold once, for the whole process,
    to where it ends up anyway; every measurement of this package does it first. (Other
    allocators ignore it: it is then one harmless allocation.)
    """
    block = torch.empty(_MMAP_THRESHOLD_MAX - 2 * 4096, dtype=torch.uint8)
    del block


def _on(model: nn.Module, device: str) -> nn.Module:
    """``model`` itself when it already lives on ``device``, else a copy moved there."""
    try:
        current = next(model.parameters()).device
    except StopIteration:
        return model
    return model if current == torch.device(device) else copy.deepcopy(model).to(device)


def measure(model: nn.Module, platform: str | Platform, input_shape: tuple[int, ...],
            min_run_time: float = 0.2) -> metrics.Latency:
    """Median forward latency of ``model`` (eval mode) on ``platform`` for ``input_shape``.

    Uses :func:`metrics.measure_latency` (warm-up, median and IQR of timed blocks, batch size
    and threads recorded) after :func:`warm_allocator`. The caller's model is not moved
    between devices.
    """
    p = get(platform)
    warm_allocator()
    was_training = model.training
    target = _on(model, p.device)
    try:
        lat = metrics.measure_latency(target, input_shape, threads=p.threads, min_run_time=min_run_time,
                                      device=p.device)
    finally:
        model.train(was_training)
    lat.platform = p.name
    return lat


def measure_in_turn(models: dict[str, nn.Module], platform: str | Platform, input_shape: tuple[int, ...],
                    rounds: int = 3, min_run_time: float = 0.2) -> dict[str, float]:
    """Median latency (ms) of each model on ``platform``: the models are timed in turn
    (:func:`measure`), ``rounds`` times, and each keeps its median round, so that a slow spell
    of the machine falls on all of them rather than on one."""
    return metrics.in_turn({name: (lambda m=model: [measure(m, platform, input_shape, min_run_time).median_ms])
                            for name, model in models.items()}, rounds)
