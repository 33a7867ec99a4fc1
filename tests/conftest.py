"""Shared fixtures: every test writes results to a temporary folder, never into results/."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _results_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_RESULTS", str(tmp_path / "results"))
    yield


@pytest.fixture
def smoke_cfg():
    from tutorial_lib import profiles

    return profiles.resolve("smoke")
