"""`messengerd run` with a data directory it cannot use: one line and exit 2, no traceback;
and `-v` after the subcommand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess
from tests.deployed import Accounts, as_user

LOOPBACK = (
    "--bind", "127.0.0.1", "--broadcast", "127.255.255.255",
    "--name-port", "0", "--datagram-port", "0", "--session-port", "0", "--rpc-port", "0",
    "--alias", "BOB",
)  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "messengerd", "run", *LOOPBACK, *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize("store", [[], ["--no-store"]], ids=["store", "no-store"])
def test_a_data_dir_under_a_file_is_one_line_and_exit_2(tmp_path, store):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run("--data-dir", str(blocker / "data"), *store)
    assert result.returncode == 2
    assert result.stderr == (
        f"messengerd: cannot create the data directory {blocker / 'data'}: Not a directory: "
        "choose another with --data-dir\n"
    )


def test_a_data_dir_that_cannot_be_created_is_one_line_and_exit_2():
    result = run("--data-dir", "/proc/messengerd-test", "--no-store")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("messengerd: cannot create the data directory /proc/messengerd-test: ")
    assert line.endswith(": choose another with --data-dir")


def test_a_data_dir_this_user_cannot_write_is_one_line_and_exit_2(deployment):
    """As an ordinary user (root may write anywhere): the folder is root's, mode 0755."""
    data_dir = deployment.folder("not-yours")
    with Accounts("mdrun") as accounts:
        user = accounts.user("someone")
        result = as_user(
            user, os.fspath(deployment.messengerd), "run", *LOOPBACK, "--data-dir", str(data_dir)
        )
    assert result.returncode == 2
    assert result.stderr == (
        f"messengerd: cannot write to the data directory {data_dir} as {user.name}: give this "
        "user write access to it, or choose another with --data-dir\n"
    )


def test_verbose_after_run_logs_debug_detail(tmp_path: Path):
    command = [sys.executable, "-m", "messengerd", "run", "-v", "--json", *LOOPBACK,
               "--data-dir", str(tmp_path)]  # fmt: skip
    with DaemonProcess(data_dir=tmp_path, command=command) as daemon:
        pass
    assert any("control channel on" in line for line in daemon.log), daemon.log
