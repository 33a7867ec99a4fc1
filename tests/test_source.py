"""The library code a lesson prints is the code that runs: listings are current in the
committed notebooks, and a stale one is found and re-printed without re-running the lesson."""

import inspect
import shutil
from pathlib import Path

import nbformat
import pytest

from tutorial_lib import masks, source

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TEACHING = {"01_mask_module.ipynb": "ChannelMask", "02_joint_pruning.ipynb": "pack",
            "04_constraints.ipynb": "next_phase"}


def test_a_listing_is_the_source_headed_by_its_file():
    text = source.listing(masks.StraightThroughStep, masks.binarize)
    assert text.startswith("# tutorial_lib/masks.py: StraightThroughStep\n")
    assert inspect.getsource(masks.binarize).rstrip() in text and "# tutorial_lib/masks.py: binarize" in text


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_the_committed_listings_are_the_code_that_runs(nb):
    assert source.refresh(nb, write=False) == [], f"re-print them: python -m tutorial_lib.source {nb.name}"
    if nb.name in TEACHING:
        text = "".join(o.get("text", "") for c in nbformat.read(str(nb), as_version=4).cells
                       if "source.show" in c.get("source", "") for o in c.get("outputs", []))
        assert f"def {TEACHING[nb.name]}" in text or f"class {TEACHING[nb.name]}" in text


def test_a_stale_listing_is_found_and_reprinted(tmp_path):
    copy = tmp_path / "lesson.ipynb"
    shutil.copyfile(NOTEBOOKS[0], copy)
    nb = nbformat.read(str(copy), as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "source.show" in c.source)
    nb.cells[index].outputs[0]["text"] = "def old(): ...\n"
    nbformat.write(nb, str(copy))
    assert source.refresh(copy) == [index]
    assert source.refresh(copy, write=False) == []
