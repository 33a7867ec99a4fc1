"""Strict parameters: a name the notebook does not declare is rejected before any work,
through plain papermill, through ``python -m tutorial_lib.run`` and in the kernel itself."""

import papermill as pm
import pytest

from tutorial_lib import parameters, paths, run

PARAMS_CELL = 'profile = "tutorial"  # smoke | tutorial | paper\nseed = None\nwidth: float = None\n'


def test_assigned_names_reads_top_level_assignments_only():
    assert parameters.assigned_names(PARAMS_CELL) == ["profile", "seed", "width"]
    assert parameters.assigned_names("def f():\n    x = 1\nimport os\n") == []
    assert parameters.assigned_names("not python (") == []


def test_history_without_an_injected_cell_checks_nothing():
    assert parameters.split_history(["", PARAMS_CELL, "import torch"]) == ([], [])
    assert parameters.check_history(["", PARAMS_CELL]) == []


def test_injected_names_must_be_declared():
    injected = '# Parameters\nprofile = "smoke"\nseed = 3\n'
    assert parameters.check_history(["", PARAMS_CELL, injected, "import torch"]) == ["profile", "seed", "width"]
    typo = '# Parameters\nprofile = "smoke"\nprune_lamda = 0.1\n'
    with pytest.raises(parameters.UnknownParameterError,
                       match="unknown parameter.*prune_lamda.*valid parameters: profile, seed, width"):
        parameters.check_history(["", PARAMS_CELL, typo])


def test_run_rejects_an_undeclared_name_before_any_notebook_starts(monkeypatch):
    started = []
    monkeypatch.setattr(run, "execute", lambda *a, **k: started.append(a) or 1.0)
    with pytest.raises(parameters.UnknownParameterError, match=r"prune_lamda.*valid parameters.*prune_lambda"):
        run.run("smoke", params={"prune_lamda": 0.1})
    with pytest.raises(parameters.UnknownParameterError, match="dataset"):
        run.run("smoke", only=["02"], params={"dataset": "nope"})  # lesson 02 does not declare it
    with pytest.raises(ValueError, match=r"'prune_lambda' = -1.0 is out of range"):
        run.run("smoke", only=["02"], params={"prune_lambda": -1.0})  # a bad value, checked by its recipe
    assert started == []
    run.run("smoke", only=["01", "02"], params={"seed": 2, "dataset": "fake"})  # each lesson gets what it declares
    assert len(started) == 2 and started[0][3] == {"seed": 2, "dataset": "fake"} and started[1][3] == {"seed": 2}


def test_run_lists_the_knobs_of_a_profile_by_recipe(capsys):
    run.main(["--profile", "paper", "--parameters"])
    out = capsys.readouterr().out
    assert "[joint]" in out and "prune_lambda           1.0" in out and "depth_data             'kitti'" in out


def test_run_parses_values_as_papermill_does():
    assert [run.parse_value(v) for v in ("3", "0.5", "None", "[1, 2]", "fake")] == [3, 0.5, None, [1, 2], "fake"]


@pytest.mark.notebook
@pytest.mark.parametrize("nb", run.notebooks(), ids=lambda p: p.name)
def test_plain_papermill_rejects_an_undeclared_parameter_before_any_work(nb, tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter.*no_such_param.*valid parameters: profile"):
        pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), cwd=str(nb.parent), kernel_name="python3",
                            parameters={"profile": "smoke", "no_such_param": 1}, progress_bar=False)
    assert not (paths.results_dir("smoke") / "cache").exists()  # nothing trained


@pytest.mark.notebook
def test_plain_papermill_rejects_an_out_of_range_value(tmp_path):
    nb = run.notebooks(["01"])[0]
    with pytest.raises(pm.PapermillExecutionError, match=r"'epochs' = -3 is out of range"):
        pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), cwd=str(nb.parent), kernel_name="python3",
                            parameters={"profile": "smoke", "epochs": -3}, progress_bar=False)


@pytest.mark.parametrize("nb", run.notebooks(), ids=lambda p: p.name)
def test_every_name_of_a_parameters_cell_is_declared(nb):
    """Each assignment of the parameters cell counts, comments with '=' signs included
    (papermill's own reader skips such a line: lesson 02's prune_epochs)."""
    import json

    cell = next(c for c in json.loads(nb.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    lines = [line for line in "".join(cell["source"]).splitlines() if line and not line.startswith("#")]
    assert parameters.declared(nb) == [line.split("=")[0].strip() for line in lines]
    assert parameters.declared(nb)[0] == "profile"


def test_every_try_this_command_names_parameters_its_lesson_declares():
    import json
    import re

    for nb in run.notebooks():
        cells = json.loads(nb.read_text())["cells"]
        tries = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
                 and "".join(c["source"]).startswith("## Try this")]
        assert len(tries) == 1, f"{nb.name} ends without its Try this exercises"
        commands = re.findall(r"`(\.venv/bin/python -m tutorial_lib\.run [^`]+)`", tries[0])
        assert len(commands) >= 2
        for command in commands:
            assert f"--only {nb.name[:2]}" in command, command
            for name in re.findall(r"-p (\w+) ", command):
                assert name in parameters.declared(nb), f"{nb.name}: {name} is not a parameter of the lesson"
