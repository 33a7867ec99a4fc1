import copy

import pytest
import torch
from torch import nn

from tutorial_lib import masks, metrics
from tutorial_lib.models import vgg


def test_mask_starts_open_with_logits_in_the_published_range():
    torch.manual_seed(0)
    mask = masks.ChannelMask(1000)
    assert mask.logits.shape == (1, 1000, 1, 1)
    assert float(mask.logits.detach().min()) >= 0.0 and float(mask.logits.detach().max()) < 0.01
    assert torch.equal(mask.binary(), torch.ones(1, 1000, 1, 1))


def test_forward_is_a_hard_gate():
    mask = masks.ChannelMask(4)
    with torch.no_grad():
        mask.logits.copy_(torch.tensor([2.0, -0.1, 0.1, -3.0]).view(1, 4, 1, 1))
    x = torch.randn(2, 4, 3, 3)
    y = mask(x)
    assert torch.equal(y[:, [0, 2]], x[:, [0, 2]])
    assert torch.count_nonzero(y[:, [1, 3]]) == 0
    assert mask.is_open().tolist() == [True, False, True, False]


def test_backward_is_straight_through_sigmoid_derivative():
    logits = torch.tensor([2.0, -0.1, 0.0, -3.0]).view(1, 4, 1, 1).requires_grad_(True)
    upstream = torch.tensor([0.5, -1.0, 2.0, 3.0]).view(1, 4, 1, 1)
    (masks.binarize(logits) * upstream).sum().backward()
    s = torch.sigmoid(logits.detach())
    assert torch.allclose(logits.grad, upstream * s * (1 - s))
    # the gradient reaches closed gates too, so a channel can come back
    assert logits.grad[0, 3].item() != 0.0


def test_numerical_gradient_check():
    torch.manual_seed(1)
    check = masks.gradient_check(torch.tensor([0.3, -0.2, 0.004, -2.0]).view(1, 4, 1, 1), torch.randn(2, 4, 3, 3))
    assert check["max_true_slope"] == 0.0
    assert check["max_ste_error"] < 1e-6


def _small_vgg():
    torch.manual_seed(0)
    return vgg.VGG([8, "M", 6, 12, "M", 10], num_classes=5)


def test_insert_masks_puts_one_after_every_conv_bn_relu():
    model = _small_vgg()
    masked = masks.insert_masks(model)
    assert list(masks.masks_of(masked)) == ["features.0", "features.4", "features.7", "features.11"]
    order = [n.target for n in masked.graph.nodes if n.op == "call_module"]
    i = order.index("masks.features_0")
    assert order[i - 3 : i] == ["features.0", "features.1", "features.2"]  # conv, BN, ReLU, then the mask
    x = torch.randn(3, 3, 32, 32)
    model.eval(), masked.eval()
    assert torch.equal(model(x), masked(x))  # every mask starts open
    with pytest.raises(ValueError, match="already has channel masks"):
        masks.insert_masks(masked)


def test_closed_gate_equals_a_zeroed_bn_channel():
    """Closing gate c of a layer gives the same network as zeroing BN channel c (scale and shift)."""
    model = _small_vgg().eval()
    masked = masks.insert_masks(copy.deepcopy(model)).eval()
    with torch.no_grad():
        masks.masks_of(masked)["features.4"].logits[0, 2] = -1.0
        model.features[5].weight[2] = 0.0
        model.features[5].bias[2] = 0.0
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(masked(x), model(x), atol=1e-6)
    assert not torch.allclose(masks.insert_masks(_small_vgg()).eval()(x), model(x))


def test_masks_go_after_conv_and_elu_in_models_without_bn():
    class EncoderBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)

        def forward(self, x):
            return torch.nn.functional.elu(self.conv2(torch.nn.functional.elu(self.conv1(x))))

    masked = masks.insert_masks(EncoderBlock())
    assert list(masks.masks_of(masked)) == ["conv1", "conv2"]
    assert masked(torch.randn(1, 3, 8, 8)).shape == (1, 6, 4, 4)


def test_untraceable_model_gets_a_clear_error():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    with pytest.raises(TypeError, match="could not be traced by torch.fx"):
        masks.insert_masks(DataDependent())


def test_sparsity_losses():
    masked = masks.insert_masks(_small_vgg())
    ms = masks.masks_of(masked)
    with torch.no_grad():
        ms["features.0"].logits[0, :4] = -1.0  # 4 of 8 closed
    # layer mean: (0.5 + 1 + 1 + 1) / 4; filter sum: 4 + 6 + 12 + 10
    assert masks.sparsity_loss(masked, "layer_mean").item() == pytest.approx(3.5 / 4)
    assert masks.sparsity_loss(masked, "filter_sum").item() == pytest.approx(32.0)
    with pytest.raises(ValueError, match="valid choices: layer_mean, filter_sum, cost_sum"):
        masks.sparsity_loss(masked, "l2")
    with pytest.raises(ValueError, match="insert_masks"):
        masks.sparsity_loss(_small_vgg())


def _two_convs() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.ELU(), nn.Conv2d(4, 8, 3, 2, 1), nn.ELU())


def test_attach_costs_prices_filters_by_their_share_of_params_and_flops():
    masked = masks.insert_masks(_two_convs())
    prices = masks.attach_costs(masked, (1, 3, 8, 8))
    # a filter of conv 0: 3*9+1 = 28 params at 8x8; of conv 2: 4*9+1 = 37 params at 4x4
    total_p, total_f = 4 * 28 + 8 * 37, 4 * 28 * 64 + 8 * 37 * 16
    assert prices["0"] == pytest.approx(0.5 * (28 / total_p + 28 * 64 / total_f))
    assert prices["2"] == pytest.approx(0.5 * (37 / total_p + 37 * 16 / total_f))
    assert 4 * prices["0"] + 8 * prices["2"] == pytest.approx(1.0)
    assert masks.masks_of(masked)["0"].cost == prices["0"]


def test_cost_sum_leaves_each_layers_strongest_filter_unpriced():
    masked = masks.insert_masks(_two_convs())
    with pytest.raises(ValueError, match="attach_costs"):
        masks.sparsity_loss(masked, "cost_sum")
    prices = masks.attach_costs(masked, (1, 3, 8, 8))
    ms = masks.masks_of(masked)
    with torch.no_grad():
        ms["0"].logits[0, :, 0, 0] = torch.tensor([-1.0, 0.5, 2.0, -1.0])  # two open, filter 2 strongest
    loss = masks.sparsity_loss(masked, "cost_sum")
    assert loss.item() == pytest.approx(1 * prices["0"] + 7 * prices["2"])
    loss.backward()
    grad = ms["0"].logits.grad.flatten()
    assert grad[2] == 0 and grad[1] > 0  # the strongest is free; the other open one is pushed down
    with torch.no_grad():  # every gate closed: the strongest closed one is the one left unpriced
        ms["0"].logits.fill_(-1.0)
    assert masks.sparsity_loss(masked, "cost_sum").item() == pytest.approx(7 * prices["2"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimate_equals_the_cost_of_the_smaller_vgg(seed):
    """Kept parameters and FLOPs must equal those of the VGG rebuilt from the kept counts."""
    gen = torch.Generator().manual_seed(seed)
    model = _small_vgg()
    masked = masks.insert_masks(model)
    for mask in masks.masks_of(masked).values():
        with torch.no_grad():
            mask.logits.copy_(torch.randn(mask.logits.shape, generator=gen))
            mask.logits[0, 0] = 1.0  # keep one channel at least (layers left with one channel included)
    kept = masks.kept_channels(masked)["kept"].tolist()
    signature, it = [], iter(kept)
    for v in model.signature:
        signature.append("M" if v == "M" else next(it))
    small = vgg.VGG(signature, num_classes=5)
    est = masks.estimate(masked, (1, 3, 32, 32))
    assert est["params_kept"] == metrics.count_parameters(small)
    assert est["params_total"] == metrics.count_parameters(model)
    assert est["flops_kept"] == metrics.count_flops(small, (1, 3, 32, 32))
    assert est["flops_total"] == metrics.count_flops(model, (1, 3, 32, 32))


def test_kept_channels_table():
    masked = masks.insert_masks(_small_vgg())
    with torch.no_grad():
        masks.masks_of(masked)["features.7"].logits[0, :3] = -5.0
    table = masks.kept_channels(masked)
    row = table[table.layer == "features.7"].iloc[0]
    assert (row.kept, row.total, row.kept_pct) == (9, 12, 75.0)


class _PoolThenBN(nn.Module):
    """conv1 -> BN -> ReLU -> pool -> BN -> conv2: a closed channel of conv1 leaves the second
    batch norm as its shift, not as zero, so conv2 still reads it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.pool, self.bn2 = nn.MaxPool2d(2), nn.BatchNorm2d(4)
        self.conv2, self.bn3 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x):
        x = self.bn2(self.pool(torch.relu(self.bn1(self.conv1(x)))))
        return self.head(torch.flatten(self.pool(torch.relu(self.bn3(self.conv2(x)))), 1))


def test_a_batch_norm_after_the_mask_keeps_its_channels():
    from tutorial_lib import graph

    net = _PoolThenBN()
    with torch.no_grad():
        net.bn2.bias.fill_(1.0)  # a zero channel leaves bn2 as 1
    masked = masks.insert_masks(net)
    assert list(masks.masks_of(masked)) == ["conv2"]  # conv1's zeros would not reach conv2 as zeros
    conv2 = next(n for n in masked.graph.nodes if n.target == "conv2")
    assert graph.channel_sources(masked, conv2, masks._is_mask) == [(None, 4)]
    assert masks.estimate(masked, (1, 3, 16, 16))["params_kept"] == metrics.count_parameters(net)
    with pytest.raises(ValueError, match="conv1's channels cannot be masked: .*'bn2'"):
        masks.insert_masks(_PoolThenBN(), layers=["conv1"])
