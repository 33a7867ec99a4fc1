"""Lesson 04's experiment functions, end to end on tiny settings (no timing is asserted)."""

import pandas as pd
import pytest
import torch

from tutorial_lib import data, plots, profiles, train
from tutorial_lib.constraints import Budget, signatures
from tutorial_lib.measure import platforms
from tutorial_lib.constraints import experiment as ex
from tutorial_lib.models import vgg

P1 = "torch-cpu-1t"


pytestmark = pytest.mark.usefixtures("one_thread")  # timings of tiny models: one thread


@pytest.fixture(scope="module")
def setting():
    cfg = profiles.resolve("smoke", threads=1, max_steps=2, train_limit=64, test_limit=32, signature_count=3,
                           signature_epochs=1, signature_train_limit=32, constrained_epochs=2)
    bundle = data.load(cfg)
    torch.manual_seed(0)
    model = vgg.VGG(vgg.vgg_signature("vgg11", 1 / 16), num_classes=bundle.num_classes)
    train.fit(model, bundle, cfg.baseline.schedule, cfg.run, epochs=1)
    return cfg, bundle, model.eval()


@pytest.fixture(scope="module")
def table(setting):
    cfg, bundle, model = setting
    t = ex.make_table(cfg, model, bundle)
    t.min_run_time = 0.01
    t.model_min_run_time = 0.02
    return t


def test_profile_fields_are_validated():
    for name in profiles.PROFILES:
        cfg = profiles.resolve(name)
        assert cfg.latency_platform in platforms.available()
        assert min(cfg.bounds_batches) >= 1
    assert profiles.resolve("paper").budget_params == 2004846
    assert max(profiles.resolve("paper").bounds_batches) == 256
    with pytest.raises(ValueError, match="valid choices: torch-cpu-1t"):
        profiles.resolve("smoke", latency_platform="tpu")
    with pytest.raises(ValueError, match="batch sizes >= 1"):
        profiles.resolve("smoke", bounds_batches=[0, 4])
    with pytest.raises(ValueError, match="out of range"):
        profiles.resolve("smoke", budget_flops_fraction=1.5)


def test_impossible_budget_is_rejected_before_training(setting, table, monkeypatch):
    cfg, bundle, model = setting

    def no_training(*a, **k):
        raise AssertionError("trained before the budget was checked")

    monkeypatch.setattr(train, "fit", no_training)
    with pytest.raises(ValueError, match=r"outside the feasible range of this model: \[.*\] parameters"):
        ex.make_budgets(cfg.replace(budget_params=10), model, bundle, table)
    with pytest.raises(ValueError, match="feasible range"):
        ex.run_constrained(model, bundle, cfg, Budget("params", 10**9), table)
    with pytest.raises(ValueError, match="valid choices: params, flops, latency"):
        Budget("energy", 1.0)
    with pytest.raises(ValueError, match="available on this machine"):
        Budget("latency", 1.0, "tpu")


def test_bounds_and_sizes(setting):
    cfg, bundle, model = setting
    sizes = ex.bound_sizes(model, bundle)
    assert sizes["params"].iloc[0] > sizes["params"].iloc[1]
    assert set(sizes["conv widths"].iloc[1].split("-")) == {"1"}
    lat = ex.bounds(model, bundle, (1, 2), [P1], min_run_time=0.01)
    assert list(lat["batch"]) == [1, 2] and (lat["full ms"] > 0).all()
    per_layer = ex.bounds_per_layer(model, bundle, P1, (1,), repeats=2)
    assert "(total)" in set(per_layer["name"]) and {"full ms @1", "one-channel ms @1"} <= set(per_layer.columns)
    plots.latency_bounds(lat, per_layer, P1)


def test_signature_study_and_pairs(setting, table):
    cfg, bundle, _ = setting
    sig = ex.signature_study(bundle, cfg, table, [P1], min_run_time=0.01)
    assert len(sig) == 3 and f"error_pct[{P1}]" in sig
    stable, timing = ex.signature_columns(sig)
    assert "accuracy" in stable and all("ms" in c or "pct" in c or "seconds" in c for c in timing)
    corr = ex.correlations(sig)
    assert set(corr[~corr["timing"]]["y"]) == {"params", "flops"}
    pairs = ex.similar_cost_pairs(pd.DataFrame({"params": [100, 110, 300], "flops": [1, 5, 9],
                                                "accuracy": [50.0, 80.0, 10.0]}))
    assert pairs.set_index("cost").loc["params", "difference"] == 30.0
    assert pd.isna(pairs.set_index("cost").loc["flops", "difference"])  # no pair within 20%
    plots.signatures_against_costs(sig, corr, [P1])


def test_equal_cost_gaps_are_judged_against_seed_noise(setting, table):
    cfg, bundle, _ = setting
    noise = ex.signature_noise(bundle, cfg)
    assert list(noise["seed"]) == [cfg.seed + 1000 * k for k in range(cfg.signature_repeats + 1)]
    first = signatures.describe(signatures.sample(1, cfg.arch, cfg.width, seed=cfg.seed)[0])
    assert set(noise["signature"]) == {first}
    again = ex.signature_noise(bundle, cfg)
    assert again["accuracy"].tolist() == noise["accuracy"].tolist()  # seeded: the same run twice
    study = ex.signature_study(bundle, cfg, table, [P1], min_run_time=0.01)
    reused = ex.signature_noise(bundle, cfg, study)  # the own-seed run read from the study, not retrained
    assert reused.equals(noise)
    assert list(study["accuracy"]) == list(study[ex.seed_accuracies(study)].mean(axis=1).round(1))
    assert len(ex.seed_accuracies(study)) == cfg.seeds and "accuracy sd" in ex.signature_columns(study)[0]

    def costs(sd):
        return pd.DataFrame({"params": [100, 110, 300], "flops": [1, 5, 9], "accuracy": [50.0, 80.0, 10.0],
                             "accuracy sd": [sd] * 3, **{f"accuracy (seed {s})": [0.0] * 3 for s in (0, 1000, 2000)}})

    found = ex.equal_cost_findings(costs(1.0), pd.DataFrame({"accuracy": [40.0, 45.0]})).set_index("cost")
    # a 30-point gap against 2 SE = 2 * sqrt((1 + 1) / 3) over three seeds
    assert found.loc["params", "2 SE of gap"] == pytest.approx(1.63, abs=0.01)
    assert found.loc["params", "seed range"] == 5.0 and bool(found.loc["params", "gap beyond seed noise"])
    assert not found.loc["flops", "gap beyond seed noise"]  # no pair of equal FLOPs at all
    noisy = ex.equal_cost_findings(costs(30.0), pd.DataFrame({"accuracy": [10.0, 50.0]})).set_index("cost")
    assert not noisy.loc["params", "gap beyond seed noise"]  # a 30-point gap inside 2 SE of 49 points


def test_constrained_runs_meet_their_budgets(setting, table):
    cfg, bundle, model = setting
    budget_map = ex.make_budgets(cfg, model, bundle, table)
    assert set(budget_map) == {"params", "flops", "latency"} and budget_map["latency"].platform == P1
    runs = {}
    for kind in ("params", "latency"):
        r = ex.run_constrained(model, bundle, cfg, budget_map[kind], table)
        runs[kind] = ex.verify(r, bundle, cfg, table, [P1], model, min_run_time=0.01)
    assert runs["params"].params <= budget_map["params"].value
    low, _ = ex.check(budget_map["latency"], model, bundle, table)
    assert runs["latency"].target.value == pytest.approx(max(cfg.latency_margin * budget_map["latency"].value, low))
    assert runs["latency"].history["cost"].iloc[-1] <= runs["latency"].target.value * (1 + 1e-9)  # measured-corrected
    result = ex.constrained_table(runs, model, 50.0, {P1: 1.0}, bundle)
    assert list(result["budget kind"]) == ["none (full model)", "parameters", "latency"]
    assert result["published params"].iloc[1] == 2004846 and result["published params"].iloc[2] == ""
    stable = ex.stable_rows(result)
    assert "latency" not in set(stable["budget kind"])
    assert "params" in stable.columns and not any(c.startswith(("ms [", "speedup", "table estimate"))
                                                   for c in stable.columns)
    r = runs["latency"]  # measured over the budget, the full model timed in the same rounds
    assert r.full_ms[P1] > 0 and ex.reached(r) == pytest.approx(
        r.measured_ms[P1] / r.full_ms[P1] * r.full_estimate_ms / r.budget.value)
    assert "measured / estimate" in r.history and r.history["measured / estimate"].between(2 / 3, 1.5).all()
    goals = ex.targets(runs, None, P1)
    assert goals["target"].str.contains("parameters reached").any()
    plots.constrained_runs(runs)
    speed = ex.platform_speedups({"p": runs["params"].model}, model, bundle, [P1], (1,), min_run_time=0.01)
    assert list(speed.columns) == ["model", f"speedup [{P1}, batch 1]"]


class NoisyTable:
    """A latency table whose timings say the one-channel model is *slower* than the full one,
    as timing noise on a tiny model can: the inverted range of issue 17."""

    def __init__(self, full_ms=0.389, one_channel_ms=0.585):
        self.full_ms, self.one_channel_ms = full_ms, one_channel_ms

    def estimate(self, topo, input_shape, platform, num_classes=None):
        return self.one_channel_ms if set(topo.widths) == {1} else self.full_ms


def test_an_inverted_latency_range_is_handled_not_raised(setting):
    cfg, bundle, model = setting
    table = NoisyTable()
    low, high = ex.budgets.feasible_range(ex.full_topology(model), "latency", ex.shape_of(bundle), P1, table=table)
    assert (low, high) == (0.389, 0.585)  # returned in order
    budget_map = ex.make_budgets(cfg.replace(budget_latency_fraction=0.95), model, bundle, table)
    assert budget_map["latency"].value == pytest.approx(0.389)  # 0.95 x full would fall below the range: its edge
    assert ex.check(budget_map["latency"], model, bundle, table) == (0.389, 0.585)
    degenerate = NoisyTable(0.4, 0.4)
    assert ex.make_budgets(cfg, model, bundle, degenerate)["latency"].value == pytest.approx(0.4)
    with pytest.raises(ValueError, match="outside the feasible range"):  # a budget far outside still is an error
        ex.check(Budget("latency", 0.01, P1), model, bundle, table)


def test_every_budget_runs_per_seed_and_the_controls_are_judged_against_it(setting, table):
    cfg, bundle, model = setting
    budget_map = {"params": ex.make_budgets(cfg, model, bundle, table)["params"]}
    seed_runs = ex.run_seeds(model, bundle, cfg, budget_map, table)
    assert [len(v) for v in seed_runs.values()] == [cfg.seeds] and cfg.seeds == 2
    per_seed = ex.budget_seeds(seed_runs, cfg)
    assert list(per_seed["seed"]) == [cfg.seed, cfg.seed + 1]
    assert per_seed["in band"].str.startswith("0.95-1: ").all()
    goals = ex.targets({"params": seed_runs["params"][0]}, None, P1, seed_runs)
    assert goals["target"].iloc[0].endswith("2 seeds") and "-" in goals["measured"].iloc[0]
    long = ex.controls(seed_runs["params"], bundle, cfg)
    assert len(long) == 3 * cfg.seeds and set(long["model"]) == set(ex.CONTROL_LABELS.values())
    one = long[long["model"] == ex.CONTROL_LABELS["one channel"]]
    assert (one["params"].values < long[long["model"] == ex.CONTROL_LABELS["scratch"]]["params"].values).all()
    out = ex.control_table(long, len(bundle.test))
    assert out.loc[0, "verdict"] == "reference" and set(out["verdict"]) <= {"reference", "above", "below", "tie"}
    assert out["published top-1 % (VGG19-BN, CIFAR-100)"].tolist() == [70.3, "68.6-68.9", 3.0]
