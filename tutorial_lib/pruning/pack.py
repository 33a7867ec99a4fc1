"""Pack: physically remove every channel whose mask is 0, for any masked model.

The traced graph says what goes together: a conv's output channels, the batch norm that
follows it (weights, biases and running statistics), the next conv's input channels, the
Linear's input features (all spatial positions of a removed channel), and, after a
``torch.cat`` of several branches (monodepth's skips), the matching slice of each branch. The sliced state
dict is loaded into a fresh model rebuilt from the original's spec with the kept widths,
so the result is a plain, smaller ``nn.Module``: no masks and no zeroed channels left.

Rule for a layer whose masks all went to 0: it keeps its *strongest* channel, the one
whose mask logit is highest (closest to switching back on), so the network stays
connected. That is the one case in which the packed model differs from the masked one
(which outputs zeros there); ``ChannelMask.keep`` holds the rule, and the estimates of
``masks.estimate`` follow it, so predicted and packed sizes always agree.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from tutorial_lib import graph, masks, models
from tutorial_lib.quant.quantizers import quantize_like


def keep_indices(masked: nn.Module) -> dict[str, torch.Tensor]:
    """For each masked conv, the indices of the channels to keep (strongest one if none is on)."""
    return {layer: mask.survivors().nonzero().flatten() for layer, mask in masks.masks_of(masked).items()}


def _slices(gm: fx.GraphModule, keep: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """Module name -> (input index or None, output index or None)."""
    out: dict[str, tuple] = {}
    for node in gm.graph.nodes:
        mod = graph.module_of(gm, node)
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            kin = masks.input_kept(gm, node)  # concatenations: each branch's kept channels, in order
            in_idx = kin.nonzero().flatten() if kin is not None else None
            if in_idx is not None and isinstance(mod, nn.Linear):
                per = mod.in_features // len(kin)  # features per channel after flatten
                in_idx = (in_idx[:, None] * per + torch.arange(per)).flatten()
            if isinstance(mod, nn.Conv2d) and mod.groups != 1:
                raise NotImplementedError(f"packing grouped convolutions ({node.target}) is not supported")
            out[node.target] = (in_idx, keep.get(node.target) if isinstance(mod, nn.Conv2d) else None)
        elif isinstance(mod, nn.BatchNorm2d):
            conv = graph.producer(gm, node, (nn.Conv2d,))
            out[node.target] = (None, keep.get(conv.target) if conv is not None else None)
    return out


def packed_state_dict(masked: fx.GraphModule) -> dict[str, torch.Tensor]:
    """The masked model's state dict with removed channels sliced out and mask logits dropped."""
    keep = keep_indices(masked)
    slices = _slices(masked, keep)
    state = {}
    for key, value in masked.state_dict().items():
        if key.startswith("masks."):
            continue
        module, _, name = key.rpartition(".")
        in_idx, out_idx = slices.get(module, (None, None))
        if out_idx is not None and value.dim() >= 1 and name != "num_batches_tracked":
            value = value.index_select(0, out_idx)
        if in_idx is not None and name == "weight" and value.dim() >= 2:
            value = value.index_select(1, in_idx)
        state[key] = value.clone()
    return state


def pack(masked: nn.Module) -> nn.Module:
    """A plain, smaller copy of ``masked`` (from ``masks.insert_masks``) without the closed channels."""
    if not masks.masks_of(masked):
        raise ValueError("pack needs a model with channel masks: call masks.insert_masks(model) and train the masks first")
    spec = getattr(masked, "meta", {}).get("source_spec")
    if spec is None:
        raise ValueError(
            "pack rebuilds the model from its spec, but the masked model was made from a model without a "
            "spec() method; give the model class spec()/from_spec (see models.vgg.VGG)"
        )
    keep = keep_indices(masked)
    widths = [len(keep[layer]) for layer in masks.masks_of(masked)]
    model = quantize_like(models.from_spec(models.resize_spec(spec, widths)), masked)  # fake quantizers kept
    model.load_state_dict(packed_state_dict(masked))
    return model.train(masked.training)
