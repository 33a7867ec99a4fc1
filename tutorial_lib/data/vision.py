"""Real datasets through torchvision: CIFAR-10/100, ImageNet (ImageFolder), and FakeData.

Real data is read from the data root (``data_root`` parameter, ``$TUTORIAL_DATA`` or
``<project>/data``). A missing dataset raises :class:`DatasetNotFoundError` saying where to
put it and how to get it; torchvision downloads it only when ``download=True`` and the
network allows.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from torchvision import datasets, transforms

from tutorial_lib import paths
from tutorial_lib.data import DataBundle, DatasetNotFoundError, register

# Normalisation of the group's public VGG19-BN / CIFAR-100 code.
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2761)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


def _unchecked(cls):
    """The torchvision CIFAR class with only its md5 checks replaced by existence checks,
    so that small fixtures in the real on-disk layout load through the real code."""

    class Unchecked(cls):
        def _check_integrity(self) -> bool:
            return not _missing_files(Path(self.root) / self.base_folder, cls)

        def _load_meta(self) -> None:
            path = Path(self.root) / self.base_folder / self.meta["filename"]
            with open(path, "rb") as f:
                meta = pickle.load(f, encoding="latin1")
            self.classes = meta[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    Unchecked.__name__ = cls.__name__
    return Unchecked


def _expected_files(cls) -> list[str]:
    return [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def _missing_files(folder: Path, cls) -> list[str]:
    return [n for n in _expected_files(cls) if not (folder / n).exists()]


def _cifar(cfg, name: str, cls, mean, std, num_classes: int) -> DataBundle:
    root = paths.data_root(cfg.data_root)
    folder = root / cls.base_folder
    reader = _unchecked(cls)
    if not folder.exists() and cfg.download:
        try:
            cls(str(root), train=True, download=True)
        except Exception as err:  # no network, or a partial file
            raise DatasetNotFoundError(_cifar_help(name, root, cls) + f"\n(download failed: {err})") from err
    if _missing_files(folder, cls):
        raise DatasetNotFoundError(_cifar_help(name, root, cls))
    normalize = transforms.Normalize(mean, std)
    train_tf = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if cfg.augment else []
    train = reader(str(root), train=True, transform=transforms.Compose([*train_tf, transforms.ToTensor(), normalize]))
    test = reader(str(root), train=False, transform=transforms.Compose([transforms.ToTensor(), normalize]))
    return DataBundle(name=name, train=train, test=test, num_classes=num_classes, image_size=32,
                      description=f"{name.upper()} from {folder}, {len(train)} train / {len(test)} test")


def _cifar_help(name: str, root: Path, cls) -> str:
    files = ", ".join(_expected_files(cls))
    return (f"{name} was not found under {root / cls.base_folder} (expected files: {files}).\n"
            f"Get it with: mkdir -p {root} && curl -L {CIFAR_URLS[name]} | tar xz -C {root}\n"
            f"or pass data_root=... (or set TUTORIAL_DATA) to the folder that holds {cls.base_folder}/, "
            f"or download=True where the network allows.")


@register("cifar10")
def load_cifar10(cfg) -> DataBundle:
    return _cifar(cfg, "cifar10", datasets.CIFAR10, CIFAR10_MEAN, CIFAR10_STD, 10)


@register("cifar100")
def load_cifar100(cfg) -> DataBundle:
    return _cifar(cfg, "cifar100", datasets.CIFAR100, CIFAR100_MEAN, CIFAR100_STD, 100)


@register("imagenet")
def load_imagenet(cfg) -> DataBundle:
    """ImageNet as an ImageFolder tree: ``<root>/imagenet/{train,val}/<wnid>/*.JPEG``."""
    root = paths.data_root(cfg.data_root) / "imagenet"
    for split in ("train", "val"):
        if not (root / split).is_dir() or not any((root / split).iterdir()):
            raise DatasetNotFoundError(
                f"imagenet was not found: expected class folders under {root / split}.\n"
                "Get ILSVRC2012 from image-net.org (a login is needed), unpack it as "
                f"{root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG (valprep.sh sorts "
                "the validation images into class folders), or pass data_root=... / set TUTORIAL_DATA."
            )
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    center = [transforms.Resize(256), transforms.CenterCrop(224)]
    train_tf = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()] if cfg.augment else center
    train = datasets.ImageFolder(root / "train", transforms.Compose([*train_tf, transforms.ToTensor(), normalize]))
    test = datasets.ImageFolder(root / "val", transforms.Compose([*center, transforms.ToTensor(), normalize]))
    if train.classes != test.classes:
        raise DatasetNotFoundError(f"imagenet train and val class folders differ under {root}")
    return DataBundle(name="imagenet", train=train, test=test, num_classes=len(train.classes), image_size=224,
                      description=f"ImageNet ImageFolder at {root}, {len(train)} train / {len(test)} val, "
                      f"{len(train.classes)} classes")


@register("fake")
def load_fake(cfg) -> DataBundle:
    """torchvision FakeData: random images for the smoke profile only (accuracy is chance)."""
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    n_train, n_test = cfg.train_limit or 256, cfg.test_limit or 128
    train = datasets.FakeData(n_train, (3, 32, 32), 10, transform=tf, random_offset=cfg.seed)
    test = datasets.FakeData(n_test, (3, 32, 32), 10, transform=tf, random_offset=cfg.seed + 10**6)
    return DataBundle(name="fake", train=train, test=test, num_classes=10, image_size=32,
                      description=f"torchvision FakeData (random noise, smoke test only), {n_train} train / "
                      f"{n_test} test")

