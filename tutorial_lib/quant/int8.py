"""Real int8 on the CPU through PyTorch's maintained quantization stack: torchao's PT2E flow
with the x86 inductor quantizer, lowered to oneDNN int8 kernels by ``torch.compile``.

PT2E: ``torch.export`` captures the model as a graph, the quantizer annotates which tensors
become int8 (weights per output channel, activations per tensor), ``prepare`` inserts
observers whose statistics come from a few calibration batches, ``convert`` folds the
weights to int8, and inductor with ``freezing`` fuses each ``dequant -> conv -> quant`` into
one int8 convolution. (``torch.ao.quantization``'s eager and FX flows are deprecated in
favour of this one; its PT2E code moved to torchao.) A model trained with our own QAT is
converted the same way, from its quantized weights (``qat.baked``): PT2E's own QAT graph
(``prepare_qat_pt2e``) converted fine (83.6% top-1 run by the reference int8 ops) but
inductor miscompiled it (9.6%, chance; torchao 0.18, torch 2.14, measured on this VGG), and
its export and preparation took 20 s before the first step.

One departure: the max-pools stay in float. Annotated, their int8 lowering drops
``ceil_mode``, so the VGG's last pool on the 24x24 tutorial images (2x2 -> 1x1 with
ceil_mode, 1x1 -> 0x0 without) fails to compile ("Output size is too small", torchao 0.18,
torch 2.14): each pool costs a dequantize and a quantize instead.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings

import pandas as pd
import torch
from torch import nn

from tutorial_lib import data

BATCHES = (1, 64)  # the batch sizes a compiled model is prepared for
# inductor's int8 lowering copy-constructs a tensor on every compile (torch 2.14): a warning
# about its own code, not ours, that would fill the lesson's outputs
warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)


def _pt2e():
    # torchao 0.18 registers an Enum with torch's pytree on import, which torch 2.14 logs as deprecated
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchao.quantization.pt2e as pt2e
        import torchao.quantization.pt2e.quantize_pt2e as flow
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    return pt2e, flow, x86


def quantizer():
    """The x86 inductor quantizer, int8 everywhere but the max-pools (see the module's note)."""
    _, _, x86 = _pt2e()
    q = x86.X86InductorQuantizer()
    q.set_global(x86.get_default_x86_inductor_quantization_config())
    q.set_module_type_qconfig(nn.MaxPool2d, None)
    return q


def _exported(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (eval mode, NCHW) captured by ``torch.export``, any batch size."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    model = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()


@torch.no_grad()
def ptq(model: nn.Module, bundle: data.DataBundle, run, batches: int = 8, batch_size: int = 64) -> nn.Module:
    """Post-training static quantization: observers calibrated on ``batches`` training batches,
    then converted to int8 (a graph module; :func:`compiled` runs it on int8 kernels)."""
    pt2e, flow, _ = _pt2e()
    train_loader, _ = data.loaders(bundle, batch_size, run, torch.Generator().manual_seed(run.seed))
    loader = iter(train_loader)
    first = next(loader)[0].contiguous()
    prepared = flow.prepare_pt2e(_exported(model, first), quantizer())
    prepared(first)
    for _, (x, _) in zip(range(batches - 1), loader):
        prepared(x.contiguous())
    return _converted(prepared)


def _converted(prepared: nn.Module) -> nn.Module:
    pt2e, flow, _ = _pt2e()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = flow.convert_pt2e(prepared)
    pt2e.allow_exported_model_train_eval(out)  # so that evaluate() may call .eval() on it
    return out


class Frozen(nn.Module):
    """A model compiled by inductor with ``freezing`` (weights folded as constants: what turns
    an int8 graph into int8 kernels). Every call runs under that setting, so a recompile (a
    new thread count or batch size fails a guard) freezes too: compiled outside it, the int8
    graph ran float32 convolutions on dequantized weights (measured: ``where_time_goes``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.fast = torch.compile(model, dynamic=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor

        with inductor.patch(freezing=True):
            return self.fast(x)

    def train(self, mode: bool = True) -> "Frozen":
        self.training = mode  # the compiled model stays in eval mode
        return self


@torch.no_grad()
def compiled(model: nn.Module, shape: tuple[int, ...], batches: tuple[int, ...] = BATCHES) -> Frozen:
    """``model`` (eval mode) compiled by inductor with freezing (:class:`Frozen`), compiled now for
    each batch size of ``batches`` at the current thread count."""
    if isinstance(model, torch.fx.GraphModule):
        model.eval()  # (an exported int8 model's eval() returns None)
    else:
        model = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()
    fast = Frozen(model)
    for b in batches:
        fast(torch.zeros(b, *shape))
    return fast


def int8_bytes(model: nn.Module) -> int:
    """Bytes ``torch.save`` writes for the tensors an int8 graph reads (int8 weights, their
    scales and zero points, float biases): what a deployment of it loads."""
    used = {n.target for n in model.graph.nodes if n.op == "get_attr"}
    state = {k: v for k, v in model.state_dict().items() if k in used}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def fixed_batch(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``model``'s output for ``x`` (at most ``batch_size`` images) run as a batch of exactly
    ``batch_size`` (padded with zeros, the padding's outputs dropped), so that a model compiled
    for that batch never recompiles."""
    n = len(x)
    if n < batch_size:
        x = torch.cat([x, x.new_zeros(batch_size - n, *x.shape[1:])])
    return model(x.contiguous())[:n]


def evaluate_fixed(model: nn.Module, dataset, batch_size: int = 64) -> float:
    """Top-1 (%) with every batch exactly ``batch_size`` images (:func:`fixed_batch`)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    correct = total = 0
    for x, y in loader:
        correct += (fixed_batch(model, x, batch_size).argmax(1) == y).sum().item()
        total += len(y)
    return 100.0 * correct / max(total, 1)


@torch.no_grad()
def where_time_goes(models: dict[str, nn.Module], shape: tuple[int, ...], batch: int = 64, calls: int = 20,
                    top: int = 6) -> pd.DataFrame:
    """``torch.profiler``'s self CPU time per operator, the ``top`` of each model, over ``calls``
    forward passes of a ``batch``: where a compiled model spends its time (ms per call)."""
    from torch.profiler import ProfilerActivity, profile

    from tutorial_lib.measure.profiler import native_stderr_silenced

    x = torch.randn(batch, *shape)
    rows = []
    for name, model in models.items():
        model(x)
        with native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                model(x)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        for e in events[:top]:
            rows.append({"model": name, "operator": e.key, "ms per call": round(e.self_cpu_time_total / calls / 1e3, 3),
                         "share %": round(100 * e.self_cpu_time_total / total, 1)})
    return pd.DataFrame(rows)
