import pytest
import torch
from torch import nn

from tutorial_lib import distill, taps
from tutorial_lib.distill import losses
from tutorial_lib.models import vgg


def test_registry_lists_the_seed_methods():
    assert set(distill.LOSSES) >= {"kd", "fitnet", "fsp", "at", "disparity"}
    with pytest.raises(ValueError, match="valid choices: kd, fitnet, fsp, at, disparity"):
        distill.get("crd")


def test_each_loss_is_zero_when_student_equals_teacher():
    torch.manual_seed(0)
    x, y = torch.randn(2, 4, 6, 6), torch.randn(2, 5, 3, 3)
    assert distill.get("kd")(torch.randn(3, 10).requires_grad_(), torch.zeros(3, 10)).item() > 0
    logits = torch.randn(3, 10)
    assert distill.get("kd")(logits, logits).item() == pytest.approx(0, abs=1e-6)
    identity = nn.Identity()
    assert distill.get("fitnet")(x, x, identity).item() == 0.0
    assert distill.get("fsp")([(x, y)], [(x, y)]).item() == 0.0
    assert distill.get("at")([x, y], [x, y]).item() == 0.0
    assert distill.get("disparity")([x, y], [x, y]).item() == 0.0


def test_disparity_kd_by_hand_in_pixels_of_the_input_width():
    # four scales of a 2x8 image; every student map is 1/8 of the width (1 px) off its teacher's
    teacher = [torch.full((1, 2, 2 // 2**s or 1, 8 // 2**s), 0.1) for s in range(4)]
    student = [(t + 1 / 8).requires_grad_() for t in teacher]
    kd = distill.get("disparity")(student, teacher)
    assert kd.item() == pytest.approx(4.0)  # 1 px at each of the four scales
    assert distill.get("disparity")(student, teacher, width=16).item() == pytest.approx(8.0)
    kd.backward()
    assert all(s.grad is not None for s in student)
    with pytest.raises(ValueError, match="4 student scales but 3 teacher scales"):
        distill.get("disparity")(student, teacher[:3])
    with pytest.raises(ValueError, match="differ"):
        distill.get("disparity")(student[:1], [torch.zeros(1, 2, 4, 4)])


def test_each_task_says_what_kd_means():
    from tutorial_lib import train
    from tutorial_lib.depth.task import StereoDepth

    torch.manual_seed(0)
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    assert train.CLASSIFICATION.distill(s, t, 2.0).item() == pytest.approx(distill.kd_loss(s, t, 2.0).item())
    disps = [torch.rand(1, 2, 4, 8) * 0.3, torch.rand(1, 2, 2, 4) * 0.3]
    assert StereoDepth().distill(disps, disps).item() == 0.0
    assert StereoDepth().distill(disps, [d + 0.25 for d in disps]).item() == pytest.approx(2 * 0.25 * 8)
    with pytest.raises(NotImplementedError, match="no distillation term"):
        train.Task().distill(s, t)


def test_fsp_matrix_by_hand():
    f1 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    f2 = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]])  # (1, 1, 2, 2)
    g = losses.fsp_matrix(f1, f2)
    assert g.shape == (1, 2, 1)
    assert g.flatten().tolist() == pytest.approx([10 / 4, 2 / 4])
    big = torch.ones(1, 1, 4, 4)
    assert losses.fsp_matrix(f1, big).flatten().tolist() == pytest.approx([10 / 4, 2 / 4])  # pooled to 2x2
    assert losses.fsp_matrix(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2)).shape == (1, 1, 1)  # adaptive pool
    with pytest.raises(ValueError, match="equal width"):
        distill.get("fsp")([(f1, f2)], [(f2, f2)])
    # RepDistiller sums the pairs' MSEs: two pairs that each miss by 1 everywhere give 2
    zero = torch.zeros(1, 1, 2, 2)
    assert distill.get("fsp")([(zero, zero)] * 2, [(big[..., :2, :2], big[..., :2, :2])] * 2).item() == 2.0


def test_attention_map_and_loss_by_hand():
    x = torch.zeros(1, 2, 1, 2)
    x[0, 0, 0, 0] = 2.0  # mean over channels of x^2: [2, 0] -> normalised [1, 0]
    assert losses.attention_map(x).tolist() == [[1.0, 0.0]]
    y = torch.zeros(1, 2, 1, 2)
    y[0, 1, 0, 1] = 3.0  # -> [0, 1]
    # beta * mean(([1, 0] - [0, 1])^2) = 1000 * 1 (RepDistiller's form: no 1/2), summed over taps
    assert distill.get("at")([x], [y]).item() == pytest.approx(1000.0)
    assert distill.get("at")([x, x], [y, y]).item() == pytest.approx(2000.0)
    with pytest.raises(ValueError, match="spatial size"):
        distill.get("at")([x], [torch.zeros(1, 2, 2, 2)])
    with pytest.raises(ValueError, match="1 student taps but 2 teacher taps"):
        distill.get("at")([x], [y, y])


def test_fitnet_by_hand_and_regressor_width():
    s, t = torch.ones(1, 2, 2, 2), torch.full((1, 3, 2, 2), 2.0)
    zero = nn.Conv2d(2, 3, 1, bias=False)
    nn.init.zeros_(zero.weight)
    assert distill.get("fitnet")(s, t, zero).item() == pytest.approx(4.0)  # mean((0 - 2)^2)
    assert losses.hint_regressor(2, 3)(s).shape == (1, 3, 2, 2)
    assert (losses.hint_regressor(2, 3)(-s) >= 0).all()  # RepDistiller's ConvReg ends on a ReLU
    with pytest.raises(ValueError, match="channels"):
        distill.get("fitnet")(s, t, nn.Identity())


def test_taps_record_named_outputs_and_list_names_when_missing():
    model = vgg.VGG([4, "M", 6, "M"], num_classes=3).eval()
    ends = taps.stage_ends(model)
    assert ends == ["features.2", "features.6"]
    with taps.Taps(model, ends) as tap:
        model(torch.randn(2, 3, 8, 8))
        assert [f.shape for f in tap.features()] == [(2, 4, 8, 8), (2, 6, 4, 4)]
    assert not model.features[2]._forward_hooks  # removed on exit
    with pytest.raises(KeyError, match="modules that exist: .*features.0"):
        taps.Taps(model, ["features.99"])


@pytest.mark.parametrize("method", ["scratch", "kd", "at", "at_all", "fsp", "fitnet", "fitnet_2stage", "kd+at"])
def test_every_method_trains_a_student(method, smoke_cfg):
    from tutorial_lib import data, models
    from tutorial_lib.distill import student as st

    cfg = smoke_cfg.replace(train_limit=64)  # two steps an epoch
    bundle = data.load(cfg)
    teacher = models.build(cfg, bundle.num_classes)
    student = vgg.VGG([4, "M", 8, "M", 16, "M", 32, "M", 32, "M"], num_classes=10)  # the teacher's stage widths
    history = st.train_student(student, teacher, bundle, cfg, method, epochs=2)
    assert len(history) == 2 and torch.isfinite(torch.tensor(history["loss_task"].tolist())).all()
    expected = {"kd": ["loss_kd"], "at": ["loss_at"], "at_all": ["loss_at"], "fsp": ["loss_fsp"],
                "fitnet": ["loss_hint"], "kd+at": ["loss_kd", "loss_at"],
                "fitnet_2stage": ["loss_hint", "loss_kd"]}.get(method, [])
    assert set(expected) <= set(history.columns)
    if method == "fitnet_2stage":
        assert history["stage"].tolist() == ["fitnet hint", "task"] and history["loss_task"].iloc[0] == 0.0
    if method == "fsp":  # RepDistiller: FSP pre-trains the features, then cross-entropy alone
        assert history["stage"].tolist() == ["fsp pretrain", "task"] and history["loss_task"].iloc[0] == 0.0
        assert history["loss_fsp"].iloc[0] > 0 and history["loss_fsp"].isna().iloc[1]
    assert not any(m._forward_hooks for m in student.modules())  # taps removed


def test_unknown_student_method():
    from tutorial_lib.distill import student as st

    with pytest.raises(ValueError, match="valid choices: scratch, kd"):
        st.train_student(nn.Linear(1, 1), nn.Linear(1, 1), None, None, "crd")


def test_experiment_table_and_figure_helpers(smoke_cfg):
    from tutorial_lib import data, models
    from tutorial_lib.distill import experiment

    cfg = smoke_cfg.replace(epochs=1, max_steps=1)
    bundle = data.load(cfg)
    teacher = models.build(cfg, bundle.num_classes)
    narrow = vgg.VGG([2, "M", 8, 16, "M", 16, 16, "M", 32, 32, "M", 32, 32, "M"], num_classes=10)
    specs = experiment.student_specs(cfg, bundle.num_classes, narrow)
    assert experiment.same_widths(models.from_spec(specs["vgg8"]), teacher)  # smoke: student width = teacher's
    assert not experiment.same_widths(narrow, teacher)
    results, trained = experiment.run(teacher, bundle, cfg, specs, methods=("scratch", "kd", "fsp"))
    assert len(results) == 6 * cfg.seeds and ("joint-pruned (lesson 02)", "fsp") in trained
    assert sorted(set(results.seed)) == [cfg.seed + k for k in range(cfg.seeds)] and cfg.seeds == 2
    params = {name: 1000 for name in specs}
    table = experiment.table(results, 9.4, 36954, params, test_images=len(bundle.test))
    assert len(table) == 6  # one row per (student, method): the mean over the seeds
    kd = results[(results.student == "vgg8") & (results.method == "kd")]["top-1 %"]
    kd_row = table[(table.method == "KD") & table.student.str.startswith("vgg8")].iloc[0]
    assert kd_row["top-1 %"] == round(kd.mean(), 1) and kd_row["verdict"] in ("tie", "above", "below")
    fsp_row = table[(table.method == experiment.LABELS["fsp"]) & table.student.str.startswith("joint")].iloc[0]
    assert fsp_row["top-1 %"] != "" and "connectors" in fsp_row["note"]
    assert table[(table.method == experiment.LABELS["fsp"]) & table.student.str.startswith("vgg8")].iloc[0]["note"] == ""
    sweep = experiment.temperature_sweep(teacher, bundle, cfg, specs["vgg8"], (1.0, 4.0), done={4.0: 12.3})
    assert sweep["KD temperature T"].tolist() == [1.0, 4.0] and sweep["top-1 %"].iloc[1] == 12.3
    assert table[(table.method == "KD") & table.student.str.startswith("vgg8")].iloc[0][
        "published vgg13->vgg8 top-1 % (CIFAR-100)"] == 72.98
    assert table[table.student.str.startswith("joint")]["published vgg13->vgg8 top-1 % (CIFAR-100)"].eq("").all()
    images = torch.stack([bundle.test[i][0] for i in range(3)])
    t_maps, s_maps = experiment.attention_pairs(teacher, trained[("vgg8", "kd")], images, stage=1)
    assert t_maps.shape == s_maps.shape == (3, 16, 16)
    g_t, g_s = experiment.fsp_pair(teacher, trained[("vgg8", "fsp")], images, stage=1)
    assert g_t.shape == g_s.shape == (8, 16)  # the ends of stages 2 and 3


def test_attention_transfer_leaves_out_the_first_and_last_stage_ends_and_fsp_pairs_neighbours():
    from tutorial_lib.distill import student as st

    feats = [torch.full((1, 1, 2, 2), float(i)) for i in range(5)]
    assert [int(f[0, 0, 0, 0]) for f in st.at_features(feats)] == [1, 2, 3]
    assert [int(f[0, 0, 0, 0]) for f in st.at_features(feats, "all")] == [1, 2, 3, 4]  # RepDistiller's g[1:-1]
    assert len(st.at_features(feats[:2])) == 2  # too few stages: keep them all
    assert [(int(a[0, 0, 0, 0]), int(b[0, 0, 0, 0])) for a, b in st.fsp_pairs(feats)] == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_kd_weights_are_repdistillers():
    from tutorial_lib.distill import student as st

    assert st.METHODS["kd"] == {"ce": 0.1, "kd": 0.9} and st.METHODS["fitnet"] == {"hint": 100.0}
    assert st.METHODS["at"]["at"] == 1000.0 and st.METHODS["fsp"]["pretrain"]


def test_fsp_connectors_map_student_widths_to_the_teacher():
    from tutorial_lib.distill import student as st

    conn = st.fsp_connectors([2, 4], [2, 8])
    assert isinstance(conn[0], nn.Identity) and conn[1](torch.ones(1, 4, 3, 3)).shape == (1, 8, 3, 3)


def test_students_train_for_student_epochs_with_scaled_milestones():
    from tutorial_lib import profiles
    from tutorial_lib.distill.experiment import student_schedule

    schedule = student_schedule(profiles.resolve("tutorial", student_epochs=6))
    assert (schedule.epochs, schedule.milestones, schedule.lr) == (6, (4, 5), 0.02)
    assert student_schedule(profiles.resolve("tutorial", student_epochs=20)).milestones == (15, 18)
    assert profiles.resolve("tutorial").epochs == 8  # the teacher's schedule is untouched


def test_the_pruned_student_comes_from_its_own_lambda_or_the_strongest_frontier_one():
    from tutorial_lib import profiles
    from tutorial_lib.distill.experiment import pruned_student_lambda

    assert pruned_student_lambda(profiles.resolve("tutorial")) == 0.07
    assert pruned_student_lambda(profiles.resolve("paper", device="cpu")) == 2.0  # none set: the frontier's strongest
    assert pruned_student_lambda(profiles.resolve("smoke", frontier_lambdas=[])) == profiles.resolve("smoke").prune_lambda
