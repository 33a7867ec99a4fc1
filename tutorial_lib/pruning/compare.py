"""Lesson 02's experiment: joint pruning and the methods it is compared with, at one
parameter budget, measured the same way (accuracy, parameters, FLOPs, CPU latency).

Every packed model gets one pass over the training images that re-estimates its batch
norm statistics (``train.recalibrate_bn``: no gradient step, no weight change); after
channels are switched off, the running statistics downstream describe inputs that no
longer occur. All methods get it, so the comparison stays fair.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from tutorial_lib import cache, data, masks, seeds, tables, train
from tutorial_lib.cost import count
from tutorial_lib.measure import timer
from tutorial_lib.pruning import baselines, depgraph, joint
from tutorial_lib.pruning.pack import pack

PRUNED_RECIPES = ("baseline", "gates", "objective", "joint")  # what a cached joint-pruned model is made from
METHODS = ("joint", "joint_seed", "scratch", "scratch_kd", "slimming", "l1_norm", "l1_scratch",
           *depgraph.CRITERIA)
# The frontier's methods: joint pruning with and without our two additions, our L1-norm and
# Torch-Pruning's three criteria. Network Slimming and the from-scratch twins are ranked at
# the main lambda only: the frontier repeats each method once per lambda and seed.
FRONTIER_METHODS = ("joint", "joint_seed", "l1_norm", *depgraph.CRITERIA)

# label, layer-wise rate needed?, fine-tune needed?, published row (or None)
METHOD_INFO = {
    "baseline": ("Baseline (unpruned)", "-", "-", "VGG19-BN baseline"),
    "joint": ("Joint end-to-end pruning (ours)", "no", "no", "Joint end-to-end pruning"),
    # the ablation of our two additions: the full mask term from the first step and the gates
    # free to the last epoch, as in the seed
    "joint_seed": ("Joint pruning, the seed's schedule (no warm-up, gates never fixed)", "no", "no", None),
    "scratch": ("Same pruned architecture, from scratch", "-", "-", "Same pruned architecture from scratch"),
    "scratch_kd": ("Same pruned architecture, scratch + KD", "-", "-",
                   "Same pruned architecture from scratch + KD"),
    "slimming": ("Network Slimming (BN-gamma L1)", "yes (global threshold)", "yes", "Network Slimming (ICCV17)"),
    "l1_norm": ("L1-norm filter pruning", "yes (per-layer rate)", "yes", None),
    # the control for "joint pruning finds a good architecture": L1-norm's uniform-rate
    # signature at the same budget, trained from scratch like the joint signature's twin
    "l1_scratch": ("L1-norm's signature, from scratch", "-", "-", None),
    # Torch-Pruning (DepGraph), the maintained library, one-shot then fine-tuned like L1-norm
    "tp_l1_local": ("Torch-Pruning, L1, per layer", "yes (one rate, every layer)", "yes", None),
    "tp_l1_global": ("Torch-Pruning, L1, global", "yes (global ratio)", "yes", None),
    "tp_bn_global": ("Torch-Pruning, BN scale, global", "yes (global ratio)", "yes", None),
}


@dataclass
class Result:
    """One method's pruned model and what it measured."""

    method: str
    model: nn.Module
    accuracy: float
    params: int
    flops: int
    history: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)


def evaluate_packed(model: nn.Module, bundle: data.DataBundle, cfg, recalibrate: bool = True) -> tuple[float, int, int]:
    """(accuracy %, parameters, FLOPs per image) of a plain model, after BN recalibration."""
    train_loader, test_loader = data.loaders(bundle, cfg.batch_size, cfg.run)
    if recalibrate:
        train.recalibrate_bn(model, train_loader, cfg.device)
    shape = (1, bundle.in_channels, bundle.image_size, bundle.image_size)
    return (train.evaluate(model, test_loader, cfg.device)["accuracy"], count(model, "params"),
            count(model, "flops", shape))


def run_joint(baseline: nn.Module, bundle: data.DataBundle, cfg, lam: float | None = None) -> Result:
    """Joint pruning of a copy of ``baseline`` (the frozen original is the KD teacher), then pack."""
    if lam is not None and lam != cfg.prune_lambda:
        cfg = cfg.replace(prune_lambda=lam)
    masked = masks.insert_masks(copy.deepcopy(baseline), seed=cfg.seed)
    trace = joint.GateTrace()
    history = joint.prune(masked, baseline, bundle, cfg, trace=trace)
    packed = pack(masked)
    estimate = masks.estimate(masked, (1, 3, bundle.image_size, bundle.image_size), flops=False)
    x = next(iter(data.loaders(bundle, cfg.batch_size, cfg.run)[1]))[0][:16].to(cfg.device)
    with torch.no_grad():  # the packed model computes what the masked one did (eval mode)
        gap = (masked.eval()(x) - packed.eval()(x)).abs().max().item()
    with torch.random.fork_rng(devices=[]):  # two more test passes, the run's random stream untouched
        _, test_loader = data.loaders(bundle, cfg.batch_size, cfg.run)
        before_bn = {"masked": train.evaluate(masked, test_loader, cfg.device)["accuracy"],
                     "packed": evaluate_packed(packed, bundle, cfg, recalibrate=False)[0]}
    acc, params, flops = evaluate_packed(packed, bundle, cfg)
    cache.store("joint-pruned", cfg, PRUNED_RECIPES, (__name__,), packed)
    return Result("joint", packed, acc, params, flops, history,
                  {"masked": masked, "pack_max_abs_diff": gap, "estimated_params": estimate["params_kept"],
                   "before_bn": before_bn, "kept_per_layer": trace.per_layer})


def joint_pruned(baseline: nn.Module, bundle: data.DataBundle, cfg) -> nn.Module:
    """The packed joint-pruned model of this profile: from the cache lesson 02 fills, or made now."""
    return cache.get_or_make("joint-pruned", cfg, PRUNED_RECIPES, (__name__,),
                             lambda: run_joint(baseline, bundle, cfg).model)


def run_methods(baseline: nn.Module, bundle: data.DataBundle, cfg, lam: float | None = None,
                methods: tuple[str, ...] = METHODS) -> dict[str, Result]:
    """Joint pruning first (it sets the budget), then every other method at its parameter count
    (``joint_seed``, joint pruning without our warm-up and settling epochs, keeps what its gates chose)."""
    if unknown := set(methods) - set(METHODS):
        raise ValueError(f"unknown method(s) {sorted(unknown)}; valid choices: {', '.join(METHODS)}")
    results = {"joint": run_joint(baseline, bundle, cfg, lam)}
    budget = results["joint"].params
    spec = results["joint"].model.spec()
    for method in (m for m in methods if m != "joint"):
        if method == "joint_seed":
            seed_schedule = cfg.replace(prune_settle_epochs=0, prune_warmup_epochs=0)
            results[method] = dataclasses.replace(run_joint(baseline, bundle, seed_schedule, lam), method=method)
            continue
        if method in ("scratch", "scratch_kd"):
            model, history = baselines.scratch(spec, bundle, cfg, teacher=baseline if method == "scratch_kd" else None)
        elif method == "slimming":
            model, history = baselines.slimming(baseline, bundle, cfg, budget)
        elif method == "l1_norm":
            model, history = baselines.l1_norm(baseline, bundle, cfg, budget)
        elif method in depgraph.CRITERIA:
            model, history = baselines.torch_pruning(baseline, bundle, cfg, budget, method)
        else:  # l1_scratch: the same L1-norm selection, its signature trained anew
            model, history = baselines.scratch(baselines.l1_pruned(baseline, cfg, budget).spec(), bundle, cfg)
        results[method] = Result(method, model, *evaluate_packed(model, bundle, cfg), history)
    return results


def latencies(models: dict[str, nn.Module], image_size: int, batches: tuple[int, ...] = (1, 64),
              threads: int = 2, min_run_time: float = 0.3) -> pd.DataFrame:
    """Median CPU latency (ms) of each model at each batch size: rows = model, columns = batch."""
    rows = {name: {b: timer.measure_latency(model, (b, 3, image_size, image_size), threads=threads,
                                            min_run_time=min_run_time).median_ms for b in batches}
            for name, model in models.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["platform"] = timer.platform_name("cpu", threads)
    return table


def run_seeds(baseline: nn.Module, bundle: data.DataBundle, cfg, lam: float | None = None,
              methods: tuple[str, ...] = METHODS) -> dict[int, dict[str, Result]]:
    """:func:`run_methods` once per seed of ``cfg.seeds`` (mask initialisation, batch order and
    the from-scratch weights change; the baseline is the same): ``{seed: {method: Result}}``."""
    return seeds.over_seeds(lambda c: run_methods(baseline, bundle, c, lam, methods), cfg)


def seed_table(base: Result, runs: dict[int, dict[str, Result]]) -> pd.DataFrame:
    """One row per method and seed: top-1, parameters, FLOPs (the long form of the comparison)."""
    rows = [("baseline", s, base) for s in runs] + [(m, s, r) for s, res in runs.items() for m, r in res.items()]
    return pd.DataFrame([{"method": METHOD_INFO[m][0], "seed": s, "top-1 %": round(r.accuracy, 2), "params": r.params,
                          "MFLOPs": round(r.flops / 1e6, 2)} for m, s, r in rows])


def ranking(base: Result, runs: dict[int, dict[str, Result]], test_images: int) -> pd.DataFrame:
    """Every method against joint pruning over the seeds: mean ± sd, test-set standard error,
    the gap and whether it exceeds two standard errors of the gap (else a tie)."""
    summary = seeds.summarize(seed_table(base, runs), ["method"], ["top-1 %", "params"], test_images)
    return seeds.versus(summary, "top-1 %", {"method": METHOD_INFO["joint"][0]})


def vgg_table(base: Result, runs: dict[int, dict[str, Result]], latency: pd.DataFrame, dataset: str,
              test_images: int) -> pd.DataFrame:
    """The seed's VGG19-BN table: our measurements (top-1 and parameters: mean over the seeds,
    with their sd; latency: the first seed's models), then the published figures."""
    t = "vgg19_cifar100"
    first = next(iter(runs.values()))

    def published(row: str) -> dict:
        return {"published top-1 % (CIFAR-100)": tables.published_or_blank(t, row, "top1"),
                "published params": tables.published_or_blank(t, row, "params"),
                "published source": tables.published_source(t, row, "top1") if row else ""}

    rows = []
    for name in ["baseline", *first]:
        label, rate, finetune, published_row = METHOD_INFO[name]
        per_seed = [base] * len(runs) if name == "baseline" else [results[name] for results in runs.values()]
        acc, params, flops = (pd.Series([getattr(r, k) for r in per_seed]) for k in ("accuracy", "params", "flops"))
        b1, b64 = latency.loc[name, 1], latency.loc[name, 64]
        rows.append({
            "method": label, "layer-wise rate?": rate, "fine-tune?": finetune,
            f"top-1 % ({dataset})": round(acc.mean(), 1),
            "top-1 sd (seeds)": round(acc.std(), 2) if len(acc) > 1 else "",
            "test-set SE": round(float(seeds.standard_error(acc.mean(), test_images)), 2),
            "change (points)": round(acc.mean() - base.accuracy, 1),
            "params": int(round(params.mean())), "params change %": round(100 * (params.mean() / base.params - 1), 1),
            "MFLOPs": round(flops.mean() / 1e6, 1),
            "ms @1": round(b1, 2), "speedup @1": round(latency.loc["baseline", 1] / b1, 2),
            "ms @64": round(b64, 1), "speedup @64": round(latency.loc["baseline", 64] / b64, 2),
            "ideal speedup (FLOPs)": round(base.flops / flops.mean(), 2), **published(published_row),
        })
    shown = {METHOD_INFO[name][3] for name in ["baseline", *first]}
    for row in tables.published(t)["row"].drop_duplicates():  # published rows no method here ran
        if row not in shown:
            rows.append({**dict.fromkeys(rows[0], ""), "method": f"{row} (published only, not run here)",
                         **published(row)})
    return pd.DataFrame(rows)


def bn_table(runs: dict[int, dict[str, Result]]) -> pd.DataFrame:
    """What the BN-statistics pass after packing is worth, per seed and on average: joint
    pruning's top-1 masked (the running statistics training left), packed with those same
    statistics, and packed after one pass that re-estimates them (no weight changes)."""
    rows = [{"seed": s, "top-1 % masked": round(r["joint"].extra["before_bn"]["masked"], 2),
             "top-1 % packed, training BN statistics": round(r["joint"].extra["before_bn"]["packed"], 2),
             "top-1 % packed, BN re-estimated": round(r["joint"].accuracy, 2)} for s, r in runs.items()]
    df = pd.DataFrame(rows)
    df["points from re-estimation"] = (df["top-1 % packed, BN re-estimated"]
                                       - df["top-1 % packed, training BN statistics"]).round(2)
    mean = df.drop(columns="seed").mean().round(2)
    return pd.concat([df.astype({"seed": str}), pd.DataFrame([{"seed": "mean", **mean}])], ignore_index=True)


def settling_table(runs: dict[int, dict[str, Result]]) -> pd.DataFrame:
    """Per epoch of joint pruning, ours and on the seed's schedule (means over the seeds):
    how many gates changed state, the share of channels kept, and the test top-1 of the masked
    network as training leaves it (BN statistics not re-estimated)."""
    parts = []
    for method, label in (("joint", "ours"), ("joint_seed", "seed's schedule")):
        histories = [r[method].history for r in runs.values() if method in r]
        if histories:
            mean = pd.concat(histories).groupby("epoch")[["gate_flips", "kept_channels_pct", "test_accuracy"]].mean()
            parts.append(mean.round(1).rename(columns={"gate_flips": f"gate flips ({label})",
                                                       "kept_channels_pct": f"kept % ({label})",
                                                       "test_accuracy": f"test top-1 %, masked ({label})"}))
    return pd.concat(parts, axis=1).reset_index()


def imagenet_table(results: dict[str, Result] | None, base: Result | None, ran: bool) -> pd.DataFrame:
    """The seed's VGG11 / ImageNet table: published figures, and ours where the paper profile ran."""
    t = "vgg11_imagenet"
    results = results or {}
    ours = {"vgg11": base, "vgg11 pruned (ours)": results.get("joint"), "Slimming, ICCV17": results.get("slimming")}
    rows = []
    for row in ("vgg11", "vgg11 pruned (ours)", "Slimming, ICCV17", "Taylor, CVPR19"):
        r = ours.get(row) if ran else None
        rows.append({"model": row, "our top-1 %": "not run" if r is None else round(r.accuracy, 2),
                     "our params": "not run" if r is None else r.params,
                     "published top-1 %": tables.published_value(t, row, "top1"),
                     "published params": tables.published_value(t, row, "params"),
                     "published source": tables.published_source(t, row, "top1")})
    return pd.DataFrame(rows)


def channels_per_layer(baseline: nn.Module, pruned: nn.Module) -> pd.DataFrame:
    """Conv widths of the baseline and of the pruned model, layer by layer."""
    convs = lambda m: [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    return pd.DataFrame({"layer": [f"conv{i + 1}" for i in range(len(convs(baseline)))],
                         "baseline": convs(baseline), "pruned": convs(pruned)})


def frontier_runs(baseline: nn.Module, bundle: data.DataBundle, cfg, main: dict[int, dict[str, Result]],
                  methods: tuple[str, ...] = ()) -> dict[float, dict[int, dict[str, Result]]]:
    """``{lambda: {seed: {method: Result}}}``: the ranked comparison's runs at the main lambda
    (``main``), and :func:`run_seeds` at every lambda of ``cfg.frontier_lambdas``."""
    methods = methods or FRONTIER_METHODS
    runs = {cfg.prune_lambda: {s: {m: r[m] for m in methods if m in r} for s, r in main.items()}}
    for lam in cfg.frontier_lambdas:
        runs[lam] = run_seeds(baseline, bundle, cfg, lam, methods)
    return runs


def equal_flops_runs(baseline: nn.Module, bundle: data.DataBundle, cfg,
                     runs: dict[float, dict[int, dict[str, Result]]],
                     methods: tuple[str, ...] = tuple(depgraph.CRITERIA)) -> dict[float, dict[int, dict[str, Result]]]:
    """Torch-Pruning's ``methods`` matched to each joint-pruned model's FLOPs instead of its
    parameters (the comparison that is about speed), per lambda and seed; joint pruning's own
    run is reused."""
    out: dict[float, dict[int, dict[str, Result]]] = {lam: {} for lam in runs}
    for lam, per_seed in runs.items():
        for s, results in per_seed.items():
            c = cfg.replace(seed=s)
            out[lam][s] = {"joint": results["joint"]}
            for method in methods:
                model, history = baselines.torch_pruning(baseline, bundle, c, results["joint"].flops, method,
                                                         cost="flops")
                out[lam][s][method] = Result(method, model, *evaluate_packed(model, bundle, c), history)
    return out


def frontier_latency(baseline: nn.Module, runs: dict[float, dict[int, dict[str, Result]]], image_size: int,
                     threads: int = 2, min_run_time: float = 0.2) -> dict[tuple[float, int, str], float]:
    """Batch-1 latency of every frontier model as a ratio to the baseline's, all timed in one
    :func:`latencies` run (so the ratios share the machine's state): ``{(lambda, seed, method): ratio}``."""
    models = {"baseline": baseline, **{f"{lam}|{s}|{m}": r.model for lam, per_seed in runs.items()
                                       for s, results in per_seed.items() for m, r in results.items()}}
    ms = latencies(models, image_size, batches=(1,), threads=threads, min_run_time=min_run_time)[1]
    return {(float(lam), int(s), m): ms[key] / ms["baseline"] for key in ms.index if key != "baseline"
            for lam, s, m in [key.split("|")]}


def frontier_table(base: Result, runs: dict[float, dict[int, dict[str, Result]]],
                   latency: dict[tuple[float, int, str], float] | None = None) -> pd.DataFrame:
    """One row per lambda, seed and method: parameters, kept share, MFLOPs, top-1, and with
    ``latency`` the batch-1 latency as a ratio to the baseline's."""
    rows = [{"lambda": lam, "seed": s, "method": METHOD_INFO[m][0], "params": r.params,
             "kept params %": round(100 * r.params / base.params, 1),
             "kept FLOPs %": round(100 * r.flops / base.flops, 1), "top-1 %": round(r.accuracy, 1),
             **({} if latency is None else {"latency @1 / baseline": round(latency[(float(lam), int(s), m)], 3)})}
            for lam, per_seed in runs.items() for s, results in per_seed.items() for m, r in results.items()]
    return pd.DataFrame(rows).sort_values(["lambda", "method", "seed"], kind="stable").reset_index(drop=True)


def frontier_ranking(table: pd.DataFrame, test_images: int) -> pd.DataFrame:
    """Per lambda, every method against joint pruning over the seeds (mean ± sd of top-1 and of
    the cost columns present, the gap and its verdict, as :func:`ranking`)."""
    costs = [c for c in ("params", "kept params %", "kept FLOPs %", "latency @1 / baseline") if c in table]
    parts = []
    for lam, part in table.groupby("lambda", sort=True):
        summary = seeds.summarize(part, ["method"], ["top-1 %", *costs], test_images)
        judged = seeds.versus(summary, "top-1 %", {"method": METHOD_INFO["joint"][0]})
        judged.insert(0, "lambda", lam)
        parts.append(judged)
    return pd.concat(parts, ignore_index=True)


# Network Slimming's two knobs, swept as joint pruning's lambda was (three values each): the
# sparsity weight from the published 1e-4 up (a first sweep from 1e-5 to 1e-3 did best at the
# strongest weight and the longest sparse phase), and how the pruning epochs split between
# sparse training and fine-tuning.
SLIMMING_GRID = {"slimming_s": (1e-4, 1e-3, 1e-2), "slimming_sparse_share": (1 / 3, 1 / 2, 2 / 3)}


def slimming_sweep(baseline: nn.Module, bundle: data.DataBundle, cfg, budget: int,
                   grid: dict[str, tuple[float, ...]] = SLIMMING_GRID) -> pd.DataFrame:
    """Network Slimming at ``budget`` parameters for every pair of ``grid`` values (one seed):
    s, sparse and fine-tune epochs, top-1 and parameters; ``profile's`` marks the setting the
    main table runs, ``best`` the highest top-1 (a tie breaks toward the profile's)."""
    rows = []
    for s in grid["slimming_s"]:
        for share in grid["slimming_sparse_share"]:
            c = cfg.replace(slimming_s=s, slimming_sparse_share=share)
            model, _ = baselines.slimming(baseline, bundle, c, budget)
            acc, params, _ = evaluate_packed(model, bundle, c)
            sparse = baselines.sparse_epochs_of(c)
            rows.append({"s": s, "sparse epochs": sparse, "fine-tune epochs": c.prune_epochs - sparse,
                         "params": params, "top-1 %": round(acc, 1),
                         "profile's": "yes" if (s, share) == (cfg.slimming_s, cfg.slimming_sparse_share) else ""})
    table = pd.DataFrame(rows, dtype=object)
    best = max(range(len(rows)), key=lambda i: (rows[i]["top-1 %"], rows[i]["profile's"] == "yes"))
    table["best"] = ["yes" if i == best else "" for i in range(len(rows))]
    return table


def imagenet_cfg(cfg, data_root: str | None = None):
    """The VGG11 / ImageNet run of the seed's second table: torchvision's vgg11 layout (no BN)
    trained with the torchvision reference recipe (SGD lr 0.01, 90 epochs, lr x0.1 every 30)."""
    return cfg.replace(dataset="imagenet", arch="vgg11", width=1.0, lr=0.01, epochs=90, milestones=(30, 60),
                       batch_size=256, augment=True, data_root=data_root or cfg.data_root)


def accuracy_noise(accuracy: float, n: int) -> dict[str, float]:
    """How much a test accuracy can move by chance: one image in points, and the binomial
    standard error ``sqrt(p (1 - p) / n)`` in points."""
    return {"one image (points)": 100 / n, "standard error (points)": float(seeds.standard_error(accuracy, n))}


def imagenet_experiment(cfg, imagenet_root: str | None) -> tuple[dict[str, Result] | None, Result | None]:
    """At the paper profile with an ImageNet root: train (or load) the VGG11 baseline and run
    joint pruning and Network Slimming on it. Elsewhere: ``(None, None)``, and the table says
    it was not run."""
    if cfg.profile != "paper" or not imagenet_root:
        return None, None
    icfg = imagenet_cfg(cfg, imagenet_root)
    bundle = data.load(icfg)
    base_model, _ = cache.baseline(icfg, bundle)
    base = Result("baseline", base_model, *evaluate_packed(base_model, bundle, icfg, recalibrate=False))
    return run_methods(base_model, bundle, icfg, methods=("joint", "slimming")), base


def targets(base: Result, runs: dict[int, dict[str, Result]], test_images: int) -> pd.DataFrame:
    """The lesson's targets, measured as means over the seeds: >= 75% of parameters removed,
    <= 1 point lost, and joint pruning above the same signature trained from scratch (beyond
    two standard errors of the gap: a tie does not meet it)."""
    joint = [results["joint"] for results in runs.values()]
    removed = 100 * (1 - sum(r.params for r in joint) / len(joint) / base.params)
    drop = base.accuracy - sum(r.accuracy for r in joint) / len(joint)
    rows = [("parameters removed by joint pruning (%)", round(removed, 1), ">= 75", removed >= 75),
            ("top-1 lost against the baseline (points)", round(drop, 1), "<= 1", drop <= 1)]
    if all("scratch" in results for results in runs.values()):
        judged = ranking(base, runs, test_images).set_index("method").loc[METHOD_INFO["scratch"][0]]
        gap = -judged[f"gap to {METHOD_INFO['joint'][0]}"]
        rows.append(("joint minus same signature from scratch (points)", round(gap, 1),
                     f"> 0, beyond 2 SE ({judged['2 SE of gap']:.2f})", judged["verdict"] == "below"))
    return pd.DataFrame(rows, columns=["target", "measured", "wanted", "met"])
