"""Lesson 03's experiment: monodepth trained from stereo pairs, pruned jointly, packed, measured.

* :func:`load`: the profile's stereo pairs (synthetic scenes rendered with exact disparity,
  or KITTI from the data root) as a :class:`tutorial_lib.data.DataBundle`;
* :func:`baseline`: the monodepth baseline (Adam, lr halved at 3/5 and 4/5 of training, as
  the published code does), trained once per profile and cached;
* :func:`prune`: masks on the 21 prunable convs, weights and masks trained together on the
  stereo loss + lambda x mask term (one stage), then :func:`~tutorial_lib.pruning.pack.pack`;
* :func:`image_blind`: the per-pixel mean training disparity, the floor a network must beat;
* :func:`evaluate`, :func:`frames_per_second`: errors on the test set and on the Middlebury
  motorcycle pair, parameters, FLOPs, and batch-1 frames per second on every platform here;
* the tables (ours beside the published figures, which keep columns of their own) and the
  targets the lesson and ``python -m tutorial_lib.bench depth`` print.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from tutorial_lib import cache, data, masks, repro, tables, train
from tutorial_lib.cost import count
from tutorial_lib.measure import platforms, profiler
from tutorial_lib.depth import stereo
from tutorial_lib.depth.task import METRICS, StereoDepth, predict_disparity
from tutorial_lib.models.monodepth import ICONVS, PRUNABLE, MonoDepth, prunable_convs
from tutorial_lib.pruning import joint
from tutorial_lib.pruning.pack import pack

STEREO = StereoDepth()  # evaluation (training batches go through task(cfg), augmented as the recipe says)
TEST_SEED_OFFSET = 10_000  # synthetic test scenes use seed + this: never the training scenes
PRUNED_RECIPES = ("depth", "depth_pruning")  # what the cached pruned monodepth is made from
KITTI_TRAIN_LIST = "kitti_train_files.txt"  # monodepth's utils/filenames list, inside the KITTI folder
KITTI_2015 = "KITTI 2015 stereo training split (200 pairs, disp_noc_0)"

# published.csv tables
FPS_TABLE, KITTI_TABLE, WIDTHS_TABLE = "monodepth_fps", "monodepth_kitti", "monodepth_widths"
BOARDS = (("fps_1080ti", "GTX 1080 Ti"), ("fps_tx2", "Jetson TX2"), ("fps_tx1", "Jetson TX1"))

# Targets at the tutorial profile (the lesson and the benchmark print them).
TARGET_PARAMS_REMOVED = 75.0  # % at least
TARGET_D1_RISE = 2.0  # points at most
# Batch-1 speedup on every CPU platform, as a share of what pruning these 21 convs can buy at
# most there (the one-filter ceiling, measured in the same rounds): 1.5x was above that ceiling
# on the CPUs measured (1.27x to 1.71x), so a fixed ratio judged the machine, not the pruning.
TARGET_CEILING_SHARE = 0.85


# --------------------------------------------------------------------------- data and training


def input_shape(cfg, batch: int = 1) -> tuple[int, int, int, int]:
    return (batch, 3, cfg.depth_height, cfg.depth_width)


def load(cfg) -> data.DataBundle:
    """The stereo pairs of ``cfg.depth_data`` at ``depth_height x depth_width``.

    ``synthetic``: ``depth_train_pairs`` scenes from ``cfg.seed`` and ``depth_test_pairs``
    from ``cfg.seed + 10000``, each with exact ground-truth disparity. ``kitti``: KITTI raw
    pairs from monodepth's file list ``kitti_train_files.txt`` for training, the 200 KITTI
    2015 training pairs with ground truth for testing (``DatasetNotFoundError`` saying where
    to put them when missing); ``depth_*_pairs`` keep the first N.
    """
    h, w = cfg.depth_height, cfg.depth_width
    if cfg.depth_data == "synthetic":
        n_train, n_test = cfg.depth_train_pairs or 256, cfg.depth_test_pairs or 64
        train_set = stereo.synthetic_dataset(n_train, h, w, seed=cfg.seed)
        test_set = stereo.synthetic_dataset(n_test, h, w, seed=cfg.seed + TEST_SEED_OFFSET)
        name = "synthetic stereo"
        description = (f"synthetic stereo: {n_train} training and {n_test} test scenes, {h}x{w}, "
                       f"exact integer disparities 1-{round(0.15 * w)} px")
    elif cfg.depth_data == "kitti":
        root = stereo.kitti_root(cfg.data_root)
        train_set = stereo.KittiStereo(KITTI_TRAIN_LIST, root=root, height=h, width=w)
        test_set = stereo.Kitti2015Stereo(root, height=h, width=w)
        train_set, test_set = (Subset(s, range(n)) if n is not None and n < len(s) else s
                               for s, n in ((train_set, cfg.depth_train_pairs), (test_set, cfg.depth_test_pairs)))
        test_set.variable_size = True  # ground truth at each image's own size: one at a time
        name = "KITTI"
        description = f"KITTI raw ({len(train_set)} training pairs, {h}x{w}); test: {KITTI_2015}"
    else:
        raise ValueError(f"unknown depth_data {cfg.depth_data!r}; valid choices: synthetic, kitti")
    return data.DataBundle(name=name, train=train_set, test=test_set, num_classes=0, image_size=h,
                           description=description)


def task(cfg) -> StereoDepth:
    """The stereo task training reads: augmentation per ``depth_augment``, padding per ``depth_sampler_padding``."""
    return StereoDepth(augment=cfg.depth_augment, padding=cfg.depth_sampler_padding)


def build(cfg) -> MonoDepth:
    """Monodepth at ``cfg.depth_model_width``, initialised from ``cfg.seed`` (global RNG untouched)."""
    with repro.seeded(cfg.seed):
        return MonoDepth(width=cfg.depth_model_width)


def halving_schedule(optimizer: torch.optim.Optimizer, epochs: int):
    """Monodepth's schedule: the learning rate halves at 3/5 and again at 4/5 of training."""
    milestones = sorted({max(1, round(0.6 * epochs)), max(1, round(0.8 * epochs))})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.5)


def train_baseline(model: nn.Module, bundle: data.DataBundle, cfg, checkpoint_dir=None) -> pd.DataFrame:
    """Train ``model`` on the stereo loss: Adam (``depth_lr``), ``depth_epochs``, :func:`halving_schedule`."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.depth_lr)
    return train.fit(model, bundle, cfg.depth.schedule, cfg.run, optimizer=optimizer,
                     scheduler=halving_schedule(optimizer, cfg.depth_epochs), checkpoint_dir=checkpoint_dir,
                     desc="monodepth", task=task(cfg))


def baseline(cfg, bundle: data.DataBundle) -> tuple[nn.Module, pd.DataFrame]:
    """The profile's monodepth baseline: trained by the first run that asks, then cached."""
    return cache.get_or_train("monodepth", cfg, build=lambda: build(cfg), recipes=("depth",), code=(__name__,),
                              train=lambda model, folder: train_baseline(model, bundle, cfg, folder))


# --------------------------------------------------------------------------- measuring


@dataclass
class DepthResult:
    """One model and what it measured (``scores``: test set and motorcycle, from :func:`evaluate`)."""

    name: str
    model: nn.Module
    params: int
    flops: int
    scores: dict[str, dict[str, float]]
    history: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)


def evaluate(model: nn.Module, bundle: data.DataBundle, cfg) -> dict[str, dict[str, float]]:
    """``{"test": ..., "motorcycle": ...}``: D1-all (%), Abs Rel ... a3 of ``StereoDepth.evaluate``."""
    torch.set_num_threads(repro.resolve_threads(cfg.threads))
    _, test_loader = data.loaders(bundle, cfg.depth_batch_size, cfg.run)
    motorcycle = DataLoader(TensorDataset(*stereo.motorcycle(cfg.depth_height, cfg.depth_width)), batch_size=1)
    return {"test": STEREO.evaluate(model, test_loader, cfg.device),
            "motorcycle": STEREO.evaluate(model, motorcycle, cfg.device)}


def score_lines(result: DepthResult | None, empty: str = "not measured") -> str:
    """One line per test set of ``result``: D1-all, Abs Rel, RMSE and d<1.25 (``empty`` for None)."""
    if result is None:
        return empty
    return "\n".join(f"{result.name} on {where:10s}: D1-all {s['d1_all']:6.2f}%, Abs Rel {s['abs_rel']:.3f}, "
                     f"RMSE {s['rmse']:.2f} m, d<1.25 {s['a1']:.3f} ({s['images']} images)"
                     for where, s in result.scores.items())


def measure(name: str, model: nn.Module, bundle: data.DataBundle, cfg, history=None, **extra) -> DepthResult:
    """Parameters, FLOPs of one ``depth_height x depth_width`` image, and :func:`evaluate`."""
    model = model.to(cfg.device)
    return DepthResult(name, model, count(model, "params"), count(model, "flops", input_shape(cfg)),
                  evaluate(model, bundle, cfg), history, extra)


class ImageBlindPrior(nn.Module):
    """Predicts the same disparity map whatever the image: the per-pixel mean of the training
    disparities. What position alone gives, the floor a network must beat to show it reads
    the image. ``forward`` returns monodepth's output layout (its finest scale only)."""

    def __init__(self, mean_px: torch.Tensor):
        super().__init__()
        self.register_buffer("disp", mean_px / mean_px.shape[-1])  # (1, 1, H, W), fraction of the width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.disp.expand(len(x), 2, *self.disp.shape[-2:]),)


def image_blind(bundle: data.DataBundle, cfg) -> DepthResult | None:
    """:class:`ImageBlindPrior` fitted on the training pairs' ground truth (which the networks
    never see), measured like the networks: no parameters, no FLOPs. ``None`` where the
    training pairs carry no ground truth (KITTI raw)."""
    if len(bundle.train[0]) < 3:
        return None
    total, n = None, 0
    for batch in DataLoader(bundle.train, batch_size=64):
        gt = batch[2].float()
        total = gt.sum(0, keepdim=True) if total is None else total + gt.sum(0, keepdim=True)
        n += len(gt)
    prior = ImageBlindPrior(total / n).to(cfg.device)
    return DepthResult("image-blind prior", prior, 0, 0, evaluate(prior, bundle, cfg))


@torch.no_grad()
def image_dependence(models: dict[str, nn.Module], bundle: data.DataBundle, cfg, n: int = 16) -> pd.DataFrame:
    """How much each model's disparity changes from one test image to the next: the mean over
    pixels of the absolute deviation from the per-pixel mean over ``n`` test images, in
    pixels, beside the same spread of the ground truth. A model that ignores its input (one
    that has learned only where things usually are) has a spread near 0, however good its
    D1-all."""
    images = [bundle.test[i] for i in range(min(n, len(bundle.test)))]
    left = torch.stack([item[0] for item in images]).to(cfg.device)
    rows = []
    if all(len(item) > 2 and item[2].shape == images[0][2].shape for item in images):
        rows.append(("ground truth", _spread(torch.stack([item[2] for item in images]).float())))
    rows += [(name, _spread(predict_disparity(model, left).cpu())) for name, model in models.items()]
    return pd.DataFrame(rows, columns=["disparities", "spread across images (px)"]).round(2)


def _spread(disp: torch.Tensor) -> float:
    return float((disp - disp.mean(0, keepdim=True)).abs().mean())


def pruning_optimizer(masked: nn.Module, cfg) -> torch.optim.Optimizer:
    """Adam on the weights (``depth_prune_lr``) and on the mask logits (``depth_mask_lr``)."""
    return torch.optim.Adam([{"params": masks.weight_parameters(masked), "lr": cfg.depth_prune_lr},
                             {"params": masks.mask_parameters(masked), "lr": cfg.depth_mask_lr}])


def prune_monodepth(baseline_model: nn.Module, bundle: data.DataBundle, cfg, lam: float | None = None) -> DepthResult:
    """Joint pruning of a copy of the baseline, then pack; the packed model is stored in the cache.

    Masks on the 21 prunable convs (with ``depth_mask_iconvs``, on the 7 iconvs too). Loss:
    stereo loss + ``lam`` (default ``depth_prune_lambda``) x ``depth_mask_loss`` for
    ``depth_prune_epochs``, Adam with a cosine decay (``train_joint``). ``extra`` holds the
    masked model, the largest gap between packed and masked disparities on test images, and
    the parameter count the masks predicted.
    """
    if lam is not None and lam != cfg.depth_prune_lambda:
        cfg = cfg.replace(depth_prune_lambda=lam)
    masked = masks.insert_masks(copy.deepcopy(baseline_model).cpu(), seed=cfg.seed,
                                layers=prunable_convs(iconvs=cfg.depth_mask_iconvs))
    masks.attach_costs(masked, input_shape(cfg))  # each filter's price, for the cost_sum mask term
    teacher = copy.deepcopy(baseline_model).to(cfg.device) if cfg.depth_kd_weight > 0 else None
    history = joint.train_joint(
        masked, bundle, cfg, schedule=cfg.depth.schedule, epochs=cfg.depth_prune_epochs, lam=cfg.depth_prune_lambda,
        weight_lr=cfg.depth_prune_lr, mask_loss=cfg.depth_mask_loss, task=task(cfg), desc="prune",
        optimizer=pruning_optimizer(masked, cfg), teacher=teacher, kd_weight=cfg.depth_kd_weight,
    )
    packed = pack(masked).to(cfg.device)
    estimate = masks.estimate(masked, input_shape(cfg), flops=False)
    closed = [layer for layer, m in masks.masks_of(masked).items() if not m.is_open().any()]
    left = next(iter(DataLoader(bundle.test, batch_size=4)))[0]
    cache.store("monodepth-pruned", cfg, PRUNED_RECIPES, (__name__,), packed)
    return measure("pruned", packed, bundle, cfg, history, masked=masked,
                   pack_max_abs_diff=pack_gap(masked, packed, left), closed_layers=closed,
                   estimated_params=estimate["params_kept"])


@torch.no_grad()
def pack_gap(masked: nn.Module, packed: nn.Module, x: torch.Tensor) -> float:
    """Largest difference between the packed model's disparities and the masked model's, on ``x``.

    A layer whose gates all closed keeps its strongest filter when packed (so the network
    stays connected); the masked model is compared with that filter open too, so the gap
    measures packing alone."""
    reference = copy.deepcopy(masked).cpu()
    masks.set_pattern(reference, {layer: m.survivors() for layer, m in masks.masks_of(reference).items()})
    packed_cpu = copy.deepcopy(packed).cpu()
    return max((a - b).abs().max().item() for a, b in zip(reference.eval()(x), packed_cpu.eval()(x)))


def pruned_model(baseline_model: nn.Module, bundle: data.DataBundle, cfg) -> nn.Module:
    """The packed pruned monodepth of this profile: from the cache lesson 03 fills, or made now."""
    return cache.get_or_make("monodepth-pruned", cfg, PRUNED_RECIPES, (__name__,),
                             lambda: prune_monodepth(baseline_model, bundle, cfg).model)


def frames_per_second(models: dict[str, nn.Module], cfg, min_run_time: float = 0.5, rounds: int = 3) -> pd.DataFrame:
    """Batch-1 frames per second (1000 / median latency in ms) of each model on every platform
    this machine has (``measure.platforms``: the CPU with one thread and with all of them,
    CUDA when present) at ``depth_height x depth_width``: rows = model, columns = platform.
    On each platform the models are timed in turn (``platforms.measure_in_turn``), so that a
    slow spell of the machine falls on all of them rather than on one."""
    ms = {p: platforms.measure_in_turn(models, p, input_shape(cfg), rounds, min_run_time) for p in platforms.available()}
    torch.set_num_threads(repro.resolve_threads(cfg.threads))
    return pd.DataFrame({p: {name: 1000.0 / v for name, v in per.items()} for p, per in ms.items()})


def speedup(fps: pd.DataFrame, row: str, platform: str) -> float:
    """How many times the baseline's frames per second ``row`` runs at on ``platform`` (same rounds)."""
    return float(fps.loc[row, platform] / fps.loc["baseline", platform])


def speed_ceiling(cfg, iconvs: bool = False) -> MonoDepth:
    """Monodepth with every prunable conv cut to one filter (untrained: only its speed counts):
    the fastest network that masks on the 21 prunable convs can reach, since the iconvs, the
    disparity heads, the activations and the upsampling keep their size (``iconvs``: the
    iconvs at one filter too, the ceiling of masking them as well)."""
    with repro.seeded(cfg.seed):
        return MonoDepth(width=cfg.depth_model_width, widths=[1] * len(PRUNABLE),
                         iconv_widths=[1] * len(ICONVS) if iconvs else None).to(cfg.device)


def with_iconvs(baseline_model: nn.Module, bundle: data.DataBundle, cfg, pruned: DepthResult) -> DepthResult:
    """Beyond the seed: the same joint pruning with the iconvs masked too (``depth_mask_iconvs``);
    ``pruned`` itself where the profile already masks them."""
    if cfg.depth_mask_iconvs:
        return pruned
    result = prune_monodepth(baseline_model, bundle, cfg.replace(depth_mask_iconvs=True))
    result.name = "pruned, iconvs masked too"
    return result


def scope_table(base: DepthResult, scopes: dict[str, DepthResult], fps: pd.DataFrame) -> pd.DataFrame:
    """Which convs the masks may shrink, and what that buys: per scope (label -> pruned result,
    with rows ``label`` and ``label + " ceiling"`` in ``fps``), the parameters and FLOPs
    removed, the D1-all rise on the test set and on the motorcycle, and on every CPU platform
    the batch-1 speedup beside that scope's one-filter ceiling."""
    rows = []
    for label, r in scopes.items():
        rec = {"masked convs": label, "params removed %": round(100 * (1 - r.params / base.params), 1),
               "FLOPs removed %": round(100 * (1 - r.flops / base.flops), 1)}
        for where, name in (("test", "test set"), ("motorcycle", "motorcycle")):
            rec[f"D1-all rise ({name})"] = round(r.scores[where]["d1_all"] - base.scores[where]["d1_all"], 2)
        for p in fps.columns:
            if "cpu" in p:
                rec[f"speedup {p}"] = round(speedup(fps, label, p), 2)
                rec[f"ceiling speedup {p}"] = round(speedup(fps, f"{label} ceiling", p), 2)
        rows.append(rec)
    return pd.DataFrame(rows, dtype=object)


PARTS = (("masked convs (14 encoder, 7 upconv)", "prunable"), ("unmasked convs (iconv, disparity heads)", "fixed"),
         ("ELU activations", "elu"), ("upsampling and glue", "rest"))


def time_by_part(models: dict[str, nn.Module], cfg, repeats: int = 20) -> pd.DataFrame:
    """Where a batch-1 forward pass spends its time on one CPU thread: each model's layer times
    (``measure.profiler.profile_layers``) summed into the convs that masks can shrink, the
    convs they cannot, the ELUs (on CPU, the ``expm1`` an ELU evaluates can cost ten times an
    ``exp``, and the ELUs as much as the convs) and everything else (``(other)``, the time
    between layers, included); the last row is the profiler's own total. ms per image,
    profiler overhead included."""

    def part(row) -> str:
        if row["name"] in PRUNABLE:
            return "prunable"
        return {"Conv2d": "fixed", "ELU": "elu"}.get(row["type"], "rest")

    columns = {}
    for name, model in models.items():
        table = profiler.profile_layers(model.to("cpu"), input_shape(cfg), repeats=repeats, threads=1)
        model.to(cfg.device)
        is_total = table["name"] == "(total)"
        rows = table[~is_total]
        columns[f"{name} (ms)"] = [*rows.groupby(rows.apply(part, axis=1))["cpu_ms"].sum()
                                   .reindex([key for _, key in PARTS], fill_value=0.0),
                                   float(table.loc[is_total, "cpu_ms"].iloc[0])]
    return pd.DataFrame({"part": [label for label, _ in PARTS] + ["total"], **columns}).round(2)


# --------------------------------------------------------------------------- tables


def results_table(base: DepthResult, pruned: DepthResult, dataset: str, prior: DepthResult | None = None) -> pd.DataFrame:
    """Baseline versus pruned, measured here: size, FLOPs, errors on the test set and on the
    motorcycle pair; with ``prior`` (:func:`image_blind`) a first row that shows what position
    alone scores. The published KITTI figures are in :func:`kitti_table`."""
    rows = []
    named = (("image-blind prior (mean training disparity per pixel)", prior),) if prior is not None else ()
    for label, r in (*named, ("baseline", base), ("pruned (joint, packed)", pruned)):
        t, m = r.scores["test"], r.scores["motorcycle"]
        rows.append({
            "model": label, "params": r.params, "params change %": round(100 * (r.params / base.params - 1), 1),
            "GFLOPs": round(r.flops / 1e9, 3),
            f"D1-all % ({dataset})": round(t["d1_all"], 2), f"Abs Rel ({dataset})": round(t["abs_rel"], 4),
            f"RMSE m ({dataset})": round(t["rmse"], 3), f"d<1.25 ({dataset})": round(t["a1"], 3),
            "D1-all % (motorcycle)": round(m["d1_all"], 2), "Abs Rel (motorcycle)": round(m["abs_rel"], 4),
            "RMSE m (motorcycle)": round(m["rmse"], 3),
        })
    return pd.DataFrame(rows, dtype=object)


def fps_table(fps: pd.DataFrame) -> pd.DataFrame:
    """The seed's speed table: rows baseline, pruned, speedup; our platforms' batch-1 FPS, then
    the published boards (GTX 1080 Ti, Jetson TX2, Jetson TX1) in columns named as published.
    A ``ceiling`` row of ``fps`` (:func:`speed_ceiling`) adds the largest speedup masks could give."""
    rows = [{"model": label, **{f"FPS {p} (ours)": round(float(fps.loc[row, p]), 1) for p in fps.columns},
             **{f"published FPS {board}": tables.published_or_blank(FPS_TABLE, label, m) for m, board in BOARDS}}
            for row, label in (("baseline", "Baseline"), ("pruned", "Pruned"))]
    speed = {"model": "Speedup (x)", **{f"FPS {p} (ours)": round(speedup(fps, "pruned", p), 2) for p in fps.columns}}
    for metric, board in BOARDS:
        b, p = (tables.published_or_blank(FPS_TABLE, row, metric) for row in ("Baseline", "Pruned"))
        speed[f"published FPS {board}"] = round(p / b, 2) if b and p else ""
    rows.append(speed)
    if "ceiling" in fps.index:  # speed_ceiling(): one filter in every prunable conv
        rows.append({"model": "One filter per prunable conv: ceiling speedup (x)",
                     **{f"FPS {p} (ours)": round(speedup(fps, "ceiling", p), 2) for p in fps.columns},
                     **{f"published FPS {board}": "" for _, board in BOARDS}})
    return pd.DataFrame(rows, dtype=object)


KITTI_ROWS = (("monodepth VGG (LRC)", "baseline"), ("pruned, task + mask loss", "pruned"), ("PyD-Net", None))
KITTI_METRICS = (("abs_rel", "Abs Rel"), ("sq_rel", "Sq Rel"), ("rmse", "RMSE"), ("rmse_log", "RMSE log"),
                 ("d1_all", "D1-all"), ("a1", "d<1.25"))


def kitti_table(base: DepthResult | None, pruned: DepthResult | None, ran: bool) -> pd.DataFrame:
    """The paper's KITTI 2015 error table (published), with ours beside where KITTI was used
    (``ran``: the paper profile with KITTI in the data root); "not run" otherwise."""
    ours = {"baseline": base, "pruned": pruned} if ran else {}
    rows = []
    for row, key in KITTI_ROWS:
        r, blank = ours.get(key), "not run" if key else ""
        rows.append({"model": row,
                     **{f"our {label}": blank if r is None else round(r.scores["test"][metric], 4)
                        for metric, label in KITTI_METRICS},
                     "our params": blank if r is None else r.params,
                     **{f"published {label}": tables.published_or_blank(KITTI_TABLE, row, metric)
                        for metric, label in (*KITTI_METRICS, ("params", "params"))}})
    return pd.DataFrame(rows, dtype=object)


def widths_table(pruned: nn.Module, full_width: float) -> pd.DataFrame:
    """Per prunable conv: our width (at ``full_width``), filters kept, and the published pruned
    width of the full-size model; kept shares in % make the two comparable."""
    full = MonoDepth(width=full_width).widths
    published_full = MonoDepth(width=1.0).widths
    rows = []
    for layer, total, kept, pub_total in zip(prunable_convs(), full, pruned.widths, published_full):
        pub = tables.published_or_blank(WIDTHS_TABLE, layer, "pruned_width")
        rows.append({"layer": layer, "ours: filters": total, "ours: kept": kept,
                     "ours: kept %": round(100 * kept / total, 1), "published: filters": pub_total,
                     "published: kept": pub, "published: kept %": round(100 * pub / pub_total, 1) if pub else ""})
    return pd.DataFrame(rows, dtype=object)


def targets(base: DepthResult, pruned: DepthResult, fps: pd.DataFrame) -> pd.DataFrame:
    """The lesson's targets, measured: parameters removed, D1-all rise on the test set, and the
    batch-1 CPU speedup on every CPU platform measured, against ``TARGET_CEILING_SHARE`` of the
    one-filter ceiling's speedup there (the ``ceiling`` row of ``fps``)."""
    removed = 100 * (1 - pruned.params / base.params)
    rise = pruned.scores["test"]["d1_all"] - base.scores["test"]["d1_all"]
    rows = [("parameters removed (%)", round(removed, 1), f">= {TARGET_PARAMS_REMOVED:g}",
             removed >= TARGET_PARAMS_REMOVED),
            ("D1-all rise on the test set (points)", round(rise, 2), f"<= {TARGET_D1_RISE:g}", rise <= TARGET_D1_RISE)]
    for platform in fps.columns:
        if "cpu" in platform:
            ratio, ceiling = speedup(fps, "pruned", platform), speedup(fps, "ceiling", platform)
            rows.append((f"batch-1 speedup, {platform}", round(ratio, 2),
                         f">= {TARGET_CEILING_SHARE:g} x ceiling {ceiling:.2f} = {TARGET_CEILING_SHARE * ceiling:.2f}",
                         ratio >= TARGET_CEILING_SHARE * ceiling))
    return pd.DataFrame(rows, columns=["target", "measured", "wanted", "met"])


def example_disparities(models: dict[str, nn.Module], bundle: data.DataBundle, cfg, index: int = 0) -> dict:
    """Inputs, ground truth and each model's disparity (pixels) for one test scene and the
    motorcycle pair, for :func:`tutorial_lib.plots.disparities`."""
    left, _, gt = bundle.test[index][:3]
    m_left, _, m_gt, m_valid = stereo.motorcycle(cfg.depth_height, cfg.depth_width)
    scenes = {"test scene": (left[None], gt[None], None), "motorcycle": (m_left, m_gt, m_valid)}
    out = {}
    for scene, (img, truth, valid) in scenes.items():
        preds = {name: predict_disparity(model, img.to(cfg.device), tuple(truth.shape[-2:]))[0, 0].cpu()
                 for name, model in models.items()}
        gt_shown = truth[0, 0].clone()
        if valid is not None:
            gt_shown[~valid[0, 0]] = float("nan")
        out[scene] = {"input": img[0], "ground truth": gt_shown, **preds}
    return out


__all__ = ["load", "baseline", "image_blind", "image_dependence", "prune_monodepth", "pruned_model", "evaluate", "measure",
           "score_lines", "frames_per_second", "speed_ceiling", "with_iconvs", "scope_table", "time_by_part", "results_table", "fps_table",
           "kitti_table", "widths_table", "targets", "example_disparities", "METRICS", "DepthResult"]
