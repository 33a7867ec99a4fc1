"""Platform-aware constrained pruning: budgets on parameters, FLOPs and measured latency.

(The measuring tools it relies on, platforms, the layer profiler and inference runtimes,
are in ``tutorial_lib.measure``.)

- ``latency_table``: estimate a VGG's latency from a per-layer lookup table, without running it;
- ``budget``: ``Budget(kind, value, platform)``, costs of models, specs and masked models,
  the feasible range of a budget and its check before training;
- ``adaptive``: the adaptive constrained loop (sparsity epochs with masks, packing,
  fine-tuning with KD) for the three budget kinds, around a pure state machine;
- ``signatures``: random prunable VGG signatures, trained briefly, and rank correlations
  between accuracy, parameters, FLOPs and latency;
"""

from tutorial_lib.constraints import adaptive, budget, latency_table, signatures
from tutorial_lib.constraints.budget import Budget

__all__ = ["Budget", "adaptive", "budget", "latency_table", "signatures"]
