"""The claim scorecard reads the lessons' tables: judged on copies of the committed ones, and
on edited copies that must flip each verdict."""

import shutil

import pandas as pd
import pytest

from tutorial_lib import report, reproduce, scorecard, tables


@pytest.fixture
def committed(tmp_path):
    folder = tmp_path / "tables"
    shutil.copytree(reproduce.committed_dir(), folder, ignore=shutil.ignore_patterns("seed*", "kernels"))
    return folder


def _edit(folder, name, row_column, column, row_label, value):
    df = pd.read_csv(folder / f"{name}.csv")
    df.loc[df[row_column].astype(str).str.startswith(row_label), column] = value
    df.to_csv(folder / f"{name}.csv", index=False)


def test_every_claim_is_judged_from_the_committed_tables(committed):
    card = scorecard.card(committed)
    assert list(card.columns) == scorecard.COLUMNS
    assert len(card) == len(scorecard.CLAIMS) == 12
    assert set(card["verdict"]) <= {scorecard.REPRODUCED, scorecard.NOT_REPRODUCED, scorecard.NOISE}
    assert list(scorecard.card(committed, lesson="04")["lesson"]) == ["04"] * 3
    assert (card["published"] != "").all() and (card["how judged"] != "").all()


def test_verdicts_follow_the_tables(committed):
    def verdict(claim):
        card = scorecard.card(committed)
        return card.loc[card["claim"] == claim, "verdict"].iloc[0]

    joint = "joint pruning beats the same signature trained from scratch"
    ranking = pd.read_csv(committed / "02_ranking.csv").set_index("method")
    ours = ranking.loc["Joint end-to-end pruning (ours)", "top-1 % mean"]
    twin = "Same pruned architecture, from scratch"
    _edit(committed, "02_ranking", "method", "top-1 % mean", twin, ours - 10)
    assert verdict(joint) == scorecard.REPRODUCED  # 10 points: beyond two standard errors of the gap
    _edit(committed, "02_ranking", "method", "top-1 % mean", twin, ours - 0.06)
    assert verdict(joint) == scorecard.NOISE  # inside two standard errors
    _edit(committed, "02_ranking", "method", "top-1 % mean", twin, ours + 10)
    assert verdict(joint) == scorecard.NOT_REPRODUCED

    level = "joint pruning is level with the methods it is compared with (Slimming, L1-norm, Torch-Pruning)"
    best = "L1-norm filter pruning"  # raised above every compared method, then lowered into a tie
    _edit(committed, "02_ranking", "method", "top-1 % mean", best, ours + 10)
    assert verdict(level) == scorecard.NOT_REPRODUCED
    assert "the best of" in scorecard.card(committed, "02").set_index("claim").loc[level, "ours"]
    _edit(committed, "02_ranking", "method", "top-1 % mean", best, ours + 0.01)
    others = ranking.index[ranking.index.str.startswith(scorecard.COMPARED) & (ranking.index != best)]
    for other in others:
        _edit(committed, "02_ranking", "method", "top-1 % mean", other, ours - 10)
    assert verdict(level) == scorecard.REPRODUCED  # a tie with the best is level

    depth = "pruned monodepth is faster at <= 2 points of D1-all"
    _edit(committed, "03_fps", "model", "FPS torch-cpu-1t (ours)", "Speedup", 1.5)
    _edit(committed, "03_fps", "model", "FPS torch-cpu-2t (ours)", "Speedup", 1.5)
    assert verdict(depth) == scorecard.REPRODUCED  # >= 0.85 of the 1.55x / 1.46x ceilings
    _edit(committed, "03_monodepth", "model", "D1-all % (synthetic stereo)", "pruned", 30.0)
    assert verdict(depth) == scorecard.NOT_REPRODUCED  # D1-all 6.2 points worse

    budget = "constrained pruning meets its budget with a small loss"
    per_seed = pd.DataFrame({"budget kind": ["parameters"] * 2 + ["latency"] * 2, "seed": [0, 1] * 2,
                             "reached / budget": [0.99, 0.98, 0.9, 0.95], "in band": ["0.95-1: yes"] * 2 +
                             ["0.85-1: yes"] * 2, "top-1 %": [86.0] * 4})
    per_seed.to_csv(committed / "04_budget_seeds.csv", index=False)
    assert verdict(budget) == scorecard.REPRODUCED  # every seed in its band, 1 point below the baseline's 87.0
    per_seed.loc[3, ["reached / budget", "in band"]] = [0.8, "0.85-1: no"]  # one seed's latency missed its band
    per_seed.to_csv(committed / "04_budget_seeds.csv", index=False)
    assert verdict(budget) == scorecard.NOT_REPRODUCED


def test_a_claim_whose_rows_are_missing_says_so(committed):
    df = pd.read_csv(committed / "02_ranking.csv")
    df[~df["method"].str.startswith("L1-norm's signature")].to_csv(committed / "02_ranking.csv", index=False)
    card = scorecard.card(committed, lesson="02").set_index("claim")
    row = card.loc["the architecture joint pruning finds beats a uniform per-layer rate (both from scratch)"]
    assert row["verdict"] == scorecard.NOT_JUDGED and "re-run lesson 02" in row["how judged"]


def test_a_claim_whose_tables_are_missing_is_left_out(committed):
    (committed / "05_distillation.csv").unlink()
    assert "05" not in set(scorecard.card(committed)["lesson"])
    with pytest.raises(FileNotFoundError, match="05_distillation is not in"):
        scorecard.Tables(committed)("05_distillation")


def test_the_report_opens_with_the_scorecard(committed, monkeypatch, tmp_path):
    monkeypatch.setenv("TUTORIAL_RESULTS", str(tmp_path / "results"))
    folder = tmp_path / "results" / "smoke"
    shutil.copytree(committed, folder / "tables")
    text = report.build("smoke").read_text()
    assert "## The seed's claims: scorecard" in text and "distillation helps a pruned student" in text
    assert tables.published_value("vgg19_cifar100", "Joint end-to-end pruning", "top1") == 73.45


def test_lesson_06_claims_follow_the_allocation_table(committed):
    claim = "bits chosen per layer by a reinforcement-learning agent beat uniform bits of the same size"
    _edit(committed, "06_allocation", "method", "verdict", "ReLeQ", "above")
    assert scorecard.card(committed, "06").set_index("claim").loc[claim, "verdict"] == scorecard.REPRODUCED
    _edit(committed, "06_allocation", "method", "verdict", "ReLeQ", "tie")
    row = scorecard.card(committed, "06").set_index("claim").loc[claim]
    assert row["verdict"] == scorecard.NOISE and "vs uniform" in row["ours"]
