"""Tiny KITTI folders written in the real on-disk layout (real PNG files), for the real loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_kitti_raw(root: Path, n: int = 3, size: tuple[int, int] = (40, 130), seed: int = 0,
                    right_size: tuple[int, int] | None = None) -> Path:
    """``root/2011_09_26/<drive>/image_02|image_03/data/<frame>.png`` and a monodepth file list
    ``root/train_files.txt``; returns the list's path. ``right_size`` makes the right views
    a different size (an inconsistent pair)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        left = f"{DRIVE}/image_02/data/{i:010d}.png"
        right = f"{DRIVE}/image_03/data/{i:010d}.png"
        _png(root / left, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        _png(root / right, rng.integers(0, 256, (*(right_size or size), 3), dtype=np.uint8))
        lines.append(f"{left} {right}")
    file_list = root / "train_files.txt"
    file_list.write_text("\n".join(lines) + "\n")
    return file_list


def write_kitti2015(root: Path, n: int = 2, size: tuple[int, int] = (40, 130), seed: int = 0) -> list[np.ndarray]:
    """``root/training/image_2|image_3/<id>_10.png`` and ``disp_noc_0/<id>_10.png`` (uint16,
    disparity * 256, 0 = no ground truth); returns the disparities written, in pixels."""
    rng = np.random.default_rng(seed)
    disps = []
    for i in range(n):
        name = f"{i:06d}_10.png"
        for view in ("image_2", "image_3"):
            _png(root / "training" / view / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        raw = rng.integers(1, 100 * 256, size, dtype=np.uint16)
        raw[rng.random(size) < 0.3] = 0  # sparse: no ground truth there
        _png(root / "training" / "disp_noc_0" / name, raw)
        disps.append(raw.astype(np.float32) / 256)
    return disps
