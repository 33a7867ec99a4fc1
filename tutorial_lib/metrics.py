"""What a model costs: parameters, FLOPs (torch.utils.flop_counter) and latency
(torch.utils.benchmark, median of repeats with threads and batch size fixed and reported)."""

from __future__ import annotations

import platform
import statistics
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (of a masked model, mask logits included: see ``masks.estimate``)."""
    return sum(p.numel() for p in model.parameters())


def _example(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    return torch.zeros(input_shape, device=device)


@torch.no_grad()
def _flop_counter(model: nn.Module, input_shape: tuple[int, ...]) -> FlopCounterMode:
    """Run one eval-mode forward pass under ``FlopCounterMode`` (training mode restored after)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(_example(model, input_shape))
    model.train(was_training)
    return counter


def flops_per_module(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """FLOPs (multiply and add counted separately, so 2 x MACs) per leaf module name, eval mode."""
    counter = _flop_counter(model, input_shape)
    leaves = {name for name, m in model.named_modules() if not list(m.children())}
    out: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        name = key.split(".", 1)[1] if "." in key else ""
        if name in leaves:
            out[name] = int(sum(ops.values()))
    return out


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Total FLOPs of one forward pass for ``input_shape`` (batch included)."""
    return int(_flop_counter(model, input_shape).get_total_flops())


@dataclass
class Latency:
    """A latency measurement and the conditions it was taken under."""

    median_ms: float
    iqr_ms: float
    repeats: int
    batch_size: int
    threads: int
    device: str
    platform: str

    def as_dict(self) -> dict:
        return asdict(self)


def platform_name(device: str = "cpu", threads: int | None = None) -> str:
    """A short name of where a latency was measured, e.g. ``torch-cpu-2t (x86_64)``."""
    if device.startswith("cuda"):
        return f"torch-cuda ({torch.cuda.get_device_name(device)})"
    threads = threads or torch.get_num_threads()
    return f"torch-cpu-{threads}t ({platform.machine()})"


@torch.no_grad()
def measure_latency(
    model: nn.Module, input_shape: tuple[int, ...], threads: int = 1, min_run_time: float = 0.5, device: str = "cpu",
) -> Latency:
    """Median forward latency (ms) of ``model`` in eval mode over repeated timed blocks.

    ``torch.utils.benchmark.Timer`` warms up, sets the thread count and reports the median
    and inter-quartile range of the measured blocks.
    """
    model = model.to(device).eval()
    x = torch.randn(input_shape, device=device)
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    timer.timeit(3)  # warm-up: first calls allocate and pick kernels
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Latency(
        median_ms=m.median * 1e3, iqr_ms=m.iqr * 1e3, repeats=len(m.times), batch_size=input_shape[0],
        threads=threads, device=device, platform=platform_name(device, threads),
    )


def cpu_name() -> str:
    """The CPU model name where the OS tells it, else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def in_turn(timers: dict[str, Callable[[], list[float]]], rounds: int) -> dict[str, float]:
    """Median reading of each timer: the timers are run in turn, ``rounds`` times (each call
    returns its readings), so that a slow spell of the machine falls on all of them rather
    than on one."""
    readings: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            readings[name] += timer()
    return {name: statistics.median(r) for name, r in readings.items()}
