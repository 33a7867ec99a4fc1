"""Lesson 06's library: quantizers and their straight-through gradients, bit-packing, real int8
against fake quantization, the allocation methods, and bad inputs."""

import copy

import numpy as np
import pytest
import torch

from tutorial_lib import profiles
from tutorial_lib.models import vgg
from tutorial_lib.quant import allocate, int8, packing, quantizers


def tiny(classes: int = 10, seed: int = 0) -> vgg.VGG:
    torch.manual_seed(seed)
    return vgg.VGG(vgg.vgg_signature("vgg11", 1 / 16), num_classes=classes)


# -- quantizers --------------------------------------------------------------------------------

def test_round_ste_rounds_forward_and_passes_the_gradient_through():
    x = torch.tensor([0.2, 0.7, -1.6], requires_grad=True)
    y = quantizers.round_ste(x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert y.tolist() == [0.0, 1.0, -2.0]
    assert x.grad.tolist() == [1.0, 2.0, 3.0]


def test_binaryconnect_cuts_the_gradient_beyond_one():
    w = torch.tensor([-1.5, -0.5, 0.0, 0.5, 1.0, 3.0], requires_grad=True)
    b = quantizers.binaryconnect(w)
    b.sum().backward()
    assert b.tolist() == [-1, -1, 1, 1, 1, 1]
    assert w.grad.tolist() == [0, 1, 1, 1, 1, 0]


def test_xnor_scale_is_the_least_squares_scale_per_filter():
    w = torch.randn(4, 3, 3, 3)
    alpha = quantizers.xnor_scale(w)
    assert torch.allclose(alpha.flatten(), w.abs().mean(dim=(1, 2, 3)))
    err = lambda a: ((w - a * torch.sign(w)) ** 2).sum()  # noqa: E731
    assert err(alpha) <= err(alpha * 1.05) and err(alpha) <= err(alpha * 0.95)
    assert torch.allclose(quantizers.xnor(w).abs(), alpha.expand_as(w))


@pytest.mark.parametrize("bits,signed", [(2, True), (3, True), (4, False), (8, True)])
def test_lsq_has_2_to_the_bits_levels_and_a_straight_through_gradient(bits, signed):
    qn, qp = quantizers.levels(bits, signed)
    v = torch.linspace(-(qn + 3) * 0.1, (qp + 3) * 0.1, 4001, requires_grad=True)
    step = torch.tensor(0.1, requires_grad=True)
    q = quantizers.lsq(v, step, bits, signed)
    assert len(torch.unique(q.detach())) <= 2 ** bits
    assert torch.allclose(q.detach().min(), torch.tensor(-qn * 0.1)) and torch.allclose(q.detach().max(), torch.tensor(qp * 0.1))
    q.sum().backward()
    inside = (v.detach() / 0.1 > -qn) & (v.detach() / 0.1 < qp)
    assert torch.all(v.grad[inside] == 1) and torch.all(v.grad[~inside] == 0)
    assert step.grad is not None and step.grad != 0  # the step learns


def test_mse_step_fits_better_than_lsq_start_at_two_bits():
    w = torch.randn(10000)
    s = quantizers.mse_step(w, 2, True)
    lsq_start = 2 * w.abs().mean() / 2 ** 0.5
    err = lambda st: ((quantizers.lsq(w, st, 2, True) - w) ** 2).mean()  # noqa: E731
    assert err(s) < err(lsq_start)


def test_quantize_keeps_first_and_last_layers_and_weights():
    model = tiny()
    q = quantizers.quantize(copy.deepcopy(model), 4, 4)
    bits = quantizers.bits_of(q)
    names = list(bits)
    assert bits[names[0]] == 32 and bits[names[-1]] == 32
    assert all(b == 4 for b in list(bits.values())[1:-1])
    assert torch.equal(q.get_submodule(names[1]).weight, model.get_submodule(names[1]).weight)
    x = torch.randn(2, 3, 24, 24)
    assert q(x).shape == (2, 10)
    every = quantizers.quantize(copy.deepcopy(model), 8, None, keep_first_last=False)
    assert set(quantizers.bits_of(every).values()) == {8}


def test_quantize_takes_one_bit_width_per_layer_and_averages_by_weights():
    model = tiny()
    n = len(quantizers.quantizable(model))
    bits = [2, 8] + [4] * (n - 2)
    q = quantizers.quantize(copy.deepcopy(model), bits)
    sizes = [q.get_submodule(name).weight.numel() for name in quantizers.quantizable(q)]
    assert quantizers.average_bits(q) == pytest.approx(np.dot(sizes, bits) / sum(sizes))
    with pytest.raises(ValueError, match="one bit-width per quantizable layer"):
        quantizers.quantize(copy.deepcopy(model), [4, 4])


@pytest.mark.parametrize("bad", [0, 9, 16, True])
def test_bad_bits_are_rejected_with_the_valid_choices(bad):
    with pytest.raises(ValueError, match="valid choices"):
        quantizers.quantize(tiny(), bad)


def test_bad_lesson_parameters_are_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match="valid choices: 1, 2, 3"):
        profiles.resolve("smoke", quant_bits=(3, 12))
    with pytest.raises(ValueError, match=r"\[2, 8\]"):
        profiles.resolve("smoke", quant_budget=1.5)
    with pytest.raises(ValueError, match="valid choices: xnor, binaryconnect"):
        profiles.resolve("smoke", quant_binary="ternary")


def test_quantization_aware_training_lowers_the_loss():
    torch.manual_seed(0)
    model = quantizers.quantize(tiny(), 2, 2)
    x, y = torch.randn(32, 3, 24, 24), torch.randint(0, 10, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# -- packing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_unpack_round_trip_and_size(bits):
    codes = torch.randint(0, 2 ** bits, (1001,))
    packed = packing.pack(codes, bits)
    assert packed.dtype == torch.uint8 and len(packed) == -(-1001 * bits // 8)
    assert torch.equal(packing.unpack(packed, bits, 1001), codes)


def test_pack_rejects_codes_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        packing.pack(torch.tensor([0, 4]), 2)


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_packed_model_stores_exactly_the_fake_quantized_weights(bits):
    q = quantizers.quantize(tiny(), bits)
    q(torch.randn(4, 3, 24, 24))  # initialises the steps
    state = packing.packed_state(q)
    for name, w in packing.dequantize(state, q).items():
        layer = q.get_submodule(name)
        assert torch.allclose(w, layer.w_quant(layer.weight).detach(), atol=1e-6)
        assert len(state[f"{name}.weight.codes"]) == -(-layer.weight.numel() * bits // 8)


def test_model_bytes_fall_with_the_bits():
    model = tiny()
    sizes = []
    for bits in (32, 8, 4, 2, 1):
        q = quantizers.quantize(copy.deepcopy(model), bits)
        q(torch.randn(2, 3, 24, 24))
        sizes.append(packing.model_bytes(q))
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] / sizes[1] > 2.5  # float32 -> 8 bits on the quantizable layers (first/last stay float32)


# -- real int8 ----------------------------------------------------------------------------------

def test_int8_model_agrees_with_float_and_fake_quant():
    from tutorial_lib import data

    torch.manual_seed(0)
    images = torch.rand(96, 3, 24, 24)
    labels = torch.randint(0, 10, (96,))
    train_set = torch.utils.data.TensorDataset(images, labels)
    bundle = data.DataBundle("synthetic", train_set, train_set, 10, 24, "random images")
    model = tiny().eval()
    with torch.no_grad():
        model(images)
    run = profiles.resolve("smoke").run
    q = int8.ptq(model, bundle, run, batches=2, batch_size=48)
    fast = int8.compiled(q, (3, 24, 24), batches=(48,))
    fake = quantizers.quantize(copy.deepcopy(model), 8, 8).eval()
    with torch.no_grad():
        fake(images[:48])  # steps from a calibration batch
        ref, real, simulated = model(images[:48]), fast(images[:48]), fake(images[:48])
    scale = ref.abs().max()
    assert (real - ref).abs().max() < 0.1 * scale
    assert (real - simulated).abs().max() < 0.1 * scale
    assert int8.int8_bytes(q) < 0.5 * packing.model_bytes(model)
    assert int8.evaluate_fixed(fast, train_set, batch_size=48) == pytest.approx(
        100 * (model(images).argmax(1) == labels).float().mean().item(), abs=10)


# -- allocation ----------------------------------------------------------------------------------

class Synthetic(allocate.Problem):
    """A problem whose score is known: layer k loses ``weight_k / 2**bits`` points, the first
    layers weigh most, so a good allocation gives them more bits."""

    def score(self, bits, seed=None):
        weights = np.linspace(200.0, 1.0, len(bits))
        return 100.0 - float(np.sum(weights / 2.0 ** np.array(bits)))


def synthetic(budget: float = 3.0) -> Synthetic:
    from tutorial_lib import data

    ds = torch.utils.data.TensorDataset(torch.rand(8, 3, 24, 24), torch.randint(0, 10, (8,)))
    bundle = data.DataBundle("synthetic", ds, ds, 10, 24, "random images")
    model = vgg.VGG([16, "M", 16, "M", 16, "M", 16, "M", 16, "M", 16, "M"], num_classes=10)
    return Synthetic(model, bundle, profiles.resolve("smoke").run, budget)


def test_every_allocation_meets_the_budget():
    p = synthetic()
    allocs = [allocate.uniform(p), *allocate.random_allocations(p, 5), allocate.project([8] * len(p.names), p.sizes, 3.0)]
    for bits in allocs:
        assert p.average(bits) <= 3.0 + 1e-9 and set(bits) <= set(allocate.CHOICES)
    assert all(p.average(b) >= 2.75 for b in allocs[1:6])


def test_the_agent_learns_to_beat_random_allocations():
    p = synthetic()
    random_scores = [p.score(b) for b in allocate.random_allocations(p, 20, seed=1)]
    bits, episodes = allocate.releq(p, episodes=150, lr=0.1)
    assert p.average(bits) <= 3.0 + 1e-9
    assert p.score(bits) > np.mean(random_scores)
    assert episodes["reward"].tail(20).mean() > episodes["reward"].head(20).mean()


def test_hawq_gives_the_sensitive_layers_more_bits():
    p = synthetic()
    sens = allocate.sensitivities(p, np.linspace(10.0, 0.01, len(p.names)))
    bits = allocate.hawq(p, sens)
    assert p.average(bits) <= 3.0 + 1e-9
    assert bits[0] >= bits[-1] and bits[0] > 3
    assert p.score(bits) > np.mean([p.score(b) for b in allocate.random_allocations(p, 20, seed=1)])


def test_impossible_budgets_are_rejected():
    with pytest.raises(ValueError, match="averages between 2 and 8"):
        synthetic(budget=1.0)
    p = synthetic()
    with pytest.raises(ValueError, match="below the smallest choice"):
        allocate.project([8] * len(p.names), p.sizes, 1.5)
    with pytest.raises(ValueError, match="held-out"):
        allocate.held_out(p.bundle, 8)
