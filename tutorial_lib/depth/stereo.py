"""Stereo pairs for monodepth: synthetic scenes, the Middlebury motorcycle, and KITTI.

* :func:`synthetic_stereo` (tutorial profile, no download): road scenes (a far backdrop,
  a ground plane, upright objects standing on it), textured with patches of real
  photographs shipped in scikit-image, rendered far to near into a left and a right view.
  Every surface point has an integer disparity, so the ground truth is exact:
  ``left[y, x] == right[y, x - d]`` wherever the point is visible in both views.
* :func:`motorcycle`: the Middlebury 2014 *Motorcycle* pair that scikit-image ships, with
  its ground-truth disparity (unknown pixels masked out).
* :class:`KittiStereo` (paper profile): KITTI raw pairs from a monodepth file list;
  :class:`Kitti2015Stereo`: the 200 KITTI 2015 training pairs with sparse ground truth,
  for evaluation (:func:`read_kitti_disparity`).

Images are float tensors (C, H, W) in [0, 1]; disparities are in pixels of the returned
image, positive, and map a left pixel ``x`` to ``x - d`` in the right view.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tutorial_lib import paths
from tutorial_lib.data import DatasetNotFoundError
from tutorial_lib.models.monodepth import check_input_size

# Photographs shipped inside the scikit-image wheel (no download); greys are made RGB.
TEXTURE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                  "camera", "brick", "grass", "gravel", "coins")


# --------------------------------------------------------------------------- images


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """An (H, W[, C]) uint8 or [0, 1] float array as a float (C, H, W) tensor in [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    return torch.from_numpy(np.ascontiguousarray(arr[..., :3], dtype=np.float32) / scale).permute(2, 0, 1)


def resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``img`` (C, H, W) or (N, C, H, W) resized to ``(height, width)``: area averaging when
    shrinking (``tf.image.resize_area`` in monodepth), bilinear otherwise."""
    batched = img.dim() == 4
    x = img if batched else img.unsqueeze(0)
    if tuple(x.shape[-2:]) != tuple(size):
        shrink = x.shape[-2] >= size[0] and x.shape[-1] >= size[1]
        x = F.interpolate(x, size=size, mode="area") if shrink else \
            F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x if batched else x.squeeze(0)


# --------------------------------------------------------------------------- synthetic


@lru_cache(maxsize=1)
def _photos() -> tuple[torch.Tensor, ...]:
    from skimage import data as skdata

    return tuple(to_tensor(np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a)
                 for a in (getattr(skdata, name)() for name in TEXTURE_PHOTOS))


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A (3, height, width) patch of a random photo at a random zoom, contrast and tint."""
    photo = _photos()[rng.integers(len(TEXTURE_PHOTOS))]
    _, ph, pw = photo.shape
    zoom = rng.uniform(0.4, 1.2) * min(ph / height, pw / width, 2.0)
    ch, cw = max(8, min(ph, int(height * zoom))), max(8, min(pw, int(width * zoom)))
    y, x = rng.integers(ph - ch + 1), rng.integers(pw - cw + 1)
    patch = resize(photo[:, y:y + ch, x:x + cw], (height, width)).numpy()
    mean = patch.mean(axis=(1, 2), keepdims=True)
    tint = rng.uniform(0.7, 1.3, size=(3, 1, 1))
    return np.clip((mean + rng.uniform(0.7, 1.5) * (patch - mean)) * tint, 0, 1).astype(np.float32)


HORIZONS = (0.25, 0.5)  # range of the horizon's row, as a share of the image height (camera pitch varies)
HAZE = 0.55  # the backdrop's brightness floor: far things look bright and low in contrast


def ground_disparity(height: int, max_disp: int, horizon: float = 0.375) -> np.ndarray:
    """Integer disparity per image row of a flat ground: 1 px (far) at and above the horizon
    (at ``horizon x height``), growing linearly to ``max_disp`` at the bottom row.

    A point of the ground plane at row ``y`` below the horizon ``y0`` has depth proportional to
    ``1 / (y - y0)``, so its disparity is proportional to ``y - y0``: once the horizon is found
    in the image, the row says how far the ground is. This is the monocular cue that lets one
    image predict disparity.
    """
    y0 = horizon * height
    rows = np.arange(height) + 0.5
    return np.clip(np.round(max_disp * (rows - y0) / (height - y0)), 1, max_disp).astype(int)


def _object_mask(rng: np.random.Generator, bottom: int, d: int, width: int):
    """A rectangle or ellipse standing on the ground at row ``bottom`` with disparity ``d``:
    its size in pixels grows with ``d`` (nearer objects look bigger), a function
    ``(ys, xs) -> bool`` in left-view pixels."""
    h, w = d * rng.uniform(1.2, 3.0), d * rng.uniform(1.0, 4.0)
    cx = rng.uniform(0, width)
    if rng.random() < 0.5:
        return lambda ys, xs: (ys <= bottom) & (ys > bottom - h) & (np.abs(xs - cx) <= w / 2)
    cy = bottom + 0.5 - h / 2
    return lambda ys, xs: ((ys - cy) / (h / 2)) ** 2 + ((xs - cx) / (w / 2)) ** 2 <= 1


def render_scene(rng: np.random.Generator, height: int, width: int, max_disp: int,
                 objects: tuple[int, int] = (2, 5)) -> tuple[np.ndarray, ...]:
    """One synthetic road scene: ``(left, right, disp_left, disp_right)``, images (3, H, W) in
    [0, 1] and integer pixel disparities (H, W).

    A far backdrop above the horizon (1 px; bright and faint, as haze makes distant things;
    the horizon's row is drawn from ``HORIZONS``, so the image must be read to find it), a
    ground plane below it whose disparity grows row by row (:func:`ground_disparity`), and
    ``objects`` (min, max) upright rectangles and ellipses standing on the ground: each takes
    the ground's disparity at its bottom row and a size that grows with it. Every surface has
    its own photo texture; they are painted far to near. As on KITTI, one image carries the
    cues (where the sky ends, where a thing touches the ground, how big it looks), and the
    pair carries the geometry. A point at left column ``x`` is at ``x - d`` in the right view:
    the texture is indexed by the left column, so the right view at ``xr`` shows texture
    column ``xr + d``.
    """
    ground = ground_disparity(height, max_disp, rng.uniform(*HORIZONS))
    first_row = int(np.argmax(ground > 1))  # objects stand below the horizon
    k = int(rng.integers(objects[0], objects[1] + 1))
    bottoms = rng.integers(first_row + 1, height, size=k)
    ys, xs = np.mgrid[0:height, 0:width]
    # backdrop above the horizon and ground below: one texture each, disparity per row
    sky, road = _texture(rng, height, width + max_disp), _texture(rng, height, width + max_disp)
    sky = HAZE + (1 - HAZE) * sky  # aerial perspective: the far backdrop is bright and faint
    tex = np.where((ground > 1)[None, :, None], road, sky)
    d_rows = ground[:, None]
    left = np.array(tex[:, :, :width], np.float32)
    right = np.take_along_axis(tex, np.broadcast_to(xs + d_rows, (3, height, width)), axis=2).astype(np.float32)
    disp_l = np.broadcast_to(d_rows, (height, width)).astype(np.float32)
    disp_r = disp_l.copy()
    for d, bottom in sorted((int(ground[b]), int(b)) for b in bottoms):  # far to near
        tex = _texture(rng, height, width + max_disp)
        shape = _object_mask(rng, bottom, d, width)
        m_l, m_r = shape(ys, xs), shape(ys, xs + d)
        left[:, m_l] = tex[:, :, :width][:, m_l]
        right[:, m_r] = tex[:, :, d:d + width][:, m_r]
        disp_l[m_l], disp_r[m_r] = d, d
    return left, right, disp_l, disp_r


def synthetic_stereo(n: int, height: int = 128, width: int = 256, seed: int = 0, max_disp: int | None = None,
                     with_right_disp: bool = False) -> tuple[torch.Tensor, ...]:
    """``n`` synthetic pairs: ``(left, right, disp_left_px)`` as float tensors (N, 3, H, W),
    (N, 3, H, W), (N, 1, H, W); with ``with_right_disp`` also the right view's disparity.

    Disparities are integers from 1 to ``max_disp`` (default 15% of the width). The same
    ``seed`` gives the same scenes. See :func:`render_scene`.
    """
    max_disp = max(2, int(round(0.15 * width))) if max_disp is None else int(max_disp)
    if max_disp < 2:
        raise ValueError(f"max_disp must be >= 2 pixels, got {max_disp}")
    rng = np.random.default_rng(seed)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    scenes = [render_scene(rng, height, width, max_disp) for _ in range(n)]
    left, right, disp_l, disp_r = (torch.from_numpy(np.stack(a)) for a in zip(*scenes))
    out = (left, right, disp_l.unsqueeze(1))
    return (*out, disp_r.unsqueeze(1)) if with_right_disp else out


class StereoTensorDataset(Dataset):
    """In-memory stereo pairs: item ``i`` is ``(left, right, disp_px)``, images in [0, 1] (uint8
    images are divided by 255; float images must already lie there)."""

    def __init__(self, left: torch.Tensor, right: torch.Tensor, disp_px: torch.Tensor):
        if not (len(left) == len(right) == len(disp_px)):
            raise ValueError(f"left, right and disp_px differ in length: {len(left)}, {len(right)}, {len(disp_px)}")
        self.left, self.right = self._normalised(left), self._normalised(right)
        self.disp_px = disp_px.float()

    @staticmethod
    def _normalised(images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            return images.float() / 255
        images = images.float()
        if images.numel() and (images.min() < 0 or images.max() > 1):
            raise ValueError("float stereo images must lie in [0, 1]; pass uint8 images to have them scaled")
        return images

    def __len__(self) -> int:
        return len(self.left)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.left[i], self.right[i], self.disp_px[i]


def augment_pair(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Monodepth's training augmentation of a batch of pairs (N, C, H, W) in [0, 1], each pair
    drawn on its own from the global random state, as its data loader does:

    * with probability 1/2 the pair is mirrored: the new left view is the flipped *right* one
      and the new right view the flipped left one, so the result is still a rectified pair
      with positive disparities (flipping alone would make them negative);
    * with probability 1/2 both views get the same gamma in [0.8, 1.2], brightness factor in
      [0.5, 2] and per-channel colour factors in [0.8, 1.2], then are clipped to [0, 1].

    Every draw is made whatever the coin says, so the random state moves the same on every batch."""
    n, c = left.shape[:2]
    flip, shift, gamma, brightness = (torch.rand(n, 1, 1, 1) for _ in range(4))
    colours = 0.8 + 0.4 * torch.rand(n, c, 1, 1)
    flip, shift = (flip > 0.5).to(left.device), (shift > 0.5).to(left.device)
    left, right = torch.where(flip, right.flip(-1), left), torch.where(flip, left.flip(-1), right)
    factor = ((0.5 + 1.5 * brightness) * colours).to(left.device)
    gamma = (0.8 + 0.4 * gamma).to(left.device)
    return tuple(torch.where(shift, (view ** gamma * factor).clamp(0, 1), view) for view in (left, right))


def synthetic_dataset(n: int, height: int = 128, width: int = 256, seed: int = 0) -> StereoTensorDataset:
    """:func:`synthetic_stereo` as a dataset (size checked against the model's 128 divisor)."""
    check_input_size(height, width)
    return StereoTensorDataset(*synthetic_stereo(n, height, width, seed))


# --------------------------------------------------------------------------- Middlebury


def motorcycle(height: int = 256, width: int = 384) -> tuple[torch.Tensor, ...]:
    """Middlebury's *Motorcycle* (scikit-image ``stereo_motorcycle``, 500x741) resized to
    ``(height, width)``: ``(left, right, disp_px, valid)`` with a batch dimension of 1.

    Images are area-resized; the disparity is resized nearest-neighbour and multiplied by
    ``width / 741`` (disparity scales with the image width). Pixels without ground truth
    (inf in the original) have ``valid`` False and disparity 0.
    """
    from skimage import data as skdata

    check_input_size(height, width)
    left, right, disp = skdata.stereo_motorcycle()
    valid = np.isfinite(disp)
    scale = width / disp.shape[1]
    disp_t = torch.from_numpy(np.where(valid, disp, 0).astype(np.float32))[None, None]
    valid_t = torch.from_numpy(valid.astype(np.float32))[None, None]
    disp_t = F.interpolate(disp_t, size=(height, width), mode="nearest") * scale
    valid_t = F.interpolate(valid_t, size=(height, width), mode="nearest") > 0.5
    return (resize(to_tensor(left), (height, width))[None], resize(to_tensor(right), (height, width))[None],
            disp_t, valid_t)


# --------------------------------------------------------------------------- KITTI


def kitti_root(data_root: str | os.PathLike | None = None) -> Path:
    """Where KITTI lives: ``<data root>/kitti`` (data root: argument, ``$TUTORIAL_DATA`` or ``<project>/data``)."""
    return paths.data_root(data_root) / "kitti"


def _kitti_help(root: Path, what: str) -> str:
    return (
        f"{what}\n"
        "monodepth trains on KITTI raw: download the synced+rectified drives (monodepth's "
        "utils/kitti_archives_to_download.txt lists them, about 175 GB) from "
        "https://www.cvlibs.net/datasets/kitti/raw_data.php and unzip them into "
        f"{root}, giving e.g. {root}/2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000000.png "
        "(left) and .../image_03/data/... (right). A file list (monodepth's "
        "utils/filenames/kitti_train_files.txt) names one pair per line relative to that folder; "
        "monodepth's lists say .jpg because it converted the PNGs, so convert them or edit the list.\n"
        "For evaluation unzip KITTI 2015 stereo (data_scene_flow.zip from "
        f"https://www.cvlibs.net/datasets/kitti/eval_scene_flow.php) into {root}, giving "
        f"{root}/training/image_2, image_3 and disp_noc_0.\n"
        "Or pass data_root=... / set TUTORIAL_DATA."
    )


def read_file_list(file_list: str | os.PathLike) -> list[tuple[str, str]]:
    """Pairs ``(left_path, right_path)`` from a monodepth file list (``left right`` per line,
    blank lines skipped)."""
    pairs = []
    for number, line in enumerate(Path(file_list).read_text().splitlines(), start=1):
        fields = line.split()
        if len(fields) == 1:
            raise ValueError(f"{file_list}, line {number}: expected 'left_path right_path', got {line!r}")
        if fields:
            pairs.append((fields[0], fields[1]))
    return pairs


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as a float RGB tensor (3, H, W) in [0, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        return to_tensor(np.asarray(im.convert("RGB")))


def load_pair(left_path: str | os.PathLike, right_path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Both views of a pair at their stored size; ``ValueError`` if their sizes differ."""
    left, right = load_image(left_path), load_image(right_path)
    if left.shape != right.shape:
        raise ValueError(f"a stereo pair must have views of one size: {left_path} is "
                         f"{left.shape[2]}x{left.shape[1]}, {right_path} is {right.shape[2]}x{right.shape[1]} (WxH)")
    return left, right


class KittiStereo(Dataset):
    """KITTI raw stereo pairs from a monodepth file list, resized to ``(height, width)``.

    Item ``i`` is ``(left, right)``, float (3, height, width) in [0, 1] (no ground truth:
    the training signal is the other view). ``root`` is the KITTI folder (default
    :func:`kitti_root`); ``file_list`` a path, relative paths resolved against ``root``.
    """

    def __init__(self, file_list: str | os.PathLike, root: str | os.PathLike | None = None,
                 height: int = 256, width: int = 512):
        check_input_size(height, width)
        self.root = Path(root) if root is not None else kitti_root()
        if not self.root.is_dir():
            raise DatasetNotFoundError(_kitti_help(self.root, f"KITTI was not found: {self.root} does not exist."))
        file_list = Path(file_list)
        if not file_list.is_absolute() and not file_list.exists():
            file_list = self.root / file_list
        if not file_list.exists():
            raise DatasetNotFoundError(_kitti_help(self.root, f"the KITTI file list {file_list} does not exist."))
        self.size = (height, width)
        self.pairs = [(self.root / a, self.root / b) for a, b in read_file_list(file_list)]
        missing = [(n, p) for n, pair in enumerate(self.pairs, start=1) for p in pair if not p.exists()]
        if missing:
            shown = "; ".join(f"line {n}: {p}" for n, p in missing[:5])
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise DatasetNotFoundError(_kitti_help(
                self.root, f"{len(missing)} file(s) named in {file_list} are missing: {shown}{more}."))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        left, right = load_pair(*self.pairs[i])
        return resize(left, self.size), resize(right, self.size)


def read_kitti_disparity(path: str | os.PathLike) -> np.ndarray:
    """A KITTI 2015 disparity PNG (uint16, value / 256 = pixels, 0 = no ground truth) as
    float32 (H, W) pixels."""
    from PIL import Image

    with Image.open(path) as im:
        raw = np.asarray(im)
    if raw.dtype != np.uint16:
        raise ValueError(f"{path} is not a KITTI disparity map (a 16-bit PNG); its pixels are {raw.dtype}")
    return raw.astype(np.float32) / 256.0


class Kitti2015Stereo(Dataset):
    """KITTI 2015 stereo ``training`` pairs with ground truth, for evaluation.

    Item ``i`` is ``(left, right, gt_disp_px)``: the views resized to ``(height, width)``
    and the ground truth (1, H0, W0) at the original resolution (0 = no ground truth), from
    ``disp_noc_0`` (or ``disp_occ_0`` with ``occluded=True``). Original sizes vary, so
    batch with ``batch_size=1``; the original width picks the focal length
    (:func:`tutorial_lib.depth.errors.focal_length`).
    """

    def __init__(self, root: str | os.PathLike | None = None, height: int = 256, width: int = 512,
                 occluded: bool = False):
        check_input_size(height, width)
        self.root = Path(root) if root is not None else kitti_root()
        folder = self.root / "training"
        gt_dir = folder / ("disp_occ_0" if occluded else "disp_noc_0")
        for sub in ("image_2", "image_3", gt_dir.name):
            if not (folder / sub).is_dir():
                raise DatasetNotFoundError(_kitti_help(
                    self.root, f"KITTI 2015 stereo was not found: {folder / sub} does not exist."))
        self.size = (height, width)
        self.items = []
        for gt in sorted(gt_dir.glob("*_10.png")):
            left, right = folder / "image_2" / gt.name, folder / "image_3" / gt.name
            missing = [str(p) for p in (left, right) if not p.exists()]
            if missing:
                raise DatasetNotFoundError(_kitti_help(
                    self.root, f"KITTI 2015 is incomplete: {', '.join(missing)} missing."))
            self.items.append((left, right, gt))
        if not self.items:
            raise DatasetNotFoundError(_kitti_help(self.root, f"KITTI 2015 has no ground truth files in {gt_dir}."))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        left_path, right_path, gt_path = self.items[i]
        left, right = load_pair(left_path, right_path)
        gt = torch.from_numpy(read_kitti_disparity(gt_path))[None]
        if tuple(gt.shape[-2:]) != tuple(left.shape[-2:]):
            raise ValueError(f"{gt_path} is {gt.shape[2]}x{gt.shape[1]} but {left_path} is "
                             f"{left.shape[2]}x{left.shape[1]} (WxH)")
        return resize(left, self.size), resize(right, self.size), gt


__all__ = [
    "synthetic_stereo", "render_scene", "StereoTensorDataset", "synthetic_dataset", "motorcycle",
    "kitti_root", "read_file_list", "load_image", "load_pair", "KittiStereo", "read_kitti_disparity",
    "Kitti2015Stereo", "to_tensor", "resize",
]
