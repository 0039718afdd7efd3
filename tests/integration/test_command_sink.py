"""The message command sink runs a real program: values arrive as plain arguments, never as
shell text, and the %s file holds the exact message text."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from messengerd.core.message import Message
from messengerd.delivery.command import (
    MAX_OUTPUT_BYTES,
    TEMP_FILE_PREFIX,
    MessageCommandSink,
    check_command,
    substitute,
)

HOSTILE_NAMES = [
    "x; rm -rf ~",
    "$(id)",
    "`id`",
    "\"double\" 'single'",
    "a && b || c | d > e < f",
    "*",
    "~root",
    "%t %s %%",
    "${HOME}",
    "-rf",
    "line\nbreak",
    "  spaced  ",
]

RECORDER = textwrap.dedent(
    """
    import json, os, sys
    out, args = sys.argv[1], sys.argv[2:]
    with open(args[0], encoding="utf-8") as f:
        text = f.read()
    env = {k: v for k, v in os.environ.items() if k.startswith("MESSENGERD_")}
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"args": args, "text": text, "env": env, "pid": os.getpid()}, f)
    """
)


@pytest.fixture(autouse=True)
def contained(tmp_path: Path, monkeypatch) -> None:
    """Were a name ever run as shell text, `rm -rf ~` and `> e` would hit only tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def recorder(tmp_path: Path) -> Path:
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER, encoding="utf-8")
    return script


def command_line(*words: str) -> str:
    return " ".join(shlex.quote(word) for word in words)


def message(sender: str = "ADMIN", text: str = "Server SRV1 shuts down in 5 minutes") -> Message:
    return Message(sender, "BOB", text, "session", "192.0.2.7:1025")


def run_sink(sink: MessageCommandSink, msg: Message) -> None:
    asyncio.run(sink.deliver(msg))


def recorded(out: Path) -> dict:
    return json.loads(out.read_text(encoding="utf-8"))


def leftover_files(tmp_path: Path) -> list[Path]:
    return list(tmp_path.glob(TEMP_FILE_PREFIX + "*"))


def test_samba_substitutions_reach_the_command_as_arguments(tmp_path, recorder):
    out = tmp_path / "out.json"
    command = command_line(sys.executable, str(recorder), str(out)) + " %s %f %t %I %m 100%%"
    sink = MessageCommandSink(command, temp_dir=tmp_path)
    run_sink(sink, message())
    seen = recorded(out)
    file, *rest = seen["args"]
    assert Path(file).name.startswith(TEMP_FILE_PREFIX)
    assert rest == ["ADMIN", "BOB", "192.0.2.7", "ADMIN", "100%"]
    assert seen["text"] == "Server SRV1 shuts down in 5 minutes"
    assert seen["env"] == {
        "MESSENGERD_FILE": file,
        "MESSENGERD_FROM": "ADMIN",
        "MESSENGERD_TO": "BOB",
        "MESSENGERD_PEER_IP": "192.0.2.7",
        "MESSENGERD_CLIENT": "ADMIN",
    }
    assert not Path(file).exists(), "the %s file is removed after the command"
    assert leftover_files(tmp_path) == []


@pytest.mark.parametrize("sender", HOSTILE_NAMES)
def test_hostile_sender_arrives_verbatim_as_one_argument(tmp_path, recorder, sender):
    out = tmp_path / "out.json"
    canary = tmp_path / "canary"
    command = command_line(sys.executable, str(recorder), str(out)) + " %s %f --from=%f"
    sink = MessageCommandSink(command, temp_dir=tmp_path)
    run_sink(sink, message(sender=sender + f"; touch {canary}"))
    seen = recorded(out)
    assert seen["args"][1:] == [
        sender + f"; touch {canary}",
        f"--from={sender}; touch {canary}",
    ]
    assert not canary.exists(), "nothing in the sender name was run"


@pytest.mark.parametrize("sender", HOSTILE_NAMES)
def test_shell_mode_passes_values_as_positional_parameters(tmp_path, recorder, sender):
    out = tmp_path / "out.json"
    canary = tmp_path / "canary"
    hostile = sender + f"; touch {canary}"
    # A real shell script: a pipeline and a variable, with the substitutions in it.
    script = (
        "true | "
        + command_line(sys.executable, str(recorder), str(out))
        + ' %s %f "$MESSENGERD_TO" %I'
    )
    sink = MessageCommandSink(script, shell=True, temp_dir=tmp_path)
    run_sink(sink, message(sender=hostile))
    seen = recorded(out)
    assert seen["args"][1:] == [hostile, "BOB", "192.0.2.7"]
    assert not canary.exists()


def test_shell_mode_builds_sh_c_with_the_values_after_the_script(tmp_path):
    sink = MessageCommandSink("xmessage -file %s -title %f", shell=True)
    argv = sink.arguments(message(sender="$(id)"), "/tmp/messengerd-msg.1")
    assert argv == [
        "/bin/sh",
        "-c",
        'xmessage -file "$1" -title "$2"',
        "messengerd",
        "/tmp/messengerd-msg.1",
        "$(id)",
        "BOB",
        "192.0.2.7",
        "$(id)",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Line one\nLine two\n",
        "Jürgen: Kühlraum 7 °C — $(reboot) `halt` ; rm -rf ~",
        "",
        "x" * 4096,
    ],
)
def test_the_command_sees_the_exact_text(tmp_path, recorder, text):
    out = tmp_path / "out.json"
    command = command_line(sys.executable, str(recorder), str(out)) + " %s"
    run_sink(MessageCommandSink(command, temp_dir=tmp_path), message(text=text))
    assert recorded(out)["text"] == text


def test_substitution_is_one_pass(tmp_path):
    assert substitute("%f-%t", {"f": "%t", "t": "BOB"}) == "%t-BOB"
    assert substitute("%%f", {"f": "ADMIN", "%": "%"}) == "%f"


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("notify-send %x", "unknown substitution %x"),
        ("notify-send %u", "unknown substitution %u"),
        ("echo 'unclosed", "cannot split"),
        ("   ", "empty"),
        ("echo 100%", "lone %"),
    ],
)
def test_bad_commands_are_refused_when_the_sink_is_made(command, problem):
    with pytest.raises(ValueError, match=problem):
        check_command(command)


def test_a_hanging_command_is_killed_at_its_timeout(tmp_path, caplog):
    started = tmp_path / "started"
    hang = f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(600)"
    sink = MessageCommandSink(
        command_line(sys.executable, "-c", hang, "%s"), timeout=0.5, temp_dir=tmp_path
    )
    with caplog.at_level(logging.ERROR, logger="messengerd.delivery.command"):
        run_sink(sink, message())
    assert started.exists()
    assert "killed" in caplog.text
    assert leftover_files(tmp_path) == []


def test_a_cancelled_delivery_kills_the_command(tmp_path, recorder):
    pid_file = tmp_path / "pid"
    hang = (
        f"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()));"
        " time.sleep(600)"
    )
    sink = MessageCommandSink(command_line(sys.executable, "-c", hang), temp_dir=tmp_path)

    async def cancel_while_running() -> int:
        task = asyncio.create_task(sink.deliver(message()))
        for _ in range(500):
            if pid_file.exists() and pid_file.read_text():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pid = int(pid_file.read_text())
        for _ in range(500):
            if not _alive(pid):
                break
            await asyncio.sleep(0.02)
        return pid

    pid = asyncio.run(cancel_while_running())
    assert not _alive(pid)
    assert leftover_files(tmp_path) == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_output_is_logged_but_bounded(tmp_path, caplog):
    flood = "import sys; sys.stdout.write('y' * 1_000_000); sys.stderr.write('oops')"
    sink = MessageCommandSink(command_line(sys.executable, "-c", flood), temp_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="messengerd.delivery.command"):
        run_sink(sink, message())
    stdout = [r.getMessage() for r in caplog.records if " stdout: " in r.getMessage()]
    assert len(stdout) == 1
    assert stdout[0] == (
        f"command stdout: {'y' * MAX_OUTPUT_BYTES} "
        f"({1_000_000 - MAX_OUTPUT_BYTES} more bytes not shown)"
    )
    assert any(r.getMessage() == "command stderr: oops" for r in caplog.records)


def test_a_failing_command_is_logged_with_its_status(tmp_path, caplog):
    sink = MessageCommandSink(
        command_line(sys.executable, "-c", "raise SystemExit(3)"), temp_dir=tmp_path
    )
    with caplog.at_level(logging.ERROR, logger="messengerd.delivery.command"):
        run_sink(sink, message())
    assert "exited with status 3" in caplog.text
    assert leftover_files(tmp_path) == []


def test_a_missing_program_is_logged_not_raised(tmp_path, caplog):
    sink = MessageCommandSink(str(tmp_path / "no-such-program") + " %s", temp_dir=tmp_path)
    with caplog.at_level(logging.ERROR, logger="messengerd.delivery.command"):
        run_sink(sink, message())
    assert "cannot run" in caplog.text
    assert leftover_files(tmp_path) == []


def test_remove_file_false_leaves_the_file_to_the_command(tmp_path, recorder):
    out = tmp_path / "out.json"
    command = command_line(sys.executable, str(recorder), str(out)) + " %s"
    run_sink(MessageCommandSink(command, remove_file=False, temp_dir=tmp_path), message())
    kept = Path(recorded(out)["args"][0])
    assert kept.read_text(encoding="utf-8") == "Server SRV1 shuts down in 5 minutes"
    assert kept.stat().st_mode & 0o077 == 0, "only its owner may read a message"


# -- Samba `message command` lines carried over from smb.conf (issue 12, item 10) -----------

SAMBA_HOSTILE = {"$(touch x)": "__touch_x_", "`touch x`": "_touch_x_", ";touch x": "_touch_x"}
"""From names that, substituted raw into a shell script, run `touch x` (in tmp_path); and
what smbd's alpha_strcpy makes of them: letters and digits kept, every other byte `_`."""

FAKE_MAIL = textwrap.dedent(
    """
    import json, sys
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump({"args": sys.argv[2:], "stdin": sys.stdin.read()}, out)
    """
)


@pytest.fixture
def mail(tmp_path: Path) -> tuple[str, Path]:
    """A real `mail` program (a script) that records its arguments and what it reads: the
    command line to put where Samba's examples have /usr/bin/mail, and its record."""
    record = tmp_path / "mail.json"
    script = tmp_path / "mail.py"
    script.write_text(FAKE_MAIL, encoding="utf-8")
    return command_line(sys.executable, str(script), str(record)), record


SAMBA_LINES = [
    # smb.conf(5)'s idiom, as `message command` carries it: smbd's shell runs an inner one.
    ("/bin/sh -c '{mail} -s \"message from %f on %m\" root < %s; rm %s' &", False),
    ("/bin/sh -c '{mail} -s \"message from %f on %m\" root < %s; rm %s' &", True),
    # The same script as smbd's own shell would read it, given to ours.
    ('{mail} -s "message from %f on %m" root < %s; rm %s', True),
    ("/bin/bash -c \"{mail} -s 'message from %f on %m' root < %s\"", False),
]


@pytest.mark.parametrize("sender", SAMBA_HOSTILE)
@pytest.mark.parametrize(("line", "shell"), SAMBA_LINES)
def test_samba_command_lines_get_the_senders_name_shell_safe(tmp_path, mail, line, shell, sender):
    command, record = mail
    sink = MessageCommandSink(line.format(mail=command), shell=shell, temp_dir=tmp_path)
    run_sink(sink, message(sender=sender, text="UPS on battery"))
    assert not (tmp_path / "x").exists(), "the sender's name ran as shell script"
    seen = json.loads(record.read_text(encoding="utf-8"))
    safe = SAMBA_HOSTILE[sender]
    assert seen == {"args": ["-s", f"message from {safe} on {safe}", "root"],
                    "stdin": "UPS on battery"}  # fmt: skip
    assert leftover_files(tmp_path) == []


def test_values_outside_a_shell_stay_exact_beside_a_samba_line(tmp_path, recorder):
    """Only what a shell reads as script is made safe: a plain argument keeps every
    character, even after a `sh -c` elsewhere on the same line."""
    out = tmp_path / "out.json"
    line = command_line(sys.executable, str(recorder), str(out)) + " %s %f"
    run_sink(MessageCommandSink(line, temp_dir=tmp_path), message(sender="$(touch x)"))
    assert recorded(out)["args"][1:] == ["$(touch x)"]
    assert not (tmp_path / "x").exists()
