"""dvc.yaml is generated from one plan (:mod:`selfsup.pipeline.plan`), and its code deps follow the code.

A stage's command is ``selfsup CMD ...``; its code is the package and cli ``__init__``, ``cli/app.py`` and
the import closure of ``cli/CMD.py``. The closure follows every import of a module, lazy ones inside
functions included (any of them may run), within ``src/selfsup``. A module missing from a stage's deps
means editing it would not re-run the stage (stale results); a listed module outside the closure
re-runs the stage for nothing. ``python -m selfsup.pipeline.plan`` rewrites dvc.yaml.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN

from selfsup.core.provenance import code_hash, import_closure
from selfsup.pipeline.plan import command_closure, dvc_yaml, fold, stages

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "src" / "selfsup"


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _covered(deps: list) -> set[Path]:
    """Package files a stage's deps cover (a folder covers every .py under it)."""
    files: set[Path] = set()
    for d in deps:
        p = ROOT / str(d)
        if not str(d).startswith("src/"):
            continue
        assert p.exists(), f"dep {d} does not exist"
        files |= {f for f in p.rglob("*.py") if "__pycache__" not in f.parts} if p.is_dir() else {p}
    return files


def _rel(files) -> list[str]:
    return sorted(str(f.relative_to(ROOT)) for f in files)


def test_the_committed_dvc_yaml_is_the_plans():
    assert (ROOT / "dvc.yaml").read_text() == dvc_yaml(), "dvc.yaml is stale: run python -m selfsup.pipeline.plan"


def test_no_stage_template_is_written_twice():
    """*_single / *_multi come from one template each: they differ only by the set's name."""
    by_name = {s.name: s for s in stages()}
    for kind in ("pretrain", "tune", "finetune"):
        single, multi = by_name[f"{kind}_single"], by_name[f"{kind}_multi"]
        assert single.cmd.replace("single", "SET") == multi.cmd.replace("multi", "SET")
    bodies = [yaml.safe_dump({k: v for k, v in s.items() if k != "matrix"}) for s in _stages().values()]
    assert len(set(bodies)) == len(bodies)


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_are_the_import_closure_of_its_command(name):
    stage = _stages()[name]
    body = stage.get("do", stage)
    command = re.match(r"\s*selfsup\s+(\w+)", body["cmd"]).group(1)
    want = command_closure(command)
    have = _covered(body.get("deps", []))
    missing, extra = _rel(want - have), _rel(have - want)
    assert not missing, f"stage {name}: code it runs but does not depend on (stale results): {missing}"
    assert not extra, f"stage {name}: deps it never imports (needless re-runs): {extra}"


def test_deps_fold_into_folders_only_where_the_whole_folder_is_imported():
    files = set((PKG / "pretrain").rglob("*.py")) | {PKG / "core" / "errors.py"}
    files = {f for f in files if "__pycache__" not in f.parts}
    assert fold(files) == ["src/selfsup/core/errors.py", "src/selfsup/pretrain"]


def test_the_closure_follows_lazy_imports_and_skips_the_other_commands():
    render = command_closure("render")
    assert PKG / "data" / "render" / "blender.py" in render and PKG / "data" / "scene.py" in render
    assert PKG / "train" / "loop.py" not in render  # rendering runs no training code
    assert PKG / "cli" / "finetune.py" not in render  # only registered, never run, by `selfsup render`
    tune = command_closure("tune")
    assert {PKG / "train" / "loop.py", PKG / "pretrain" / "run.py", PKG / "data" / "augment.py"} <= tune
    report = command_closure("report")
    assert PKG / "evaluate" / "tasks" / "__init__.py" in report and PKG / "train" / "loop.py" not in report
    assert PKG / "data" / "dataset.py" not in report  # tasks import it for type hints only (TYPE_CHECKING)


def test_a_cells_code_hash_changes_with_any_module_the_stage_imports(tmp_path):
    """Cells are cached under the source hash of the stage's import closure: an edit to the training
    loop (imported through sweep.py) changes finetune's hash; an edit to the report does not."""
    pkg = tmp_path / "selfsup"
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_hash("selfsup.evaluate.finetune", pkg)
    assert before == code_hash("selfsup.evaluate.finetune") != code_hash("selfsup.evaluate.probe")
    with open(pkg / "report" / "page.py", "a") as f:
        f.write("# an edit outside finetuning's closure\n")
    assert code_hash("selfsup.evaluate.finetune", pkg) == before
    with open(pkg / "train" / "loop.py", "a") as f:
        f.write("# an edit to the training loop\n")
    assert code_hash("selfsup.evaluate.finetune", pkg) != before


def test_layering_the_format_and_the_analysis_stay_light():
    """The dataset format never imports the renderer; analysis and the pure tables never import torch
    (they import nothing that does); only data/render/blender.py imports bpy."""
    dataset = import_closure({PKG / "data" / "dataset.py"})
    assert not any("render" in f.parts for f in dataset), _rel(dataset)
    torch_users = {f for f in PKG.rglob("*.py") if re.search(r"^\s*(import torch|from torch)", f.read_text(), re.M)}
    light = ("analyse/analysis.py", "analyse/utility.py", "analyse/tables.py", "core/defaults.py")
    for path in (*light, "data/dataset.py", "evaluate/tuned.py"):
        found = import_closure({PKG / path}) & torch_users
        assert not found, (path, _rel(found))
    bpy_users = {f for f in PKG.rglob("*.py") if re.search(r"^\s*import bpy", f.read_text(), re.M)}
    assert bpy_users == {PKG / "data" / "render" / "blender.py"}


def _locked_project(tmp_path) -> Path:
    """A project with the repository's code, dvc.yaml and params.yaml in which every stage looks run:
    placeholder data deps and outputs, recorded in dvc.lock by ``dvc commit``."""
    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "src", proj / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, proj)
    shutil.copy(ROOT / ".dvcignore", proj)
    dvc = str(BIN / "dvc")
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=proj, check=True)
    from dvc.repo import Repo

    with Repo(str(proj)) as repo:
        for stage in repo.index.stages:
            for path in [d.def_path for d in stage.deps] + [o.def_path for o in stage.outs]:
                p = proj / path
                if p.exists() or path.startswith("src/"):
                    continue
                if Path(path).suffix:  # a file (best_params.json, index.html, metrics.json)
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text("{}\n")
                else:
                    p.mkdir(parents=True)
                    (p / "placeholder").write_text(path)
    r = subprocess.run([dvc, "commit", "--force", "-q"], cwd=proj, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return proj


def _changed(proj: Path) -> set[str]:
    r = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=proj, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout))


def test_a_help_text_edit_re_runs_only_that_commands_stages(tmp_path):
    proj = _locked_project(tmp_path)
    assert _changed(proj) == set()
    render = proj / "src/selfsup/cli/render.py"
    text = render.read_text()
    assert "Render a synthetic dataset" in text
    render.write_text(text.replace("Render a synthetic dataset", "Render one synthetic dataset", 1))
    assert _changed(proj) == {"render@single"}
    render.write_text(text)
    finetune = proj / "src/selfsup/cli/finetune.py"
    finetune.write_text(finetune.read_text() + "\n# a comment\n")
    changed = _changed(proj)
    assert changed and all(s.startswith(("finetune_", "frozen_", "transfer_")) for s in changed), changed
