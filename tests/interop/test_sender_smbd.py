"""The sender against a receiver nobody here wrote: Samba's smbd with a `message command`,
on a loopback high port (Debian `samba`).

smbd takes D5/D7/D6 without a NEGOTIATE but ends the session on a D0 (smbd's process.c:
"The first request should be a negprot"), so `auto` delivers a short text by falling back to
multi-block. smbd converts the text from its `dos charset` to its `unix charset` and drops a
CR before an LF; the file its message command writes is compared with that. `%t` in a
message command is expanded when smb.conf is read (to the time), so only %s and %f are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.sender import CRLF, net_message_buffer_send, send_message
from tests.conftest import need_tool

pytestmark = pytest.mark.interop

START_TIMEOUT = 20.0
"""Seconds smbd gets to open its port."""

SMB_CONF = """\
[global]
  server role = standalone server
  interfaces = 127.0.0.1/8
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  server min protocol = NT1
  rpc start on demand helpers = no
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes
  private dir = {root}/private
  lock directory = {root}/lock
  state directory = {root}/state
  cache directory = {root}/cache
  pid directory = {root}/pid
  ncalrpc dir = {root}/ncalrpc
  log file = {root}/log.%m
  dos charset = CP850
  unix charset = UTF-8
  message command = /bin/sh {root}/message.sh %s %f
"""
"""`server min protocol = NT1`: above it smbd 4.17 accepts only a NEGOTIATE first, so no
message command at all. `disable netbios` keeps nmbd out; `interfaces` + `bind interfaces only`
keep smbd on loopback."""

MESSAGE_SCRIPT = """\
#!/bin/sh
# smbd runs this as the guest user, and waits for it before it answers the D6.
cat "$1" > "{inbox}/$2.txt"
rm -f "$1"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_addresses(pid: int) -> set[str]:
    """The local addresses of the TCP sockets process `pid` listens on (/proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: TCP_LISTEN
                found.add(local.split(":")[0])
    return found


LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}
"""127.0.0.1 and ::1 as /proc/net/tcp{,6} print them."""


@contextlib.contextmanager
def running_smbd(root: Path, *, message_command: bool = True) -> Iterator[int]:
    """smbd with its state under `root`, on 127.0.0.1:<free port>; yields the port."""
    binary = need_tool("smbd", "samba")
    for folder in ("private", "lock", "state", "cache", "pid", "ncalrpc"):
        (root / folder).mkdir()
    port = free_port()
    conf = SMB_CONF.format(port=port, root=root)
    if not message_command:
        conf = "\n".join(line for line in conf.splitlines() if "message command" not in line)
    (root / "smb.conf").write_text(conf)
    process = subprocess.Popen(
        [binary, "--foreground", "--no-process-group", "--debug-stdout", "-s", root / "smb.conf"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # smbd signals its whole process group when it ends; it must not be pytest's.
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.terminate()
                    output, _ = process.communicate(timeout=10)
                    pytest.fail(f"smbd did not start:\n{output.decode(errors='replace')}")
                time.sleep(0.1)
        assert listening_addresses(process.pid) <= LOOPBACK_HEX, "smbd must stay on loopback"
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def smbd_root() -> Iterator[Path]:
    """A folder the guest account can enter: smbd runs the message command as that user, and
    pytest's own tmp_path sits below a folder only root may enter."""
    with tempfile.TemporaryDirectory(prefix="messengerd-smbd-") as name:
        root = Path(name)
        root.chmod(0o755)
        yield root


@pytest.fixture
def smbd(smbd_root: Path) -> Iterator[tuple[int, Path]]:
    """smbd with a message command; yields (port, the folder its messages land in)."""
    inbox = smbd_root / "inbox"
    inbox.mkdir()
    inbox.chmod(0o777)
    (smbd_root / "message.sh").write_text(MESSAGE_SCRIPT.format(inbox=inbox))
    with running_smbd(smbd_root) as port:
        yield port, inbox


def delivered(inbox: Path, sender: str) -> bytes:
    """What smbd's message command wrote for the message from `sender`."""
    return (inbox / f"{sender}.txt").read_bytes()


def test_auto_delivers_a_short_text_after_smbd_refuses_d0(smbd):
    port, inbox = smbd
    text = "Grüße aus Köln: Drucker 3 ist leer"
    assert len(text.encode("cp850")) <= 128
    delivery = asyncio.run(
        send_message("RECVR", text, fromname="SENDER1", host="127.0.0.1", port=port)
    )
    assert (delivery.path, delivery.multi_block) == ("session", True)
    assert delivered(inbox, "SENDER1") == text.encode("utf-8")


def test_multi_block_text_arrives_byte_exact(smbd):
    port, inbox = smbd
    lines = [f"Zeile {n:02d}: Überspannung an USV {n} – Akku wird geladen" for n in range(14)]
    lines = [line.replace("–", "-") for line in lines]  # en dash is not in CP850
    text = "\n".join(lines)
    assert 700 < len(text.encode("cp850")) <= 1600
    code = net_message_buffer_send(
        "RECVR", text, fromname="SENDER2", host="127.0.0.1", port=port, line_break=CRLF
    )
    assert code == lmerr.NERR_Success
    # smbd drops the CR of each CRLF: what lands is the text with plain LF line breaks.
    assert delivered(inbox, "SENDER2") == text.encode("utf-8")


def test_windows_line_break_0x14_reaches_smbd_unchanged(smbd):
    port, inbox = smbd
    net_message_buffer_send("RECVR", "eins\nzwei", fromname="SENDER3", host="127.0.0.1", port=port)
    assert delivered(inbox, "SENDER3") == b"eins\x14zwei"


def test_smbd_without_message_command_refusal_is_nerr_network_error(smbd_root):
    """With no message command smbd 4.17 refuses the D5 with ERRDOS 71, the DOS form of
    STATUS_REQUEST_NOT_ACCEPTED (older smbd: ERRSRV/ERRmsgoff): a refusal, not a name problem."""
    with (
        running_smbd(smbd_root, message_command=False) as port,
        pytest.raises(NetError) as caught,
    ):
        net_message_buffer_send("RECVR", "hello?", host="127.0.0.1", port=port)
    assert caught.value.code == lmerr.NERR_NetworkError
    assert "refused the message" in caught.value.detail
    assert "request not accepted" in caught.value.detail
