import json

import pytest
import torch

from fixtures import write_cifar100
from tutorial_lib import cache, checkpoint, data, masks, models, profiles, train
from tutorial_lib.pruning import joint


def _fit(cfg, folder=None, epochs=None):
    bundle = data.load(cfg)
    model = models.build(cfg, bundle.num_classes)
    history = train.fit(model, bundle, cfg.baseline.schedule, cfg.run, epochs=epochs, checkpoint_dir=folder)
    return model, history


def test_same_seed_same_weights_and_history(smoke_cfg):
    a, ha = _fit(smoke_cfg.replace(epochs=2))
    b, hb = _fit(smoke_cfg.replace(epochs=2))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert ha.drop(columns="epoch_seconds").equals(hb.drop(columns="epoch_seconds"))
    c, _ = _fit(smoke_cfg.replace(epochs=2, seed=1))
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_evaluating_the_last_epoch_only_trains_the_same_weights(smoke_cfg):
    cfg = smoke_cfg.replace(epochs=3)
    every, h_every = _fit(cfg)
    torch.manual_seed(0)
    last = models.build(cfg, 10)
    h_last = train.fit(last, data.load(cfg), cfg.baseline.schedule, cfg.run, evaluate_each_epoch=False)
    assert all(torch.equal(p, q) for p, q in zip(every.state_dict().values(), last.state_dict().values()))
    assert h_last["test_accuracy"].isna().tolist() == [True, True, False]
    assert h_last["test_accuracy"].iloc[-1] == h_every["test_accuracy"].iloc[-1]


def test_skipping_the_nan_fill_of_deterministic_mode_changes_no_bit(smoke_cfg, monkeypatch):
    """repro turns torch's fill of uninitialised memory off for speed: training must come out
    bit-for-bit as with the fill on (a kernel reading memory it never wrote would show here)."""
    import torch.utils.deterministic as det

    fast, _ = _fit(smoke_cfg.replace(epochs=1))
    assert det.fill_uninitialized_memory is False
    seed_everything = train.repro.seed_everything

    def with_fill(*args, **kwargs):
        generator = seed_everything(*args, **kwargs)
        det.fill_uninitialized_memory = True
        return generator

    monkeypatch.setattr(train.repro, "seed_everything", with_fill)
    filled, _ = _fit(smoke_cfg.replace(epochs=1))
    det.fill_uninitialized_memory = False
    assert all(torch.equal(p, q) for p, q in zip(fast.state_dict().values(), filled.state_dict().values()))


def test_interrupted_run_resumes_to_the_same_result(smoke_cfg, tmp_path):
    cfg = smoke_cfg.replace(epochs=3)
    straight, h_straight = _fit(cfg, tmp_path / "straight")
    _fit(cfg, tmp_path / "resumed", epochs=2)  # "crash" after epoch 2: only last.pt remains
    assert json.loads((tmp_path / "resumed" / "last.json").read_text())["epoch"] == 2
    resumed, h_resumed = _fit(cfg, tmp_path / "resumed")
    assert list(h_resumed["epoch"]) == [1, 2, 3]
    for (k, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), k
    assert h_straight["test_accuracy"].tolist() == h_resumed["test_accuracy"].tolist()


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    model = models.VGG([4, "M", 6], num_classes=3)
    path = checkpoint.save(tmp_path / "m.pt", model, meta={"note": "x"})
    other = models.VGG([4, "M", 6], num_classes=3)
    state = checkpoint.load(path, other)
    assert state["meta"]["note"] == "x" and state["meta"]["spec"]["signature"] == [4, "M", 6]
    assert torch.equal(other.classifier.weight, model.classifier.weight)
    with pytest.raises(checkpoint.CheckpointMismatchError, match=r"saved for .*\[4, 'M', 6\]"):
        checkpoint.load(path, models.VGG([5, "M", 6], num_classes=3))
    masked = masks.insert_masks(models.VGG([4, "M", 6], num_classes=3))
    with pytest.raises(checkpoint.CheckpointMismatchError, match="not in model|Missing in checkpoint"):
        checkpoint.load(path, masked)
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "none.pt", model)


def test_cache_trains_once(smoke_cfg):
    bundle = data.load(smoke_cfg)
    calls = []

    def trainer(model, folder):
        calls.append(folder)
        return train.fit(model, bundle, smoke_cfg.baseline.schedule, smoke_cfg.run, checkpoint_dir=folder)

    build = lambda: models.build(smoke_cfg, bundle.num_classes)  # noqa: E731
    fields = cache.BASELINE
    code = cache.BASELINE_CODE
    first, h1 = cache.get_or_train("baseline", smoke_cfg, build, trainer, fields, code)
    second, h2 = cache.get_or_train("baseline", smoke_cfg, build, trainer, fields, code)
    assert len(calls) == 1
    assert torch.equal(first.classifier.weight, second.classifier.weight)
    assert h1["test_accuracy"].tolist() == h2["test_accuracy"].tolist()
    third, _ = cache.baseline(smoke_cfg.replace(prune_lambda=7.0), bundle)  # a lesson-02 setting: same baseline
    assert torch.equal(first.classifier.weight, third.classifier.weight) and len(calls) == 1
    assert cache.key(smoke_cfg, fields, code) != cache.key(smoke_cfg.replace(seed=5), fields, code)
    assert cache.key(smoke_cfg, fields, code) == cache.key(smoke_cfg.replace(num_workers=2, prune_lambda=3.0), fields,
                                                           code)


def test_the_cache_key_covers_the_code_that_makes_the_artifact_and_only_that(smoke_cfg, tmp_path, monkeypatch):
    closure = cache.code_closure(cache.BASELINE_CODE)
    # the trainer, and what it imports: KD, the models, the datasets (which make the shipped data)
    assert {"tutorial_lib.train", "tutorial_lib.kd", "tutorial_lib.models.vgg", "tutorial_lib.data.digits"} <= set(closure)
    assert not {"tutorial_lib.distill.student", "tutorial_lib.depth.sampler", "tutorial_lib.tables"} & set(closure)
    before = cache.key(smoke_cfg, cache.BASELINE, cache.BASELINE_CODE)
    assert cache.key(smoke_cfg, cache.BASELINE, ["tutorial_lib.depth.task"]) != before
    # a fix in a module the trainer imports retrains: here, the digits datasets' source
    import importlib.util
    digits = importlib.util.find_spec("tutorial_lib.data.digits").origin
    changed = tmp_path / "digits.py"
    changed.write_text(open(digits).read() + "\n# a fix\n")
    real = importlib.util.find_spec

    def find_spec(name, *args):
        spec = real(name, *args)
        return type(spec)(spec.name, spec.loader, origin=str(changed)) if name == "tutorial_lib.data.digits" else spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    cache.code_version.cache_clear()
    try:
        assert cache.key(smoke_cfg, cache.BASELINE, cache.BASELINE_CODE) != before
    finally:
        monkeypatch.undo()
        cache.code_version.cache_clear()
    assert cache.key(smoke_cfg, cache.BASELINE, cache.BASELINE_CODE) == before
    with pytest.raises(ValueError, match="not a module of tutorial_lib"):
        cache.code_closure(["tutorial_lib.nowhere"])


def test_mask_run_closes_gates(smoke_cfg):
    cfg = smoke_cfg.replace(mask_epochs=2, mask_lambda=50.0, mask_lr=1.0)
    bundle = data.load(cfg)
    masked = masks.insert_masks(models.build(cfg, bundle.num_classes))
    history = joint.train_masks(masked, bundle, cfg)
    assert list(history.columns[:3]) == ["epoch", "loss_task", "loss_mask"]
    assert history["kept_channels_pct"].iloc[-1] < 100.0
    with pytest.raises(ValueError, match="insert_masks"):
        joint.train_masks(models.build(cfg, 10), bundle, cfg)


def test_paper_profile_code_path_runs_a_few_steps(tmp_path):
    """The published recipe (augmentation, SGD, MultiStepLR, CIFAR-100 loader) on a fixture."""
    write_cifar100(tmp_path, n_train=24, n_test=8)
    cfg = profiles.resolve("paper", data_root=str(tmp_path), device="cpu", width=1 / 32, batch_size=8,
                           epochs=1, max_steps=2, num_workers=0, mask_epochs=1)
    bundle = data.load(cfg)
    model = models.build(cfg, bundle.num_classes)
    history = train.fit(model, bundle, cfg.baseline.schedule, cfg.run, checkpoint_dir=tmp_path / "ckpt")
    assert model.classifier.out_features == 100
    assert len(history) == 1 and torch.isfinite(torch.tensor(history["loss_task"].iloc[0]))
    masked = masks.insert_masks(model)
    assert len(joint.train_masks(masked, bundle, cfg)) == 1


def test_seeded_draws_from_the_seed_and_leaves_the_global_generator_as_it_was():
    from tutorial_lib import repro

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with repro.seeded(7):
        a = torch.rand(3)
    assert torch.equal(torch.random.get_rng_state(), before)
    with repro.seeded(7):
        assert torch.equal(torch.rand(3), a)
    assert not torch.equal(torch.rand(3), a)


def test_loss_terms_assemble_in_order_and_leave_out_what_does_not_apply():
    from tutorial_lib import kd, masks, models, terms

    torch.manual_seed(0)
    model = models.VGG([4, "M", 8, "M"], num_classes=3)
    teacher = models.VGG([4, "M", 8, "M"], num_classes=3).eval()
    x = torch.randn(2, 3, 8, 8)
    logits = model(x)
    plain = terms.assemble(mask=terms.mask(0.5, "layer_mean"), kd=terms.teacher_kd(2.0, teacher, 4.0))
    out = plain(model, x, None, logits)
    assert list(out) == ["kd"]  # no masks yet: the mask term does not apply
    assert torch.equal(out["kd"], 2.0 * kd.teacher_kd(teacher, x, logits, 4.0))
    masked = masks.insert_masks(model)
    out = plain(masked, x, None, masked(x))
    assert list(out) == ["mask", "kd"] and torch.equal(out["mask"], 0.5 * masks.sparsity_loss(masked, "layer_mean"))
    assert terms.assemble(kd=None) is None


def test_max_steps_limits_the_whole_run_and_survives_a_resume(smoke_cfg, tmp_path):
    cfg = smoke_cfg.replace(epochs=3, train_limit=64, batch_size=32, max_steps=3)  # two steps an epoch
    bundle = data.load(cfg)

    def steps_taken(epochs, folder):
        model = models.build(cfg, bundle.num_classes)
        optimizer = train.sgd(model.parameters(), cfg.baseline.schedule)
        counted = []
        optimizer.register_step_post_hook(lambda *a: counted.append(1))
        history = train.fit(model, bundle, cfg.baseline.schedule, cfg.run, epochs=epochs, optimizer=optimizer,
                            checkpoint_dir=folder)
        return len(counted), history

    assert steps_taken(3, None)[0] == 3  # epoch 1: two steps, epoch 2: one, epoch 3: none
    first, _ = steps_taken(1, tmp_path)  # killed after epoch 1 ...
    resumed, history = steps_taken(3, tmp_path)  # ... and resumed: the limit remembers the two steps done
    assert (first, resumed, len(history)) == (2, 1, 2)
