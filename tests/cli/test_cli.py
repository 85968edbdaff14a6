"""Bad input: one line naming the bad value, exit status ≠ 0, no traceback, nothing lost."""

import pytest
from conftest import run_cli


def _one_line_error(r, needle: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert needle in lines[0], lines[0]


def test_every_command_has_help_with_an_example():
    for cmd in ("render", "pretrain", "finetune", "probe", "report"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and "Example: selfsup " + cmd in " ".join(r.stdout.split())


def test_unknown_method(tiny_dataset, tmp_path):
    _one_line_error(
        run_cli("pretrain", "--method", "jigsaw", "--data", str(tiny_dataset), "--out", str(tmp_path)), "'jigsaw'"
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--method", "cmc", "--backbone", "resnet9_split", "--width", "0"], "width"),
        (["--method", "simclr", "--backbone", "vit"], "'vit'"),
        (["--method", "simclr", "--colour", "hsv"], "'hsv'"),
        (["--method", "simclr", "--schedule", "step"], "'step'"),
    ],
)
def test_bad_pretrain_settings(tiny_dataset, tmp_path, args, needle):
    _one_line_error(run_cli("pretrain", "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), *args), needle)


def test_label_budget_larger_than_the_train_split(tiny_dataset, tmp_path):
    _one_line_error(
        run_cli("finetune", "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), "--budgets", "10,100000"),
        "label budget 100000",
    )
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_missing_dataset_folder(tmp_path):
    _one_line_error(
        run_cli("finetune", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")),
        str(tmp_path / "nowhere"),
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--budgets", "10,1O0"], "'1O0'"),
        (["--seeds", "zero"], "'zero'"),
        (["--task", "depth"], "'depth'"),
        (["--protocol", "linear-ish"], "'linear-ish'"),
        (["--steps", "many"], "'many'"),
    ],
)
def test_malformed_finetune_params(tiny_dataset, tmp_path, args, needle):
    _one_line_error(run_cli("finetune", "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), *args), needle)


def test_bad_report_settings(tmp_path):
    _one_line_error(run_cli("report", "--out", str(tmp_path / "r")), "--results")
    _one_line_error(
        run_cli("report", "--results", str(tmp_path), "--out", str(tmp_path / "r"), "--export", "gif"), "'gif'"
    )
