"""Differentiable horizontal warping: one view rebuilt from the other through a disparity.

Monodepth's ``bilinear_sampler_1d_h`` samples an image at ``x + d * width`` (pixels, same
row) with bilinear weights, so the loss can pull gradients back into the disparity. Here
it is ``F.grid_sample`` with ``align_corners=False``, where a shift of ``d`` (a fraction of
the width) is exactly ``2 * d`` in normalised coordinates, and ``padding_mode="zeros"``: the
TF code's "border" mode pads the image with one ring of zeros (``tf.pad``, constant) and clamps
the sample inside that ring, so a sample past the edge blends the edge pixel with black and
reads black beyond, which is what ``grid_sample``'s zero padding does. ``padding="border"``
repeats the edge pixel instead (not monodepth's; the tutorial profile's, see ``recipes.Depth``).

For a rectified pair a point at column ``x`` in the left view is at ``x - d`` in the right
view, so ``left(x) = right(x - d_left(x))`` and ``right(x) = left(x + d_right(x))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


PADDINGS = ("zeros", "border")


def apply_disparity(img: torch.Tensor, disp: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """``img`` (N, C, H, W) sampled at ``x + disp * W`` along each row; ``disp`` is (N, 1, H, W)
    as a fraction of the width; past the edge ``padding`` reads zeros (monodepth) or the edge pixel."""
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; valid choices: {', '.join(PADDINGS)}")
    n, _, h, w = img.shape
    xs = (2 * torch.arange(w, device=img.device, dtype=img.dtype) + 1) / w - 1  # pixel centres
    ys = (2 * torch.arange(h, device=img.device, dtype=img.dtype) + 1) / h - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid_x = gx.unsqueeze(0) + 2 * disp[:, 0]
    grid = torch.stack([grid_x, gy.unsqueeze(0).expand(n, h, w)], dim=-1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def reconstruct_left(right: torch.Tensor, disp_left: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """The left view rebuilt from the right one: ``right(x - d_left)`` (monodepth's
    ``generate_image_left``)."""
    return apply_disparity(right, -disp_left, padding)


def reconstruct_right(left: torch.Tensor, disp_right: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """The right view rebuilt from the left one: ``left(x + d_right)`` (``generate_image_right``)."""
    return apply_disparity(left, disp_right, padding)
