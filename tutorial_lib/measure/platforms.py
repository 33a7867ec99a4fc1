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

from tutorial_lib.measure import timer


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


def _on(model: nn.Module, device: str) -> nn.Module:
    """``model`` itself when it already lives on ``device``, else a copy moved there."""
    current = next((p.device for p in model.parameters()), torch.device(device))  # no parameters: itself
    return model if current == torch.device(device) else copy.deepcopy(model).to(device)


def measure(model: nn.Module, platform: str | Platform, input_shape: tuple[int, ...],
            min_run_time: float = 0.2, as_is: bool = False) -> timer.Latency:
    """Median forward latency of ``model`` (eval mode) on ``platform`` for ``input_shape``.

    Uses :func:`timer.measure_latency` (allocator and call warm-up, median and IQR of timed
    blocks, batch size and threads recorded). The caller's model is not moved between devices.
    """
    p = get(platform)
    was_training = model.training
    target = _on(model, p.device)
    try:
        lat = timer.measure_latency(target, input_shape, threads=p.threads, min_run_time=min_run_time,
                                    device=p.device, as_is=as_is)
    finally:
        model.train(was_training)
    lat.platform = p.name
    return lat


def measure_in_turn(models: dict[str, nn.Module], platform: str | Platform, input_shape: tuple[int, ...],
                    rounds: int = 3, min_run_time: float = 0.2, as_is: bool = False) -> dict[str, float]:
    """Median latency (ms) of each model on ``platform``, timed in turn by :func:`measure`, ``rounds``
    times (:func:`timer.in_turn`: a slow spell of the machine falls on all of them rather than on one)."""
    return timer.in_turn({name: (lambda m=model: [measure(m, platform, input_shape, min_run_time,
                                                          as_is=as_is).median_ms])
                            for name, model in models.items()}, rounds)
