"""Bits per layer under one budget: five ways to choose them, one rule for the budget.

An *allocation* gives each quantizable layer a weight bit-width from ReLeQ's choices
{2, 3, 4, 5, 8}; its cost is the average bits per weight (weighted by each layer's weight
count: what sets the bytes). Every method returns an allocation at most ``budget``:

- :func:`uniform`: every layer at the budget (the reference);
- :func:`random_allocations`: draws within ``[budget - 0.25, budget]`` (the control: a method that
  does not beat these has learned nothing about the network);
- :func:`hawq`: sensitivity as in HAWQ (Dong et al., 2019): ``Tr(H_i) / n_i * ||Q_b(W_i) - W_i||^2``,
  the Hessian trace by Hutchinson's estimator, then bits lowered greedily where they cost least;
- :func:`dnas`: differentiable search as in Wu et al. (2018): per-layer logits over the
  choices, Gumbel-softmax weights mixing the layer's quantized weights, a cost-aware loss;
- :func:`releq`: a ReLeQ-style agent (Elthakeb et al., 2018): a policy network picks each
  layer's bits in turn, rewarded for accuracy and bits after a short fine-tune.

The search methods judge allocations on a :class:`Problem`: a held-out part of the training
set (never the test set), after ``probe_steps`` of fine-tuning.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

from tutorial_lib import data, repro
from tutorial_lib.quant import qat
from tutorial_lib.quant.quantizers import Quantizer, mse_step, quantizable

CHOICES = (2, 3, 4, 5, 8)  # ReLeQ's bit-widths


@dataclass
class Problem:
    """What every allocation method works on: a trained full-precision model, data split into
    a search-training part and a held-out part, the budget and how allocations are judged."""

    model: nn.Module
    bundle: data.DataBundle  # train: the search's training part; test: the held-out part
    run: object
    budget: float
    probe_steps: int = 8
    lr: float = 0.005
    keep_first_last: bool = True
    choices: tuple[int, ...] = CHOICES
    names: list[str] = field(init=False)
    sizes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if not min(self.choices) <= self.budget <= max(self.choices):
            raise ValueError(f"budget {self.budget:g} bits is not valid: an allocation over {self.choices} "
                             f"averages between {min(self.choices)} and {max(self.choices)} bits")
        self.names = quantizable(self.model, self.keep_first_last)
        self.sizes = np.array([self.model.get_submodule(n).weight.numel() for n in self.names], dtype=float)

    def average(self, bits: Sequence[int]) -> float:
        """Average bits per weight of ``bits``."""
        return float(np.dot(self.sizes, bits) / self.sizes.sum())

    def score(self, bits: Sequence[int], seed: int | None = None) -> float:
        """Held-out top-1 (%) of the model at ``bits`` after ``probe_steps`` of fine-tuning."""
        run = self.run if seed is None else self.run.replace(seed=seed)
        model = qat.quantized_copy(self.model, list(bits), None, self.keep_first_last)
        return qat.finetune(model, self.bundle, run, self.probe_steps, self.lr, desc="probe")


def held_out(bundle: data.DataBundle, images: int, seed: int = 0) -> data.DataBundle:
    """``bundle`` with its training set split: ``images`` random training images become the
    test set of the search, the rest its training set."""
    n = len(bundle.train)
    if not 0 < images < n:
        raise ValueError(f"a held-out set needs between 1 and {n - 1} of the {n} training images, got {images}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return dataclasses.replace(bundle, train=Subset(bundle.train, order[images:]), test=Subset(bundle.train, order[:images]))


def project(bits: Sequence[int], sizes: np.ndarray, budget: float, choices: Sequence[int] = CHOICES) -> list[int]:
    """``bits`` brought within ``budget``: while over it, the layer with the most bits (the
    largest of those on a tie) drops to the next lower choice. One rule for every method."""
    bits, choices = list(bits), sorted(choices)
    while np.dot(sizes, bits) / sizes.sum() > budget + 1e-9:
        i = max(range(len(bits)), key=lambda k: (bits[k], sizes[k]) if bits[k] > choices[0] else (-1, 0))
        if bits[i] == choices[0]:
            raise ValueError(f"budget {budget:g} is below the smallest choice {choices[0]}")
        bits[i] = max(c for c in choices if c < bits[i])
    return bits


def uniform(problem: Problem) -> list[int]:
    """Every layer at the largest choice within the budget."""
    return [max(c for c in problem.choices if c <= problem.budget)] * len(problem.names)


def random_allocations(problem: Problem, draws: int, seed: int = 0, slack: float = 0.25) -> list[list[int]]:
    """``draws`` allocations drawn uniformly over the choices per layer, kept when their average
    lies within ``[budget - slack, budget]`` (rejection sampling: equal cost, random placement)."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    for _ in range(1000):
        cand = rng.choice(problem.choices, size=(20000, len(problem.names)))
        avg = cand @ problem.sizes / problem.sizes.sum()
        out += [list(map(int, c)) for c in cand[(avg <= problem.budget + 1e-9) & (avg >= problem.budget - slack)]]
        if len(out) >= draws:
            return out[:draws]
    raise ValueError(f"no random allocation found within [{problem.budget - slack:g}, {problem.budget:g}] bits")


# -- HAWQ: Hessian-aware sensitivity --------------------------------------------------------

def hessian_traces(problem: Problem, batches: int = 2, samples: int = 8, batch_size: int = 128) -> np.ndarray:
    """Each quantizable layer's Hessian trace divided by its weight count, by Hutchinson's
    estimator ``E[v^T H v]`` with Rademacher ``v`` (HAWQ-v2), on training batches of the search."""
    model = copy.deepcopy(problem.model).eval()
    weights = [model.get_submodule(n).weight for n in problem.names]
    g = torch.Generator().manual_seed(problem.run.seed)
    loader = torch.utils.data.DataLoader(problem.bundle.train, batch_size=batch_size, shuffle=True, generator=g)
    traces = np.zeros(len(weights))
    for _, (x, y) in zip(range(batches), loader):
        loss = F.cross_entropy(model(x.contiguous()), y)
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        for _ in range(samples):
            vs = [torch.randint(0, 2, w.shape, generator=g).float() * 2 - 1 for w in weights]
            hv = torch.autograd.grad(grads, weights, grad_outputs=vs, retain_graph=True)
            traces += np.array([float((h * v).sum()) for h, v in zip(hv, vs)]) / (samples * batches)
    return traces / problem.sizes


def sensitivities(problem: Problem, traces: np.ndarray) -> pd.DataFrame:
    """HAWQ's sensitivity ``Tr(H)/n * ||Q_b(W) - W||^2`` of every layer at every choice (rows: layers)."""
    rows = []
    for name, t in zip(problem.names, traces):
        w = problem.model.get_submodule(name).weight.detach()
        row = {"layer": name, "trace / n": t}
        for b in problem.choices:
            q = Quantizer(b)
            q.step.data.copy_(mse_step(w, b, True))
            q.initialized.fill_(True)
            row[b] = float(t * ((q(w) - w) ** 2).sum().detach())
        rows.append(row)
    return pd.DataFrame(rows)


def hawq(problem: Problem, table: pd.DataFrame) -> list[int]:
    """From every layer at the largest choice, lower one layer a step at a time, always the one
    whose sensitivity rises least per bit-weight saved, until the budget is met."""
    bits = [max(problem.choices)] * len(problem.names)
    choices = sorted(problem.choices)
    while problem.average(bits) > problem.budget + 1e-9:
        best, cost = None, math.inf
        for i, b in enumerate(bits):
            if b == choices[0]:
                continue
            lower = max(c for c in choices if c < b)
            c = (table.iloc[i][lower] - table.iloc[i][b]) / ((b - lower) * problem.sizes[i])
            if c < cost:
                best, cost = i, c
        bits[best] = max(c for c in choices if c < bits[best])
    return bits


# -- DNAS: differentiable search (Wu et al.) --------------------------------------------------

class MixedWeights(nn.Module):
    """A layer's weights as a Gumbel-softmax mixture of its quantized versions, one per choice:
    for weights alone, ``sum_b g_b conv(x, Q_b(W)) = conv(x, sum_b g_b Q_b(W))``, so Wu et al.'s
    parallel branches cost one convolution."""

    def __init__(self, choices: Sequence[int]):
        super().__init__()
        self.choices = tuple(choices)
        self.quantizers = nn.ModuleList(Quantizer(b) for b in self.choices)
        self.logits = nn.Parameter(torch.zeros(len(self.choices)))
        self.tau = 1.0
        self.last: torch.Tensor | None = None

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        g = F.gumbel_softmax(self.logits, tau=self.tau) if self.training else F.one_hot(
            self.logits.argmax(), len(self.choices)).float()
        self.last = F.softmax(self.logits, 0)
        return sum(gi * q(w) for gi, q in zip(g, self.quantizers))


def dnas(problem: Problem, steps: int, penalty: float = 2.0, arch_lr: float = 0.05, tau: tuple[float, float] = (5.0, 0.5),
         batch_size: int = 64) -> tuple[list[int], pd.DataFrame]:
    """Wu et al.'s search: weights (SGD) and per-layer bit logits (Adam) trained together on
    ``CE + penalty * |E[avg bits] / budget - 1|`` (Wu et al. multiply CE by a cost term with
    no budget; a two-sided penalty aims the search at the budget itself) with the Gumbel temperature annealed
    from ``tau[0]`` to ``tau[1]``; returns the most likely bits per layer (within the budget by
    :func:`project`) and the trace of the expected average bits."""
    model = copy.deepcopy(problem.model).train()
    mixers = {}
    for name in problem.names:
        layer = model.get_submodule(name)
        mixers[name] = MixedWeights(problem.choices)
        torch.nn.utils.parametrize.register_parametrization(layer, "weight", mixers[name], unsafe=True)
    arch = [m.logits for m in mixers.values()]
    arch_ids = {id(p) for p in arch}
    weights = [p for p in model.parameters() if id(p) not in arch_ids]
    opt_w = torch.optim.SGD(weights, lr=problem.lr, momentum=0.9)
    opt_a = torch.optim.Adam(arch, lr=arch_lr)
    generator = repro.seed_everything(problem.run.seed, repro.resolve_threads(problem.run.threads))
    loader = torch.utils.data.DataLoader(problem.bundle.train, batch_size=batch_size, shuffle=True, generator=generator)
    sizes = torch.tensor(problem.sizes, dtype=torch.float32)
    bits_of_choice = torch.tensor(problem.choices, dtype=torch.float32)
    trace, done = [], 0
    while done < steps:
        for x, y in loader:
            for m in mixers.values():
                m.tau = tau[0] * (tau[1] / tau[0]) ** (done / max(steps - 1, 1))
            ce = F.cross_entropy(model(x.contiguous()), y)
            expected = sum(s * (m.last @ bits_of_choice) for s, m in zip(sizes, mixers.values())) / sizes.sum()
            loss = ce + penalty * (expected / problem.budget - 1).abs()
            opt_w.zero_grad(set_to_none=True)
            opt_a.zero_grad(set_to_none=True)
            loss.backward()
            opt_w.step()
            opt_a.step()
            trace.append({"step": done + 1, "expected avg bits": float(expected.detach()), "cross-entropy": float(ce.detach())})
            done += 1
            if done == steps:
                break
    bits = [problem.choices[int(m.logits.argmax())] for m in mixers.values()]
    return project(bits, problem.sizes, problem.budget, problem.choices), pd.DataFrame(trace)


# -- ReLeQ: a reinforcement-learning agent ------------------------------------------------------

class Policy(nn.Module):
    """The agent: a small MLP mapping a layer's state (its position, size, shape and the bits
    chosen for the layer before) to a distribution over the choices. ReLeQ uses an LSTM over
    the layers; the previous action in the state carries the same sequence information."""

    def __init__(self, features: int, choices: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, choices))
        nn.init.zeros_(self.net[-1].weight)  # start uniform over the choices
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, state: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.net(state))


def layer_features(problem: Problem) -> torch.Tensor:
    """Per layer: position in the network, log weight count, log in/out channels (normalised)."""
    rows = []
    for k, name in enumerate(problem.names):
        w = problem.model.get_submodule(name).weight
        rows.append([k / max(len(problem.names) - 1, 1), math.log10(w.numel()) / 7,
                     math.log2(w.shape[1]) / 10, math.log2(w.shape[0]) / 10])
    return torch.tensor(rows, dtype=torch.float32)


def releq_reward(accuracy: float, full_accuracy: float, avg_bits: float, max_bits: int = 8, sharpness: float = 4.0
                 ) -> float:
    """ReLeQ's trade-off: relative accuracy (raised to ``sharpness``, so a loss weighs more the
    larger it is) times the share of ``max_bits`` saved."""
    return (max(accuracy, 0.0) / full_accuracy) ** sharpness * (1.0 - avg_bits / max_bits)


def releq(problem: Problem, episodes: int, lr: float = 0.05, full_accuracy: float | None = None
          ) -> tuple[list[int], pd.DataFrame]:
    """REINFORCE with a moving-average baseline: each episode the policy picks every layer's
    bits in turn; the allocation, brought within the budget (:func:`project`), is fine-tuned for
    ``probe_steps`` and scored on the held-out set. The reward (:func:`releq_reward`) takes that
    accuracy and the bits the agent *asked* for, so that asking beyond the budget and leaving
    the cut to :func:`project` does not pay. Returns the policy's most likely allocation
    (within the budget) and one row per episode."""
    torch.manual_seed(problem.run.seed)
    sampler = torch.Generator().manual_seed(problem.run.seed)  # fine-tunes reseed the global RNG
    feats = layer_features(problem)
    choices = list(problem.choices)
    policy = Policy(feats.shape[1] + 1, len(choices))
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    full = full_accuracy if full_accuracy is not None else problem.score([max(choices)] * len(problem.names))
    baseline, rows = None, []

    def rollout(greedy: bool):
        prev, logps, bits = 1.0, [], []
        for k in range(len(problem.names)):
            dist = policy(torch.cat([feats[k], torch.tensor([prev])]))
            a = dist.probs.argmax() if greedy else torch.multinomial(dist.probs.detach(), 1, generator=sampler)[0]
            logps.append(dist.log_prob(a))
            bits.append(choices[int(a)])
            prev = choices[int(a)] / max(choices)
        return bits, torch.stack(logps)

    for episode in range(episodes):
        asked, logp = rollout(greedy=False)
        bits = project(asked, problem.sizes, problem.budget, choices)
        acc = problem.score(bits, seed=problem.run.seed + episode)
        reward = releq_reward(acc, full, problem.average(asked), max(choices))
        if baseline is not None:  # the first episode only sets the baseline
            optimizer.zero_grad()
            (-(reward - baseline) * logp.sum()).backward()
            optimizer.step()
        baseline = reward if baseline is None else 0.8 * baseline + 0.2 * reward
        rows.append({"episode": episode + 1, "reward": reward, "held-out top-1 %": acc,
                     "avg bits asked": problem.average(asked), "avg bits": problem.average(bits)})
    with torch.no_grad():
        bits, _ = rollout(greedy=True)
    return project(bits, problem.sizes, problem.budget, choices), pd.DataFrame(rows)
