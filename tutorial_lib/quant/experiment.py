"""Lesson 06's experiment: accuracy against bits, real int8 on the CPU, bits per layer under one
budget, and the pruned model quantized; each a function that returns its tables."""

from __future__ import annotations

import time

import pandas as pd
import torch
from torch import nn

from tutorial_lib import data, seeds, tables
from tutorial_lib.measure import platforms
from tutorial_lib.quant import allocate, int8, packing, qat
from tutorial_lib.quant.quantizers import FULL, average_bits

MODES = {"weights": False, "weights + activations": True}
PUBLISHED = "quant_published"
# Our sweep's points that a paper reports in a comparable setting: (mode, bits) -> published row.
COMPARABLE = {
    ("weights", 1): "BWN (BinaryConnect's VGG-like net, CIFAR-10)",
    ("weights + activations", 1): "XNOR-Net (BinaryConnect's VGG-like net, CIFAR-10)",
    ("weights + activations", 2): "LSQ W2/A2 (ResNet-18, ImageNet)",
}
BINARYCONNECT = "BinaryConnect det. (VGG-like net, CIFAR-10)"
METHODS = ("uniform", "random", "HAWQ (Hessian sensitivity)", "DNAS (Wu et al.)", "ReLeQ-style agent")


def _run_at(base: nn.Module, bundle: data.DataBundle, cfg, seed: int, w_bits, a_bits) -> tuple[nn.Module, float]:
    q = cfg.quant
    return qat.train_at(base, bundle, cfg.run.replace(seed=seed), w_bits, a_bits, q.quant_steps, q.quant_lr,
                        q.quant_keep_first_last, q.quant_binary)


def bits_sweep(base: nn.Module, bundle: data.DataBundle, cfg) -> tuple[pd.DataFrame, dict]:
    """QAT at every bit-width of ``cfg.quant_bits`` (and at 32: the same fine-tune, unquantized),
    weights alone and weights + activations, once per seed: one row per run, with the model's
    bit-packed bytes; and the first seed's models by (mode, bits)."""
    rows, models = [], {}
    for seed in seeds.seed_list(cfg):
        points = [("weights", FULL)] + [(mode, b) for mode in MODES for b in sorted(cfg.quant_bits, reverse=True)]
        for mode, b in points:
            model, acc = _run_at(base, bundle, cfg, seed, b, b if MODES[mode] else None)
            label = "full precision" if b == FULL else mode
            rows.append({"mode": label, "bits": b, "point": f"{label}, {b} bits", "seed": seed,
                         "top-1 %": round(acc, 2), "bytes": packing.model_bytes(model)})
            models.setdefault((rows[-1]["mode"], b), model)
    return pd.DataFrame(rows), models


def sweep_table(long: pd.DataFrame, baseline_bytes: int, baseline_accuracy: float, test_images: int,
                binary: str = "xnor") -> pd.DataFrame:
    """Mean and sd of top-1 over the seeds per (mode, bits), the bytes and how many times fewer
    than the float32 baseline, the gap to the full-precision fine-tune, and the published figure
    of a comparable setting (1-bit weights: the paper of the ``binary`` scheme) with that setting named."""
    comparable = {**COMPARABLE, **({("weights", 1): BINARYCONNECT} if binary == "binaryconnect" else {})}
    summary = seeds.summarize(long, ["mode", "bits"], ["top-1 %", "bytes"], test_images)
    ref = summary[summary["mode"] == "full precision"]["top-1 % mean"].iloc[0]
    published = tables.published(PUBLISHED)
    out = []
    for _, r in summary.iterrows():
        hit = published[(published.row == comparable.get((r["mode"], int(r["bits"])))) & (published.metric == "top1")]
        out.append({"mode": r["mode"], "bits": int(r["bits"]), "seeds": int(r["seeds"]),
                    "top-1 % mean": r["top-1 % mean"], "top-1 % sd": r["top-1 % sd"],
                    "top-1 % test-set SE": r["top-1 % test-set SE"],
                    "gap to full precision": round(r["top-1 % mean"] - ref, 2),
                    "bytes": int(r["bytes mean"]), "x fewer bytes": round(baseline_bytes / r["bytes mean"], 2),
                    "published top-1 %": float(hit.value.iloc[0]) if len(hit) else "",
                    "published setting": hit.row.iloc[0] if len(hit) else ""})
    df = pd.DataFrame(out)
    df.attrs["baseline top-1 %"] = baseline_accuracy
    return df


# -- real int8 ---------------------------------------------------------------------------------

def qat8(base: nn.Module, bundle: data.DataBundle, cfg, sweep_models: dict | None = None) -> nn.Module:
    """The 8-bit (weights and activations) QAT model of the first seed: the bit sweep's where it
    has one, else trained now the same way."""
    found = (sweep_models or {}).get(("weights + activations", 8))
    return found if found is not None else _run_at(base, bundle, cfg, cfg.seed, 8, 8)[0]


def int8_models(base: nn.Module, bundle: data.DataBundle, cfg, prefix: str = "",
                trained: nn.Module | None = None) -> tuple[dict, dict, dict]:
    """Float32 and int8 versions of ``base``, each compiled by inductor: int8 after post-training
    quantization, and from ``trained`` (a fake-quantized QAT model, 8-bit weights and
    activations: :func:`qat8`) where given; returns (compiled models, top-1 % of each on the
    test set, bytes on disk of each)."""
    q, shape = cfg.quant, (bundle.in_channels, bundle.image_size, bundle.image_size)
    built = {f"{prefix}fp32": base, f"{prefix}int8 post-training": int8.ptq(base, bundle, cfg.run,
                                                                       q.calibration_batches)}
    if trained is not None:
        built[f"{prefix}int8 from QAT"] = int8.ptq(qat.baked(trained), bundle, cfg.run, q.calibration_batches)
    fast = {name: int8.compiled(m, shape) for name, m in built.items()}
    accuracy = {name: int8.evaluate_fixed(m, bundle.test) for name, m in fast.items()}
    size = {name: packing.model_bytes(m) if "fp32" in name else int8.int8_bytes(m) for name, m in built.items()}
    return fast, accuracy, size


def latencies(models: dict[str, nn.Module], shape: tuple[int, ...], batches=int8.BATCHES,
              threads: tuple[int, ...] | None = None, rounds: int = 2) -> pd.DataFrame:
    """Median latency (ms) of every model at every batch size and thread count, the models of
    one (batch, threads) timed in turn (``platforms.measure_in_turn``); one row per model."""
    threads = threads or tuple(sorted({1, platforms.all_threads()}))
    rows: dict[str, dict] = {name: {"model": name} for name in models}
    previous = torch.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(n)
            cpu = platforms.Platform(f"torch-cpu-{n}t", "cpu", n, f"CPU, {n} threads")
            for b in batches:
                ms = platforms.measure_in_turn(models, cpu, (b, *shape), rounds, 0.2, as_is=True)
                for name, v in ms.items():
                    rows[name][f"batch {b}, {n}t (ms)"] = round(v, 3)
    finally:
        torch.set_num_threads(previous)
    return pd.DataFrame(rows.values())


def int8_table(accuracy: dict, size: dict, lat: pd.DataFrame, eager: str = "fp32 eager",
               reference: str = "fp32") -> pd.DataFrame:
    """One row per model: top-1, bytes on disk, times fewer than the float32 baseline, latencies,
    and the speedup of each latency over the baseline compiled the same way (``reference``)
    and over the baseline in eager mode (``eager``)."""
    lat = lat.set_index("model")
    rows = []
    for name in lat.index:
        ref = reference
        row = {"model": name, "top-1 %": round(accuracy[name], 2) if name in accuracy else "",
               "bytes on disk": size.get(name, ""),
               "x fewer bytes": round(size[reference] / size[name], 2) if name in size else ""}
        for col in lat.columns:
            row[col] = lat.loc[name, col]
        for col in [c for c in lat.columns if c.startswith("batch")]:
            short = col.replace(" (ms)", "")
            row[f"speedup {short} vs fp32 inductor (x)"] = round(lat.loc[ref, col] / lat.loc[name, col], 2)
            row[f"speedup {short} vs fp32 eager (x)"] = round(lat.loc[eager, col] / lat.loc[name, col], 2)
        rows.append(row)
    return pd.DataFrame(rows)


# -- bits per layer --------------------------------------------------------------------------

def allocations(base: nn.Module, bundle: data.DataBundle, cfg, methods: tuple[str, ...] = METHODS
                ) -> tuple[dict[str, list[list[int]]], dict]:
    """Each method's allocation(s) at ``cfg.quant_budget`` for ``base``, found on a held-out part
    of the training set; and what the searches logged (sensitivities, DNAS trace, agent
    episodes, seconds, the problem)."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown allocation method(s) {sorted(unknown)}; valid choices: {', '.join(METHODS)}")
    q = cfg.quant
    problem = allocate.Problem(base, allocate.held_out(bundle, q.held_out_images, cfg.seed), cfg.run,
                               q.quant_budget, q.probe_steps, q.quant_lr, q.quant_keep_first_last)
    found, logs = {}, {"seconds": {}, "problem": problem}
    for method in methods:
        t0 = time.perf_counter()
        if method == "uniform":
            found[method] = [allocate.uniform(problem)]
        elif method == "random":
            found[method] = allocate.random_allocations(problem, q.quant_draws, seed=cfg.seed)
        elif method.startswith("HAWQ"):
            logs["sensitivity"] = allocate.sensitivities(problem, allocate.hessian_traces(problem))
            found[method] = [allocate.hawq(problem, logs["sensitivity"])]
        elif method.startswith("DNAS"):
            bits, logs["dnas"] = allocate.dnas(problem, q.search_steps)
            found[method] = [bits]
        else:
            bits, logs["agent"] = allocate.releq(problem, q.agent_episodes)
            found[method] = [bits]
        logs["seconds"][method] = round(time.perf_counter() - t0, 1)
    return found, logs


def allocation_runs(base: nn.Module, bundle: data.DataBundle, cfg, found: dict[str, list[list[int]]],
                    done: pd.DataFrame | None = None) -> pd.DataFrame:
    """QAT of every allocation with every seed (weights only): one row per (method, draw, seed).
    ``done``: the bit sweep's rows, whose uniform run at the budget is not trained again."""
    rows = []
    for method, allocs in found.items():
        for k, bits in enumerate(allocs):
            for seed in seeds.seed_list(cfg):
                same = None if done is None or len(set(bits)) > 1 else done[
                    (done["mode"] == "weights") & (done["bits"] == bits[0]) & (done["seed"] == seed)]
                if same is not None and len(same):
                    acc, size = float(same["top-1 %"].iloc[0]), int(same["bytes"].iloc[0])
                else:
                    model, acc = _run_at(base, bundle, cfg, seed, bits, None)
                    size = packing.model_bytes(model)
                rows.append({"method": method, "draw": k, "seed": seed, "top-1 %": round(acc, 2), "bytes": size,
                             "avg bits": round(average_bits(base, bits, cfg.quant_keep_first_last), 3),
                             "bits": " ".join(map(str, bits))})
    return pd.DataFrame(rows)


def allocation_table(runs: pd.DataFrame, test_images: int) -> pd.DataFrame:
    """Mean and sd over seeds (random: over draws and seeds) of each method, average bits and
    bytes, and each method's gap to uniform with the verdict (beyond two standard errors)."""
    summary = seeds.summarize(runs.assign(run=runs["draw"].astype(str) + "/" + runs["seed"].astype(str)),
                              ["method"], ["top-1 %", "avg bits", "bytes"], test_images, seed_column="run")
    judged = seeds.versus(summary, "top-1 %", {"method": "uniform"}).rename(columns={"seeds": "runs"})
    cols = ["method", "runs", "top-1 % mean", "top-1 % sd", "top-1 % test-set SE", "gap to uniform", "2 SE of gap",
            "verdict", "avg bits mean", "bytes mean"]
    return judged[cols].rename(columns={"avg bits mean": "avg bits", "bytes mean": "bytes"})


def allocation_map(found: dict[str, list[list[int]]], names: list[str]) -> pd.DataFrame:
    """Bits per layer (columns) of each method (rows; random: its first draw)."""
    return pd.DataFrame({m: a[0] for m, a in found.items()}, index=names).T


def with_mixed(table: pd.DataFrame, mixed: pd.DataFrame, method: str, reference_bytes: int) -> pd.DataFrame:
    """``table`` with the mixed-precision pruned model's row added (no latency: no CPU kernels)."""
    row = mixed.iloc[0].to_dict()
    row.update({"model": f"pruned, mixed bits ({method}, {row.pop('avg bits'):g} bits per weight, fake-quant)",
                "x fewer bytes": round(reference_bytes / row["bytes on disk"], 2)})
    return pd.concat([table, pd.DataFrame([row])], ignore_index=True).fillna("")


def pruned_bridge(pruned: nn.Module, bundle: data.DataBundle, cfg, bits: list[int]) -> tuple[pd.DataFrame, nn.Module]:
    """The joint-pruned model at ``bits`` per layer (QAT, first seed): its top-1 and packed bytes."""
    model, acc = _run_at(pruned, bundle, cfg, cfg.seed, bits, None)
    return pd.DataFrame([{"model": "pruned, mixed bits (fake-quant)", "top-1 %": round(acc, 2),
                          "bytes on disk": packing.model_bytes(model),
                          "avg bits": round(average_bits(pruned, bits, cfg.quant_keep_first_last), 3)}]), model
