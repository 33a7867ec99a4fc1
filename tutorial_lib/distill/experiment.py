"""Lesson 05's experiment: one teacher, two students, every distillation method, one table.

Students: ``vgg8`` (one conv per stage, the plain shallower VGG of RepDistiller's
vgg13 -> vgg8 setting) at ``cfg.student_width``, and a joint-pruned signature of lesson 02.
FSP compares Gram matrices entry by entry; where a student's widths differ from the
teacher's, 1x1 connectors map its features first (``student.fsp_connectors``), and the
row's note says so.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from tutorial_lib import data, models, repro, seeds, tables, train
from tutorial_lib.distill.student import train_student
from tutorial_lib.taps import Taps, stage_ends
from tutorial_lib.models import vgg
from tutorial_lib.recipes import Schedule

ROWS = ("scratch", "kd", "fitnet", "fsp", "at", "kd+at")
LABELS = {"scratch": "student from scratch", "kd": "KD", "fitnet": "FitNet", "fsp": "FSP (pre-training)",
          "at": "attention transfer", "kd+at": "KD + AT"}


def widths_at(model: nn.Module, names: list[str]) -> list[int]:
    """Channel counts of the tapped outputs (one dry forward pass of a 32x32 image: the
    counts do not depend on the size)."""
    with Taps(model, names) as taps, torch.no_grad():
        model.eval()(torch.zeros(1, 3, 32, 32))
        return [f.shape[1] for f in taps.features()]


def same_widths(student: nn.Module, teacher: nn.Module) -> bool:
    """Whether FSP can compare the two models' matrices directly (no connectors)."""
    return widths_at(student, stage_ends(student)) == widths_at(teacher, stage_ends(teacher))


def pruned_student_lambda(cfg) -> float:
    """The mask-term weight whose joint-pruned signature is lesson 05's second student:
    ``cfg.student_lambda``, else the strongest of lesson 02's frontier (else its main lambda)."""
    if cfg.student_lambda is not None:
        return cfg.student_lambda
    return max(cfg.frontier_lambdas, default=cfg.prune_lambda)


def student_specs(cfg, num_classes: int, pruned: nn.Module | None, pruned_name: str = "joint-pruned (lesson 02)"
                  ) -> dict[str, dict]:
    """The students by name: the plain shallower VGG at ``cfg.student_width``, and the pruned
    signature when given."""
    specs = {"vgg8": vgg.VGG(vgg.vgg_signature("vgg8", cfg.student_width), num_classes=num_classes).spec()}
    if pruned is not None:
        specs[pruned_name] = pruned.spec()
    return specs


def student_schedule(cfg) -> Schedule:
    """The students' schedule: ``cfg.student_epochs`` epochs, with the baseline's lr milestones
    scaled to that length (so the last epochs still run at the reduced rate)."""
    return train.stretched(cfg.baseline.schedule, cfg.student_epochs)


def _fresh(spec: dict, seed: int) -> nn.Module:
    with repro.seeded(seed):
        return models.from_spec(spec)


def run(teacher: nn.Module, bundle: data.DataBundle, cfg, specs: dict[str, dict],
        methods: tuple[str, ...] = ROWS) -> tuple[pd.DataFrame, dict]:
    """Train every student with every method, once per seed of ``cfg.seeds``; return one row
    per (student, method, seed) and the first seed's trained models keyed by (student, method)."""
    rows, trained = [], {}
    schedule = student_schedule(cfg)
    _, test_loader = data.loaders(bundle, cfg.batch_size, cfg.run)
    for seed in seeds.seed_list(cfg):
        for name, spec in specs.items():
            for method in methods:
                student = _fresh(spec, seed)
                note = "through 1x1 connectors" if method == "fsp" and not same_widths(student, teacher) else ""
                history = train_student(student, teacher, bundle, cfg.replace(seed=seed), method, schedule=schedule)
                acc = train.evaluate(student, test_loader, cfg.device)["accuracy"]
                rows.append({"student": name, "method": method, "seed": seed, "top-1 %": round(acc, 2),
                             "s / epoch": round(float(history["epoch_seconds"].median()), 2), "note": note})
                trained.setdefault((name, method), student)
    return pd.DataFrame(rows), trained


def temperature_sweep(teacher: nn.Module, bundle: data.DataBundle, cfg, spec: dict,
                      temperatures: tuple[float, ...], done: dict[float, float] | None = None) -> pd.DataFrame:
    """KD's top-1 for each temperature (same student, seed and epochs); ``done`` holds results
    already measured (temperature -> top-1), which are not trained again."""
    schedule = student_schedule(cfg)
    _, test_loader = data.loaders(bundle, cfg.batch_size, cfg.run)
    rows = []
    for t in temperatures:
        if done and t in done:
            acc = done[t]
        else:
            student = _fresh(spec, cfg.seed)
            train_student(student, teacher, bundle, cfg.replace(kd_temperature=t), "kd", schedule=schedule)
            acc = round(train.evaluate(student, test_loader, cfg.device)["accuracy"], 1)
        rows.append({"KD temperature T": t, "top-1 %": acc})
    return pd.DataFrame(rows)


def table(results: pd.DataFrame, teacher_accuracy: float, teacher_params: int, params: dict[str, int],
          test_images: int) -> pd.DataFrame:
    """The lesson's table, one row per (student, method): top-1 as mean and sd over the seeds,
    the test-set standard error, the gain over the same student from scratch with the verdict
    on it (a gain within two standard errors is a tie), time per epoch, published figures beside."""
    out = []
    published = tables.published("distill_cifar100")
    for student, group in results.groupby("student", sort=False):
        summary = seeds.summarize(group, ["method"], ["top-1 %"], test_images)
        judged = seeds.versus(summary, "top-1 %", {"method": "scratch"}) if "scratch" in set(group.method) else None
        for i, r in summary.iterrows():
            hit = published[published.metric == r.method] if student == "vgg8" else published.iloc[:0]
            first = group[group.method == r.method].iloc[0]
            out.append({
                "student": f"{student} ({params[student]:,} params)", "method": LABELS.get(r.method, r.method),
                "top-1 %": round(r["top-1 % mean"], 1), "top-1 sd (seeds)": r["top-1 % sd"],
                "test-set SE": r["top-1 % test-set SE"],
                "gain over scratch": "" if judged is None else round(judged.loc[i, "gap to scratch"], 1),
                "2 SE of gain": "" if judged is None or r.method == "scratch" else judged.loc[i, "2 SE of gap"],
                "verdict": "" if judged is None or r.method == "scratch" else judged.loc[i, "verdict"],
                "teacher top-1 %": round(teacher_accuracy, 1),
                "s / epoch": round(float(group[group.method == r.method]["s / epoch"].median()), 2),
                "note": first.note,
                "published vgg13->vgg8 top-1 % (CIFAR-100)": float(hit.value.iloc[0]) if len(hit) else "",
            })
    df = pd.DataFrame(out)
    df.attrs["teacher_params"] = teacher_params
    return df


@torch.no_grad()
def attention_pairs(teacher: nn.Module, student: nn.Module, images: torch.Tensor, stage: int) -> tuple:
    """(teacher maps, student maps) of attention at the end of ``stage`` for ``images``."""
    from tutorial_lib.distill.losses import attention_map

    maps = []
    for model in (teacher, student):
        with Taps(model, [stage_ends(model)[stage]]) as taps:
            model.eval()(images)
            f = taps.features()[0]
            maps.append(attention_map(f).view(f.shape[0], *f.shape[-2:]))
    return maps[0], maps[1]


@torch.no_grad()
def fsp_pair(teacher: nn.Module, student: nn.Module, images: torch.Tensor, stage: int) -> tuple:
    """(teacher, student) FSP matrices between the ends of ``stage`` and the next stage, batch mean."""
    from tutorial_lib.distill.losses import fsp_matrix

    out = []
    for model in (teacher, student):
        names = stage_ends(model)[stage:stage + 2]
        with Taps(model, names) as taps:
            model.eval()(images)
            out.append(fsp_matrix(*taps.features()).mean(0))
    return out[0], out[1]
