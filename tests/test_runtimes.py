"""Inference runtimes: each computes what eager PyTorch computes, and the speedup table's rows."""

import pytest
import torch

from tutorial_lib.measure import runtimes
from tutorial_lib.models.monodepth import PRUNABLE, MonoDepth

SHAPE = (1, 3, 128, 128)


def tiny(widths=None) -> MonoDepth:
    torch.manual_seed(0)
    return MonoDepth(width=1 / 32, widths=widths).eval()


@pytest.mark.parametrize("runtime", list(runtimes.RUNTIMES))
def test_every_runtime_computes_the_eager_disparities(runtime):
    model = tiny()
    x = torch.rand(SHAPE)
    with torch.no_grad():
        expected = model(x)
        got = runtimes.prepare(model, runtime, SHAPE)(x)
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        assert a.shape == b.shape and torch.allclose(a.contiguous(), b, atol=1e-5)


def test_prepare_leaves_the_caller_s_model_as_it_was():
    model = tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runtimes.prepare(model, "channels_last", SHAPE)
    assert model.training and model.conv1a.weight.is_contiguous()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_speedups_has_a_row_per_runtime_and_thread_count_relative_to_the_first_model():
    models = {"baseline": tiny(), "one filter": tiny([1] * len(PRUNABLE))}
    threads = torch.get_num_threads()
    table = runtimes.speedups(models, SHAPE, runtimes=["eager", "inductor"], threads=[1], rounds=1,
                              min_run_time=0.02)
    assert list(table["runtime"]) == ["eager", "inductor"] and list(table["threads"]) == [1, 1]
    assert list(table.columns) == ["runtime", "threads", "baseline (ms)", "one filter (ms)",
                                   "one filter speedup (x)"]
    assert (table[["baseline (ms)", "one filter (ms)"]] > 0).all().all()
    ratio = (table["baseline (ms)"] / table["one filter (ms)"]).round(2)
    assert (abs(ratio - table["one filter speedup (x)"]) <= 0.011).all()
    assert torch.get_num_threads() == threads  # the caller's thread count is restored


def test_an_unknown_runtime_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="eager, channels_last, inductor, inductor_frozen"):
        runtimes.prepare(tiny(), "tensorrt", SHAPE)
    with pytest.raises(ValueError, match="choose from"):
        runtimes.speedups({"m": tiny()}, SHAPE, runtimes=["onnx"])


def test_inductor_gets_a_cache_per_cpu_capability_as_soon_as_the_library_is_imported(monkeypatch):
    import os
    import subprocess
    import sys

    from tutorial_lib.measure import inductor_cache

    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    for capability in ("avx2", None):  # bench imports modules that fix inductor's default cache when first imported
        run_env = {**env, "ATEN_CPU_CAPABILITY": capability} if capability else env
        out = subprocess.run([sys.executable, "-c", "import os, tutorial_lib.bench; print(os.environ['TORCHINDUCTOR_CACHE_DIR'])"],
                             env=run_env, capture_output=True, text=True, check=True).stdout.strip()
        want = capability or torch.backends.cpu.get_cpu_capability().lower()
        assert out.endswith("_" + want), out
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/chosen")
    assert inductor_cache.inductor_cache_dir() == "/somewhere/chosen"
