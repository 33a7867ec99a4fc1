"""Every lesson notebook runs end to end at the smoke profile (papermill), and rejects a bad
parameter in its first cells, before any work."""

import papermill as pm
import pytest

from tutorial_lib import paths, run, tables


@pytest.mark.notebook
@pytest.mark.parametrize("nb", run.notebooks(), ids=lambda p: p.name)
def test_notebook_runs_at_smoke_profile(nb, tmp_path):
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
