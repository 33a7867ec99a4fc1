"""The claim scorecard: each of the seed's claims, our figure beside the published one, and a
verdict, computed from the tables the lessons wrote (never typed).

A verdict is ``reproduced``, ``not reproduced`` or ``inside the noise``. Gaps between methods
are judged as the lessons judge them (two standard errors of the gap over the seeds,
``seeds.verdict``); a claim with a threshold (a D1-all rise, a budget, a speedup) names it in
its ``how judged`` column. A lesson prints its own claims in its closing cell; ``REPORT.md``
prints them all.

A verdict that rests on a timing (a speedup, a latency budget) says so in its ``rests on``
column: timings move from machine to machine and from minute to minute, so such a verdict is a
printed finding, never checked against the committed one (``reproduce.timed_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from tutorial_lib import seeds, tables
from tutorial_lib.constraints import experiment as constraints_experiment
from tutorial_lib.depth import experiment as depth_experiment

REPRODUCED, NOT_REPRODUCED, NOISE = "reproduced", "not reproduced", "inside the noise"
NOT_JUDGED = "not judged"  # the table is there but lacks the claim's rows (written by an older lesson)
D1_RISE_MAX = 2.0  # points of D1-all the pruned monodepth may lose (the seed's claim)
CEILING_SHARE = depth_experiment.TARGET_CEILING_SHARE  # the pruned monodepth's speedup / the one-filter ceiling's
LATENCY_RATIO_MIN = 1.25  # two signatures within 20% in FLOPs, this much apart in latency: far beyond timing noise
COLUMNS = ["lesson", "claim", "ours", "published", "verdict", "rests on", "how judged"]
TRAINING, TIMING = "training", "timing"  # what a verdict rests on: trained figures, or (also) timings


class Tables:
    """The CSV tables of one run (``results/<profile>/tables``), read by name (``02_ranking``)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def __call__(self, name: str) -> pd.DataFrame:
        path = self.folder / f"{name}.csv"
        if not path.exists():
            raise FileNotFoundError(f"table {name} is not in {self.folder}: run its lesson first")
        return pd.read_csv(path)

    def has(self, *names: str) -> bool:
        return all((self.folder / f"{n}.csv").exists() for n in names)


@dataclass(frozen=True)
class Claim:
    lesson: str
    claim: str
    needs: tuple[str, ...]  # the tables it is judged from
    judge: Callable[[Tables], tuple[str, str, str, str]]  # -> (ours, published, verdict, how judged)
    rests_on: str = TRAINING  # TIMING where a timing can flip the verdict


def _word(v: str) -> str:
    """A claim that one side is above: ``above`` reproduces it, ``below`` refutes it, a tie is noise."""
    return {"above": REPRODUCED, "below": NOT_REPRODUCED}.get(v, NOISE)


def _row(df: pd.DataFrame, column: str, label: str) -> pd.Series:
    hit = df[df[column].astype(str).str.startswith(label)]
    if hit.empty:
        raise LookupError(f"no row {label!r}")
    return hit.iloc[0]


def _gap(a: pd.Series, b: pd.Series, value: str) -> tuple[float, float, str]:
    """Gap of mean ``value`` a - b, two standard errors of it over the seeds, and its verdict."""
    n = int(min(a["seeds"], b["seeds"]))
    gap = float(a[f"{value} mean"] - b[f"{value} mean"])
    se = float(((a[f"{value} sd"] ** 2 + b[f"{value} sd"] ** 2) / n) ** 0.5)
    return gap, 2 * se, seeds.verdict(gap, se, n)


def _pm(r: pd.Series, value: str) -> str:
    return f"{r[f'{value} mean']:.1f} ± {r[f'{value} sd']:.1f}"


def _published_pair(row_a: str, row_b: str, note: str = "VGG19-BN, CIFAR-100, one run") -> str:
    a = tables.published_value("vgg19_cifar100", row_a, "top1")
    b = tables.published_value("vgg19_cifar100", row_b, "top1")
    return f"{a} vs {b} ({note})"


def _ranked(t: Tables, better: str, worse: str, published: tuple[str, str] | None) -> tuple[str, str, str, str]:
    r = t("02_ranking")
    a, b = _row(r, "method", better), _row(r, "method", worse)
    gap, two_se, v = _gap(a, b, "top-1 %")
    ours = f"{_pm(a, 'top-1 %')} vs {_pm(b, 'top-1 %')} (gap {gap:+.1f}, 2 SE {two_se:.1f}, {int(a['seeds'])} seeds)"
    return ours, _published_pair(*published) if published else "the seed's reading of its table (no control run)", \
        _word(v), "top-1 gap beyond two standard errors over the seeds"


def joint_beats_scratch(t: Tables):
    return _ranked(t, "Joint end-to-end pruning", "Same pruned architecture, from scratch",
                   ("Joint end-to-end pruning", "Same pruned architecture from scratch"))


def discovered_architecture(t: Tables):
    return _ranked(t, "Same pruned architecture, from scratch", "L1-norm's signature, from scratch", None)


# the methods that prune the trained baseline, whose best joint pruning is held against
COMPARED = ("Network Slimming", "L1-norm filter pruning", "Torch-Pruning")


def joint_level_with_compared(t: Tables):
    r = t("02_ranking")
    a = _row(r, "method", "Joint end-to-end pruning")
    rivals = r[r["method"].astype(str).str.startswith(COMPARED)]
    if rivals.empty:
        raise LookupError(f"no row of {', '.join(COMPARED)}")
    b = rivals.loc[rivals["top-1 % mean"].idxmax()]
    gap, two_se, v = _gap(a, b, "top-1 %")
    ours = (f"{_pm(a, 'top-1 %')} vs {_pm(b, 'top-1 %')}, the best of {len(rivals)}: {b['method']} "
            f"(gap {gap:+.1f}, 2 SE {two_se:.1f}, {int(a['seeds'])} seeds)")
    published = _published_pair("Joint end-to-end pruning", "Network Slimming (ICCV17)") + \
        ", with 78.65% of the parameters removed against Slimming's 75.1%"
    level = NOT_REPRODUCED if v == "below" else REPRODUCED  # level or above: a tie is level
    return ours, published, level, "level unless the best compared method is above beyond two standard errors"


def kd_helps_scratch(t: Tables):
    return _ranked(t, "Same pruned architecture, scratch + KD", "Same pruned architecture, from scratch",
                   ("Same pruned architecture from scratch + KD", "Same pruned architecture from scratch"))


def pruned_monodepth_faster(t: Tables):
    depth, fps = t("03_monodepth"), t("03_fps")
    d1 = next(c for c in depth.columns if c.startswith("D1-all") and "motorcycle" not in c)
    rise = float(_row(depth, "model", "pruned")[d1] - _row(depth, "model", "baseline")[d1])
    ours_cols = [c for c in fps.columns if c.endswith("(ours)")]
    speed, ceiling = _row(fps, "model", "Speedup"), _row(fps, "model", "One filter")
    reached = [float(speed[c]) >= CEILING_SHARE * float(ceiling[c]) for c in ours_cols]
    ours = (f"D1-all {rise:+.1f} points; speedup " + " / ".join(f"{speed[c]:.2f}x" for c in ours_cols)
            + f" on {' / '.join(c.split()[1] for c in ours_cols)} (one-filter ceiling "
            + " / ".join(f"{ceiling[c]:.2f}x" for c in ours_cols) + "), one seed")
    published = " / ".join(f"{speed[c]:.2f}x" for c in fps.columns if c.startswith("published")) + \
        " (GTX 1080 Ti / TX2 / TX1, KITTI)"
    verdict = REPRODUCED if rise <= D1_RISE_MAX and all(reached) else NOT_REPRODUCED
    return ours, published, verdict, (f"D1-all rise <= {D1_RISE_MAX:g} points and speedup >= {CEILING_SHARE:g} "
                                      "of the one-filter ceiling on every thread count, batch 1")


def constrained_meets_budget(t: Tables):
    c, s = t("04_constrained"), t("04_budget_seeds")
    top1 = next(k for k in c.columns if k.startswith("top-1"))
    base = float(c.iloc[0][top1])
    parts, met, losses = [], [], []
    for kind, g in s.groupby("budget kind", sort=False):
        ratio, loss = g["reached / budget"].astype(float), base - g["top-1 %"].astype(float)
        met.append(ratio.between(*constraints_experiment.band(kind)).all())  # "latency", else a counted band
        losses.append(float(loss.mean()))
        parts.append(f"{kind}: {ratio.min():.3f}-{ratio.max():.3f} of budget, {-loss.mean():+.1f} ± {loss.std():.1f} "
                     "points")
    published_loss = tables.published_value("vgg19_cifar100", "VGG19-BN baseline", "top1") - \
        tables.published_value("constrained", "Adaptive constrained pruning", "top1")
    ours = "; ".join(parts) + f" ({s['seed'].nunique()} seeds)"
    verdict = REPRODUCED if all(met) and max(losses) <= published_loss else NOT_REPRODUCED
    return ours, f"{-published_loss:+.1f} points at 2,004,846 parameters (VGG19-BN, CIFAR-100)", verdict, \
        (f"every seed's run of every budget in its band and no mean loss larger than the published "
         f"{published_loss:.1f} points")


def equal_cost_unequal_accuracy(t: Tables):
    e = t("04_equal_cost")
    parts = [f"{r['cost']}: {r['accuracy a']} vs {r['accuracy b']} (2 SE {r['2 SE of gap']})" for _, r in e.iterrows()]
    beyond = e["gap beyond seed noise"].astype(str).str.lower().eq("true")
    return "; ".join(parts), "shown on the seed's slides (no figure)", REPRODUCED if beyond.any() else NOISE, \
        "an accuracy gap between signatures within 20% in cost, beyond two standard errors over the seeds"


def flops_do_not_predict_latency(t: Tables):
    sig = t("04_signatures")
    platforms = [c[len("latency_ms["):-1] for c in sig.columns if c.startswith("latency_ms[")]
    ratios = {}
    for p in platforms:
        ratio = constraints_experiment.latency_spread_at_equal_flops(sig, p)["latency ratio"]
        ratios[p] = float(ratio.iloc[0]) if len(ratio) and pd.notna(ratio.iloc[0]) else float("nan")
    ours = "; ".join(f"{p}: {r:.2f}x" for p, r in ratios.items()) + " latency apart at <= 20% apart in FLOPs"
    verdict = REPRODUCED if ratios and all(r >= LATENCY_RATIO_MIN for r in ratios.values()) else NOT_REPRODUCED
    return ours, "shown on the seed's slides (no figure)", verdict, \
        f"two signatures within 20% in FLOPs at least {LATENCY_RATIO_MIN:g}x apart in median latency, every platform"


def distillation_helps_pruned_student(t: Tables):
    d = t("05_distillation")
    pruned = d[d["student"].astype(str).str.startswith("joint-pruned")]
    scratch, kd = _row(pruned, "method", "student from scratch"), _row(pruned, "method", "KD")
    ours = (f"KD {kd['top-1 %']:.1f} ± {kd['top-1 sd (seeds)']:.1f} vs scratch {scratch['top-1 %']:.1f} ± "
            f"{scratch['top-1 sd (seeds)']:.1f} (gain {kd['gain over scratch']:+.1f}, 2 SE {kd['2 SE of gain']:.1f})")
    published = _published_pair("Same pruned architecture from scratch + KD", "Same pruned architecture from scratch",
                                "KD on the pruned VGG19-BN, CIFAR-100")
    return ours, published, _word(str(kd["verdict"])), "KD's gain over scratch beyond two standard errors over the seeds"


def quantization_beyond_pruning(t: Tables):
    """The seed's future work: quantization saves memory and time beyond pruning's signature."""
    table = t("07_comparison")
    pruned, both = _row(table, "recipe", "prune"), _row(table, "recipe", "prune -> quantize")
    smaller = float(pruned["bytes"]) / float(both["bytes"])
    faster = float(pruned["batch 64 latency / baseline"]) / float(both["batch 64 latency / baseline"])
    gap, two_se, v = _gap(both, pruned, "top-1 %")
    ours = (f"{smaller:.1f}x fewer bytes and {faster:.2f}x faster at batch 64 than the pruned model alone; "
            f"top-1 {gap:+.2f} points (2 SE {two_se:.2f}), {int(both['seeds'])} seeds")
    verdict = REPRODUCED if smaller > 1 and faster > 1 and v != "below" else NOT_REPRODUCED
    return ours, "future work (no figure)", verdict, ("fewer bytes and a lower batch-64 latency (inductor, both "
                                                      "compiled) than prune alone, top-1 not below it beyond two SE")


def _beats_uniform(method: str, published: str) -> Callable[[Tables], tuple[str, str, str, str]]:
    """Judge "``method``'s per-layer bits beat uniform bits at the same average" on 06_allocation."""

    def judge(t: Tables) -> tuple[str, str, str, str]:
        df = t("06_allocation")
        row, ref = _row(df, "method", method), _row(df, "method", "uniform")
        ours = (f"{row['top-1 % mean']:.1f} ± {row['top-1 % sd']:.1f} vs uniform {ref['top-1 % mean']:.1f} ± "
                f"{ref['top-1 % sd']:.1f} at {row['avg bits']:.2f} vs {ref['avg bits']:.2f} bits per weight (gap "
                f"{row['gap to uniform']:+.1f}, 2 SE {row['2 SE of gap']:.1f})")
        return ours, published, _word(str(row["verdict"])), "gap to uniform beyond two standard errors over the seeds"

    return judge


CLAIMS = (
    Claim("02", "joint pruning is level with the methods it is compared with (Slimming, L1-norm, Torch-Pruning)",
          ("02_ranking",), joint_level_with_compared),
    Claim("02", "joint pruning beats the same signature trained from scratch", ("02_ranking",), joint_beats_scratch),
    Claim("02", "KD helps the from-scratch twin", ("02_ranking",), kd_helps_scratch),
    Claim("02", "the architecture joint pruning finds beats a uniform per-layer rate (both from scratch)",
          ("02_ranking",), discovered_architecture),
    Claim("03", "pruned monodepth is faster at <= 2 points of D1-all", ("03_monodepth", "03_fps"),
          pruned_monodepth_faster, TIMING),
    Claim("04", "constrained pruning meets its budget with a small loss", ("04_constrained", "04_budget_seeds"),
          constrained_meets_budget, TIMING),
    Claim("04", "equal cost does not mean equal accuracy", ("04_equal_cost",), equal_cost_unequal_accuracy),
    Claim("04", "FLOPs do not predict latency", ("04_signatures",), flops_do_not_predict_latency, TIMING),
    Claim("05", "distillation helps a pruned student", ("05_distillation",), distillation_helps_pruned_student),
    Claim("06", "bits chosen per layer by differentiable search beat uniform bits of the same size",
          ("06_allocation",), _beats_uniform("DNAS", "Wu et al.: ResNets up to 21.1x smaller that still "
                                             "outperform quantized baselines (CIFAR-10, ImageNet; abstract)")),
    Claim("06", "bits chosen per layer by a reinforcement-learning agent beat uniform bits of the same size",
          ("06_allocation",), _beats_uniform("ReLeQ", "ReLeQ: <= 0.3% accuracy loss with mixed bits on 7 "
                                             "networks incl. VGG-11 on CIFAR-10 (abstract)")),
    Claim("07", "quantization saves memory and time beyond the signature pruning reaches (the seed's future work)",
          ("07_comparison",), quantization_beyond_pruning, TIMING),
)


def card(folder: str | Path, lesson: str | None = None) -> pd.DataFrame:
    """The scorecard of the run whose tables are in ``folder`` (``lesson``: its claims only);
    a claim whose tables that run did not write is left out."""
    t = Tables(folder)
    rows = []
    for c in CLAIMS:
        if (lesson is None or c.lesson == lesson) and t.has(*c.needs):
            try:
                ours, published, verdict, how = c.judge(t)
                rows.append([c.lesson, c.claim, ours, published, verdict, c.rests_on, how])
            except LookupError as missing:
                rows.append([c.lesson, c.claim, "", "", NOT_JUDGED, c.rests_on,
                             f"{missing} in {', '.join(c.needs)}: re-run lesson {c.lesson}"])
    return pd.DataFrame(rows, columns=COLUMNS)
