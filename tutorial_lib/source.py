"""The library code a lesson teaches, printed in the lesson: what the student reads is the
code that runs (the lessons mark these cells ``NBVAL_CHECK_OUTPUT``, so a change to the code
that is not re-run into the notebook fails ``make test``)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project: paths print relative to it


def listing(*objects: object) -> str:
    """Each object's source, headed by its file relative to the project (no line numbers: an
    edit elsewhere in the file leaves the listing as it was)."""
    parts = []
    for obj in objects:
        path = Path(inspect.getsourcefile(obj)).resolve()
        where = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        parts.append(f"# {where}: {obj.__qualname__}\n" + inspect.getsource(obj).rstrip())
    return "\n\n".join(parts)


def show(*objects: object) -> None:
    """Print :func:`listing` (a notebook cell's output)."""
    print(listing(*objects))


# -- keeping the printed listings current ---------------------------------------------------

SHOW = re.compile(r"^source\.show\((.*)\)\s*$", re.M)


def _cell_listing(code: str) -> str | None:
    """What a listing cell prints: its ``source.show(a.b, c.d)`` call resolved by name."""
    call = SHOW.search(code)
    if call is None:
        return None
    scope: dict = {}
    exec("\n".join(line for line in code.splitlines() if line.startswith(("from ", "import "))), scope)
    return listing(*(eval(name.strip(), scope) for name in call.group(1).split(","))) + "\n"


def refresh(path: str | Path, write: bool = True) -> list[int]:
    """Re-print the listing cells of a notebook whose library code changed (no other cell is
    touched, nothing is trained); the indices of the cells that were stale."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    stale = []
    for i, cell in enumerate(nb.cells):
        want = _cell_listing(cell.source) if cell.cell_type == "code" else None
        if want is None:
            continue
        have = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if have != want:
            stale.append(i)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=want)]
    if stale and write:
        nbformat.write(nb, str(path))
    return stale


if __name__ == "__main__":
    import sys

    for notebook in sys.argv[1:] or sorted(str(p) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        print(f"{notebook}: {len(refresh(notebook))} listing cell(s) refreshed")
