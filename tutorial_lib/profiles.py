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
    seeds: int = 1
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
    scratch_epochs: int | None = None
    kd_weight: float = 1.0
    kd_temperature: float = 4.0
    mask_loss: str = "layer_mean"
    frontier_lambdas: tuple[float, ...] = ()
    # Lesson 05: the plain shallower student (vgg8) at this width multiplier of VGG's widths,
    # and the students' epochs (the baseline's lr milestones scaled to them).
    student_width: float = 1.0
    student_epochs: int = 10
    student_lambda: float | None = None
    # Lesson 04: platform-aware constrained pruning (budgets on parameters, FLOPs, latency).
    bounds_batches: tuple[int, ...] = (1, 16, 64)
    signature_count: int = 8
    signature_epochs: int = 3
    signature_train_limit: int | None = None
    signature_lr: float = 1e-3
    signature_repeats: int = 2
    budget_params: int | None = None
    budget_params_fraction: float = 0.1
    budget_flops_fraction: float = 0.25
    budget_latency_fraction: float = 0.5
    latency_platform: str = "torch-cpu-1t"
    latency_batch: int = 1
    latency_margin: float = 0.925
    constrained_epochs: int = 6
    constrained_lr: float = 1e-3
    constrained_lambda: float = 1.0
    # Lesson 03: monodepth (VGG encoder-decoder) trained from stereo pairs, then pruned jointly.
    depth_data: str = "synthetic"
    depth_height: int = 128
    depth_width: int = 256
    depth_model_width: float = 1.0
    depth_epochs: int = 50
    depth_lr: float = 1e-4
    depth_batch_size: int = 8
    depth_train_pairs: int | None = None
    depth_test_pairs: int | None = None
    depth_prune_epochs: int = 10
    depth_prune_lambda: float = 0.01
    depth_mask_loss: str = "filter_sum"
    depth_mask_lr: float = 0.01
    depth_prune_lr: float = 1e-4
    depth_kd_weight: float = 0.0

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
    "seeds": _Spec(int, 1, 100, help="seeds of every ranked comparison (seed, seed + 1, ...): mean ± sd"),
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
    "scratch_epochs": _Spec(int, 1, 1000, optional=True,
                            help="epochs of lesson 02's from-scratch twins (None: the baseline's epochs, the "
                                 "schedule a network trained from scratch gets)"),
    "prune_lr": _Spec(float, 1e-7, 10.0, help="learning rate of the weights in joint pruning and fine-tuning"),
    "task_weight": _Spec(float, 0.0, 1000.0, help="weight of the cross-entropy term"),
    "kd_weight": _Spec(float, 0.0, 1000.0, help="weight of the KD term (teacher = frozen baseline)"),
    "kd_temperature": _Spec(float, 0.1, 100.0, help="KD temperature T"),
    "mask_loss": _Spec(str, choices=("layer_mean", "filter_sum"), help="mask term by name"),
    "frontier_lambdas": _Spec(list, help="extra mask-term weights for the accuracy/size frontier"),
    "student_width": _Spec(float, 1 / 64, 4.0, help="width multiplier of lesson 05's vgg8 student"),
    "student_epochs": _Spec(int, 1, 1000, help="training epochs of lesson 05's students"),
    "student_lambda": _Spec(float, 0.0, 1000.0, optional=True,
                            help="mask-term weight of lesson 05's joint-pruned student (None: the strongest "
                                 "of frontier_lambdas)"),
    "bounds_batches": _Spec(tuple, help="batch sizes of lesson 04's latency bounds (whole numbers >= 1)"),
    "signature_count": _Spec(int, 0, 10000, help="random signatures trained in lesson 04"),
    "signature_epochs": _Spec(int, 0, 1000, help="epochs each random signature trains from scratch"),
    "signature_train_limit": _Spec(int, 1, 10**8, optional=True,
                                   help="random signatures train on the first N training images"),
    "signature_lr": _Spec(float, 1e-6, 10.0, help="Adam learning rate of the random signatures"),
    "signature_repeats": _Spec(int, 0, 100, help="extra seeds one random signature is retrained with (noise)"),
    "budget_params": _Spec(int, 1, 10**10, optional=True,
                           help="parameter budget as a count (None: budget_params_fraction of the full model)"),
    "budget_params_fraction": _Spec(float, 1e-6, 1.0, help="parameter budget, fraction of the full model"),
    "budget_flops_fraction": _Spec(float, 1e-6, 1.0, help="FLOP budget, fraction of the full model"),
    "budget_latency_fraction": _Spec(float, 1e-6, 1.0, help="latency budget, fraction of the full model's"),
    "latency_platform": _Spec(str, help="platform of the latency budget"),  # choices: platforms.available()
    "latency_batch": _Spec(int, 1, 4096, help="batch size of the latency budget"),
    "latency_margin": _Spec(float, 0.5, 1.0,
                            help="the latency loop aims its table estimate at this fraction of the budget"),
    "constrained_epochs": _Spec(int, 1, 10000, help="max epochs of each adaptive constrained run"),
    "constrained_lr": _Spec(float, 1e-7, 1.0, help="Adam learning rate of the adaptive constrained loop"),
    "constrained_lambda": _Spec(float, 0.0, 1000.0, help="weight of the mask term in the constrained loop"),
    "depth_data": _Spec(str, choices=("synthetic", "kitti"), help="lesson 03's stereo pairs"),
    "depth_height": _Spec(int, 1, 4096, help="monodepth input height (128 must divide it)"),
    "depth_width": _Spec(int, 1, 8192, help="monodepth input width (128 must divide it)"),
    "depth_model_width": _Spec(float, 1 / 64, 4.0, help="channel width multiplier of monodepth"),
    "depth_epochs": _Spec(int, 0, 1000, help="training epochs of the monodepth baseline"),
    "depth_lr": _Spec(float, 1e-7, 1.0, help="Adam learning rate of the monodepth baseline"),
    "depth_batch_size": _Spec(int, 1, 4096),
    "depth_train_pairs": _Spec(int, 1, 10**7, optional=True,
                               help="stereo pairs to train on (synthetic: rendered; kitti: first N of the list)"),
    "depth_test_pairs": _Spec(int, 1, 10**6, optional=True, help="test pairs (synthetic: rendered; kitti: first N)"),
    "depth_prune_epochs": _Spec(int, 0, 1000, help="epochs of joint pruning of monodepth"),
    "depth_prune_lambda": _Spec(float, 0.0, 1000.0, help="weight of the mask term in monodepth's joint pruning"),
    "depth_mask_loss": _Spec(str, choices=("layer_mean", "filter_sum", "cost_sum"),
                             help="monodepth's mask term by name (masks.SPARSITY_LOSSES)"),
    "depth_mask_lr": _Spec(float, 1e-7, 10.0, help="Adam learning rate of the mask logits in monodepth pruning"),
    "depth_prune_lr": _Spec(float, 1e-7, 1.0, help="Adam learning rate of monodepth's weights in joint pruning"),
    "depth_kd_weight": _Spec(float, 0.0, 1000.0, help="weight of disparity distillation from the baseline in "
                                                      "monodepth's joint pruning (0: none, as published)"),
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        dataset="fake", arch="vgg11", width=1 / 16, epochs=1, batch_size=32, lr=0.05, seeds=2,
        momentum=0.9, weight_decay=5e-4, milestones=(), lr_gamma=0.1, augment=False,
        train_limit=128, test_limit=64, mask_epochs=1, mask_lambda=1.0, mask_lr=0.05, mask_weight_lr=0.01,
        prune_epochs=2, prune_lambda=0.01, mask_loss="filter_sum", frontier_lambdas=(0.05,),
        student_width=1 / 16, student_epochs=1,
        bounds_batches=(1, 4), signature_count=3, signature_epochs=1, signature_train_limit=64, signature_lr=1e-3,
        signature_repeats=1,
        budget_params=None, budget_params_fraction=0.3, budget_flops_fraction=0.3, budget_latency_fraction=0.95,
        latency_platform="torch-cpu-1t", latency_batch=1, latency_margin=0.925, constrained_epochs=2,
        constrained_lr=1e-3, constrained_lambda=1.0,
        depth_data="synthetic", depth_height=128, depth_width=128, depth_model_width=1 / 32, depth_epochs=1,
        depth_lr=1e-3, depth_batch_size=4, depth_train_pairs=8, depth_test_pairs=4, depth_prune_epochs=1,
        depth_prune_lambda=0.01, depth_mask_loss="filter_sum", depth_mask_lr=0.01, depth_prune_lr=1e-3,
        depth_kd_weight=1.0,
    ),
    "tutorial": dict(
        # lr 0.02: at 0.05 this 19-layer VGG sat at chance for four of its ten epochs; at 0.02 it
        # learns from the first epoch, so eight epochs reach about as far (lesson 01 measures it)
        dataset="digits_m", arch="vgg19", width=0.25, epochs=8, batch_size=64, lr=0.02, seeds=3,
        momentum=0.9, weight_decay=5e-4, milestones=(6, 7), lr_gamma=0.1, augment=False,
        mask_epochs=4, mask_lambda=1.0, mask_lr=0.01, mask_weight_lr=0.01,
        # frontier: 0.1 closed every layer but one to a single filter at 24x24, so the frontier
        # stops at 0.05, which is also lesson 05's pruned student (one pruning, cached, for both)
        prune_epochs=6, prune_lambda=0.025, mask_loss="filter_sum", frontier_lambdas=(0.01, 0.05),
        # lesson 05's pruned student: lambda 0.05, the frontier's hardest budget (about 10% of the
        # teacher's parameters), where distillation has the most to give
        student_width=0.125, student_epochs=4, student_lambda=0.05,
        bounds_batches=(1, 16, 64), signature_count=8, signature_epochs=3, signature_train_limit=None,
        signature_lr=1e-3, signature_repeats=2, budget_params=None, budget_params_fraction=0.1,
        budget_flops_fraction=0.25, budget_latency_fraction=0.5, latency_platform="torch-cpu-1t", latency_batch=1,
        latency_margin=0.925, constrained_epochs=6, constrained_lr=1e-3, constrained_lambda=1.0,
        depth_data="synthetic", depth_height=128, depth_width=256, depth_model_width=1 / 8, depth_epochs=16,
        depth_lr=1e-3, depth_batch_size=4, depth_train_pairs=256, depth_test_pairs=32, depth_prune_epochs=6,
        # priced mask term (FLOPs count: frames per second live at full resolution); weights at the
        # baseline's final rate, so the first epochs' closures do not throw it off its solution;
        # disparity KD from the baseline and slow gates (Adam 1e-3 on the logits), so that the
        # gates close only as fast as the teacher can show which filters the disparities need;
        # lambda 20 sits inside the band that prunes >= 75% without losing the image (10 kept too
        # much on one mask seed, 30 collapsed the first encoder convs on one CPU: see lesson 03)
        depth_prune_lambda=20.0, depth_mask_loss="cost_sum", depth_mask_lr=0.001, depth_prune_lr=2.5e-4,
        depth_kd_weight=1.0,
    ),
    "paper": dict(
        dataset="cifar100", arch="vgg19", width=1.0, epochs=164, batch_size=256, lr=0.1, seeds=3,
        momentum=0.9, weight_decay=5e-4, milestones=(81, 122), lr_gamma=0.1, augment=True,
        device="auto", download=True, num_workers=4, mask_epochs=10, mask_lambda=1.0,
        mask_lr=0.01, mask_weight_lr=0.01, prune_epochs=100, prune_lambda=1.0, mask_loss="layer_mean",
        frontier_lambdas=(0.5, 2.0), student_width=1.0, student_epochs=240,
        # adaptive constrained pruning as published: 2,004,846 parameters, Adam 1e-4; bounds over batch 1..256
        bounds_batches=(1, 2, 4, 8, 16, 32, 64, 128, 256), signature_count=20, signature_epochs=10,
        signature_train_limit=None, signature_lr=1e-3, signature_repeats=2, budget_params=2004846,
        budget_params_fraction=0.1, budget_flops_fraction=0.25, budget_latency_fraction=0.5,
        latency_platform="torch-cpu-1t", latency_batch=1, latency_margin=0.925, constrained_epochs=100,
        constrained_lr=1e-4, constrained_lambda=1.0,
        # monodepth's published recipe: KITTI, 256x512, Adam 1e-4 (halved at 3/5 and 4/5), batch 8, 50 epochs
        depth_data="kitti", depth_height=256, depth_width=512, depth_model_width=1.0, depth_epochs=50,
        depth_lr=1e-4, depth_batch_size=8, depth_train_pairs=None, depth_test_pairs=None, depth_prune_epochs=50,
        depth_prune_lambda=0.01, depth_mask_loss="filter_sum", depth_mask_lr=0.01, depth_prune_lr=1e-4,
        depth_kd_weight=0.0,  # the published pruning used the task and mask losses only
    ),
}


# The settings each cached artifact depends on: changing a lesson-02 setting must not
# retrain the baseline that every lesson shares.
BASELINE_FIELDS = (
    "dataset", "arch", "width", "epochs", "batch_size", "lr", "momentum", "weight_decay", "milestones",
    "lr_gamma", "augment", "seed", "threads", "train_limit", "test_limit", "max_steps",
)
# Lesson 03's monodepth baseline and its joint pruning (independent of the VGG settings above).
DEPTH_FIELDS = (
    "depth_data", "depth_height", "depth_width", "depth_model_width", "depth_epochs", "depth_lr",
    "depth_batch_size", "depth_train_pairs", "depth_test_pairs", "seed", "threads", "max_steps",
)
DEPTH_PRUNE_FIELDS = DEPTH_FIELDS + ("depth_prune_epochs", "depth_prune_lambda", "depth_mask_loss", "depth_mask_lr",
                                      "depth_prune_lr", "depth_kd_weight")
# Lesson 04's constrained runs (budgets, the loop's settings, and the mask term they share with lesson 02).
CONSTRAINT_FIELDS = BASELINE_FIELDS + (
    "budget_params", "budget_params_fraction", "budget_flops_fraction", "budget_latency_fraction",
    "latency_platform", "latency_batch", "latency_margin", "constrained_epochs", "constrained_lr",
    "constrained_lambda", "mask_lr", "mask_loss", "task_weight", "kd_weight", "kd_temperature",
)
MASK_RUN_FIELDS = BASELINE_FIELDS + ("mask_epochs", "mask_lambda", "mask_lr", "mask_weight_lr")
PRUNE_FIELDS = BASELINE_FIELDS + (
    "prune_epochs", "prune_lambda", "prune_lr", "mask_lr", "task_weight", "kd_weight", "kd_temperature", "mask_loss",
)


DEPTH_DIVISOR = 128  # models.monodepth.DIVISOR (not imported: profiles stays import-light)


def _choices(name: str) -> tuple[str, ...] | None:
    if name == "dataset":
        return _dataset_names()
    if name == "arch":
        return _arch_names()
    if name == "latency_platform":
        from tutorial_lib.measure import platforms

        return tuple(platforms.available())
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
        if name == "bounds_batches" and (not value or min(value) < 1):
            raise ValueError(f"parameter {name!r} = {value!r} is not valid: give one or more batch sizes >= 1")
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
    if name in ("depth_height", "depth_width") and value % DEPTH_DIVISOR:
        lo = value // DEPTH_DIVISOR * DEPTH_DIVISOR
        nearest = " or ".join(str(v) for v in (lo, lo + DEPTH_DIVISOR) if v > 0)
        raise ValueError(f"parameter {name!r} = {value} is not valid: {DEPTH_DIVISOR} must divide monodepth's "
                         f"input height and width (seven stride-2 convs); nearest valid: {nearest}")
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


def resolve_parameters(profile: str = "tutorial", **overrides: Any) -> Config:
    """:func:`resolve` for a notebook's configuration cell: first rejects any name that
    papermill injected but the notebook's parameters cell does not declare
    (:func:`tutorial_lib.parameters.check_injected`), then validates the values."""
    from tutorial_lib import parameters

    parameters.check_injected()
    return resolve(profile, **overrides)


def _overrides_of(cfg: Config) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in SPECS}


def describe(profile: str) -> str:
    """One line per setting of a profile, for the README and the notebooks."""
    cfg = resolve(profile)
    return "\n".join(f"{name:13s} {getattr(cfg, name)!r}" for name in SPECS)
