"""A frozen teacher's logits remembered per training image.

A frozen teacher in eval mode gives the same logits for the same image every epoch. Where
the images do not change between epochs (no augmentation), running it again on every batch
is wasted work: the KD term of joint pruning, "scratch + KD" and lesson 05's KD student
spend a third of each step on it. :class:`TeacherMemo` runs the teacher on the images it
has not seen and reads the rest back, keyed by the image's bytes, so any batch order or
batch size works. Only logits (a 2-D output) are kept; anything else passes through.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


class TeacherMemo:
    """Callable like the teacher; remembers its per-image logits (CPU tensors only)."""

    def __init__(self, teacher: nn.Module, max_images: int = 200_000):
        self.teacher = teacher.eval()
        self.max_images = max_images
        self.logits: dict[bytes, torch.Tensor] = {}
        self.hits = self.misses = 0

    @staticmethod
    def keys(x: torch.Tensor) -> list[bytes]:
        flat = x.detach().contiguous().reshape(len(x), -1).numpy()
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return self.teacher(x)
        keys = self.keys(x)
        if all(k in self.logits for k in keys):
            self.hits += len(keys)
            return torch.stack([self.logits[k] for k in keys])
        out = self.teacher(x)
        self.misses += len(keys)
        if isinstance(out, torch.Tensor) and out.dim() == 2 and len(self.logits) + len(keys) <= self.max_images:
            for k, row in zip(keys, out):
                self.logits[k] = row.clone()
        return out

    def eval(self) -> "TeacherMemo":
        return self


def remembered(teacher: nn.Module, cfg) -> nn.Module | TeacherMemo:
    """``teacher`` wrapped in a :class:`TeacherMemo` where the training images repeat exactly
    (``cfg.augment`` off, CPU); the teacher itself elsewhere."""
    if cfg.augment or str(cfg.device) != "cpu" or isinstance(teacher, TeacherMemo):
        return teacher
    return TeacherMemo(teacher)
