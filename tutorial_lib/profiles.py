"""The three run profiles (smoke, tutorial, paper) and the validation of overrides.

A notebook's ``parameters`` cell names a profile plus optional overrides; ``resolve``
turns them into one frozen :class:`Config` or rejects them *before any work is done*,
with a message that lists the valid choices.

- ``smoke``: seconds per notebook, synthetic ``fake`` data; used by the tests.
- ``tutorial``: minutes on a 2-core laptop, on ``digits_m`` that ships with the package;
  the outputs committed in ``notebooks/`` come from this profile.
- ``paper``: the published VGG19-BN / CIFAR-100 recipe (SGD lr 0.1, momentum 0.9,
  weight decay 5e-4, batch 256, 164 epochs, lr x0.1 at epochs 81 and 122, crop 32 pad 4 +
  flip), meant for a GPU.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Config:
    """Every setting a lesson reads. Build it with :func:`resolve`, not by hand."""

    profile: str
    dataset: str
    arch: str
    width: float
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    milestones: tuple[int, ...]
    lr_gamma: float
    augment: bool
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    data_root: str | None = None
    download: bool = False
    train_limit: int | None = None
    test_limit: int | None = None
    max_steps: int | None = None
    num_workers: int = 0
    # Lesson 01: a short run in which a sparsity term on the masks turns channels off.
    mask_epochs: int = 1
    mask_lambda: float = 1.0
    mask_lr: float = 0.01
    mask_weight_lr: float = 0.01
    # Lesson 02: joint pruning (task + KD + lambda * mask term), defaults of the group's code.
    prune_epochs: int = 6
    prune_lambda: float = 1.0
    prune_lr: float = 0.001
    task_weight: float = 10.0
    kd_weight: float = 1.0
    kd_temperature: float = 4.0
    mask_loss: str = "layer_mean"
    frontier_lambdas: tuple[float, ...] = ()
    # Lesson 05: the plain shallower student (vgg8) at this width multiplier of VGG's widths.
    student_width: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Config":
        """A validated copy with some settings changed."""
        return resolve(self.profile, **{**_overrides_of(self), **changes})


@dataclass(frozen=True)
class _Spec:
    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False
    help: str = ""


def _dataset_names() -> tuple[str, ...]:
    from tutorial_lib import data

    return tuple(data.names())


def _arch_names() -> tuple[str, ...]:
    from tutorial_lib.models import vgg

    return tuple(vgg.VGG_SIGNATURES)


SPECS: dict[str, _Spec] = {
    "dataset": _Spec(str, help="dataset name"),  # choices filled lazily (see _choices)
    "arch": _Spec(str, help="VGG depth"),
    "width": _Spec(float, 1 / 64, 4.0, help="channel width multiplier"),
    "epochs": _Spec(int, 0, 1000, help="training epochs of the baseline"),
    "batch_size": _Spec(int, 1, 4096),
    "lr": _Spec(float, 1e-6, 10.0, help="SGD learning rate"),
    "momentum": _Spec(float, 0.0, 0.999),
    "weight_decay": _Spec(float, 0.0, 0.1),
    "milestones": _Spec(tuple, help="epochs at which the lr is multiplied by lr_gamma"),
    "lr_gamma": _Spec(float, 1e-4, 1.0),
    "augment": _Spec(bool),
    "seed": _Spec(int, 0, 2**31 - 1),
    "device": _Spec(str, help="cpu, cuda, cuda:N or auto"),
    "threads": _Spec(int, 1, 256, help="torch CPU threads (fixed for reproducible timings)"),
    "data_root": _Spec(str, optional=True, help="folder holding real datasets"),
    "download": _Spec(bool, help="let torchvision download a missing dataset"),
    "train_limit": _Spec(int, 1, 10**8, optional=True, help="use only the first N training images"),
    "test_limit": _Spec(int, 1, 10**8, optional=True, help="use only the first N test images"),
    "max_steps": _Spec(int, 1, 10**9, optional=True, help="stop each training run after N steps"),
    "num_workers": _Spec(int, 0, 64),
    "mask_epochs": _Spec(int, 0, 1000),
    "mask_lambda": _Spec(float, 0.0, 1000.0, help="weight of the mask sparsity term"),
    "mask_lr": _Spec(float, 1e-6, 10.0, help="learning rate of the mask logits"),
    "mask_weight_lr": _Spec(float, 1e-6, 10.0, help="learning rate of the weights during the mask run"),
    "prune_epochs": _Spec(int, 0, 1000, help="epochs of joint pruning (and the budget of every compared method)"),
    "prune_lambda": _Spec(float, 0.0, 1000.0, help="weight of the mask term in joint pruning"),
    "prune_lr": _Spec(float, 1e-7, 10.0, help="learning rate of the weights in joint pruning and fine-tuning"),
    "task_weight": _Spec(float, 0.0, 1000.0, help="weight of the cross-entropy term"),
    "kd_weight": _Spec(float, 0.0, 1000.0, help="weight of the KD term (teacher = frozen baseline)"),
    "kd_temperature": _Spec(float, 0.1, 100.0, help="KD temperature T"),
    "mask_loss": _Spec(str, choices=("layer_mean", "filter_sum"), help="mask term by name"),
    "frontier_lambdas": _Spec(list, help="extra mask-term weights for the accuracy/size frontier"),
    "student_width": _Spec(float, 1 / 64, 4.0, help="width multiplier of lesson 05's vgg8 student"),
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        dataset="fake", arch="vgg11", width=1 / 16, epochs=1, batch_size=32, lr=0.05,
        momentum=0.9, weight_decay=5e-4, milestones=(), lr_gamma=0.1, augment=False,
        train_limit=128, test_limit=64, mask_epochs=1, mask_lambda=1.0, mask_lr=0.05, mask_weight_lr=0.01,
        prune_epochs=2, prune_lambda=0.01, mask_loss="filter_sum", frontier_lambdas=(0.05,),
        student_width=1 / 16,
    ),
    "tutorial": dict(
        dataset="digits_m", arch="vgg19", width=0.25, epochs=10, batch_size=64, lr=0.05,
        momentum=0.9, weight_decay=5e-4, milestones=(7, 9), lr_gamma=0.1, augment=False,
        mask_epochs=4, mask_lambda=1.0, mask_lr=0.01, mask_weight_lr=0.01,
        prune_epochs=10, prune_lambda=0.012, mask_loss="filter_sum", frontier_lambdas=(0.005, 0.07),
        student_width=0.125,
    ),
    "paper": dict(
        dataset="cifar100", arch="vgg19", width=1.0, epochs=164, batch_size=256, lr=0.1,
        momentum=0.9, weight_decay=5e-4, milestones=(81, 122), lr_gamma=0.1, augment=True,
        device="auto", download=True, num_workers=4, mask_epochs=10, mask_lambda=1.0,
        mask_lr=0.01, mask_weight_lr=0.01, prune_epochs=100, prune_lambda=1.0, mask_loss="layer_mean",
        frontier_lambdas=(0.5, 2.0), student_width=1.0,
    ),
}


# The settings each cached artifact depends on: changing a lesson-02 setting must not
# retrain the baseline that every lesson shares.
BASELINE_FIELDS = (
    "dataset", "arch", "width", "epochs", "batch_size", "lr", "momentum", "weight_decay", "milestones",
    "lr_gamma", "augment", "seed", "threads", "train_limit", "test_limit", "max_steps",
)
MASK_RUN_FIELDS = BASELINE_FIELDS + ("mask_epochs", "mask_lambda", "mask_lr", "mask_weight_lr")
PRUNE_FIELDS = BASELINE_FIELDS + (
    "prune_epochs", "prune_lambda", "prune_lr", "mask_lr", "task_weight", "kd_weight", "kd_temperature", "mask_loss",
)


def _choices(name: str) -> tuple[str, ...] | None:
    if name == "dataset":
        return _dataset_names()
    if name == "arch":
        return _arch_names()
    return SPECS[name].choices


def _check(name: str, value: Any) -> Any:
    spec = SPECS[name]
    if value is None:
        if spec.optional:
            return None
        raise ValueError(f"parameter {name!r} may not be None")
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"parameter {name!r} must be True or False, got {value!r}")
        return value
    if spec.kind is list:  # a list of non-negative numbers
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            raise ValueError(f"parameter {name!r} must be a list of numbers >= 0, got {value!r}")
        return tuple(float(v) for v in value)
    if spec.kind is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            raise ValueError(f"parameter {name!r} must be a list of epoch numbers >= 0, got {value!r}")
        return tuple(sorted(value))
    if spec.kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"parameter {name!r} must be a whole number, got {value!r}")
    elif spec.kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"parameter {name!r} must be a number, got {value!r}")
        value = float(value)
    elif spec.kind is str:
        if not isinstance(value, str):
            raise ValueError(f"parameter {name!r} must be a string, got {value!r}")
    if spec.low is not None and not (spec.low <= value <= spec.high):
        raise ValueError(
            f"parameter {name!r} = {value!r} is out of range: valid values lie in "
            f"[{spec.low:g}, {spec.high:g}]" + (f" ({spec.help})" if spec.help else "")
        )
    choices = _choices(name)
    if choices is not None and value not in choices:
        raise ValueError(f"parameter {name!r} = {value!r} is not known; valid choices: {', '.join(choices)}")
    if name == "device":
        value = _check_device(value)
    return value


def _check_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"parameter 'device' = {device!r} is not known; valid choices: cpu, cuda, cuda:N, auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here; valid choices: cpu, auto")
    return device


def resolve(profile: str = "tutorial", **overrides: Any) -> Config:
    """Validate ``profile`` and ``overrides`` and return the :class:`Config`.

    Overrides whose value is ``None`` keep the profile's setting (that is how a notebook's
    parameters cell says "use the default"). Unknown names, bad types and out-of-range
    values raise ``ValueError`` naming the valid choices.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    unknown = sorted(set(overrides) - set(SPECS))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}; valid parameters: {', '.join(sorted(SPECS))}"
        )
    settings = dict(PROFILES[profile])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    defaults = {f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING}
    merged = {**defaults, **settings}
    checked = {name: _check(name, merged[name]) for name in SPECS}
    return Config(profile=profile, **checked)


def _overrides_of(cfg: Config) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in SPECS}


def describe(profile: str) -> str:
    """One line per setting of a profile, for the README and the notebooks."""
    cfg = resolve(profile)
    return "\n".join(f"{name:13s} {getattr(cfg, name)!r}" for name in SPECS)
