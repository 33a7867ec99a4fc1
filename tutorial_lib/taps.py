"""Feature taps: the outputs of named modules of any model, caught by forward hooks.

No special model class is needed: name the modules (``dict(model.named_modules())``) whose
outputs a loss compares, and ``Taps`` records them on every forward pass.
"""

from __future__ import annotations

import torch
from torch import nn


class Taps:
    """Record the outputs of ``names`` (module names of ``model``) on each forward pass.

    Use as a context manager, or call :meth:`remove` when done. ``taps[name]`` is the
    latest output of that module.
    """

    def __init__(self, model: nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            known = [n for n in modules if n]
            raise KeyError(f"no module named {missing} in {type(model).__name__}; modules that exist: {known}")
        self.names = list(names)
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):
        def record(module, inputs, output):
            # a clone: an in-place ReLU after the tapped module must not change what we saw
            self.outputs[name] = output.clone() if isinstance(output, torch.Tensor) else output

        return record

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.outputs[name]

    def features(self) -> list[torch.Tensor]:
        """The recorded outputs in the order the names were given."""
        return [self.outputs[n] for n in self.names]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "Taps":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def stage_ends(model: nn.Module) -> list[str]:
    """Names of the modules whose outputs end each stage of a VGG: the activation just before
    every max-pool (the places attention transfer and FSP compare)."""
    names = [n for n, _ in model.named_modules()]
    modules = dict(model.named_modules())
    ends = []
    for i, name in enumerate(names):
        if isinstance(modules[name], nn.MaxPool2d) and i > 0:
            ends.append(names[i - 1])
    if not ends:
        raise ValueError(f"{type(model).__name__} has no max-pool: name the stage ends yourself")
    return ends
