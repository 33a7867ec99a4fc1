import numpy as np
import pytest
import torch

from fixtures import write_cifar100, write_imagefolder
from tutorial_lib import data, profiles
from tutorial_lib.data import digits


def test_digits_split_is_fixed_and_stratified():
    x_tr, y_tr, x_te, y_te = digits.digit_images()
    assert x_tr.shape[1:] == (digits.IMAGE_SIZE,) * 2 and len(x_tr) + len(x_te) == 1797
    assert len(x_te) == 540
    assert np.bincount(y_te).min() >= 50  # every class in the test split
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0


def test_digits_loader():
    bundle = data.load(profiles.resolve("tutorial", dataset="digits"))
    x, y = bundle.train[0]
    assert x.shape == (3, digits.IMAGE_SIZE, digits.IMAGE_SIZE) and bundle.num_classes == 10
    assert bundle.image_size == digits.IMAGE_SIZE
    assert len(bundle.train) == 1257 and len(bundle.test) == 540


def test_digits_m_is_deterministic_and_uses_disjoint_photographs():
    assert not set(digits.TRAIN_PHOTOS) & set(digits.TEST_PHOTOS)
    a = digits.digits_m_arrays(seed=0)
    b = digits.digits_m_arrays.__wrapped__(seed=0)  # rebuilt, not the cached copy
    c = digits.digits_m_arrays.__wrapped__(seed=1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    train, y_tr, test, y_te = a
    assert train.dtype == np.uint8 and train.shape[1:] == (digits.IMAGE_SIZE, digits.IMAGE_SIZE, 3)
    assert len(test) >= 1500 and len(train) == 4 * 1257
    assert np.array_equal(y_te[:540], y_te[540:1080])  # several blends of every test digit


def test_digits_m_loader_normalises():
    bundle = data.load(profiles.resolve("tutorial"))
    x = torch.stack([bundle.train[i][0] for i in range(0, len(bundle.train), 7)])
    assert x.mean().abs() < 0.1 and 0.8 < x.std() < 1.2
    assert bundle.name == "digits_m" and "digits_m" in bundle.description


def test_cifar100_real_loader_on_a_fixture(tmp_path):
    write_cifar100(tmp_path)
    cfg = profiles.resolve("paper", data_root=str(tmp_path), device="cpu", download=False, num_workers=0)
    bundle = data.load(cfg)
    assert (len(bundle.train), len(bundle.test), bundle.num_classes) == (40, 20, 100)
    x, y = bundle.train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 100
    assert type(bundle.train).__name__ == "CIFAR100"


def test_missing_cifar_says_where_and_how(tmp_path):
    cfg = profiles.resolve("paper", data_root=str(tmp_path / "nothing"), device="cpu", download=False)
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load(cfg)
    text = str(err.value)
    assert str(tmp_path / "nothing" / "cifar-100-python") in text
    assert "cifar-100-python.tar.gz" in text and "data_root" in text


def test_failed_download_still_explains(tmp_path, monkeypatch):
    from torchvision import datasets

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.CIFAR10, "download", no_network)
    cfg = profiles.resolve("paper", data_root=str(tmp_path), device="cpu", download=True)
    with pytest.raises(data.DatasetNotFoundError, match="download failed: network unreachable"):
        data.load(cfg)


def test_imagenet_imagefolder_on_real_jpegs(tmp_path):
    write_imagefolder(tmp_path)
    cfg = profiles.resolve("paper", dataset="imagenet", arch="vgg11", data_root=str(tmp_path), device="cpu")
    bundle = data.load(cfg)
    assert (len(bundle.train), len(bundle.test), bundle.num_classes) == (6, 6, 2)
    x, y = bundle.test[0]
    assert x.shape == (3, 224, 224)


def test_missing_imagenet_says_where(tmp_path):
    cfg = profiles.resolve("paper", dataset="imagenet", data_root=str(tmp_path), device="cpu")
    with pytest.raises(data.DatasetNotFoundError, match="imagenet/train"):
        data.load(cfg)


def test_limits_and_fake(smoke_cfg):
    bundle = data.load(smoke_cfg)
    assert (len(bundle.train), len(bundle.test)) == (smoke_cfg.train_limit, smoke_cfg.test_limit)
    assert "smoke test only" in bundle.description


def test_loaders_shuffle_reproducibly(smoke_cfg):
    bundle = data.load(smoke_cfg)
    first = [next(iter(data.loaders(bundle, smoke_cfg.batch_size, smoke_cfg.run)[0]))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])
