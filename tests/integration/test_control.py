"""The control channel: a real in-process Daemon, its Unix socket or loopback TCP, the client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from messengerd.config.options import DaemonConfig
from messengerd.control.client import ControlClient
from messengerd.control.hub import SUBSCRIBER_QUEUE
from messengerd.control.protocol import (
    CONTROL_SOCKET,
    CONTROL_TCP_FILE,
    MAX_REQUEST_BYTES,
    NoDaemonError,
)
from messengerd.core import lmerr
from messengerd.core.aliases import ALIAS_FILE, MAX_ALIASES, load_aliases
from messengerd.core.lmerr import NetError
from messengerd.core.message import Message
from messengerd.daemon import Daemon, ListenError
from messengerd.protocol.events import MessageReceived
from messengerd.tray.attach import Subscription
from tests.conftest import need
from tests.daemon_process import request_as_other_user


def config(data_dir: Path, *aliases: str, **options) -> DaemonConfig:
    """A loopback daemon that registers nothing: these tests are about the control channel."""
    values = {
        "bind": "127.0.0.1",
        "broadcast": "127.255.255.255",
        "name_port": 0,
        "datagram_port": 0,
        "session_port": 0,
        "rpc_port": 0,
        "aliases": list(aliases) or ["RECVR"],
        "computer_name": "HOST1",
        "data_dir": data_dir,
        "store": False,
        "register": False,
        **options,
    }
    return DaemonConfig(**values)


async def started(data_dir: Path, *aliases: str, **options) -> Daemon:
    daemon = Daemon(config(data_dir, *aliases, **options))
    await daemon.start()
    return daemon


async def call(data_dir: Path, op: str, **params):
    """One request from a blocking client, the way the CLI makes it."""

    def request():
        with ControlClient(data_dir) as client:
            return client.request(op, **params)

    return await asyncio.to_thread(request)


async def code_of(data_dir: Path, op: str, **params) -> int:
    with pytest.raises(NetError) as caught:
        await call(data_dir, op, **params)
    return caught.value.code


async def raw_exchange(address, lines: list[bytes], *, family=socket.AF_UNIX) -> list[dict]:
    """Send raw bytes, read every reply line until the daemon closes or goes quiet."""

    def exchange():
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(address)
            replies = []
            reader = sock.makefile("rb")
            for line in lines:
                try:
                    sock.sendall(line)
                    reply = reader.readline()
                except (ConnectionResetError, BrokenPipeError):
                    break  # closed by the daemon: what came before is the answer
                if not reply:
                    break
                replies.append(json.loads(reply))
            return replies

    return await asyncio.to_thread(exchange)


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


# --- files and modes ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_socket_is_0600_in_a_0700_data_dir_and_gone_after_stop(data_dir):
    daemon = await started(data_dir)
    path = data_dir / CONTROL_SOCKET
    try:
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert path.stat().st_mode & 0o777 == 0o600
        assert data_dir.stat().st_mode & 0o777 == 0o700
        assert daemon.control.address == str(path)
    finally:
        await daemon.stop()
    assert not path.exists()


# --- the four NetMessageName* operations ------------------------------------------------------


@pytest.mark.asyncio
async def test_add_list_info_del(data_dir):
    daemon = await started(data_dir)
    try:
        assert (await call(data_dir, "names.add", name="bob"))["name"] == "BOB"
        listing = await call(data_dir, "names.list")
        assert listing["entries"] == [{"name": "BOB"}, {"name": "RECVR"}]
        assert (listing["total_entries"], listing["status"]) == (2, lmerr.NERR_Success)
        info = await call(data_dir, "names.info", name="Bob", level=1)
        assert info["entry"] == {"name": "BOB", "forward_flag": 0, "forward": None}
        assert (await call(data_dir, "names.del", name="BOB"))["name"] == "BOB"
        assert daemon.aliases.texts() == ["RECVR"]
    finally:
        await daemon.stop()


@pytest.mark.asyncio
async def test_every_refusal_carries_its_lmerr_code(data_dir):
    daemon = await started(data_dir, "HOST1", "RECVR")
    try:
        assert await code_of(data_dir, "names.add", name="recvr") == 2276
        assert await code_of(data_dir, "names.add", name="A" * 16) == 87
        assert await code_of(data_dir, "names.add") == 87
        assert await code_of(data_dir, "names.del", name="CAROL") == 2285
        assert await code_of(data_dir, "names.del", name="host1") == 2278
        assert await code_of(data_dir, "names.info", name="CAROL") == 2285
        assert await code_of(data_dir, "names.info", name="RECVR", level=2) == 124
        assert await code_of(data_dir, "names.list", level=3) == 124
        assert await code_of(data_dir, "names.list", level=True) == 87
        assert await code_of(data_dir, "names.list", resume_handle=99) == 87
        assert await code_of(data_dir, "names.rename", name="X") == 50
    finally:
        await daemon.stop()


@pytest.mark.asyncio
async def test_a_full_table_refuses_one_more_and_the_resume_handle_walks_all_256(data_dir):
    names = [f"USER{i:03d}" for i in range(MAX_ALIASES)]
    daemon = await started(data_dir, *names)
    try:
        assert await code_of(data_dir, "names.add", name="ONEMORE") == 2277
        seen, handle = [], 0
        while True:
            reply = await call(
                data_dir, "names.list", level=0, prefmaxlen=100, resume_handle=handle
            )
            seen += [entry["name"] for entry in reply["entries"]]
            if reply["status"] == lmerr.NERR_Success:
                break
            assert reply["status"] == lmerr.ERROR_MORE_DATA == 234
            handle = reply["resume_handle"]
        assert seen == names
    finally:
        await daemon.stop()


# --- malformed requests -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bad_json_gets_an_error_reply_and_the_connection_stays_usable(data_dir):
    daemon = await started(data_dir)
    try:
        replies = await raw_exchange(
            str(data_dir / CONTROL_SOCKET),
            [b"{not json\n", b"[1, 2]\n", b"\xff\xfe\n", b'{"op": "status", "id": 7}\n'],
        )
        assert [r["ok"] for r in replies] == [False, False, False, True]
        assert {r["code"] for r in replies[:3]} == {lmerr.ERROR_INVALID_PARAMETER}
        assert replies[0]["error"] == "ERROR_INVALID_PARAMETER"
        assert replies[3]["id"] == 7 and replies[3]["aliases"] == ["RECVR"]
    finally:
        await daemon.stop()


@pytest.mark.asyncio
async def test_an_over_long_request_is_skipped_with_an_error_reply(data_dir):
    daemon = await started(data_dir)
    try:
        line = b'{"op": "status", "pad": "' + b"x" * MAX_REQUEST_BYTES + b'"}\n'
        replies = await raw_exchange(str(data_dir / CONTROL_SOCKET), [line, b'{"op": "status"}\n'])
        assert replies[0]["code"] == lmerr.ERROR_INVALID_PARAMETER
        assert str(MAX_REQUEST_BYTES) in replies[0]["detail"]
        assert replies[1]["ok"], "the connection serves on"
    finally:
        await daemon.stop()


# --- who may connect --------------------------------------------------------------------------


@pytest.fixture
def open_dir():
    """A data dir under /tmp that another user could reach once its modes allow it."""
    need(os.geteuid() == 0, "switching to another user needs root")
    with tempfile.TemporaryDirectory(dir="/tmp") as parent:
        Path(parent).chmod(0o711)
        yield Path(parent) / "data"


@pytest.mark.asyncio
async def test_the_socket_mode_keeps_another_user_out(open_dir):
    daemon = await started(open_dir)
    try:
        open_dir.chmod(0o711)
        result = await asyncio.to_thread(
            request_as_other_user, str(open_dir / CONTROL_SOCKET), b'{"op": "status"}\n'
        )
        assert result == "PermissionError"
    finally:
        await daemon.stop()


@pytest.mark.asyncio
async def test_another_users_request_is_refused_even_if_the_socket_were_open(open_dir):
    daemon = await started(open_dir)
    try:
        open_dir.chmod(0o711)
        (open_dir / CONTROL_SOCKET).chmod(0o666)
        request = b'{"op": "names.add", "name": "EVIL"}\n'
        reply = json.loads(
            await asyncio.to_thread(request_as_other_user, str(open_dir / CONTROL_SOCKET), request)
        )
        assert (reply["ok"], reply["code"], reply["error"]) == (False, 5, "ERROR_ACCESS_DENIED")
        assert daemon.aliases.texts() == ["RECVR"]
    finally:
        await daemon.stop()


@pytest.mark.asyncio
async def test_tcp_mode_needs_the_token_from_an_owner_only_file(data_dir):
    daemon = await started(data_dir, control="tcp")
    try:
        assert not (data_dir / CONTROL_SOCKET).exists()
        token_file = data_dir / CONTROL_TCP_FILE
        assert token_file.stat().st_mode & 0o777 == 0o600
        document = json.loads(token_file.read_text())
        address = ("127.0.0.1", document["port"])
        assert daemon.control.address == f"127.0.0.1:{document['port']}"
        for request in (b'{"op": "status"}\n', b'{"op": "status", "token": "0000"}\n'):
            replies = await raw_exchange(
                address, [request, b'{"op": "status"}\n'], family=socket.AF_INET
            )
            assert len(replies) == 1, "closed after the refusal"
            assert replies[0]["code"] == lmerr.ERROR_ACCESS_DENIED
        # The client reads the token file itself.
        assert (await call(data_dir, "names.add", name="BOB"))["name"] == "BOB"
        assert daemon.aliases.texts() == ["BOB", "RECVR"]
    finally:
        await daemon.stop()
    assert not token_file.exists()


# --- finding the daemon -----------------------------------------------------------------------


def test_a_stale_socket_is_reported_as_no_daemon(tmp_path):
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(tmp_path / CONTROL_SOCKET))
    with pytest.raises(NoDaemonError, match="stale"):
        ControlClient(tmp_path)


@pytest.mark.asyncio
async def test_a_stale_socket_is_replaced_at_start(data_dir):
    data_dir.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(data_dir / CONTROL_SOCKET))
    daemon = await started(data_dir)
    try:
        assert (await call(data_dir, "status"))["ok"]
    finally:
        await daemon.stop()


@pytest.mark.asyncio
async def test_a_second_daemon_on_the_same_data_dir_is_refused(data_dir):
    first = await started(data_dir)
    try:
        with pytest.raises(ListenError, match="another messengerd is already running"):
            await started(data_dir)
        assert (await call(data_dir, "status"))["pid"] == os.getpid()
    finally:
        await first.stop()


# --- subscribe --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_subscribers_get_each_new_message_as_json(data_dir):
    daemon = await started(data_dir)
    try:
        client = await asyncio.to_thread(ControlClient, data_dir)
        messages = await asyncio.to_thread(client.subscribe)
        first = asyncio.create_task(asyncio.to_thread(next, messages))
        event = MessageReceived(b"ALICE", b"RECVR", b"UPS on battery", "session")
        assert (await daemon.accept(event, "127.0.0.1:40000")).acknowledged
        message = await first
        client.close()
        assert {k: message[k] for k in ("from", "to", "text", "path", "peer")} == {
            "from": "ALICE",
            "to": "RECVR",
            "text": "UPS on battery",
            "path": "session",
            "peer": "127.0.0.1:40000",
        }
    finally:
        await daemon.stop()


async def flood(daemon: Daemon, prefix: str, count: int) -> None:
    """Deliver `count` messages at once: deliver() never waits, so the subscriber's stream
    gets no turn to send any of them before the last is queued."""
    for number in range(count):
        await daemon.control.deliver(
            Message("ALICE", "RECVR", f"{prefix}{number}", "session", "127.0.0.1:40000")
        )


async def until(condition, what: str) -> None:
    """Wait for `condition()`; fail after 10 s, a time never reached when it works."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"gave up waiting for {what}")


def stream_lines(lines, count: int) -> list:
    """The next `count` events of a subscription: a message's text, or the dropped line."""
    events = [json.loads(lines.readline()) for _ in range(count)]
    return [event if event["event"] == "dropped" else event["message"]["text"] for event in events]


@pytest.mark.asyncio
async def test_a_slow_subscriber_stays_connected_and_is_told_how_many_it_lost(data_dir):
    daemon = await started(data_dir)
    try:
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            sock.settimeout(10)
            await asyncio.to_thread(sock.connect, str(data_dir / CONTROL_SOCKET))
            lines = stack.enter_context(sock.makefile("rb"))
            sock.sendall(b'{"op": "subscribe", "id": 1}\n')
            assert json.loads(await asyncio.to_thread(lines.readline)) == {"ok": True, "id": 1}

            await flood(daemon, "a", SUBSCRIBER_QUEUE + 10)
            assert await asyncio.to_thread(stream_lines, lines, SUBSCRIBER_QUEUE + 1) == [
                {"event": "dropped", "count": 10},
                *(f"a{n}" for n in range(10, SUBSCRIBER_QUEUE + 10)),
            ]
            # Counted from the last `dropped` event, not from the start.
            await flood(daemon, "b", SUBSCRIBER_QUEUE + 3)
            assert await asyncio.to_thread(stream_lines, lines, SUBSCRIBER_QUEUE + 1) == [
                {"event": "dropped", "count": 3},
                *(f"b{n}" for n in range(3, SUBSCRIBER_QUEUE + 3)),
            ]
            await flood(daemon, "c", 1)
            assert await asyncio.to_thread(stream_lines, lines, 1) == ["c0"], "no loss: no event"
        # The client went: its subscription ends with it.
        await until(lambda: daemon.control.hub.subscribers == 0, "the subscription to end")
    finally:
        await daemon.stop()


@pytest.mark.asyncio
async def test_the_tray_catches_up_from_the_inbox_when_it_lost_messages(data_dir):
    daemon = await started(data_dir)
    events: list[str] = []
    tray = Subscription(
        data_dir,
        on_message=lambda message: events.append(message.text),
        on_connected=lambda: events.append("catch up"),
    )
    try:
        await asyncio.to_thread(tray.start)
        await until(lambda: daemon.control.hub.subscribers == 1, "the tray to subscribe")
        await flood(daemon, "a", SUBSCRIBER_QUEUE + 10)
        expected = ["catch up", *(f"a{n}" for n in range(10, SUBSCRIBER_QUEUE + 10))]
        await until(lambda: len(events) >= len(expected), "the tray to read every message")
        assert events == expected
    finally:
        tray.stop()
        await daemon.stop()


@pytest.mark.asyncio
async def test_a_subscribe_past_the_hubs_bound_is_refused_and_the_connection_serves_on(data_dir):
    daemon = await started(data_dir)
    daemon.control.hub.max_subscribers = 1
    try:
        first = await asyncio.to_thread(ControlClient, data_dir)
        await asyncio.to_thread(first.subscribe)

        def second() -> tuple[int, bool]:
            with ControlClient(data_dir) as client:
                with pytest.raises(NetError) as caught:
                    client.request("subscribe")
                return caught.value.code, client.request("status")["ok"]

        assert await asyncio.to_thread(second) == (lmerr.NERR_NetworkError, True)
        first.close()
    finally:
        await daemon.stop()


# --- the table across restarts ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_added_aliases_survive_a_restart_and_configured_ones_join_them(data_dir):
    daemon = await started(data_dir, "RECVR")
    await call(data_dir, "names.add", name="BOB")
    await call(data_dir, "names.del", name="RECVR")
    await daemon.stop()
    assert load_aliases(data_dir) == ["BOB"]
    again = await started(data_dir, "CAROL")
    try:
        assert again.aliases.texts() == ["BOB", "CAROL"]
        assert load_aliases(data_dir) == ["BOB", "CAROL"]
    finally:
        await again.stop()


@pytest.mark.asyncio
async def test_keep_aliases_off_touches_no_alias_file(data_dir):
    daemon = await started(data_dir, keep_aliases=False)
    try:
        await call(data_dir, "names.add", name="BOB")
    finally:
        await daemon.stop()
    assert not (data_dir / ALIAS_FILE).exists()
