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


@pytest.fixture
def one_thread():
    """torch on one thread for the test, the previous count restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
