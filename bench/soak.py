"""The soak: one `messengerd run` for a long time, and whether anything in it grows.

    python bench/soak.py [--messages 1000000] [--idle 60] [--out bench/results]
    python bench/soak.py --plot bench/results/soak-DATE.json     # draw the PNG again

Mixed traffic on all three paths (session D0 and D5/D7/D6, mailslot, RPC NetrSendMessage),
each message with a unique text; spam bursts through the policy (a deny_senders name, and a
flood from a few addresses past the rate limit); idle periods; two clean restarts and a
kill -9 under load. Every SAMPLE_INTERVAL seconds it records the receiver's RSS, open file
descriptors, threads, the store's size on disk and message count (the `status` control op),
and the interval's p50/p99 latency and rate. The store's [store] max_messages is a fifth of
the run, so pruning runs for most of it. At the end it reads the store and checks that every
message a sender saw acknowledged is there, or was pruned (older than the oldest kept).

Writes soak-DATE.json (every sample, the plan, the checks), soak-DATE.md (the summary) and
soak-DATE.png (matplotlib: `pip install -e .[bench]`) to --out. Everything stays on
127.0.0.0/8: the receiver binds 127.0.0.1 (broadcast 127.255.255.255, ports 0) and senders
send from 127.0.1.x and 127.0.2.x, so that the policy's per-source rate limit sees many
legitimate sources and a few flooding ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from messengerd.control.client import ControlClient
from messengerd.protocol.events import NEED_DATA, SendData
from messengerd.protocol.session_client import MessageDelivered, SessionClient
from messengerd.wire import rpc
from messengerd.wire.datagram import MESSENGER_DATAGRAM_BYTES, build_mailslot_datagrams
from messengerd.wire.names import NetBIOSName, alias_name

LOOPBACK = "127.0.0.1"
BROADCAST = "127.255.255.255"
ALIAS = "SOAK"
LEGIT_SOURCES = [f"127.0.1.{n}" for n in range(1, 65)]
"""Where legitimate senders send from: 64 addresses keep each under the rate limit, and give
the session path 64 times the ephemeral ports (each message is a new TCP connection)."""
FLOOD_SOURCES = [f"127.0.2.{n}" for n in range(1, 9)]
"""The flooding sources of a spam burst: each far past the rate limit."""
RATE_LIMIT = 6000
"""Messages a minute per source address (100 a second): legitimate load spread over 64
addresses stays under it; each flooding address goes far past it."""
RATE_BURST = 200
SPAM_SENDER = "SPAMBOT"
"""A From name the policy's deny_senders refuses (acknowledged, never stored: README)."""
CONCURRENCY = 32
"""Messages in flight at once in the steady load."""
BURST_CONCURRENCY = 64
"""Messages in flight at once in a spam burst."""
PATH_WEIGHTS = {"session": 0.5, "mailslot": 0.25, "rpc": 0.25}
LONG_TEXT_SHARE = 0.4
"""Messages longer than 128 bytes: D5/D7/D6 on the session path (the rest are one D0)."""
MAX_TEXT = 600
MAX_DATAGRAM_TEXT = 200
"""Text bytes of a mailslot message: one datagram (a sender splits longer text into several
messages of about 424-byte datagrams, PROTOCOL.md §5; 250 bytes already take two)."""
MAILSLOT_PAUSE = 0.004
"""Seconds a sender waits after a mailslot datagram: UDP has no reply to wait for, and a
sender that never waits only measures the socket buffer's drops."""
REPLY_TIMEOUT = 10.0
"""Seconds for a session exchange or an RPC call before it counts as failed."""
RPC_RETRANSMIT = 1.0
"""Seconds an RPC call waits before sending again (the server answers a repeat from its
reply cache: never stored twice)."""
FAILURE_PAUSE = 0.05
"""Seconds a sender waits after a failure (the receiver restarting): no busy loop."""
SAMPLE_INTERVAL = 5.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
PRUNE_SLACK = 30.0
"""Seconds: an acknowledged message missing from the store counts as pruned when it was
acknowledged no later than this after the oldest message kept was received (a pruned
message was committed before the oldest kept one; a commit waits at most STORE_TIMEOUT)."""

READY = re.compile(
    r"listening on \S+: name (\d+)/udp, datagram (\d+)/udp, session (\d+)/tcp, rpc (\d+)/udp"
)

# The message states in the ledger (one byte a message).
UNSENT, ACKED, SENT_DATAGRAM, FAILED, SPAM_ACKED, SPAM_SENT = range(6)


@dataclass
class Segment:
    """One part of the plan: `kind` steady, burst, idle, restart or kill; `share` of messages."""

    kind: str
    share: float = 0.0
    seconds: float = 0.0


PLAN = [
    Segment("steady", 0.10),
    Segment("burst", 0.05),
    Segment("steady", 0.15),
    Segment("idle"),
    Segment("restart"),
    Segment("steady", 0.15),
    Segment("burst", 0.05),
    Segment("kill", 0.10),  # steady load with a kill -9 halfway and a restart
    Segment("steady", 0.15),
    Segment("idle"),
    Segment("restart"),
    Segment("steady", 0.15),
    Segment("burst", 0.05),
    Segment("steady", 0.05),
]


# -- the receiver ---------------------------------------------------------------------


class Receiver:
    """`python -m messengerd run` on 127.0.0.1 with ports 0, its stdout to /dev/null."""

    def __init__(self, work: Path, settings: Path) -> None:
        self.work = work
        self.data_dir = work / "data"
        self.settings = settings
        self.log_path = work / "receiver.log"
        self.process: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}
        self.starts: list[float] = []

    def start(self) -> float:
        """Start it and wait until it listens; seconds it took."""
        began = time.monotonic()
        command = [
            sys.executable, "-m", "messengerd", "run",
            "--bind", LOOPBACK, "--broadcast", BROADCAST,
            "--name-port", "0", "--datagram-port", "0", "--session-port", "0", "--rpc-port", "0",
            "--alias", ALIAS, "--config", str(self.settings), "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        env = dict(os.environ, XDG_CONFIG_HOME=str(self.work / "config"), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        ready = threading.Event()

        def read_log(stream) -> None:
            with open(self.log_path, "a", encoding="utf-8") as log:
                for line in stream:
                    log.write(line)
                    log.flush()
                    if match := READY.search(line):
                        name, datagram, session, rpc_port = map(int, match.groups())
                        self.ports = {
                            "name": name, "datagram": datagram, "session": session, "rpc": rpc_port
                        }  # fmt: skip
                        ready.set()
            ready.set()

        self.ports = {}
        threading.Thread(target=read_log, args=(self.process.stderr,), daemon=True).start()
        if not ready.wait(START_TIMEOUT) or not self.ports:
            raise RuntimeError(f"the receiver did not start; see {self.log_path}")
        self.starts.append(time.time())
        return time.monotonic() - began

    @property
    def pid(self) -> int | None:
        return None if self.process is None or self.process.poll() is not None else self.process.pid

    def stop(self) -> float:
        """SIGTERM (a clean stop: commit, checkpoint, release names); seconds it took."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(STOP_TIMEOUT)
        return time.monotonic() - began

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(STOP_TIMEOUT)


def proc_figures(pid: int | None) -> dict[str, float | None]:
    """RSS (MiB), open file descriptors and threads of `pid` from /proc; None when gone."""
    if pid is None:
        return {"rss_mb": None, "fds": None, "threads": None}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return {"rss_mb": None, "fds": None, "threads": None}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": fds,
        "threads": int(fields["Threads"]),
    }


def store_bytes(data_dir: Path) -> int:
    total = 0
    for name in ("messages.sqlite3", "messages.sqlite3-wal", "messages.sqlite3-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += (data_dir / name).stat().st_size
    return total


# -- the senders --------------------------------------------------------------------------


@dataclass
class Message:
    seq: int
    path: str
    sender: str
    source: str
    text: bytes
    spam: bool


class Ledger:
    """What happened to each message, one byte each, and when each was acknowledged."""

    def __init__(self, size: int) -> None:
        self.state = bytearray(size)
        self.acked_at = array("d", bytes(8 * size))
        """When each was acknowledged (or, for a datagram, sent): time.time()."""
        self.paths = bytearray(size)
        self.window: list[tuple[str, float]] = []
        """(path, seconds) of each acknowledged message since the last sample."""
        self.counts: dict[str, int] = {}

    def note(self, message: Message, state: int, latency: float | None = None) -> None:
        self.state[message.seq] = state
        self.paths[message.seq] = list(PATH_WEIGHTS).index(message.path)
        key = f"{'spam ' if message.spam else ''}{message.path} {STATE_NAMES[state]}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if state in (ACKED, SPAM_ACKED, SENT_DATAGRAM):
            self.acked_at[message.seq] = time.time()
        if latency is not None and not message.spam:
            self.window.append((message.path, latency))


STATE_NAMES = {
    ACKED: "acked",
    SENT_DATAGRAM: "sent",
    FAILED: "failed",
    SPAM_ACKED: "acked",
    SPAM_SENT: "sent",
}


async def send_session(message: Message, port: int) -> None:
    """One message over a new TCP session from `message.source`, as Windows sends it."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port, local_addr=(message.source, 0))
    try:
        client = SessionClient(
            message.sender.encode(),
            alias_name(ALIAS),
            message.text,
            calling=NetBIOSName(message.sender.encode()[:15], 0x00),
            single_block=len(message.text) <= 128,
        )
        writer.write(client.start())
        while True:
            event = client.next_event()
            if event is NEED_DATA:
                data = await reader.read(4096)
                client.receive_data(data)
            elif isinstance(event, SendData):
                writer.write(event.data)
            elif isinstance(event, MessageDelivered):
                return
            else:
                raise ConnectionError(f"session ended with {event}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def send_mailslot(message: Message, port: int) -> None:
    """One `\\MAILSLOT\\MESSNGR` datagram from `message.source`; nothing comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((message.source, 0))
        source_port = sock.getsockname()[1]
        for datagram in build_mailslot_datagrams(
            message.sender.encode(),
            ALIAS.encode(),
            message.text,
            source_name=NetBIOSName(message.sender.encode()[:15], 0x03),
            destination_name=alias_name(ALIAS),
            source_ip=message.source,
            source_port=source_port,
            datagram_id=message.seq & 0xFFFF,
            max_datagram=MESSENGER_DATAGRAM_BYTES,
        ):
            sock.sendto(datagram, (LOOPBACK, port))


class _Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    def datagram_received(self, data: bytes, addr) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.replies.put_nowait(data)


async def send_rpc(message: Message, port: int) -> None:
    """One NetrSendMessage call from `message.source`, sent again until it is answered."""
    act_id = uuid.uuid4()
    datagrams = rpc.build_netr_send_message_call(
        message.sender.encode(), ALIAS.encode(), message.text, act_id=act_id
    )
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _Replies, local_addr=(message.source, 0), remote_addr=(LOOPBACK, port)
    )
    try:
        while True:
            for datagram in datagrams:
                transport.sendto(datagram)
            try:
                async with asyncio.timeout(RPC_RETRANSMIT):
                    while True:
                        reply = rpc.parse_call_reply(
                            await protocol.replies.get(), act_id=act_id, seqnum=0
                        )
                        if reply.ptype is rpc.PacketType.RESPONSE:
                            if reply.status != 0:
                                raise ConnectionError(f"status {reply.status}")
                            return
                        if reply.ptype in (rpc.PacketType.FAULT, rpc.PacketType.REJECT):
                            raise ConnectionError(f"{reply.ptype.name} {reply.status}")
            except TimeoutError:
                continue
    finally:
        transport.close()


class Load:
    """Senders drawing message numbers from one counter until a segment's share is sent."""

    def __init__(self, receiver: Receiver, ledger: Ledger, seed: int) -> None:
        self.receiver = receiver
        self.ledger = ledger
        self.random = random.Random(seed)
        self.next_seq = 0

    def message(self, spam: bool) -> Message:
        seq = self.next_seq
        self.next_seq += 1
        path = self.random.choices(list(PATH_WEIGHTS), weights=list(PATH_WEIGHTS.values()))[0]
        if spam and self.random.random() < 0.5:
            sender, source = SPAM_SENDER, self.random.choice(LEGIT_SOURCES)
        elif spam:
            sender, source = "FLOOD", self.random.choice(FLOOD_SOURCES)
        else:
            sender, source = f"UPS{seq % 16:02d}", LEGIT_SOURCES[seq % len(LEGIT_SOURCES)]
        longest = MAX_DATAGRAM_TEXT if path == "mailslot" else MAX_TEXT
        size = self.random.randint(129, longest) if self.random.random() < LONG_TEXT_SHARE else 100
        text = (f"soak {seq:08d} {path} ".encode() + b"x" * size)[:size]
        return Message(seq, path, sender, source, text, spam)

    async def run(self, count: int, concurrency: int, spam: bool) -> None:
        end = self.next_seq + count
        await asyncio.gather(*(self._worker(end, spam) for _ in range(concurrency)))

    async def _worker(self, end: int, spam: bool) -> None:
        while self.next_seq < end:
            message = self.message(spam)
            ports = self.receiver.ports
            began = time.monotonic()
            try:
                if message.path == "mailslot":
                    send_mailslot(message, ports["datagram"])
                    self.ledger.note(message, SPAM_SENT if spam else SENT_DATAGRAM)
                    await asyncio.sleep(MAILSLOT_PAUSE)
                    continue
                async with asyncio.timeout(REPLY_TIMEOUT):
                    if message.path == "session":
                        await send_session(message, ports["session"])
                    else:
                        await send_rpc(message, ports["rpc"])
            except (OSError, ConnectionError, TimeoutError, KeyError, ValueError):
                self.ledger.note(message, FAILED)
                await asyncio.sleep(FAILURE_PAUSE)
                continue
            self.ledger.note(message, SPAM_ACKED if spam else ACKED, time.monotonic() - began)


# -- sampling -------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    phase: str
    rss_mb: float | None
    fds: int | None
    threads: int | None
    store_mb: float
    stored: int | None
    pruned_total: int | None
    refused: dict[str, int] = field(default_factory=dict)
    rate: float = 0.0
    p50_ms: dict[str, float] = field(default_factory=dict)
    p99_ms: dict[str, float] = field(default_factory=dict)


def percentile(ordered: list[float], percent: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


def status_of(data_dir: Path) -> dict | None:
    try:
        with ControlClient(data_dir, timeout=5) as client:
            return client.request("status")
    except Exception:  # restarting, or too busy to answer in time: a gap in the series
        return None


async def sample_forever(
    receiver: Receiver, ledger: Ledger, load: Load, samples: list[Sample], phase: list[str]
) -> None:
    began = time.monotonic()
    last_seq, last_t = 0, began
    while True:
        await asyncio.sleep(SAMPLE_INTERVAL)
        now = time.monotonic()
        window, ledger.window = ledger.window, []
        status = await asyncio.to_thread(status_of, receiver.data_dir)
        store = (status or {}).get("store") or {}
        figures = proc_figures(receiver.pid)
        by_path: dict[str, list[float]] = {}
        for path, seconds in window:
            by_path.setdefault(path, []).append(seconds * 1000)
        everything = sorted(ms for values in by_path.values() for ms in values)
        if everything:
            by_path["all"] = everything
        for values in by_path.values():
            values.sort()
        samples.append(
            Sample(
                t=now - began,
                phase=phase[0],
                rss_mb=figures["rss_mb"],
                fds=figures["fds"],
                threads=figures["threads"],
                store_mb=store_bytes(receiver.data_dir) / 2**20,
                stored=store.get("messages"),
                pruned_total=pruned_total(receiver.data_dir, store.get("messages")),
                refused=(status or {}).get("refused", {}),
                rate=(load.next_seq - last_seq) / (now - last_t),
                p50_ms={path: round(percentile(v, 50), 2) for path, v in by_path.items()},
                p99_ms={path: round(percentile(v, 99), 2) for path, v in by_path.items()},
            )
        )
        last_seq, last_t = load.next_seq, now
        s = samples[-1]
        print(
            f"  {s.t:7.0f}s {s.phase:8} rate {s.rate:6.0f}/s rss {s.rss_mb or 0:6.1f} MiB "
            f"fds {s.fds or 0:4} store {s.store_mb:6.1f} MiB ({s.stored}) "
            f"p99 {s.p99_ms.get('all', 0):7.1f} ms",
            flush=True,
        )


def pruned_total(data_dir: Path, stored: int | None) -> int | None:
    """Rows ever inserted (AUTOINCREMENT's sqlite_sequence) less those held: rows pruned."""
    if stored is None:
        return None
    try:
        uri = (data_dir / "messages.sqlite3").as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else row[0] - stored


# -- the run ------------------------------------------------------------------------------


SETTINGS = """\
# The soak's settings: spam through the policy, and a store small enough to prune.
[policy]
deny_senders = ["{spam}"]
rate_limit = {rate_limit}       # messages a minute per source address
rate_burst = {rate_burst}

[store]
max_messages = {max_messages}
"""


async def run_plan(args: argparse.Namespace, work: Path) -> dict:
    settings = work / "soak.toml"
    max_messages = max(1000, args.messages // 5)
    settings.write_text(
        SETTINGS.format(
            spam=SPAM_SENDER,
            rate_limit=RATE_LIMIT,
            rate_burst=RATE_BURST,
            max_messages=max_messages,
        )
    )
    receiver = Receiver(work, settings)
    ledger = Ledger(args.messages + BURST_CONCURRENCY + CONCURRENCY)
    load = Load(receiver, ledger, args.seed)
    samples: list[Sample] = []
    phase = ["start"]
    events: list[dict] = []
    began = time.monotonic()

    def event(kind: str, **details) -> None:
        events.append({"t": time.monotonic() - began, "kind": kind, **details})
        print(f"{events[-1]['t']:7.0f}s {kind} {details}", flush=True)

    event("start", seconds=round(receiver.start(), 2))
    sampler = asyncio.create_task(sample_forever(receiver, ledger, load, samples, phase))
    try:
        for segment in PLAN:
            count = round(args.messages * segment.share)
            phase[0] = segment.kind
            if segment.kind == "idle":
                event("idle", seconds=args.idle)
                await asyncio.sleep(args.idle)
            elif segment.kind == "restart":
                stopped = await asyncio.to_thread(receiver.stop)
                started = await asyncio.to_thread(receiver.start)
                event("restart", stop_s=round(stopped, 2), start_s=round(started, 2))
            elif segment.kind == "burst":
                event("burst", messages=count)
                await load.run(count, BURST_CONCURRENCY, spam=True)
            elif segment.kind == "kill":
                event("steady", messages=count, kill_at=count // 2)
                killer = asyncio.create_task(
                    kill_and_restart(receiver, load, load.next_seq + count // 2, event)
                )
                await load.run(count, CONCURRENCY, spam=False)
                await killer
            else:
                event("steady", messages=count)
                await load.run(count, CONCURRENCY, spam=False)
        phase[0] = "end"
        await asyncio.sleep(SAMPLE_INTERVAL * 2)  # the last commits and a look at the limits
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        if receiver.pid is not None:
            event("stop", seconds=round(receiver.stop(), 2))
    elapsed = time.monotonic() - began
    checks = check_store(receiver.data_dir, ledger, load.next_seq)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "label": args.label,
        "messages": load.next_seq,
        "elapsed_s": round(elapsed, 1),
        "idle_s": args.idle,
        "max_messages": max_messages,
        "rate_limit": RATE_LIMIT,
        "counts": dict(sorted(ledger.counts.items())),
        "checks": checks,
        "events": events,
        "samples": [asdict(sample) for sample in samples],
        "machine": machine(),
        "receiver_log_errors": log_problems(receiver.log_path),
    }


async def kill_and_restart(receiver: Receiver, load: Load, at: int, event) -> None:
    """kill -9 the receiver once message `at` is under way (with CONCURRENCY in flight)."""
    while load.next_seq < at:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(receiver.kill)
    event("kill -9", at=load.next_seq)
    started = await asyncio.to_thread(receiver.start)
    event("restart after kill", start_s=round(started, 2))


def check_store(data_dir: Path, ledger: Ledger, sent: int) -> dict:
    """Every acknowledged legitimate message is in the store, or was pruned."""
    uri = (data_dir / "messages.sqlite3").as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        rows = conn.execute("SELECT sender, text, received_at FROM messages").fetchall()
        inserted = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'messages'"
        ).fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    present = bytearray(len(ledger.state))
    flood_stored = 0
    for sender, text, _ in rows:
        seq = int(text.split()[1])
        present[seq] = 1
        flood_stored += sender == "FLOOD"
    oldest = min(datetime.fromisoformat(row[2]).timestamp() for row in rows) if rows else 0.0
    acked = pruned = lost = spam_stored = datagrams_kept = datagrams = 0
    lost_examples = []
    for seq in range(sent):
        state = ledger.state[seq]
        if state == ACKED:
            acked += 1
            if not present[seq]:
                if ledger.acked_at[seq] <= oldest + PRUNE_SLACK:
                    pruned += 1
                else:
                    lost += 1
                    if len(lost_examples) < 10:
                        lost_examples.append(seq)
        elif state == SENT_DATAGRAM and ledger.acked_at[seq] > oldest + PRUNE_SLACK:
            datagrams += 1  # sent since the oldest message kept: not pruned, if it arrived
            datagrams_kept += present[seq]
    for sender, _, _ in rows:
        spam_stored += sender == SPAM_SENDER
    spam_datagrams_kept = sum(present[seq] for seq in range(sent) if ledger.state[seq] == SPAM_SENT)
    return {
        "integrity": integrity,
        "rows_inserted": inserted,
        "rows_held": len(rows),
        "rows_pruned": inserted - len(rows),
        "acknowledged": acked,
        "acknowledged_held": acked - pruned - lost,
        "acknowledged_pruned": pruned,
        "acknowledged_lost": lost,
        "lost_examples": lost_examples,
        "denied_sender_stored": spam_stored,
        "flood_stored": flood_stored,
        "mailslot_sent_since_oldest_kept": datagrams,
        "mailslot_sent_since_oldest_kept_held": datagrams_kept,
        "spam_mailslot_held": spam_datagrams_kept,
    }


LOG_PROBLEMS = ("Traceback", "refused a message", "cannot", "no room", "not stored", "lags")
"""What in the receiver's log (it logs without levels) says something went wrong."""


def log_problems(path: Path) -> dict:
    """How many of the receiver's log lines say something went wrong, and the first 20."""
    lines = []
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as log:
        for line in log:
            if any(word in line for word in LOG_PROBLEMS):
                lines.append(line.rstrip())
    return {"count": len(lines), "first": lines[:20]}


def machine() -> dict:
    load1, load5, load15 = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_at_end": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "note": "shared with other sessions' test runs; rates and latencies vary with them",
    }


# -- the report -----------------------------------------------------------------------


def growth(samples: list[dict], key: str) -> dict:
    """The key's median in the second and last thirds of the run (after the start-up)."""
    values = [s[key] for s in samples if s[key] is not None]
    if len(values) < 6:
        return {}
    third = len(values) // 3
    middle = sorted(values[third : 2 * third])
    last = sorted(values[2 * third :])
    return {
        "median_middle": middle[len(middle) // 2],
        "median_last": last[len(last) // 2],
        "max": max(values),
    }


def summary(result: dict) -> str:
    samples = result["samples"]
    checks = result["checks"]
    lines = [
        f"# Soak {result['date']}",
        "",
        f"Code: {result.get('label') or 'not recorded'}.",
        "",
        f"{result['messages']:,} messages in {result['elapsed_s'] / 60:.1f} minutes "
        f"({result['idle_s']} s idle periods), store max_messages {result['max_messages']:,}, "
        f"policy rate_limit {result['rate_limit']}/min per source. Machine: "
        f"{result['machine']['cpus']} CPUs, {result['machine']['note']} "
        f"(load at the end {result['machine']['load_at_end']}).",
        "",
        "| figure | middle third (median) | last third (median) | max |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("rss_mb", "RSS (MiB)"),
        ("fds", "open fds"),
        ("threads", "threads"),
        ("store_mb", "store on disk (MiB)"),
        ("stored", "messages held"),
    ):
        figures = growth(samples, key)
        if figures:
            lines.append(
                f"| {label} | {figures['median_middle']:,.1f} | {figures['median_last']:,.1f} "
                f"| {figures['max']:,.1f} |"
            )
    p99 = sorted(s["p99_ms"]["all"] for s in samples if "all" in s["p99_ms"])
    if p99:
        lines += [
            "",
            f"p99 latency per {SAMPLE_INTERVAL:g} s interval (session and RPC, connect or "
            f"call to answer): median {p99[len(p99) // 2]:.1f} ms, worst {p99[-1]:.1f} ms.",
        ]
    lines += ["", "## Checks", "", "```", json.dumps(checks, indent=1), "```", "", "## Counts", ""]
    lines += ["```", json.dumps(result["counts"], indent=1), "```", "", "## Events", ""]
    lines += [f"- {e['t']:.0f} s: {e['kind']} {json.dumps(e)}" for e in result["events"]]
    problems = result["receiver_log_errors"]
    lines += ["", f"## Receiver log: {problems['count']} lines saying something went wrong", ""]
    if problems["first"]:
        lines += ["```", *problems["first"], "```"]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    minutes = [s["t"] / 60 for s in samples]
    figure, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    panels = [
        ("RSS (MiB)", [s["rss_mb"] for s in samples]),
        ("open fds", [s["fds"] for s in samples]),
        ("store on disk (MiB)", [s["store_mb"] for s in samples]),
    ]
    for axis, (label, values) in zip(axes, panels, strict=False):
        axis.plot(minutes, [v if v is not None else float("nan") for v in values], lw=1)
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
    held = axes[2].twinx()
    counts = [s["stored"] if s["stored"] is not None else float("nan") for s in samples]
    held.plot(minutes, counts, lw=1, color="tab:orange")
    held.set_ylabel("messages held", color="tab:orange")
    held.set_ylim(0, 1.15 * max((c for c in counts if c == c), default=1))
    for path_name, colour in (("session", "tab:blue"), ("rpc", "tab:green")):
        axes[3].plot(
            minutes,
            [s["p99_ms"].get(path_name, float("nan")) for s in samples],
            lw=1,
            color=colour,
            label=f"{path_name} p99",
        )
    axes[3].set_ylabel("p99 latency (ms)")
    axes[3].set_yscale("log")
    axes[3].legend(loc="upper left")
    axes[3].set_xlabel("minutes")
    for e in result["events"]:
        colour = {"kill -9": "red", "restart": "green", "burst": "orange", "idle": "grey"}.get(
            e["kind"]
        )
        if colour:
            for axis in axes:
                axis.axvline(e["t"] / 60, color=colour, lw=0.8, ls="--")
    figure.suptitle(
        f"messengerd soak {result['date']}: {result['messages']:,} messages; "
        "dashed: burst (orange), idle (grey), restart (green), kill -9 (red)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of each idle period")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--label", default="", help="what was measured (a branch, a commit)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--plot", type=Path, metavar="JSON", help="only draw a result's PNG")
    args = parser.parse_args()
    if args.plot:
        plot(json.loads(args.plot.read_text()), args.plot.with_suffix(".png"))
        return
    # On disk, not tmpfs: SQLite's fsync costs what it costs in a real data directory.
    work = Path(tempfile.mkdtemp(prefix="messengerd-soak-", dir="/var/tmp"))
    print(f"work folder {work}", flush=True)
    try:
        result = asyncio.run(run_plan(args, work))
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"soak-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(result, indent=1))
    base.with_suffix(".md").write_text(summary(result))
    plot(result, base.with_suffix(".png"))
    print(summary(result))


if __name__ == "__main__":
    main()
