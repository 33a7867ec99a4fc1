"""Fake quantizers: the forward pass rounds to a few levels, the backward pass goes straight through.

Rounding has a zero gradient almost everywhere, like lesson 01's gate; the same
straight-through estimator (STE) fixes it: forward rounds, backward passes the gradient on
as if rounding were the identity, so the full-precision weights keep learning under the
quantized forward pass. Schemes by name (:data:`SCHEMES`):

- ``binaryconnect`` (Courbariaux et al., 2015): ``sign(W)``, the gradient cut where ``|W| > 1``;
- ``xnor`` (Rastegari et al., 2016, BWN): ``alpha * sign(W)``, ``alpha = mean |W|`` per filter,
  so the binary filter keeps its full-precision one's scale;
- ``lsq`` (Esser et al., 2020, Learned Step Size Quantization): ``k``-bit uniform levels
  ``round(clip(v / s, -Qn, Qp)) * s`` with a learned step ``s`` per layer, for weights (signed)
  and for activations (unsigned: they follow a ReLU).

:func:`quantize` swaps every convolution and the classifier for a :class:`QuantConv2d` /
:class:`QuantLinear` at the bits of an allocation (one per layer, or one for all); the first
and the last layer stay at full precision unless asked, as in the papers.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

FULL = 32  # "bits" of a layer left at full precision
BITS = (1, 2, 3, 4, 5, 6, 7, 8, FULL)  # the bit-widths a layer may take


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward (the straight-through estimator)."""
    return x + (x.round() - x).detach()


class BinaryConnectSign(torch.autograd.Function):
    """``sign(w)`` forward (``+1`` at 0); backward ``dL/dw = dL/dw_b * 1[|w| <= 1]`` (BinaryConnect's
    STE: the gradient is cut where the real weight is already beyond the binary value)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


def binaryconnect(w: torch.Tensor) -> torch.Tensor:
    """BinaryConnect's binary weights, ``sign(w)`` in {-1, +1}."""
    return BinaryConnectSign.apply(w)


def xnor_scale(w: torch.Tensor) -> torch.Tensor:
    """XNOR-Net's per-filter scale ``alpha = mean |w|`` over all but the output dimension."""
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


def xnor(w: torch.Tensor) -> torch.Tensor:
    """Binary weights with XNOR-Net's (BWN's) scale: ``alpha * sign(w)``, ``alpha = mean |w|`` per filter."""
    return xnor_scale(w) * binaryconnect(w)


def levels(bits: int, signed: bool) -> tuple[int, int]:
    """``(Qn, Qp)``: the integer range ``[-Qn, Qp]`` of ``bits`` (signed: two's complement)."""
    if signed:
        return (2 ** (bits - 1), 2 ** (bits - 1) - 1) if bits > 1 else (1, 1)
    return 0, 2 ** bits - 1


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` forward, gradient times ``scale`` backward (LSQ's step-size gradient scale)."""
    return (x - x * scale).detach() + x * scale


def lsq(v: torch.Tensor, step: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """LSQ: ``round(clip(v / s, -Qn, Qp)) * s`` with the STE through the rounding; the step's
    gradient is scaled by ``1 / sqrt(numel * Qp)`` (Esser et al., section 2.2)."""
    qn, qp = levels(bits, signed)
    s = grad_scale(step, 1.0 / math.sqrt(v.numel() * qp))
    return round_ste(torch.clamp(v / s, -qn, qp)) * s


def mse_step(v: torch.Tensor, bits: int, signed: bool, grid: int = 64) -> torch.Tensor:
    """The step of ``bits`` levels that quantizes ``v`` with the least squared error, over a grid of
    clipping points up to ``max|v|``. LSQ starts from ``2 mean|v| / sqrt(Qp)`` and trains for 90
    epochs; a fine-tune of a few dozen steps needs a start that already fits (at 2 bits, LSQ's
    start left the tutorial VGG at chance with activations quantized, measured)."""
    qn, qp = levels(bits, signed)
    top = v.abs().max().clamp_min(1e-8)
    steps = top * torch.linspace(1.0 / grid, 1.0, grid) / qp
    err = [((torch.clamp(torch.round(v / s), -qn, qp) * s - v) ** 2).mean() for s in steps]
    return steps[int(torch.stack(err).argmin())]


class Quantizer(nn.Module):
    """One tensor's fake quantizer: ``scheme`` at ``bits``, with LSQ's learned step where it has one.

    The step is initialised from the first tensor it sees (:func:`mse_step`; ``initialized`` is a
    buffer, so a loaded checkpoint keeps its steps)."""

    def __init__(self, bits: int, scheme: str = "lsq", signed: bool = True):
        super().__init__()
        check_bits(bits)
        if scheme not in SCHEMES:
            raise ValueError(f"unknown quantization scheme {scheme!r}; valid choices: {', '.join(SCHEMES)}")
        if scheme != "lsq" and bits != 1:
            raise ValueError(f"scheme {scheme!r} is binary (1 bit); got {bits} bits: use 'lsq' for 2-8 bits")
        self.bits, self.scheme, self.signed = bits, scheme, signed
        self.step = nn.Parameter(torch.ones(()))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self.bits == FULL:
            return v
        if self.scheme != "lsq":
            return SCHEMES[self.scheme](v)
        if not bool(self.initialized):
            with torch.no_grad():
                self.step.copy_(mse_step(v.detach(), self.bits, self.signed))
                self.initialized.fill_(True)
        return lsq(v, self.step, self.bits, self.signed)

    def codes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The integer codes in ``[0, 2**bits)`` of ``w`` and what turns them back into values:
        LSQ: the step (value = (code - Qn) * step); binary: the per-filter scale (value = +-scale)."""
        with torch.no_grad():
            if self.scheme == "lsq":
                qn, qp = levels(self.bits, self.signed)
                return (torch.clamp(torch.round(w / self.step), -qn, qp) + qn).to(torch.int64), self.step.detach()
            scale = xnor_scale(w) if self.scheme == "xnor" else torch.ones(w.shape[0], *[1] * (w.dim() - 1))
            return (w >= 0).to(torch.int64), scale

    def extra_repr(self) -> str:
        return f"bits={self.bits}, scheme={self.scheme}, signed={self.signed}"


SCHEMES: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "binaryconnect": binaryconnect, "xnor": xnor, "lsq": None}


def check_bits(bits: int) -> int:
    """``bits`` if it is one of :data:`BITS`, else a ``ValueError`` naming them."""
    if isinstance(bits, bool) or bits not in BITS:
        raise ValueError(f"bit-width {bits!r} is not valid; valid choices: {', '.join(map(str, BITS))}")
    return int(bits)


def weight_quantizer(bits: int, binary: str = "xnor") -> Quantizer:
    """The weights' quantizer at ``bits``: 1 bit by the ``binary`` scheme, 2-8 by LSQ (signed)."""
    return Quantizer(bits, binary if bits == 1 else "lsq", signed=True)


class Quantized:
    """What the fake-quantized layers share: a weight quantizer, and one for the layer's input
    (unsigned: inputs follow a ReLU; full precision unless ``a_bits`` says otherwise)."""

    def __init__(self, *args, w_bits: int = FULL, a_bits: int = FULL, binary: str = "xnor", **kwargs):
        super().__init__(*args, **kwargs)
        self.w_quant = weight_quantizer(w_bits, binary)
        self.a_quant = Quantizer(a_bits, "lsq", signed=False)


class QuantConv2d(Quantized, nn.Conv2d):
    """A convolution whose weights (and inputs, at ``a_bits``) pass through fake quantizers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.a_quant(x), self.w_quant(self.weight), self.bias)


class QuantLinear(Quantized, nn.Linear):
    """:class:`QuantConv2d`'s linear twin (the classifier)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.a_quant(x), self.w_quant(self.weight), self.bias)


def layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's convolutions and linear layers by name, in order: what an allocation assigns bits to."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def quantizable(model: nn.Module, keep_first_last: bool = True) -> list[str]:
    """The names of the layers an allocation sets: every one, less the first and last where kept."""
    names = list(layers(model))
    return names[1:-1] if keep_first_last else names


def _swap(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def quantize(model: nn.Module, w_bits: int | Sequence[int], a_bits: int | Sequence[int] | None = None,
             keep_first_last: bool = True, binary: str = "xnor") -> nn.Module:
    """``model`` with its quantizable layers (:func:`quantizable`) swapped for fake-quantized
    copies (same weights), in place. ``w_bits``/``a_bits``: one bit-width for every layer or one
    per quantizable layer (``a_bits`` None: activations at full precision). A model already
    quantized is re-quantized at the new bits (its weights kept, new steps)."""
    names = quantizable(model, keep_first_last)
    w = allocation(w_bits, len(names))
    a = allocation(FULL if a_bits is None else a_bits, len(names))
    for name, wb, ab in zip(names, w, a):
        _swap(model, name, _quantized(model.get_submodule(name), wb, ab, binary))
    return model


def _quantized(old: nn.Module, w_bits: int, a_bits: int, binary: str) -> nn.Module:
    """A fake-quantized copy of a convolution or linear layer (same weights)."""
    if isinstance(old, nn.Conv2d):
        new = QuantConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                          old.dilation, old.groups, old.bias is not None, w_bits=w_bits, a_bits=a_bits, binary=binary)
    else:
        new = QuantLinear(old.in_features, old.out_features, old.bias is not None, w_bits=w_bits, a_bits=a_bits,
                          binary=binary)
    new.weight.data.copy_(old.weight.data)
    if old.bias is not None:
        new.bias.data.copy_(old.bias.data)
    return new.to(old.weight.device)


def quantize_like(model: nn.Module, reference: nn.Module) -> nn.Module:
    """``model`` with every layer that is fake-quantized in ``reference`` (by name) fake-quantized
    at the same bits and scheme, in place: a pruned copy of a quantized model (``pack``) keeps its
    quantizers. Steps are not copied (load the reference's state for them)."""
    ref = layers(reference)
    for name, old in layers(model).items():
        r = ref.get(name)
        if r is not None and hasattr(r, "w_quant"):
            binary = r.w_quant.scheme if r.w_quant.scheme != "lsq" else "xnor"
            _swap(model, name, _quantized(old, r.w_quant.bits, r.a_quant.bits, binary))
    return model


def is_quantized(model: nn.Module) -> bool:
    """Whether any layer of ``model`` is fake-quantized."""
    return any(hasattr(m, "w_quant") for m in layers(model).values())


def allocation(bits: int | Sequence[int], n: int) -> list[int]:
    """``bits`` as a list of ``n`` checked bit-widths (one given: the same for all)."""
    if isinstance(bits, int):
        return [check_bits(bits)] * n
    bits = [check_bits(b) for b in bits]
    if len(bits) != n:
        raise ValueError(f"an allocation needs one bit-width per quantizable layer ({n}), got {len(bits)}")
    return bits


def bits_of(model: nn.Module, which: str = "w_quant") -> dict[str, int]:
    """Every layer's weight bit-width, or with ``which="a_quant"`` its input activations'
    (32: full precision)."""
    return {n: getattr(m, which).bits if hasattr(m, which) else FULL for n, m in layers(model).items()}


def average_bits(model: nn.Module, bits: Sequence[int] | None = None, keep_first_last: bool = True) -> float:
    """Average bits per weight of the quantizable layers, weighted by their weight counts (what
    sets the bytes): of the model as quantized, or of ``bits`` given for its quantizable layers."""
    names = quantizable(model, keep_first_last)
    bits = [bits_of(model)[n] for n in names] if bits is None else allocation(list(bits), len(names))
    sizes = [model.get_submodule(n).weight.numel() for n in names]
    return sum(b * s for b, s in zip(bits, sizes)) / sum(sizes)
