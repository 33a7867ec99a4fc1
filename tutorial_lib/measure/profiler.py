"""A layer-wise profiler: where does a forward pass spend its time?

Every leaf module's forward is wrapped in ``torch.profiler.record_function("layer::<name>")``
by a forward pre-hook (enter) and a forward hook (exit); the whole forward pass is wrapped
in ``record_function("model::forward")``. ``prof.key_averages()`` then holds one entry per
layer, whose *total* CPU time is the time spent inside that layer (its operators included)
and whose *self* CPU time is what the layer spends outside any operator (Python, hooks).
The seed's "latency bounds" experiment measured per-layer times the same way.

The layer rows add up to the total row up to what runs between layers (the hooks
themselves and glue such as ``torch.flatten`` in ``forward``), reported as ``(other)``.
Memory is the net memory a layer's operators allocated (mostly its output tensor).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys

import pandas as pd
import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

LAYER_PREFIX = "layer::"
MODEL_KEY = "model::forward"
COLUMNS = ["name", "type", "calls", "self_cpu_ms", "cpu_ms", "cuda_ms", "cpu_memory_mb", "cuda_memory_mb", "share_pct"]


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what native code writes to file descriptor 2 to /dev/null for the block.

    The profiler's C++ side (kineto) logs ``profiler_start``/``profiler_stop`` lines and a
    failed GPU count straight to fd 2, past Python; in a notebook they would land in the
    cell's output. Python's own ``sys.stderr`` (warnings, tracebacks) is left as it is.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def leaf_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules without children, by qualified name, in registration order."""
    return {name: m for name, m in model.named_modules() if name and not list(m.children())}


def _attach(model: nn.Module) -> list:
    """Hooks that open a ``record_function`` range on entry of each leaf and close it on exit."""
    handles = []
    for name, module in leaf_modules(model).items():
        stack: list = []

        def pre(mod, args, _name=name, _stack=stack):
            rf = record_function(LAYER_PREFIX + _name)
            rf.__enter__()
            _stack.append(rf)

        def post(mod, args, output, _stack=stack):
            _stack.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    return handles


def _ms(us: float) -> float:
    return us / 1e3


def _empty() -> dict:
    return {"calls": 0, "self_cpu": 0.0, "cpu": 0.0, "device": 0.0, "cpu_mem": 0.0, "device_mem": 0.0}


def _aggregate(prof) -> dict[str, dict]:
    """Our ranges summed by name, as ``prof.key_averages()`` does, but over the CPU-side
    events only: with CUDA, kineto can also report a range as a GPU annotation of the same
    name, which a plain ``key_averages()`` would count as extra calls."""
    out: dict[str, dict] = {}
    for e in prof.events():
        if e.device_type != DeviceType.CPU or not (e.name.startswith(LAYER_PREFIX) or e.name == MODEL_KEY):
            continue
        a = out.setdefault(e.name, _empty())
        a["calls"] += 1
        a["self_cpu"] += e.self_cpu_time_total
        a["cpu"] += e.cpu_time_total
        a["device"] += _device(e, "time_total")
        a["cpu_mem"] += float(e.cpu_memory_usage or 0)
        a["device_mem"] += _device(e, "memory_usage")
    return out


def _device(event, what: str) -> float:
    """The event's ``device_<what>``, or ``cuda_<what>`` on older torch."""
    value = getattr(event, f"device_{what}", None)
    if value is None:  # older torch
        value = getattr(event, f"cuda_{what}", 0)
    return float(value or 0)


@torch.no_grad()
def profile_layers(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 10, device: str = "cpu",
                   threads: int | None = None, warmup: int = 2) -> pd.DataFrame:
    """Profile ``repeats`` eval-mode forward passes of ``model`` layer by layer.

    Returns one row per leaf module (``name``, ``type``, ``calls`` = times it ran in all
    repeats, ``self_cpu_ms``, ``cpu_ms`` = inclusive time, ``cuda_ms`` = device time of its
    kernels (0 on CPU), ``cpu_memory_mb``/``cuda_memory_mb`` = memory its operators
    allocated, ``share_pct`` of the total), then an ``(other)`` row (time between layers)
    and a ``(total)`` row for the whole forward pass. Times and memory are **per forward
    pass** (summed over the repeats, divided by ``repeats``). ``threads`` fixes torch's CPU
    threads for the run (restored afterwards). The model is not modified (hooks are removed;
    a copy is moved when ``device`` differs from the model's).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if torch.device(device) != next((p.device for p in model.parameters()), torch.device("cpu")):
        model = copy.deepcopy(model).to(device)
    was_training = model.training
    model.eval()
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    x = torch.randn(input_shape, device=device)
    cuda = str(device).startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    handles = []
    try:
        for _ in range(warmup):
            model(x)
        if cuda:
            torch.cuda.synchronize(device)
        handles = _attach(model)
        with native_stderr_silenced(), profile(activities=activities, profile_memory=True) as prof:
            for _ in range(repeats):
                with record_function(MODEL_KEY):
                    model(x)
            if cuda:
                torch.cuda.synchronize(device)
    finally:
        for h in handles:
            h.remove()
        torch.set_num_threads(old_threads)
        model.train(was_training)

    agg = _aggregate(prof)

    def row(name: str, kind: str, a: dict) -> dict:  # per forward pass
        return {"name": name, "type": kind, "calls": a["calls"], "self_cpu_ms": _ms(a["self_cpu"]) / repeats,
                "cpu_ms": _ms(a["cpu"]) / repeats, "cuda_ms": _ms(a["device"]) / repeats if cuda else 0.0,
                "cpu_memory_mb": a["cpu_mem"] / 2**20 / repeats,
                "cuda_memory_mb": a["device_mem"] / 2**20 / repeats if cuda else 0.0}

    # zeros for a leaf that forward() never calls
    rows = [row(name, type(m).__name__, agg.get(LAYER_PREFIX + name, _empty()))
            for name, m in leaf_modules(model).items()]
    t = agg[MODEL_KEY]
    total_row = row("(total)", type(model).__name__, t)
    df = pd.DataFrame(rows, columns=COLUMNS[:-1])
    other = {"name": "(other)", "type": "", "calls": t["calls"], "self_cpu_ms": float("nan"),
             "cpu_ms": total_row["cpu_ms"] - df["cpu_ms"].sum(), "cuda_ms": 0.0, "cpu_memory_mb": float("nan"),
             "cuda_memory_mb": float("nan")}
    df = pd.concat([df, pd.DataFrame([other, total_row])], ignore_index=True)
    df["share_pct"] = 100.0 * df["cpu_ms"] / max(total_row["cpu_ms"], 1e-12)
    return df[COLUMNS]


def by_type(table: pd.DataFrame) -> pd.DataFrame:
    """The layer rows of :func:`profile_layers` summed per module type (e.g. all Conv2d)."""
    layers = table[~table["name"].isin(["(total)", "(other)"])]
    return (layers.groupby("type", sort=False)[["calls", "cpu_ms", "cuda_ms", "share_pct"]].sum()
            .sort_values("cpu_ms", ascending=False).reset_index())
