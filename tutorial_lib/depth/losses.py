"""Monodepth's self-supervised stereo loss: no depth labels, only the other view.

At each of the four output scales ``s`` the left and right images are area-downsampled to
the disparity's size, each view is rebuilt from the other (:mod:`tutorial_lib.depth.sampler`)
and three terms are summed over scales and both views (paper eq. 1-4):

* appearance: ``alpha * (1 - SSIM) / 2 + (1 - alpha) * |I - I~|`` with ``alpha = 0.85`` and
  monodepth's SSIM on 3x3 average-pooled statistics;
* smoothness: ``|d disp/dx| exp(-|dI/dx|) + |d disp/dy| exp(-|dI/dy|)`` (image gradients
  averaged over colour channels), weight ``0.1 / 2**s``, so disparity may jump at edges;
* left-right consistency: ``|d_l - d_r(x - d_l)|`` and its right counterpart, weight 1.

Note: the paper states the smoothness term for x and y; the released TF code, by an
indexing slip, only uses the x term. Here both are used, as in the paper.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from tutorial_lib.depth.sampler import reconstruct_left, reconstruct_right

ALPHA = 0.85
SMOOTHNESS = 0.1
LR = 1.0
C1, C2 = 0.01 ** 2, 0.03 ** 2


def scale_pyramid(img: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """``img`` area-resized to each ``(height, width)`` (``tf.image.resize_area`` in the TF code)."""
    return [img if tuple(img.shape[-2:]) == tuple(s) else F.interpolate(img, size=tuple(s), mode="area")
            for s in sizes]


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Monodepth's SSIM map: means, variances and covariance from 3x3 average pooling with no
    padding (so the map is 2 pixels smaller each way); 1 where ``x`` and ``y`` agree."""
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + C1) * (2 * sigma_xy + C2)
    den = (mu_x ** 2 + mu_y ** 2 + C1) * (sigma_x + sigma_y + C2)
    return num / den


def dssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The SSIM dissimilarity ``(1 - SSIM) / 2`` clipped to [0, 1], as the TF code returns it."""
    return ((1 - ssim(x, y)) / 2).clamp(0, 1)


def appearance_loss(estimate: torch.Tensor, target: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """``alpha * mean(DSSIM) + (1 - alpha) * mean(L1)`` between a rebuilt view and the real one."""
    return alpha * dssim(estimate, target).mean() + (1 - alpha) * (estimate - target).abs().mean()


def gradient_x(img: torch.Tensor) -> torch.Tensor:
    return img[..., :, :-1] - img[..., :, 1:]


def gradient_y(img: torch.Tensor) -> torch.Tensor:
    return img[..., :-1, :] - img[..., 1:, :]


def smoothness_loss(disp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness: ``mean|d disp/dx| e^(-mean_c |dI/dx|) + (the same in y)``."""
    weight_x = torch.exp(-gradient_x(img).abs().mean(1, keepdim=True))
    weight_y = torch.exp(-gradient_y(img).abs().mean(1, keepdim=True))
    return (gradient_x(disp) * weight_x).abs().mean() + (gradient_y(disp) * weight_y).abs().mean()


def lr_consistency_loss(disp_left: torch.Tensor, disp_right: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """``mean|d_l - d_r warped to the left|`` + ``mean|d_r - d_l warped to the right|``."""
    right_to_left = reconstruct_left(disp_right, disp_left, padding)
    left_to_right = reconstruct_right(disp_left, disp_right, padding)
    return (right_to_left - disp_left).abs().mean() + (left_to_right - disp_right).abs().mean()


def monodepth_loss(disps: Sequence[torch.Tensor], left: torch.Tensor, right: torch.Tensor,
                   alpha: float = ALPHA, smoothness: float = SMOOTHNESS, lr: float = LR,
                   padding: str = "zeros") -> dict[str, torch.Tensor]:
    """The weighted terms ``{"appearance", "smoothness", "lr_consistency"}`` of monodepth's loss
    for ``disps`` (finest first, each (N, 2, h, w): left then right disparity as a fraction of
    width) and the full-size images; the total loss is the sum of the three. ``padding``: what
    the sampler reads past the image's edge (``sampler.apply_disparity``)."""
    sizes = [tuple(d.shape[-2:]) for d in disps]
    lefts, rights = scale_pyramid(left, sizes), scale_pyramid(right, sizes)
    appearance = smooth = consistency = left.new_zeros(())
    for s, (disp, l_img, r_img) in enumerate(zip(disps, lefts, rights)):
        d_l, d_r = disp[:, 0:1], disp[:, 1:2]
        appearance = appearance + appearance_loss(reconstruct_left(r_img, d_l, padding), l_img, alpha) \
            + appearance_loss(reconstruct_right(l_img, d_r, padding), r_img, alpha)
        smooth = smooth + (smoothness_loss(d_l, l_img) + smoothness_loss(d_r, r_img)) / 2 ** s
        consistency = consistency + lr_consistency_loss(d_l, d_r, padding)
    return {"appearance": appearance, "smoothness": smoothness * smooth, "lr_consistency": lr * consistency}
