"""Inference runtimes a CPU latency can be measured under, looked up by name.

A speedup measured in eager PyTorch could be an artefact of its per-operator overhead, which a
deployment runtime removes. Each runtime here turns a model into the callable that runtime
would run, for one input shape, and computes the same outputs:

- ``eager``: the model as it is;
- ``channels_last``: weights and input in NHWC order (the input is converted inside the
  timed call, since a camera gives NCHW);
- ``inductor``: ``torch.compile`` (generated C++ for the elementwise work; the convs stay
  ATen's kernels);
- ``inductor_frozen``: the same with inductor's ``freezing`` (weights folded in as constants
  and pre-packed for oneDNN, as a deployment build would); it applies without autograd, as timing runs.

The compiled runtimes compile at :func:`prepare` (seconds to tens of seconds on two cores),
so no timed call does. (TorchScript, deprecated since torch 2.9, is left out.)

:func:`speedups` times several models under each runtime, the first model being the reference.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import pandas as pd
import torch
from torch import nn

from tutorial_lib.measure import platforms


class ChannelsLast(nn.Module):
    """``model`` with NHWC weights, converting its NCHW input to NHWC first."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor):
        return self.model(x.contiguous(memory_format=torch.channels_last))


def _compiled(options: dict | None = None) -> Callable[[nn.Module, torch.Tensor], nn.Module]:
    @torch.no_grad()
    def build(model: nn.Module, example: torch.Tensor) -> nn.Module:
        compiled = torch.compile(model, options=options)
        compiled(example)  # compiles now, so that no timed call does
        return compiled
    return build


RUNTIMES: dict[str, Callable[[nn.Module, torch.Tensor], nn.Module]] = {
    "eager": lambda model, example: model, "channels_last": lambda model, example: ChannelsLast(model),
    "inductor": _compiled(), "inductor_frozen": _compiled({"freezing": True}),
}


def _check(names: list[str]) -> None:
    unknown = [r for r in names if r not in RUNTIMES]
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}; choose from {', '.join(RUNTIMES)}")


def prepare(model: nn.Module, runtime: str, input_shape: tuple[int, ...]) -> nn.Module:
    """A CPU copy of ``model`` (eval mode, NCHW weights as a built or loaded model has them:
    training leaves them channels-last) as ``runtime`` runs it for inputs of ``input_shape``;
    ``ValueError`` naming the runtimes for an unknown name."""
    _check([runtime])
    model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    return RUNTIMES[runtime](model, torch.zeros(input_shape))


def speedups(models: dict[str, nn.Module], input_shape: tuple[int, ...], runtimes: Iterable[str] | None = None,
             threads: Iterable[int] | None = None, rounds: int = 3, min_run_time: float = 0.3) -> pd.DataFrame:
    """Batch latency (ms) of every model under every runtime and CPU thread count (default: 1
    and all), and each model's speedup over the first model under the same runtime and threads:
    one row per runtime and threads, its models timed in turn ``rounds`` times (``platforms.measure_in_turn``)."""
    runtimes = list(RUNTIMES) if runtimes is None else list(runtimes)
    _check(runtimes)
    threads = sorted({1, platforms.all_threads()}) if threads is None else list(threads)
    reference = next(iter(models))
    rows = []
    previous = torch.get_num_threads()
    try:
        for runtime in runtimes:
            for n in threads:
                # compiled models guard on the thread count: compile at the one they are timed with,
                # from a fresh cache so that the models of a row never reach the recompile limit
                torch.set_num_threads(n)
                torch._dynamo.reset()
                prepared = {name: prepare(m, runtime, input_shape) for name, m in models.items()}
                cpu = platforms.Platform(f"torch-cpu-{n}t", "cpu", n, f"{runtime}, CPU, {n} threads")
                ms = platforms.measure_in_turn(prepared, cpu, input_shape, rounds, min_run_time, as_is=True)
                rows.append({"runtime": runtime, "threads": n,
                             **{f"{name} (ms)": round(v, 3) for name, v in ms.items()},
                             **{f"{name} speedup (x)": round(ms[reference] / v, 2)
                                for name, v in ms.items() if name != reference}})
    finally:
        torch.set_num_threads(previous)
    return pd.DataFrame(rows)
