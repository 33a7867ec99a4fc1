"""Lesson 07's library: recipes parsed and rejected before any work, stages checkpointed and
resumed, pruning a fake-quantized model, bit-operations and the Pareto front, export and reload
in a fresh process, and budget mode meeting a bytes budget (smoke data)."""

import pandas as pd
import pytest
import torch

from tutorial_lib import cache, data, masks, paths
from tutorial_lib.compress import budget, cli, experiment, export, pipeline, recipe
from tutorial_lib.models import vgg
from tutorial_lib.pruning.pack import pack
from tutorial_lib.quant import int8, qat, quantizers


def tiny(seed: int = 0) -> vgg.VGG:
    torch.manual_seed(seed)
    return vgg.VGG(vgg.vgg_signature("vgg11", 1 / 16), num_classes=10)


@pytest.fixture
def smoke(smoke_cfg):
    bundle = data.load(smoke_cfg)
    base, _ = cache.baseline(smoke_cfg, bundle)
    return smoke_cfg, bundle, base


# -- recipes -----------------------------------------------------------------------------------

def test_every_shipped_recipe_parses_and_reads_back():
    names = sorted(p.stem for p in recipe.shipped_dir().glob("*.yaml"))
    assert set(experiment.COMPARISON) <= set(names)
    for name in names:
        pipe = recipe.shipped(name)
        assert recipe.parse(pipe.to_dict()) == pipe  # every value written out reads back the same


def test_a_recipe_takes_bare_names_yaml_aliases_and_profile_defaults(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: mine\nstages:\n  - prune: {lambda: 0.05}\n  - finetune\n  - quantize: {bits: 4}\n")
    pipe = recipe.load(path)
    assert [s.stage_name() for s in pipe.stages] == ["prune", "finetune", "quantize"]
    assert pipe.stages[0].lam == 0.05 and pipe.stages[0].epochs is None  # None: the profile's prune_epochs
    assert pipe.stages[2].bits == 4 and not pipe.stages[2].int8
    assert pipe.describe() == "prune(lam=0.05) -> finetune -> quantize(bits=4)"


@pytest.mark.parametrize("spec,message", [
    ({"name": "x", "stages": ["sparsify"]}, "unknown stage 'sparsify'; valid stages: prune, distill, quantize, finetune"),
    ({"name": "x", "stages": [{"prune": {"lamda": 0.1}}]}, "unknown parameter.*lamda.*valid parameters: lambda"),
    ({"name": "x", "stages": [{"prune": {"lambda": -1}}]}, "out of range"),
    ({"name": "x", "stages": [{"distill": {"method": "magic"}}]}, "valid choices: kd, fitnet"),
    ({"name": "x", "stages": [{"quantize": {"bits": 4, "int8": True}}]}, "int8: true' needs bits: 8"),
    ({"name": "x", "stages": [{"quantize": {"allocation": "hawq"}}]}, "activations: false"),
    ({"name": "x", "stages": [{"quantize": {"allocation": "greedy", "activations": False}}]}, "valid choices: uniform"),
    ({"name": "x", "stages": [{"prune": {"budget": "params"}}]}, "'budget' and 'fraction' go together"),
    ({"name": "x", "stages": [{"quantize": {"int8": True}}, "prune"]}, "comes after int8 conversion"),
    ({"name": "x", "stages": ["prune", {"distill": {"student": "vgg8"}}]}, "make it the first stage"),
    ({"name": "x", "stages": ["prune"], "target": {"bytes": 0.1}}, "not both"),
    ({"name": "x", "target": {"bytes": 2.0}}, "out of range"),
    ({"name": "x", "target": {"size": 0.1}}, "valid keys: bytes, latency, platform, batch"),
    ({"stages": ["prune"]}, "needs a 'name'"),
    ({"name": "x", "steps": ["prune"]}, "valid keys: name, stages, target"),
])
def test_invalid_recipes_are_rejected_naming_the_valid_choices(spec, message):
    with pytest.raises(ValueError, match=message):
        recipe.parse(spec)


def test_the_command_line_rejects_a_bad_recipe_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nstages:\n  - quantize: {int8: true}\n  - finetune\n")
    for argv in ([str(bad), "--profile", "smoke"], ["no-such-recipe", "--profile", "smoke"],
                 ["prune", "--profile", "smoke", "-p", "quant_stepz", "3"],
                 ["prune", "--profile", "smoke", "--model", str(tmp_path / "missing.pt")]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
    assert "comes after int8 conversion" in capsys.readouterr().err
    assert not (paths.results_root() / "smoke" / "cache").exists()  # nothing trained


def test_a_state_dict_is_not_a_model_to_compress(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(tiny().state_dict(), path)
    with pytest.raises(ValueError, match="holds a state dict, expected a whole nn.Module"):
        cli.load_model(path)
    torch.save(tiny(), path)
    assert isinstance(cli.load_model(path), vgg.VGG)


# -- the pipeline ----------------------------------------------------------------------------------

def test_a_killed_run_resumes_at_the_stage_it_was_in(smoke, tmp_path, monkeypatch):
    cfg, bundle, base = smoke
    pipe = recipe.shipped("prune-distill-quantize")
    calls = {"prune": 0, "distill": 0}
    real = dict(pipeline.STEPS)

    def counted(kind, crash=False):
        def step(stage, model, ctx, folder):
            calls[kind] += 1
            if crash:
                raise KeyboardInterrupt("killed")
            return real[type(stage)](stage, model, ctx, folder)
        return step

    monkeypatch.setitem(pipeline.STEPS, recipe.Prune, counted("prune"))
    monkeypatch.setitem(pipeline.STEPS, recipe.Distill, counted("distill", crash=True))
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(pipe, base, bundle, cfg, tmp_path / "stages", progress=lambda s: None)
    monkeypatch.setitem(pipeline.STEPS, recipe.Distill, counted("distill"))
    resumed = pipeline.run(pipe, base, bundle, cfg, tmp_path / "stages", progress=lambda s: None)
    assert calls == {"prune": 1, "distill": 2}  # the finished prune stage was loaded, not run again
    assert resumed.is_int8 and len(resumed.log) == 3
    fresh = pipeline.run(pipe, base, bundle, cfg, tmp_path / "other", progress=lambda s: None)
    assert [e["top-1 %"] for e in fresh.log] == [e["top-1 %"] for e in resumed.log]
    for a, b in zip(fresh.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_recipes_that_begin_alike_share_their_first_stages(smoke, tmp_path):
    cfg, bundle, base = smoke
    a = pipeline.run(recipe.shipped("prune-distill"), base, bundle, cfg, tmp_path, progress=lambda s: None)
    b = pipeline.run(recipe.shipped("prune-distill-quantize"), base, bundle, cfg, tmp_path, progress=lambda s: None)
    assert b.log[:2] == a.log
    assert len(list(tmp_path.glob("distill-*"))) == 1


def test_pruning_a_fake_quantized_model_keeps_its_quantizers():
    model = qat.quantized_copy(tiny(), 4, 8)
    x = torch.randn(8, 3, 24, 24)
    with torch.no_grad():
        model.eval()(x)  # the steps start from this batch
    masked = masks.insert_masks(model, seed=0)
    for m in masks.masks_of(masked).values():
        with torch.no_grad():
            m.logits[0, ::3] = -1.0  # shut a third of every layer's gates
    packed = pack(masked).eval()
    assert quantizers.bits_of(packed) == quantizers.bits_of(model)
    with torch.no_grad():
        assert torch.allclose(packed(x), masked.eval()(x), atol=1e-5)
    assert sum(p.numel() for p in packed.parameters()) < sum(p.numel() for p in model.parameters())


def test_bit_operations_weigh_each_layers_flops_by_its_bits():
    model = tiny()
    shape = (1, 3, 24, 24)
    flops = pipeline.layer_flops(model, shape)
    assert pipeline.bit_operations(model, shape) == 32 * 32 * sum(flops.values())
    q = qat.quantized_copy(model, 4, 8)
    names = quantizers.quantizable(q)
    expected = sum(f * (4 * 8 if n in names else 32 * 32) for n, f in flops.items())
    assert pipeline.bit_operations(q, shape) == expected


def test_the_pareto_front_keeps_only_the_undominated():
    table = pd.DataFrame({"bytes": [100, 50, 50, 10, 60], "top-1 % mean": [90.0, 85.0, 80.0, 70.0, 84.0]})
    assert experiment.on_front(table, "bytes") == [True, True, False, True, False]


# -- export ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_an_exported_model_predicts_the_same_in_a_process_without_tutorial_lib(kind, smoke, tmp_path):
    cfg, bundle, base = smoke
    model = base.eval() if kind == "float32" else int8.ptq(base, bundle, cfg.run, 1, 32)
    images = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    path = export.save(model, tmp_path / "m.pt2", images[:2])
    with torch.no_grad():
        here = model(images).argmax(1)
    report = export.reload_elsewhere(path, images, tmp_path, batch=16, repeats=2)
    assert export.agreement(here, report["predictions"]) >= 99.5
    assert report["tutorial_lib imported"] is False
    assert report["file bytes"] == path.stat().st_size


# -- budget mode --------------------------------------------------------------------------------

def test_budget_mode_meets_a_bytes_budget_exactly_as_planned(smoke, tmp_path):
    cfg, bundle, base = smoke
    target = recipe.parse({"name": "quarter", "target": {"bytes": 0.25}})
    outcome = budget.run(target, base, bundle, cfg, tmp_path, progress=lambda s: None, shares=(0.5,))
    row = outcome.candidates.iloc[0]
    assert row["verdict"] == "meets every target" and row["chosen"] == "yes"
    assert row["bytes"] <= 0.25 * pipeline.on_disk(pipeline.Stepped(base, base))
    assert row["bytes"] == row["planned bytes"]  # arithmetic: what was planned is what was written
    assert outcome.chosen is not None and outcome.recipe.stages[-1].stage_name() == "quantize"


def test_budget_mode_says_when_no_candidate_fits(smoke, tmp_path):
    cfg, bundle, base = smoke
    target = recipe.parse({"name": "tiny", "target": {"bytes": 0.001}})
    outcome = budget.run(target, base, bundle, cfg, tmp_path, progress=lambda s: None, shares=(0.5,))
    assert outcome.chosen is None
    assert outcome.candidates["verdict"].iloc[0].startswith("infeasible")


def test_the_command_line_writes_every_stage_a_table_a_figure_and_the_exported_model(smoke, tmp_path):
    cfg, bundle, base = smoke
    out = tmp_path / "out"
    assert cli.main(["prune-quantize", "--profile", "smoke", "--out", str(out)]) == 0
    for name in ("table.csv", "table.md", "figure.png", "model.pt2", "predict.py", "recipe.json"):
        assert (out / name).exists(), name
    assert len(list((out / "stages").glob("*/stage.json"))) == 3
    table = pd.read_csv(out / "table.csv")
    assert table["stage"].iloc[0].startswith("start") and len(table) == 4
    model = export.load(out / "model.pt2")
    assert model(torch.stack([bundle.test[i][0] for i in range(4)])).shape == (4, bundle.num_classes)
