"""``params.yaml`` and the profiles in ``profiles/``: a profile holds only its differences from the
schema's defaults (:mod:`selfsup.core.config`, the default study); ``selfsup profile NAME`` writes
params.yaml as the defaults with those differences, every key present (what dvc.yaml reads), commented.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import yaml

from selfsup.core import config
from selfsup.core.errors import UserError

PROFILES = "profiles"


def _read_yaml(path: Path, what: str):
    if not path.is_file():
        raise UserError(f"{what} {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{what} {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None


def as_dict(params: config.Params) -> dict:
    """The checked params as plain mappings (budgets and seeds as tuples of int)."""
    return dataclasses.asdict(params)


def load_params(path: str | Path) -> dict:
    """A complete params file (``params.yaml``: dvc.yaml reads every section), checked once."""
    path = Path(path)
    raw = _read_yaml(path, "params file")
    missing = [k for k in config.SECTIONS if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise UserError(f"params file {str(path)!r} lacks section(s) {', '.join(missing)}")
    try:
        return as_dict(config.parse(raw))
    except UserError as e:
        raise UserError(f"params file {str(path)!r}: {e}") from None


def _profile(path: Path) -> config.Params:
    try:
        return config.parse(_read_yaml(path, "profile"))
    except UserError as e:
        raise UserError(f"profile {str(path)!r}: {e}") from None


def load_profile(path: str | Path) -> dict:
    """A profile (its differences from the defaults) as complete, checked params."""
    return as_dict(_profile(Path(path)))


def profile_text(path: str | Path) -> str:
    """What ``params.yaml`` holds after ``selfsup profile NAME``: the profile's leading comment, then
    every section and key."""
    path = Path(path)
    params = _profile(path)
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    header.append(
        f"# Written by `selfsup profile {path.stem}`: profiles/{path.stem}.yaml over src/selfsup/core/config.py."
    )
    return config.to_yaml(params, "\n".join(header))


def profiles(root: str | Path = ".") -> dict[str, Path]:
    folder = Path(root) / PROFILES
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def current_profile(root: str | Path = ".") -> str | None:
    """The profile ``params.yaml`` is a copy of, if any."""
    params = Path(root) / "params.yaml"
    if not params.is_file():
        return None
    text = params.read_text()
    return next((name for name, p in profiles(root).items() if profile_text(p) == text), None)


def use_profile(name: str, root: str | Path = ".", force: bool = False) -> Path | None:
    """Copy ``profiles/NAME.yaml`` over ``params.yaml``. Edits in params.yaml that are in no profile
    are kept: without ``force`` that is an error; with it they go to ``params.yaml.bak`` (returned)."""
    found = profiles(root)
    if name not in found:
        raise UserError(f"unknown profile {name!r}: choose from {', '.join(found) or '(no profiles/ folder here)'}")
    params = Path(root) / "params.yaml"
    backup = None
    if params.is_file() and current_profile(root) is None:
        if not force:
            raise UserError(
                "params.yaml has edits that are in no profile: save them as profiles/NAME.yaml, "
                "or pass --force to move them to params.yaml.bak"
            )
        backup = params.with_name("params.yaml.bak")
        shutil.copyfile(params, backup)
    text = profile_text(found[name])
    tmp = params.with_name("params.yaml.tmp")
    tmp.write_text(text)
    tmp.replace(params)
    return backup
