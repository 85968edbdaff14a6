"""scripts/setup.sh's system-package branch, run for real with apt-get, sudo, dpkg and id replaced by
recording stand-ins on PATH (as root and as a user with sudo), and its quick second run."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIBS = "libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libxext6 libgl1 libegl1 chromium".split()


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
    path.chmod(0o755)


@pytest.fixture()
def project(tmp_path):
    """A copy of the set-up script and pyproject with a stand-in venv already built from them, and a
    folder of stand-ins: dpkg (knows the packages in $INSTALLED), apt-get (fails when $APT_FAIL names
    its subcommand), sudo (runs the rest), id (uid $FAKE_UID); each logs its argv to $LOG."""
    proj = tmp_path / "proj"
    (proj / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", proj / "scripts" / "setup.sh")
    shutil.copy(REPO / "pyproject.toml", proj / "pyproject.toml")
    venv_bin = proj / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    _stub(venv_bin, "python", 'echo "python $*" >> "$LOG"; [ "$1" = -c ] && echo 3.11.0; exit 0\n')
    stamp = hashlib.sha256((proj / "pyproject.toml").read_bytes() + (proj / "scripts" / "setup.sh").read_bytes())
    (proj / ".venv" / ".selfsup-setup").write_text(stamp.hexdigest() + "\n")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    _stub(
        stubs,
        "dpkg",
        """\
        echo "dpkg $*" >> "$LOG"
        for p in $INSTALLED; do
            [ "$p" = "$2" ] && { echo "Package: $2"; echo "Status: install ok installed"; exit 0; }
        done
        echo "dpkg-query: package '$2' is not installed" >&2; exit 1
        """,
    )
    _stub(
        stubs,
        "apt-get",
        """\
        echo "apt-get $* [DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-}] [uid $FAKE_UID]" >> "$LOG"
        echo "E: apt says something on stderr"; echo "E: and more" >&2
        [ "$1" = "$APT_FAIL" ] && exit 100; exit 0
        """,
    )
    _stub(stubs, "sudo", 'echo "sudo $*" >> "$LOG"; FAKE_UID=0 exec "$@"\n')
    _stub(stubs, "id", '[ "$1" = -u ] && { echo "$FAKE_UID"; exit 0; }; exec /usr/bin/id "$@"\n')
    return proj, stubs, tmp_path / "calls.log"


def _setup(project, uid: int, installed=(), apt_fail="", sudo=True):
    proj, stubs, log = project
    if not sudo:
        (stubs / "sudo").unlink()
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "LOG": str(log),
        "FAKE_UID": str(uid),
        "INSTALLED": " ".join(installed),
        "APT_FAIL": apt_fail,
        "HOME": os.environ.get("HOME", "/root"),
        "TMPDIR": str(log.parent),
    }
    res = subprocess.run(
        ["bash", str(proj / "scripts" / "setup.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return res, [c for c in calls if not c.startswith(("dpkg ", "python "))]


def test_root_runs_apt_get_itself(project):
    res, calls = _setup(project, uid=0, installed=LIBS[:-1])
    assert res.returncode == 0, res.stderr
    assert "setup: installing system libraries: chromium" in res.stdout
    assert calls == [
        "apt-get update -qq [DEBIAN_FRONTEND=noninteractive] [uid 0]",
        "apt-get install -y -qq --no-install-recommends chromium [DEBIAN_FRONTEND=noninteractive] [uid 0]",
    ]
    assert "command not found" not in res.stderr
    assert "setup: up to date" in res.stdout  # the stand-in venv matches: pip never ran


def test_user_goes_through_sudo(project):
    res, calls = _setup(project, uid=1000, installed=[p for p in LIBS if p not in ("libgl1", "chromium")])
    assert res.returncode == 0, res.stderr
    assert calls == [
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "apt-get update -qq [DEBIAN_FRONTEND=noninteractive] [uid 0]",
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgl1 chromium",
        "apt-get install -y -qq --no-install-recommends libgl1 chromium [DEBIAN_FRONTEND=noninteractive] [uid 0]",
    ]


def test_nothing_missing_calls_no_apt(project):
    res, calls = _setup(project, uid=0, installed=LIBS)
    assert res.returncode == 0, res.stderr
    assert calls == []
    assert "installing" not in res.stdout


@pytest.mark.parametrize("uid,fail", [(0, "install"), (0, "update"), (1000, "install")])
def test_failing_apt_stops_with_one_line_naming_the_packages(project, uid, fail):
    res, calls = _setup(project, uid=uid, installed=LIBS[2:-1], apt_fail=fail)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"setup: error: apt-get {fail} failed")
    assert "libx11-6 libxrender1 chromium" in lines[0]
    assert "python" not in " ".join(calls)  # stopped before the venv


def test_user_without_sudo_is_told_what_to_install(project):
    res, calls = _setup(project, uid=1000, installed=LIBS[:-1], sudo=False)
    assert res.returncode != 0 and calls == []
    assert res.stderr.strip().splitlines() == [
        "setup: error: missing system packages: chromium (not root and no sudo: ask an admin to apt-get install them)"
    ]


def test_second_run_is_a_quick_no_op():
    """On the real checkout (after the README's set-up): nothing to install, pip not called."""
    if not (REPO / ".venv" / ".selfsup-setup").is_file():
        pytest.skip("the checkout's .venv was not built by scripts/setup.sh")
    stamp = (REPO / ".venv" / ".selfsup-setup").read_text()
    res = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines() == ["setup: up to date (.venv matches pyproject.toml)"]
    assert (REPO / ".venv" / ".selfsup-setup").read_text() == stamp


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_a_real_non_root_user_goes_through_sudo(project):
    """Not a stand-in id: the script runs as the user nobody (uid 65534), so only sudo can install."""
    import tempfile

    proj, stubs, _ = project
    (stubs / "id").unlink()
    shared = Path(tempfile.mkdtemp(prefix="selfsup-setup-", dir="/tmp"))
    try:
        shutil.copytree(proj, shared / "proj", symlinks=True)
        shutil.copytree(stubs, shared / "stubs")
        log = shared / "calls.log"
        log.write_text("")
        subprocess.run(["chmod", "-R", "a+rwX", str(shared)], check=True)
        env = {
            "PATH": f"{shared / 'stubs'}:/usr/bin:/bin",
            "LOG": str(log),
            "FAKE_UID": "65534",
            "INSTALLED": " ".join(LIBS[:-1]),
            "APT_FAIL": "",
            "HOME": str(shared),
            "TMPDIR": str(shared),
        }
        res = subprocess.run(
            [
                "setpriv",
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "bash",
                str(shared / "proj" / "scripts" / "setup.sh"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        calls = [c for c in log.read_text().splitlines() if not c.startswith(("dpkg ", "python "))]
        assert calls[0] == "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq"
        assert (
            calls[2]
            == "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium"
        )
        assert len(calls) == 4
    finally:
        shutil.rmtree(shared, ignore_errors=True)
