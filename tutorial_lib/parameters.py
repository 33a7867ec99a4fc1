"""Strict notebook parameters: a name the ``parameters`` cell does not declare is an error.

papermill only *warns* about a parameter a notebook does not declare, then runs the whole
lesson with the defaults: ``-p prune_lamda 0.1`` (a typo) would cost a full run for
nothing. Two checks close that door, both before any work:

- :func:`check_injected` runs inside the kernel (every lesson's configuration cell calls
  it through :func:`tutorial_lib.profiles.resolve_parameters`). It reads the kernel's own
  input history: papermill injects its values as a cell that starts with ``# Parameters``
  right after the cell tagged ``parameters``, so the names it assigns can be compared with
  the names the parameters cell declares. This holds for plain ``papermill -p`` too.
- :func:`check_notebooks` runs before the first notebook is started (``python -m tutorial_lib.run``,
  ``make tables``), from the notebook file's parameters cell.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Iterable, Sequence

INJECTED_MARKER = "# Parameters"  # the first line of the cell papermill injects


class UnknownParameterError(ValueError):
    """A parameter was given that the notebook's parameters cell does not declare."""


def assigned_names(source: str) -> list[str]:
    """The names a cell assigns at top level (``a = 1``, ``a: int = 1``), in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _message(unknown: Iterable[str], declared: Sequence[str], where: str) -> str:
    return (f"unknown parameter(s) {', '.join(sorted(unknown))} for {where}; "
            f"valid parameters: {', '.join(declared)}")


def split_history(history: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(declared, injected)`` from a kernel's input history (IPython's ``In``).

    ``injected``: the names of the last cell papermill injected; ``declared``: the names of
    the cell run just before it (the parameters cell). Both are empty when nothing was
    injected (a notebook opened in JupyterLab, or re-run by nbval).
    """
    for i in range(len(history) - 1, 0, -1):
        if history[i].lstrip().startswith(INJECTED_MARKER):
            return assigned_names(history[i - 1]), assigned_names(history[i])
    return [], []


def check_history(history: Sequence[str], where: str = "this notebook") -> list[str]:
    """Raise :class:`UnknownParameterError` when the injected names are not all declared;
    return the declared names."""
    declared, injected = split_history(history)
    unknown = set(injected) - set(declared)
    if unknown:
        raise UnknownParameterError(_message(unknown, declared, where))
    return declared


def check_injected() -> list[str]:
    """:func:`check_history` on the running kernel's history; a no-op outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with jupyterlab
        return []
    shell = get_ipython()
    return [] if shell is None else check_history(shell.user_ns.get("In", []))


def declared(notebook: str | Path) -> list[str]:
    """The parameter names a notebook's cell tagged ``parameters`` declares.

    Read with :func:`assigned_names`, as the kernel-side check reads it; papermill's own
    ``inspect_notebook`` skips a line whose comment holds an ``=`` sign.
    """
    cells = json.loads(Path(notebook).read_text())["cells"]
    tagged = [c for c in cells if c["cell_type"] == "code" and "parameters" in c["metadata"].get("tags", [])]
    if not tagged:
        raise ValueError(f"{Path(notebook).name} has no cell tagged 'parameters'")
    return assigned_names("".join(tagged[0]["source"]))


def check_notebooks(notebooks: Sequence[str | Path], parameters: dict) -> dict[str, list[str]]:
    """Each notebook's declared names (by file name); rejects ``parameters`` naming anything
    that none of ``notebooks`` declares, before any of them starts."""
    names = {Path(nb).name: declared(nb) for nb in notebooks}
    valid = sorted(set().union(*names.values()))
    unknown = set(parameters) - set(valid)
    if unknown:
        raise UnknownParameterError(_message(unknown, valid, "the selected lessons"))
    return names
