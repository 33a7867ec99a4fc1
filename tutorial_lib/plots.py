"""The lessons' figures, one function each, so a notebook cell stays one line long."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from tutorial_lib import masks
from tutorial_lib.constraints import adaptive
from tutorial_lib.constraints.experiment import KIND_LABELS, budget_text


def _laid_out(fig, *title: str):
    """Give the figure its title (when one is passed), lay it out tightly and return it."""
    if title:
        fig.suptitle(*title)
    fig.tight_layout()
    return fig


def straight_through(low: float = -6.0, high: float = 6.0, points: int = 241):
    """Forward (b = step(sigmoid(m))) versus backward (dL/dm for dL/db = 1) of the mask."""
    m = torch.linspace(low, high, points, requires_grad=True)
    b = masks.binarize(m)
    b.sum().backward()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(m.detach(), b.detach(), label="forward: b = 1[sigmoid(m) > 0.5]")
    ax[0].plot(m.detach(), torch.sigmoid(m).detach(), "--", label="sigmoid(m)")
    ax[0].set(xlabel="mask logit m", ylabel="value", title="forward")
    ax[1].plot(m.detach(), m.grad, color="C2", label="straight-through: sigmoid'(m)")
    ax[1].axhline(0, color="C3", ls=":", label="true slope of the step: 0")
    ax[1].set(xlabel="mask logit m", ylabel="dL/dm when dL/db = 1", title="backward")
    for a in ax:
        a.legend(fontsize=8, loc="best")
    return _laid_out(fig)


def kept_channels(table: pd.DataFrame, title: str = "channels kept per layer"):
    """Bars of total versus kept channels for each masked layer (``masks.kept_channels``)."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    x = range(len(table))
    ax.bar(x, table["total"], color="lightgrey", label="total")
    ax.bar(x, table["kept"], color="C0", label="kept")
    ax.set_xticks(list(x), [f"conv{i + 1}" for i in x], rotation=60, fontsize=8)
    ax.set(ylabel="channels", title=title)
    ax.legend()
    return _laid_out(fig)


def training_curves(history: pd.DataFrame, columns: list[str], title: str = ""):
    """One panel per history column against the epoch."""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.4 * len(columns), 3.0), squeeze=False)
    for ax, col in zip(axes[0], columns):
        sns.lineplot(data=history, x="epoch", y=col, marker="o", ax=ax)
        ax.set(title=col)
    return _laid_out(fig, title)


def channels_side_by_side(table: pd.DataFrame, title: str = "channels per layer: baseline versus pruned"):
    """Grouped bars of ``compare.channels_per_layer``: the two architectures side by side."""
    long = table.melt(id_vars="layer", var_name="model", value_name="channels")
    fig, ax = plt.subplots(figsize=(9, 3.2))
    sns.barplot(data=long, x="layer", y="channels", hue="model", ax=ax)
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    ax.set(title=title, xlabel="")
    return _laid_out(fig)


def frontier(table: pd.DataFrame, baseline_accuracy: float, noise: float, title: str = "",
             x: tuple[str, ...] = ("kept params %", "latency @1 / baseline")):
    """Top-1 against each cost column in ``x`` (one panel each, log scale), every method as a
    line through its mean per lambda with the sd over the seeds as error bars; the baseline as
    a line with a band of +-2 standard errors of the test set around it."""
    x = [c for c in x if c in table]
    means = table.groupby(["method", "lambda"], sort=False)[["top-1 %", *x]].agg(["mean", "std"]).reset_index()
    fig, axes = plt.subplots(1, len(x), figsize=(6.5 * len(x), 4.2), squeeze=False)
    palette = dict(zip(table["method"].unique(), sns.color_palette("tab10")))
    for ax, column in zip(axes[0], x):
        for method, part in means.groupby("method", sort=False):
            part = part.sort_values((column, "mean"))
            ax.errorbar(part[(column, "mean")], part[("top-1 %", "mean")], yerr=part[("top-1 %", "std")].fillna(0),
                        xerr=part[(column, "std")].fillna(0), marker="o", ms=4, capsize=2, lw=1.2,
                        color=palette[method], label=method)
        ax.axhline(baseline_accuracy, color="k", ls="--", lw=1, label="baseline")
        ax.axhspan(baseline_accuracy - 2 * noise, baseline_accuracy + 2 * noise, color="k", alpha=0.08,
                   label="baseline +- 2 s.e. (test-set noise)")
        ax.set(xscale="log", xlabel=column + (" (measured, batch 1)" if "latency" in column else ""),
               ylabel="top-1 % (mean +- sd over seeds)")
    axes[0][0].legend(fontsize=7)
    return _laid_out(fig, title)


def gates_per_layer(traces: dict[str, list[dict[str, int]]], totals: dict[str, int], title: str = ""):
    """One heat map per run: the share of each masked layer's channels kept (rows) after each
    epoch of joint pruning (columns), from ``joint.GateTrace.per_layer``."""
    fig, axes = plt.subplots(1, len(traces), figsize=(3.2 * len(traces) + 1, 4.2), squeeze=False, sharey=True)
    for ax, (label, per_layer) in zip(axes[0], traces.items()):
        share = pd.DataFrame(per_layer, index=range(1, len(per_layer) + 1)).T.div(pd.Series(totals), axis=0)
        sns.heatmap(100 * share, ax=ax, vmin=0, vmax=100, cmap="viridis", cbar=ax is axes[0][-1],
                    cbar_kws={"label": "channels kept (%)"})
        ax.set(title=label, xlabel="epoch", ylabel="masked layer" if ax is axes[0][0] else "")
    return _laid_out(fig, title)


def attention_maps(images: torch.Tensor, teacher_maps: torch.Tensor, student_maps: torch.Tensor,
                   title: str = "attention maps: teacher versus student"):
    """Rows: input (first channel), teacher attention, student attention; one column per image."""
    n = images.shape[0]
    fig, axes = plt.subplots(3, n, figsize=(1.8 * n, 5.4), squeeze=False)
    for i in range(n):
        for row, (img, label) in enumerate([(images[i, 0], "input"), (teacher_maps[i], "teacher"),
                                            (student_maps[i], "student")]):
            axes[row][i].imshow(img.cpu(), cmap="gray" if row == 0 else "magma")
            axes[row][i].set_xticks([]), axes[row][i].set_yticks([])
            if i == 0:
                axes[row][i].set_ylabel(label)
    return _laid_out(fig, title)


def fsp_matrices(teacher: torch.Tensor, student: torch.Tensor, title: str = "FSP matrices"):
    """Teacher and student FSP (Gram) matrices side by side, on one colour scale."""
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    vmax = float(max(teacher.abs().max(), student.abs().max()))
    for ax, m, label in zip(axes, (teacher, student), ("teacher", "student")):
        im = ax.imshow(m.cpu(), cmap="coolwarm", vmin=-vmax, vmax=vmax)
        ax.set(title=label, xlabel="stage end channel", ylabel="stage start channel")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(title)
    return fig


def depth_widths(table: pd.DataFrame, title: str = "monodepth: filters kept per layer, ours versus published"):
    """Grouped bars of kept filters (%) per prunable conv: ours beside the published pruned
    widths (``depth.experiment.widths_table``)."""
    long = pd.DataFrame({
        "layer": list(table["layer"]) * 2,
        "kept %": list(table["ours: kept %"]) + [v if v != "" else float("nan") for v in table["published: kept %"]],
        "model": ["ours"] * len(table) + ["published (full-size monodepth)"] * len(table),
    })
    fig, ax = plt.subplots(figsize=(10, 3.4))
    sns.barplot(data=long, x="layer", y="kept %", hue="model", ax=ax)
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    ax.set(title=title, xlabel="", ylim=(0, 100))
    return _laid_out(fig)


def disparities(examples: dict, title: str = "input, ground truth, baseline and pruned disparity (pixels)"):
    """One row per scene of ``depth.experiment.example_disparities``: the input image, then
    the ground truth and each model's disparity on one colour scale (grey: no ground truth)."""
    scenes = list(examples)
    columns = list(examples[scenes[0]])
    fig, axes = plt.subplots(len(scenes), len(columns), figsize=(3.2 * len(columns), 1.9 * len(scenes)),
                             squeeze=False)
    cmap = plt.get_cmap("magma").copy()
    cmap.set_bad("lightgrey")
    for r, scene in enumerate(scenes):
        panels = examples[scene]
        vmax = float(torch.nan_to_num(panels["ground truth"], nan=0.0).max())
        for c, name in enumerate(columns):
            ax = axes[r][c]
            img = panels[name]
            if name == "input":
                ax.imshow(img.permute(1, 2, 0).clamp(0, 1).cpu())
            else:
                im = ax.imshow(img.cpu(), cmap=cmap, vmin=0, vmax=vmax)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(scene, fontsize=9)
        fig.colorbar(im, ax=axes[r].tolist(), shrink=0.8, label="px")
    fig.suptitle(title)
    return fig


# -- lesson 04 -----------------------------------------------------------------------------
def latency_bounds(lat: pd.DataFrame, per_layer: pd.DataFrame, platform: str, title: str = ""):
    """Left: latency against batch size (log-log), both bounds, every platform. Right: the
    per-layer times of both bounds at the largest profiled batch."""
    fig, ax = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    for i, (p, g) in enumerate(lat.groupby("platform", sort=False)):
        ax[0].plot(g["batch"], g["full ms"], "o-", color=f"C{i}", label=f"full, {p}")
        ax[0].plot(g["batch"], g["one-channel ms"], "s--", color=f"C{i}", label=f"one channel, {p}")
    ax[0].set(xscale="log", yscale="log", xlabel="batch size", ylabel="median latency (ms)",
              title="upper and lower bound")
    ax[0].legend(fontsize=7)
    cols = [c for c in per_layer.columns if c.startswith("full ms")]
    b = cols[-1].split("@")[-1]
    layers = per_layer[~per_layer["name"].isin(["(total)", "(other)"])]
    x = range(len(layers))
    ax[1].bar([i - 0.2 for i in x], layers[f"full ms @{b}"], width=0.4, label="full")
    ax[1].bar([i + 0.2 for i in x], layers[f"one-channel ms @{b}"], width=0.4, label="one channel")
    ax[1].set_xticks(list(x), [f"{n} ({t})" for n, t in zip(layers["name"], layers["type"])], rotation=90,
                     fontsize=6)
    ax[1].set(ylabel="ms per forward pass", title=f"per layer, batch {b}, {platform}")
    ax[1].legend(fontsize=8)
    return _laid_out(fig, title)


def signatures_against_costs(df: pd.DataFrame, corr: pd.DataFrame, platform_names, title: str = ""):
    """Accuracy against parameters, FLOPs and latency; latency against FLOPs (every platform)."""
    rho = {(r.x, r.y): r.spearman for r in corr.itertuples()}
    fig, ax = plt.subplots(1, 4, figsize=(15, 3.6))
    lat0 = f"latency_ms[{platform_names[0]}]"
    for a, col, label in ((ax[0], "params", "parameters"), (ax[1], "flops", "FLOPs per image"),
                          (ax[2], lat0, f"latency (ms), {platform_names[0]}")):
        a.scatter(df[col], df["accuracy"])
        a.set(xlabel=label, ylabel="top-1 %", title=f"Spearman {rho.get(('accuracy', col), float('nan')):.2f}")
    for i, p in enumerate(platform_names):
        c = f"latency_ms[{p}]"
        ax[3].scatter(df["flops"], df[c], color=f"C{i}",
                      label=f"{p} (Spearman {rho.get((c, 'flops'), float('nan')):.2f})")
    ax[3].set(xlabel="FLOPs per image", ylabel="median latency (ms)", yscale="log", title="latency against FLOPs")
    ax[3].legend(fontsize=7)
    return _laid_out(fig, title)


def constrained_runs(runs: dict, title: str = ""):
    """Each constrained run over its epochs: cost as % of its budget and accuracy, the
    background shaded by phase (sparsity / fine-tuning), packs and re-masks marked."""
    fig, axes = plt.subplots(2, len(runs), figsize=(4.6 * len(runs), 5.4), squeeze=False, sharex="col")
    for j, (kind, r) in enumerate(runs.items()):
        h = r.history
        top, bottom = axes[0][j], axes[1][j]
        top.plot(h["epoch"], h["params"] / 1e3, "o-", label="parameters (k)")
        top.set(title=f"{KIND_LABELS[kind]} budget: {budget_text(r.budget)}", ylabel="parameters (thousands)")
        twin = top.twinx()
        twin.plot(h["epoch"], h["cost_pct"] * r.target.value / r.budget.value, "s--", color="C3",
                  label="cost, % of budget")
        twin.axhline(100, color="C3", lw=0.8, ls=":")
        twin.set_ylabel("cost, % of budget", color="C3")
        bottom.plot(h["epoch"], h["accuracy"], "o-", color="C2")
        bottom.set(xlabel="epoch", ylabel="top-1 %")
        for a in (top, bottom):
            for _, row in h.iterrows():
                if row["phase"] == adaptive.SPARSITY:
                    a.axvspan(row["epoch"] - 0.5, row["epoch"] + 0.5, color="orange", alpha=0.15, lw=0)
        for _, row in h.iterrows():
            act = row["action"].split("+")[0]
            if act in ("pack", "remask", "cut_lr"):
                bottom.annotate(act, (row["epoch"], row["accuracy"]), fontsize=7, rotation=45)
    axes[0][0].legend(fontsize=7, loc="upper right")
    return _laid_out(fig, title + " (orange: sparsity epochs with masks; white: fine-tuning)")


def quantizer_steps(bits: int = 2, low: float = -2.0, high: float = 2.0, points: int = 401):
    """Forward versus backward of two weight quantizers: LSQ at ``bits`` (step 0.5) and
    BinaryConnect's sign, each with its straight-through gradient."""
    from tutorial_lib.quant import quantizers

    w = torch.linspace(low, high, points, requires_grad=True)
    lsq = quantizers.lsq(w, torch.tensor(0.5), bits, signed=True)
    (g_lsq,) = torch.autograd.grad(lsq.sum(), w)
    sign = quantizers.binaryconnect(w)
    (g_sign,) = torch.autograd.grad(sign.sum(), w)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    x = w.detach()
    ax[0].plot(x, x, ":", color="grey", label="identity")
    ax[0].plot(x, lsq.detach(), label=f"LSQ, {bits} bits, step 0.5")
    ax[0].plot(x, sign.detach(), label="BinaryConnect: sign(w)")
    ax[0].set(xlabel="real weight w", ylabel="quantized weight", title="forward")
    ax[1].plot(x, g_lsq, label="LSQ: 1 inside the clip range, 0 outside")
    ax[1].plot(x, g_sign + 0.03, label="sign: 1 where |w| <= 1 (shifted up 0.03 to show)")
    ax[1].set(xlabel="real weight w", ylabel="dL/dw when dL/dq = 1", title="backward (straight-through)")
    for a in ax:
        a.legend(fontsize=8, loc="best")
    return _laid_out(fig)


def accuracy_vs_bits(table: pd.DataFrame, baseline_accuracy: float, title: str = ""):
    """Top-1 (mean +- sd over seeds) against bit-packed bytes, one line per mode, the float32
    baseline as a dashed line; each point labelled with its bits."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for k, (mode, part) in enumerate(table.groupby("mode", sort=False)):
        ax.errorbar(part["bytes"] / 1e3, part["top-1 % mean"], yerr=part["top-1 % sd"].fillna(0), marker="o",
                    capsize=3, label=mode, color=f"C{k}")
        for _, r in part.iterrows():
            ax.annotate(f"{int(r['bits'])}b", (r["bytes"] / 1e3, r["top-1 % mean"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.axhline(baseline_accuracy, color="k", ls="--", lw=1, label="float32 baseline")
    ax.set(xscale="log", xlabel="model size, bit-packed (kB, log scale)", ylabel="top-1 % (mean +- sd over seeds)",
           title=title)
    ax.legend(fontsize=8)
    return _laid_out(fig)


def allocation_heatmap(bits: pd.DataFrame, title: str = ""):
    """Bits per layer (columns) of each allocation method (rows)."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * bits.shape[1], 0.6 + 0.5 * bits.shape[0]))
    sns.heatmap(bits.astype(int), annot=True, fmt="d", cmap="viridis", vmin=2, vmax=8, cbar_kws={"label": "bits"},
                ax=ax)
    ax.set_xticklabels([f"conv{i + 2}" for i in range(bits.shape[1])], rotation=60, fontsize=8)
    ax.set(title=title, xlabel="quantizable layer (first conv and classifier stay at full precision)")
    return _laid_out(fig)


def search_curves(episodes: pd.DataFrame, dnas: pd.DataFrame, budget: float, title: str = ""):
    """The agent's reward per episode (and its running mean), and the differentiable search's
    expected average bits per step against the budget."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
    ax[0].plot(episodes["episode"], episodes["reward"], "o-", ms=3, lw=0.8, label="reward")
    ax[0].plot(episodes["episode"], episodes["reward"].expanding().mean(), lw=2, label="running mean")
    ax[0].set(xlabel="episode", ylabel="reward", title="ReLeQ-style agent")
    ax[1].plot(dnas["step"], dnas["expected avg bits"], label="expected average bits")
    ax[1].axhline(budget, color="k", ls="--", lw=1, label=f"budget ({budget:g} bits)")
    ax[1].set(xlabel="step", ylabel="bits", title="differentiable search (Wu et al.)")
    for a in ax:
        a.legend(fontsize=8)
    return _laid_out(fig, title)


def pareto(table: pd.DataFrame, baseline_accuracy: float, title: str = ""):
    """Lesson 07: top-1 (mean +- sd over seeds) against bytes on disk and against batch-64 latency
    (ratio to the baseline), one point per recipe; the Pareto front of each panel joined and its
    points ringed."""
    panels = [("bytes", "front: bytes", "bytes on disk (kB, log scale)", 1e3)]
    if "front: batch-64 latency" in table:
        panels.append(("batch 64 latency / baseline", "front: batch-64 latency", "batch-64 latency / baseline's", 1))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, (x, front, label, scale) in zip(axes[0], panels):
        for k in range(len(table)):
            ax.errorbar(table[x].iloc[k] / scale, table["top-1 % mean"].iloc[k], yerr=table["top-1 % sd"].fillna(0).iloc[k],
                        marker="o", capsize=3, color=f"C{k % 10}", label=table["recipe"].iloc[k])
        on = table[table[front]].sort_values(x)
        ax.plot(on[x] / scale, on["top-1 % mean"], "k--", lw=1, label="Pareto front")
        ax.scatter(on[x] / scale, on["top-1 % mean"], s=160, facecolors="none", edgecolors="k")
        ax.axhline(baseline_accuracy, color="grey", ls=":", lw=1)
        ax.set(xlabel=label, ylabel="top-1 % (mean +- sd over seeds)", xscale="log" if x == "bytes" else "linear")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    return _laid_out(fig, title)


def stages(log: pd.DataFrame, title: str = ""):
    """Lesson 07 / the command line: top-1 after each stage of one run."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.4 * len(log) + 2), 3.4))
    ax.plot(range(len(log)), log["top-1 %"], marker="o")
    ax.set_xticks(range(len(log)), log["stage"], rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="top-1 % after the stage", title=title)
    return _laid_out(fig)
