"""Benchmarks that print figures (median of repeats, threads fixed); tests never time.

    python -m tutorial_lib.bench masks        # training step with masks over the plain model
    python -m tutorial_lib.bench train        # paper model images/s, 1 process and DDP(2); training step: NaN fill, NCHW vs channels-last, KD memo
    python -m tutorial_lib.bench distill      # distillation step over plain step + teacher forward
    python -m tutorial_lib.bench depth        # lesson 03: params removed, D1-all change, batch-1 speedup against its ceiling
    python -m tutorial_lib.bench runtimes     # lesson 03's speedup under channels-last and torch.compile
    python -m tutorial_lib.bench constraints  # lesson 04: budgets met, latency in band, estimate errors
    python -m tutorial_lib.bench quant        # lesson 06: int8 against float32 (eager and inductor), batch 1 and 64
    python -m tutorial_lib.bench notebooks    # wall time of each notebook at the tutorial profile
    python -m tutorial_lib.bench gpu          # one CUDA GPU: the paper recipe's joint pruning briefly (make gpu-check)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F

from tutorial_lib import masks, models, paths, profiles, repro, run
from tutorial_lib.measure import timer

MASK_STEP_TARGET = 1.10


def _step_times(model, x, y, steps: int) -> list[float]:
    """One reading (in a list, as ``timer.in_turn`` takes them): the mean time of ``steps`` SGD steps."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [(time.perf_counter() - start) / steps]


def _interleaved_medians(runs: dict, repeats: int, steps: int) -> dict[str, float]:
    """Median step time of each ``runs[name](steps)`` (which returns per-step times), the runs
    taken in turn ``repeats`` times after one warm-up round, so that drift in machine load
    hits all of them alike."""
    for run_steps in runs.values():
        run_steps(2)
    return timer.in_turn({name: (lambda f=run_steps: f(steps)) for name, run_steps in runs.items()}, repeats)


def _step_setting(profile: str):
    """The profile's config, its threads (seeded), a fresh model and one batch."""
    cfg = profiles.resolve(profile)
    threads = repro.resolve_threads(cfg.threads)
    repro.seed_everything(0, threads)
    size = image_size(cfg)
    x, y = torch.randn(cfg.batch_size, 3, size, size), torch.randint(0, 10, (cfg.batch_size,))
    return cfg, threads, models.build(cfg, 10), x, y


def image_size(cfg) -> int:
    """The side of the profile's images (digits_m: 24; CIFAR and the smoke data: 32)."""
    from tutorial_lib.data import digits

    return digits.IMAGE_SIZE if cfg.dataset in ("digits", "digits_m") else 32


def masks_overhead(profile: str = "tutorial", repeats: int = 7, steps: int = 5) -> dict:
    """Median training-step time of the profile's VGG with and without masks (interleaved)."""
    cfg, threads, plain, x, y = _step_setting(profile)
    masked = masks.insert_masks(copy.deepcopy(plain))
    t = _interleaved_medians({"plain": lambda n: _step_times(plain, x, y, n),
                              "masked": lambda n: _step_times(masked, x, y, n)}, repeats, steps)
    return {"profile": profile, "arch": cfg.arch, "width": cfg.width, "batch": cfg.batch_size, "threads": threads,
            "plain_ms": 1e3 * t["plain"], "masked_ms": 1e3 * t["masked"], "ratio": t["masked"] / t["plain"],
            "target": MASK_STEP_TARGET}


def nan_fill_saving(profile: str = "tutorial", repeats: int = 7, steps: int = 5) -> dict:
    """Median training-step time of the profile's VGG in deterministic mode with torch's NaN fill
    of new tensors (torch's default) and without it (``repro``'s setting), interleaved."""
    import torch.utils.deterministic as det

    cfg, threads, model, x, y = _step_setting(profile)

    def steps_with(fill: bool, n: int) -> list[float]:
        det.fill_uninitialized_memory = fill
        return _step_times(model, x, y, n)

    try:
        t = _interleaved_medians({"fill": lambda n: steps_with(True, n), "no_fill": lambda n: steps_with(False, n)},
                                 repeats, steps)
    finally:
        det.fill_uninitialized_memory = False
    return {"arch": cfg.arch, "width": cfg.width, "batch": cfg.batch_size, "threads": threads,
            "fill_ms": 1e3 * t["fill"], "no_fill_ms": 1e3 * t["no_fill"], "saving": 1 - t["no_fill"] / t["fill"]}


def layout_and_memo(profile: str = "tutorial", repeats: int = 7, steps: int = 5) -> dict:
    """Median training-step time of the profile's VGG in the default (NCHW) layout and in
    channels-last (``train.Classification.memory_format``), and of a KD step that runs the
    frozen teacher against one that reads its logits back (``distill.TeacherMemo``), interleaved."""
    from tutorial_lib.distill.memo import TeacherMemo
    from tutorial_lib.kd import kd_loss

    cfg, threads, model, x, y = _step_setting(profile)
    cl = torch.channels_last
    model_cl, x_cl = copy.deepcopy(model).to(memory_format=cl), x.contiguous(memory_format=cl)
    student = copy.deepcopy(model).to(memory_format=cl)
    teacher = copy.deepcopy(model).to(memory_format=cl).eval()
    memo = TeacherMemo(teacher)
    memo(x_cl)  # every image seen once: later steps read the logits back
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)

    def kd_steps(source):
        def run_steps(n: int) -> list[float]:
            start = time.perf_counter()
            for _ in range(n):
                logits = student(x_cl)
                with torch.no_grad():
                    t_logits = source(x_cl)
                loss = F.cross_entropy(logits, y) + kd_loss(logits, t_logits)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return [(time.perf_counter() - start) / n]
        return run_steps

    t = _interleaved_medians({"nchw": lambda n: _step_times(model, x, y, n),
                              "channels_last": lambda n: _step_times(model_cl, x_cl, y, n),
                              "kd_teacher": kd_steps(teacher), "kd_memo": kd_steps(memo)}, repeats, steps)
    return {"arch": cfg.arch, "width": cfg.width, "batch": cfg.batch_size, "threads": threads,
            **{f"{k}_ms": 1e3 * v for k, v in t.items()}}


def distill_overhead(profile: str = "tutorial", repeats: int = 7) -> dict:
    """Median step time of a plain student, a teacher forward, and a student step under each
    distillation method; the target is distill <= 1.5 x (plain step + teacher forward)."""
    from tutorial_lib.distill import losses
    from tutorial_lib.distill.student import at_features, fsp_pairs
    from tutorial_lib.taps import Taps, stage_ends
    from tutorial_lib.models import vgg

    cfg = profiles.resolve(profile)
    threads = repro.resolve_threads(cfg.threads)
    repro.seed_everything(0, threads)
    teacher = models.build(cfg, 10).eval()
    student = vgg.VGG(vgg.vgg_signature("vgg8", cfg.width), num_classes=10)
    size = image_size(cfg)
    x, y = torch.randn(cfg.batch_size, 3, size, size), torch.randint(0, 10, (cfg.batch_size,))
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    s_names, t_names = stage_ends(student), stage_ends(teacher)

    def step(extra):
        with Taps(student, s_names) as s_taps, Taps(teacher, t_names) as t_taps:
            start = time.perf_counter()
            with torch.no_grad():
                t_logits = teacher(x) if extra else None
            logits = student(x)
            loss = F.cross_entropy(logits, y)
            if extra:
                loss = loss + extra(logits, t_logits, s_taps.features(), t_taps.features())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return time.perf_counter() - start

    def teacher_forward():
        start = time.perf_counter()
        with torch.no_grad():
            teacher(x)
        return time.perf_counter() - start

    variants = {
        "kd": lambda s, t, sf, tf: losses.kd_loss(s, t),
        "at": lambda s, t, sf, tf: losses.at_loss(at_features(sf), at_features(tf)),
        "fsp": lambda s, t, sf, tf: losses.fsp_loss(fsp_pairs(sf), fsp_pairs(tf)),
    }
    for _ in range(2):  # warm-up
        step(None), teacher_forward(), [step(v) for v in variants.values()]
    times: dict[str, list[float]] = {"plain": [], "teacher": [], **{k: [] for k in variants}}
    for _ in range(repeats):
        times["plain"].append(step(None))
        times["teacher"].append(teacher_forward())
        for k, v in variants.items():
            times[k].append(step(v))
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    budget = med["plain"] + med["teacher"]
    return {"threads": threads, "batch": cfg.batch_size, "ms": med,
            "ratio": {k: med[k] / budget for k in variants}, "target": 1.5}


def depth_targets(profile: str = "tutorial", min_run_time: float = 0.5) -> dict:
    """Lesson 03's targets: the cached monodepth baseline (trained if missing) pruned jointly at
    the profile's settings, then parameters removed, D1-all change on the test set and batch-1
    frames per second of both models on every platform here, beside the speed ceiling
    (``depth.experiment.speed_ceiling``: every prunable conv at one filter)."""
    from tutorial_lib.depth import experiment as ex

    cfg = profiles.resolve(profile)
    start = time.perf_counter()
    bundle = ex.load(cfg)
    model, _ = ex.baseline(cfg, bundle)
    base = ex.measure("baseline", model, bundle, cfg)
    pruned = ex.prune_monodepth(model, bundle, cfg)
    fps = ex.frames_per_second({"baseline": model, "pruned": pruned.model, "ceiling": ex.speed_ceiling(cfg)}, cfg,
                               min_run_time=min_run_time)
    return {"profile": profile, "base": base, "pruned": pruned, "fps": fps, "targets": ex.targets(base, pruned, fps),
            "seconds": time.perf_counter() - start, "size": f"{cfg.depth_height}x{cfg.depth_width}"}


def depth_runtimes(profile: str = "tutorial") -> dict:
    """Lesson 03's speedup under other inference runtimes (``measure.runtimes``): the cached
    baseline and pruned monodepth (made if missing) and the speed ceiling, at batch 1, on one
    thread and on all. Does the pruned network's speedup stay where eager PyTorch puts it when
    a compiler removes the per-operator overhead?"""
    from tutorial_lib.measure import runtimes
    from tutorial_lib.depth import experiment as ex

    cfg = profiles.resolve(profile)
    start = time.perf_counter()
    bundle = ex.load(cfg)
    model, _ = ex.baseline(cfg, bundle)
    models = {"baseline": model, "pruned": ex.pruned_model(model, bundle, cfg), "ceiling": ex.speed_ceiling(cfg)}
    table = runtimes.speedups(models, ex.input_shape(cfg))
    return {"table": table, "size": f"{cfg.depth_height}x{cfg.depth_width}", "seconds": time.perf_counter() - start}


def constraints_targets(profile: str = "tutorial", signatures: int = 8) -> dict:
    """Lesson 04's targets: the three constrained runs (parameters, FLOPs, latency) from the
    profile's cached baseline, each final model measured on every platform, and the latency
    table's estimate against the measured median for ``signatures`` untrained random signatures."""
    from tutorial_lib import cache, data
    from tutorial_lib.constraints import experiment as ex
    from tutorial_lib.measure import platforms

    cfg = profiles.resolve(profile)
    start = time.perf_counter()
    bundle = data.load(cfg)
    baseline, _ = cache.baseline(cfg, bundle)
    names = platforms.available()
    table = ex.make_table(cfg, baseline, bundle)
    budget_map = ex.make_budgets(cfg, baseline, bundle, table)
    runs = {k: ex.verify(ex.run_constrained(baseline, bundle, cfg, b, table), bundle, cfg, table, names)
            for k, b in budget_map.items()}
    sig = ex.validate_estimates(table, cfg, bundle, n=signatures, seed=cfg.seed + 1)
    return {"cfg": cfg, "runs": runs, "signatures": sig, "targets": ex.targets(runs, sig, cfg.latency_platform),
            "seconds": time.perf_counter() - start}


def throughput(profile: str = "paper", steps: int = 5, nproc: int = 1) -> dict:
    """Training images per second of the profile's model through ``train.fit`` (its DDP, layout,
    precision and data path) on generated images of the dataset's shape, on ``nproc`` processes
    started by torchrun: the time of ``2 + steps`` steps less that of 2 (start-up, first calls).
    Rank 0 returns the figures; CUDA memory is the peak of rank 0's device."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={nproc}", "-m", "tutorial_lib.bench", "throughput-worker",
                           "--profile", profile, "--repeats", str(steps)],
                          capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    found = [line for line in done.stdout.splitlines() if line.startswith("THROUGHPUT ")]
    if done.returncode or not found:
        raise RuntimeError(f"the throughput run on {nproc} processes failed:\n{done.stderr[-3000:]}")
    return json.loads(found[-1].removeprefix("THROUGHPUT "))


def _generated(images: int, test: int, size: int, classes: int):
    """Random images and labels of a dataset's shape, made on the spot (seeded): for timing only,
    no accuracy is read from them. The test split is the first ``test`` training images."""
    from torch.utils.data import TensorDataset

    from tutorial_lib import data

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(images, 3, size, size, generator=g), torch.randint(0, classes, (images,), generator=g)
    return data.DataBundle(f"generated ({classes} classes, {size}x{size})", TensorDataset(x, y),
                           TensorDataset(x[:test], y[:test]), classes, size, "generated")


def _throughput_worker(profile: str, steps: int) -> None:
    from tutorial_lib import distributed, train

    cfg = profiles.resolve(profile)
    size, classes = image_size(cfg), 100 if profile == "paper" else 10
    bundle = _generated((2 + steps) * cfg.batch_size, 8, size, classes)
    seconds = []
    for n in (2, 2 + steps):
        model = models.build(cfg, classes)
        start = time.perf_counter()
        train.fit(model, bundle, cfg.baseline.schedule.replace(epochs=1), cfg.run.replace(max_steps=n),
                  evaluate_each_epoch=False, desc="throughput")
        seconds.append(time.perf_counter() - start)
    device = distributed.device(cfg.device)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.startswith("cuda") else None
    if distributed.is_main():
        print("THROUGHPUT " + json.dumps({
            "images_per_s": steps * cfg.batch_size / (seconds[1] - seconds[0]), "processes": distributed.world_size(),
            "batch": cfg.batch_size, "device": device, "threads": repro.resolve_threads(cfg.threads),
            "precision": train.amp.Precision(cfg.run.precision, device).name, "gpu_memory_gib": memory,
            "model": f"{cfg.arch} width {cfg.width:g}", "image": size}), flush=True)


def report_throughput(profile: str, repeats: int) -> None:
    """``bench train``'s last part: the model of ``profile`` on 1 process and, on the CPU or with
    several GPUs, on 2 under torchrun (DDP), as images/s and their ratio."""
    one = throughput(profile, repeats, 1)
    print(f"training throughput, {one['model']} ({profile} profile), {one['image']}x{one['image']} images, "
          f"global batch {one['batch']}, {one['precision']}: {repeats} steps timed after 2")
    print(f"  1 process on {one['device']} ({one['threads']} threads) {one['images_per_s']:8.1f} images/s"
          + (f", peak GPU memory {one['gpu_memory_gib']:.1f} GiB" if one["gpu_memory_gib"] else ""))
    if not one["device"].startswith("cuda") or torch.cuda.device_count() > 1:
        two = throughput(profile, repeats, 2)
        print(f"  DDP, 2 processes ({two['threads']} threads each) {two['images_per_s']:8.1f} images/s  "
              f"(ratio to 1 process: {two['images_per_s'] / one['images_per_s']:.2f})")


def gpu_check(steps_per_epoch: int = 100, prune_epochs: int = 2, device: str = "cuda", **knobs) -> dict:
    """The paper recipe on one CUDA GPU, briefly: the VGG19-BN trained one epoch (warm-up), then
    joint pruning (the paper's Adam, layer_mean term, lambda and KD teacher) for ``prune_epochs``
    epochs of ``steps_per_epoch`` steps, on CIFAR-100-shaped images generated on the spot
    (nothing is downloaded; no accuracy is claimed for them). The last epoch gives images/s;
    from it, the time of a CIFAR-100 epoch (50,000 images) and of the 164-epoch baseline plus
    the 100 pruning epochs. (``device="cpu"`` and smaller ``knobs`` let a test run the same path.)"""
    from tutorial_lib import train
    from tutorial_lib.pruning import joint

    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing measured (run `make gpu-check` on a machine with a GPU)")
    paper = profiles.resolve("paper", device=device, **knobs)
    cfg = paper.replace(prune_epochs=prune_epochs, epochs=1, milestones=(), num_workers=min(paper.num_workers, 4))
    n = steps_per_epoch * cfg.batch_size
    bundle = _generated(n, min(n, 10 * cfg.batch_size), 32, 100)
    start = time.perf_counter()
    teacher = models.build(cfg, 100)
    train.fit(teacher, bundle, cfg.baseline.schedule, cfg.run, evaluate_each_epoch=False, desc="baseline")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    masked = masks.insert_masks(copy.deepcopy(teacher), seed=cfg.seed)
    history = joint.prune(masked, teacher, bundle, cfg)
    rate = n / float(history["epoch_seconds"].iloc[-1])
    epoch = 50_000 / rate
    return {"gpu": torch.cuda.get_device_name() if cuda else timer.cpu_name(), "images_per_s": rate,
            "batch": cfg.batch_size, "precision": train.amp.Precision(cfg.run.precision, cfg.device).name,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
            "cifar_epoch_s": epoch, "recipe_h": (paper.epochs + paper.prune_epochs) * epoch / 3600,
            "steps": steps_per_epoch * (1 + prune_epochs), "wall_s": time.perf_counter() - start}


def report_gpu(profile: str, repeats: int) -> None:
    r = gpu_check()
    text = (f"**GPU check** ({r['gpu']}, {r['precision']}, batch {r['batch']}; generated CIFAR-100-shaped data, "
            f"{r['steps']} steps, {r['wall_s']:.0f} s in all)\n\n"
            f"- joint pruning (paper recipe, KD teacher on): {r['images_per_s']:,.0f} images/s, "
            f"peak GPU memory {r['peak_memory_gib']:.1f} GiB\n"
            f"- one CIFAR-100 epoch (50,000 images): {r['cifar_epoch_s']:.0f} s, extrapolated\n"
            f"- the paper recipe (164 baseline epochs + 100 joint-pruning epochs, at this rate): "
            f"{r['recipe_h']:.1f} h, extrapolated\n")
    print(text)
    path = paths.results_dir("paper") / "gpu_check.md"
    path.write_text(text)
    print(f"written to {path}")


def _step_header(what: str, r: dict, repeats: int) -> None:
    print(f"training step{' in deterministic mode' if what == 'train' else ''}, {r['arch']} width "
          f"{r['width']:g}, batch {r['batch']}, {r['threads']} threads, median of {repeats} x 5 steps")


def report_masks(profile: str, repeats: int) -> None:
    r = masks_overhead(profile, repeats)
    _step_header("masks", r, repeats)
    print(f"  plain  {r['plain_ms']:8.2f} ms\n  masked {r['masked_ms']:8.2f} ms\n"
          f"  ratio  {r['ratio']:8.3f} (target <= {r['target']:.2f}: {'met' if r['ratio'] <= r['target'] else 'MISSED'})")


def report_train(profile: str, repeats: int) -> None:
    report_throughput("smoke" if profile == "smoke" else "paper", 3 if profile == "smoke" else 5)
    r = nan_fill_saving(profile, repeats)
    _step_header("train", r, repeats)
    print(f"  with torch's NaN fill of new tensors {r['fill_ms']:8.2f} ms\n"
          f"  without (repro's setting)           {r['no_fill_ms']:8.2f} ms  ({100 * r['saving']:.0f}% saved)")
    m = layout_and_memo(profile, repeats)
    print(f"  NCHW layout                         {m['nchw_ms']:8.2f} ms\n"
          f"  channels-last (the lessons' layout) {m['channels_last_ms']:8.2f} ms  "
          f"({m['nchw_ms'] / m['channels_last_ms']:.2f}x)\n"
          f"  KD step, teacher run each step      {m['kd_teacher_ms']:8.2f} ms\n"
          f"  KD step, logits read back (memo)    {m['kd_memo_ms']:8.2f} ms  "
          f"({m['kd_teacher_ms'] / m['kd_memo_ms']:.2f}x)")


def report_distill(profile: str, repeats: int) -> None:
    r = distill_overhead(profile, repeats)
    print(f"distillation step, teacher {profile} VGG, student vgg8, batch {r['batch']}, {r['threads']} threads, "
          f"median of {repeats}")
    print(f"  plain student step {r['ms']['plain']:.2f} ms, teacher forward {r['ms']['teacher']:.2f} ms")
    for k, ratio in r["ratio"].items():
        print(f"  {k:4s} step {r['ms'][k]:8.2f} ms = {ratio:.2f} x (plain + teacher) "
              f"(target <= {r['target']}: {'met' if ratio <= r['target'] else 'MISSED'})")


def _print_targets(r: dict) -> None:
    for row in r["targets"].itertuples(index=False):
        print(f"  {row.target}: {row.measured} (target {row.wanted}: {'met' if row.met else 'MISSED'})")
    print(f"  ({r['seconds']:.0f} s, baseline from the cache when present)")


def report_depth(profile: str, repeats: int) -> None:
    r = depth_targets(profile)
    base, pruned = r["base"], r["pruned"]
    print(f"monodepth, {profile} profile, input {r['size']}: baseline {base.params:,} parameters, "
          f"pruned {pruned.params:,}; D1-all on the test set {base.scores['test']['d1_all']:.2f}% -> "
          f"{pruned.scores['test']['d1_all']:.2f}%")
    for platform in r["fps"].columns:
        fps = r["fps"][platform]
        print(f"  batch-1 FPS {platform}: baseline {fps['baseline']:.1f}, pruned {fps['pruned']:.1f}, "
              f"every prunable conv at one filter {fps['ceiling']:.1f} "
              f"(ceiling {fps['ceiling'] / fps['baseline']:.2f}x)")
    _print_targets(r)


def report_runtimes(profile: str, repeats: int) -> None:
    r = depth_runtimes(profile)
    print(f"monodepth, {profile} profile, input {r['size']}, batch 1: latency and speedup over the baseline "
          f"under each runtime (median of rounds; ceiling: every prunable conv at one filter)")
    print(r["table"].to_string(index=False))
    print(f"  ({r['seconds']:.0f} s, compiling included)")


def report_constraints(profile: str, repeats: int) -> None:
    r = constraints_targets(profile)
    cfg = r["cfg"]
    print(f"adaptive constrained pruning, {profile} profile: {cfg.arch} x{cfg.width:g}; latency budget on "
          f"{cfg.latency_platform}, batch {cfg.latency_batch} (median of repeats, threads fixed per platform)")
    for kind, run_ in r["runs"].items():
        measured = ", ".join(f"{p} {ms:.3f} ms" for p, ms in run_.measured_ms.items())
        print(f"  {kind:8s} {run_.budget.describe()}: {run_.params:,} params, {run_.flops / 1e6:.2f} MFLOPs, "
              f"estimate {run_.estimate_ms:.3f} ms, measured {measured}")
    err = r["signatures"].filter(like="error_pct").iloc[:, 0]
    print(f"  latency table vs measured median, {len(err)} random signatures: mean |error| "
          f"{err.abs().mean():.1f}%, max {err.abs().max():.1f}%")
    _print_targets(r)


INT8_SPEEDUP_TARGET = 1.5  # lesson 06: int8 over float32 at batch 64 on this machine


def quant_speedups(profile: str = "tutorial", repeats: int = 3) -> dict:
    """Lesson 06's int8 figures: the baseline in float32 (eager and inductor) and int8 after
    post-training quantization (PT2E, x86 inductor), timed in turn at batch 1 and 64 on 1 and
    all threads; with top-1 and bytes on disk."""
    from tutorial_lib import cache, data
    from tutorial_lib.quant import experiment, int8, packing

    cfg = profiles.resolve(profile)
    bundle = data.load(cfg)
    base, _ = cache.baseline(cfg, bundle)
    shape = (bundle.in_channels, bundle.image_size, bundle.image_size)
    q = int8.ptq(base, bundle, cfg.run, cfg.calibration_batches)
    fast = {"fp32": int8.compiled(base, shape), "int8 post-training": int8.compiled(q, shape)}
    lat = experiment.latencies({"fp32 eager": timer.in_timing_layout(base).eval(), **fast}, shape, rounds=repeats)
    accuracy = {name: int8.evaluate_fixed(m, bundle.test) for name, m in fast.items()}
    accuracy["fp32 eager"] = accuracy["fp32"]
    size = {"fp32": packing.model_bytes(base), "fp32 eager": packing.model_bytes(base),
            "int8 post-training": int8.int8_bytes(q)}
    return {"cfg": cfg, "table": experiment.int8_table(accuracy, size, lat)}


def report_quant(profile: str, repeats: int) -> None:
    r = quant_speedups(profile, min(repeats, 3))
    t = r["table"].set_index("model")
    print(f"int8 on the CPU ({timer.cpu_name()}), {profile} profile: {r['cfg'].arch} x{r['cfg'].width:g}; "
          f"PT2E + x86 inductor quantizer, compiled with freezing; median of rounds, models timed in turn")
    print(t[["top-1 %", "bytes on disk", "x fewer bytes"] + [c for c in t.columns if "(ms)" in c]].to_string())
    for col in [c for c in t.columns if c.startswith("speedup") and "batch 64" in c]:
        x = t.loc["int8 post-training", col]
        print(f"  int8 {col.replace('speedup ', '')}: {x:.2f}x (target {INT8_SPEEDUP_TARGET}x: "
              f"{'met' if x >= INT8_SPEEDUP_TARGET else 'not met'})")


def report_notebooks(profile: str, repeats: int) -> None:
    out = paths.results_dir(profile) / "bench"
    for nb in run.notebooks():
        seconds = run.execute(nb, profile, out / nb.name)
        print(f"{nb.name}: {seconds:.1f} s at the {profile} profile")


# What `python -m tutorial_lib.bench <name>` measures and prints: a name, one reporter.
BENCHES: dict[str, Callable[[str, int], None]] = {
    "masks": report_masks, "train": report_train, "distill": report_distill, "depth": report_depth,
    "runtimes": report_runtimes, "constraints": report_constraints, "quant": report_quant,
    "notebooks": report_notebooks, "gpu": report_gpu, "throughput-worker": _throughput_worker,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=list(BENCHES))
    parser.add_argument("--profile", default="tutorial", choices=list(profiles.PROFILES))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    BENCHES[args.what](args.profile, args.repeats)


if __name__ == "__main__":
    main()
