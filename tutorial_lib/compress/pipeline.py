"""Run a compression recipe: each stage on the model the previous one left, a checkpoint after
every stage, so a killed run resumes at the stage it was in (and, inside a training stage, at
its last epoch: ``train.fit``'s checkpoints).

Every stage calls the lesson code that teaches it: ``prune`` is lesson 02's joint pruning
(``joint.train_joint`` then ``pack``) or lesson 04's adaptive loop; ``distill`` is lesson 05's
``train_student``; ``quantize`` is lesson 06's QAT (``qat``) and int8 conversion (``int8.ptq``);
``finetune`` is ``train.fit``. The teacher of every KD term is the model the pipeline started
from, frozen.

A stage's folder is named by a hash of the stages up to it (and the seed, the settings and the
code they read), so two recipes that begin alike share their first stages: the comparison's
``prune -> distill -> quantize`` reuses ``prune -> distill``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tutorial_lib import cache, data, distributed, masks, models, repro, train
from tutorial_lib.compress import export
from tutorial_lib.compress.recipe import ALLOCATIONS, Distill, Finetune, Pipeline, Prune, Quantize, Stage
from tutorial_lib.constraints import experiment as constrained
from tutorial_lib.constraints.budget import Budget, spec_cost
from tutorial_lib.distill.student import train_student
from tutorial_lib.models import vgg
from tutorial_lib.pruning import compare, joint
from tutorial_lib.pruning.pack import pack
from tutorial_lib.quant import experiment as lesson06
from tutorial_lib.quant import int8, qat, quantizers
from tutorial_lib.recipes import Schedule

# What a stage's result depends on besides the stages: the recipes the stages read defaults
# from, and the code (this module's closure, which holds every lesson it calls).
RECIPES = ("baseline", "gates", "objective", "joint", "students", "constraints", "quant")
CODE = (__name__,)


@dataclass
class Stepped:
    """A model after some stages: the model to run (``deployed``: an int8 graph after int8
    conversion, else the model itself), the trainable model it came from (``model``), and what
    each stage logged."""

    model: nn.Module
    deployed: nn.Module
    log: list[dict] = field(default_factory=list)

    @property
    def is_int8(self) -> bool:
        return self.deployed is not self.model


@dataclass
class Context:
    """What every stage reads: the data, the settings (seed included), the frozen teacher."""

    bundle: data.DataBundle
    cfg: object
    teacher: nn.Module
    start: nn.Module  # the model the first stage works on (a copy of the teacher)
    from_baseline: bool = False  # the starting model is the profile's cached baseline


def evaluate(model: nn.Module, bundle: data.DataBundle, cfg) -> float:
    """Top-1 (%) on the test split (an int8 graph: by PyTorch's reference int8 ops)."""
    return train.evaluate(model, data.loaders(bundle, 256, cfg.run)[1], cfg.device)["accuracy"]


def _finetune_schedule(cfg, epochs: int, lr: float) -> Schedule:
    return Schedule(epochs=epochs, batch_size=cfg.batch_size, lr=lr, weight_decay=cfg.weight_decay)


def _recalibrated(model: nn.Module, ctx: Context) -> nn.Module:
    """Batch norm re-estimated after packing (lesson 02 does the same for every method)."""
    return train.recalibrate_bn(model, data.loaders(ctx.bundle, ctx.cfg.batch_size, ctx.cfg.run)[0], ctx.cfg.device)


def _prune_to_budget(stage: Prune, model: nn.Module, ctx: Context) -> nn.Module:
    """Lesson 04's adaptive loop on a copy of ``model``, to ``stage.fraction`` of its own cost."""
    if quantizers.is_quantized(model):
        raise ValueError("prune with a budget runs lesson 04's loop, which takes a float model: quantize after it")
    latency = stage.budget == "latency"
    platform = (stage.platform or ctx.cfg.latency_platform) if latency else None
    cfg = ctx.cfg.replace(latency_platform=platform) if latency else ctx.cfg
    batch = cfg.latency_batch if latency else 1
    table = constrained.make_table(cfg, model, ctx.bundle) if latency else None
    full = spec_cost(constrained.full_topology(model), stage.budget, constrained.shape_of(ctx.bundle, batch), platform,
                     table=table)
    b = Budget(stage.budget, stage.fraction * full if latency else int(stage.fraction * full), platform, batch)
    return constrained.run_constrained(model, ctx.bundle, cfg, b, table).model


def prune(stage: Prune, model: nn.Module, ctx: Context, folder: Path) -> nn.Module:
    """Joint pruning (lesson 02) of a copy of ``model``, packed and its batch norm re-estimated; or
    lesson 04's loop to a budget. A fake-quantized model keeps its quantizers through both."""
    if stage.budget is not None:
        return _prune_to_budget(stage, model, ctx)
    cfg = ctx.cfg
    lam = cfg.prune_lambda if stage.lam is None else stage.lam
    epochs = stage.epochs or cfg.prune_epochs
    kd_weight = cfg.kd_weight if stage.kd_weight is None else stage.kd_weight
    if ctx.from_baseline and model is ctx.start and (lam, epochs, kd_weight) == (cfg.prune_lambda, cfg.prune_epochs,
                                                                             cfg.kd_weight):
        return compare.joint_pruned(model, ctx.bundle, cfg)  # lesson 02's run, from the shared cache
    masked = masks.insert_masks(copy.deepcopy(model), seed=cfg.seed)
    joint.train_joint(
        masked, ctx.bundle, cfg, epochs=epochs, lam=lam, weight_lr=cfg.prune_lr, mask_loss=cfg.mask_loss,
        teacher=ctx.teacher if kd_weight > 0 else None, task_weight=cfg.task_weight, kd_weight=kd_weight,
        temperature=cfg.kd_temperature, checkpoint_dir=folder, desc="prune", settle_epochs=cfg.prune_settle_epochs,
        warmup_epochs=cfg.prune_warmup_epochs)
    return _recalibrated(pack(masked), ctx)


def distill(stage: Distill, model: nn.Module, ctx: Context, folder: Path) -> nn.Module:
    """Lesson 05's ``train_student`` under the frozen teacher: a copy of ``model`` at a constant
    rate (``prune_lr``), or a fresh VGG student on the baseline's schedule stretched to its epochs."""
    cfg = ctx.cfg
    epochs = stage.epochs or cfg.student_epochs
    if stage.student is not None:
        signature = vgg.vgg_signature(stage.student, stage.width or cfg.student_width)
        with repro.seeded(cfg.seed):  # the student's first weights come from the run's seed
            student = vgg.VGG(signature, num_classes=ctx.bundle.num_classes, in_channels=ctx.bundle.in_channels)
        schedule = train.stretched(cfg.baseline.schedule, epochs)
        schedule = schedule if stage.lr is None else schedule.replace(lr=stage.lr)
    else:
        student = copy.deepcopy(model)
        schedule = _finetune_schedule(cfg, epochs, stage.lr or cfg.prune_lr)
    train_student(student, ctx.teacher, ctx.bundle, cfg, stage.method, epochs, checkpoint_dir=folder,
                  schedule=schedule, weight=stage.weight)
    return student


def finetune(stage: Finetune, model: nn.Module, ctx: Context, folder: Path) -> nn.Module:
    """Cross-entropy training of a copy of ``model`` at a constant rate (``prune_lr``)."""
    cfg = ctx.cfg
    epochs = stage.epochs or cfg.student_epochs
    out = copy.deepcopy(model)
    train.fit(out, ctx.bundle, _finetune_schedule(cfg, epochs, stage.lr or cfg.prune_lr), cfg.run,
              checkpoint_dir=folder, desc="finetune", evaluate_each_epoch=False)
    return out


def bits_for(stage: Quantize, model: nn.Module, ctx: Context) -> int | list[int]:
    """The weight bits of a quantize stage: one bit-width, or lesson 06's allocation by name."""
    if stage.allocation is None:
        return stage.bits
    cfg = ctx.cfg.replace(quant_budget=stage.budget or ctx.cfg.quant_budget)
    method = ALLOCATIONS[stage.allocation]
    found, _ = lesson06.allocations(model, ctx.bundle, cfg, methods=(method,))
    return found[method][0]


def already_at(model: nn.Module, stage: Quantize, keep_first_last: bool) -> bool:
    """Whether ``model`` is fake-quantized exactly as ``stage`` asks (one bit-width): then a
    quantize stage goes on training its quantizers instead of starting them over."""
    if stage.allocation is not None or not quantizers.is_quantized(model):
        return False
    layers = quantizers.layers(model)
    want_a = stage.bits if stage.activations else quantizers.FULL
    return all(getattr(layers[n], "w_quant", None) is not None and layers[n].w_quant.bits == stage.bits
               and layers[n].a_quant.bits == want_a for n in quantizers.quantizable(model, keep_first_last))


def steps_from_first_batch(q: nn.Module, bundle: data.DataBundle, cfg) -> nn.Module:
    """``q`` with its quantizers' steps set, untrained: they start from the first batch they see."""
    with torch.no_grad():
        q.eval()(data.first_batch(bundle, cfg.batch_size, cfg.run))
    return q


def quantize(stage: Quantize, model: nn.Module, ctx: Context, folder: Path) -> Stepped:
    """Lesson 06's QAT of a copy of ``model`` (or of its quantizers where it is already quantized at
    these bits), then, with ``int8``, PT2E's conversion of its quantized weights (``qat.baked``)."""
    cfg = ctx.cfg
    keep = cfg.quant_keep_first_last
    if already_at(model, stage, keep):
        q = copy.deepcopy(model)
    else:
        w_bits = bits_for(stage, model, ctx)
        q = qat.quantized_copy(model, w_bits, stage.bits if stage.activations else None, keep, cfg.quant_binary)
    steps = cfg.quant_steps if stage.steps is None else stage.steps
    if steps:
        qat.finetune(q, ctx.bundle, cfg.run, steps, stage.lr or cfg.quant_lr, batch_size=cfg.batch_size)
    else:
        steps_from_first_batch(q, ctx.bundle, cfg)
    if not stage.int8:
        return Stepped(q, q)
    return Stepped(q, int8.ptq(qat.baked(q), ctx.bundle, cfg.run, cfg.calibration_batches, cfg.batch_size))


STEPS: dict[type[Stage], Callable] = {Prune: prune, Distill: distill, Finetune: finetune, Quantize: quantize}


def stage_key(stages: tuple[Stage, ...], cfg, bundle: data.DataBundle) -> str:
    """A short hash of the stages so far, their settings, code and training data (what a stage
    folder is named by: budget mode trains on the training split less its held-out images)."""
    blob = json.dumps([[s.stage_name(), dataclasses.asdict(s)] for s in stages], sort_keys=True, default=str)
    data_key = f"{bundle.name}:{len(bundle.train)}"
    return hashlib.sha256((blob + data_key + cache.key(cfg, RECIPES, CODE)).encode()).hexdigest()[:12]


def _save(folder: Path, result: Stepped, entry: dict) -> None:
    if distributed.is_main():  # under torchrun, rank 0 writes and the others wait for it
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(result.model, folder / "model.pt")
        if result.is_int8:
            export.save(result.deployed, folder / "model_int8.pt2")
        (folder / "stage.json").write_text(json.dumps(entry, indent=1))  # written last: the stage is done
    distributed.barrier()


def _load(folder: Path) -> tuple[Stepped, dict] | None:
    if not distributed.exists(folder / "stage.json"):
        return None
    model = torch.load(folder / "model.pt", weights_only=False)
    int8_file = folder / "model_int8.pt2"
    deployed = export.load(int8_file) if int8_file.exists() else model
    return Stepped(model, deployed), json.loads((folder / "stage.json").read_text())


def run(recipe: Pipeline, model: nn.Module, bundle: data.DataBundle, cfg, store: str | Path,
        progress: Callable[[str], None] = print, from_baseline: bool = False) -> Stepped:
    """Apply ``recipe``'s stages to a copy of ``model`` (left as it is, and the teacher of every
    KD term), with a checkpoint per stage under ``store``; a stage already there is loaded, not
    run again. Returns the result, with one log entry per stage (top-1, seconds, where it lies).

    ``from_baseline``: ``model`` is the profile's cached baseline, so a first ``prune`` stage with
    lesson 02's settings is lesson 02's joint-pruned model of this seed, from the shared cache."""
    if recipe.target is not None:
        raise ValueError(f"{recipe.name!r} is a budget-mode recipe (a target, no stages): "
                         "run it with tutorial_lib.compress.budget.run")
    store = Path(store)
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    start = copy.deepcopy(model)
    ctx = Context(bundle, cfg, teacher, start, from_baseline)
    current = Stepped(start, start)
    for i, stage in enumerate(recipe.stages):
        folder = store / f"{stage.stage_name()}-{stage_key(recipe.stages[: i + 1], cfg, bundle)}"
        loaded = _load(folder)
        if loaded is not None:
            result, entry = loaded
            progress(f"[{recipe.name}] stage {i + 1} {stage.describe()}: done before, loaded from {folder}")
        else:
            progress(f"[{recipe.name}] stage {i + 1} {stage.describe()}...")
            t0 = time.perf_counter()
            out = STEPS[type(stage)](stage, current.model, ctx, folder / "training")
            result = out if isinstance(out, Stepped) else Stepped(out, out)
            entry = {"stage": stage.describe(), "top-1 %": round(evaluate(result.deployed, bundle, cfg), 2),
                     "seconds": round(time.perf_counter() - t0, 1), "folder": str(folder)}
            _save(folder, result, entry)
            progress(f"[{recipe.name}] stage {i + 1} done: top-1 {entry['top-1 %']:.2f}% in {entry['seconds']:.0f} s")
        result.log = current.log + [entry]
        current = result
    return current


def layer_flops(model: nn.Module, shape: tuple[int, ...]) -> dict[str, int]:
    """FLOPs per image of each convolution and linear layer (2 per multiply-add), from one forward pass."""
    out: dict[str, int] = {}
    hooks = []
    for name, m in quantizers.layers(model).items():
        def hook(mod, inputs, output, name=name):
            per_out = mod.weight[0].numel() if isinstance(mod, nn.Conv2d) else mod.in_features
            out[name] = 2 * per_out * output[0].numel()
        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape[1:]))
    finally:
        for h in hooks:
            h.remove()
    return out


def bit_operations(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Bit-operations per image (BOPs, Baskin et al.): each layer's FLOPs x its weight bits x its
    activation bits; a float32 layer counts 32 x 32."""
    flops = layer_flops(model, shape)
    weights, activations = quantizers.bits_of(model), quantizers.bits_of(model, "a_quant")
    return int(sum(flops[n] * weights[n] * activations[n] for n in weights))


def on_disk(result: Stepped) -> int:
    """Bytes of the model as it would be deployed: the int8 graph's tensors, the bit-packed
    fake-quantized weights, or float32."""
    from tutorial_lib.quant import packing

    return int8.int8_bytes(result.deployed) if result.is_int8 else packing.model_bytes(result.model)


def deployable_float(result: Stepped) -> nn.Module:
    """The model with its quantized weights in float32 and no quantizers (a float model: itself):
    what runs where there are no kernels below 8 bits, and what parameters are counted on."""
    return qat.baked(result.model) if quantizers.is_quantized(result.model) else result.model


def deployable(result: Stepped) -> nn.Module:
    """What runs on the CPU: the int8 graph, else :func:`deployable_float`."""
    return result.deployed if result.is_int8 else deployable_float(result)


def measure(result: Stepped, bundle: data.DataBundle, cfg) -> dict:
    """One row of a comparison: top-1 of the deployed model, parameters, bytes on disk, FLOPs and
    bit-operations per image, and the average weight bits of the quantized layers."""
    from tutorial_lib.cost import count

    shape = (1, bundle.in_channels, bundle.image_size, bundle.image_size)
    bits = [b for b in quantizers.bits_of(result.model).values() if b != quantizers.FULL]
    return {"top-1 %": round(evaluate(result.deployed, bundle, cfg), 2), "params": count(deployable_float(result), "params"),
            "bytes": on_disk(result), "MFLOPs": round(count(result.model, "flops", shape) / 1e6, 3),
            "GBOPs": round(bit_operations(result.model, shape) / 1e9, 3),
            "weight bits": round(sum(bits) / len(bits), 2) if bits else quantizers.FULL,
            "int8 kernels": "yes" if result.is_int8 else "no"}


def check_input_model(model: nn.Module) -> None:
    """A model the stages can work on: one that ``models.from_spec`` can rebuild (pruning packs
    through the spec), else a clear error."""
    if not callable(getattr(model, "spec", None)):
        raise TypeError(f"{type(model).__name__} has no spec(): pruning rebuilds the packed model from it "
                        "(see models.vgg.VGG.spec); give the model class spec()/from_spec to compress it")
    models.from_spec(model.spec())

