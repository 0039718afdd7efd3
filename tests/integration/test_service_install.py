"""`messengerd service install` on Linux, as far as a machine without systemd allows: the unit
it writes (checked by systemd's own analyzer), the system account it creates, and the one
line it gives where systemd does not run or the user is not root. The systemctl steps
themselves are not run anywhere here."""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
from pathlib import Path

import pytest

from messengerd import service_linux
from tests.conftest import need_tool
from tests.deployed import Accounts, as_user

EXPOSURE_OK = 2.0
"""The highest `systemd-analyze security` exposure still shown as "OK" (below MEDIUM)."""


def deployed(deployment, code: str) -> str:
    """What `code` prints when run by the deployed venv's python (its own install paths)."""
    result = subprocess.run(
        [deployment.venv / "bin" / "python", "-c", code],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout.strip()


def rendered_unit(deployment, folder: Path) -> Path:
    """The unit `service install` would write for the deployed venv, in `folder`."""
    text = deployed(
        deployment,
        "from messengerd import service_linux as s; "
        "print(s.render_unit(s.messengerd_command(), s.documentation()), end='')",
    )
    path = folder / service_linux.UNIT_NAME
    path.write_text(text + "\n" if not text.endswith("\n") else text)
    return path


def test_a_venv_install_has_the_docs_its_unit_points_at(deployment):
    ask = "from messengerd import service_linux as s; print(s.{}())"
    command = deployed(deployment, ask.format("messengerd_command"))
    assert command == os.fspath(deployment.messengerd)
    documentation = deployed(deployment, ask.format("documentation"))
    docs = deployment.venv / "share" / "doc" / "messengerd"
    assert documentation == (docs / "service" / "README.md").as_uri()
    assert (docs / "service" / "README.md").is_file()
    assert (docs / "service" / "messengerd.service").is_file()  # for installing by hand
    assert (docs / "README.md").is_file()


def test_systemd_accepts_the_unit_it_writes(deployment, tmp_path):
    analyze = need_tool("systemd-analyze", "systemd")
    unit = rendered_unit(deployment, tmp_path)
    verify = subprocess.run([analyze, "verify", unit], capture_output=True, text=True, timeout=60)
    # verify only warns about an unknown key or a bad value, but it warns.
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr


def test_systemd_rates_the_units_exposure_ok(deployment, tmp_path):
    analyze = need_tool("systemd-analyze", "systemd")
    unit = rendered_unit(deployment, tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=true", unit], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= EXPOSURE_OK and match[2] == "OK", match[0]


def test_ensure_account_makes_a_system_user_and_group_once():
    with Accounts("mdacct") as accounts:
        name = f"{accounts.prefix}-svc"
        accounts.users.append(name)  # removed at exit, made below
        home = Path("/var/lib") / name
        done = service_linux.ensure_account(name, home)
        assert done == [
            f"groupadd --system {name}",
            f"useradd --system --gid {name} --home-dir {home} --no-create-home "
            f"--shell /usr/sbin/nologin --comment messengerd service {name}",
        ]
        user = pwd.getpwnam(name)
        assert user.pw_gid == grp.getgrnam(name).gr_gid
        assert (user.pw_dir, user.pw_shell) == (os.fspath(home), "/usr/sbin/nologin")
        assert user.pw_uid < 1000  # a system account (Debian's SYS_UID_MAX is 999)
        assert not home.exists()  # systemd's StateDirectory= makes it
        assert service_linux.ensure_account(name, home) == []


def test_install_without_systemd_is_one_line_and_changes_nothing(deployment):
    if service_linux.SYSTEMD_RUNNING.is_dir():
        pytest.skip("systemd runs on this machine: the command would install for real")
    before = state()
    result = subprocess.run(
        [deployment.messengerd, "service", "install"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr == (
        "messengerd: systemd is not running on this machine: start `messengerd run` from its "
        "init system instead (service/README.md)\n"
    )
    assert state() == before


def state() -> tuple[object, ...]:
    """What install would change: the unit and settings folders, the users and groups."""
    folders = (service_linux.UNIT_DIR, service_linux.SETTINGS_DIR)
    listings = [sorted(os.listdir(folder)) if folder.is_dir() else None for folder in folders]
    return *listings, len(pwd.getpwall()), len(grp.getgrall())


@pytest.mark.parametrize("action", ["install", "remove"])
def test_install_and_remove_need_root(deployment, action):
    with Accounts("mdnoroot") as accounts:
        user = accounts.user("admin")
        result = as_user(user, os.fspath(deployment.messengerd), "service", action)
    assert result.returncode == 2
    assert result.stderr == (
        "messengerd: installing or removing the service needs root: run it with sudo\n"
    )
