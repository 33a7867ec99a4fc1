"""Fit and evaluate, with tqdm progress and a checkpoint after every epoch.

``fit`` resumes from the last checkpoint in ``checkpoint_dir`` when one is there, so a run
killed mid-training continues where it stopped (model, optimizer, scheduler, RNG and
data-order states are all restored).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from tutorial_lib import checkpoint, data, distributed, kd, precision as amp, repro
from tutorial_lib.recipes import Run, Schedule

Regularizer = Callable[[nn.Module, torch.Tensor, object, object], dict[str, torch.Tensor]]


class Task:
    """What ``fit`` trains for: how a batch becomes (input, target), the task loss, and the
    test metrics logged per epoch. Classification is the default; lesson 03's stereo depth
    task (``tutorial_lib.depth.task``) is another, so both share one loop (checkpoints,
    resume, regularizers such as the mask term)."""

    logged: tuple[str, ...] = ()
    # Layout of the model and its inputs during training: channels-last runs the CPU's oneDNN
    # convolutions without reordering (about 1.3x faster for the tutorial VGG, bench.train).
    memory_format: torch.memory_format = torch.contiguous_format

    def split(self, batch, device: str) -> tuple[torch.Tensor, object]:
        raise NotImplementedError

    def loss(self, outputs, target) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: DataLoader, device: str = "cpu") -> dict[str, float]:
        raise NotImplementedError

    def distill(self, outputs, teacher_outputs, temperature: float = 4.0) -> torch.Tensor:
        """The knowledge-distillation term between the student's and a frozen teacher's outputs
        on the same batch: what "KD" means for this task (``temperature``: where it has one)."""
        raise NotImplementedError(f"{type(self).__name__} defines no distillation term")


class Classification(Task):
    """Cross-entropy on (image, label) batches; test top-1 accuracy."""

    logged = ("accuracy",)
    memory_format = torch.channels_last

    def split(self, batch, device: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        return x.to(device).contiguous(memory_format=self.memory_format), y.to(device)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, target)

    def evaluate(self, model: nn.Module, loader: DataLoader, device: str = "cpu") -> dict[str, float]:
        return evaluate(model, loader, device)

    def distill(self, outputs: torch.Tensor, teacher_outputs: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
        """Hinton KD on the class logits (``kd.kd_loss``)."""
        return kd.kd_loss(outputs, teacher_outputs, temperature)


CLASSIFICATION = Classification()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: str = "cpu") -> dict[str, float]:
    """Top-1 accuracy (%), mean cross-entropy, and the counts they come from."""
    model.eval()
    correct, total, loss = 0, 0, 0.0
    for batch in loader:
        x, y = CLASSIFICATION.split(batch, device)
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        total += y.numel()
    return {"accuracy": 100.0 * correct / max(total, 1), "loss": loss / max(total, 1),
            "correct": correct, "total": total}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: DataLoader, device: str = "cpu") -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on ``loader`` (no gradient
    step, no weight change): after channels are switched off, the statistics the layers
    downstream collected during training describe inputs that no longer occur."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the whole pass
    model.train()
    for batch in loader:
        model(CLASSIFICATION.split(batch, device)[0])
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    return model.eval()


def stretched(schedule: Schedule, epochs: int) -> Schedule:
    """``schedule`` stretched to ``epochs``: its lr milestones scaled by ``epochs /
    schedule.epochs`` (those that would fall at or after the end dropped)."""
    scale = epochs / max(schedule.epochs, 1)
    milestones = tuple(sorted({max(1, round(m * scale)) for m in schedule.milestones if round(m * scale) < epochs}))
    return schedule.replace(epochs=epochs, milestones=milestones)


def sgd(params, schedule: Schedule, lr: float | None = None) -> torch.optim.Optimizer:
    """SGD with the schedule's momentum and weight decay."""
    return torch.optim.SGD(params, lr=lr or schedule.lr, momentum=schedule.momentum,
                           weight_decay=schedule.weight_decay)


def fit(
    model: nn.Module,
    bundle: data.DataBundle,
    schedule: Schedule,
    run: Run,
    epochs: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    regularizer: Regularizer | None = None,
    on_epoch_end: Callable[[nn.Module], dict] | None = None,
    checkpoint_dir: str | Path | None = None,
    desc: str = "train",
    task_weight: float = 1.0,
    task: Task = CLASSIFICATION,
    evaluate_each_epoch: bool = True,
) -> pd.DataFrame:
    """Train ``model`` on ``task`` (cross-entropy by default) + ``regularizer`` terms and
    return one row per epoch.

    ``regularizer(model, x, y, outputs)`` returns named loss terms added to the task loss
    (``task_weight`` x task loss), for example ``{"mask": lambda * sparsity}``; each is
    logged per epoch, and so are the task's test metrics (``test_<name>``): after every epoch,
    or with ``evaluate_each_epoch=False`` after the last one only (NaN before; for runs whose
    curve nobody reads, such as lesson 05's thirty-six students). ``schedule`` gives the epochs,
    the batch size and the default optimizer (SGD with a MultiStepLR at its milestones);
    ``run`` the seed, threads, device, precision and step limit.

    Under torchrun the same call trains data-parallel (``tutorial_lib.distributed``): the model
    in DDP, each process a share of every global batch, optimizer parameters outside the model
    averaged too, rank 0's BatchNorm statistics given to all after each epoch, and a checkpoint
    (written by rank 0) that resumes at any world size.
    """
    epochs = schedule.epochs if epochs is None else epochs
    device = distributed.device(run.device)
    parallel = distributed.launched()
    generator = repro.seed_everything(run.seed, repro.resolve_threads(run.threads), run.deterministic)
    model.to(device, memory_format=task.memory_format)
    optimizer = optimizer or sgd(model.parameters(), schedule)
    if scheduler is None:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(schedule.milestones), schedule.lr_gamma)
    train_loader, test_loader = data.loaders(bundle, schedule.batch_size, run, generator, shard=parallel)
    history: list[dict] = []
    start = steps = 0
    last = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    if last is not None and distributed.exists(last):
        state = checkpoint.load(last, model, map_location=device)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        generator.set_state(state["generator"])
        history, start, steps = state["meta"]["history"], state["meta"]["epoch"], state["meta"].get("steps", 0)
    net, outside = model, []
    if parallel:
        net = distributed.wrap(model, device)
        inside = {id(p) for p in model.parameters()}
        outside = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in inside]
    precision = amp.Precision(run.precision, device)
    for epoch in range(start, epochs):
        if run.max_steps is not None and steps >= run.max_steps:
            break  # the run's step limit counts over all its epochs, resumed ones included
        if parallel:  # the epoch's order and random draws follow from (seed, epoch, rank) alone
            train_loader.sampler.set_epoch(epoch)
            torch.manual_seed(run.seed * 100_003 + epoch * 1_009 + distributed.rank())
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        seen = 0
        quiet = {} if distributed.is_main() else {"disable": True}  # one progress bar under torchrun
        for batch in tqdm(train_loader, desc=f"{desc} {epoch + 1}/{epochs}", leave=False, mininterval=2.0, **quiet):
            x, y = task.split(batch, device)
            with precision.autocast():
                outputs = net(x)
                terms = {"task": task_weight * task.loss(outputs, y)}
                if regularizer is not None:
                    terms.update(regularizer(model, x, y, outputs))
                loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            precision.backward(loss)
            distributed.average_gradients(outside)
            precision.step(optimizer)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item() * len(x)
            seen += len(x)
            steps += 1
            if run.max_steps is not None and steps >= run.max_steps:
                break
        if parallel:
            sums, seen = distributed.total(sums), int(distributed.total({"n": seen})["n"])
            distributed.sync_buffers(model)
        scheduler.step()
        last_epoch = epoch + 1 == epochs or (run.max_steps is not None and steps >= run.max_steps)
        scores = task.evaluate(model, test_loader, device) if evaluate_each_epoch or last_epoch \
            else {k: float("nan") for k in task.logged}
        row = {"epoch": epoch + 1, **{f"loss_{k}": v / max(seen, 1) for k, v in sums.items()},
               **{f"test_{k}": scores[k] for k in task.logged},
               "epoch_seconds": time.perf_counter() - t0}
        if on_epoch_end is not None:
            row.update(on_epoch_end(model))
        history.append(row)
        if last is not None:
            checkpoint.save(
                last, model,
                state={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "rng": torch.get_rng_state(), "generator": generator.get_state()},
                meta={"epoch": epoch + 1, "steps": steps, "history": history, "schedule": dataclasses.asdict(schedule),
                      "run": dataclasses.asdict(run)},
            )
    return pd.DataFrame(history)
