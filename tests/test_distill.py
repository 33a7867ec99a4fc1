import pytest
import torch
from torch import nn

from tutorial_lib import distill
from tutorial_lib.distill import losses, taps
from tutorial_lib.models import vgg


def test_registry_lists_the_seed_methods():
    assert set(distill.LOSSES) >= {"kd", "fitnet", "fsp", "at"}
    with pytest.raises(ValueError, match="valid choices: kd, fitnet, fsp, at"):
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


def test_fsp_matrix_by_hand():
    f1 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    f2 = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]])  # (1, 1, 2, 2)
    g = losses.fsp_matrix(f1, f2)
    assert g.shape == (1, 2, 1)
    assert g.flatten().tolist() == pytest.approx([10 / 4, 2 / 4])
    big = torch.ones(1, 1, 4, 4)
    assert losses.fsp_matrix(f1, big).flatten().tolist() == pytest.approx([10 / 4, 2 / 4])  # pooled to 2x2
    with pytest.raises(ValueError, match="cannot be matched"):
        losses.fsp_matrix(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="equal width"):
        distill.get("fsp")([(f1, f2)], [(f2, f2)])


def test_attention_map_and_loss_by_hand():
    x = torch.zeros(1, 2, 1, 2)
    x[0, 0, 0, 0] = 2.0  # mean over channels of x^2: [2, 0] -> normalised [1, 0]
    assert losses.attention_map(x).tolist() == [[1.0, 0.0]]
    y = torch.zeros(1, 2, 1, 2)
    y[0, 1, 0, 1] = 3.0  # -> [0, 1]
    # beta / 2 * mean(([1, 0] - [0, 1])^2) = 500 * 1
    assert distill.get("at")([x], [y]).item() == pytest.approx(500.0)
    with pytest.raises(ValueError, match="spatial size"):
        distill.get("at")([x], [torch.zeros(1, 2, 2, 2)])


def test_fitnet_by_hand_and_regressor_width():
    s, t = torch.ones(1, 2, 2, 2), torch.full((1, 3, 2, 2), 2.0)
    zero = nn.Conv2d(2, 3, 1, bias=False)
    nn.init.zeros_(zero.weight)
    assert distill.get("fitnet")(s, t, zero).item() == pytest.approx(4.0)  # mean((0 - 2)^2)
    assert losses.hint_regressor(2, 3)(s).shape == (1, 3, 2, 2)
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
