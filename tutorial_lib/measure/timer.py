"""The one latency timer every lesson and ``bench`` use: ``torch.utils.benchmark`` with the
thread count fixed, warm-up calls first, the C allocator warmed once, the median (and IQR)
of timed blocks reported with the conditions they were taken under; and :func:`in_turn`,
which interleaves several timers in rounds so that a slow spell of a shared machine falls
on all of them rather than on one."""

from __future__ import annotations

import copy
import platform
import statistics
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils import benchmark

from tutorial_lib import distributed


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
    torch.empty(_MMAP_THRESHOLD_MAX - 2 * 4096, dtype=torch.uint8)  # allocated and freed at once


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


def platform_name(device: str = "cpu", threads: int | None = None) -> str:
    """A short name of where a latency was measured, e.g. ``torch-cpu-2t (x86_64)``."""
    if device.startswith("cuda"):
        return f"torch-cuda ({torch.cuda.get_device_name(device)})"
    threads = threads or torch.get_num_threads()
    return f"torch-cpu-{threads}t ({platform.machine()})"


def in_timing_layout(model: nn.Module) -> nn.Module:
    """``model`` itself when its weights are in the default (contiguous, NCHW) memory format,
    else a copy converted to it. Training leaves a model channels-last (``train.Classification``),
    and on this CPU a channels-last VGG ran 14% faster than the same weights in NCHW: timed
    as they come, trained models and freshly built ones (the latency table's layers, its
    reference models) would be measured in two layouts, and the table would overestimate every
    trained model by that much. Every latency of the package is taken in one layout."""
    if all(p.dim() != 4 or p.is_contiguous() for p in model.parameters()):
        return model
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


@torch.no_grad()
def measure_latency(model: nn.Module, input_shape: tuple[int, ...], threads: int = 1, min_run_time: float = 0.5,
                    device: str = "cpu", as_is: bool = False) -> Latency:
    """Median forward latency (ms) of ``model`` in eval mode over repeated timed blocks.

    The allocator is warmed (:func:`warm_allocator`), then ``torch.utils.benchmark.Timer``
    warms up, sets the thread count and reports the median and inter-quartile range of the
    measured blocks. The model is timed in NCHW layout (:func:`in_timing_layout`), unless
    ``as_is`` (a runtime that chose its own layout, ``measure.runtimes``). Under torchrun,
    rank 0 alone times (the other processes would load the cores it times) and every process
    gets its figure, so decisions taken from it agree.
    """
    return distributed.on_main(lambda: _measure(model, input_shape, threads, min_run_time, device, as_is))


def _measure(model: nn.Module, input_shape: tuple[int, ...], threads: int, min_run_time: float, device: str,
             as_is: bool) -> Latency:
    warm_allocator()
    model = (model if as_is else in_timing_layout(model)).to(device).eval()
    x = torch.randn(input_shape, device=device)
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    timer.timeit(3)  # warm-up: first calls allocate and pick kernels
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Latency(median_ms=m.median * 1e3, iqr_ms=m.iqr * 1e3, repeats=len(m.times), batch_size=input_shape[0],
                   threads=threads, device=device, platform=platform_name(device, threads))


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
