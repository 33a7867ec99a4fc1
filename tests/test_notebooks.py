"""Every lesson notebook runs end to end at the smoke profile (papermill), and rejects a bad
parameter in its first cells, before any work.

Under ``make test`` (``TUTORIAL_CHECK_MEASURED=1``) nbval re-runs every committed notebook at the
tutorial profile in the same session; a lesson's smoke run is skipped there when nbval runs
every one of its cells (no ``NBVAL_SKIP``): it would execute the same code on smaller data. A
lesson with skipped cells (sweeps, budget mode) keeps its smoke run, the only run of those cells
in ``make test``. ``make test-fast`` runs every smoke notebook."""

import json
import os

import papermill as pm
import pytest

from tutorial_lib import paths, run, tables

NBVAL_IN_SESSION = os.environ.get("TUTORIAL_CHECK_MEASURED") == "1"


def nbval_runs_every_cell(nb) -> bool:
    """Whether nbval executes every code cell of ``nb`` (none is marked ``NBVAL_SKIP``)."""
    cells = json.loads(nb.read_text())["cells"]
    return not any("NBVAL_SKIP" in "".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.mark.notebook
@pytest.mark.parametrize("nb", run.notebooks(), ids=lambda p: p.name)
def test_notebook_runs_at_smoke_profile(nb, tmp_path):
    if NBVAL_IN_SESSION and nbval_runs_every_cell(nb):
        pytest.skip("make test: nbval runs every cell of this lesson at the tutorial profile in this session")
    run.execute(nb, "smoke", tmp_path / nb.name)
    lesson = nb.name[:2]
    items = [i for i in tables.manifest("smoke") if i["lesson"] == lesson]
    assert any(i["kind"] == "table" for i in items) and any(i["kind"] == "figure" for i in items)
    for item in items:
        assert (paths.results_dir("smoke") / item.get("csv", item.get("png"))).exists()


@pytest.mark.notebook
def test_bad_parameter_is_rejected_before_any_work(tmp_path):
    nb = run.notebooks()[0]
    with pytest.raises(pm.PapermillExecutionError, match="valid choices"):
        run.execute(nb, "smoke", tmp_path / "bad.ipynb", parameters={"dataset": "mnist"})
    assert not (paths.results_dir("smoke") / "cache").exists()


def test_make_tables_runner_builds_the_report(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(run, "execute", lambda nb, profile, out, parameters=None: calls.append(nb.name) or 1.5)
    report = run.run("smoke")
    assert calls == [nb.name for nb in run.notebooks()]
    assert "01_mask_module.ipynb | 1.5" in report.read_text()
    with pytest.raises(ValueError, match="valid profiles"):
        run.run("quick")
