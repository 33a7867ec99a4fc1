"""The project's own conventions: pins agree, notebooks are well-formed and committed with outputs."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Notebooks whose tutorial outputs are not committed yet (the Makefile keeps them out of nbval).
PENDING = {Path(p).name for p in re.search(r"^NBVAL_PENDING := ?(.*)$", (ROOT / "Makefile").read_text(), re.M)
           .group(1).split()}


def _pins(lines):
    return {re.split(r"==", p)[0].strip().lower(): p.split("==")[1].strip() for p in lines if "==" in p}


def test_environment_yml_and_pyproject_pin_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in env if isinstance(d, dict) and "pip" in d)
    assert _pins(project) == _pins(pip)
    assert _pins(project)["torch"] == "2.14.1" and _pins(project)["torchvision"] == "0.29.1"
    assert "python=3.11" in env


def test_there_are_lesson_notebooks():
    assert [nb.name for nb in NOTEBOOKS][:1] == ["01_mask_module.ipynb"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_first_code_cell_is_parameters_and_outputs_are_committed(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert "profile = \"tutorial\"" in "".join(code[0]["source"])
    if nb.name in PENDING:  # listed as pending: no stale outputs either
        assert not any(c.get("outputs") for c in code), f"{nb.name} has outputs: remove it from NBVAL_PENDING"
    else:
        assert any(c.get("outputs") for c in code), "commit the tutorial-profile outputs (make notebooks)"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    checked = [c for c in code if "# NBVAL_CHECK_OUTPUT" in "".join(c["source"])]
    assert checked, "mark the cells whose output must reproduce with # NBVAL_CHECK_OUTPUT"
    for c in code[1:]:
        assert len("".join(c["source"]).splitlines()) <= 15, "move long cells into tutorial_lib"


def test_readme_shows_the_two_commands_and_ci_runs_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make tables" in readme and "make test" in readme
    assert "papermill notebooks/01_mask_module.ipynb out.ipynb -p profile smoke" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_published_numbers_are_packaged_not_read_from_shared():
    for path in (ROOT / "tutorial_lib").rglob("*.py"):
        assert "shared/" not in path.read_text(), path


# What must not be stored in a committed output: log lines of torch or its profiler,
# warnings, and progress bars (a notebook viewed on a code host reads as a lesson).
OUTPUT_NOISE = re.compile(r"No CUDA runtime|cpp_extension|USDT:|gpuGetDeviceCount|Warning|WARNING|it/s\]|\d+%\|")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_carry_no_logs_warnings_or_progress_bars(nb):
    code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    for i, cell in enumerate(code):
        for output in cell.get("outputs", []):
            assert output.get("name") != "stderr", f"code cell {i} of {nb.name} stores stderr: {output.get('text')}"
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            assert not OUTPUT_NOISE.search(text), f"code cell {i} of {nb.name}: {OUTPUT_NOISE.search(text)[0]!r}"
