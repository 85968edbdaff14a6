"""The import direction of the stage subpackages: each may import only those before it in ``LAYERS``
(as its ``__init__`` docstring says), lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from selfsup.core.provenance import imported_files

PKG = Path(__file__).resolve().parents[1] / "src" / "selfsup"
# data flows left to right; a package may import itself and those to its left
LAYERS = ("core", "data", "models", "train", "pretrain", "evaluate", "analyse", "report", "pipeline", "cli")
ALLOWED = {layer: set(LAYERS[: i + 1]) for i, layer in enumerate(LAYERS)}
# analyse is pure: results tables in, tables out, never training code
ALLOWED["analyse"] = {"core", "data", "analyse"}


def _layer(path: Path) -> str | None:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else None  # None: the package's own __init__ / __main__


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_lives_in_a_stage_subpackage():
    loose = [p.name for p in _modules() if _layer(p) is None]
    assert sorted(loose) == ["__init__.py", "__main__.py"]
    assert {p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_subpackage_says_what_it_owns_and_may_import(layer):
    doc = ast.get_docstring(ast.parse((PKG / layer / "__init__.py").read_text())) or ""
    said = doc.split("May import: ")[-1].split(".")[0] if "May import: " in doc else None
    assert said is not None, f"{layer}/__init__.py does not say what it may import"
    names = set() if said == "nothing else from selfsup" else set(said.split(", "))
    assert names == ALLOWED[layer] - {layer}, (layer, said)


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_go_only_upstream(layer):
    bad = []
    for f in _modules():
        if _layer(f) != layer:
            continue
        for dep in imported_files(ast.parse(f.read_text()), f, PKG):
            target = _layer(dep)
            if target is not None and target not in ALLOWED[layer]:
                bad.append(f"{f.relative_to(PKG)} imports {dep.relative_to(PKG)}")
    assert not bad, "\n".join(bad)


def test_the_check_can_fail(tmp_path):
    """A downstream import planted in a copy is caught by the same function."""
    f = PKG / "data" / "dataset.py"
    tree = ast.parse(f.read_text() + "\nfrom selfsup.report.page import make_report\n")
    assert any(_layer(d) == "report" for d in imported_files(tree, f, PKG))
