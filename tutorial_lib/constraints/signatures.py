"""Random VGG signatures that pruning could produce, trained briefly, and how their costs rank.

The seed's finding: models with the same parameter count, FLOPs or latency can differ
widely in accuracy, and FLOPs say little about latency. :func:`sample` draws signatures
a channel pruning could leave (every convolution keeps between 1 and all of its
channels; pooling stays), :func:`evaluate_signatures` trains each from scratch for a
short budget and records its parameters, FLOPs, latency on each platform and accuracy,
:func:`seed_spread` retrains one signature with other seeds (the noise any gap between
signatures must beat), and :func:`rank_correlations` gives Spearman correlations between
those columns.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import pandas as pd
import torch

from tutorial_lib import data, metrics, repro, train
from tutorial_lib.constraints import budget as budgets
from tutorial_lib.constraints import latency_table
from tutorial_lib.measure import platforms
from tutorial_lib.models import vgg

MODES = ("uniform", "log")


def sample(n: int, arch: str = "vgg19", width: float = 1.0, mode: str = "uniform", seed: int = 0,
           min_width: int = 1) -> list[list]:
    """``n`` signatures of ``arch`` at ``width``, each conv width drawn independently from
    [``min_width``, full width]: uniformly (``mode="uniform"``) or log-uniformly
    (``mode="log"``: as many signatures with 1-10% as with 10-100% of a layer). Seeded."""
    if mode not in MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; valid choices: {', '.join(MODES)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    full = vgg.vgg_signature(arch, width)
    rng = random.Random(seed)

    def draw(c: int) -> int:
        lo = min(max(1, min_width), c)
        if mode == "uniform":
            return rng.randint(lo, c)
        return min(c, max(lo, int(round(math.exp(rng.uniform(math.log(lo), math.log(c)))))))

    return [[v if v == "M" else draw(v) for v in full] for _ in range(n)]


def describe(signature: Sequence) -> str:
    """A compact string of a signature, e.g. ``'20-34-M-69'``."""
    return "-".join(str(v) for v in signature)


def evaluate_signatures(signatures: Sequence[Sequence], bundle: data.DataBundle, cfg, *, epochs: int | None = None,
                        platform_names: Sequence[str] = ("torch-cpu-1t",), batch: int = 1, latency: str = "measure",
                        min_run_time: float = 0.2, table: latency_table.LatencyTable | None = None,
                        optimizer: str = "sgd", lr: float | None = None) -> pd.DataFrame:
    """Train each signature from scratch (``cfg``'s optimiser, ``epochs`` or ``cfg.epochs``)
    and return one row per signature: ``signature``, ``params``, ``flops`` (per image),
    ``latency_ms[<platform>]`` for each platform at ``batch`` (``latency="measure"``:
    median of :func:`platforms.measure`; ``"estimate"``: the latency table; ``"none"``:
    left out), ``accuracy`` (test top-1 %) and the seconds training took.

    ``optimizer="adam"`` trains with Adam at ``lr`` (default 1e-3) and a constant rate instead
    of ``cfg``'s SGD schedule: a plain 19-layer VGG barely leaves chance level in one or two SGD
    epochs, while Adam gets it learning within the first epoch."""
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if latency not in ("measure", "estimate", "none"):
        raise ValueError(f"latency must be 'measure', 'estimate' or 'none', got {latency!r}")
    for p in platform_names:
        platforms.get(p)
    shape = (batch, bundle.in_channels, bundle.image_size, bundle.image_size)
    per_image = (1, *shape[1:])
    rows = []
    for i, sig in enumerate(signatures):
        with repro.seeded(cfg.seed + i):
            model = vgg.VGG(list(sig), num_classes=bundle.num_classes, in_channels=bundle.in_channels)
        opt = sched = None
        if optimizer == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=lr or 1e-3)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)
        elif lr is not None:
            opt = train.sgd(model.parameters(), cfg.baseline.schedule, lr=lr)
        history = train.fit(model, bundle, cfg.baseline.schedule, cfg.run, epochs=epochs, optimizer=opt,
                            scheduler=sched, desc=f"signature {i + 1}/{len(signatures)}")
        _, test_loader = data.loaders(bundle, cfg.batch_size, cfg.run)
        row = {"signature": describe(sig), "params": metrics.count_parameters(model),
               "flops": metrics.count_flops(model, per_image)}
        for p in platform_names if latency != "none" else ():
            row[f"latency_ms[{p}]"] = platforms.measure(model, p, shape, min_run_time=min_run_time).median_ms \
                if latency == "measure" else budgets.spec_cost(model.spec(), "latency", shape, p, table=table)
        row["accuracy"] = train.evaluate(model, test_loader, cfg.device)["accuracy"]
        row["train_seconds"] = float(history["epoch_seconds"].sum()) if len(history) else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def seed_spread(signature: Sequence, bundle: data.DataBundle, cfg, seeds: Sequence[int], *,
                epochs: int | None = None, optimizer: str = "sgd", lr: float | None = None) -> pd.DataFrame:
    """One signature trained from scratch once per seed (initial weights and batch order):
    ``signature``, ``seed``, ``accuracy``. How far accuracy moves by chance alone is the
    yardstick for the accuracy gaps between signatures of equal cost."""
    rows = []
    for s in seeds:
        out = evaluate_signatures([signature], bundle, cfg.replace(seed=int(s)), epochs=epochs, latency="none",
                                  optimizer=optimizer, lr=lr)
        rows.append({"signature": out["signature"].iloc[0], "seed": int(s), "accuracy": out["accuracy"].iloc[0]})
    return pd.DataFrame(rows, columns=["signature", "seed", "accuracy"])


def rank_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman rank correlations (pandas) of accuracy with parameters, FLOPs and each
    latency column, and of each latency column with FLOPs: one row per pair (``x``, ``y``,
    ``spearman``, ``n``). NaN where a column is constant or there are fewer than 2 rows."""
    latency_cols = [c for c in table.columns if str(c).startswith("latency_ms")]
    pairs = [("accuracy", c) for c in ["params", "flops", *latency_cols]] + [(c, "flops") for c in latency_cols]
    rows = []
    for x, y in pairs:
        if x not in table or y not in table:
            continue
        a, b = table[x].astype(float), table[y].astype(float)
        value = a.corr(b, method="spearman") if len(table) > 1 and a.nunique() > 1 and b.nunique() > 1 \
            else float("nan")
        rows.append({"x": x, "y": y, "spearman": value, "n": len(table)})
    return pd.DataFrame(rows, columns=["x", "y", "spearman", "n"])
