"""Desktop users and the system service: `--control-group`, tried with real users.

A daemon runs as a fresh system user from the Quick start's venv, in /var/lib/messengerd
with `--control-group` naming its own group, as the unit runs it. A member of that group
and a stranger then use `messengerd status`, `names` and `history` with no options, as they
would at their desks; each runs as itself (setpriv --init-groups: its groups from the group
database, as a login gives them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from messengerd.config.options import SERVICE_DATA_DIR
from messengerd.core.datadir import ControlGroup
from messengerd.sender import net_message_buffer_send
from tests.daemon_process import DaemonProcess
from tests.deployed import SAFE_PATH, Accounts, as_user

ACCESS_DENIED = 5
"""ERROR_ACCESS_DENIED, the control channel's refusal."""


@pytest.fixture(scope="module")
def users():
    with Accounts("mdgrp") as accounts:
        service = accounts.user("svc", system=True)
        member = accounts.user("member", groups=(service.name,))
        stranger = accounts.user("stranger")
        yield service, member, stranger


@pytest.fixture(scope="module")
def service_dir(users):
    """/var/lib/messengerd as the unit's StateDirectory= makes it; only where this machine
    has none (a real service's is never touched)."""
    if SERVICE_DATA_DIR.exists():
        pytest.skip(f"{SERVICE_DATA_DIR} exists: a real messengerd service may use it")
    service = users[0]
    SERVICE_DATA_DIR.mkdir(mode=0o750)
    os.chown(SERVICE_DATA_DIR, service.uid, service.gid)
    yield SERVICE_DATA_DIR
    shutil.rmtree(SERVICE_DATA_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def service_daemon(deployment, users, service_dir):
    service = users[0]
    env = {"PATH": SAFE_PATH, "HOME": os.fspath(service.home), "USER": service.name,
           "LOGNAME": service.name, "LANG": "C.UTF-8"}  # fmt: skip
    command = [
        "setpriv", f"--reuid={service.name}", f"--regid={service.gid}", "--init-groups",
        os.fspath(deployment.messengerd), "run", "--json",
        "--bind", "127.0.0.1", "--broadcast", "127.255.255.255",
        "--name-port", "0", "--datagram-port", "0", "--session-port", "0", "--rpc-port", "0",
        "--data-dir", os.fspath(service_dir), "--control-group", service.name, "--alias", "BOB",
    ]  # fmt: skip
    with DaemonProcess(data_dir=service_dir, command=command, env=env) as daemon:
        net_message_buffer_send(
            "BOB", "Backup finished", fromname="ALICE", host="127.0.0.1",
            port=daemon.ports["session"], via="session",
        )  # fmt: skip
        assert daemon.next_message()["text"] == "Backup finished"
        yield daemon


def messengerd(deployment, user, *args: str):
    return as_user(user, os.fspath(deployment.messengerd), *args)


def test_the_service_directory_is_shared_with_its_group_only(users, service_daemon):
    service = users[0]
    directory = service_daemon.data_dir
    for name, mode in (("", 0o750), ("control.sock", 0o660), ("messages.sqlite3", 0o640)):
        info = (directory / name).stat()
        assert (info.st_uid, info.st_gid) == (service.uid, service.gid), name
        assert stat.S_IMODE(info.st_mode) == mode, (name, oct(info.st_mode))


def test_a_member_uses_status_names_and_history_with_no_options(deployment, users, service_daemon):
    _, member, _ = users
    status = messengerd(deployment, member, "status")
    assert status.returncode == 0, status.stderr
    assert re.search(rf"^data dir\s+{SERVICE_DATA_DIR}$", status.stdout, re.M), status.stdout
    assert re.search(r"^received\s+1 message$", status.stdout, re.M)
    names = messengerd(deployment, member, "names", "list")
    assert names.returncode == 0, names.stderr
    assert "BOB" in names.stdout.splitlines()
    history = messengerd(deployment, member, "history", "--json")
    assert history.returncode == 0, history.stderr
    (line,) = history.stdout.splitlines()
    assert json.loads(line)["text"] == "Backup finished"


def test_a_member_cannot_change_the_history(deployment, users, service_daemon):
    _, member, _ = users
    result = messengerd(deployment, member, "history", "--mark-read")
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "readonly" in result.stderr or "read-only" in result.stderr


@pytest.mark.parametrize("command", [["status"], ["names", "list"], ["history"]])
def test_a_stranger_is_refused_in_one_line_naming_the_group(
    deployment, users, service_daemon, command
):
    service, _, stranger = users
    result = messengerd(deployment, stranger, *command)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"messengerd: cannot reach the messengerd in {SERVICE_DATA_DIR}: permission denied; "
        f"only {service.name} and the group '{service.name}' may: ask an administrator to add "
        f"you (usermod -aG {service.name} {stranger.name}), then log in again\n"
    )


def test_the_daemon_checks_each_peer_even_where_the_files_would_let_it_in(
    deployment, users, service_daemon
):
    """Defence in depth: with the directory and socket opened to all by mistake, the daemon's
    own SO_PEERCRED check still refuses the stranger and serves the member."""
    _, member, stranger = users
    directory = service_daemon.data_dir
    socket_path = directory / "control.sock"
    os.chmod(directory, 0o755)
    os.chmod(socket_path, 0o666)
    try:
        refused = messengerd(deployment, stranger, "status", "--data-dir", os.fspath(directory))
        served = messengerd(deployment, member, "status", "--data-dir", os.fspath(directory))
    finally:
        os.chmod(directory, 0o750)
        os.chmod(socket_path, 0o660)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"messengerd: ERROR_ACCESS_DENIED ({ACCESS_DENIED})")
    assert served.returncode == 0, served.stderr
    assert any("refused: not uid" in line for line in service_daemon.log), service_daemon.log


def test_membership_comes_from_the_group_database_where_proc_is_hidden(users):
    """The unit's ProtectProc=invisible hides a peer's /proc/PID from the daemon; the group
    database answers then (pid 0 has no /proc entry of its own)."""
    service, member, stranger = users
    group = ControlGroup.named(service.name)
    assert group.admits(0, member.uid, member.gid)
    assert not group.admits(0, stranger.uid, stranger.gid)
    assert group.admits(0, service.uid, service.gid)


def test_a_daemon_without_control_group_keeps_everything_private(deployment, users, tmp_path):
    """Private again on the next start without the option: inbox 0600, socket 0600."""
    service = users[0]
    directory = deployment.folder("private-state", owner=service.name, mode=0o750)
    (directory / "messages.sqlite3").touch(mode=0o640)
    os.chown(directory / "messages.sqlite3", service.uid, service.gid)
    env = {"PATH": SAFE_PATH, "HOME": os.fspath(service.home), "LANG": "C.UTF-8"}
    command = [
        "setpriv", f"--reuid={service.name}", f"--regid={service.gid}", "--init-groups",
        os.fspath(deployment.messengerd), "run", "--json",
        "--bind", "127.0.0.1", "--broadcast", "127.255.255.255",
        "--name-port", "0", "--datagram-port", "0", "--session-port", "0", "--rpc-port", "0",
        "--data-dir", os.fspath(directory), "--alias", "BOB",
    ]  # fmt: skip
    with DaemonProcess(data_dir=directory, command=command, env=env):
        assert stat.S_IMODE((directory / "messages.sqlite3").stat().st_mode) == 0o600
        assert stat.S_IMODE((directory / "control.sock").stat().st_mode) == 0o600


def test_a_group_that_does_not_exist_is_one_line_and_exit_2(deployment, users, tmp_path):
    result = messengerd(
        deployment, users[1], "run", "--data-dir", os.fspath(Path("/nonexistent/x")),
        "--control-group", "no-such-group-here", "--bind", "127.0.0.1",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "messengerd: there is no group 'no-such-group-here': create it "
        "(groupadd no-such-group-here) or name another with --control-group\n"
    )


def test_history_still_reads_once_the_daemon_has_stopped(deployment, users, service_daemon):
    """Without the daemon no -wal or -shm exists, and a member cannot create them; the file
    alone holds every message then, and is read as it is. (The last test of this daemon.)"""
    _, member, _ = users
    assert service_daemon.stop() == 0, service_daemon.log
    service_dir = service_daemon.data_dir
    assert not (service_dir / "control.sock").exists()
    for leftover in ("messages.sqlite3-wal", "messages.sqlite3-shm"):
        (service_dir / leftover).unlink(missing_ok=True)
    history = messengerd(deployment, member, "history")
    assert history.returncode == 0, history.stderr
    assert "ALICE -> BOB" in history.stdout and "Backup finished" in history.stdout
