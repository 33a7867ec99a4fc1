"""Estimate a VGG's latency on a platform without running it: a per-layer lookup table.

A VGG (``models.vgg``, CIFAR head) is a chain of a few layer kinds, each fixed by its
channel counts, spatial size and batch size::

    conv_bn_relu  conv3x3(bias) -> BN -> ReLU   (conv_relu without BN)
    maxpool       2x2 max-pool, stride 2
    avgpool       global average pool + flatten
    linear        the classifier

Each :class:`LayerKey` ``(kind, in channels, out channels, spatial size, batch, platform)``
is timed once, in isolation (eval mode, no gradient, ``torch.utils.benchmark``: warm-up,
then the fastest of ten short timed blocks, threads fixed by the platform; see
:func:`time_stmt`), the first time an estimate needs it, and memoised; the table saves to
and loads from JSON or CSV so a lesson can ship it.

Timing a layer alone and timing it inside a model agree only when the C allocator is in
the same state in both: with glibc a fresh process maps (and page-faults) every tensor
above 128 KiB anew on each call, until freeing a large block raises that threshold. Every
measurement here (layers and models) first calls :func:`timer.warm_allocator`, which
puts the allocator where it ends up in any process that has trained a model; without it
the layer entries at batch 64 came out up to 7x slower than the same layers in a model.

What the layers leave out (Python dispatch of ``forward``, the first layer reading the
input, weights that no longer fit the cache once the whole model runs, layers sharing
caches) is a per-model correction for each (platform, batch, input size), calibrated
once (:meth:`LatencyTable.calibrate`) on a few measured reference models: by default the
one-channel model, the queried signature at 1/2 of its widths, the queried signature
itself and two seeded random prunings of it. A line through (sum of the reference's
entries, its measured latency) gives::

    estimate = scale * sum of layer entries + overhead_ms

The fit is robust (Theil-Sen slope, median intercept; see :func:`fit_correction`), and
``scale`` is clipped to [0.75, 1.33]. On the 2-core development machine, with one other
job running, the residuals (measured - sum) were a near-constant 0.01-0.05 ms at batch 1
and within +-7% at batch 64 (scale near 1); while other jobs kept both cores busy the
scale went to the 1.33 clip (a whole model, timed in longer blocks, is slowed more by
contention than the short layer blocks) and the estimate still tracked the measurement:
VGG19 signatures of width <= 0.25 at 32x32, mean |error| 6.8% (max 15.8%) at batch 1 and
3.8% (max 7.5%) at batch 64. ``fit_scale=False`` keeps ``scale = 1`` and makes
``overhead_ms`` the median of the residuals: the plain "sum plus a fixed per-model
overhead" (there: mean 9.2% and 6.5%).

:func:`validate` compares estimates with measurements for a list of signatures.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch
from torch import nn
from torch.utils import benchmark

from tutorial_lib import distributed, models, repro
from tutorial_lib.measure import platforms, timer
from tutorial_lib.models import vgg as vgg_module
from tutorial_lib.models.topology import Describable, Topology, describe

KINDS = ("conv_bn_relu", "conv_relu", "maxpool", "avgpool", "linear")


@dataclass(frozen=True)
class LayerKey:
    """One layer of a VGG as the table knows it."""

    kind: str
    cin: int
    cout: int
    size: int  # input height (= width)
    batch: int
    platform: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}; valid choices: {', '.join(KINDS)}")


def layers(topo: Topology, input_shape: tuple[int, ...], platform: str) -> list[LayerKey]:
    """The table keys of a forward pass of ``topo`` for ``input_shape`` (batch, C, H, W)."""
    batch, channels, size = int(input_shape[0]), int(input_shape[1]), int(input_shape[-1])
    if channels != topo.in_channels:
        raise ValueError(f"the model takes {topo.in_channels} input channels, the input shape has {channels}")
    if input_shape[-1] != input_shape[-2]:
        raise ValueError(f"the latency table expects square inputs, got {tuple(input_shape)}")
    conv = "conv_bn_relu" if topo.batch_norm else "conv_relu"
    keys = []
    for v in topo.signature:
        if v == "M":
            keys.append(LayerKey("maxpool", channels, channels, size, batch, platform))
            size = vgg_module.pooled(size)
        else:
            keys.append(LayerKey(conv, channels, int(v), size, batch, platform))
            channels = int(v)
    keys.append(LayerKey("avgpool", channels, channels, size, batch, platform))
    keys.append(LayerKey("linear", channels, topo.num_classes, 1, batch, platform))
    return keys


def _layer_and_input(key: LayerKey, gen: torch.Generator) -> tuple[str, dict]:
    """The statement to time and its globals; modules are called directly, as in the model."""
    x = torch.randn(key.batch, key.cin, key.size, key.size, generator=gen)
    if key.kind in ("conv_bn_relu", "conv_relu"):
        g = {"conv": nn.Conv2d(key.cin, key.cout, 3, padding=1), "relu": nn.ReLU(inplace=True), "x": x}
        if key.kind == "conv_bn_relu":
            g["bn"] = nn.BatchNorm2d(key.cout)
            return "relu(bn(conv(x)))", g
        return "relu(conv(x))", g
    if key.kind == "maxpool":
        return "pool(x)", {"pool": nn.MaxPool2d(2, 2, ceil_mode=True), "x": x}
    if key.kind == "avgpool":
        return "torch.flatten(pool(x), 1)", {"pool": nn.AdaptiveAvgPool2d(1), "x": x, "torch": torch}
    return "fc(x)", {"fc": nn.Linear(key.cin, key.cout), "x": torch.randn(key.batch, key.cin, generator=gen)}


def time_stmt(stmt: str, globals: dict, threads: int, min_run_time: float, blocks: int = 10) -> float:
    """Latency (ms) of ``stmt``: the fastest of ``blocks`` timed blocks of equal size
    (``torch.utils.benchmark.Timer``: threads fixed, CUDA synchronised), sized so that all of
    them take about ``min_run_time`` seconds; 3 warm-up calls first.

    The *best of N blocks* (what ``timeit`` recommends) rather than the median: on a shared
    machine other processes only ever add time, and short blocks slip between their time
    slices, so the minimum is the stable estimate of the undisturbed latency. On a quiet
    machine it is within a few percent of :func:`platforms.measure`'s median.
    (``Timer.blocked_autorange`` costs at least ~0.1 s per call whatever ``min_run_time``,
    too slow for hundreds of table entries.) Under torchrun, rank 0 times and shares the figure.
    """
    return distributed.on_main(lambda: _best_block(stmt, globals, threads, min_run_time, blocks))


def _best_block(stmt: str, globals: dict, threads: int, min_run_time: float, blocks: int) -> float:
    timer = benchmark.Timer(stmt=stmt, globals=globals, num_threads=threads)
    one = timer.timeit(3).median  # warm-up, and the time of one call
    blocks = max(1, blocks)
    number = max(1, int(min_run_time / blocks / max(one, 1e-7)))
    return min(timer.timeit(number).median for _ in range(blocks)) * 1e3


@torch.no_grad()
def measure_layer(key: LayerKey, min_run_time: float = 0.05, blocks: int = 10) -> float:
    """Latency (ms) of one layer on its platform, measured in isolation (:func:`time_stmt`,
    after :func:`timer.warm_allocator`)."""
    p = platforms.get(key.platform)
    timer.warm_allocator()
    gen = torch.Generator().manual_seed(0)
    with repro.seeded(0):
        stmt, g = _layer_and_input(key, gen)
    for name, v in g.items():
        if isinstance(v, nn.Module):
            g[name] = v.to(p.device).eval()
        elif isinstance(v, torch.Tensor):
            g[name] = v.to(p.device)
    return time_stmt(stmt, g, p.threads, min_run_time, blocks)


@torch.no_grad()
def measure_model(topo: Describable, input_shape: tuple[int, ...], platform: str, min_run_time: float = 0.2,
                  blocks: int = 10) -> float:
    """Measured latency (ms) of a freshly built model of ``topo`` (eval mode) on ``platform``,
    timed exactly as the layers are (:func:`time_stmt`, after the allocator warm-up);
    without contention it agrees with :func:`platforms.measure`'s median."""
    p = platforms.get(platform)
    topo = describe(topo, None, input_shape[1])
    with repro.seeded(0):
        model = models.from_spec(topo.spec()).to(p.device).eval()
        x = torch.randn(input_shape, device=p.device)
    timer.warm_allocator()
    return time_stmt("model(x)", {"model": model, "x": x}, p.threads, min_run_time, blocks)


def _reference_topologies(topo: Topology, fractions: Iterable[float] = (0.5,), random_prunings: int = 2,
                          seed: int = 0) -> list[Topology]:
    """The one-channel model, ``topo`` with every width scaled by each fraction (at least one
    channel), ``topo`` itself and ``random_prunings`` random prunings of it (each width
    uniform in [1, width], seeded), deduplicated."""
    rng = random.Random(seed)
    cands = [topo.resized([1] * len(topo.widths))]
    cands += [topo.resized([max(1, int(round(f * c))) for c in topo.widths]) for f in fractions]
    cands.append(topo)
    cands += [topo.resized([rng.randint(1, c) for c in topo.widths]) for _ in range(random_prunings)]
    return list(dict.fromkeys(cands))  # deduplicated, first occurrence kept


@dataclass
class Calibration:
    """The per-model correction of one (platform, batch, input size)."""

    platform: str
    batch: int
    size: int
    overhead_ms: float
    scale: float = 1.0
    references: int = 0
    points: list = field(default_factory=list)  # (sum of entries, measured) of each reference


SCALE_RANGE = (0.75, 1.33)


def error_pct(estimate, measured):
    """The estimate's error in percent of the measurement (positive: the table overestimates)."""
    return 100 * (estimate - measured) / measured


def fit_correction(points: Sequence[tuple[float, float]], fit_scale: bool = True) -> tuple[float, float]:
    """``(scale, overhead_ms)`` from (sum of entries, measured ms) pairs of reference models.

    Robust to one badly timed reference: the scale is the Theil-Sen slope (median of the
    pairwise slopes), clipped to ``SCALE_RANGE``, and the overhead the median of
    ``measured - scale x sum``. The scale is fitted only when the sums span at least a
    factor of 2 (otherwise, or with ``fit_scale=False``, it is 1): a slope through points
    close together is mostly noise.
    """
    if not points:
        raise ValueError("calibration needs at least one reference model")
    xs = [p[0] for p in points]
    scale = 1.0
    if fit_scale and len(points) >= 2 and max(xs) >= 2 * min(xs) > 0:
        slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:]
                  if abs(x2 - x1) > 1e-12]
        scale = min(max(statistics.median(slopes), SCALE_RANGE[0]), SCALE_RANGE[1])
    return scale, statistics.median(y - scale * x for x, y in points)


class LatencyTable:
    """Per-layer latencies, measured lazily and memoised, plus the per-model calibration.

    ``min_run_time``: seconds spent timing each layer entry; ``model_min_run_time``: each
    reference model of a calibration; ``reference_fractions`` and ``random_prunings``: which
    reference models (:func:`_reference_topologies`); ``fit_scale``: fit ``scale`` or keep 1.

    >>> table = LatencyTable()
    >>> table.estimate(models.vgg_signature("vgg19", 0.25), (1, 3, 32, 32), "torch-cpu-1t")  # doctest: +SKIP
    """

    def __init__(self, min_run_time: float = 0.05, model_min_run_time: float = 0.2,
                 reference_fractions: Sequence[float] = (0.5,), random_prunings: int = 2, fit_scale: bool = True):
        self.min_run_time = min_run_time
        self.model_min_run_time = model_min_run_time
        self.reference_fractions = tuple(reference_fractions)
        self.random_prunings = random_prunings
        self.fit_scale = fit_scale
        self.entries: dict[LayerKey, float] = {}
        self.calibrations: dict[tuple[str, int, int], Calibration] = {}
        self.measured = 0  # layer measurements taken by this table (cache misses)

    # -- the lookup table ------------------------------------------------------------
    def lookup(self, key: LayerKey) -> float:
        """The entry for ``key``, measured on first use."""
        if key not in self.entries:
            platforms.get(key.platform)  # unknown platform: ValueError listing the available ones
            self.entries[key] = measure_layer(key, self.min_run_time)
            self.measured += 1
        return self.entries[key]

    def layer_sum(self, model_or_signature: Describable, input_shape: tuple[int, ...], platform: str,
                  num_classes: int | None = None) -> float:
        """Sum of the layer entries (ms), without the per-model correction."""
        topo = describe(model_or_signature, num_classes, input_shape[1])
        return sum(self.lookup(k) for k in layers(topo, input_shape, platform))

    def breakdown(self, model_or_signature: Describable, input_shape: tuple[int, ...], platform: str,
                  num_classes: int | None = None) -> pd.DataFrame:
        """One row per layer (its key and ms) and a row for the per-model correction."""
        topo = describe(model_or_signature, num_classes, input_shape[1])
        rows = [{**asdict(k), "ms": self.lookup(k)} for k in layers(topo, input_shape, platform)]
        cal = self.calibration(topo, input_shape, platform)
        layer_total = sum(r["ms"] for r in rows)
        rows.append({"kind": "per-model correction", "cin": None, "cout": None, "size": input_shape[-1],
                     "batch": input_shape[0], "platform": platform,
                     "ms": (cal.scale - 1) * layer_total + cal.overhead_ms})
        return pd.DataFrame(rows)

    # -- the per-model correction ------------------------------------------------------
    def calibrate(self, topo: Describable, input_shape: tuple[int, ...], platform: str,
                  references: Sequence[Describable] | None = None) -> Calibration:
        """Fit the per-model correction of (platform, batch, input size) on measured reference
        models (default: see :func:`_reference_topologies`; the module docstring has the fit)."""
        platforms.get(platform)
        topo = describe(topo, None, input_shape[1])
        refs = [describe(r, topo.num_classes, input_shape[1]) for r in references] if references else \
            _reference_topologies(topo, self.reference_fractions, self.random_prunings)
        points = [(self.layer_sum(ref, input_shape, platform),
                   measure_model(ref, input_shape, platform, self.model_min_run_time)) for ref in refs]
        scale, overhead = fit_correction(points, self.fit_scale)
        cal = Calibration(platform, int(input_shape[0]), int(input_shape[-1]), overhead, scale, len(refs),
                          [list(p) for p in points])
        self.calibrations[(platform, cal.batch, cal.size)] = cal
        return cal

    def calibration(self, topo: Describable, input_shape: tuple[int, ...], platform: str) -> Calibration:
        """The calibration of (platform, batch, input size), fitted on first use."""
        key = (platform, int(input_shape[0]), int(input_shape[-1]))
        if key not in self.calibrations:
            self.calibrate(topo, input_shape, platform)
        return self.calibrations[key]

    # -- the estimate ------------------------------------------------------------------
    def estimate(self, model_or_signature: Describable, input_shape: tuple[int, ...], platform: str,
                 num_classes: int | None = None) -> float:
        """Estimated latency (ms) = layer entries + per-model correction. Nothing runs the model."""
        topo = describe(model_or_signature, num_classes, input_shape[1])
        cal = self.calibration(topo, input_shape, platform)
        total = self.layer_sum(topo, input_shape, platform)
        return max(cal.scale * total + cal.overhead_ms, 0.0)

    # -- persistence -------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Entries and per-model overheads as one table (``kind`` = ``overhead`` for the latter)."""
        rows = [{**asdict(k), "ms": v} for k, v in self.entries.items()]
        rows += [{"kind": "overhead", "cin": 0, "cout": 0, "size": c.size, "batch": c.batch,
                  "platform": c.platform, "ms": c.overhead_ms, "scale": c.scale} for c in self.calibrations.values()]
        return pd.DataFrame(rows, columns=["kind", "cin", "cout", "size", "batch", "platform", "ms", "scale"])

    def save(self, path: str | Path) -> Path:
        """Write the table as ``.json`` or ``.csv`` (by the file's suffix)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            self.to_frame().to_csv(path, index=False)
        elif path.suffix == ".json":
            path.write_text(json.dumps({
                "entries": [{**asdict(k), "ms": v} for k, v in self.entries.items()],
                "calibrations": [asdict(c) for c in self.calibrations.values()],
            }, indent=1))
        else:
            raise ValueError(f"save a latency table as .json or .csv, not {path.suffix!r}")
        return path

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> "LatencyTable":
        """A table with the entries and calibrations of a saved one (measures only what is missing)."""
        path = Path(path)
        table = cls(**kwargs)
        if path.suffix == ".csv":
            for r in pd.read_csv(path).itertuples(index=False):
                if r.kind == "overhead":
                    table.calibrations[(r.platform, int(r.batch), int(r.size))] = Calibration(
                        r.platform, int(r.batch), int(r.size), float(r.ms), float(r.scale))
                else:
                    table.entries[LayerKey(r.kind, int(r.cin), int(r.cout), int(r.size), int(r.batch),
                                           r.platform)] = float(r.ms)
        elif path.suffix == ".json":
            raw = json.loads(path.read_text())
            for e in raw["entries"]:
                table.entries[LayerKey(**{k: v for k, v in e.items() if k != "ms"})] = float(e["ms"])
            for c in raw["calibrations"]:
                cal = Calibration(**{**c, "points": [list(p) for p in c.get("points", [])]})
                table.calibrations[(cal.platform, cal.batch, cal.size)] = cal
        else:
            raise ValueError(f"load a latency table from .json or .csv, not {path.suffix!r}")
        return table

    def __len__(self) -> int:
        return len(self.entries)


_DEFAULT: LatencyTable | None = None


def default_table() -> LatencyTable:
    """One table shared by the module-level :func:`estimate` (and by budgets that name none)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = LatencyTable()
    return _DEFAULT


def estimate(model_or_signature: Describable, input_shape: tuple[int, ...], platform: str,
             num_classes: int | None = None, table: LatencyTable | None = None) -> float:
    """Estimated latency (ms) of a VGG (model, spec or signature) on ``platform``."""
    table = table if table is not None else default_table()
    return table.estimate(model_or_signature, input_shape, platform, num_classes)


def validate(signatures: Sequence[Describable], input_shapes: Sequence[tuple[int, ...]], platform: str,
             table: LatencyTable | None = None, num_classes: int | None = None,
             min_run_time: float = 0.3) -> pd.DataFrame:
    """Estimate vs measured latency for every signature and input shape: one row each with
    ``signature``, ``batch``, ``layer_sum_ms``, ``estimate_ms``, ``measured_ms`` and ``error_pct`` (signed,
    relative to the measurement). The table calibrates itself on first use, so validate on
    signatures other than its references."""
    table = table if table is not None else default_table()
    rows = []
    for shape in input_shapes:
        for s in signatures:
            topo = describe(s, num_classes, shape[1])
            est = table.estimate(topo, shape, platform)
            meas = measure_model(topo, shape, platform, min_run_time)
            rows.append({"signature": list(topo.signature), "batch": shape[0], "platform": platform,
                         "layer_sum_ms": table.layer_sum(topo, shape, platform), "estimate_ms": est,
                         "measured_ms": meas, "error_pct": error_pct(est, meas)})
    return pd.DataFrame(rows)
