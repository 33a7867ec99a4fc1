"""Depth and disparity errors as monodepth reports them on KITTI.

:func:`depth_errors` is ``evaluation_utils.compute_errors`` (abs_rel, sq_rel, rmse,
rmse_log and the threshold accuracies a1, a2, a3); :func:`d1_all` is KITTI 2015's D1-all,
the share of pixels whose disparity is off by more than 3 px *and* 5% of the truth. Depth
comes from disparity through ``depth = focal * baseline / disparity_px`` with KITTI's
0.54 m baseline and the focal length looked up by image width, as monodepth does.
"""

from __future__ import annotations

import numpy as np
import torch

# evaluation_utils.width_to_focal: KITTI focal length (px) by full image width.
WIDTH_TO_FOCAL = {1242: 721.5377, 1241: 718.856, 1224: 707.0493, 1238: 718.3351}
BASELINE = 0.54  # metres between KITTI's two colour cameras
MIN_DEPTH, MAX_DEPTH = 1e-3, 80.0  # monodepth clips predicted depth to this range


def _array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _select(gt, pred, mask) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = _array(gt), _array(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction differ in shape: {gt.shape} vs {pred.shape}")
    if mask is None:
        return gt.ravel(), pred.ravel()
    mask = _array(mask).astype(bool)
    return gt[mask], pred[mask]


def depth_errors(gt_depth, pred_depth, mask=None) -> dict[str, float]:
    """abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3 over the pixels of ``mask`` (all if None);
    depths must be positive there (clip predictions to ``[MIN_DEPTH, MAX_DEPTH]`` first)."""
    gt, pred = _select(gt_depth, pred_depth, mask)
    thresh = np.maximum(gt / pred, pred / gt)
    return {
        "abs_rel": float(np.mean(np.abs(gt - pred) / gt)),
        "sq_rel": float(np.mean((gt - pred) ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean((gt - pred) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25 ** 2)),
        "a3": float(np.mean(thresh < 1.25 ** 3)),
    }


def d1_all(gt_disp_px, pred_disp_px, mask=None) -> float:
    """KITTI D1-all in %: valid pixels with error > 3 px and > 5% of the true disparity.

    Valid means in ``mask`` (default: ``gt > 0``, KITTI's encoding of "no ground truth").
    The KITTI devkit uses strict inequalities, as here; monodepth's script uses >=.
    """
    gt, pred = _array(gt_disp_px), _array(pred_disp_px)
    gt, pred = _select(gt, pred, gt > 0 if mask is None else mask)
    err = np.abs(gt - pred)
    bad = (err > 3) & (err > 0.05 * np.abs(gt))
    return float(100.0 * bad.sum() / max(len(gt), 1))


def focal_length(width: int) -> float:
    """KITTI's focal length in pixels for a full-resolution image ``width`` pixels wide."""
    if width not in WIDTH_TO_FOCAL:
        raise ValueError(f"no KITTI focal length for image width {width}; known widths: "
                         f"{', '.join(map(str, WIDTH_TO_FOCAL))}")
    return WIDTH_TO_FOCAL[width]


def disp_to_pixels(disp, width: int):
    """A disparity given as a fraction of the image width, in pixels of an image ``width`` wide."""
    return disp * width


def pixels_to_depth(disp_px, focal: float, baseline: float = BASELINE, min_disp: float = 1e-6):
    """``focal * baseline / disp_px`` with disparities below ``min_disp`` clamped to it (so a zero
    disparity gives a large finite depth, not inf). Works on arrays and tensors."""
    if isinstance(disp_px, torch.Tensor):
        return focal * baseline / disp_px.clamp(min=min_disp)
    return focal * baseline / np.maximum(np.asarray(disp_px, dtype=np.float64), min_disp)


def clip_depth(depth, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH):
    """Depth clipped to monodepth's evaluation range ``[1e-3, 80]`` metres."""
    if isinstance(depth, torch.Tensor):
        return depth.clamp(min_depth, max_depth)
    return np.clip(depth, min_depth, max_depth)
