"""Training a student under a teacher with any registered distillation method.

A method is a name plus its parameters, so a table row is one entry of ``METHODS``:

- ``scratch``: cross-entropy only (the reference every gain is measured against);
- ``kd``: CE + KD on the logits (T = 4);
- ``at``: CE + attention transfer at the inner stage ends (beta = 1e3; the first and last
  stage ends are left out, as in the public RepDistiller code: the last map is 2x2 at
  32x32 input and at the tutorial's 24x24, and its term alone, scaled by 1e3, swamps
  cross-entropy);
- ``fsp``: CE + FSP between the first and last activation of every stage (through 1x1
  connectors where the student's widths differ from the teacher's);
- ``fitnet``: hint training of the student up to its guided layer through a regressor,
  then KD (the paper's two stages); ``fitnet_1stage``: CE + hint loss throughout;
- ``kd+at``: CE + KD + AT.

Feature taps come from forward hooks on named modules (``tutorial_lib.taps``), so any pair of
models works; the defaults tap the stage ends of VGGs. The teacher runs without gradients.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from tutorial_lib import data, repro, train
from tutorial_lib.distill import losses
from tutorial_lib.distill.memo import TeacherMemo, remembered
from tutorial_lib.recipes import Schedule
from tutorial_lib.taps import Taps, stage_ends

METHODS: dict[str, dict] = {
    "scratch": {},
    "kd": {"kd": 1.0},
    "at": {"at": 1.0},
    "fsp": {"fsp": 1.0},
    "fitnet": {"hint": 1.0, "two_stage": True},
    "fitnet_1stage": {"hint": 1.0},
    "kd+at": {"kd": 1.0, "at": 1.0},
}


def stage_starts(model: nn.Module) -> list[str]:
    """Names of the first activation of every stage of a VGG (after the input or a max-pool)."""
    names = list(dict(model.named_modules()))
    modules = dict(model.named_modules())
    starts, open_stage = [], True
    for name in names:
        m = modules[name]
        if isinstance(m, nn.MaxPool2d):
            open_stage = True
        elif isinstance(m, nn.ReLU) and open_stage:
            starts.append(name)
            open_stage = False
    return starts


def stage_taps(model: nn.Module) -> list[str]:
    """Tap names for every method: the stage ends, then the stage starts (FSP pairs them)."""
    return stage_ends(model) + stage_starts(model)


def fsp_pairs(features: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(stage start, stage end) pairs from the outputs of ``stage_taps`` (ends first, then starts)."""
    n = len(features) // 2
    return list(zip(features[n:], features[:n]))


def at_features(stage_end_features: list[torch.Tensor]) -> list[torch.Tensor]:
    """The stage ends attention transfer compares: all but the first and the last (RepDistiller's
    ``g[1:-1]``), or all of them when a model has fewer than three stages."""
    return stage_end_features[1:-1] if len(stage_end_features) > 2 else stage_end_features


def fsp_connectors(student_widths: list[int], teacher_widths: list[int]) -> nn.ModuleList:
    """1x1 convolutions mapping each tapped student feature to the teacher's width (identity
    where the widths agree). The FSP paper used equal widths; with a narrower student, the
    connectors let the Gram matrices be compared entry by entry, as FitNet's regressor does."""
    return nn.ModuleList(nn.Identity() if s == t else nn.Conv2d(s, t, 1, bias=False)
                         for s, t in zip(student_widths, teacher_widths))


def _check_method(method: str) -> dict:
    if method not in METHODS:
        raise ValueError(f"unknown distillation method {method!r}; valid choices: {', '.join(METHODS)}")
    return METHODS[method]


def train_student(
    student: nn.Module,
    teacher: nn.Module,
    bundle: data.DataBundle,
    cfg,
    method: str,
    epochs: int | None = None,
    hint_layer: int = 2,
    checkpoint_dir: str | Path | None = None,
    schedule: Schedule | None = None,
) -> pd.DataFrame:
    """Train ``student`` with ``method`` under the frozen ``teacher`` by ``schedule`` (default:
    the baseline's); return the history (test metrics after the last epoch only: the caller
    evaluates the student it gets back).

    ``hint_layer`` picks the stage whose end is FitNet's hint (teacher) and guided layer
    (student). For FitNet's two stages, the first ``epochs // 4`` epochs train only the hint
    loss through the regressor, the rest use CE + KD.
    """
    spec = _check_method(method)
    schedule = schedule or cfg.baseline.schedule
    epochs = schedule.epochs if epochs is None else epochs
    teacher.eval()
    n = len(stage_ends(student))  # the first n taps are the stage ends
    if n != len(stage_ends(teacher)):
        raise ValueError(f"student has {n} stages, teacher {len(stage_ends(teacher))}: tap matching stages by name")
    # stage starts are tapped only for FSP: every tap clones an activation on each forward pass
    taps_of = stage_taps if "fsp" in spec else stage_ends
    s_taps, t_taps = Taps(student, taps_of(student)), Taps(teacher, taps_of(teacher))
    with torch.no_grad():  # one dry pass tells the tapped widths
        x = bundle.train[0][0].unsqueeze(0)
        student.eval()(x), teacher(x)
    s_widths, t_widths = [f.shape[1] for f in s_taps.features()], [f.shape[1] for f in t_taps.features()]
    # the extra layers start from the run's seed, not from whatever the global generator holds
    # after earlier runs (a DataLoader draws from it each time it is iterated)
    with repro.seeded(cfg.seed):
        regressor = losses.hint_regressor(s_widths[hint_layer], t_widths[hint_layer]) if "hint" in spec else None
        connectors = fsp_connectors(s_widths, t_widths) if "fsp" in spec else None

    # the teacher's logits and tapped features are read back per image after the first epoch
    features_used = any(k in spec for k in ("at", "fsp", "hint"))
    memo = remembered(teacher, cfg, taps=t_taps if features_used else None)

    def teacher_features() -> list[torch.Tensor]:
        return memo.features if isinstance(memo, TeacherMemo) else t_taps.features()

    def make_regularizer(terms_wanted: dict):
        if not terms_wanted:  # from scratch: the teacher is not consulted
            return None
        features_wanted = any(k in terms_wanted for k in ("at", "fsp", "hint"))

        def regularizer(model, x, y, logits):
            kd = losses.teacher_kd(memo, x, logits, cfg.kd_temperature)  # also fills the teacher's features
            s_feat, t_feat = (s_taps.features(), teacher_features()) if features_wanted else ([], [])
            terms = {}
            if "kd" in terms_wanted:
                terms["kd"] = terms_wanted["kd"] * kd
            if "at" in terms_wanted:
                terms["at"] = terms_wanted["at"] * losses.at_loss(at_features(s_feat[:n]), at_features(t_feat[:n]))
            if "fsp" in terms_wanted:
                mapped = [c(f) for c, f in zip(connectors, s_feat)]
                terms["fsp"] = terms_wanted["fsp"] * losses.fsp_loss(fsp_pairs(mapped), fsp_pairs(t_feat))
            if "hint" in terms_wanted:
                terms["hint"] = terms_wanted["hint"] * losses.fitnet_loss(s_feat[hint_layer], t_feat[hint_layer],
                                                                         regressor)
            return terms

        return regularizer

    params = list(student.parameters()) + [p for extra in (regressor, connectors) if extra is not None
                                           for p in extra.parameters()]
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    try:
        if not spec.get("two_stage"):
            terms = {k: v for k, v in spec.items() if k in ("kd", "at", "fsp", "hint")}
            return train.fit(student, bundle, schedule, cfg.run, epochs=epochs,
                             optimizer=train.sgd(params, schedule), regularizer=make_regularizer(terms),
                             checkpoint_dir=folder, desc=method, evaluate_each_epoch=False)
        hint_epochs = max(1, epochs // 4) if epochs > 1 else 1  # with one epoch there is only the hint stage
        # stage 1: the hint alone (task weight 0) trains the student up to its guided layer
        first = train.fit(student, bundle, schedule.replace(epochs=hint_epochs, milestones=()), cfg.run,
                          epochs=hint_epochs, optimizer=train.sgd(params, schedule),
                          regularizer=make_regularizer({"hint": spec["hint"]}),
                          checkpoint_dir=folder / "hint" if folder else None, desc="fitnet hint", task_weight=0.0,
                          evaluate_each_epoch=False)
        # stage 2: CE + KD on the whole student
        second = train.fit(student, bundle, schedule, cfg.run, epochs=epochs - hint_epochs,
                           optimizer=train.sgd(student.parameters(), schedule),
                           regularizer=make_regularizer({"kd": 1.0}),
                           checkpoint_dir=folder / "kd" if folder else None, desc="fitnet kd",
                           evaluate_each_epoch=False)
        if not second.empty:
            second["epoch"] += hint_epochs
        return pd.concat([first.assign(stage="hint"), second.assign(stage="kd")], ignore_index=True)
    finally:
        s_taps.remove()
        t_taps.remove()
