"""One config schema (selfsup.core.config): params.yaml, the profiles, the CLI, the Python API and
MLproject take their defaults from it and agree."""

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from selfsup import cli
from selfsup.core import config
from selfsup.core.defaults import DEFAULT_BACKBONE, as_csv
from selfsup.core.errors import UserError
from selfsup.evaluate.finetune import FinetuneConfig, finetune
from selfsup.evaluate.probe import probe
from selfsup.pipeline.profiles import load_params, profile_text
from selfsup.pretrain.methods import METHODS, default_backbone
from selfsup.pretrain.run import PretrainConfig

ROOT = Path(__file__).resolve().parents[2]
D, R, P, F, PR, REP = (
    config.Dataset(),
    config.Render(),
    config.Pretrain(),
    config.Finetune(),
    config.Probe(),
    config.Report(),
)

# (command, option) → the schema's value; every setting that a command and params.yaml share
SHARED = {
    ("render", "variant"): D.variant,
    ("render", "count"): D.count,
    ("render", "seed"): R.seed,
    ("render", "workers"): R.workers,
    ("render", "samples"): R.samples,
    ("render", "denoise"): R.denoise,
    ("pretrain", "width"): P.width,
    ("pretrain", "colour"): P.colour,
    ("pretrain", "epochs"): P.epochs,
    ("pretrain", "batch_size"): P.batch_size,
    ("pretrain", "lr"): P.lr,
    ("pretrain", "schedule"): P.schedule,
    ("pretrain", "seed"): P.seed,
    ("finetune", "budgets"): as_csv(F.budgets),
    ("finetune", "seeds"): as_csv(F.seeds),
    ("finetune", "steps"): F.steps,
    ("finetune", "epochs"): F.epochs,
    ("finetune", "batch_size"): F.batch_size,
    ("finetune", "lr"): F.lr,
    ("finetune", "width"): P.width,
    ("finetune", "colour"): P.colour,
    ("probe", "budgets"): as_csv(F.budgets),
    ("probe", "seeds"): as_csv(F.seeds),
    ("probe", "knn_metric"): PR.knn_metric,
    ("probe", "k"): PR.k,
    ("tune", "budget"): F.tune_budget,
    ("tune", "steps"): F.steps,
    ("tune", "epochs"): F.epochs,
    ("tune", "batch_size"): F.batch_size,
    ("tune", "lr"): F.lr,
    ("report", "interpolation"): REP.interpolation,
    ("report", "bootstrap"): REP.bootstrap,
}
# where a command's default is deliberately not the study's, and why
NOT_SHARED = {("tune", "trials"): "the study runs no search (tune_trials 0); `selfsup tune` searches 20 trials"}


def _cli_default(command: str, option: str):
    function = getattr(getattr(cli, command), command)
    return inspect.signature(function).parameters[option].default.default


def test_the_committed_params_are_the_schemas_defaults():
    assert config.parse(yaml.safe_load((ROOT / "params.yaml").read_text())) == config.Params()
    assert (ROOT / "params.yaml").read_text() == profile_text(ROOT / "profiles" / "default.yaml")
    assert config.differences(config.Params()) == {}


@pytest.mark.parametrize(("command", "option"), sorted(SHARED))
def test_cli_and_mlproject_defaults_are_the_schemas(command, option):
    want = SHARED[(command, option)]
    assert _cli_default(command, option) == want, f"selfsup {command} --{option}"
    entry = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][command]["parameters"]
    if option in entry:
        have = entry[option]["default"]
        assert type(want)(have) == want if not isinstance(want, str) else have == want, f"MLproject {command}.{option}"


def test_the_api_defaults_are_the_schemas():
    assert tuple(inspect.signature(finetune).parameters["budgets"].default) == F.budgets
    assert tuple(inspect.signature(probe).parameters["budgets"].default) == F.budgets
    ft = FinetuneConfig()
    assert (ft.steps, ft.epochs, ft.batch_size, ft.lr) == (F.steps, F.epochs, F.batch_size, F.lr)
    pre = PretrainConfig("rotation")
    assert (pre.width, pre.colour, pre.epochs, pre.batch_size, pre.lr, pre.schedule, pre.seed) == (
        P.width,
        P.colour,
        P.epochs,
        P.batch_size,
        P.lr,
        P.schedule,
        P.seed,
    )


def test_every_exception_is_a_real_difference():
    for command, option in NOT_SHARED:
        section = config.Finetune()
        assert _cli_default(command, option) != section.tune_trials


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml")))
def test_a_profile_holds_only_its_differences(profile):
    raw = yaml.safe_load((ROOT / "profiles" / f"{profile}.yaml").read_text()) or {}
    params = config.parse(raw)
    diffs = config.differences(params)
    for section, values in raw.items():
        if section == "datasets":
            continue
        for key in values:
            assert key in diffs.get(section, {}), f"profiles/{profile}.yaml repeats the default {section}.{key}"


def test_params_are_parsed_once_into_typed_values(tmp_path):
    params = config.parse({"finetune_single": {"budgets": "5,10", "seeds": [0, 1]}})
    assert params.finetune_single.budgets == (5, 10) and params.finetune_single.seeds == (0, 1)
    assert params.finetune_single.steps == F.steps  # the rest from the defaults
    for raw, message in (
        ({"finetune_single": {"budgets": "5,0"}}, "finetune_single.budgets: invalid label budget 0"),
        ({"finetune_single": {"budgets": "5,5"}}, "duplicate label budget 5"),
        ({"pretrain_single": {"width": -1}}, "pretrain_single.width: invalid width -1"),
        ({"pretrain_single": {"wdith": 0.5}}, "unknown key 'wdith'"),
        ({"stduy": {}}, "unknown section 'stduy'"),
        ({"study": {"inits": "scratch"}}, "study.inits must be a list"),
        ({"datasets": {"x": {"count": 0}}}, "datasets.x.count: invalid count 0"),
    ):
        with pytest.raises(UserError, match=message):
            config.parse(raw)
    written = tmp_path / "params.yaml"
    written.write_text(config.to_yaml(params))
    assert config.parse(yaml.safe_load(written.read_text())) == params
    # a complete file is what dvc.yaml reads: a missing section is named
    full = yaml.safe_load(written.read_text())
    del full["probe"]
    written.write_text(yaml.safe_dump(full))
    with pytest.raises(UserError, match="lacks section"):
        load_params(written)


def test_mlproject_render_takes_the_set():
    render = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]["render"]
    assert "--set {set}" in render["command"] and render["parameters"]["set"]["default"] == "single"


def test_the_schema_covers_every_section_dvc_yaml_reads():
    text = (ROOT / "dvc.yaml").read_text()
    for section in config.SECTIONS:
        assert f"${{{section}" in text or f"- {section}" in text, section
    assert {f.name for f in dataclasses.fields(config.Params)} == set(config.SECTIONS)


def test_the_backbone_variant_a_method_trains_is_its_class_attribute_not_its_name():
    for name in METHODS.names():
        variant = METHODS.get(name).backbone_variant
        want = f"{DEFAULT_BACKBONE}_split" if variant == "split" else DEFAULT_BACKBONE
        assert default_backbone(name) == want, name
    assert [n for n in METHODS.names() if METHODS.get(n).backbone_variant] == ["cmc"]
