"""Quantization-aware training (QAT): a trained model, fake-quantized at some bits, fine-tuned a
few steps so that its full-precision weights settle where their rounded values work.

One short schedule for every point of lesson 06 (``quant_steps`` SGD steps at ``quant_lr``),
through ``train.fit`` like every other run of the package, so that points differ only in
their bits.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn

from tutorial_lib import data, train
from tutorial_lib.quant.quantizers import quantize
from tutorial_lib.recipes import Schedule


def quantized_copy(model: nn.Module, w_bits: int | Sequence[int], a_bits: int | Sequence[int] | None = None,
                   keep_first_last: bool = True, binary: str = "xnor") -> nn.Module:
    """A fake-quantized copy of ``model`` (``quantizers.quantize``); ``model`` is left as it is."""
    return quantize(copy.deepcopy(model), w_bits, a_bits, keep_first_last, binary)


def baked(model: nn.Module) -> nn.Module:
    """A plain copy of a fake-quantized model: each layer's weights replaced by their quantized
    values, its quantizers dropped (what int8 conversion starts from after QAT)."""
    out = copy.deepcopy(model)
    for name, layer in list(out.named_modules()):
        if hasattr(layer, "w_quant"):
            plain = (nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                               layer.dilation, layer.groups, layer.bias is not None)
                     if isinstance(layer, nn.Conv2d) else nn.Linear(layer.in_features, layer.out_features,
                                                                    layer.bias is not None))
            with torch.no_grad():
                plain.weight.copy_(layer.w_quant(layer.weight))
                if layer.bias is not None:
                    plain.bias.copy_(layer.bias)
            parent, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, child, plain)
    return out


def finetune(model: nn.Module, bundle: data.DataBundle, run, steps: int, lr: float, batch_size: int = 64,
             weight_decay: float = 5e-4, desc: str = "qat") -> float:
    """``steps`` SGD steps (momentum 0.9, constant ``lr``) on ``bundle.train``, seeded by
    ``run.seed``; returns the top-1 (%) on ``bundle.test`` after them (no step: as it is)."""
    if steps == 0:
        return train.evaluate(model, data.loaders(bundle, batch_size, run)[1], run.device)["accuracy"]
    per_epoch = math.ceil(len(bundle.train) / batch_size)
    schedule = Schedule(epochs=math.ceil(steps / per_epoch), batch_size=batch_size, lr=lr,
                        weight_decay=weight_decay)
    history = train.fit(model, bundle, schedule, run.replace(max_steps=steps), evaluate_each_epoch=False, desc=desc)
    return float(history["test_accuracy"].iloc[-1])


def train_at(model: nn.Module, bundle: data.DataBundle, run, w_bits: int | Sequence[int],
             a_bits: int | Sequence[int] | None, steps: int, lr: float, keep_first_last: bool = True,
             binary: str = "xnor") -> tuple[nn.Module, float]:
    """QAT of a copy of ``model`` at these bits; returns the quantized model and its top-1 (%)."""
    q = quantized_copy(model, w_bits, a_bits, keep_first_last, binary)
    return q, finetune(q, bundle, run, steps, lr, desc=f"qat w{w_bits if isinstance(w_bits, int) else 'mixed'}")
