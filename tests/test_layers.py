"""The library's layers point one way (import-linter contracts in pyproject.toml), every
module sits in a layer, and no library module goes through a package's re-exporting facade
(``tutorial_lib.distill`` and the like, kept for the notebooks), which would hide its real
dependency from the contract."""

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
LAYERED = {m.strip() for c in CONTRACTS if c["type"] == "layers" for layer in c["layers"]
           for m in layer.replace(":", "|").split("|")}
# packages whose __init__ only gathers submodules for the notebooks (`from tutorial_lib import distill`)
FACADES = {"tutorial_lib", "tutorial_lib.constraints", "tutorial_lib.depth", "tutorial_lib.distill", "tutorial_lib.pruning",
           "tutorial_lib.measure", "tutorial_lib.quant", "tutorial_lib.compress"}


def test_the_layers_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_every_module_is_in_a_layer_and_none_imports_a_facade():
    graph = grimp.build_graph("tutorial_lib", cache_dir=None)
    modules = graph.modules - FACADES
    unplaced = sorted(m for m in modules if not any(m == top or m.startswith(top + ".") for top in LAYERED))
    assert not unplaced, f"place these modules in a layer of pyproject.toml: {unplaced}"
    through = sorted((m, f) for m in modules for f in graph.find_modules_directly_imported_by(m) & FACADES)
    assert not through, f"import the submodule, not the facade: {through}"
