"""Constrained pruning: profiler, platforms, latency table, budgets, the adaptive loop, signatures.

Everything runs on tiny VGGs with one thread; timings use short runs and loose tolerances,
so that the tests hold on a busy machine.
"""

import math

import pandas as pd
import pytest
import torch

from tutorial_lib import data, masks, metrics, models
from tutorial_lib.constraints import adaptive, latency_table, signatures
from tutorial_lib.measure import platforms, profiler, timer
from tutorial_lib.constraints import budget as budgets
from tutorial_lib.constraints.adaptive import EpochResult, LoopState, next_phase
from tutorial_lib.models import vgg
from tutorial_lib.pruning import pack


pytestmark = pytest.mark.usefixtures("one_thread")  # timings of tiny models: one thread


@pytest.fixture
def tiny_cfg(smoke_cfg):
    return smoke_cfg.replace(threads=1, max_steps=2, train_limit=64, test_limit=32)


class FakeTable(latency_table.LatencyTable):
    """A latency table that times nothing: each layer 'costs' its multiply-adds / 1e5 ms."""

    def lookup(self, key):
        if key not in self.entries:
            platforms.get(key.platform)
            self.entries[key] = 1e-5 * key.batch * key.cin * key.cout * key.size**2 + 1e-3
            self.measured += 1
        return self.entries[key]

    def calibration(self, topo, input_shape, platform):
        key = (platform, int(input_shape[0]), int(input_shape[-1]))
        return self.calibrations.setdefault(key, latency_table.Calibration(platform, key[1], key[2], 0.05, 1.0))


# -- profiler ---------------------------------------------------------------------------
def test_profiler_rows_add_up_to_the_total_and_count_the_repeats():
    model = vgg.VGG([4, "M", 8], num_classes=5)
    for _ in range(2):
        table = profiler.profile_layers(model, (2, 3, 16, 16), repeats=5, threads=1)
        leaves = list(profiler.leaf_modules(model))
        layers = table[~table["name"].isin(["(total)", "(other)"])]
        assert list(layers["name"]) == leaves  # every leaf, in order
        assert (layers["calls"] == 5).all()
        assert list(table["name"][-2:]) == ["(other)", "(total)"]
        rows = table.set_index("name")
        total = rows.loc["(total)", "cpu_ms"]
        assert total > 0 and rows.loc["(total)", "calls"] == 5
        assert layers["cpu_ms"].sum() <= 1.02 * total  # layers run inside the forward pass
        assert layers["cpu_ms"].sum() + rows.loc["(other)", "cpu_ms"] == pytest.approx(total, rel=1e-6, abs=1e-9)
    assert (table["cuda_ms"] == 0).all()
    assert set(profiler.by_type(table)["type"]) == {"Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "AdaptiveAvgPool2d",
                                                     "Linear"}
    assert not model._forward_hooks and not model.features[0]._forward_pre_hooks  # hooks removed


# -- platforms --------------------------------------------------------------------------
def test_platform_registry_and_measure():
    names = platforms.available()
    n = platforms.all_threads()
    assert names[0] == "torch-cpu-1t"
    assert (f"torch-cpu-{n}t" in names) == (n > 1)
    assert ("cuda" in names) == torch.cuda.is_available()
    with pytest.raises(ValueError, match="available on this machine: torch-cpu-1t"):
        platforms.get("onnxruntime-cpu")
    model = vgg.VGG([2, "M", 2], num_classes=3).train()
    lat = platforms.measure(model, "torch-cpu-1t", (2, 3, 16, 16), min_run_time=0.01)
    assert isinstance(lat, timer.Latency)
    assert lat.median_ms > 0 and lat.batch_size == 2 and lat.threads == 1 and lat.platform == "torch-cpu-1t"
    assert model.training  # the caller's mode is restored
    measured = budgets.cost(model, "latency", (2, 3, 16, 16), "torch-cpu-1t", measure=True, min_run_time=0.01)
    assert measured > 0


# -- latency table ------------------------------------------------------------------------
def test_layer_keys_follow_the_signature():
    topo = models.describe([4, "M", 6, 8, "M"], num_classes=7)
    keys = latency_table.layers(topo, (2, 3, 32, 32), "torch-cpu-1t")
    assert [(k.kind, k.cin, k.cout, k.size) for k in keys] == [
        ("conv_bn_relu", 3, 4, 32), ("maxpool", 4, 4, 32), ("conv_bn_relu", 4, 6, 16), ("conv_bn_relu", 6, 8, 16),
        ("maxpool", 8, 8, 16), ("avgpool", 8, 8, 8), ("linear", 8, 7, 1)]
    assert all(k.batch == 2 and k.platform == "torch-cpu-1t" for k in keys)
    no_bn = vgg.VGG([4, "M", 6], num_classes=3, batch_norm=False)
    assert latency_table.layers(models.describe(no_bn), (1, 3, 32, 32), "x")[0].kind == "conv_relu"
    with pytest.raises(ValueError, match="valid choices"):
        latency_table.LayerKey("conv5x5", 1, 1, 8, 1, "torch-cpu-1t")


def test_latency_table_memoises_and_round_trips(tmp_path):
    table = latency_table.LatencyTable(min_run_time=0.005)
    sig, shape = [2, "M", 3], (1, 3, 16, 16)
    first = table.layer_sum(sig, shape, "torch-cpu-1t", num_classes=4)
    measured = table.measured
    assert measured == len(latency_table.layers(models.describe(sig, 4), shape, "torch-cpu-1t"))
    assert table.layer_sum(sig, shape, "torch-cpu-1t", num_classes=4) == first and table.measured == measured
    table.calibrations[("torch-cpu-1t", 1, 16)] = latency_table.Calibration("torch-cpu-1t", 1, 16, 0.02, 1.1)
    expected = table.estimate(sig, shape, "torch-cpu-1t", num_classes=4)
    assert expected == pytest.approx(1.1 * first + 0.02)
    for suffix in ("json", "csv"):
        loaded = latency_table.LatencyTable.load(table.save(tmp_path / f"table.{suffix}"))
        assert loaded.estimate(sig, shape, "torch-cpu-1t", num_classes=4) == pytest.approx(expected)
        assert loaded.measured == 0  # nothing re-measured
    breakdown = table.breakdown(sig, shape, "torch-cpu-1t", num_classes=4)
    assert breakdown["ms"].sum() == pytest.approx(expected)
    with pytest.raises(ValueError, match="available on this machine"):
        table.estimate(sig, shape, "tpu-v5")
    with pytest.raises(ValueError, match=".json or .csv"):
        table.save(tmp_path / "table.txt")


def test_fit_correction():
    assert latency_table.fit_correction([(1.0, 1.5), (2.0, 2.5)], fit_scale=False) == (1.0, 0.5)
    scale, overhead = latency_table.fit_correction([(1.0, 1.2), (2.0, 2.3), (3.0, 3.4)])
    assert scale == pytest.approx(1.1) and overhead == pytest.approx(0.1)
    scale, overhead = latency_table.fit_correction([(1.0, 1.2), (2.0, 2.3), (3.0, 9.0), (4.0, 4.5)])
    assert scale == pytest.approx(1.1) and overhead == pytest.approx(0.1, abs=0.05)  # one bad reference
    assert latency_table.fit_correction([(1.0, 1.0), (2.0, 5.0)])[0] == latency_table.SCALE_RANGE[1]  # clipped
    assert latency_table.fit_correction([(1.0, 1.1), (1.5, 2.0)]) == (1.0, pytest.approx(0.3))  # too close


def test_latency_estimate_is_the_calibrated_layer_sum_and_validate_reports_its_error():
    """Calibrate on one VGG11 (four references), estimate two other signatures and compare with
    their measured latency. How close the estimate comes is a timing figure, printed by
    ``python -m tutorial_lib.bench constraints`` (``make bench``), not asserted here: on a
    shared 2-core machine it ranged from 16% to 47% at this toy scale."""
    full = vgg.vgg_signature("vgg11", 1 / 16)
    others = signatures.sample(2, "vgg11", 1 / 16, seed=7)
    table = latency_table.LatencyTable(min_run_time=0.015, model_min_run_time=0.05, random_prunings=1)
    for batch in (1, 8):
        shape = (batch, 3, 32, 32)
        cal = table.calibrate(full, shape, "torch-cpu-1t")
        assert cal.references == 4 and len(cal.points) == 4
        assert latency_table.SCALE_RANGE[0] <= cal.scale <= latency_table.SCALE_RANGE[1]
        assert (cal.scale, cal.overhead_ms) == latency_table.fit_correction(cal.points)
        result = latency_table.validate(others, [shape], "torch-cpu-1t", table, num_classes=100, min_run_time=0.05)
        assert list(result["batch"]) == [batch, batch] and (result["measured_ms"] > 0).all()
        for row in result.itertuples():
            assert row.estimate_ms == pytest.approx(max(cal.scale * row.layer_sum_ms + cal.overhead_ms, 0.0))
            assert row.error_pct == pytest.approx(100 * (row.estimate_ms - row.measured_ms) / row.measured_ms)


# -- budgets ------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_norm", [True, False])
def test_closed_form_costs_match_counted_ones(batch_norm):
    model = vgg.VGG([5, "M", 7, 3, "M", 6], num_classes=9, batch_norm=batch_norm)
    for shape in [(1, 3, 32, 32), (3, 3, 16, 16), (2, 3, 24, 24), (1, 3, 6, 6)]:  # 6 -> 3 -> 2: pools round up
        assert budgets.spec_cost(model.spec(), "params", shape) == metrics.count_parameters(model)
        assert budgets.spec_cost(model.spec(), "flops", shape) == metrics.count_flops(model, shape)
        assert budgets.cost(model, "flops", shape) == metrics.count_flops(model, shape)


def test_feasible_range_and_check():
    spec = vgg.VGG(vgg.vgg_signature("vgg19", 1 / 16), num_classes=100).spec()
    low, high = budgets.feasible_range(spec, "params", (1, 3, 32, 32))
    assert low == 410  # the all-one-channel VGG19 of the seed
    assert high == metrics.count_parameters(vgg.VGG(spec["signature"], num_classes=100))
    assert budgets.check(budgets.Budget("params", high / 2), spec) == (low, high)
    with pytest.raises(ValueError, match=r"outside the feasible range .*\[410, "):
        budgets.check(budgets.Budget("params", 100), spec)
    with pytest.raises(ValueError, match="outside the feasible range"):
        budgets.check(budgets.Budget("flops", 1e12), spec)
    with pytest.raises(ValueError, match="valid choices: params, flops, latency"):
        budgets.Budget("energy", 1.0)
    with pytest.raises(ValueError, match="available on this machine: torch-cpu-1t"):
        budgets.Budget("latency", 1.0, platform="jetson-tx2")
    with pytest.raises(ValueError, match="needs a platform"):
        budgets.Budget("latency", 1.0)
    with pytest.raises(ValueError, match="> 0"):
        budgets.Budget("params", -5)
    table = FakeTable()
    low, high = budgets.feasible_range(spec, "latency", (1, 3, 32, 32), "torch-cpu-1t", table=table)
    assert 0 < low < high
    with pytest.raises(ValueError, match="on torch-cpu-1t at batch 1"):
        budgets.check(budgets.Budget("latency", high * 2, "torch-cpu-1t"), spec, table=table)


def test_masked_cost_is_what_packing_gives():
    gen = torch.Generator().manual_seed(0)
    masked = masks.insert_masks(vgg.VGG([8, "M", 6, 12, "M", 5], num_classes=4))
    for mask in masks.masks_of(masked).values():
        with torch.no_grad():
            mask.logits.copy_(torch.randn(mask.logits.shape, generator=gen))
    packed = pack.pack(masked)
    shape, table = (1, 3, 32, 32), FakeTable()
    assert budgets.masked_cost(masked, "params", shape) == metrics.count_parameters(packed)
    assert budgets.masked_cost(masked, "flops", shape) == metrics.count_flops(packed, shape)
    assert budgets.kept_spec(masked)["signature"] == packed.signature
    assert budgets.masked_cost(masked, "latency", shape, "torch-cpu-1t", table=table) == pytest.approx(
        table.estimate(packed, shape, "torch-cpu-1t"))
    assert budgets.cost(masked, "params", shape) == metrics.count_parameters(packed)


# -- the adaptive loop ----------------------------------------------------------------------
def _step(state, before, after, acc, budget=100.0, **kw):
    return next_phase(state, EpochResult(before, after, budget, acc), **kw)


def test_sparsity_phase_packs_when_the_cost_falls():
    state = LoopState()
    assert _step(state, 200, 200, 50.0) == (state, "sparsify")
    new, action = _step(state, 200, 150, 50.0)
    assert action == "pack" and new.phase == "finetune" and new.best_accuracy == -math.inf


def test_over_budget_and_stalled_remasks():
    s = LoopState(phase="finetune")
    s, a = _step(s, 150, 150, 40.0)
    assert a == "finetune" and s.best_accuracy == 40.0
    s, a = _step(s, 150, 150, 39.0)
    assert a == "finetune" and s.stale_epochs == 1
    s, a = _step(s, 150, 150, 40.0)  # equal is no improvement
    assert a == "remask" and s.phase == "sparsity"


def test_under_budget_and_stalled_cuts_lr_once_then_stops():
    s = LoopState(phase="finetune", best_accuracy=60.0)
    actions = []
    for _ in range(8):
        s, a = _step(s, 90, 90, 50.0, patience_under=4)
        actions.append(a)
        if a == "stop":
            break
    assert actions == ["finetune"] * 3 + ["cut_lr"] + ["finetune"] * 3 + ["stop"]
    assert s.phase == "done" and s.lr_cuts == 1


def test_improvement_resets_the_counters():
    s = LoopState(phase="finetune", best_accuracy=60.0)
    s, _ = _step(s, 90, 90, 50.0)
    s, _ = _step(s, 90, 90, 50.0)
    assert s.stale_epochs == 2
    s, a = _step(s, 90, 90, 61.0)
    assert a == "finetune" and s.stale_epochs == 0 and s.best_accuracy == 61.0
    s, a = _step(s, 150, 150, 60.0, patience_over=2)  # over budget now: one stale epoch is not enough
    assert a == "finetune"


@pytest.mark.parametrize("kind", ["params", "flops", "latency"])
def test_landing_removes_just_enough_closed_channels(kind):
    model = vgg.VGG([16, "M", 32, 32, "M", 64], num_classes=10)
    masked = masks.insert_masks(model)
    gen = torch.Generator().manual_seed(1)
    for mask in masks.masks_of(masked).values():  # about 80% of the channels closed
        with torch.no_grad():
            mask.logits.copy_(torch.rand(mask.logits.shape, generator=gen) - 0.8)
    shape, platform, table = (1, 3, 32, 32), "torch-cpu-1t", FakeTable()
    full = budgets.spec_cost(model.spec(), kind, shape, platform, table=table)
    limit = 0.6 * full
    assert budgets.masked_cost(masked, kind, shape, platform, table=table) < 0.95 * limit  # overshoot
    closed_before = {layer: ~m.survivors() for layer, m in masks.masks_of(masked).items()}
    cost_of = lambda widths: budgets.spec_cost(models_resize(model.spec(), widths), kind, shape, platform,  # noqa
                                               table=table)
    value = adaptive.land(masked, limit, cost_of)
    packed = pack.pack(masked)
    assert 0.95 * limit <= value <= limit
    assert budgets.cost(packed, kind, shape, platform, table=table) == pytest.approx(value)
    for layer, m in masks.masks_of(masked).items():  # only channels the masks had closed are removed
        assert not (~m.survivors() & ~closed_before[layer]).any()


def models_resize(spec, widths):
    from tutorial_lib import models

    return models.resize_spec(spec, widths)


def test_adaptive_run_ends_within_a_params_budget(tiny_cfg):
    bundle = data.load(tiny_cfg)
    model = vgg.VGG([8, "M", 16, "M", 16], num_classes=bundle.num_classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    full = metrics.count_parameters(model)
    budget = budgets.Budget("params", 0.5 * full)
    final, history = adaptive.run_adaptive(model, bundle, tiny_cfg, budget, max_epochs=8, lam=1.0, mask_lr=0.05,
                                           patience_over=1, patience_under=1)
    assert {"epoch", "phase", "params", "flops", "latency_ms", "accuracy", "lr", "action", "cost"} <= set(history)
    assert history["phase"].iloc[0] == "sparsity" and history["action"].iloc[0] == "pack"
    assert 0.95 * budget.value <= metrics.count_parameters(final) <= budget.value  # landed in the band
    assert history["params"].iloc[-1] == metrics.count_parameters(final)
    assert history["latency_ms"].isna().all()  # no platform named
    assert not masks.masks_of(final)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model is untouched
    # the loop did what the state machine says, epoch by epoch
    state, cost_before = LoopState(), float(full)
    for row in history.itertuples():
        cost_after = row.masked_cost if row.phase == "sparsity" else cost_before
        state, action = next_phase(state, EpochResult(cost_before, cost_after, budget.value, row.accuracy),
                                   patience_over=1, patience_under=1)
        assert row.action.split("+")[0] == action and row.phase in ("sparsity", "finetune")
        cost_before = row.cost
    if "cut_lr" in list(history["action"]):
        assert history["lr"].iloc[-1] == pytest.approx(0.1 * history["lr"].iloc[0])
    with pytest.raises(ValueError, match="feasible range"):
        adaptive.run_adaptive(model, bundle, tiny_cfg, budgets.Budget("params", 10))


def test_adaptive_run_with_a_latency_budget_and_enforcement(tiny_cfg):
    bundle = data.load(tiny_cfg)
    model = vgg.VGG([8, "M", 16], num_classes=bundle.num_classes)
    table = FakeTable()
    full = budgets.cost(model, "latency", (1, 3, 32, 32), "torch-cpu-1t", table=table)
    budget = budgets.Budget("latency", 0.7 * full, "torch-cpu-1t")
    # lambda 0: no mask closes, the loop cannot get under budget by itself and is forced at the end
    final, history = adaptive.run_adaptive(model, bundle, tiny_cfg, budget, max_epochs=2, lam=0.0,
                                           mask_lr=1e-7, table=table)
    assert list(history["action"]) == ["sparsify", "sparsify+max_epochs+enforce"]
    assert budgets.cost(final, "latency", (1, 3, 32, 32), "torch-cpu-1t", table=table) <= budget.value
    assert history["latency_ms"].iloc[-1] == pytest.approx(history["cost"].iloc[-1])


def test_a_measured_correction_makes_the_latency_loop_land_on_measurement(tiny_cfg):
    """Where the table overestimates (measured = 0.7 x estimate), the loop that knows it keeps
    more channels, and lands with its *corrected* cost, not the table's, within the budget."""
    bundle = data.load(tiny_cfg)
    model = vgg.VGG([8, "M", 16, "M", 16], num_classes=bundle.num_classes)
    table, shape = FakeTable(), (1, 3, 32, 32)
    budget = budgets.Budget("latency", 0.5 * budgets.cost(model, "latency", shape, "torch-cpu-1t", table=table),
                            "torch-cpu-1t")
    asked = []

    def overestimated(packed):
        asked.append(packed)
        return 0.7

    kw = dict(max_epochs=4, lam=1.0, mask_lr=0.05, patience_over=1, patience_under=1, table=table)
    corrected, history = adaptive.run_adaptive(model, bundle, tiny_cfg, budget, measured_over_estimate=overestimated,
                                               **kw)
    plain, plain_history = adaptive.run_adaptive(model, bundle, tiny_cfg, budget, **kw)
    assert asked and not any(masks.masks_of(m) for m in asked)  # packed models: before landing, after packing
    assert history["measured / estimate"].iloc[-1] == 0.7 and (plain_history["measured / estimate"] == 1.0).all()
    estimate = budgets.cost(corrected, "latency", shape, "torch-cpu-1t", table=table)
    assert 0.7 * estimate <= budget.value * (1 + 1e-9) < estimate  # within on measurement, over on the table
    assert history["cost"].iloc[-1] == pytest.approx(0.7 * estimate)
    assert metrics.count_parameters(corrected) > metrics.count_parameters(plain)


# -- signatures ------------------------------------------------------------------------------
def test_sampled_signatures_are_prunings_of_the_full_one():
    full = vgg.vgg_signature("vgg19", 0.25)
    for mode in signatures.MODES:
        sigs = signatures.sample(20, "vgg19", 0.25, mode=mode, seed=3)
        assert sigs == signatures.sample(20, "vgg19", 0.25, mode=mode, seed=3)
        assert sigs != signatures.sample(20, "vgg19", 0.25, mode=mode, seed=4)
        for sig in sigs:
            assert [v == "M" for v in sig] == [v == "M" for v in full]
            assert all(1 <= v <= f for v, f in zip(sig, full) if v != "M")
    log_mean = pd.Series([v for s in signatures.sample(50, mode="log") for v in s if v != "M"]).mean()
    uni_mean = pd.Series([v for s in signatures.sample(50, mode="uniform") for v in s if v != "M"]).mean()
    assert log_mean < uni_mean
    with pytest.raises(ValueError, match="valid choices: uniform, log"):
        signatures.sample(1, mode="normal")


def test_evaluate_signatures_and_rank_correlations(tiny_cfg):
    bundle = data.load(tiny_cfg)
    sigs = signatures.sample(2, "vgg11", 1 / 16, seed=0)
    table = signatures.evaluate_signatures(sigs, bundle, tiny_cfg, epochs=1, min_run_time=0.01)
    assert list(table.columns) == ["signature", "params", "flops", "latency_ms[torch-cpu-1t]", "accuracy",
                                   "train_seconds"]
    assert len(table) == 2 and (table["latency_ms[torch-cpu-1t]"] > 0).all()
    assert table["signature"][0] == signatures.describe(sigs[0])
    assert table["params"][0] == metrics.count_parameters(vgg.VGG(sigs[0], num_classes=bundle.num_classes))
    corr = signatures.rank_correlations(table)
    assert list(zip(corr["x"], corr["y"])) == [("accuracy", "params"), ("accuracy", "flops"),
                                               ("accuracy", "latency_ms[torch-cpu-1t]"),
                                               ("latency_ms[torch-cpu-1t]", "flops")]
    assert corr["spearman"].dropna().between(-1, 1).all()
    made_up = pd.DataFrame({"params": [1, 2, 3, 4], "flops": [10, 30, 20, 40], "accuracy": [5, 6, 7, 8],
                            "latency_ms[x]": [4, 3, 2, 1]})
    got = signatures.rank_correlations(made_up).set_index(["x", "y"])["spearman"]
    assert got[("accuracy", "params")] == pytest.approx(1.0)
    assert got[("accuracy", "flops")] == pytest.approx(0.8)
    assert got[("latency_ms[x]", "flops")] == pytest.approx(-0.8)


def test_latencies_are_taken_in_one_memory_layout():
    """Training leaves a model channels-last; the table times NCHW layers. Timed as they came,
    trained models ran 14% faster than the table's estimate of the same signature."""
    from tutorial_lib.measure import timer

    model = vgg.VGG([4, "M", 8], num_classes=10)
    assert timer.in_timing_layout(model) is model
    model.to(memory_format=torch.channels_last)
    timed = timer.in_timing_layout(model)
    assert timed is not model and all(p.is_contiguous() for p in timed.parameters())
    assert not model.features[0].weight.is_contiguous()  # the caller's model keeps its layout
    assert timer.measure_latency(model, (1, 3, 8, 8), min_run_time=0.01).median_ms > 0
    assert not model.features[0].weight.is_contiguous()
    # a runtime chooses its own layout and is timed as it is: eager NCHW, channels_last NHWC
    from tutorial_lib.measure import runtimes

    assert all(p.is_contiguous() for p in runtimes.prepare(model, "eager", (1, 3, 8, 8)).parameters())
    nhwc = runtimes.prepare(model, "channels_last", (1, 3, 8, 8))
    assert not nhwc.model.features[0].weight.is_contiguous()
    assert timer.measure_latency(nhwc, (1, 3, 8, 8), min_run_time=0.01, as_is=True).median_ms > 0
