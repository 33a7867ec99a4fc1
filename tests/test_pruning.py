import copy

import pytest
import torch
from torch import nn

from fixtures import write_imagefolder
from tutorial_lib import cache, checkpoint, data, distill, masks, metrics, models, profiles
from tutorial_lib.models import vgg
from tutorial_lib.pruning import baselines, compare, joint, pack


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
    for method in ("slimming", "l1_norm"):
        assert results[method].params <= joint_r.params
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
    assert table.loc[5, "published top-1 % (CIFAR-100)"] == ""  # no published L1-norm row
    assert table.iloc[-1]["method"] == "Variational CNN pruning (CVPR19) (published only, not run here)"
    assert table.iloc[-1]["published top-1 % (CIFAR-100)"] == 73.33 and table.iloc[-1]["top-1 % (fake)"] == ""
    bn = compare.bn_table(runs)
    assert list(bn["seed"]) == [str(cfg.seed), str(cfg.seed + 1), "mean"]
    assert bn.loc[0, "top-1 % packed, BN re-estimated"] == round(joint_r.accuracy, 2)
    assert bn.loc[2, "points from re-estimation"] == round(bn["points from re-estimation"][:2].mean(), 2)
    ranked = compare.ranking(b, runs, len(bundle.test)).set_index("method")
    assert ranked.loc["Joint end-to-end pruning (ours)", "verdict"] == "reference"
    assert set(ranked["seeds"]) == {2} and set(ranked["verdict"]) <= {"reference", "tie", "above", "below"}
    goals = compare.targets(b, runs, len(bundle.test))
    assert goals.loc[2, "met"] == (ranked.loc["Same pruned architecture, from scratch", "verdict"] == "below")
    with pytest.raises(ValueError, match="valid choices"):
        compare.run_methods(base, bundle, cfg, methods=("joint", "taylor"))
    # later lessons get the same packed model back from the cache, rebuilt from its spec
    again = compare.joint_pruned(base, bundle, cfg)
    assert again.signature == joint_r.model.signature
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), joint_r.model.state_dict().values()))


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
    cfg = smoke_cfg.replace(prune_epochs=1, kd_weight=1.0, mask_loss="layer_mean")
    bundle = data.load(cfg)
    base = models.build(cfg, bundle.num_classes)
    before = copy.deepcopy(base.state_dict())
    masked = masks.insert_masks(copy.deepcopy(base))
    history = joint.prune(masked, base, bundle, cfg)
    assert {"loss_task", "loss_kd", "loss_mask", "kept_channels_pct"} <= set(history.columns)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the teacher is frozen
    assert all(p.requires_grad for p in base.parameters())  # and left usable by the caller


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
