"""The embedded datasets: scikit-learn's handwritten ``digits`` and ``digits_m``.

``digits``: 1,797 real 8x8 scans (Alpaydin & Kaynak, UCI), upsampled to 24x24, grey
copied to three channels, one fixed stratified 70/30 split. 24x24 rather than CIFAR's 32x32:
the digits hold 8x8 of information, the VGG keeps all five stages (its pools round up), and
a training step costs about 0.7 of the 32x32 one at the same baseline accuracy (measured:
87.3% vs 87.5%, 31.5 s vs 43.6 s for the baseline on 2 cores), which lets the lessons run
three seeds in a sitting.

``digits_m``: the MNIST-M construction (Ganin & Lempitsky, 2015) applied to those digits.
Each digit is blended over a colour patch cut from a real photograph as
``|patch - strength * digit|`` per channel. Training patches come from six photographs,
test patches from four others, so the test set asks for generalisation to new textures.
The construction is deterministic for a seed. Plain ``digits`` is too easy to tell
pruning methods apart (a small VGG scores about 99% whatever is removed); ``digits_m``
brings the baseline down to about 90% so that methods separate.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from tutorial_lib.data import DataBundle, register

IMAGE_SIZE = 24
TEST_FRACTION = 0.3
# Photographs shipped inside the scikit-image and scikit-learn wheels (no download).
TRAIN_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china", "motorcycle_left")
TEST_PHOTOS = ("flower", "hubble_deep_field", "immunohistochemistry", "retina")


@lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits upsampled to IMAGE_SIZE x IMAGE_SIZE in [0, 1]: ``(x_train, y_train, x_test, y_test)``, fixed split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = torch.from_numpy(digits.images / 16.0).float().unsqueeze(1)
    large = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    images = large.squeeze(1).clamp(0, 1).numpy()
    idx = np.arange(len(images))
    train_idx, test_idx = train_test_split(idx, test_size=TEST_FRACTION, stratify=digits.target, random_state=0)
    return images[train_idx], digits.target[train_idx], images[test_idx], digits.target[test_idx]


def photograph(name: str) -> np.ndarray:
    """An RGB photograph (H, W, 3) in [0, 1] from the scikit-image / scikit-learn wheels."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    else:
        from skimage import data as skdata

        img = skdata.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skdata, name)()
    return np.asarray(img, dtype=np.float32)[..., :3] / 255.0


def _pyramid(photo: np.ndarray, factors: tuple[int, ...]) -> list[np.ndarray]:
    """The photo average-pooled by each factor: patches at several scales of texture."""
    t = torch.from_numpy(photo).permute(2, 0, 1).unsqueeze(0)
    return [F.avg_pool2d(t, f).squeeze(0).permute(1, 2, 0).numpy() if f > 1 else photo for f in factors]


def blend(digits: np.ndarray, photos: tuple[str, ...], blends: int, rng: np.random.Generator, jitter: int = 3,
          scales: tuple[int, ...] = (1, 2, 4), strength: tuple[float, float] = (0.3, 0.85),
          contrast: tuple[float, float] = (0.6, 1.4)) -> np.ndarray:
    """MNIST-M blends: ``blends`` images per digit, as uint8 (N * blends, IMAGE_SIZE, IMAGE_SIZE, 3).

    For each image: a random photograph and texture scale, a random IMAGE_SIZE-square patch with its
    contrast scaled, the digit shifted by up to ``jitter`` pixels and weighted by a random
    ``strength``; output ``|patch - strength * digit|``.
    """
    pyramids = [_pyramid(photograph(p), scales) for p in photos]
    n = len(digits)
    out = np.empty((n * blends, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for k in range(n * blends):
        dy, dx = rng.integers(-jitter, jitter + 1, size=2)
        digit = np.roll(digits[k % n], (dy, dx), axis=(0, 1))
        level = pyramids[rng.integers(len(photos))][rng.integers(len(scales))]
        y = rng.integers(level.shape[0] - IMAGE_SIZE + 1)
        x = rng.integers(level.shape[1] - IMAGE_SIZE + 1)
        patch = level[y : y + IMAGE_SIZE, x : x + IMAGE_SIZE]
        mean = patch.mean(axis=(0, 1), keepdims=True)
        patch = np.clip(mean + rng.uniform(*contrast) * (patch - mean), 0, 1)
        image = np.abs(patch - rng.uniform(*strength) * digit[..., None])
        out[k] = np.round(image * 255).astype(np.uint8)
    return out


@lru_cache(maxsize=4)
def digits_m_arrays(seed: int = 0, train_blends: int = 4, test_blends: int = 3):
    """``(x_train, y_train, x_test, y_test)`` of digits_m as uint8 HWC images and int labels."""
    x_tr, y_tr, x_te, y_te = digit_images()
    rng = np.random.default_rng(seed)
    train = blend(x_tr, TRAIN_PHOTOS, train_blends, rng)
    test = blend(x_te, TEST_PHOTOS, test_blends, rng)
    return train, np.tile(y_tr, train_blends), test, np.tile(y_te, test_blends)


def _to_tensor_dataset(images: np.ndarray, labels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> TensorDataset:
    x = torch.from_numpy(images).float().div(255).permute(0, 3, 1, 2)
    x = (x - torch.from_numpy(mean).view(1, -1, 1, 1)) / torch.from_numpy(std).view(1, -1, 1, 1)
    return TensorDataset(x.contiguous(), torch.from_numpy(np.asarray(labels)).long())


def _bundle(name: str, train, y_tr, test, y_te, description: str) -> DataBundle:
    pixels = train.reshape(-1, 3).astype(np.float64) / 255
    mean, std = pixels.mean(0).astype(np.float32), pixels.std(0).astype(np.float32)
    return DataBundle(name=name, train=_to_tensor_dataset(train, y_tr, mean, std),
                      test=_to_tensor_dataset(test, y_te, mean, std), num_classes=10, image_size=IMAGE_SIZE,
                      description=description)


@register("digits")
def load_digits(cfg) -> DataBundle:
    x_tr, y_tr, x_te, y_te = digit_images()
    to_rgb = lambda a: np.repeat(np.round(a * 255).astype(np.uint8)[..., None], 3, axis=-1)  # noqa: E731
    return _bundle("digits", to_rgb(x_tr), y_tr, to_rgb(x_te), y_te,
                   f"scikit-learn digits, {IMAGE_SIZE}x{IMAGE_SIZE}, {len(y_tr)} train / {len(y_te)} test")


@register("digits_m")
def load_digits_m(cfg) -> DataBundle:
    train, y_tr, test, y_te = digits_m_arrays()
    return _bundle("digits_m", train, y_tr, test, y_te, f"digits_m (MNIST-M blend of scikit-learn digits), "
                   f"{IMAGE_SIZE}x{IMAGE_SIZE}, {len(y_tr)} train / {len(y_te)} test")
