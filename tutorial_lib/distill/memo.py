"""A frozen teacher's logits (and tapped features) remembered per training image.

A frozen teacher in eval mode gives the same outputs for the same image every epoch. Where
the images do not change between epochs (no augmentation), running it again on every batch
is wasted work: the KD term of joint pruning, "scratch + KD" and lesson 05's students spend
a third of each step or more on it. :class:`TeacherMemo` runs the teacher on the images it
has not seen and reads the rest back, keyed by the image's bytes, so any batch order or
batch size works. Logits (a 2-D output) are kept, and with ``taps`` the teacher's tapped
features too (what AT, FSP and FitNet compare), up to ``max_bytes``; beyond that, or for
any other output, the teacher simply runs.

:func:`remembered` hands every run under the same frozen teacher (and the same taps) the
same memo, so lesson 05's thirty students run the teacher once per image, not once per
student. A memo is dropped as soon as the teacher's weights or buffers change (their
version counters), and at most :data:`SHARED_MEMOS` are kept.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
from torch import nn

from tutorial_lib.taps import Taps


class TeacherMemo:
    """Callable like the teacher; remembers its per-image logits and, with ``taps`` (a
    :class:`Taps` on the teacher), its per-image tapped features (CPU tensors only).
    After each call, :attr:`features` holds the batch's tapped features in ``taps`` order."""

    def __init__(self, teacher: nn.Module, taps: Taps | None = None, max_images: int = 200_000,
                 max_bytes: int = 2 * 2**30):
        self.teacher = teacher.eval()
        self.taps = taps
        self.max_images, self.max_bytes = max_images, max_bytes
        self.logits: dict[bytes, torch.Tensor] = {}
        self.tapped: dict[bytes, tuple[torch.Tensor, ...]] = {}
        self.features: list[torch.Tensor] = []
        self.hits = self.misses = self.bytes = 0

    @staticmethod
    def keys(x: torch.Tensor) -> list[bytes]:
        flat = x.detach().contiguous().reshape(len(x), -1).numpy()
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.teacher(x)
        self.features = self.taps.features() if self.taps is not None else []
        return out

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return self._run(x)
        keys = self.keys(x)
        if all(k in self.logits for k in keys):
            self.hits += len(keys)
            if self.taps is not None:
                rows = [self.tapped[k] for k in keys]
                self.features = [torch.stack([r[i] for r in rows]) for i in range(len(self.taps.names))]
            return torch.stack([self.logits[k] for k in keys])
        out = self._run(x)
        self.misses += len(keys)
        size = sum(f[0].numel() * f.element_size() for f in self.features) + out[0].numel() * out.element_size() \
            if isinstance(out, torch.Tensor) and len(out) else 0
        room = len(self.logits) + len(keys) <= self.max_images and self.bytes + size * len(keys) <= self.max_bytes
        if isinstance(out, torch.Tensor) and out.dim() == 2 and room:
            for j, k in enumerate(keys):
                self.logits[k] = out[j].clone()
                if self.taps is not None:
                    self.tapped[k] = tuple(f[j].clone() for f in self.features)
            self.bytes += size * len(keys)
        return out

    def eval(self) -> "TeacherMemo":
        return self


SHARED_MEMOS = 3  # logits alone, stage ends (AT, FitNet), ends and starts (FSP)
_shared: OrderedDict[tuple, tuple[tuple[int, ...], TeacherMemo]] = OrderedDict()


def fingerprint(model: nn.Module) -> tuple[int, ...]:
    """The version counters of ``model``'s parameters and buffers: any in-place change
    (an optimiser step, ``load_state_dict``, BN statistics in train mode) moves one."""
    return tuple(t._version for t in [*model.parameters(), *model.buffers()])


def forget() -> None:
    """Drop every shared memo (frees their memory)."""
    _shared.clear()


def remembered(teacher: nn.Module, cfg, taps: Taps | None = None) -> nn.Module | TeacherMemo:
    """``teacher`` wrapped in a :class:`TeacherMemo` (remembering ``taps`` too, if given) where
    the training images repeat exactly (``cfg.augment`` off, CPU); the teacher itself elsewhere.
    The memo is shared with earlier calls for the same unchanged teacher and tap names."""
    if cfg.augment or str(cfg.device) != "cpu" or isinstance(teacher, TeacherMemo):
        return teacher
    key = (id(teacher), tuple(taps.names) if taps is not None else ())
    current = fingerprint(teacher)
    if key in _shared and _shared[key][0] == current and _shared[key][1].teacher is teacher:
        memo = _shared[key][1]
        memo.taps = taps  # the live hooks of this run (an earlier run's are removed)
        teacher.eval()
        _shared.move_to_end(key)
        return memo
    memo = TeacherMemo(teacher, taps)
    _shared[key] = (current, memo)
    while len(_shared) > SHARED_MEMOS:
        _shared.popitem(last=False)
    return memo
