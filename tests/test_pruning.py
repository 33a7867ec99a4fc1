import copy

import pytest
import torch
from torch import nn

from fixtures import write_imagefolder
from tutorial_lib import cache, checkpoint, data, distill, masks, metrics, models, profiles, terms
from tutorial_lib.models import vgg
from tutorial_lib.pruning import baselines, compare, depgraph, joint, pack


def _randomise(model: nn.Module, gen: torch.Generator) -> None:
    """Random BN statistics and affine parameters, so that slicing mistakes show."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)


def _random_pattern(masked, gen, one_channel_layers=()):
    for layer, mask in masks.masks_of(masked).items():
        with torch.no_grad():
            mask.logits.copy_(torch.randn(mask.logits.shape, generator=gen))
            if layer in one_channel_layers:
                mask.logits.fill_(-1.0)
            mask.logits[0, 0] = 1.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("head", ["cifar", "imagenet"])
def test_packed_model_equals_masked_model(seed, head):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    size = 32 if head == "cifar" else 64
    model = vgg.VGG([8, "M", 6, 12, "M", 10, "M", 7], num_classes=5, head=head, batch_norm=head == "cifar")
    _randomise(model, gen)
    masked = masks.insert_masks(model)
    _random_pattern(masked, gen, one_channel_layers=("features.0",) if seed % 2 else ("features.4", "features.7"))
    packed = pack.pack(masked)
    masked.eval(), packed.eval()
    x = torch.randn(3, 3, size, size)
    assert torch.allclose(masked(x), packed(x), atol=1e-5)
    assert metrics.count_parameters(packed) == masks.estimate(masked, (1, 3, size, size), flops=False)["params_kept"]
    assert not any(isinstance(m, masks.ChannelMask) for m in packed.modules())
    assert min(v for v in packed.signature if v != "M") >= 1
    # idempotent: masking the packed model afresh (all open) and packing again changes nothing
    again = pack.pack(masks.insert_masks(packed))
    assert again.signature == packed.signature
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), packed.state_dict().values()))


def test_a_layer_with_every_mask_closed_keeps_its_strongest_channel():
    masked = masks.insert_masks(vgg.VGG([4, "M", 3], num_classes=2))
    with torch.no_grad():
        masks.masks_of(masked)["features.0"].logits.copy_(torch.tensor([-3.0, -0.5, -2.0, -1.0]).view(1, 4, 1, 1))
    assert pack.keep_indices(masked)["features.0"].tolist() == [1]
    assert pack.pack(masked).signature == [1, "M", 3]
    assert masks.kept_channels(masked)["kept"].tolist() == [1, 3]
    packed_params = metrics.count_parameters(pack.pack(masked))
    assert masks.estimate(masked, (1, 3, 32, 32))["params_kept"] == packed_params


def test_pack_round_trips_through_a_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(0)
    masked = masks.insert_masks(vgg.VGG([6, "M", 5], num_classes=3))
    _random_pattern(masked, gen)
    packed = pack.pack(masked).eval()
    path = checkpoint.save(tmp_path / "packed.pt", packed)
    reloaded = models.from_spec(checkpoint.read_meta(path)["spec"])
    checkpoint.load(path, reloaded)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(reloaded.eval()(x), packed(x))


def test_pack_rejects_models_without_masks_or_spec():
    with pytest.raises(ValueError, match="insert_masks"):
        pack.pack(vgg.VGG([4, "M", 3], num_classes=2))

    class NoSpec(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match="spec"):
        pack.pack(masks.insert_masks(NoSpec()))


def test_kd_loss():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]])
    kd = distill.get("kd")
    assert kd(logits, logits).item() == pytest.approx(0.0, abs=1e-7)
    t, s, T = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]]), 2.0
    pt = torch.softmax(t / T, 1)
    expected = T**2 * (pt * (pt.log() - torch.log(torch.tensor([0.5, 0.5])))).sum()
    assert kd(s, t, T).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="valid choices: kd"):
        distill.get("fitnet2")


def test_global_and_per_layer_selection_meet_the_budget():
    masked = masks.insert_masks(vgg.VGG([16, "M", 32, 32, "M", 64], num_classes=10))
    total = masks.estimate(masked, (1, 3, 32, 32), flops=False)["params_total"]
    gen = torch.Generator().manual_seed(0)
    scores = {layer: torch.rand(m.channels, generator=gen) for layer, m in masks.masks_of(masked).items()}
    for select in (baselines.select_global, baselines.select_per_layer):
        budget = total // 4
        pattern = select(masked, scores, budget)
        masks.set_pattern(masked, pattern)
        kept = masks.estimate(masked, (1, 3, 32, 32), flops=False)["params_kept"]
        assert 0.8 * budget <= kept <= budget
        assert all(on.any() for on in pattern.values())
    per_layer = baselines.select_per_layer(masked, scores, total // 4)
    rates = [on.float().mean().item() for on in per_layer.values()]
    assert max(rates) - min(rates) < 0.1  # one rate for every layer
    with pytest.raises(ValueError, match="below the smallest model"):
        baselines.select_global(masked, scores, 10)


def test_scores_for_slimming_and_l1_norm():
    model = vgg.VGG([4, "M", 3], num_classes=2)
    with torch.no_grad():
        model.features[1].weight.copy_(torch.tensor([0.5, -2.0, 0.1, 1.0]))
    assert baselines.bn_scales(model)["features.0"].tolist() == pytest.approx([0.5, 2.0, 0.1, 1.0])
    l1 = baselines.filter_l1(model)
    assert torch.allclose(l1["features.4"], model.features[4].weight.abs().sum(dim=(1, 2, 3)))


def _trained_looking_vgg() -> nn.Module:
    """A small VGG whose BN scales differ (a fresh one has every |gamma| = 1: no ranking)."""
    model = vgg.VGG([16, "M", 32, 32, "M", 64], num_classes=10)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.05)
    return model


@pytest.mark.parametrize("method", list(depgraph.CRITERIA))
def test_torch_pruning_meets_the_parameter_budget_and_leaves_the_classes(method):
    model = _trained_looking_vgg()
    example = torch.zeros(1, 3, 32, 32)
    total = metrics.count_parameters(model)
    for budget in (total // 2, total // 10):
        criterion, global_pruning = depgraph.CRITERIA[method]
        pruned = depgraph.prune_to(model, budget, criterion, global_pruning, example)
        kept = metrics.count_parameters(pruned)
        assert 0.85 * budget <= kept <= budget, (budget, kept)
        assert pruned(torch.zeros(2, 3, 32, 32)).shape == (2, 10)  # the classifier keeps every class
        widths = [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)]
        assert min(widths) >= 1 and widths != [16, 32, 32, 64]
        if not global_pruning:  # one ratio for every layer
            ratios = [w / full for w, full in zip(widths, (16, 32, 32, 64))]
            assert max(ratios) - min(ratios) < 0.15
    assert metrics.count_parameters(model) == total  # the original is left whole
    with pytest.raises(ValueError, match="below the smallest model"):
        depgraph.prune_to(model, 10, *depgraph.CRITERIA[method], example)
    with pytest.raises(ValueError, match="valid choices: l1, bn_scale"):
        depgraph.importance("taylor")


def test_torch_pruning_criteria_rank_what_they_say():
    """L1 keeps the filters of largest L1 norm; BN scale those of largest |gamma|."""
    model = vgg.VGG([4, "M", 3], num_classes=2)
    with torch.no_grad():
        model.features[0].weight.copy_(torch.ones_like(model.features[0].weight)
                                       * torch.tensor([1.0, 4.0, 2.0, 3.0]).view(4, 1, 1, 1))
        model.features[1].weight.copy_(torch.tensor([4.0, 1.0, 3.0, 2.0]))
    example = torch.zeros(1, 3, 8, 8)
    by_l1 = depgraph.pruned_at(model, 0.5, "l1", False, example)
    by_bn = depgraph.pruned_at(model, 0.5, "bn_scale", False, example)
    assert sorted(by_l1.features[0].weight[:, 0, 0, 0].tolist()) == [3.0, 4.0]
    assert sorted(by_bn.features[1].weight.tolist()) == [3.0, 4.0]


def test_scratch_twins_train_for_scratch_epochs(smoke_cfg):
    cfg = smoke_cfg.replace(train_limit=32, scratch_epochs=3, milestones=(1,))
    spec = vgg.VGG([4, "M", 3], num_classes=10).spec()
    model, history = baselines.scratch(spec, data.load(cfg), cfg)
    assert len(history) == 3 and baselines.scratch_epochs(cfg) == 3
    assert baselines.scratch_epochs(cfg.replace(scratch_epochs=None)) == cfg.epochs


def test_mask_optimizer_is_sgd_or_the_groups_adam_with_the_two_learning_rates(smoke_cfg):
    masked = masks.insert_masks(vgg.VGG([4, "M", 3], num_classes=2))
    sgd = joint.mask_optimizer(masked, smoke_cfg, weight_lr=0.1)
    assert isinstance(sgd, torch.optim.SGD) and [g["lr"] for g in sgd.param_groups] == [0.1, smoke_cfg.mask_lr]
    assert [g["weight_decay"] for g in sgd.param_groups] == [smoke_cfg.weight_decay, 0.0]  # none on the logits
    adam = joint.mask_optimizer(masked, smoke_cfg.replace(mask_optimizer="adam", mask_lr=1e-4), weight_lr=1e-4)
    assert isinstance(adam, torch.optim.Adam) and [g["lr"] for g in adam.param_groups] == [1e-4, 1e-4]
    assert len(adam.param_groups[1]["params"]) == len(masks.mask_parameters(masked))


def test_slimming_sweep_runs_every_setting_at_the_budget_and_marks_the_profiles(smoke_cfg):
    cfg = smoke_cfg.replace(train_limit=32, prune_epochs=3)
    bundle = data.load(cfg)
    base, _ = cache.baseline(cfg, bundle)
    budget = compare.evaluate_packed(base, bundle, cfg, recalibrate=False)[1] // 2
    grid = {"slimming_s": (1e-4, 1e-2), "slimming_sparse_share": (1 / 3, 1.0)}
    sweep = compare.slimming_sweep(base, bundle, cfg, budget, grid)
    assert list(zip(sweep["s"], sweep["sparse epochs"], sweep["fine-tune epochs"])) == \
        [(1e-4, 1, 2), (1e-4, 3, 0), (1e-2, 1, 2), (1e-2, 3, 0)]
    assert (sweep["params"] <= budget).all()
    assert list(sweep["profile's"]) == ["", "", "", ""]  # the profile's 1/2 share is not in this grid
    assert list(sweep["best"]).count("yes") == 1
    assert sweep.loc[list(sweep["best"]).index("yes"), "top-1 %"] == sweep["top-1 %"].max()
    assert baselines.sparse_epochs_of(cfg.replace(prune_epochs=6, slimming_sparse_share=2 / 3)) == 4


def test_all_methods_run_at_one_budget(smoke_cfg):
    cfg = smoke_cfg
    bundle = data.load(cfg)
    base, _ = cache.baseline(cfg, bundle)
    results = compare.run_methods(base, bundle, cfg)
    assert list(results) == list(compare.METHODS)
    joint_r = results["joint"]
    assert joint_r.extra["pack_max_abs_diff"] < 1e-5
    assert joint_r.params == joint_r.extra["estimated_params"]
    assert results["scratch"].model.signature == joint_r.model.signature
    for method in ("slimming", "l1_norm", *depgraph.CRITERIA):
        assert results[method].params <= joint_r.params
    assert results["joint_seed"].history["gate_flips"].iloc[-1] >= 0
    assert list(results["joint"].history["gate_flips"])[-cfg.prune_settle_epochs:] == [0] * cfg.prune_settle_epochs
    assert len(results["slimming"].history["before"]) == baselines.sparse_epochs_of(cfg) > 0  # sparse training ran
    assert len(results["scratch"].history) == cfg.epochs  # Scratch-E: the baseline's schedule
    lat = compare.latencies({"baseline": base, **{k: r.model for k, r in results.items()}}, 32, min_run_time=0.01)
    b_acc, b_params, b_flops = compare.evaluate_packed(base, bundle, cfg, recalibrate=False)
    b = compare.Result("baseline", base, b_acc, b_params, b_flops)
    # a second seed of the same comparison: its table rows are means, its ranking judges the gaps
    runs = {cfg.seed: results, **compare.run_seeds(base, bundle, cfg.replace(seed=cfg.seed + 1, seeds=1))}
    assert list(runs) == [cfg.seed, cfg.seed + 1]
    table = compare.vgg_table(b, runs, lat, "fake", test_images=len(bundle.test))
    assert list(table["method"])[:2] == ["Baseline (unpruned)", "Joint end-to-end pruning (ours)"]
    assert table.loc[1, "top-1 % (fake)"] == round((results["joint"].accuracy + runs[1]["joint"].accuracy) / 2, 1)
    assert table.loc[1, "published top-1 % (CIFAR-100)"] == 73.45
    assert table.loc[6, "method"] == "L1-norm filter pruning"
    assert table.loc[6, "published top-1 % (CIFAR-100)"] == ""  # no published L1-norm row
    assert table.iloc[-1]["method"] == "Variational CNN pruning (CVPR19) (published only, not run here)"
    assert table.iloc[-1]["published top-1 % (CIFAR-100)"] == 73.33 and table.iloc[-1]["top-1 % (fake)"] == ""
    bn = compare.bn_table(runs)
    assert list(bn["seed"]) == [str(cfg.seed), str(cfg.seed + 1), "mean"]
    assert bn.loc[0, "top-1 % packed, BN re-estimated"] == round(joint_r.accuracy, 2)
    assert bn.loc[2, "points from re-estimation"] == round(bn["points from re-estimation"][:2].mean(), 2)
    ranked = compare.ranking(b, runs, len(bundle.test)).set_index("method")
    assert ranked.loc["Joint end-to-end pruning (ours)", "verdict"] == "reference"
    assert set(ranked["seeds"]) == {2} and set(ranked["verdict"]) <= {"reference", "tie", "above", "below"}
    settling = compare.settling_table(runs)
    assert list(settling["epoch"]) == list(range(1, cfg.prune_epochs + 1))
    assert settling["gate flips (ours)"].iloc[-1] == 0
    goals = compare.targets(b, runs, len(bundle.test))
    assert goals.loc[2, "met"] == (ranked.loc["Same pruned architecture, from scratch", "verdict"] == "below")
    with pytest.raises(ValueError, match="valid choices"):
        compare.run_methods(base, bundle, cfg, methods=("joint", "taylor"))
    # later lessons get the same packed model back from the cache, rebuilt from its spec
    again = compare.joint_pruned(base, bundle, cfg)
    assert again.signature == joint_r.model.signature
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), joint_r.model.state_dict().values()))


def test_frontier_over_lambdas_seeds_and_equal_flops(smoke_cfg):
    cfg = smoke_cfg.replace(train_limit=64, seeds=2)
    bundle = data.load(cfg)
    base, _ = cache.baseline(cfg, bundle)
    b = compare.Result("baseline", base, *compare.evaluate_packed(base, bundle, cfg, recalibrate=False))
    methods = ("joint", "l1_norm", "tp_l1_global")
    main = compare.run_seeds(base, bundle, cfg, methods=methods)
    runs = compare.frontier_runs(base, bundle, cfg, main, methods)
    assert list(runs) == [cfg.prune_lambda, *cfg.frontier_lambdas] and all(list(r) == [0, 1] for r in runs.values())
    assert runs[cfg.prune_lambda] == main  # the ranked comparison's runs are reused
    flops = compare.equal_flops_runs(base, bundle, cfg, runs, methods=("tp_bn_global",))
    for lam, per_seed in flops.items():
        for s, r in per_seed.items():
            assert r["joint"] is runs[lam][s]["joint"] and r["tp_bn_global"].flops <= r["joint"].flops
    speed = compare.frontier_latency(base, runs, bundle.image_size, threads=1, min_run_time=0.01)
    assert set(speed) == {(lam, s, m) for lam in runs for s in (0, 1) for m in methods}
    assert all(v > 0 for v in speed.values())
    table = compare.frontier_table(b, runs, speed)
    assert len(table) == len(runs) * 2 * len(methods) and "latency @1 / baseline" in table
    ranked = compare.frontier_ranking(table, len(bundle.test))
    assert set(ranked["lambda"]) == set(runs) and (ranked["seeds"] == 2).all()
    assert (ranked.groupby("lambda")["verdict"].apply(lambda v: (v == "reference").sum()) == 1).all()
    from tutorial_lib import plots
    fig = plots.frontier(table, b.accuracy, 1.0)
    assert len(fig.axes) == 2


def test_imagenet_table_says_not_run_and_paper_path_runs_on_a_fixture(tmp_path):
    table = compare.imagenet_table(None, None, ran=False)
    assert (table["our top-1 %"] == "not run").all() and table.loc[0, "published top-1 %"] == 70.84
    write_imagefolder(tmp_path, per_class=2)
    cfg = compare.imagenet_cfg(profiles.resolve("paper", device="cpu", num_workers=0), str(tmp_path))
    cfg = cfg.replace(width=1 / 64, batch_size=2, epochs=1, max_steps=1, prune_epochs=1)
    bundle = data.load(cfg)
    model = models.build(cfg, bundle.num_classes)
    assert model.head == "imagenet" and not model.batch_norm
    r = compare.run_joint(model, bundle, cfg)
    assert r.extra["pack_max_abs_diff"] < 1e-4 and r.params <= metrics.count_parameters(model)


def test_joint_prune_uses_kd_and_the_named_mask_loss(smoke_cfg):
    cfg = smoke_cfg.replace(prune_epochs=1, prune_settle_epochs=0, kd_weight=1.0, mask_loss="layer_mean")
    bundle = data.load(cfg)
    base = models.build(cfg, bundle.num_classes)
    before = copy.deepcopy(base.state_dict())
    masked = masks.insert_masks(copy.deepcopy(base))
    history = joint.prune(masked, base, bundle, cfg)
    assert {"loss_task", "loss_kd", "loss_mask", "kept_channels_pct"} <= set(history.columns)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the teacher is frozen
    assert all(p.requires_grad for p in base.parameters())  # and left usable by the caller


def test_settling_fixes_the_gates_for_the_last_epochs_while_the_weights_train(smoke_cfg):
    cfg = smoke_cfg.replace(prune_epochs=3, prune_settle_epochs=2, train_limit=64, prune_lambda=0.5)
    bundle = data.load(cfg)
    base = models.build(cfg, bundle.num_classes)
    masked = masks.insert_masks(copy.deepcopy(base))
    logits, weights = [], []

    class Spy(joint.GateTrace):  # the gate log, plus a copy of the logits and a weight per epoch
        def __call__(self, model):
            logits.append(torch.cat([p.detach().flatten().clone() for p in masks.mask_parameters(model)]))
            weights.append(masks.weight_parameters(model)[0].detach().clone())
            return super().__call__(model)

    trace = Spy()
    history = joint.prune(masked, base, bundle, cfg, trace=trace)
    assert not torch.equal(logits[0], torch.cat([p.detach().flatten() for p in
                                                 masks.mask_parameters(masks.insert_masks(copy.deepcopy(base)))]))
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[1], logits[2])  # fixed for the last 2 epochs
    assert not torch.equal(weights[1], weights[2])  # the weights still train there
    assert list(history["gate_flips"])[1:] == [0, 0]
    closed = sum(int((~m.is_open()).sum()) for m in masks.masks_of(masked).values())
    assert history["gate_flips"][0] == closed  # the first epoch counts against the all-open start
    assert len(trace.per_layer) == 3 and set(trace.per_layer[0]) == set(masks.masks_of(masked))
    sched = joint.settling_schedule(torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]},
                                                     {"params": masks.mask_parameters(masked)}], lr=1.0),
                                    epochs=4, settle_epochs=1, gates=masks.mask_parameters(masked))
    rates = []
    for _ in range(4):
        rates.append([g["lr"] for g in sched.optimizer.param_groups])
        sched.optimizer.step()
        sched.step()
    assert [r[0] for r in rates] == pytest.approx([1.0, 0.853553, 0.5, 0.146447], abs=1e-6)  # cosine
    assert [r[1] for r in rates] == pytest.approx([1.0, 0.853553, 0.5, 0.0], abs=1e-6)  # settled in the last
    with pytest.raises(ValueError, match=r"prune_settle_epochs.*valid values lie in \[0, 2\]"):
        smoke_cfg.replace(prune_epochs=3, prune_settle_epochs=3)


def test_warmup_raises_the_mask_term_step_by_step_and_resumes_from_the_schedulers_epoch(smoke_cfg):
    class Epoch:  # a scheduler as Warmup reads it
        last_epoch = 0

    sched = Epoch()
    warm = joint.Warmup(sched, epochs=2, steps=4)
    first = [warm() for _ in range(4)]
    assert first == pytest.approx([0.125, 0.25, 0.375, 0.5])
    sched.last_epoch = 1
    assert [warm() for _ in range(4)] == pytest.approx([0.625, 0.75, 0.875, 1.0])
    sched.last_epoch = 2
    assert warm() == 1.0
    resumed = joint.Warmup(Epoch(), epochs=2, steps=4)  # a run resumed at epoch 1 starts there
    resumed.scheduler.last_epoch = 1
    assert resumed() == pytest.approx(0.625)
    lam = [0.0]
    term = terms.mask(2.0, "filter_sum", scale=lambda: lam[0])
    masked = masks.insert_masks(vgg.VGG([4, "M", 3], num_classes=2))
    assert term(masked, None, None, None).item() == 0.0
    lam[0] = 0.5
    assert term(masked, None, None, None).item() == pytest.approx(masks.sparsity_loss(masked, "filter_sum").item())
    with pytest.raises(ValueError, match=r"prune_warmup_epochs.*valid values lie in \[0, 1\]"):
        smoke_cfg.replace(prune_epochs=3, prune_settle_epochs=2, prune_warmup_epochs=2)


def test_paper_profile_comparison_code_path_on_a_cifar_fixture(tmp_path):
    """Every method at the paper profile's settings (CIFAR-100 loader, augmentation, published
    loss weights and mask term) for one step per epoch, so the GPU path cannot rot unseen."""
    from fixtures import write_cifar100

    write_cifar100(tmp_path, n_train=16, n_test=8)
    cfg = profiles.resolve("paper", data_root=str(tmp_path), device="cpu", num_workers=0, width=1 / 32,
                           batch_size=8, epochs=1, max_steps=1, prune_epochs=2)
    assert (cfg.task_weight, cfg.kd_weight, cfg.kd_temperature, cfg.mask_loss) == (10.0, 1.0, 4.0, "layer_mean")
    bundle = data.load(cfg)
    base, _ = cache.baseline(cfg, bundle)
    results = compare.run_methods(base, bundle, cfg)
    assert set(results) == set(compare.METHODS)
    assert all(r.model.classifier.out_features == 100 for r in results.values())
