"""Lesson 03: packing monodepth across its skip concatenations, the stereo task, the
experiment end to end at the smoke profile, and the lesson's parameters (small and fast)."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tutorial_lib import cache, data, masks, metrics, models, profiles, tables
from tutorial_lib.data import DatasetNotFoundError
from tutorial_lib.depth import experiment as ex
from tutorial_lib.depth import losses
from tutorial_lib.depth import errors
from tutorial_lib.depth.task import StereoDepth, focal_for, image_errors, predict_disparity
from tutorial_lib.models.monodepth import MonoDepth, prunable_convs
from tutorial_lib.pruning.pack import pack

torch.set_num_threads(1)


# --------------------------------------------------------------------------- packing across torch.cat


def _random_pattern(model, seed=0, keep=0.5):
    g = torch.Generator().manual_seed(seed)
    pattern = {}
    for layer, mask in masks.masks_of(model).items():
        on = torch.rand(mask.channels, generator=g) < keep
        on[torch.randint(mask.channels, (1,), generator=g)] = True  # at least one open: packed == masked
        pattern[layer] = on
    return pattern


@pytest.mark.parametrize("seed,iconvs", [(0, False), (1, False), (2, True)])
def test_packed_monodepth_gives_the_masked_disparities_and_the_estimated_size(seed, iconvs):
    torch.manual_seed(seed)
    masked = masks.insert_masks(MonoDepth(width=1 / 8), seed=seed, layers=prunable_convs(iconvs=iconvs))
    assert list(masks.masks_of(masked)) == prunable_convs(iconvs=iconvs)  # graph order: what resize_spec reads
    masks.set_pattern(masked, _random_pattern(masked, seed))
    packed = pack(masked)
    assert isinstance(packed, MonoDepth) and not masks.masks_of(packed)
    x = torch.rand(2, 3, 128, 256)
    with torch.no_grad():
        for a, b in zip(masked.eval()(x), packed.eval()(x)):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    estimate = masks.estimate(masked, (1, 3, 128, 256), flops=False)
    assert metrics.count_parameters(packed) == estimate["params_kept"] < estimate["params_total"]
    # the skips: iconv_i reads upconv_i, conv_{i-1}b and (i <= 3) the coarser disparity, packed in that order
    kept = {layer: int(on.sum()) for layer, on in _random_pattern(masked, seed).items()}
    assert packed.iconv5.in_channels == kept["upconv5"] + kept["conv4b"]
    assert packed.iconv2.in_channels == kept["upconv2"] + kept["conv1b"] + 2
    assert packed.iconv1.in_channels == kept["upconv1"] + 2
    if iconvs:  # the iconvs shrink, and with them the disparity heads' and the next upconv's inputs
        assert packed.iconv_widths == [kept[f"iconv{i}"] for i in range(7, 0, -1)]
        assert packed.disp1.in_channels == kept["iconv1"] and packed.upconv3.in_channels == kept["iconv4"]
        assert models.from_spec(packed.spec()).iconv_widths == packed.iconv_widths


def test_published_pruned_widths_give_the_published_parameter_count():
    widths = [tables.published_value(ex.WIDTHS_TABLE, layer, "pruned_width") for layer in prunable_convs()]
    assert metrics.count_parameters(MonoDepth(widths=widths)) == \
        tables.published_value(ex.WIDTHS_TABLE, "all prunable convs", "params") == 5_951_842


# --------------------------------------------------------------------------- the task


class _DispFromInput(nn.Module):
    """A stand-in model whose left disparity (fraction of width) is the input's first channel."""

    def forward(self, x):
        return (x[:, :2],)


def _gt_loader(offset_px=0.0, valid=None, batch_size=2):
    w = 64
    gt = torch.zeros(3, 1, 8, w)
    gt[:, :, :, 8:] = 40.0  # 0 = no ground truth in the first 8 columns
    left = torch.cat([(gt + offset_px) / w, (gt + offset_px) / w, torch.zeros_like(gt)], 1)
    items = [left, left.clone(), gt] + ([valid] if valid is not None else [])
    return DataLoader(TensorDataset(*items), batch_size=batch_size)


def test_stereo_task_splits_left_as_input_and_sums_the_three_loss_terms():
    task = StereoDepth()
    left, right = torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 64)
    x, target = task.split((left, right, torch.zeros(2, 1, 32, 64)), "cpu")
    assert x is target[0] and torch.equal(target[1], right)
    disps = [torch.full((2, 2, 32 // 2 ** s, 64 // 2 ** s), 0.05) for s in range(4)]
    terms = losses.monodepth_loss(disps, left, right)
    assert task.loss(disps, target).item() == pytest.approx(sum(t.item() for t in terms.values()))
    with pytest.raises(ValueError, match="differ in size"):
        task.split((left, right[..., :32]), "cpu")


def test_evaluate_scores_an_exact_and_a_wrong_disparity():
    task = StereoDepth()
    exact = task.evaluate(_DispFromInput(), _gt_loader(0.0), "cpu")
    assert exact["d1_all"] == 0 and exact["abs_rel"] == pytest.approx(0, abs=1e-6) and exact["a1"] == 1
    assert exact["images"] == 3 and set(ex.METRICS) <= set(exact)
    wrong = task.evaluate(_DispFromInput(), _gt_loader(4.0), "cpu")  # 4 px > 3 px and > 5% of 40 px
    assert wrong["d1_all"] == 100.0
    depth = errors.pixels_to_depth(torch.tensor(40.0), focal_for(64))
    assert wrong["abs_rel"] == pytest.approx(1 - 40 / 44, rel=1e-5)
    assert wrong["rmse"] == pytest.approx(float(depth) * (1 - 40 / 44), rel=1e-4)


def test_evaluate_ignores_pixels_outside_the_valid_mask_and_needs_ground_truth():
    valid = torch.zeros(3, 1, 8, 64, dtype=torch.bool)
    valid[..., :32] = True
    scores = StereoDepth().evaluate(_DispFromInput(), _gt_loader(4.0, valid), "cpu")
    assert scores["d1_all"] == 100.0 and scores["images"] == 3
    assert math.isnan(image_errors(torch.zeros(4, 4), torch.ones(4, 4))["d1_all"])
    with pytest.raises(ValueError, match="no test image has ground truth"):
        StereoDepth().evaluate(_DispFromInput(), _gt_loader(0.0, torch.zeros(3, 1, 8, 64, dtype=torch.bool)), "cpu")
    with pytest.raises(ValueError, match="ground-truth disparity"):
        StereoDepth().evaluate(_DispFromInput(), DataLoader(TensorDataset(torch.zeros(1, 3, 8, 8),
                                                                          torch.zeros(1, 3, 8, 8))), "cpu")


def test_focal_length_is_kittis_own_or_scaled_to_the_width():
    assert focal_for(1242) == 721.5377 and focal_for(1224) == 707.0493
    assert focal_for(621) == pytest.approx(721.5377 / 2)


# --------------------------------------------------------------------------- the experiment (smoke)


def test_lesson_03_end_to_end_at_the_smoke_profile():
    cfg = profiles.resolve("smoke", threads=1)  # one thread: fast on a busy machine
    bundle = ex.load(cfg)
    assert len(bundle.train) == cfg.depth_train_pairs and len(bundle.test) == cfg.depth_test_pairs
    model, history = ex.baseline(cfg, bundle)
    assert list(history.columns[:2]) == ["epoch", "loss_task"] and "test_d1_all" in history
    again, _ = ex.baseline(cfg, bundle)  # from the cache
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    base = ex.measure("baseline", model, bundle, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = ex.prune_monodepth(model, bundle, cfg)
    assert pruned.extra["pack_max_abs_diff"] < 1e-5
    assert cfg.depth_kd_weight > 0 and pruned.history["loss_kd"].iloc[0] > 0  # distilled from the baseline...
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # ...which stays frozen
    assert all(pruned.model.widths[prunable_convs().index(layer)] == 1 for layer in pruned.extra["closed_layers"])
    assert pruned.params == pruned.extra["estimated_params"] < base.params
    assert set(base.scores) == {"test", "motorcycle"} and 0 <= base.scores["test"]["d1_all"] <= 100
    stored = ex.pruned_model(model, bundle, cfg)  # lesson 03 stored it: rebuilt from its spec
    assert stored.widths == pruned.model.widths

    ceiling = ex.speed_ceiling(cfg)
    assert ceiling.widths == [1] * 21 and metrics.count_parameters(ceiling) <= pruned.params
    fps = ex.frames_per_second({"baseline": model, "pruned": pruned.model, "ceiling": ceiling}, cfg,
                               min_run_time=0.01)
    assert list(fps.index) == ["baseline", "pruned", "ceiling"] and fps.columns[0].startswith("torch-cpu-1t")
    parts = ex.time_by_part({"baseline": model, "pruned": pruned.model}, cfg, repeats=2)
    assert list(parts["part"]) == [label for label, _ in ex.PARTS] + ["total"]
    assert list(parts.columns) == ["part", "baseline (ms)", "pruned (ms)"] and (parts.iloc[:, 1:] > 0).all().all()
    assert parts["baseline (ms)"].iloc[-1] == pytest.approx(parts["baseline (ms)"].iloc[:-1].sum(), abs=0.02)
    prior = ex.image_blind(bundle, cfg)
    results = ex.results_table(base, pruned, bundle.name, prior)
    assert list(results["params"]) == [0, base.params, pruned.params]
    speed = ex.fps_table(fps)
    ours = [c for c in speed.columns if c.endswith("(ours)")]
    published = [c for c in speed.columns if c.startswith("published")]
    assert len(ours) == fps.shape[1] and len(published) == 3 and not set(ours) & set(published)
    assert speed.loc[0, "published FPS Jetson TX2"] == 5.6 and speed.loc[2, "published FPS Jetson TX2"] == 2.57
    assert speed.loc[3, "model"].endswith("ceiling speedup (x)") and speed.loc[3, "published FPS Jetson TX2"] == ""
    kitti = ex.kitti_table(base, pruned, ran=False)
    assert kitti.loc[1, "our D1-all"] == "not run" and kitti.loc[1, "published D1-all"] == 32.183
    widths = ex.widths_table(pruned.model, cfg.depth_model_width)
    assert len(widths) == 21 and widths.loc[0, "published: kept"] == 14
    goals = ex.targets(base, pruned, fps)
    assert list(goals["target"][:2]) == ["parameters removed (%)", "D1-all rise on the test set (points)"]
    spread = ex.image_dependence({"baseline": model, "pruned": pruned.model}, bundle, cfg)
    assert list(spread["disparities"]) == ["ground truth", "baseline", "pruned"]
    assert spread["spread across images (px)"].iloc[1] > 0  # a conv net's output moves with its input

    wider = ex.with_iconvs(model, bundle, cfg, pruned)  # beyond the seed: the iconvs masked too
    assert set(masks.masks_of(wider.extra["masked"])) == set(prunable_convs(iconvs=True))
    assert wider.params == wider.extra["estimated_params"] and len(wider.model.iconv_widths) == 7
    assert ex.with_iconvs(model, bundle, cfg.replace(depth_mask_iconvs=True), pruned) is pruned
    both = {"published 21": pruned, "with iconvs": wider}
    fps = ex.frames_per_second({"baseline": model, "published 21": pruned.model, "published 21 ceiling": ceiling,
                                "with iconvs": wider.model, "with iconvs ceiling": ex.speed_ceiling(cfg, iconvs=True)},
                               cfg, min_run_time=0.01)
    scope = ex.scope_table(base, both, fps)
    assert list(scope["masked convs"]) == list(both) and scope.loc[0, "params removed %"] == \
        round(100 * (1 - pruned.params / base.params), 1)
    assert scope.loc[0, "ceiling speedup torch-cpu-1t"] == round(fps.loc["published 21 ceiling", "torch-cpu-1t"]
                                                         / fps.loc["baseline", "torch-cpu-1t"], 2)
    examples = ex.example_disparities({"baseline": model, "pruned": pruned.model}, bundle, cfg)
    assert list(examples["motorcycle"]) == ["input", "ground truth", "baseline", "pruned"]
    assert torch.isnan(examples["motorcycle"]["ground truth"]).any()


def test_pruning_without_distillation_has_no_kd_term():
    cfg = profiles.resolve("smoke", threads=1, depth_kd_weight=0.0)
    bundle = ex.load(cfg)
    model, _ = ex.baseline(cfg, bundle)
    history = ex.prune_monodepth(model, bundle, cfg).history
    assert "loss_kd" not in history and {"loss_task", "loss_mask"} <= set(history.columns)


def test_image_blind_prior_predicts_the_mean_training_disparity_everywhere():
    cfg = profiles.resolve("smoke", threads=1)
    bundle = ex.load(cfg)
    prior = ex.image_blind(bundle, cfg)
    mean = torch.stack([bundle.train[i][2] for i in range(len(bundle.train))]).mean(0)
    for left in (bundle.test[0][0], torch.rand(3, cfg.depth_height, cfg.depth_width)):  # any image: the same map
        assert torch.allclose(predict_disparity(prior.model, left[None])[0], mean, atol=1e-5)
    assert prior.params == 0 and 0 < prior.scores["test"]["d1_all"] <= 100
    assert ex.score_lines(prior).splitlines()[0].startswith("image-blind prior on test      : D1-all")
    assert ex.score_lines(None, "none here") == "none here"
    spread = ex.image_dependence({"prior": prior.model}, bundle, cfg).set_index("disparities")
    assert spread.loc["prior", "spread across images (px)"] == 0  # blind: the same map for every image
    assert spread.loc["ground truth", "spread across images (px)"] > 0
    raw = TensorDataset(torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128))  # pairs without ground truth
    assert ex.image_blind(data.DataBundle(name="raw", train=raw, test=raw, num_classes=0, image_size=128,
                                          description=""), cfg) is None


def test_kitti_data_missing_says_where_to_put_it(tmp_path):
    cfg = profiles.resolve("smoke", depth_data="kitti", data_root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "kitti")):
        ex.load(cfg)


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("override, message", [
    (dict(depth_height=100), r"'depth_height' = 100 is not valid: 128 must divide .* nearest valid: 128"),
    (dict(depth_width=300), r"'depth_width' = 300 .* nearest valid: 256 or 384"),
    (dict(depth_data="nyu"), "valid choices: synthetic, kitti"),
    (dict(depth_mask_loss="l1"), "valid choices: layer_mean, filter_sum"),
    (dict(depth_model_width=0.0), r"'depth_model_width' = 0.0 is out of range"),
    (dict(depth_epochs=-1), r"'depth_epochs' = -1 is out of range"),
    (dict(depth_kd_weight=-0.5), r"'depth_kd_weight' = -0.5 is out of range"),
])
def test_bad_depth_parameters_are_rejected_with_the_valid_choices(override, message):
    with pytest.raises(ValueError, match=message):
        profiles.resolve("tutorial", **override)


def test_paper_profile_is_monodepths_published_recipe():
    cfg = profiles.resolve("paper", device="cpu")
    assert (cfg.depth_data, cfg.depth_height, cfg.depth_width, cfg.depth_model_width) == ("kitti", 256, 512, 1.0)
    assert (cfg.depth_epochs, cfg.depth_batch_size, cfg.depth_lr) == (50, 8, 1e-4)
    assert cfg.depth_kd_weight == 0.0  # the published pruning: task + mask loss
    # the pruned model is keyed by the baseline's recipe and its own; the baseline by its own only
    base = cache.key(cfg, ("depth",), ("tutorial_lib.depth.experiment",))
    assert base == cache.key(cfg.replace(depth_prune_lambda=1.0, epochs=3), ("depth",), ("tutorial_lib.depth.experiment",))
    assert base != cache.key(cfg.replace(depth_lr=1e-3), ("depth",), ("tutorial_lib.depth.experiment",))
    pruned = cache.key(cfg, ex.PRUNED_RECIPES, ("tutorial_lib.depth.experiment",))
    assert pruned != cache.key(cfg.replace(depth_prune_lambda=1.0), ex.PRUNED_RECIPES, ("tutorial_lib.depth.experiment",))


def test_halving_schedule_is_monodepths():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = ex.halving_schedule(opt, 10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step(), sched.step()
    assert lrs == [1.0] * 6 + [0.5] * 2 + [0.25] * 2


def test_frames_per_second_interleaves_the_models_and_keeps_each_ones_median_round(monkeypatch):
    from tutorial_lib.measure import platforms
    from tutorial_lib.measure.timer import Latency

    calls = []
    slow_spell = {("a", 1): 40.0}  # one slow round of model a must not count

    def fake_measure(model, platform, shape, min_run_time, as_is=False):
        round_ = sum(1 for m, p in calls if m == model.tag and p == platform)
        calls.append((model.tag, platform))
        return Latency(median_ms=slow_spell.get((model.tag, round_), 10.0 if model.tag == "a" else 5.0), iqr_ms=0.0,
                       repeats=1, batch_size=1, threads=1, device="cpu", platform=platform)

    monkeypatch.setattr(platforms, "available", lambda: ["torch-cpu-1t"])
    monkeypatch.setattr(platforms, "measure", fake_measure)
    models = {}
    for tag in "ab":
        models[tag] = nn.Identity()
        models[tag].tag = tag
    fps = ex.frames_per_second(models, profiles.resolve("smoke", threads=1), rounds=3)
    assert [m for m, _ in calls] == ["a", "b"] * 3  # in turn, round after round
    assert fps.loc["a", "torch-cpu-1t"] == pytest.approx(100.0) and fps.loc["b", "torch-cpu-1t"] == pytest.approx(200.0)
