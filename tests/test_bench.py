import pytest
import torch

from tutorial_lib import bench, models, profiles
from tutorial_lib.measure import timer


def test_mask_overhead_benchmark_reports_its_figures():
    r = bench.masks_overhead("smoke", repeats=1, steps=1)
    assert r["plain_ms"] > 0 and r["masked_ms"] > 0
    assert r["ratio"] == r["masked_ms"] / r["plain_ms"] and r["target"] == 1.10
    assert r["threads"] >= 1


def test_latency_measurement_reports_its_conditions():
    cfg = profiles.resolve("smoke")
    lat = timer.measure_latency(models.build(cfg, 10), (2, 3, 32, 32), threads=1, min_run_time=0.05)
    assert lat.median_ms > 0 and lat.batch_size == 2 and lat.threads == 1
    assert lat.platform.startswith("torch-cpu-1t")


def test_depth_benchmark_prints_the_targets_beside_the_speed_ceiling(capsys):
    bench.main(["depth", "--profile", "smoke"])
    out = capsys.readouterr().out
    assert "every prunable conv at one filter" in out and "ceiling" in out
    assert "parameters removed (%)" in out and "D1-all rise on the test set (points)" in out


def test_runtimes_benchmark_prints_a_row_per_runtime_and_thread_count(capsys, monkeypatch):
    from tutorial_lib.measure import platforms, runtimes

    monkeypatch.setattr(runtimes, "RUNTIMES", {"eager": runtimes.RUNTIMES["eager"]})  # no compiling here
    bench.main(["runtimes", "--profile", "smoke"])
    out = capsys.readouterr().out
    assert "pruned speedup (x)" in out and "ceiling speedup (x)" in out
    assert out.count("eager") == len({1, platforms.all_threads()})


def test_nan_fill_benchmark_prints_both_steps_and_restores_repro_setting(capsys):
    import torch.utils.deterministic as det

    bench.main(["train", "--profile", "smoke", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "with torch's NaN fill" in out and "without (repro's setting)" in out and "saved" in out
    assert "channels-last (the lessons' layout)" in out and "logits read back (memo)" in out
    assert "images/s" in out and "1 process on cpu" in out and "DDP, 2 processes" in out and "ratio to 1 process" in out
    assert det.fill_uninitialized_memory is False


def test_in_turn_takes_each_timer_in_rounds_and_keeps_its_median():
    calls, readings = [], {"a": iter([1.0, 9.0, 2.0]), "b": iter([5.0, 4.0, 6.0])}
    timers = {name: (lambda n=name: calls.append(n) or [next(readings[n])]) for name in readings}
    assert timer.in_turn(timers, rounds=3) == {"a": 2.0, "b": 5.0}  # the slow round of a (9.0) is dropped
    assert calls == ["a", "b"] * 3  # interleaved, not one timer's rounds after the other's


def test_quant_benchmark_prints_int8_speedups_against_both_float32_runs(capsys):
    bench.main(["quant", "--profile", "smoke", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "int8 post-training" in out and "fp32 eager" in out
    from tutorial_lib.measure import platforms

    # batch 64 on 1 and all threads, against float32 compiled and eager
    assert out.count("target 1.5x") == 2 * len({1, platforms.all_threads()})


def test_the_gpu_check_runs_the_paper_path_and_says_when_there_is_no_gpu():
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device here"):
            bench.main(["gpu"])
    r = bench.gpu_check(steps_per_epoch=2, prune_epochs=1, device="cpu", width=1 / 16, batch_size=8, num_workers=0)
    assert r["steps"] == 4 and r["images_per_s"] > 0 and r["precision"] == "fp32"
    assert r["recipe_h"] == pytest.approx((164 + 100) * 50_000 / r["images_per_s"] / 3600)
