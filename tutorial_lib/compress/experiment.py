"""Lesson 07's experiment: every technique alone and chained, from shipped recipes, over seeds;
their latencies in one run; the Pareto front; the final model exported and reloaded."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn

from tutorial_lib import data, distributed, masks, paths, seeds
from tutorial_lib.compress import export, pipeline, recipe
from tutorial_lib.measure import platforms
from tutorial_lib.quant import experiment as lesson06
from tutorial_lib.pruning import joint
from tutorial_lib.quant import int8, qat

# The comparison's recipes (tutorial_lib/compress/recipes/<name>.yaml), in the table's order.
COMPARISON = ("baseline", "prune", "distill", "quantize", "prune-distill", "prune-quantize",
              "prune-distill-quantize", "quantize-prune")
FINAL = "prune-distill-quantize"  # the model the lesson exports


def store_dir(profile: str) -> Path:
    """Where the comparison's stages are kept (shared by the lesson and the command line)."""
    return paths.results_dir(profile) / "cache" / "compress"


def comparison_runs(base: nn.Module, bundle: data.DataBundle, cfg, names: tuple[str, ...] = COMPARISON,
                    progress: Callable[[str], None] = print) -> tuple[pd.DataFrame, dict[str, pipeline.Stepped]]:
    """Every recipe of ``names`` from the cached baseline, once per seed: one row per (recipe,
    seed) with what :func:`pipeline.measure` reports; and the first seed's results by name."""
    rows, first = [], {}
    for seed in seeds.seed_list(cfg):
        seeded = cfg.replace(seed=seed)
        for name in names:
            r = pipeline.run(recipe.shipped(name), base, bundle, seeded, store_dir(cfg.profile), progress,
                             from_baseline=True)
            rows.append({"pipeline": recipe.shipped(name).name, "seed": seed, **pipeline.measure(r, bundle, seeded)})
            if seed == cfg.seed:
                first[name] = r
    return pd.DataFrame(rows), first


def latency_ratios(results: dict[str, pipeline.Stepped], shape: tuple[int, ...], reference: str = "baseline",
                   batches: tuple[int, ...] = int8.BATCHES) -> pd.DataFrame:
    """Every result's deployed model compiled by inductor (float32 and int8 alike: the same
    compiler for all), timed in turn at each batch size on all cores; one row per recipe with
    the median ms and the ratio to ``reference``'s latency in the same run."""
    fast = {name: int8.compiled(pipeline.deployable(r), shape, batches) for name, r in results.items()}
    lat = lesson06.latencies(fast, shape, batches, threads=(platforms.all_threads(),)).set_index("model")
    out = pd.DataFrame(index=lat.index)
    for col in lat.columns:
        b = col.split(",")[0].replace("batch ", "")
        out[f"batch {b} (ms)"] = lat[col]
        out[f"batch {b} latency / baseline"] = (lat[col] / lat.loc[reference, col]).round(2)
    return out.rename_axis("recipe").reset_index()


def on_front(table: pd.DataFrame, cost: str, value: str = "top-1 % mean") -> list[bool]:
    """Whether each row is on the Pareto front of ``value`` (higher is better) against ``cost``
    (lower is better): no other row is at least as good on both and better on one."""
    points = list(zip(table[cost], table[value]))
    return [not any(c2 <= c and v2 >= v and (c2, v2) != (c, v) for c2, v2 in points) for c, v in points]


def comparison_table(long: pd.DataFrame, test_images: int, latency: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per recipe: the stages, top-1 mean ± sd over seeds with its gap to the baseline and the
    verdict (beyond two standard errors of the gap), parameters, bytes on disk and how many times
    fewer than the baseline's, FLOPs and bit-operations (means over seeds: pruned architectures
    differ by seed), the latency ratios of the first seed's models, and the Pareto fronts."""
    summary = seeds.summarize(long, ["pipeline"], ["top-1 %", "params", "bytes", "MFLOPs", "GBOPs"], test_images)
    judged = seeds.versus(summary, "top-1 %", {"pipeline": "baseline"})
    base_bytes = float(judged.loc[judged["pipeline"] == "baseline", "bytes mean"].iloc[0])
    first = long.drop_duplicates("pipeline").set_index("pipeline")
    out = pd.DataFrame({
        "recipe": judged["pipeline"], "seeds": judged["seeds"],
        "top-1 % mean": judged["top-1 % mean"], "top-1 % sd": judged["top-1 % sd"],
        "gap to baseline": judged["gap to baseline"], "2 SE of gap": judged["2 SE of gap"], "verdict": judged["verdict"],
        "params": judged["params mean"].round().astype(int), "bytes": judged["bytes mean"].round().astype(int),
        "x fewer bytes": (base_bytes / judged["bytes mean"]).round(2),
        "MFLOPs": judged["MFLOPs mean"].round(3), "GBOPs": judged["GBOPs mean"].round(3),
        "weight bits": [first.loc[p, "weight bits"] for p in judged["pipeline"]],
        "int8 kernels": [first.loc[p, "int8 kernels"] for p in judged["pipeline"]]})
    out["front: bytes"] = on_front(out, "bytes")
    if latency is not None:
        lat = latency.assign(recipe=latency["recipe"].map(lambda n: recipe.shipped(n).name)).set_index("recipe")
        for col in [c for c in lat.columns if "/ baseline" in c]:
            out[col] = [lat.loc[r, col] if r in lat.index else float("nan") for r in out["recipe"]]
        out["front: batch-64 latency"] = on_front(out, "batch 64 latency / baseline")
    return out


def stage_log(result: pipeline.Stepped) -> pd.DataFrame:
    """What each stage of one run did: its settings, the top-1 after it, and its seconds."""
    return pd.DataFrame([{k: v for k, v in e.items() if k != "folder"} for e in result.log])


def _classes(model: nn.Module, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Predicted classes in batches of exactly ``batch`` (the last padded), as ``predict.py`` runs."""
    with torch.no_grad():
        return torch.cat([int8.fixed_batch(model, images[start:start + batch], batch).argmax(1)
                          for start in range(0, len(images), batch)])


def export_and_reload(result: pipeline.Stepped, bundle: data.DataBundle, cfg, folder: Path,
                      in_process_ms: float | None = None) -> pd.DataFrame:
    """Save the deployed model with ``torch.export``, reload it in a fresh Python process that has
    only torch and torchao (:mod:`tutorial_lib.compress.predict`), and compare it with the same
    model compiled the same way here: the predicted class of every test image, top-1, the
    latency of a batch of 64, and the file's size. Under torchrun, rank 0 does it and every
    process gets its table."""
    return distributed.on_main(lambda: _export_and_reload(result, bundle, folder, in_process_ms))


def _export_and_reload(result: pipeline.Stepped, bundle: data.DataBundle, folder: Path,
                       in_process_ms: float | None) -> pd.DataFrame:
    deployed = pipeline.deployable(result)
    images = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    labels = torch.tensor([int(bundle.test[i][1]) for i in range(len(bundle.test))])
    path = export.save(deployed, Path(folder) / "model.pt2", images[:2])
    here = _classes(int8.compiled(deployed, tuple(images.shape[1:]), (64,)), images)
    report = export.reload_elsewhere(path, images, folder, threads=platforms.all_threads())
    there = torch.tensor(report["predictions"])
    row = {"file": path.name, "file bytes": report["file bytes"],
           "tutorial_lib imported there": "yes" if report["tutorial_lib imported"] else "no",
           "agreement with this process %": round(export.agreement(here, there), 2),
           "top-1 % here": round(100.0 * float((here == labels).float().mean()), 2),
           "top-1 % reloaded": round(100.0 * float((there == labels).float().mean()), 2),
           "batch 64 ms reloaded": round(report["ms per batch"], 3)}
    if in_process_ms is not None:
        row["batch 64 ms here"] = in_process_ms
    return pd.DataFrame([row])


def gate_probe(base: nn.Module, bundle: data.DataBundle, cfg) -> pd.DataFrame:
    """Why quantize -> prune fails: one epoch of joint training with no mask term (lambda 0) from
    the baseline as float32, with 8-bit weights, and with 8-bit weights and activations (lesson
    06's quantizers, their steps set on one batch), then the last again with its gates held
    open. Without a mask term only the task gradient moves the gates: the share it leaves open
    and the top-1 after the epoch say whether pruning can work on that model."""
    x = data.first_batch(bundle, cfg.batch_size, cfg.run)
    rows = []
    for label, w_bits, a_bits, frozen in (("float32", None, None, False), ("8-bit weights", 8, None, False),
                                          ("8-bit weights and activations", 8, 8, False),
                                          ("8-bit weights and activations, gates held open", 8, 8, True)):
        model = copy.deepcopy(base) if w_bits is None else qat.quantized_copy(base, w_bits, a_bits)
        with torch.no_grad():
            model.eval()(x)
        masked = masks.insert_masks(model, seed=cfg.seed)
        for gate in masks.mask_parameters(masked):
            gate.requires_grad_(not frozen)
        history = joint.train_joint(masked, bundle, cfg, epochs=1, lam=0.0, weight_lr=cfg.prune_lr,
                                    mask_loss=cfg.mask_loss, task_weight=cfg.task_weight, desc="gate probe")
        rows.append({"model": label, "gates open after one epoch %": round(history["kept_channels_pct"].iloc[-1], 1),
                     "top-1 % after one epoch": round(history["test_accuracy"].iloc[-1], 2)})
    return pd.DataFrame(rows)
