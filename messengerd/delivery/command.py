"""The message command sink: runs a program for each message, like Samba's `message command`.

smb.conf(5), `message command`: besides the standard substitutions, `%s` is the name of a
file holding the message, `%f` who it is from, `%t` whom it is to; of the standard ones
`%I` (the client's IP address) and `%m` (the client's NetBIOS name) fit a message. messengerd
takes those five and `%%` for a literal `%`; any other `%x` is an error when the sink is made.

`%m`: smbd knows the client's NetBIOS name from the SESSION REQUEST's calling name. A
Message carries no calling name (a mailslot or RPC message has none), so here `%m` is the
From name, which for `net send` from a machine is that machine's name.

Unlike smbd, nothing goes through a shell unless `shell = true` is asked for. The command
line is split into arguments with shlex first, then each `%x` is replaced inside its
argument, so a From name such as `x; rm -rf ~` or `$(id)` reaches the program as one plain
argument. With `shell = true` the command runs as `/bin/sh -c COMMAND messengerd FILE FROM
TO IP CLIENT`, and an unquoted `%s %f %t %I %m` becomes `"$1"`..`"$5"`: the shell expands
them as data, never reads them as script.

Where a value lands in text that a shell will read as script, it cannot be passed as data:
a Samba line carried over from smb.conf, `/bin/sh -c '/usr/bin/mail -s "message from %f"
root < %s; rm %s' &`, puts %f inside the script `sh -c` runs. There, as smbd does (its
msg_deliver passes From and To through alpha_strcpy), the sender's values `%f %t %m` keep
their letters and digits and every other character becomes `_`: `$(touch x)` arrives as
`__touch_x_`. That is every word after a program that hands its arguments to a shell
(SHELL_PROGRAMS: sh, bash, su, ssh, ...), and in shell mode every quoted `%f %t %m` (a
quoted string is where a nested script or a subject line lives) and every one after such
a program. Other interpreters' code (`python -c`, `perl -e`) is not recognised: give them
the values as arguments, or read the MESSENGERD_* variables.

The values are also in the environment as MESSENGERD_FILE, MESSENGERD_FROM, MESSENGERD_TO,
MESSENGERD_PEER_IP and MESSENGERD_CLIENT, for scripts and nested shells.

Samba's advice to end the command with `&` so that it returns at once is not needed: each
sink runs in its own task, so a slow command holds up no sender. The file is removed when
the command ends (unless `remove_file = false`, for a command that backgrounds itself and
removes the file, as Samba's `xedit %s; rm %s &` example does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from messengerd.core.message import Message
from messengerd.core.policy import peer_host
from messengerd.core.visible import visible_text
from messengerd.delivery import SINK_CONCURRENCY, SINK_QUEUE, SinkLimits

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 20.0
"""Seconds a message command may run before it is killed. Below the Fanout's SINK_TIMEOUT
(30 s) so the command's own timeout, with its output, is what the log shows."""

MAX_OUTPUT_BYTES = 4096
"""Bytes of the command's stdout and of its stderr kept for the log; the rest is read and
discarded, so the command never blocks on a full pipe and memory stays bounded."""

OUTPUT_GRACE = 1.0
"""Seconds to wait, after the command exited, for the rest of its output: a child it left
running in the background may hold the pipes open for as long as it lives."""

TEMP_FILE_PREFIX = "messengerd-msg."
"""Samba writes `msg.XXXXXX`; ours say whose they are."""

SHELL = "/bin/sh"

_SUBSTITUTION = re.compile(r"%(.)", re.DOTALL)

PLACEHOLDERS = ("s", "f", "t", "I", "m")
"""The substitutions, in the order of the shell mode's positional parameters $1..$5."""

SENDER_VALUES = frozenset("ftm")
"""The substitutions a sender chooses: From, To, and the client name (the From name)."""

SHELL_PROGRAMS = frozenset(
    {
        *("sh", "bash", "dash", "ash", "ksh", "mksh", "pdksh", "zsh", "csh", "tcsh", "fish"),
        *("busybox", "su", "runuser", "ssh", "rsh", "cmd", "pwsh", "powershell"),
    }
)
"""Programs whose arguments a shell reads as script (`sh -c`, `su -c`, ssh's remote
command, `cmd /c`): a value in a word after one of these is made shell-safe."""

_SCRIPT_WORD_END = frozenset(" \t\n;|&()<>")
"""What ends a word in a shell script, outside quotes."""

ENVIRONMENT = {
    "s": "MESSENGERD_FILE",
    "f": "MESSENGERD_FROM",
    "t": "MESSENGERD_TO",
    "I": "MESSENGERD_PEER_IP",
    "m": "MESSENGERD_CLIENT",
}


def check_command(command: str, *, shell: bool = False) -> list[str]:
    """The command split into arguments (with `shell`, the script as one); ValueError for
    bad quoting, an empty command or an unknown `%x`."""
    if shell:
        argv = [command] if command.strip() else []
    else:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"cannot split the command into arguments: {exc}") from None
    if not argv:
        raise ValueError("the command is empty")
    for word in argv:
        for match in _SUBSTITUTION.finditer(word):
            if match[1] not in PLACEHOLDERS and match[1] != "%":
                # A control character shown as it is would split the one-line error.
                shown = "%" + match[1] if match[1].isprintable() else repr("%" + match[1])
                raise ValueError(
                    f"unknown substitution {shown} (known: %s file, %f from, %t to, "
                    f"%I peer IP, %m client name, %% a literal %)"
                )
        if _SUBSTITUTION.sub("", word).endswith("%"):
            raise ValueError("a lone % at the end (write %% for a literal %)")
    return argv


def substitute(word: str, values: dict[str, str]) -> str:
    """`word` with each `%x` replaced by values[x] and `%%` by `%`, in one left-to-right pass."""
    return _SUBSTITUTION.sub(lambda match: values.get(match[1], match[0]), word)


def shell_safe(value: str) -> str:
    """`value` as smbd puts a sender's name into a shell command: letters and digits kept,
    every other character replaced by `_` (Samba's alpha_strcpy, smbd/message.c)."""
    return "".join(char if char.isalnum() else "_" for char in value)


def hands_to_shell(word: str) -> bool:
    """True when `word` names a program that gives its arguments to a shell (SHELL_PROGRAMS),
    by any path: `/bin/sh`, `bash`, `C:\\Windows\\System32\\cmd.exe`."""
    name = re.split(r"[/\\]", word.strip("'\""))[-1].lower().removesuffix(".exe")
    return name in SHELL_PROGRAMS


def _safe_values(values: dict[str, str]) -> dict[str, str]:
    """`values` for text a shell reads as script: the sender's made shell-safe."""
    return {
        key: shell_safe(value) if key in SENDER_VALUES else value for key, value in values.items()
    }


def shell_script(script: str, values: dict[str, str]) -> str:
    """The shell mode's script: each unquoted `%x` a positional parameter (`"$2"`), which the
    shell expands as data; the sender's values shell-safe inside quotes and after a program
    that hands its arguments to a shell, where they would be read as script."""
    safe = _safe_values(values)
    out: list[str] = []
    quote: str | None = None
    word: list[str] = []
    reparsed = False
    index = 0
    while index < len(script):
        char = script[index]
        if char == "%" and index + 1 < len(script):
            key = script[index + 1]
            index += 2
            if key == "%":
                out.append("%")
            elif quote is None and not reparsed:
                out.append(f'"${PLACEHOLDERS.index(key) + 1}"')
            else:
                out.append(safe[key])
            continue
        if quote is None and char in _SCRIPT_WORD_END:
            reparsed = reparsed or hands_to_shell("".join(word))
            word = []
        else:
            word.append(char)
        if char == "\\" and quote != "'" and index + 1 < len(script):
            out.append(script[index : index + 2])
            index += 2
            continue
        if char in "'\"" and quote in (None, char):
            quote = char if quote is None else None
        out.append(char)
        index += 1
    return "".join(out)


class MessageCommandSink:
    """Runs `command` for each message, its arguments substituted, never via a shell
    unless `shell` is set; waits up to `timeout` seconds, then kills it."""

    def __init__(
        self,
        command: str,
        *,
        name: str = "command",
        shell: bool = False,
        timeout: float = COMMAND_TIMEOUT,
        remove_file: bool = True,
        temp_dir: Path | None = None,
        concurrency: int = SINK_CONCURRENCY,
        queue: int = SINK_QUEUE,
    ) -> None:
        """ValueError for a command that cannot be split or uses an unknown substitution.
        `concurrency`: commands running at once; `queue`: messages waiting for one."""
        self.name = name
        self.command = command
        self.argv = check_command(command, shell=shell)
        self.shell = shell
        if shell and sys.platform == "win32":
            raise ValueError("shell = true needs /bin/sh, which Windows lacks")
        self.timeout = timeout
        self.remove_file = remove_file
        self.temp_dir = temp_dir
        self.limits = SinkLimits(concurrency, queue)

    def arguments(self, message: Message, file: str) -> list[str]:
        """The argv the command runs with for `message`, its text in `file`."""
        values = _values(message, file)
        if self.shell:
            script = shell_script(self.command, values)
            return [SHELL, "-c", script, "messengerd", *(values[key] for key in PLACEHOLDERS)]
        argv: list[str] = []
        safe = _safe_values(values)
        for word in self.argv:
            # After `sh` (as in `/bin/sh -c '... %f ...'`) a value is read as script.
            reparsed = any(hands_to_shell(earlier) for earlier in argv)
            argv.append(substitute(word, safe if reparsed else values))
        return argv

    async def deliver(self, message: Message) -> None:
        file = self._write_file(message)
        try:
            await self._run(self.arguments(message, file), _environment(message, file))
        finally:
            if self.remove_file:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file)

    def _write_file(self, message: Message) -> str:
        # mkstemp makes the file readable by its owner only: messages are private.
        fd, file = tempfile.mkstemp(prefix=TEMP_FILE_PREFIX, suffix=".txt", dir=self.temp_dir)
        with open(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(message.text)
        return file

    async def _run(self, argv: list[str], env: dict[str, str]) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _CommandProtocol(loop),
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                # Its own process group, so a timeout kills what a shell command started too.
                start_new_session=sys.platform != "win32",
            )
        except OSError as exc:
            log.error("%s: cannot run %s: %s", self.name, argv[0], exc.strerror or exc)
            return
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    # Shielded: a timeout would otherwise cancel the future itself.
                    await asyncio.shield(protocol.exited)
            except TimeoutError:
                log.error("%s: %s ran over %g s; killed", self.name, argv[0], self.timeout)
                _kill(transport)
                await protocol.exited
            # A child the command left running may hold the pipes open; stop waiting for it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OUTPUT_GRACE):
                    await asyncio.shield(protocol.closed)
        finally:
            if not protocol.exited.done():
                _kill(transport)  # cancelled: the Fanout gave up on this sink
            transport.close()
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            _log_output(self.name, stream, protocol.output[fd], protocol.discarded[fd])
        status = transport.get_returncode()
        if status:
            log.error("%s: %s exited with status %d", self.name, argv[0], status)


class _CommandProtocol(asyncio.SubprocessProtocol):
    """Keeps the first MAX_OUTPUT_BYTES of stdout and stderr, and counts the rest."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.output = {1: bytearray(), 2: bytearray()}
        self.discarded = {1: 0, 2: 0}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        kept = self.output[fd]
        room = MAX_OUTPUT_BYTES - len(kept)
        kept += data[:room]
        self.discarded[fd] += max(0, len(data) - room)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _values(message: Message, file: str) -> dict[str, str]:
    values = {
        "s": file,
        "f": message.sender,
        "t": message.recipient,
        "I": peer_host(message.peer),
        "m": message.sender,
        "%": "%",
    }
    # An argument cannot hold NUL (execve takes C strings); a name never has one on the
    # wire, as the fields are NUL-terminated, but an RPC string could.
    return {key: value.replace("\0", "") for key, value in values.items()}


def _environment(message: Message, file: str) -> dict[str, str]:
    values = _values(message, file)
    return {**os.environ, **{variable: values[key] for key, variable in ENVIRONMENT.items()}}


def _log_output(name: str, stream: str, data: bytes | bytearray, discarded: int) -> None:
    # The command may well echo what the sender wrote: one log line, controls made visible.
    text = visible_text(data.decode("utf-8", errors="replace").rstrip())
    if not text:
        return
    more = f" ({discarded} more bytes not shown)" if discarded else ""
    log.info("%s %s: %s%s", name, stream, text, more)


def _kill(transport: asyncio.SubprocessTransport) -> None:
    with contextlib.suppress(ProcessLookupError):
        if sys.platform == "win32":
            transport.kill()
        else:
            os.killpg(transport.get_pid(), signal.SIGKILL)
