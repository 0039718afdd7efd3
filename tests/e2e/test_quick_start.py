"""README.md's Quick start as a newcomer pastes it: a venv, `messengerd run` on loopback high
ports as an ordinary user, and Samba's smbclient in a second terminal.

The commands are read from the README itself (tests/deployed.py): the `deployment` fixture
ran the install lines; this runs the rest. Only the README's fixed high ports become free
ones, since other test runs share this machine.
"""

from __future__ import annotations

import os
import re
import shlex

import pytest

from tests.conftest import need_tool
from tests.daemon_process import DaemonProcess
from tests.deployed import (
    SAFE_PATH,
    Accounts,
    as_user,
    code_blocks,
    markdown_section,
    shell_lines,
)

pytestmark = pytest.mark.interop

PORT_OPTIONS = ("--name-port", "--datagram-port", "--session-port", "--rpc-port")


def quick_start_blocks() -> tuple[list[str], list[str]]:
    """The first terminal's commands and the second terminal's, as the README gives them."""
    first, second, *_ = code_blocks(markdown_section("Quick start"), "sh")
    return shell_lines(first), shell_lines(second)


def with_free_ports(argv: list[str]) -> list[str]:
    """`argv` with the value of each port option replaced by 0 (any free port)."""
    argv = list(argv)
    for option in PORT_OPTIONS:
        argv[argv.index(option) + 1] = "0"
    return argv


def test_quick_start_needs_only_a_venv_and_smbclient_no_root_no_samba_server():
    first, second = quick_start_blocks()
    assert first[0] == "sudo apt-get install python3-venv smbclient"
    assert not any("sudo" in line or ".ci/" in line for line in first[1:] + second)
    run = shlex.split(first[-1])
    assert run[1:2] == ["run"]
    assert run[run.index("--bind") + 1] == "127.0.0.1"
    assert run[run.index("--broadcast") + 1] == "127.255.255.255"
    assert all(int(run[run.index(option) + 1]) > 1024 for option in PORT_OPTIONS)
    section = markdown_section("Quick start")
    assert "**second terminal**" in section
    assert code_blocks(section, "sh")[2].strip() == "bash .ci/run"


def test_quick_start_receives_smbclients_message_as_an_ordinary_user(deployment):
    need_tool("smbclient", "smbclient")
    first, second = quick_start_blocks()
    home = deployment.folder("home-newcomer")
    with Accounts("mdqs") as accounts:
        newcomer = accounts.user("newcomer", home=home)
        os.chown(home, newcomer.uid, newcomer.gid)
        env = {"PATH": SAFE_PATH, "HOME": os.fspath(home), "USER": newcomer.name,
               "LOGNAME": newcomer.name, "LANG": "C.UTF-8"}  # fmt: skip
        run = with_free_ports(shlex.split(deployment.quick_start(first[-1])))
        command = ["setpriv", f"--reuid={newcomer.name}", f"--regid={newcomer.gid}",
                   "--init-groups", *run]  # fmt: skip
        with DaemonProcess(data_dir=None, command=command, env=env, json_lines=False) as daemon:
            port = daemon.ports["session"]
            send = second[0].replace("-p 10139", f"-p {port}")
            assert send != second[0]
            sent = as_user(newcomer, "bash", "-c", send)
            assert sent.returncode == 0, sent.stderr
            line = daemon.next_message()
            assert re.fullmatch(
                r"\[[-0-9: ]+\] ALICE -> BOB \(session, 127\.0\.0\.1:\d+\): Hello from smbclient",
                line,
            ), line
            status = as_user(newcomer, os.fspath(deployment.messengerd), "status")
            assert status.returncode == 0, status.stderr
            assert re.search(r"^aliases\s+BOB$", status.stdout, re.M), status.stdout
            assert re.search(r"^received\s+1 message$", status.stdout, re.M), status.stdout
            # Its own data directory, in its home: nothing of root's or the service's.
            assert f"{home}/.local/share/messengerd" in status.stdout
