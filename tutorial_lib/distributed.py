"""Data-parallel training on PyTorch's own engine: ``torchrun`` starts one process per device,
``DistributedDataParallel`` keeps their models in step.

Launch any entry point with ``torchrun --standalone --nproc-per-node N -m ...`` (or
``make tables NPROC=N``). The first collective call joins the process group torchrun prepared
(gloo on the CPU, NCCL on CUDA; :func:`joined`); ``train.fit`` wraps the model in DDP and gives
each process its share of every global batch through a :class:`DistributedSampler`; only rank 0 writes
(checkpoints, tables, figures, the report). A process not started by torchrun is world size 1
and every function here does nothing, so notebooks and tests run as they always did.

Why the global batch is what a recipe's ``batch_size`` means: each of N processes takes
``batch_size / N`` images of the same shuffled order (sampler seeded per epoch), DDP averages
the gradients, and one step sees the same images as one process with the whole batch. Only
BatchNorm's batch statistics differ (each process normalises its own share).
"""

from __future__ import annotations

import datetime
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

T = TypeVar("T")

# Set by tutorial_lib.run for each notebook it executes under torchrun: the notebook's kernel is
# a new process that joins its own process group under this prefix of torchrun's store.
GROUP_ENV = "TUTORIAL_DIST_GROUP"


def launched() -> bool:
    """Whether torchrun (or another launcher that sets ``RANK``) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    return int(os.environ["RANK"]) if launched() else 0


def world_size() -> int:
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def local_world_size() -> int:
    """Processes on this machine: they share its cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if launched() else 1


def is_main() -> bool:
    """Rank 0, the one process that writes."""
    return rank() == 0


def device(requested: str) -> str:
    """The device this process trains on: ``cuda`` becomes ``cuda:<LOCAL_RANK>`` under torchrun."""
    if launched() and requested == "cuda":
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return requested


def joined() -> bool:
    """Whether this process is one of those torchrun started, joining their process group on
    first use (gloo for CPU tensors, NCCL for CUDA tensors where there is CUDA)."""
    if not launched():
        return False
    if dist.is_initialized():
        return True
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(torch.device(device("cuda")))
        backend = "cpu:gloo,cuda:nccl"
    rank_, world = rank(), world_size()
    group = os.environ.get(GROUP_ENV)
    if group:  # a notebook kernel: torchrun's store, under a prefix no earlier kernel used
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                              is_master=rank_ == 0 and not agent_store, timeout=datetime.timedelta(minutes=30))
        dist.init_process_group(backend, store=dist.PrefixStore(group, store), rank=rank_, world_size=world)
    else:
        dist.init_process_group(backend, rank=rank_, world_size=world)
    return True


def barrier() -> None:
    if joined():
        dist.barrier()


def local_batch(batch_size: int) -> int:
    """Each process's share of a global batch; the global batch must split evenly."""
    world = world_size()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not split over {world} processes: "
                         f"choose a multiple of {world} (each process takes batch_size / {world})")
    return batch_size // world


def sampler(dataset: Dataset, seed: int) -> DistributedSampler:
    """This process's share of a shuffled order that every process draws alike (call
    ``set_epoch`` each epoch; the order depends on seed and epoch, not on the world size's history)."""
    joined()
    return DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed)


def wrap(model: nn.Module, device_name: str) -> nn.Module:
    """``model`` in DistributedDataParallel (rank 0's weights and buffers broadcast to all)."""
    joined()
    ids = [torch.device(device_name).index] if device_name.startswith("cuda") else None
    # a 1x1 parameter (a mask's gates) in a channels-last model: its gradient's strides differ
    # from DDP's flat bucket, which costs a copy, not correctness; the warning says no more
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    # some parameters take no part in a step: a full-precision layer's quantizer steps (lesson
    # 06's 32-bit points), so DDP looks for them after each forward pass
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients of parameters DDP does not hold (a FitNet regressor, FSP
    connectors: trained beside the model, so they need the same all-reduce)."""
    if not joined():
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world_size()


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) everywhere: after training steps, each
    process's statistics saw only its share, and evaluation must agree across processes."""
    if joined():
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def total(values: dict[str, float]) -> dict[str, float]:
    """Sum each value over all processes (the per-epoch loss sums and image counts)."""
    if not joined() or not values:
        return values
    keys = sorted(values)
    summed = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(summed)
    return dict(zip(keys, summed.tolist()))


def exists(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists, as rank 0 sees it, for every process: a file rank 0 writes a
    moment later must not send a slower process down another path (each would then wait at a
    collective call the other never makes)."""
    return on_main(lambda: Path(path).exists())


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run by rank 0 alone, its result given to every process: a latency measured on
    one process (the others would load the cores it times) and a decision taken from it."""
    if not joined():
        return fn()
    box: list[Any] = [fn() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
