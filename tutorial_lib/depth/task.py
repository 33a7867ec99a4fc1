"""Monodepth as a :class:`tutorial_lib.train.Task`: what ``train.fit`` and ``train_joint`` need.

* a batch is ``(left, right[, disp_px[, valid]])``; the model sees only ``left`` (one image
  at test time), the loss sees both views (stereo self-supervision: no depth labels);
* the loss is the sum of :func:`~tutorial_lib.depth.losses.monodepth_loss`'s three terms
  (appearance, smoothness, left-right consistency) over the four output scales;
* ``evaluate`` compares the finest left disparity with ground-truth disparity in pixels,
  as monodepth's ``evaluate_kitti.py`` does for the KITTI 2015 split: the prediction (a
  fraction of the width) is resized to the ground truth's size and multiplied by its width;
  D1-all on disparities; Abs Rel ... a3 on depths from ``focal * 0.54 m / disparity``,
  predicted depths clipped to [1e-3, 80] m; pixels with ``gt > 0`` (and ``valid``) only;
  each metric per image, then averaged over images.

KITTI's focal length is looked up by the ground truth's width (1242, 1241, 1224, 1238 px);
for any other width (synthetic scenes, Middlebury) the KITTI camera is scaled to it,
``721.5377 * width / 1242`` px, so depths are "KITTI-like" metres.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from tutorial_lib import train
from tutorial_lib.depth import errors, losses, stereo
from tutorial_lib.distill.losses import disparity_kd

KITTI_WIDTH = 1242  # the full KITTI image width whose focal length is scaled to other widths

METRICS = ("d1_all", "abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def focal_for(width: int) -> float:
    """KITTI's focal length (px) for an image ``width`` pixels wide: looked up for KITTI's own
    widths, else the 1242-px camera scaled to ``width``."""
    return errors.WIDTH_TO_FOCAL.get(width, errors.WIDTH_TO_FOCAL[KITTI_WIDTH] * width / KITTI_WIDTH)


@torch.no_grad()
def predict_disparity(model: nn.Module, left: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The model's finest *left* disparity for ``left`` (N, 3, H, W), in pixels of an image of
    ``size`` (default: the input's size), shape (N, 1, h, w); eval mode, no gradients."""
    was_training = model.training
    disp = model.eval()(left)[0][:, 0:1]
    model.train(was_training)
    h, w = size if size is not None else disp.shape[-2:]
    if tuple(disp.shape[-2:]) != (h, w):
        disp = F.interpolate(disp, size=(h, w), mode="bilinear", align_corners=False)
    return errors.disp_to_pixels(disp, w)


def image_errors(gt_px: torch.Tensor, pred_px: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, float]:
    """D1-all and the depth errors of one image: ``gt_px`` and ``pred_px`` (H, W) disparities in
    pixels; pixels with ``gt_px > 0`` (and ``valid``) count. NaN everywhere if none does."""
    mask = gt_px > 0 if valid is None else (gt_px > 0) & valid.bool()
    if not mask.any():
        return {k: float("nan") for k in METRICS}
    gt, pred, mask = (t.detach().cpu().double().numpy() for t in (gt_px, pred_px, mask))
    mask = mask.astype(bool)
    focal = focal_for(gt.shape[-1])
    gt_depth = errors.pixels_to_depth(np.where(mask, gt, 1.0), focal)
    pred_depth = errors.clip_depth(errors.pixels_to_depth(pred, focal))
    return {"d1_all": errors.d1_all(gt, pred, mask), **errors.depth_errors(gt_depth, pred_depth, mask)}


class StereoDepth(train.Task):
    """Monodepth's task: input the left view, loss from both views, errors against ground truth.

    ``alpha``, ``smoothness`` and ``lr_weight`` are the loss weights (paper: 0.85, 0.1, 1);
    ``augment``: each training batch goes through monodepth's augmentation
    (:func:`~tutorial_lib.depth.stereo.augment_pair`: mirrored pairs, gamma, brightness, colour);
    ``padding``: what the view sampler reads past the image's edge (monodepth: zeros).
    """

    logged = ("d1_all", "abs_rel")

    def __init__(self, alpha: float = losses.ALPHA, smoothness: float = losses.SMOOTHNESS,
                 lr_weight: float = losses.LR, augment: bool = False, padding: str = "zeros"):
        self.alpha, self.smoothness, self.lr_weight, self.augment = alpha, smoothness, lr_weight, augment
        self.padding = padding

    def split(self, batch, device: str) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if len(batch) < 2:
            raise ValueError("a stereo batch is (left, right[, disp_px]); got a single tensor")
        left, right = batch[0].to(device), batch[1].to(device)
        if left.shape != right.shape:
            raise ValueError(f"left and right views differ in size: {tuple(left.shape)} vs {tuple(right.shape)}")
        if self.augment:  # split prepares training batches only (evaluate reads its own)
            left, right = stereo.augment_pair(left, right)
        return left, (left, right)

    def terms(self, outputs, target) -> dict[str, torch.Tensor]:
        """The three weighted loss terms (appearance, smoothness, lr_consistency)."""
        left, right = target
        return losses.monodepth_loss(outputs, left, right, self.alpha, self.smoothness, self.lr_weight, self.padding)

    def loss(self, outputs, target) -> torch.Tensor:
        return sum(self.terms(outputs, target).values())

    def distill(self, outputs, teacher_outputs, temperature: float = 4.0) -> torch.Tensor:
        """Disparity distillation (``disparity_kd``, ``distill.get("disparity")``): L1 to the teacher's four
        disparity maps, in pixels of the input width (``temperature`` has no role here)."""
        return disparity_kd(outputs, teacher_outputs)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, device: str = "cpu") -> dict[str, float]:
        """Mean over test images of D1-all (%), abs_rel, sq_rel, rmse (m), rmse_log, a1, a2, a3,
        plus ``images`` (how many had ground truth). Batches must hold ``disp_px``; a fourth item,
        when present, is a boolean mask of the pixels whose ground truth is known.

        Datasets whose ground truth varies in size (KITTI 2015, ``variable_size = True``) are
        read one image at a time."""
        if getattr(loader.dataset, "variable_size", False) and loader.batch_size != 1:
            loader = DataLoader(loader.dataset, batch_size=1, num_workers=loader.num_workers)
        rows = []
        for batch in loader:
            if len(batch) < 3:
                raise ValueError("evaluation needs (left, right, disp_px[, valid]) batches: "
                                 "this test set has no ground-truth disparity")
            left, gt = batch[0].to(device), batch[2]
            valid = batch[3] if len(batch) > 3 else None
            pred = predict_disparity(model, left, tuple(gt.shape[-2:])).cpu()
            for i in range(len(left)):
                rows.append(image_errors(gt[i, 0], pred[i, 0], None if valid is None else valid[i, 0]))
        scored = [r for r in rows if not np.isnan(r["d1_all"])]
        if not scored:
            raise ValueError("no test image has ground truth (every disparity is 0 or masked)")
        out = {k: float(np.mean([r[k] for r in scored])) for k in METRICS}
        out["images"] = len(scored)
        return out


STEREO = StereoDepth()
