import dataclasses

import pytest
import torch

from tutorial_lib import profiles


def test_profiles_resolve_with_their_settings():
    tut = profiles.resolve("tutorial")
    assert (tut.dataset, tut.arch, tut.width) == ("digits_m", "vgg19", 0.25)
    assert profiles.resolve("smoke").dataset == "fake"


def test_paper_profile_is_the_published_recipe():
    cfg = profiles.resolve("paper", device="cpu")
    assert (cfg.dataset, cfg.arch, cfg.width) == ("cifar100", "vgg19", 1.0)
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == (0.1, 0.9, 5e-4, 256)
    assert (cfg.epochs, cfg.milestones, cfg.lr_gamma, cfg.augment) == (164, (81, 122), 0.1, True)


def test_none_keeps_the_profile_value_and_overrides_apply():
    cfg = profiles.resolve("tutorial", epochs=None, seed=3, width=0.5)
    assert cfg.epochs == profiles.resolve("tutorial").epochs == 8
    assert (cfg.seed, cfg.width) == (3, 0.5)


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match="valid profiles: smoke, tutorial, paper"):
        profiles.resolve("fast")


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) epoch;.*epochs"):
        profiles.resolve("tutorial", epoch=3)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(epochs=-1), r"'epochs' = -1 is out of range: valid values lie in \[0, 1000\]"),
        (dict(width=0.0), r"'width' = 0.0 is out of range"),
        (dict(lr=100.0), r"'lr' = 100.0 is out of range"),
        (dict(epochs=2.5), "must be a whole number"),
        (dict(epochs="3"), "must be a whole number"),
        (dict(augment="yes"), "must be True or False"),
        (dict(dataset="mnist"), "valid choices: digits, digits_m, cifar10, cifar100, imagenet, fake"),
        (dict(arch="resnet18"), "valid choices: vgg8, vgg11, vgg13, vgg16, vgg19"),
        (dict(device="tpu"), "valid choices: cpu, cuda, cuda:N, auto"),
        (dict(milestones=[1, -2]), "list of epoch numbers"),
    ],
)
def test_bad_values_are_rejected_with_the_valid_choices(override, message):
    with pytest.raises(ValueError, match=message):
        profiles.resolve("tutorial", **override)


def test_cuda_is_rejected_when_absent(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        profiles.resolve("tutorial", device="cuda")
    assert profiles.resolve("paper").device == "cpu"  # auto falls back to the CPU


def test_replace_validates_too():
    cfg = profiles.resolve("smoke")
    assert cfg.replace(epochs=2).epochs == 2
    with pytest.raises(ValueError):
        cfg.replace(epochs=10**6)


def test_each_knob_is_declared_once_in_one_recipe():
    from tutorial_lib import recipes

    names = [f.name for cls in recipes.RECIPES.values() for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names)) == len(profiles.KNOBS)
    for cls in recipes.RECIPES.values():  # every knob has a type the checks know and a tutorial default
        cls()
    cfg = profiles.resolve("tutorial")
    assert cfg.joint.prune_lambda == cfg.prune_lambda and isinstance(cfg.depth, recipes.Depth)
    assert "[depth_pruning]" in profiles.describe("smoke") and "depth_kd_weight" in profiles.describe("smoke")
    with pytest.raises(AttributeError, match="no setting 'prune_lamda'"):
        cfg.prune_lamda
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) prune_lamda"):
        cfg.replace(prune_lamda=0.1)


def test_a_recipe_checks_its_knobs_wherever_it_is_built():
    from tutorial_lib import recipes

    with pytest.raises(ValueError, match=r"'depth_height' = 100 is not valid: 128 must divide"):
        recipes.Depth(depth_height=100)
    with pytest.raises(ValueError, match="must be a list of numbers >= 0"):
        recipes.Joint(frontier_lambdas=[-1])
    assert recipes.Baseline(milestones=[7, 6]).milestones == (6, 7)  # epochs are sorted


def test_cache_keys_follow_the_recipes_an_artifact_reads():
    from tutorial_lib import cache
    from tutorial_lib.constraints import experiment
    from tutorial_lib.pruning import compare

    cfg = profiles.resolve("smoke")
    code = ("tutorial_lib.train",)
    joint = cache.key(cfg, compare.PRUNED_RECIPES, code)
    assert joint == cache.key(cfg.replace(signature_count=1, device="cpu", seeds=5, student_epochs=3),
                              compare.PRUNED_RECIPES, code)
    assert joint != cache.key(cfg.replace(mask_lr=0.1), compare.PRUNED_RECIPES, code)
    constrained = cache.key(cfg, experiment.CONSTRAINED_RECIPES, code)
    assert constrained == cache.key(cfg.replace(prune_lambda=0.5), experiment.CONSTRAINED_RECIPES, code)
    assert constrained != cache.key(cfg.replace(constrained_lr=0.5), experiment.CONSTRAINED_RECIPES, code)


def test_deviations_from_the_published_methods_are_listed_with_a_reason_and_the_paper_profile_has_none():
    from tutorial_lib import recipes

    tutorial = profiles.deviations(profiles.resolve("tutorial"), "constraints")
    assert {"constrained_lr", "constrained_lambda", "constrained_patience_over"} <= set(tutorial["knob"])
    assert tutorial["why"].str.len().min() > 20 and "constrained_mask_lr" not in set(tutorial["knob"])
    assert profiles.deviations(profiles.resolve("paper")).empty
    changed = profiles.deviations(profiles.resolve("paper", constrained_lr=1e-3), "constraints")
    assert changed.set_index("knob").loc["constrained_lr", ["here", "published"]].tolist() == [1e-3, 1e-4]
    with pytest.raises(ValueError, match="must say why"):
        recipes.knob(1.0, 0.0, 2.0, published=0.5)
    lines = profiles.describe_deviations(profiles.resolve("tutorial"), "depth_pruning").splitlines()
    assert "depth_mask_loss: cost_sum here, filter_sum published. Why: " in "\n".join(lines) and len(lines) == 5
    assert profiles.describe_deviations(profiles.resolve("paper")) == "none: every knob as published"
    # knobs that share a reason are named together on its one line (lesson 02: the group's optimizer, rates and term)
    joint = profiles.describe_deviations(profiles.resolve("tutorial"), "gates", "joint").splitlines()
    assert len(joint) == 4 and joint[0].startswith("mask_optimizer: sgd here, adam published; mask_lr: 0.01 here, "
                                                   "0.0001 published; mask_loss: filter_sum here, layer_mean published")
    assert joint[1].startswith("prune_warmup_epochs: 1 here, 0 published. Why: ")  # our two additions, one each
    assert joint[2].startswith("prune_settle_epochs: 3 here, 0 published. Why: ")
    assert joint[3].startswith("slimming_s: 0.01 here, 0.0001 published. Why: ")
