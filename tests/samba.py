"""Samba's nmbd on one network namespace's veth, every file it keeps in a test's folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import need_tool

NMBD_CONF = """\
[global]
netbios name = HOLDER
workgroup = MDTEST
interfaces = {interface}
bind interfaces only = yes
disable netbios = no
local master = no
domain master = no
preferred master = no
os level = 0
dns proxy = no
wins support = no
lock directory = {tmp}/lock
state directory = {tmp}/state
cache directory = {tmp}/cache
private dir = {tmp}/private
pid directory = {tmp}/pid
ncalrpc dir = {tmp}/ncalrpc
binddns dir = {tmp}/bind-dns
log file = {tmp}/log.%m
"""
"""nmbd holding HOLDER<00>, <03> and <20> on `interface` only, its files under `tmp`."""

FOLDERS = ("lock", "state", "cache", "private", "pid", "ncalrpc", "bind-dns")


@contextmanager
def nmbd(namespace: str, interface: str, folder: Path) -> Iterator[subprocess.Popen]:
    """nmbd running in `namespace` on `interface` until the block ends (the caller waits
    for whatever readiness it needs)."""
    binary = need_tool("nmbd", "samba")
    for name in FOLDERS:
        (folder / name).mkdir()
    conf = folder / "smb.conf"
    conf.write_text(NMBD_CONF.format(tmp=folder, interface=interface))
    # nmbd -F ends at end of input: stdin stays an open pipe until the test is done.
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, binary, "-F", "--no-process-group",
         "-s", str(conf), "--debug-stdout", "-d", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
