"""Comparisons over seeds: mean ± sd, the test-set standard error, and gaps judged against noise."""

import pandas as pd
import pytest
import torch

from tutorial_lib import profiles, seeds
from tutorial_lib.distill import TeacherMemo, remembered


def _long(a, b):
    return pd.DataFrame({"method": ["a"] * len(a) + ["b"] * len(b), "seed": list(range(len(a))) + list(range(len(b))),
                         "top-1 %": a + b})


def test_seed_list_follows_the_profile_and_over_seeds_runs_each():
    cfg = profiles.resolve("smoke", seed=5, seeds=3)
    assert seeds.seed_list(cfg) == [5, 6, 7]
    assert seeds.over_seeds(lambda c: c.seed * 10, cfg) == {5: 50, 6: 60, 7: 70}
    with pytest.raises(ValueError, match="seeds"):
        profiles.resolve("smoke", seeds=0)


def test_a_gap_beyond_two_standard_errors_ranks_and_one_inside_is_a_tie():
    far = seeds.summarize(_long([90.0, 91.0, 89.0], [85.0, 86.0, 84.0]), ["method"], ["top-1 %"], test_images=1620)
    assert far.loc[0, "top-1 % mean"] == 90.0 and far.loc[0, "top-1 % sd"] == 1.0 and far.loc[0, "seeds"] == 3
    assert far.loc[0, "top-1 % test-set SE"] == pytest.approx(100 * (0.9 * 0.1 / 1620) ** 0.5, abs=0.01)
    judged = seeds.versus(far, "top-1 %", {"method": "a"}).set_index("method")
    # gap -5, 2 SE = 2 * sqrt((1 + 1) / 3) = 1.63
    assert judged.loc["b", "verdict"] == "below" and judged.loc["b", "2 SE of gap"] == pytest.approx(1.63, abs=0.01)
    near = seeds.summarize(_long([90.0, 91.0, 89.0], [89.0, 90.0, 88.5]), ["method"], ["top-1 %"])
    assert seeds.versus(near, "top-1 %", {"method": "a"}).set_index("method").loc["b", "verdict"] == "tie"
    lines = seeds.sentences(seeds.versus(near, "top-1 %", {"method": "a"}), "method", "top-1 %", "a")
    assert lines == ["b ties with a: -0.83 points (2 SE of the gap 1.45, 3 seeds)"]


def test_one_seed_never_ranks():
    one = seeds.summarize(_long([90.0], [80.0]), ["method"], ["top-1 %"])
    assert seeds.versus(one, "top-1 %", {"method": "a"}).set_index("method").loc["b", "verdict"] == "tie"


def test_teacher_memo_reads_back_per_image_logits_in_any_batch_order():
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    memo = TeacherMemo(teacher)
    x = torch.randn(6, 3, 2, 2)
    first = memo(x)
    assert torch.allclose(first, teacher(x)) and len(calls) == 2
    again = memo(x[[5, 0, 3]])  # another batch of seen images: no teacher call
    assert len(calls) == 2 and torch.allclose(again, first[[5, 0, 3]])
    memo(torch.randn(2, 3, 2, 2))  # unseen images run the teacher
    assert len(calls) == 3 and memo.hits == 3 and memo.misses == 8


def test_teacher_memo_reads_back_tapped_features_and_stops_storing_at_its_byte_cap():
    from tutorial_lib.distill import Taps

    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 3))
    taps = Taps(teacher, ["1"])
    memo = TeacherMemo(teacher, taps)
    x = torch.randn(5, 3, 2, 2)
    memo(x)
    seen = memo.features[0].clone()
    assert torch.allclose(seen, torch.relu(teacher[0](x)))
    memo(torch.randn(2, 3, 2, 2))  # another batch: features are the new ones
    memo(x[[4, 1]])  # read back, the teacher does not run
    assert memo.hits == 2 and torch.equal(memo.features[0], seen[[4, 1]])
    capped = TeacherMemo(teacher, taps, max_bytes=1)
    capped(x), capped(x)  # nothing fits: the teacher runs every time, features still fresh
    assert capped.hits == 0 and capped.misses == 10 and torch.allclose(capped.features[0], seen)
    taps.remove()


def test_students_train_alike_with_and_without_the_feature_memo(monkeypatch):
    from tutorial_lib import data
    from tutorial_lib.distill import student as student_mod
    from tutorial_lib.models import vgg

    cfg = profiles.resolve("smoke", train_limit=64, epochs=2)
    bundle = data.load(cfg)
    teacher = vgg.VGG([4, "M", 6, "M", 8, "M"], num_classes=10).eval()

    def train(method):
        torch.manual_seed(0)
        student = vgg.VGG([2, "M", 3, "M", 4, "M"], num_classes=10)
        return student_mod.train_student(student, teacher, bundle, cfg, method)

    memo_runs = {m: train(m) for m in ("at", "fsp")}
    monkeypatch.setattr(student_mod, "remembered", lambda t, c, taps=None: t)  # the teacher runs every batch
    for method, history in memo_runs.items():
        plain = train(method)
        assert history["loss_task"].tolist() == pytest.approx(plain["loss_task"].tolist(), rel=1e-4, abs=1e-5)


def test_runs_under_one_unchanged_teacher_share_its_memo():
    from tutorial_lib.distill import Taps, memo as memo_mod

    cfg = profiles.resolve("smoke")
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 3))
    first = remembered(teacher, cfg)
    assert remembered(teacher, cfg) is first  # the next run reads what the first one saw
    with Taps(teacher, ["1"]) as taps:
        tapped = remembered(teacher, cfg, taps)
        assert tapped is not first and remembered(teacher, cfg, taps) is tapped  # other taps: another memo
    with torch.no_grad():
        teacher[0].weight.add_(1.0)  # the teacher changed: what was remembered is stale
    assert remembered(teacher, cfg) is not first
    memo_mod.forget()
    assert not memo_mod._shared


def test_a_students_extra_layers_do_not_depend_on_what_ran_before():
    from tutorial_lib import data
    from tutorial_lib.distill import memo as memo_mod, student as student_mod
    from tutorial_lib.models import vgg

    cfg = profiles.resolve("smoke", train_limit=32, epochs=1)
    bundle = data.load(cfg)
    teacher = vgg.VGG([4, "M", 6, "M", 8, "M"], num_classes=10).eval()

    def train(method):
        memo_mod.forget()  # each run fills its own memo: only the generator differs
        student = vgg.VGG([2, "M", 3, "M", 4, "M"], num_classes=10)
        student.load_state_dict(start)
        student_mod.train_student(student, teacher, bundle, cfg, method)
        return student.state_dict()

    start = vgg.VGG([2, "M", 3, "M", 4, "M"], num_classes=10).state_dict()
    for method in ("fitnet", "fsp"):
        first = train(method)
        torch.rand(7)  # another run, an evaluation: the global generator moves
        second = train(method)
        assert all(torch.equal(a, b) for a, b in zip(first.values(), second.values()))


def test_the_memo_is_used_only_where_images_repeat():
    teacher = torch.nn.Linear(2, 2)
    assert isinstance(remembered(teacher, profiles.resolve("smoke")), TeacherMemo)
    assert remembered(teacher, profiles.resolve("smoke", augment=True)) is teacher
