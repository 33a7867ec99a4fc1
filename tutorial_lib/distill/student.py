"""Training a student under a teacher with any registered distillation method.

A method is a name plus its loss weights, so a table row is one entry of ``METHODS``. The
weights and stages are those of the public RepDistiller code (Tian et al. 2020), whose
vgg13 -> vgg8 results the lesson prints beside ours:

- ``scratch``: cross-entropy only (the reference every gain is measured against);
- ``kd``: 0.1 CE + 0.9 KD on the logits (T = 4);
- ``fitnet``: CE + 100 x hint loss, one stage, at the third stage end, through a regressor
  (3x3 conv + BN + ReLU); ``fitnet_2stage``: the FitNet paper's two stages (hint alone, then
  CE + KD), ours to try, not in the table;
- ``fsp``: a pre-training stage (the first eighth of the epochs, as RepDistiller's 30 of 240)
  that trains only the student's features on the FSP loss between consecutive stage ends,
  then CE alone; 1x1 connectors map the student's widths to the teacher's where they differ;
- ``at``: CE + 1000 x attention transfer, summed over the stage ends but the first (as
  RepDistiller's ``g[1:-1]``) and but the last: RepDistiller's vgg8 ends on a 4x4 stage at
  32x32, ours (five pools) on a 2x2 one, whose attention map is four numbers and whose
  term, at weight 1000, swamps cross-entropy; ``at_all``: every stage end but the first,
  RepDistiller's choice on our VGGs, ours to try;
- ``kd+at``: CE + KD + 1000 x AT.

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
    "kd": {"ce": 0.1, "kd": 0.9},
    "fitnet": {"hint": 100.0},
    "fitnet_2stage": {"hint": 100.0, "two_stage": True},
    "fsp": {"fsp": 1.0, "pretrain": True},
    "at": {"at": 1000.0},
    "at_all": {"at": 1000.0, "at_taps": "all"},
    "kd+at": {"kd": 1.0, "at": 1000.0},
}
FEATURE_TERMS = ("at", "fsp", "hint")


def fsp_pairs(features: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive stage ends, as RepDistiller pairs them: (end of stage i, end of stage i+1);
    the larger map is pooled to the smaller one's size (``losses.fsp_matrix``)."""
    return list(zip(features[:-1], features[1:]))


def at_features(stage_end_features: list[torch.Tensor], which: str = "inner") -> list[torch.Tensor]:
    """The stage ends attention transfer compares: ``inner``, all but the first and the last
    (see the module's docstring), or ``all`` but the first (RepDistiller's choice); all of them
    when a model has fewer than three stages."""
    if len(stage_end_features) <= 2:
        return stage_end_features
    return stage_end_features[1:] if which == "all" else stage_end_features[1:-1]


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
    weight: float = 1.0,
) -> pd.DataFrame:
    """Train ``student`` with ``method`` under the frozen ``teacher`` by ``schedule`` (default:
    the baseline's); return the history (test metrics after the last epoch only: the caller
    evaluates the student it gets back).

    ``weight`` multiplies the method's distillation terms (1: RepDistiller's weights).
    ``hint_layer`` picks the stage whose end is FitNet's hint (teacher) and guided layer
    (student). FitNet's two stages give the first ``epochs // 4`` epochs to the hint alone;
    FSP's pre-training stage takes ``epochs // 8`` (at least one), then CE alone.
    """
    spec = _check_method(method)
    schedule = schedule or cfg.baseline.schedule
    epochs = schedule.epochs if epochs is None else epochs
    teacher.eval()
    n = len(stage_ends(student))
    if n != len(stage_ends(teacher)):
        raise ValueError(f"student has {n} stages, teacher {len(stage_ends(teacher))}: tap matching stages by name")
    s_taps, t_taps = Taps(student, stage_ends(student)), Taps(teacher, stage_ends(teacher))
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
    features_used = any(k in spec for k in FEATURE_TERMS)
    memo = remembered(teacher, cfg, taps=t_taps if features_used else None)

    def teacher_features() -> list[torch.Tensor]:
        return memo.features if isinstance(memo, TeacherMemo) else t_taps.features()

    def make_regularizer(weights: dict):
        if not weights:  # from scratch: the teacher is not consulted
            return None

        def regularizer(model, x, y, logits):
            kd = losses.teacher_kd(memo, x, logits, cfg.kd_temperature)  # also fills the teacher's features
            s_feat, t_feat = s_taps.features(), teacher_features()
            terms = {}
            if "kd" in weights:
                terms["kd"] = weights["kd"] * kd
            if "at" in weights:
                which = spec.get("at_taps", "inner")
                terms["at"] = weights["at"] * losses.at_loss(at_features(s_feat, which), at_features(t_feat, which))
            if "fsp" in weights:
                mapped = [c(f) for c, f in zip(connectors, s_feat)]
                terms["fsp"] = weights["fsp"] * losses.fsp_loss(fsp_pairs(mapped), fsp_pairs(t_feat))
            if "hint" in weights:
                terms["hint"] = weights["hint"] * losses.fitnet_loss(s_feat[hint_layer], t_feat[hint_layer], regressor)
            return terms

        return regularizer

    def stage(params, weights: dict, n_epochs: int, name: str, task_weight: float, milestones: bool = True):
        sched = schedule if milestones else schedule.replace(epochs=n_epochs, milestones=())
        return train.fit(student, bundle, sched, cfg.run, epochs=n_epochs, optimizer=train.sgd(params, sched),
                         regularizer=make_regularizer(weights), task_weight=task_weight, desc=name,
                         checkpoint_dir=folder / name.replace(" ", "_") if folder else None,
                         evaluate_each_epoch=False)

    extras = [p for extra in (regressor, connectors) if extra is not None for p in extra.parameters()]
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    weights = {k: v * weight for k, v in spec.items() if k in ("kd",) + FEATURE_TERMS}
    try:
        if spec.get("two_stage") or spec.get("pretrain"):
            # stage 1 (task weight 0): FitNet's hint, or FSP's pre-training of the features
            first_epochs = max(1, epochs // (4 if spec.get("two_stage") else 8)) if epochs > 1 else 1
            first_name = "fitnet hint" if spec.get("two_stage") else "fsp pretrain"
            first = stage(list(student.parameters()) + extras, weights, first_epochs, first_name, 0.0,
                          milestones=False)
            # stage 2: CE + KD on the whole student (FitNet), CE alone (FSP)
            second = stage(list(student.parameters()), {"kd": 1.0} if spec.get("two_stage") else {},
                           epochs - first_epochs, f"{method} task", 1.0)
            if not second.empty:
                second["epoch"] += first_epochs
            return pd.concat([first.assign(stage=first_name), second.assign(stage="task")], ignore_index=True)
        return stage(list(student.parameters()) + extras, weights, epochs, method, spec.get("ce", 1.0))
    finally:
        s_taps.remove()
        t_taps.remove()
