"""A compression recipe: the stages to apply, in order, each with its parameters.

The format is YAML, read into frozen dataclasses. YAML because a recipe is what a researcher
writes for the command line (``python -m tutorial_lib.compress RECIPE``) without writing
Python, as Intel Distiller's schedules were; dataclasses behind it because every value is then
checked by the same knob machinery as the lessons' settings (:mod:`tutorial_lib.recipes`), so
a bad value is rejected before any work with a message naming the valid choices::

    name: prune, distill, quantize
    stages:
      - prune: {lambda: 0.03}        # joint masks (lesson 02), or {budget: params, fraction: 0.2} (lesson 04)
      - distill: {method: kd}        # any method of lesson 05's registry
      - quantize: {bits: 8, int8: true}   # QAT (lesson 06), then real int8; or {allocation: hawq, budget: 3}
      - finetune: {epochs: 2}

A stage written as a bare name takes its defaults; a value left out (``None``) takes the
profile's setting of the lesson it comes from (``prune_lambda``, ``quant_steps``, ...), so one
recipe runs at every profile. Instead of stages, a recipe may give a ``target`` (budget mode,
:mod:`tutorial_lib.compress.budget`): the pipeline then chooses its own stages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tutorial_lib.recipes import Recipe, knob

ALLOCATIONS = {"uniform": "uniform", "random": "random", "hawq": "HAWQ (Hessian sensitivity)",
               "dnas": "DNAS (Wu et al.)", "releq": "ReLeQ-style agent"}  # lesson 06's methods by short name
BUDGET_KINDS = ("params", "flops", "latency")


def _distill_methods() -> tuple[str, ...]:
    from tutorial_lib.distill.student import METHODS

    return tuple(m for m in METHODS if m != "scratch")


def _student_archs() -> tuple[str, ...]:
    from tutorial_lib.models.vgg import VGG_SIGNATURES

    return tuple(VGG_SIGNATURES)


def _platforms() -> tuple[str, ...]:
    from tutorial_lib.measure import platforms

    return tuple(platforms.available())


@dataclass(frozen=True)
class Stage(Recipe):
    """One step of a pipeline; its class name, lower-cased, is its name in a recipe."""

    @classmethod
    def stage_name(cls) -> str:
        return cls.__name__.lower()

    def describe(self) -> str:
        """``name(k=v, ...)`` of the values set (not left to the profile)."""
        set_ = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != _default(self, k)}
        return self.stage_name() + (f"({', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in set_.items())})"
                                     if set_ else "")


def _default(stage: Stage, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(stage) if f.name == name)


@dataclass(frozen=True)
class Prune(Stage):
    """Joint end-to-end pruning (lesson 02) at mask-term weight ``lam``, or lesson 04's adaptive
    loop to a ``budget`` (a ``fraction`` of the full model's parameters, FLOPs or latency); then
    packed into a smaller dense model. A fake-quantized model is pruned with its quantizers on."""

    lam: float | None = knob(None, 0.0, 1000.0, help="mask-term weight (None: the profile's prune_lambda)")
    epochs: int | None = knob(None, 1, 10000, help="epochs of joint pruning (None: the profile's prune_epochs)")
    kd_weight: float | None = knob(None, 0.0, 1000.0, help="KD from the teacher in the joint objective (None: "
                                   "the profile's kd_weight, as lesson 02 prunes; 0: no teacher while pruning)")
    budget: str | None = knob(None, choices=BUDGET_KINDS, help="prune to a budget with lesson 04's loop instead")
    fraction: float | None = knob(None, 1e-6, 1.0, help="the budget as a share of the full model's cost")
    platform: str | None = knob(None, choices=_platforms, help="platform of a latency budget "
                                "(None: the profile's latency_platform)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.budget is None) != (self.fraction is None):
            raise ValueError("prune: 'budget' and 'fraction' go together (e.g. budget: params, fraction: 0.2); "
                             f"valid budgets: {', '.join(BUDGET_KINDS)}")
        if self.budget is not None and self.lam is not None:
            raise ValueError("prune: give 'lambda' (joint pruning) or 'budget' (lesson 04's loop), not both")


@dataclass(frozen=True)
class Distill(Stage):
    """Training under the pipeline's teacher (the model the pipeline started from) by a method
    of lesson 05's registry: the current model, or a fresh ``student`` VGG."""

    method: str = knob("kd", choices=_distill_methods, help="distillation method by name")
    weight: float = knob(1.0, 0.0, 100.0, help="multiplies the method's distillation terms (1: RepDistiller's)")
    epochs: int | None = knob(None, 1, 10000, help="epochs (None: the profile's student_epochs)")
    lr: float | None = knob(None, 1e-7, 10.0, help="SGD learning rate (None: prune_lr for the current model, "
                            "the baseline's schedule for a fresh student)")
    student: str | None = knob(None, choices=_student_archs, help="a fresh VGG student of this depth "
                               "(None: distil into the current model)")
    width: float | None = knob(None, 1 / 64, 4.0, help="width multiplier of a fresh student "
                               "(None: the profile's student_width)")


@dataclass(frozen=True)
class Quantize(Stage):
    """Quantization-aware training (lesson 06) at ``bits`` (weights, and activations where
    asked) or at a mixed per-layer ``allocation``; with ``int8``, then converted to real int8
    kernels (PT2E), after which nothing can train the model."""

    bits: int = knob(8, 1, 8, help="bits of weights (and activations) of every quantized layer")
    activations: bool = knob(True, help="quantize activations too, at the same bits")
    allocation: str | None = knob(None, choices=tuple(ALLOCATIONS), help="bits per layer by lesson 06's method "
                                  "(weights only) at 'budget' average bits")
    budget: float | None = knob(None, 2.0, 8.0, help="average weight bits of an allocation "
                                "(None: the profile's quant_budget)")
    steps: int | None = knob(None, 0, 10**7, help="QAT steps (None: the profile's quant_steps)")
    lr: float | None = knob(None, 1e-7, 1.0, help="QAT learning rate (None: the profile's quant_lr)")
    int8: bool = knob(False, help="convert to int8 kernels after QAT (8-bit weights and activations)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.allocation is not None and self.activations:
            raise ValueError("quantize: an 'allocation' sets weight bits only; add 'activations: false'")
        if self.int8 and (self.bits != 8 or not self.activations or self.allocation is not None):
            raise ValueError("quantize: 'int8: true' needs bits: 8 with activations and no allocation "
                             "(int8 kernels are 8-bit weights and activations)")
        if self.budget is not None and self.allocation is None:
            raise ValueError("quantize: 'budget' is the average bits of an 'allocation'; valid allocations: "
                             + ", ".join(ALLOCATIONS))


@dataclass(frozen=True)
class Finetune(Stage):
    """Plain training on the task (cross-entropy), the same length as a distill stage: what a
    pipeline without distillation gets instead, so that a comparison isolates the teacher."""

    epochs: int | None = knob(None, 1, 10000, help="epochs (None: the profile's student_epochs)")
    lr: float | None = knob(None, 1e-7, 10.0, help="SGD learning rate (None: the profile's prune_lr)")


STAGES: dict[str, type[Stage]] = {cls.stage_name(): cls for cls in (Prune, Distill, Quantize, Finetune)}
ALIASES = {"lambda": "lam"}  # YAML names that are Python keywords


@dataclass(frozen=True)
class Target(Recipe):
    """Budget mode's targets, as shares of the starting model's: bytes on disk and latency."""

    bytes: float | None = knob(None, 1e-4, 1.0, help="bytes on disk, share of the starting model's")
    latency: float | None = knob(None, 1e-3, 1.0, help="latency on 'platform' at 'batch', share of the "
                                 "starting model's")
    platform: str | None = knob(None, choices=_platforms, help="platform of the latency target "
                                "(None: the profile's latency_platform)")
    batch: int = knob(1, 1, 4096, help="batch size of the latency target")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bytes is None and self.latency is None:
            raise ValueError("target: give 'bytes' and/or 'latency' (shares of the starting model's)")


@dataclass(frozen=True)
class Pipeline:
    """A named sequence of stages (or, in budget mode, a target and no stages)."""

    name: str
    stages: tuple[Stage, ...] = ()
    target: Target | None = None

    def describe(self) -> str:
        if self.target is not None:
            return f"budget mode ({', '.join(f'{k} {v:g}' for k, v in (('bytes', self.target.bytes), ('latency', self.target.latency)) if v is not None)})"
        return " -> ".join(s.describe() for s in self.stages) or "(no stage: the starting model)"

    def to_dict(self) -> dict:
        """The recipe as ``parse`` reads it back (every value, defaults included)."""
        out: dict[str, Any] = {"name": self.name,
                               "stages": [{s.stage_name(): dataclasses.asdict(s)} for s in self.stages]}
        if self.target is not None:
            out["target"] = dataclasses.asdict(self.target)
        return out


def _stage(entry: Any, position: int) -> Stage:
    where = f"stage {position + 1}"
    if isinstance(entry, str):
        name, params = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        (name, params), = entry.items()
        params = params or {}
    else:
        raise ValueError(f"{where}: write a stage as its name or as 'name: {{parameters}}', got {entry!r}; "
                         f"valid stages: {', '.join(STAGES)}")
    if name not in STAGES:
        raise ValueError(f"{where}: unknown stage {name!r}; valid stages: {', '.join(STAGES)}")
    if not isinstance(params, dict):
        raise ValueError(f"{where} ({name}): parameters must be a mapping, got {params!r}")
    cls = STAGES[name]
    params = {ALIASES.get(k, k): v for k, v in params.items()}
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        shown = [next((a for a, k in ALIASES.items() if k == v), v) for v in valid]
        raise ValueError(f"{where} ({name}): unknown parameter(s) {', '.join(unknown)}; valid parameters: "
                         f"{', '.join(shown)}")
    try:
        return cls(**params)
    except ValueError as err:
        raise ValueError(f"{where} ({name}): {err}") from None


def check_order(stages: tuple[Stage, ...]) -> None:
    """Reject orders that cannot run: anything after int8 conversion (an integer graph cannot
    be pruned, distilled or trained), and a fresh distillation student after other stages
    (it starts over, so their work would be thrown away)."""
    for i, stage in enumerate(stages):
        if isinstance(stage, Quantize) and stage.int8 and i < len(stages) - 1:
            after = stages[i + 1].stage_name()
            raise ValueError(f"stage {i + 2} ({after}) comes after int8 conversion (stage {i + 1}): an int8 graph "
                             "cannot be pruned, distilled or trained; put 'quantize' with int8 last, or quantize "
                             f"without int8 (fake quantization) before {after}")
        if isinstance(stage, Distill) and stage.student is not None and i > 0:
            raise ValueError(f"stage {i + 1} (distill) trains a fresh '{stage.student}' student, which would throw "
                             "away the stages before it: make it the first stage, or leave out 'student' to distil "
                             "into the current model")


def parse(spec: dict) -> Pipeline:
    """A :class:`Pipeline` from a recipe mapping (as YAML gives it), every value and the order
    checked."""
    if not isinstance(spec, dict):
        raise ValueError(f"a recipe is a mapping with 'name' and 'stages' (or 'target'), got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"name", "stages", "target"})
    if unknown:
        raise ValueError(f"unknown recipe key(s) {', '.join(unknown)}; valid keys: name, stages, target")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("a recipe needs a 'name' (a string)")
    entries = spec.get("stages") or []
    if not isinstance(entries, list):
        raise ValueError(f"'stages' must be a list of stages, got {entries!r}; valid stages: {', '.join(STAGES)}")
    target = None
    if spec.get("target") is not None:
        if entries:
            raise ValueError("give 'stages' or a 'target' (budget mode chooses its own stages), not both")
        if not isinstance(spec["target"], dict):
            raise ValueError(f"'target' must be a mapping, e.g. {{bytes: 0.05}}, got {spec['target']!r}")
        fields = [f.name for f in dataclasses.fields(Target)]
        bad = sorted(set(spec["target"]) - set(fields))
        if bad:
            raise ValueError(f"target: unknown key(s) {', '.join(bad)}; valid keys: {', '.join(fields)}")
        target = Target(**spec["target"])
    stages = tuple(_stage(e, i) for i, e in enumerate(entries))
    check_order(stages)
    return Pipeline(name, stages, target)


def load(path: str | Path) -> Pipeline:
    """Read and check a YAML recipe file."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no recipe at {path}; the shipped ones are in {shipped_dir()}: "
                                f"{', '.join(p.stem for p in sorted(shipped_dir().glob('*.yaml')))}")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    return parse(spec)


def shipped_dir() -> Path:
    """The recipes that ship with the package (lesson 07's comparison and budget mode)."""
    return Path(__file__).with_name("recipes")


def shipped(name: str) -> Pipeline:
    """A shipped recipe by file stem (``prune-distill-quantize``)."""
    return load(shipped_dir() / f"{name}.yaml")
