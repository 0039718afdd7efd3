"""Delivery end to end: a real Daemon on loopback sockets, a real sender, real sinks.

A sink that hangs does not hold up the sender's D6 reply (only the inbox's commit comes
before it), a sink that raises stops no other, routing and the message command work on
what came over the wire, and the policy refuses what it should once the Daemon takes one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from messengerd.config.options import DaemonConfig
from messengerd.core.message import Message
from messengerd.core.store.inbox import Inbox
from messengerd.daemon import Daemon
from messengerd.delivery.command import MessageCommandSink
from messengerd.delivery.routing import Router
from messengerd.sender import send_message
from messengerd.wire import smb
from tests.daemon_process import DaemonProcess

WAIT = 10.0
"""Seconds a test waits for something that must happen before it fails instead of hanging."""

LONG_TEXT = "UPS on battery power. " * 10
"""Over 128 bytes, so the sender uses D5/D7/D6 and the reply that acknowledges is D6's."""
assert len(LONG_TEXT) > smb.MAX_BLOCK_TEXT_BYTES


class Recorder:
    """A sink that keeps what it is given and says when something arrived."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.messages: list[Message] = []
        self.arrived = asyncio.Event()

    async def deliver(self, message: Message) -> None:
        self.messages.append(message)
        self.arrived.set()

    async def wait(self, count: int = 1) -> list[Message]:
        async with asyncio.timeout(WAIT):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.messages


class Hanging:
    """A sink that takes each message and then waits until the test releases it."""

    name = "hanging"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = False

    async def deliver(self, message: Message) -> None:
        self.started.set()
        await self.release.wait()
        self.finished = True


class Raising:
    """A sink that fails on every message."""

    name = "raising"

    async def deliver(self, message: Message) -> None:
        raise RuntimeError("this sink is broken")


def loopback_config(data_dir: Path, *aliases: str) -> DaemonConfig:
    return DaemonConfig(
        bind="127.0.0.1",
        broadcast="127.255.255.255",
        name_port=0,
        datagram_port=0,
        session_port=0,
        rpc_port=0,
        aliases=list(aliases or ["BOB"]),
        data_dir=data_dir,
        register=False,
        control="none",
    )


async def send(daemon: Daemon, to: str, text: str, fromname: str = "UPS-01"):
    return await send_message(
        to,
        text,
        fromname=fromname,
        host="127.0.0.1",
        port=daemon.ports["session"],
        via="session",
        timeout=WAIT,
    )


@pytest.mark.asyncio
async def test_a_hanging_sink_does_not_delay_the_d6_reply(tmp_path):
    hanging, recorder = Hanging(), Recorder()
    daemon = Daemon(loopback_config(tmp_path), [hanging, recorder])
    await daemon.start()
    try:
        delivery = await send(daemon, "BOB", LONG_TEXT)
        # The D6 reply came back while the hanging sink cannot have finished: it waits for
        # `release`, which only this test sets, below.
        assert delivery.multi_block
        assert not hanging.finished
        # What the reply waited for is the commit: the message is in the inbox already.
        stored = Inbox(tmp_path, create=False).query()
        assert [m.text for m in stored] == [LONG_TEXT]
        async with asyncio.timeout(WAIT):
            await hanging.started.wait()
        assert [m.text for m in await recorder.wait()] == [LONG_TEXT]
        # The next sender is not held up either, though the hanging sink still waits.
        await send(daemon, "BOB", "second message")
        assert [m.text for m in await recorder.wait(2)] == [LONG_TEXT, "second message"]
        assert not hanging.finished
    finally:
        hanging.release.set()
        await daemon.stop()
    assert hanging.finished


@pytest.mark.asyncio
async def test_a_raising_sink_does_not_stop_the_others(tmp_path, caplog):
    first, second = Recorder("first"), Recorder("second")
    daemon = Daemon(loopback_config(tmp_path), [first, Raising(), second])
    await daemon.start()
    try:
        with caplog.at_level(logging.ERROR, logger="messengerd.delivery"):
            await send(daemon, "BOB", "one")
            await send(daemon, "BOB", "two")
            assert [m.text for m in await first.wait(2)] == ["one", "two"]
            assert [m.text for m in await second.wait(2)] == ["one", "two"]
    finally:
        await daemon.stop()
    failures = [r for r in caplog.records if r.getMessage() == "sink raising failed on a message"]
    assert len(failures) == 2


@pytest.mark.asyncio
async def test_routing_sends_each_alias_to_its_sinks(tmp_path):
    console, pager = Recorder("console"), Recorder("pager")
    router = Router({"ALERTS": ["pager"]}, default=["console"])
    daemon = Daemon(loopback_config(tmp_path, "BOB", "ALERTS"), router.apply([console, pager]))
    await daemon.start()
    try:
        await send(daemon, "alerts", "disk full")
        await send(daemon, "BOB", "lunch?")
        assert [m.text for m in await pager.wait()] == ["disk full"]
        assert [m.text for m in await console.wait()] == ["lunch?"]
    finally:
        await daemon.stop()
    assert [m.text for m in pager.messages] == ["disk full"]
    assert [m.text for m in console.messages] == ["lunch?"]


RECORDER = textwrap.dedent(
    """
    import json, sys
    with open(sys.argv[2], encoding="utf-8") as f:
        text = f.read()
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump({"args": sys.argv[3:], "text": text}, f)
    """
)


@pytest.mark.asyncio
@pytest.mark.parametrize("shell", [False, True])
async def test_a_hostile_sender_name_from_the_wire_reaches_the_command_as_data(
    tmp_path, monkeypatch, shell
):
    monkeypatch.setenv("HOME", str(tmp_path))  # were `~` ever expanded, it would be here
    script, out, canary = tmp_path / "recorder.py", tmp_path / "out.json", tmp_path / "canary"
    script.write_text(RECORDER, encoding="utf-8")
    quoted = " ".join(shlex.quote(str(word)) for word in (sys.executable, script, out))
    command = MessageCommandSink(f"{quoted} %s %f %t %I", shell=shell, temp_dir=tmp_path)
    done = Recorder()
    daemon = Daemon(loopback_config(tmp_path / "data"), [command, done])
    hostile = f"x; rm -rf ~; $(touch {canary}) `id`"
    await daemon.start()
    try:
        await send(daemon, "BOB", "Line 1\nLine 2 $(id)", fromname=hostile)
        await done.wait()
        await daemon.fanout.drain()
    finally:
        await daemon.stop()
    seen = json.loads(out.read_text(encoding="utf-8"))
    assert seen == {"args": [hostile, "BOB", "127.0.0.1"], "text": "Line 1\nLine 2 $(id)"}
    assert not canary.exists()


@pytest.mark.asyncio
async def test_the_policy_refuses_denied_senders_and_floods_and_nothing_else(tmp_path):
    from messengerd.core.policy import Policy, Reason

    recorder = Recorder()
    policy = Policy(deny_senders=["SPAM*"], rate_limit=1, rate_burst=3)  # 1 a minute
    daemon = Daemon(loopback_config(tmp_path), [recorder], policy=policy)
    await daemon.start()
    try:
        await send(daemon, "BOB", "buy now", fromname="SPAMBOT")
        for index in range(4):
            await send(daemon, "BOB", f"alert {index}")
        await recorder.wait(3)
        await daemon.fanout.drain()
    finally:
        await daemon.stop()
    assert [m.text for m in recorder.messages] == ["alert 0", "alert 1", "alert 2"]
    assert policy.counters[Reason.DENIED_SENDER] == 1
    assert policy.counters[Reason.RATE_LIMITED] == 1
    stored = [m.text for m in Inbox(tmp_path, create=False).query()]
    assert stored == ["alert 0", "alert 1", "alert 2"], "refused messages are not stored"


def test_config_check_from_the_command_line(tmp_path):
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('[daemon]\naliases = ["BOB"]\n', encoding="utf-8")
    bad.write_text('[daemon]\naliases = ["BOB"]\nsession_port = "139"\n', encoding="utf-8")
    ok = subprocess.run(
        [sys.executable, "-m", "messengerd", "config", "check", str(good)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"{good}: OK\n", "")
    failed = subprocess.run(
        [sys.executable, "-m", "messengerd", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert failed.returncode == 2
    assert failed.stderr == (
        f"messengerd: {bad}:3: key 'daemon.session_port': must be an integer, not a string\n"
    )


def test_run_with_a_settings_file_routes_filters_and_runs_the_command(tmp_path):
    out = tmp_path / "popup.txt"
    copy = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])"
    settings = tmp_path / "messengerd.toml"
    settings.write_text(
        textwrap.dedent(
            f"""\
            [daemon]
            aliases = ["BOB", "ALERTS"]
            session_port = 139   # the command line's --session-port 0 overrides this

            [[sink]]
            type = "console"

            [[sink]]
            type = "command"
            name = "popup"
            command = '{sys.executable} -c "{copy}" %s {out}'

            [routing]
            default = ["console"]
            aliases = {{ ALERTS = ["popup", "console"] }}

            [policy]
            deny_senders = ["SPAM*"]
            """
        ),
        encoding="utf-8",
    )
    with DaemonProcess("--config", str(settings), data_dir=tmp_path / "data") as daemon:
        port = daemon.ports["session"]
        for sender, to, text in (
            ("SPAMBOT", "BOB", "buy now"),
            ("UPS-01", "ALERTS", "On battery"),
            ("ADMIN", "BOB", "lunch?"),
        ):
            asyncio.run(
                send_message(to, text, fromname=sender, host="127.0.0.1", port=port, timeout=WAIT)
            )
        shown = [daemon.next_message() for _ in range(2)]
        assert [(m["from"], m["to"], m["text"]) for m in shown] == [
            ("UPS-01", "ALERTS", "On battery"),
            ("ADMIN", "BOB", "lunch?"),
        ]
        assert daemon.no_message()
    assert out.read_text(encoding="utf-8") == "On battery"
    assert any(
        "message refused (denied sender) from 127.0.0.1: From SPAMBOT" in line
        for line in daemon.log
    )
