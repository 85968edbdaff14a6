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


# what each command needs besides the option under test (values that pass every check made before a
# number is checked; the folders need not exist: numbers are checked before anything is read)
REQUIRED = {
    "render": ["--set", "single", "--variant=-C--", "--out", "{tmp}/r"],
    "import": ["--from", "imagefolder", "{tmp}/src", "--out", "{tmp}/i"],
    "pretrain": ["--method", "rotation", "--data", "{tmp}/d", "--out", "{tmp}/p"],
    "finetune": ["--task", "classification", "--data", "{tmp}/d", "--out", "{tmp}/f"],
    "probe": ["--task", "classification", "--data", "{tmp}/d", "--init", "{tmp}/m", "--out", "{tmp}/pr"],
    "tune": ["--task", "classification", "--data", "{tmp}/d", "--out", "{tmp}/t"],
    "report": ["--results", "{tmp}/r.csv", "--out", "{tmp}/rep"],
    "study": ["--estimate-only"],
}


def _numeric_options():
    """(command, option, integer?) for every int or float option of every command, read off the command
    functions' signatures (as typer builds the options from them)."""
    import inspect
    import typing

    from selfsup.cli import app

    for info in app.registered_commands:
        fn = info.callback
        hints = typing.get_type_hints(fn)
        for name, param in inspect.signature(fn).parameters.items():
            kinds = set(typing.get_args(hints[name])) - {type(None)} or {hints[name]}
            if kinds & {int, float} and not kinds & {bool}:
                decls = [d for d in getattr(param.default, "param_decls", None) or () if d.startswith("--")]
                yield (info.name or fn.__name__), (decls[0] if decls else "--" + name.replace("_", "-")), int in kinds


NUMERIC = sorted(_numeric_options())


def test_the_numeric_options_are_all_found():
    names = {f"{c} {o}" for c, o, _ in NUMERIC}
    assert {"render --count", "render --seed", "finetune --steps", "pretrain --lr", "probe --k"} <= names
    assert len(NUMERIC) >= 30


@pytest.mark.parametrize("command,option,integer", NUMERIC, ids=[f"{c}{o}" for c, o, _ in NUMERIC])
def test_every_numeric_option_has_an_upper_limit(command, option, integer, tmp_path):
    """Far past any sensible value, each option is a one-line error naming the value (checks.LIMITS), never
    an overflow, a hang or work started."""
    from selfsup.cli import app
    from selfsup.core.errors import UserError

    huge = str(10**30) if integer else "1e30"
    args = [a.format(tmp=tmp_path) for a in REQUIRED.get(command, [])]
    with pytest.raises(UserError, match="must be at most") as e:
        app(args=[command, *args, option, huge], standalone_mode=False, prog_name="selfsup")
    assert (huge if integer else "1e+30") in str(e.value) and "\n" not in str(e.value)
