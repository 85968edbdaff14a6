"""One source for each shared name and default: the CLI, the Python API and MLproject agree."""

import inspect
from pathlib import Path

import yaml

from selfsup import cli
from selfsup.defaults import DEFAULT_BACKBONE, DEFAULT_BUDGETS, DEFAULT_SEEDS, as_csv
from selfsup.finetune import finetune
from selfsup.methods import METHODS, default_backbone
from selfsup.probe import probe

ROOT = Path(__file__).resolve().parents[1]


def _cli_default(command, option):
    return inspect.signature(command).parameters[option].default.default


def test_default_budgets_and_seeds_are_the_same_in_the_cli_the_api_and_mlproject():
    entry = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    for command, api in ((cli.finetune, finetune), (cli.probe, probe)):
        assert _cli_default(command, "budgets") == as_csv(DEFAULT_BUDGETS)
        assert _cli_default(command, "seeds") == as_csv(DEFAULT_SEEDS)
        assert tuple(inspect.signature(api).parameters["budgets"].default) == DEFAULT_BUDGETS
        name = command.__name__
        assert entry[name]["parameters"]["budgets"]["default"] == as_csv(DEFAULT_BUDGETS), name
        assert entry[name]["parameters"]["seeds"]["default"] == as_csv(DEFAULT_SEEDS), name


def test_mlproject_render_takes_the_set_and_defaults_to_the_default_studys_variant():
    render = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]["render"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]["single"]
    assert "--set {set}" in render["command"] and render["parameters"]["set"]["default"] == "single"
    assert render["parameters"]["variant"]["default"] == params["variant"]


def test_the_backbone_variant_a_method_trains_is_its_class_attribute_not_its_name():
    for name in METHODS.names():
        variant = METHODS.get(name).backbone_variant
        want = f"{DEFAULT_BACKBONE}_split" if variant == "split" else DEFAULT_BACKBONE
        assert default_backbone(name) == want, name
    assert [n for n in METHODS.names() if METHODS.get(n).backbone_variant] == ["cmc"]
