"""Bit-packing: a quantized model's weights as ``bits``-bit codes packed into bytes, and its size.

A 3-bit weight takes 3 bits only once it is packed: :func:`pack` writes each code's bits
one after the other into a byte stream (``numpy.packbits``), :func:`unpack` reads them back.
:func:`packed_state` is what a deployed model would store (packed codes plus each layer's
step or scales; everything left at full precision as float32), and :func:`model_bytes` the
bytes ``torch.save`` writes for it: measured, not ``params * bits / 8``.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from tutorial_lib.quant.quantizers import FULL, levels


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes in ``[0, 2**bits)`` packed ``bits`` bits each, little-endian within a code, into uint8."""
    c = codes.reshape(-1).to(torch.int64).numpy()
    if c.size and (c.min() < 0 or c.max() >= 2 ** bits):
        raise ValueError(f"codes must lie in [0, {2 ** bits}) to pack into {bits} bits")
    planes = (c[:, None] >> np.arange(bits)) & 1
    return torch.from_numpy(np.packbits(planes.astype(np.uint8).reshape(-1)))


def unpack(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The ``count`` codes :func:`pack` packed (int64)."""
    planes = np.unpackbits(packed.numpy())[: count * bits].reshape(count, bits).astype(np.int64)
    return torch.from_numpy((planes << np.arange(bits)).sum(1))


def packed_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model as a deployable state: each fake-quantized weight as packed codes plus its step
    (LSQ) or per-filter scales (binary), every other tensor (full-precision layers, biases, BN)
    as float32. Training-only state (LSQ's activation steps are kept: int inference needs them)."""
    state: dict[str, torch.Tensor] = {}
    quantized = {n: m for n, m in model.named_modules() if hasattr(m, "w_quant") and m.w_quant.bits != FULL}
    for name, module in quantized.items():
        codes, scale = module.w_quant.codes(module.weight)
        state[f"{name}.weight.codes"] = pack(codes, module.w_quant.bits)
        state[f"{name}.weight.scale"] = scale.to(torch.float32).reshape(-1)
    for key, value in model.state_dict().items():
        layer = key.rsplit(".", 1)[0]
        if (layer in quantized and key.endswith(".weight")) or key.endswith("initialized") \
                or key.endswith("w_quant.step") or "num_batches_tracked" in key:
            continue
        if key.endswith("a_quant.step") and model.get_submodule(layer).bits == FULL:
            continue
        state[key] = value.detach().to(torch.float32).contiguous()
    return state


def model_bytes(model: nn.Module) -> int:
    """Bytes of :func:`packed_state` as ``torch.save`` writes it (a full-precision model: its float32 weights)."""
    buffer = io.BytesIO()
    torch.save(packed_state(model), buffer)
    return buffer.getbuffer().nbytes


def dequantize(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights a packed state stands for (codes back to values), by layer name: what a
    deployment would run, to check against the fake-quantized model."""
    out = {}
    for key in [k for k in state if k.endswith(".weight.codes")]:
        name = key[: -len(".weight.codes")]
        module = model.get_submodule(name)
        q = module.w_quant
        codes = unpack(state[key], q.bits, module.weight.numel()).reshape(module.weight.shape)
        scale = state[f"{name}.weight.scale"]
        if q.scheme == "lsq":
            out[name] = (codes - levels(q.bits, q.signed)[0]).to(torch.float32) * scale
        else:
            out[name] = (codes * 2 - 1).to(torch.float32) * scale.reshape(-1, *[1] * (codes.dim() - 1))
    return out
