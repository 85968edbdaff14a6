"""dvc.yaml's code deps follow the code: each stage lists exactly the modules its command can import.

A stage's command is ``selfsup CMD ...``; its code is ``cli.py`` (with the package ``__init__``) plus
the import closure of the modules that CMD's function imports. The closure follows every import of a
module, lazy ones inside functions included (any of them may run), within ``src/selfsup``. A module
missing from a stage's deps means editing it would not re-run the stage (stale results); a listed
module outside the closure re-runs the stage for nothing.

The closure is :func:`selfsup.provenance.import_closure`, the same that keys finetune/probe cells on
the code that trained them. ``python tests/test_dvc_deps.py`` prints each stage's closure.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from selfsup.provenance import code_hash, import_closure, imported_files

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "selfsup"


def closure(start: set[Path]) -> set[Path]:
    return import_closure(start, PKG)


def _imports(tree: ast.AST, path: Path) -> set[Path]:
    return imported_files(tree, path, PKG)


def command_closure(command: str) -> set[Path]:
    """The package files ``selfsup COMMAND`` can run: cli.py and what COMMAND's function imports."""
    cli = PKG / "cli.py"
    tree = ast.parse(cli.read_text())
    top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert command in funcs, f"no function {command!r} in cli.py"
    # cli.py itself is code the stage runs, but only COMMAND's imports of it are followed
    return {cli} | closure({PKG / "__init__.py"} | _imports(top, cli) | _imports(funcs[command], cli))


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _command(stage: dict) -> str:
    stage = stage.get("do", stage)  # a foreach stage's body
    m = re.match(r"\s*selfsup\s+(\w+)", stage["cmd"])
    assert m, f"stage command {stage['cmd']!r} does not start with `selfsup COMMAND`"
    return m.group(1)


def _covered(deps: list) -> set[Path]:
    """Package files a stage's deps cover (a folder covers every .py under it)."""
    files: set[Path] = set()
    for d in deps:
        p = ROOT / str(d)
        if not str(d).startswith("src/"):
            continue
        assert p.exists(), f"dep {d} does not exist"
        files |= set(p.rglob("*.py")) if p.is_dir() else {p}
    return files


def _rel(files) -> list[str]:
    return sorted(str(f.relative_to(ROOT)) for f in files)


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_are_the_import_closure_of_its_command(name):
    stage = _stages()[name]
    want = command_closure(_command(stage))
    have = _covered(stage.get("do", stage).get("deps", []))
    missing, extra = _rel(want - have), _rel(have - want)
    assert not missing, f"stage {name}: code it runs but does not depend on (stale results): {missing}"
    assert not extra, f"stage {name}: deps it never imports (needless re-runs): {extra}"


def test_the_closure_follows_lazy_and_relative_imports():
    # a lazy import inside a function counts; `from . import blender` inside render/jobs.py resolves
    render = command_closure("render")
    assert PKG / "render" / "blender.py" in render and PKG / "scene.py" in render
    assert PKG / "train.py" not in render  # rendering runs no training code
    tune = command_closure("tune")
    assert {PKG / "train.py", PKG / "pretrain.py", PKG / "schedule.py", PKG / "augment.py"} <= tune
    report = command_closure("report")
    assert PKG / "tasks" / "__init__.py" in report and PKG / "train.py" not in report
    assert PKG / "dataset.py" not in report  # tasks import it for type hints only (TYPE_CHECKING)


def test_a_cells_code_hash_changes_with_any_module_the_stage_imports(tmp_path):
    """Cells are cached under the source hash of the stage's import closure: an edit to the training
    loop (imported through sweep.py) changes finetune's hash; an edit to the report does not."""
    import shutil

    pkg = tmp_path / "selfsup"
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_hash("selfsup.finetune", pkg)
    assert before == code_hash("selfsup.finetune") != code_hash("selfsup.probe")
    with open(pkg / "report.py", "a") as f:
        f.write("# an edit outside finetuning's closure\n")
    assert code_hash("selfsup.finetune", pkg) == before
    with open(pkg / "train.py", "a") as f:
        f.write("# an edit to the training loop\n")
    assert code_hash("selfsup.finetune", pkg) != before


def test_layering_the_format_and_the_analysis_stay_light():
    """The dataset format never imports the renderer; analysis and the pure tables never import torch
    (they import nothing that does); only render/blender.py imports bpy."""
    dataset = closure({PKG / "dataset.py"})
    assert not any("render" in f.parts for f in dataset), _rel(dataset)
    torch_users = {f for f in PKG.rglob("*.py") if re.search(r"^\s*(import torch|from torch)", f.read_text(), re.M)}
    for light in ("analysis.py", "utility.py", "tables.py", "defaults.py", "dataset.py", "tuned.py"):
        assert not closure({PKG / light}) & torch_users, (light, _rel(closure({PKG / light}) & torch_users))
    bpy_users = {f for f in PKG.rglob("*.py") if re.search(r"^\s*import bpy", f.read_text(), re.M)}
    assert bpy_users == {PKG / "render" / "blender.py"}


if __name__ == "__main__":
    for command in ("render", "pretrain", "tune", "finetune", "probe", "report"):
        print(command)
        for f in _rel(command_closure(command)):
            print("  -", f)
