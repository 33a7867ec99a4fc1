"""Training precision: bf16 or fp16 autocast on CUDA (fp16 with a gradient scaler), fp32 on
the CPU unless asked.

``auto`` (the default) is bf16 on CUDA, where tensor cores run it, and fp32 on the CPU, where
the tutorial's tables are float32 measurements that autocast would change. ``bf16`` on the CPU
is allowed when asked for; ``fp16`` is for CUDA only (it needs loss scaling, which
:class:`Precision` does there).
"""

from __future__ import annotations

import contextlib

import torch

CHOICES = ("auto", "fp32", "bf16", "fp16")


class Precision:
    """The autocast context, backward and optimizer step of one training run."""

    def __init__(self, name: str, device: str) -> None:
        if name not in CHOICES:
            raise ValueError(f"unknown precision {name!r}; valid choices: {', '.join(CHOICES)}")
        self.device_type = torch.device(device).type
        if name == "auto":
            name = "bf16" if self.device_type == "cuda" else "fp32"
        if name == "fp16" and self.device_type != "cuda":
            raise ValueError(f"precision fp16 needs CUDA (device {device!r}); use bf16 or fp32 here")
        self.name = name
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
        self.scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
