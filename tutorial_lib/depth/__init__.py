"""Monocular depth (monodepth, Godard et al. 2017): stereo data, view warping, the
self-supervised loss and KITTI's error measures, one concept per module.

* :mod:`~tutorial_lib.depth.sampler`: rebuild one view from the other through a disparity;
* :mod:`~tutorial_lib.depth.losses`: appearance + smoothness + left-right consistency;
* :mod:`~tutorial_lib.depth.errors`: abs_rel ... a3 and D1-all, disparity to depth;
* :mod:`~tutorial_lib.depth.stereo`: synthetic scenes, Middlebury motorcycle, KITTI.

The model is :class:`tutorial_lib.models.monodepth.MonoDepth`.
"""

from __future__ import annotations

from tutorial_lib.depth.losses import monodepth_loss
from tutorial_lib.depth.errors import d1_all, depth_errors
from tutorial_lib.depth.sampler import apply_disparity, reconstruct_left, reconstruct_right

__all__ = ["apply_disparity", "reconstruct_left", "reconstruct_right", "monodepth_loss", "depth_errors", "d1_all"]
