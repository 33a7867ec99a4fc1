"""Platform-aware constrained pruning: budgets on parameters, FLOPs and measured latency.

- ``profiler``: a layer-wise profiler (``torch.profiler``, one row per leaf module);
- ``platforms``: the platforms this machine can time on (``torch-cpu-1t``, ``torch-cpu-<N>t``,
  ``cuda``) and ``measure(model, platform, input_shape)``;
- ``latency_table``: estimate a VGG's latency from a per-layer lookup table, without running it;
- ``budget``: ``Budget(kind, value, platform)``, costs of models, specs and masked models,
  the feasible range of a budget and its check before training;
- ``adaptive``: the adaptive constrained loop (sparsity epochs with masks, packing,
  fine-tuning with KD) for the three budget kinds, around a pure state machine;
- ``signatures``: random prunable VGG signatures, trained briefly, and rank correlations
  between accuracy, parameters, FLOPs and latency;
- ``runtimes``: inference runtimes a latency can be measured under (eager, channels-last,
  ``torch.compile``), looked up by name, and a speedup table of several models under each.
"""

from tutorial_lib.constraints import adaptive, budget, latency_table, platforms, profiler, runtimes, signatures
from tutorial_lib.constraints.budget import Budget

__all__ = ["Budget", "adaptive", "budget", "latency_table", "platforms", "profiler", "runtimes", "signatures"]
