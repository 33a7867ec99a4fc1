"""Where the package reads data and writes results, independent of the working directory.

Notebooks run with ``notebooks/`` as their working directory (papermill, nbval, JupyterLab),
tests from the repository root: every path is therefore resolved from the project root,
and can be moved with an environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from tutorial_lib import distributed

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The repository root (holding ``pyproject.toml``); the working directory otherwise."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd()


def results_root() -> Path:
    """``$TUTORIAL_RESULTS`` or ``<project>/results``."""
    env = os.environ.get("TUTORIAL_RESULTS")
    return Path(env) if env else project_root() / "results"


def results_dir(profile: str) -> Path:
    """``results/<profile>/``, created on first use."""
    path = results_root() / profile
    if distributed.is_main():  # under torchrun, rank 0 alone writes
        path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(override: str | os.PathLike | None = None) -> Path:
    """Where real datasets live: the ``data_root`` parameter, ``$TUTORIAL_DATA``, or ``<project>/data``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("TUTORIAL_DATA")
    return Path(env).expanduser() if env else project_root() / "data"
