"""Save a compressed model in a deployable form and reload it elsewhere.

The form is ``torch.export``'s program (``.pt2``): the graph and its tensors, no Python class
of ours, so a process that has only ``torch`` and ``torchao`` loads it (:mod:`tutorial_lib.compress.predict`,
run in a fresh interpreter, checks that). An int8 graph (PT2E) keeps its int8 weights, their
scales and zero points; the float weights it was converted from are dropped before export
(they are still attributes of the converted graph, unused, and would quadruple the file).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

PREDICT = Path(__file__).with_name("predict.py")


def _without_unused(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of a graph module without the parameters and buffers its graph never reads."""
    gm = copy.deepcopy(gm)
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            parent, _, child = name.rpartition(".")
            delattr(gm.get_submodule(parent) if parent else gm, child)
    return gm


def save(model: nn.Module, path: str | Path, example: torch.Tensor | None = None) -> Path:
    """Export ``model`` (eval mode, any batch size) to ``path`` (``.pt2``). ``example``: one input
    batch of at least two images (default: the shape the int8 graph was captured with)."""
    path = Path(path)
    if isinstance(model, torch.fx.GraphModule):
        model.eval()  # an exported graph's eval() returns None
        model = _without_unused(model)
    else:
        model = copy.deepcopy(model).cpu().eval()
    if example is None:
        example = _example(model)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (example[:2].contiguous(),), dynamic_shapes=({0: batch},))
    program.example_inputs = None  # no sample batch stored in the file
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    return path


def _example(model: nn.Module) -> torch.Tensor:
    placeholder = next((n for n in model.graph.nodes if n.op == "placeholder"), None) \
        if isinstance(model, torch.fx.GraphModule) else None
    value = placeholder.meta.get("val") if placeholder is not None else None
    if value is None:
        raise ValueError("give an example input batch to export this model")
    return torch.zeros(2, *value.shape[1:])


def load(path: str | Path) -> nn.Module:
    """The module of an exported program (int8 ops registered first), which ``.eval()`` may be
    called on (an exported module refuses it otherwise; its graph has no train-only ops)."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers quantized_decomposed ops)
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    module = torch.export.load(str(path)).module()
    allow_exported_model_train_eval(module)
    return module


def reload_elsewhere(path: str | Path, images: torch.Tensor, folder: str | Path, batch: int = 64,
                     repeats: int = 10, threads: int | None = None) -> dict:
    """Run :mod:`predict` in a fresh Python process on ``images``: the exported model compiled
    there with inductor, its predicted classes and its median latency per batch. Returns what
    it reported (``predictions``, ``ms per batch``, ``modules``: whether ``tutorial_lib`` was
    ever imported there)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs, report = folder / "reload_inputs.pt", folder / "reload_report.json"
    torch.save({"images": images.contiguous()}, inputs)
    cmd = [sys.executable, "-I", str(PREDICT), str(path), str(inputs), str(report), "--batch", str(batch),
           "--repeats", str(repeats), "--threads", str(threads or torch.get_num_threads())]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"reloading {path} in a fresh process failed:\n{done.stderr[-3000:]}")
    return json.loads(report.read_text())


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share (%) of images on which two sets of predicted classes agree."""
    return 100.0 * float((torch.as_tensor(a) == torch.as_tensor(b)).float().mean())
