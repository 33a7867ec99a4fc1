"""The three run profiles (smoke, tutorial, paper) and the validation of overrides.

A notebook's ``parameters`` cell names a profile plus optional overrides; ``resolve``
turns them into one frozen :class:`Config`, made of the recipes in
:mod:`tutorial_lib.recipes`, or rejects them *before any work is done*, with a message that
lists the valid choices.

- ``smoke``: seconds per notebook, synthetic ``fake`` data; used by the tests.
- ``tutorial``: minutes on a 2-core laptop, on ``digits_m`` that ships with the package;
  the outputs committed in ``notebooks/`` come from this profile (the recipes' defaults).
- ``paper``: the published VGG19-BN / CIFAR-100 recipe (SGD lr 0.1, momentum 0.9,
  weight decay 5e-4, batch 256, 164 epochs, lr x0.1 at epochs 81 and 122, crop 32 pad 4 +
  flip), meant for a GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tutorial_lib import recipes
from tutorial_lib.recipes import (Baseline, Constraints, Depth, DepthPruning, Gates, Joint, MaskRun, Objective,
                                  Quant, Run, Signatures, Students)

# Each knob's parameter name, and the Config attribute of the recipe that holds it.
KNOBS: dict[str, str] = {f.name: attr for attr, cls in recipes.RECIPES.items() for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class Config:
    """A profile's recipes, one per concern. Build it with :func:`resolve`, not by hand.

    A step takes the recipe it reads (``cfg.depth``, ``cfg.joint``); a lesson's cells may also
    read a knob by its parameter name (``cfg.prune_lambda`` is ``cfg.joint.prune_lambda``)."""

    profile: str
    run: Run
    baseline: Baseline
    gates: Gates
    mask_run: MaskRun
    objective: Objective
    joint: Joint
    students: Students
    signatures: Signatures
    constraints: Constraints
    depth: Depth
    depth_pruning: DepthPruning
    quant: Quant

    def __getattr__(self, name: str) -> Any:
        if name not in KNOBS:
            raise AttributeError(f"Config has no setting {name!r}")
        return getattr(object.__getattribute__(self, KNOBS[name]), name)

    def to_dict(self) -> dict[str, Any]:
        """Every knob by its parameter name, and the profile."""
        return {"profile": self.profile, **{name: getattr(self, name) for name in KNOBS}}

    def replace(self, **changes: Any) -> "Config":
        """A validated copy with some knobs (by parameter name) changed."""
        _reject_unknown(changes)
        return dataclasses.replace(self, **{attr: getattr(self, attr).replace(
            **{k: v for k, v in changes.items() if KNOBS[k] == attr})
            for attr in {KNOBS[k] for k in changes}})


# Each profile as its differences from the recipes' defaults (the tutorial profile).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        dataset="fake", arch="vgg11", width=1 / 16, epochs=1, batch_size=32, lr=0.05, seeds=2, milestones=(),
        train_limit=128, test_limit=64, mask_epochs=1, mask_lr=0.05,
        prune_epochs=2, prune_lambda=0.01, prune_settle_epochs=1, frontier_lambdas=(0.05,), student_width=1 / 16,
        student_epochs=1, student_lambda=None, bounds_batches=(1, 4), signature_count=3, signature_epochs=1,
        signature_train_limit=64, signature_repeats=1, budget_params_fraction=0.3, budget_flops_fraction=0.3,
        budget_latency_fraction=0.95, constrained_epochs=2,
        depth_width=128, depth_model_width=1 / 32, depth_epochs=1, depth_train_pairs=8, depth_test_pairs=4,
        depth_prune_epochs=1, depth_prune_lambda=0.01, depth_mask_loss="filter_sum", depth_mask_lr=0.01,
        depth_prune_lr=1e-3,
        quant_bits=(1, 4), quant_steps=2, quant_draws=1, search_steps=2, agent_episodes=2, probe_steps=1,
        held_out_images=16, calibration_batches=1,
    ),
    "tutorial": {},
    "paper": dict(
        dataset="cifar100", width=1.0, epochs=164, batch_size=256, lr=0.1, milestones=(81, 122), augment=True,
        device="auto", download=True, num_workers=4, mask_epochs=10,
        # joint pruning as in the group's code: one Adam at 1e-4 for weights and masks, layer_mean, lambda 1
        prune_epochs=100, prune_lambda=1.0, mask_loss="layer_mean", mask_optimizer="adam", mask_lr=1e-4, prune_lr=1e-4,
        prune_settle_epochs=0, prune_warmup_epochs=0, slimming_s=1e-4, slimming_sparse_share=0.5,
        frontier_lambdas=(0.5, 2.0), student_width=1.0, student_epochs=240, student_lambda=None,
        # adaptive constrained pruning as published: 2,004,846 parameters, Adam 1e-4; bounds over batch 1..256
        bounds_batches=(1, 2, 4, 8, 16, 32, 64, 128, 256), signature_count=20, signature_epochs=10,
        budget_params=2004846, constrained_epochs=100, constrained_lr=1e-4, constrained_lambda=1.0,
        constrained_patience_over=2, constrained_patience_under=4, constrained_mask_loss="layer_mean",
        # monodepth's published recipe: KITTI, 256x512, Adam 1e-4 (halved at 3/5 and 4/5), batch 8, 50 epochs
        depth_data="kitti", depth_height=256, depth_width=512, depth_model_width=1.0, depth_epochs=50,
        depth_lr=1e-4, depth_batch_size=8, depth_train_pairs=None, depth_test_pairs=None, depth_prune_epochs=50,
        depth_prune_lambda=0.01, depth_mask_loss="filter_sum", depth_mask_lr=0.01, depth_prune_lr=1e-4,
        depth_kd_weight=0.0,  # the published pruning used the task and mask losses only
        depth_augment=True,
        # LSQ fine-tunes 90 epochs (CIFAR-10/ImageNet); here about 80 epochs of CIFAR-100 at batch 64
        quant_steps=64000, quant_lr=0.01, search_steps=2000, agent_episodes=200, probe_steps=200,
        held_out_images=5000, calibration_batches=32,
    ),
}


def deviations(cfg: Config, *names: str) -> pd.DataFrame:
    """Where ``cfg`` departs from the published methods, in the given recipes (attribute names,
    e.g. ``"constraints"``; none: all): knob, value here, published value and why."""
    rows = [{"recipe": attr, **d} for attr in (names or recipes.RECIPES)
            for d in getattr(cfg, attr).deviations()]
    return pd.DataFrame(rows, columns=["recipe", "knob", "here", "published", "why"])


def describe_deviations(cfg: Config, *names: str) -> str:
    """:func:`deviations` for a lesson to print: one line per reason, naming each knob it covers
    with its value here and the published one."""
    groups: dict[str, list[str]] = {}
    for d in deviations(cfg, *names).itertuples():
        values = f"{d.here:g} here, {d.published:g} published" if isinstance(d.here, float) \
            else f"{d.here} here, {d.published} published"
        groups.setdefault(d.why, []).append(f"{d.knob}: {values}")
    return "\n".join(f"{'; '.join(knobs)}. Why: {why}" for why, knobs in groups.items()) \
        or "none: every knob as published"


def _reject_unknown(names) -> None:
    unknown = sorted(set(names) - set(KNOBS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; valid parameters: {', '.join(sorted(KNOBS))}")


def resolve(profile: str = "tutorial", **overrides: Any) -> Config:
    """Validate ``profile`` and ``overrides`` and return the :class:`Config`.

    Overrides whose value is ``None`` keep the profile's setting (that is how a notebook's
    parameters cell says "use the default"). Unknown names, bad types and out-of-range
    values raise ``ValueError`` naming the valid choices.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    _reject_unknown(overrides)
    settings = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
    return Config(profile=profile, **{attr: cls(**{k: v for k, v in settings.items() if KNOBS[k] == attr})
                                      for attr, cls in recipes.RECIPES.items()})


def resolve_parameters(profile: str = "tutorial", **overrides: Any) -> Config:
    """:func:`resolve` for a notebook's configuration cell: first rejects any name that
    papermill injected but the notebook's parameters cell does not declare
    (:func:`tutorial_lib.parameters.check_injected`), then validates the values."""
    from tutorial_lib import parameters

    parameters.check_injected()
    return resolve(profile, **overrides)


def describe(profile: str) -> str:
    """One line per knob of a profile, grouped by recipe, for the README and the notebooks."""
    cfg = resolve(profile)
    return "\n".join(line for attr, cls in recipes.RECIPES.items() for line in
                     [f"[{attr}]", *(f"  {f.name:22s} {getattr(cfg, f.name)!r}" for f in dataclasses.fields(cls))])
