"""`selfsup study` (the plan mirrors dvc.yaml, the cost estimate, confirmation) and `selfsup profile`."""

import json
import math
import shutil
import subprocess

import pytest
from conftest import BIN, REPO, run_cli

from selfsup.core import config
from selfsup.core.errors import UserError
from selfsup.pipeline.estimate import Estimate
from selfsup.pipeline.plan import plan
from selfsup.pipeline.profiles import current_profile, load_params, load_profile, profile_text, use_profile


def _dvc_stage_names(proj) -> set[str]:
    r = subprocess.run([str(BIN / "dvc"), "stage", "list", "--name-only"], cwd=proj, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def _project(tmp_path, params: dict):
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(REPO / "dvc.yaml", proj)
    (proj / "params.yaml").write_text(config.to_yaml(config.parse(params)))
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=proj, check=True)
    return proj


def test_the_committed_params_are_the_default_profile():
    assert current_profile(REPO) == "default"


@pytest.mark.parametrize("profile", sorted(p.stem for p in (REPO / "profiles").glob("*.yaml")))
def test_the_plan_has_exactly_the_stages_of_dvc_yaml(tmp_path, profile):
    params = load_profile(REPO / "profiles" / f"{profile}.yaml")
    proj = _project(tmp_path, params)
    assert {j.stage for j in plan(params)} == _dvc_stage_names(proj)


def test_paper_profile_counts_the_papers_grid():
    jobs = plan(load_profile(REPO / "profiles" / "paper.yaml"))
    kinds = [j.kind for j in jobs]
    # 15 datasets; (12 single + 3 multi) × 2 backbones × 5 inits pretrain stages; × 2 tasks finetune
    assert kinds.count("render") == 15 and kinds.count("pretrain") == 15 * 2 * 5
    # + frozen-1/2/3 of the 4 methods on classification (Fig. 8)
    assert kinds.count("finetune") == 15 * 2 * 5 * 2 + 12 * 2 * 4 * 3 and kinds.count("probe") == 12 * 2 * 4 * 2
    cmc = next(j for j in jobs if j.stage == "pretrain_single@single_TCVL-resnet50-cmc")
    assert cmc.key[:3] == ("pretrain", "cmc", "resnet50_split")
    assert cmc.train_images == 150 * (int(0.7 * 480000) // 512) * 512
    ft = next(j for j in jobs if j.stage == "finetune_single@single_-----resnet9-scratch-pose")
    assert ft.train_images == 8 * 5 * 40000 * 256  # budgets × seeds × steps × batch


def test_estimate_adds_seconds_per_image_times_images():
    jobs = plan(load_profile(REPO / "profiles" / "default.yaml"))
    est = Estimate(jobs, {j.key: (0.001, 0.0005) for j in jobs})
    expected = sum(j.train_images * 0.001 + j.eval_images * 0.0005 for j in jobs) / 3600
    assert math.isclose(est.hours, expected) and math.isclose(sum(r["hours"] for r in est.by_kind()), expected)
    assert {r["stage"]: r["jobs"] for r in est.by_kind()}["finetune"] == 3  # 3 inits × classification


def test_plans_that_cannot_run_are_one_line_errors():
    params = load_profile(REPO / "profiles" / "default.yaml")
    too_big = {**params, "finetune_single": {**params["finetune_single"], "budgets": "50,2500"}}
    with pytest.raises(UserError, match="label budget 2500 is larger than the train split of dataset 'single'"):
        plan(too_big)
    with pytest.raises(UserError, match="'nowhere'"):
        plan({**params, "study": {**params["study"], "single": ["nowhere"]}})
    with_multi = {**params, "datasets": {**params["datasets"], "multi": {**TINY["datasets"]["multi"]}}}
    with pytest.raises(UserError, match="'multi' is a multi-object set"):
        plan({**with_multi, "study": {**params["study"], "single": ["multi"]}})
    with pytest.raises(UserError, match="'jigsaw'"):
        plan({**params, "study": {**params["study"], "inits": ["scratch", "jigsaw"]}})


TINY = {
    "datasets": {
        "single": {"set": "single", "variant": "-C--", "count": 40, "resolution": 32},
        "multi": {"set": "multi", "variant": "-C--", "count": 20, "resolution": 32},
    },
    "render": {"seed": 0, "workers": 1, "samples": 2, "denoise": "none"},
    "study": {"inits": ["scratch", "rotation"], "backbones": ["resnet9"], "single": ["single"], "multi": ["multi"]},
    "pretrain_single": {
        "width": 0.125,
        "colour": "rgb",
        "epochs": 1,
        "batch_size": 8,
        "lr": 0.002,
        "schedule": "cosine",
        "seed": 0,
    },
    "pretrain_multi": {
        "width": 0.125,
        "colour": "rgb",
        "epochs": 1,
        "batch_size": 4,
        "lr": 0.002,
        "schedule": "cosine",
        "seed": 0,
    },
    "finetune_single": {
        "tasks": ["classification"],
        "budgets": "5,10",
        "seeds": "0",
        "steps": 3,
        "epochs": 1,
        "batch_size": 8,
        "lr": 0.002,
        "tune_trials": 0,
        "tune_budget": 5,
    },
    "finetune_multi": {
        "tasks": ["depth"],
        "budgets": "4",
        "seeds": "0",
        "steps": 2,
        "epochs": 1,
        "batch_size": 4,
        "lr": 0.002,
        "tune_trials": 0,
        "tune_budget": 4,
    },
    "frozen": {"methods": [], "tasks": ["classification"], "protocols": ["frozen-3"]},
    "transfer": {"pairs": [], "inits": ["rotation"], "tasks": ["classification"]},
    "probe": {"methods": ["rotation"], "protocols": ["knn"], "task": "classification", "knn_metric": "cosine", "k": 5},
    "report": {"interpolation": "log", "bootstrap": 10},
}


def test_study_measures_this_machine_and_asks_before_a_large_run(tmp_path):
    proj = _project(tmp_path, TINY)
    res = run_cli("study", "--estimate-only", "--json", "estimate.json", cwd=proj)
    assert res.returncode == 0, res.stderr
    est = json.loads((proj / "estimate.json").read_text())
    assert len(est["stages"]) == len(_dvc_stage_names(proj))  # nothing has run: every stage is pending
    by_stage = {r["stage"]: r for r in est["by_stage"]}
    assert by_stage["render"]["images"] == 60 and by_stage["render"]["hours"] > 0
    assert all(v[0] > 0 for k, v in est["seconds_per_image"].items() if not k.startswith("none"))
    assert "total" in res.stdout and "finetune" in res.stdout
    # above the threshold, without a terminal and without --yes: a one-line refusal, nothing started
    res = run_cli("study", "--confirm-above", "0", cwd=proj)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--yes" in res.stderr
    assert not (proj / "data").exists()
    res = run_cli("study", "--params", "other.yaml", cwd=proj)
    assert res.returncode == 2 and "--estimate-only" in res.stderr


def test_profile_switches_params_and_keeps_edits(tmp_path):
    (tmp_path / "profiles").mkdir()
    for name in ("default", "paper"):
        shutil.copy(REPO / "profiles" / f"{name}.yaml", tmp_path / "profiles")
    shutil.copy(REPO / "params.yaml", tmp_path)
    res = run_cli("profile", cwd=tmp_path)
    assert res.stdout.split() == ["*", "default", "paper"]
    assert run_cli("profile", "paper", cwd=tmp_path).returncode == 0
    written = (tmp_path / "params.yaml").read_text()  # the defaults with the profile's differences, every key
    assert written == profile_text(REPO / "profiles" / "paper.yaml") and "epochs: 150" in written
    assert load_params(tmp_path / "params.yaml") == load_profile(REPO / "profiles" / "paper.yaml")
    edited = (tmp_path / "params.yaml").read_text().replace("epochs: 150", "epochs: 100", 1)
    (tmp_path / "params.yaml").write_text(edited)
    res = run_cli("profile", "default", cwd=tmp_path)
    assert res.returncode == 2 and "--force" in res.stderr and (tmp_path / "params.yaml").read_text() == edited
    res = run_cli("profile", "nope", cwd=tmp_path)
    assert res.returncode == 2 and "'nope'" in res.stderr
    assert use_profile("default", tmp_path, force=True) == tmp_path / "params.yaml.bak"
    assert (tmp_path / "params.yaml.bak").read_text() == edited and current_profile(tmp_path) == "default"
