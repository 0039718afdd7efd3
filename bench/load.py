"""The load generator: a separate process that plays many Messenger senders on loopback.

`python bench/load.py session|mailslot|rpc|hold ...` prints one JSON object with what it measured.
It runs apart from bench/run.py so that the receiver under test and the senders are scheduled
as two processes, and its CPU time is reported on its own (PROTOCOL.md §3-§5 for the bytes).
`probe()` (one D0 message, blocking) is what bench/run.py's start-up part sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import struct
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from scapy.layers.smb import SMB_Header

from messengerd.core.limits import MAX_SESSIONS_PER_SOURCE
from messengerd.wire import nbss, rpc, smb
from messengerd.wire.datagram import build_mailslot_datagrams
from messengerd.wire.layers.smb import (
    SMBSendEndMBMessageRequest,
    SMBSendStartMBMessageRequest,
    SMBSendTextMBMessageRequest,
)
from messengerd.wire.names import NetBIOSName, alias_name

LOOPBACK = "127.0.0.1"
SENDER = b"ALICE"
"""From field of every message: one busy sender, the worst case for duplicate checks."""
SENDER_NAME = NetBIOSName(SENDER, 0x00)
BLOCK_BYTES = smb.MAX_BLOCK_TEXT_BYTES
"""Text per D7 block, as Windows splits it (PROTOCOL.md §4): 200 bytes -> 128 + 72."""
REPLY_TIMEOUT = 10.0
"""Seconds to wait for any one reply before the message counts as failed."""
HOLD_BATCH = 100
"""Idle sessions opened at a time, well under the listener's backlog of 1024."""
HOLD_PER_SOURCE = MAX_SESSIONS_PER_SOURCE // 2
"""Idle sessions from each loopback address: under messengerd's per-source limit."""
WANT_FILES = 8192
"""Soft fd limit the client asks for: 1,000+ sockets for `hold` with room to spare."""


def message_text(tag: str, number: int, size: int) -> bytes:
    """`size` bytes of text that no other message in the run has (the inbox drops copies)."""
    head = f"{tag}-{number:08d} ".encode("ascii")
    return (head + b"x" * size)[:size]


def probe(port: int, recipient: bytes, text: bytes, timeout: float = REPLY_TIMEOUT) -> bool:
    """Send one single-block message (D0) on a fresh connection; True once it is answered
    with success, False if the connection is refused or the reply is an error."""
    frame = nbss.session_message(smb.build_send_message_request(SENDER, recipient, text))
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(frame)
            reply = b""
            while len(reply) < nbss.NBSS_HEADER_LENGTH or len(reply) < _frame_end(reply):
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                reply += chunk
    except OSError:
        return False
    try:
        _check_reply(reply[nbss.NBSS_HEADER_LENGTH :], smb.SMB_COM_SEND_MESSAGE)
    except ValueError:
        return False
    return True


def _frame_end(data: bytes) -> int:
    return nbss.NBSS_HEADER_LENGTH + nbss.frame_header(data[: nbss.NBSS_HEADER_LENGTH])[1]


def _frame(body) -> bytes:
    return nbss.session_message(SMB_Header(Flags=0) / body)


@dataclass(frozen=True)
class Frames:
    """One D5/D7.../D6 conversation's requests, built once with messengerd.wire's layers."""

    d5: bytes
    d7_templates: dict[int, bytes]
    """Keyed by text length: a D7 frame whose last `length` bytes are the text."""
    d6: bytes

    @classmethod
    def build(cls, recipient: bytes, text_bytes: int) -> Frames:
        lengths = {BLOCK_BYTES} | ({text_bytes % BLOCK_BYTES} - {0})
        d5 = _frame(SMBSendStartMBMessageRequest(OriginatorName=SENDER, DestinationName=recipient))
        d7 = {
            n: _frame(SMBSendTextMBMessageRequest(MessageGroupId=0, Data=b"\0" * n))
            for n in lengths
        }
        d6 = _frame(SMBSendEndMBMessageRequest(MessageGroupId=0))
        return cls(d5, d7, d6)

    def check(self, text: bytes) -> None:
        """Fail unless the spliced D7 frames are what the scapy layers build for `text`."""
        for start in range(0, len(text), BLOCK_BYTES):
            chunk = text[start : start + BLOCK_BYTES]
            built = _frame(SMBSendTextMBMessageRequest(MessageGroupId=7, Data=chunk))
            if self.d7(chunk, 7) != built:
                raise SystemExit(f"D7 template for {len(chunk)} bytes is wrong")

    def d7(self, chunk: bytes, group: int) -> bytes:
        frame = self.d7_templates[len(chunk)][: -len(chunk)] + chunk
        return _with_group(frame, group)


GROUP_OFFSET = nbss.NBSS_HEADER_LENGTH + smb.SMB_HEADER_LENGTH + 1
"""Where MessageGroupId sits in a D7 or D6 frame: after the NBSS and SMB headers and WCT."""


def _with_group(frame: bytes, group: int) -> bytes:
    if group == 0:
        return frame
    return frame[:GROUP_OFFSET] + struct.pack("<H", group) + frame[GROUP_OFFSET + 2 :]


def _check_reply(body: bytes, command: int) -> None:
    """ValueError unless the SMB `body` answers `command` with success."""
    if body[:4] != b"\xffSMB" or body[4] != command:
        raise ValueError(f"reply is not an SMB 0x{command:02X}: {body[:8].hex()}")
    status = int.from_bytes(body[5:9], "little")
    if status:
        raise ValueError(f"SMB 0x{command:02X} failed with status 0x{status:08X}")


class _Sender(asyncio.Protocol):
    """One message the way a multi-block sender does it, on its own TCP connection: D5, each
    D7, D6, each sent when the reply to the one before has come. A bare Protocol (no task,
    stream or timeout per reply), so that the senders cost the machine little of the CPU
    the receiver under test needs."""

    def __init__(self, frames: Frames, text: bytes, done: asyncio.Future[None]) -> None:
        self.frames = frames
        self.blocks = [text[i : i + BLOCK_BYTES] for i in range(0, len(text), BLOCK_BYTES)]
        self.done = done
        self.buffer = bytearray()
        self.expected = smb.SMB_COM_SEND_START_MB_MESSAGE
        self.group = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.frames.d5)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= nbss.NBSS_HEADER_LENGTH and not self.done.done():
            _, length = nbss.frame_header(bytes(self.buffer[: nbss.NBSS_HEADER_LENGTH]))
            end = nbss.NBSS_HEADER_LENGTH + length
            if len(self.buffer) < end:
                return
            body = bytes(self.buffer[nbss.NBSS_HEADER_LENGTH : end])
            del self.buffer[:end]
            try:
                self._next(body)
            except ValueError as exc:
                self._finish(exc)

    def _next(self, reply: bytes) -> None:
        assert self.transport is not None
        _check_reply(reply, self.expected)
        if self.expected == smb.SMB_COM_SEND_START_MB_MESSAGE:
            # smbd answers WordCount 0 and no id; a sender then uses 0 (PROTOCOL.md §4).
            self.group = int.from_bytes(reply[33:35], "little") if reply[32] >= 1 else 0
        elif self.expected == smb.SMB_COM_SEND_END_MB_MESSAGE:
            self._finish(None)
            return
        if self.blocks:
            self.expected = smb.SMB_COM_SEND_TEXT_MB_MESSAGE
            self.transport.write(self.frames.d7(self.blocks.pop(0), self.group))
        else:
            self.expected = smb.SMB_COM_SEND_END_MB_MESSAGE
            self.transport.write(_with_group(self.frames.d6, self.group))

    def _finish(self, error: BaseException | None) -> None:
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc or EOFError("the receiver closed before the D6 reply"))


async def send_message(port: int, frames: Frames, text: bytes) -> None:
    """One message on a fresh TCP connection; raises if any reply is missing or an error."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Sender(frames, text, done), LOOPBACK, port)
    try:
        await done
    finally:
        transport.close()


@dataclass
class SessionRun:
    """Counters of a `session` load run."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def fail(self, exc: BaseException) -> None:
        self.failures += 1
        key = type(exc).__name__ + ": " + str(exc)[:80]
        self.errors[key] = self.errors.get(key, 0) + 1


async def _messages(args: argparse.Namespace, frames: Frames, numbers: range) -> SessionRun:
    """Send the messages numbered `numbers`, `concurrency` at a time, until `seconds` pass."""
    run = SessionRun()
    pending = iter(numbers)
    deadline = time.perf_counter() + args.seconds

    async def worker() -> None:
        for number in pending:
            if time.perf_counter() > deadline:
                return
            text = message_text(args.tag, number, args.text_bytes)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(REPLY_TIMEOUT):
                    await send_message(args.port, frames, text)
            except (OSError, ValueError, EOFError, TimeoutError) as exc:
                run.fail(exc)
                continue
            run.latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return run


async def session_load(args: argparse.Namespace) -> dict:
    """`count` messages (at most `seconds`), `concurrency` at a time: rate and latencies."""
    frames = Frames.build(args.recipient.encode("ascii"), args.text_bytes)
    frames.check(message_text(args.tag, 0, args.text_bytes))
    # Not timed: lets both sides reach a steady state (allocator, caches, first SQLite pages).
    warmup = await _messages(args, frames, range(args.warmup))
    _emit({"event": "timed"})  # bench/run.py reads the receiver's CPU counters now
    cpu, wall = _cpu_seconds(), time.perf_counter()
    run = await _messages(args, frames, range(args.warmup, args.warmup + args.count))
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    latencies = sorted(run.latencies)
    return {
        "sent": len(latencies),
        "failed": run.failures,
        "errors": run.errors,
        "seconds": wall,
        "rate": len(latencies) / wall if wall else 0.0,
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] if latencies else 0.0) * 1000,
        "client_cpu_seconds": cpu,
        "warmup_sent": len(warmup.latencies),
    }


def _percentile(ordered: list[float], percent: float) -> float:
    """Nearest-rank percentile of sorted values; 0 for none."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


DGM_ID_OFFSET = 2
"""DGM_ID in a datagram header: after MSG_TYPE and FLAGS (RFC 1002 §4.4.1)."""


def mailslot_template(recipient: bytes, text_bytes: int) -> bytes:
    """One whole `\\MAILSLOT\\MESSNGR` datagram whose text is the `text_bytes` before its NUL."""
    datagrams = build_mailslot_datagrams(
        SENDER,
        recipient,
        b"x" * text_bytes,
        source_name=SENDER_NAME,
        destination_name=alias_name(recipient.decode("ascii")),
        source_ip=LOOPBACK,
        datagram_id=0,
    )
    if len(datagrams) != 1:
        raise SystemExit(f"{text_bytes} bytes of text do not fit one datagram")
    return datagrams[0]


def mailslot_datagram(head: bytes, number: int, text: bytes) -> bytes:
    """The template's header and names with DGM_ID `number`, then `text` and its NUL."""
    datagram = bytearray(head)
    struct.pack_into("!H", datagram, DGM_ID_OFFSET, number & 0xFFFF)
    return bytes(datagram + text + b"\0")


def mailslot_load(args: argparse.Namespace) -> dict:
    """Datagrams at each rate in `rates` for `seconds`, paced every millisecond; what was sent."""
    template = mailslot_template(args.recipient.encode("ascii"), args.text_bytes)
    head = template[: -(args.text_bytes + 1)]
    text = message_text(args.tag, 0, args.text_bytes)
    built = build_mailslot_datagrams(
        SENDER,
        args.recipient.encode("ascii"),
        text,
        source_name=SENDER_NAME,
        destination_name=alias_name(args.recipient),
        source_ip=LOOPBACK,
        datagram_id=5,
    )
    if built != [mailslot_datagram(head, 5, text)]:
        raise SystemExit("mailslot template is wrong")

    def datagram(number: int, text: bytes) -> bytes:
        return mailslot_datagram(head, number, text)

    return paced(args, datagram)


def rpc_load(args: argparse.Namespace) -> dict:
    """NetrSendMessage calls at each rate in `rates`, one datagram each, every call a new
    activity as separate senders make them (IDEMPOTENT|NOFACK, as 2003's spam tools sent
    them); the responses are not read."""
    recipient = args.recipient.encode("ascii")

    def datagram(number: int, text: bytes) -> bytes:
        act_id = uuid.UUID(int=number + 1)
        (call,) = rpc.build_netr_send_message_call(
            SENDER, recipient, text, act_id=act_id, flags1=rpc.PF_IDEMPOTENT | rpc.PF_NOFACK
        )
        return call

    return paced(args, datagram)


def paced(args: argparse.Namespace, datagram: Callable[[int, bytes], bytes]) -> dict:
    """`datagram(number, text)` sent at each rate in `rates` for `seconds`, paced every
    millisecond; what was sent at each rate."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    steps = []
    number = 0
    for step, rate in enumerate(args.rates):
        tag = f"{args.tag}{step}"
        sent = 0
        started = time.perf_counter()
        total = int(rate * args.seconds)
        while sent < total:
            # Catch up to where `rate` says we should be, then sleep: bursts of about rate/1000.
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            while sent < due:
                text = message_text(tag, sent, args.text_bytes)
                sock.sendto(datagram(number, text), (LOOPBACK, args.port))
                number += 1
                sent += 1
            time.sleep(0.001)
        elapsed = time.perf_counter() - started
        steps.append({"tag": tag, "rate": rate, "sent": sent, "seconds": elapsed})
        time.sleep(args.pause)
    sock.close()
    return {"steps": steps}


async def hold_sessions(args: argparse.Namespace) -> None:
    """Open `count` sessions (SESSION REQUEST to the alias), report, hold until stdin closes."""
    request = nbss.session_request(alias_name(args.recipient), SENDER_NAME)
    writers: list[asyncio.StreamWriter] = []
    failures: dict[str, int] = {}

    async def open_one(number: int) -> None:
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    LOOPBACK, args.port, local_addr=(hold_source(number), 0)
                )
                writer.write(request)
                answer = await reader.readexactly(nbss.NBSS_HEADER_LENGTH)
        except (OSError, EOFError, TimeoutError) as exc:
            key = type(exc).__name__
            failures[key] = failures.get(key, 0) + 1
            return
        writers.append(writer)
        if answer != nbss.positive_response():
            failures["negative response"] = failures.get("negative response", 0) + 1

    for start in range(0, args.count, HOLD_BATCH):
        batch = range(start, min(args.count, start + HOLD_BATCH))
        await asyncio.gather(*(open_one(number) for number in batch))
    _emit({"open": len(writers), "failed": failures})
    # Hold them, idle, until bench/run.py has read the daemon's memory and says so.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for writer in writers:
        writer.close()


def hold_source(number: int) -> str:
    """The loopback address idle session `number` comes from: HOLD_PER_SOURCE to each, as
    many hosts would, since a receiver takes only so many sessions from one address."""
    host = number // HOLD_PER_SOURCE
    return f"127.0.{host // 254}.{host % 254 + 1}"


def _emit(result: dict) -> None:
    print(json.dumps(result), flush=True)


def _raise_file_limit() -> None:
    """Room for 1,000+ sockets: raise the soft RLIMIT_NOFILE up to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WANT_FILES if hard == resource.RLIM_INFINITY else min(WANT_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the receiver's port")
    parser.add_argument("--recipient", default="BOB", help="the alias messages go to")
    parser.add_argument("--tag", default="bench", help="text prefix that makes each text unique")
    parser.add_argument("--text-bytes", type=int, default=200)
    modes = parser.add_subparsers(dest="mode", required=True)
    session = modes.add_parser("session", help="D5/D7/D6 messages, each on a fresh connection")
    session.add_argument("--count", type=int, default=5000)
    session.add_argument("--warmup", type=int, default=200)
    session.add_argument("--concurrency", type=int, default=16)
    session.add_argument("--seconds", type=float, default=30.0, help="stop after this long")
    mailslot = modes.add_parser("mailslot", help="direct mailslot datagrams at paced rates")
    mailslot.add_argument("--rates", type=int, nargs="+", default=[1000, 2000, 4000])
    mailslot.add_argument("--seconds", type=float, default=2.0, help="per rate")
    mailslot.add_argument("--pause", type=float, default=1.0, help="between rates")
    rpc_mode = modes.add_parser("rpc", help="NetrSendMessage calls (UDP) at paced rates")
    rpc_mode.add_argument("--rates", type=int, nargs="+", default=[1000, 2000, 4000])
    rpc_mode.add_argument("--seconds", type=float, default=2.0, help="per rate")
    rpc_mode.add_argument("--pause", type=float, default=1.0, help="between rates")
    hold = modes.add_parser("hold", help="hold idle sessions open until stdin closes")
    hold.add_argument("--count", type=int, default=1000)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    _raise_file_limit()
    if args.mode == "session":
        _emit(asyncio.run(session_load(args)))
    elif args.mode == "mailslot":
        _emit(mailslot_load(args))
    elif args.mode == "rpc":
        _emit(rpc_load(args))
    else:
        asyncio.run(hold_sessions(args))


if __name__ == "__main__":
    main()
