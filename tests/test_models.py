import pytest
import torch

from tutorial_lib import metrics, models
from tutorial_lib.models import vgg


def test_vgg19_bn_cifar100_has_the_published_parameter_count():
    model = vgg.VGG(vgg.vgg_signature("vgg19"), num_classes=100)
    assert metrics.count_parameters(model) == 20_086_692


def test_width_scales_channels_and_keeps_at_least_one():
    sig = vgg.vgg_signature("vgg11", 0.25)
    assert sig[:3] == [16, "M", 32]
    assert all(v == "M" or v >= 1 for v in vgg.vgg_signature("vgg19", 1 / 1000))


def test_any_signature_builds_and_runs():
    model = vgg.VGG([3, "M", 1, 5, "M", 2], num_classes=7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    rebuilt = vgg.from_spec(model.spec())
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.signature == [3, "M", 1, 5, "M", 2]


@pytest.mark.parametrize("bad", [[0, "M"], ["M"], [3.5], ["X", 4]])
def test_bad_signatures_are_rejected(bad):
    with pytest.raises(ValueError, match="signature"):
        vgg.VGG(bad)


def test_unknown_arch():
    with pytest.raises(ValueError, match="valid choices: vgg8, vgg11, vgg13, vgg16, vgg19"):
        vgg.vgg_signature("vgg20")


def test_vgg_pools_round_up_so_24x24_keeps_every_stage():
    from tutorial_lib.constraints import latency_table

    model = vgg.VGG(vgg.vgg_signature("vgg19", 1 / 16), num_classes=10)
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
             for m in model.features if isinstance(m, torch.nn.MaxPool2d)]
    assert model(torch.randn(2, 3, 24, 24)).shape == (2, 10)
    assert sizes == [12, 6, 3, 2, 1]  # 3 -> 2, not 1: the last stage still sees a 2x2 map
    for h in hooks:
        h.remove()
    keys = latency_table.layers(models.describe(model), (1, 3, 24, 24), "x")
    assert [k.size for k in keys if k.kind == "maxpool"] == [24, 12, 6, 3, 2]
    assert keys[-2].size == 1  # the global pool sees what the model's last pool gave


def test_one_cost_model_counts_plain_masked_and_described_vggs_alike():
    import pytest
    import torch

    from tutorial_lib import cost, masks

    torch.manual_seed(0)
    signature = [6, "M", 5, 7, "M", 9, "M"]
    model = models.VGG(signature, num_classes=10)
    shape = (1, 3, 24, 24)  # pools round up: 24 -> 12 -> 6 -> 3
    assert cost.count(model, "params") == metrics.count_parameters(model)
    assert cost.count(model, "flops", shape) == metrics.count_flops(model, shape)
    for described in (model.spec(), signature, models.describe(model)):  # closed form, nothing built
        assert cost.count(described, "params", shape, num_classes=10) == metrics.count_parameters(model)
        assert cost.count(described, "flops", shape, num_classes=10) == metrics.count_flops(model, shape)
    masked = masks.insert_masks(model)
    masks.set_pattern(masked, {layer: torch.arange(m.channels) < 2 for layer, m in masks.masks_of(masked).items()})
    packed = models.VGG([2, "M", 2, 2, "M", 2, "M"], num_classes=10)
    assert cost.count(masked, "params") == metrics.count_parameters(packed)
    assert cost.count(masked, "flops", shape) == metrics.count_flops(packed, shape)
    with pytest.raises(ValueError, match="needs the input shape"):
        cost.count(model, "flops")
    with pytest.raises(ValueError, match="valid choices: params, flops"):
        cost.count(model, "latency", shape)
