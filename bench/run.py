"""messengerd's benchmarks: `python bench/run.py [--quick]` prints a markdown table of results.

Each receiver is a real `python -m messengerd run` process on loopback (free ports, its own
data folder); the senders are bench/load.py in a process of their own. Samba's smbd, where it
is installed and we are root, takes the same session load as the reference. bench/README.md
says what each number means and records a full run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import load
from processes import (
    ALIAS,
    BENCH,
    LOOPBACK,
    REPO,
    SETTLE_SECONDS,
    SETTLE_TIMEOUT,
    STOP_TIMEOUT,
    Receiver,
    log,
    memory,
    rss_mb,
    run_load,
    wait_quiet,
)
from profiling import bench_profile
from report import report
from smbd import Smbd, SmbdUnavailable

from messengerd import __version__
from messengerd.core.aliases import AliasTable
from messengerd.core.message import Message
from messengerd.core.store.inbox import DATABASE_NAME, MAX_PENDING_WRITES, Inbox
from messengerd.protocol.events import MessageReceived
from messengerd.protocol.registration import BCAST_REQ_RETRY_COUNT, BCAST_REQ_RETRY_TIMEOUT
from messengerd.protocol.session import SessionMachine
from messengerd.wire import nbss
from messengerd.wire.layers import nbss as nbss_layers
from messengerd.wire.layers import smb as smb_layers


@dataclass(frozen=True)
class Plan:
    """How much of everything a run does (full, or --quick for a smoke test)."""

    messages: int
    rounds: int
    warmup: int
    seconds: float
    smbd_seconds: float
    single_messages: int
    starts: int
    idle_sessions: int
    mailslot_rates: tuple[int, ...]
    mailslot_seconds: float
    sustained_rate: int
    sustained_seconds: float
    inbox_batch: int
    inbox_window: int
    protocol_messages: int
    fsyncs: int
    settle: float


FULL = Plan(
    messages=6000,
    rounds=3,
    warmup=200,
    seconds=30.0,
    smbd_seconds=15.0,
    single_messages=200,
    starts=5,
    idle_sessions=1000,
    mailslot_rates=(1000, 1500, 2000, 3000),
    mailslot_seconds=1.5,
    sustained_rate=1000,
    sustained_seconds=10.0,
    inbox_batch=1000,
    inbox_window=3000,
    protocol_messages=500,
    fsyncs=100,
    settle=SETTLE_SECONDS,
)
QUICK = Plan(
    messages=200,
    rounds=1,
    warmup=20,
    seconds=5.0,
    smbd_seconds=5.0,
    single_messages=20,
    starts=1,
    idle_sessions=100,
    mailslot_rates=(500,),
    mailslot_seconds=0.5,
    sustained_rate=500,
    sustained_seconds=1.0,
    inbox_batch=100,
    inbox_window=300,
    protocol_messages=50,
    fsyncs=10,
    settle=SETTLE_SECONDS / 3,
)


def bench_start(work: Path, plan: Plan) -> dict:
    """Popen to the ready line, `plan.starts` times, each in a fresh data folder; and how
    long Python takes to start and import the command alone (median of as many)."""
    times, imports = [], []
    for attempt in range(plan.starts):
        with Receiver(work / f"start{attempt}") as receiver:
            times.append(receiver.ready_seconds)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import messengerd.cli"], cwd=REPO, check=True)
        imports.append(time.perf_counter() - started)
    return {
        "median_s": statistics.median(times),
        "all_s": times,
        "imports_s": statistics.median(imports),
        # B-node registration waits this long for objections before a name is ours.
        "registration_s": BCAST_REQ_RETRY_COUNT * BCAST_REQ_RETRY_TIMEOUT,
    }


def bench_memory(work: Path, plan: Plan) -> dict:
    """RSS idle after start, then with `plan.idle_sessions` idle sessions open."""
    with Receiver(work / "memory") as receiver:
        time.sleep(plan.settle)
        idle = memory(receiver.pid)
        holder = subprocess.Popen(
            [sys.executable, str(BENCH / "load.py"), "--port", str(receiver.ports["session"]),
             "hold", "--count", str(plan.idle_sessions)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        assert holder.stdout is not None and holder.stdin is not None
        held = json.loads(holder.stdout.readline())
        time.sleep(plan.settle)
        busy = memory(receiver.pid)
        descriptors = len(os.listdir(f"/proc/{receiver.pid}/fd"))
        limit = _file_limit(receiver.pid)
        holder.stdin.close()
        holder.wait()
    return {
        "idle_mb": idle["rss"],
        "idle_writer_mb": idle["children_rss"],
        "idle_children": idle["children"],
        "idle_pss_mb": idle["pss_total"],
        "sessions": held["open"],
        "session_failures": held["failed"],
        "with_sessions_mb": busy["rss"],
        "with_sessions_pss_mb": busy["pss_total"],
        "peak_mb": busy["peak"],
        "per_session_kb": (busy["rss"] - idle["rss"]) * 1024 / max(1, held["open"]),
        "daemon_fds": descriptors,
        "daemon_nofile": limit,
    }


def _file_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return line.split()[3]
    return "?"


def session_arguments(
    port: int,
    tag: str,
    plan: Plan,
    *,
    concurrency: int = 16,
    count: int | None = None,
    seconds: float | None = None,
) -> list[str]:
    """load.py's arguments: the 16-at-a-time run warms up first; the one-at-a-time run
    follows it on the same receiver, already warm."""
    loaded = concurrency > 1
    return [
        "--port", str(port), "--tag", tag, "session",
        "--count", str(count or (plan.messages if loaded else plan.single_messages)),
        "--warmup", str(plan.warmup if loaded else 0), "--concurrency", str(concurrency),
        "--seconds", str(seconds or plan.seconds),
    ]  # fmt: skip


def bench_sessions(work: Path, name: str, plan: Plan, *options: str) -> dict:
    """16 senders at a time, then 1, against one receiver; its output and store checked."""
    with Receiver(work / name, *options) as receiver:
        port = receiver.ports["session"]
        loaded = run_load(*session_arguments(port, name, plan), watch=receiver.pid)
        single = run_load(*session_arguments(port, name + "s", plan, concurrency=1))
        receiver.settle(plan.settle)
        _, peak = rss_mb(receiver.pid)
        receiver.stop()
    acked = sum(run["warmup_sent"] + run["sent"] for run in (loaded, single))
    printed = len(receiver.messages())
    result = {"loaded": loaded, "single": single, "acked": acked, "printed": printed}
    result["peak_mb"] = peak
    if "--no-store" not in options:
        result["store"] = store_size(receiver.data_dir)
    return result


def store_size(data_dir: Path) -> dict:
    """Bytes of the data folder per 1,000 stored messages, after a clean stop.

    The receiver's last connection checkpoints the WAL into the database when it closes;
    should a WAL remain, it is checkpointed (TRUNCATE) here before measuring.
    """
    files = {p.name: p.stat().st_size for p in data_dir.iterdir() if p.is_file()}
    if files.get(DATABASE_NAME + "-wal"):
        with contextlib.closing(sqlite3.connect(data_dir / DATABASE_NAME)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        files = {p.name: p.stat().st_size for p in data_dir.iterdir() if p.is_file()}
    rows = Inbox(data_dir, create=False).count()
    total = sum(files.values())
    return {
        "rows": rows,
        "bytes": total,
        "files": files,
        "per_1000_kb": total / rows * 1000 / 1024 if rows else 0.0,
    }


def bench_mailslot(
    work: Path, name: str, plan: Plan, rates: tuple[int, ...], seconds: float, *options: str
) -> dict:
    """Direct mailslot datagrams at paced `rates`, `seconds` each; what the receiver printed,
    per rate, and per second of receive time."""
    with Receiver(work / name, *options) as receiver:
        port = receiver.ports["datagram"]
        sent = run_load(
            "--port", str(port), "--tag", "dg", "mailslot",
            "--rates", *map(str, rates),
            "--seconds", str(seconds), "--pause", str(plan.settle),
        )  # fmt: skip
        receiver.settle(plan.settle)
        kernel_drops = udp_drops(port)
        receiver.stop()
        refused = receiver.refusals
    by_tag: dict[str, list[datetime.datetime]] = collections.defaultdict(list)
    for message in receiver.messages():
        tag = message["text"].split("-", 1)[0]
        by_tag[tag].append(datetime.datetime.fromisoformat(message["received_at"]))
    steps = []
    for step in sent["steps"]:
        times = sorted(by_tag.get(step["tag"], []))
        span = (times[-1] - times[0]).total_seconds() if len(times) > 1 else 0.0
        steps.append(
            {
                "offered": step["rate"],
                "seconds": step["seconds"],
                "sent": step["sent"],
                "received": len(times),
                "rate": (len(times) - 1) / span if span else 0.0,
                "loss_pct": 100 * (1 - len(times) / step["sent"]) if step["sent"] else 0.0,
            }
        )
    every = sorted(t.timestamp() for times in by_tag.values() for t in times)
    seconds_seen = collections.Counter(int(t - every[0]) for t in every)
    per_second = [seconds_seen[n] for n in range(max(seconds_seen, default=-1) + 1)]
    return {
        "steps": steps,
        "kernel_drops": kernel_drops,
        "inbox_refusals": refused,
        "per_second": per_second,
    }


def udp_drops(port: int) -> int | None:
    """The kernel's drop counter of the UDP socket bound to 127.0.0.1:`port` (/proc/net/udp)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return int(fields[-1])
    return None


def bench_fsync(work: Path, plan: Plan) -> dict:
    """What one durable commit waits for: write 4 KiB to a file in the work folder and
    fsync it (SQLite in WAL mode with synchronous=FULL syncs the log once per COMMIT)."""
    path = work / "fsync.probe"
    waits = []
    with open(path, "wb") as probe:
        for _ in range(plan.fsyncs):
            probe.write(b"\0" * 4096)
            probe.flush()
            started = time.perf_counter()
            os.fsync(probe.fileno())
            waits.append(1000 * (time.perf_counter() - started))
    path.unlink()
    waits.sort()
    return {"median_ms": statistics.median(waits), "p90_ms": waits[int(len(waits) * 0.9)]}


def bench_protocol(plan: Plan) -> dict:
    """CPU a message costs in the session path without I/O: SessionMachine fed the same
    D5/D7/D7/D6 frames as load.py sends, and two of the scapy calls it makes per frame."""
    text_bytes = 200
    aliases = AliasTable([ALIAS])
    frames = load.Frames.build(ALIAS.encode("ascii"), text_bytes)
    text = load.message_text("protocol", 0, text_bytes)
    blocks = range(0, text_bytes, load.BLOCK_BYTES)
    requests = [frames.d5, *(frames.d7(text[i : i + load.BLOCK_BYTES], 0) for i in blocks)]
    requests.append(frames.d6)

    def one_message() -> int:
        machine = SessionMachine(aliases)
        received = 0
        for frame in requests:
            for event in machine.receive_data(frame):
                if isinstance(event, MessageReceived):
                    machine.message_stored()
                    received += 1
        return received

    if one_message() != 1:
        raise RuntimeError("SessionMachine did not take the benchmark's message")
    request = smb_layers.smb_of(nbss_layers.parse_frame(frames.d6))
    count = plan.protocol_messages

    def each(function, times: int) -> float:
        started = time.process_time()
        for _ in range(times):
            function()
        return 1000 * (time.process_time() - started) / times

    return {
        "frames": len(requests),
        "message_ms": each(one_message, count),
        "parse_ms": each(lambda: nbss_layers.parse_frame(frames.d6), count),
        "reply_ms": each(lambda: nbss.session_message(smb_layers.success_reply(request)), count),
    }


def bench_floor(plan: Plan, mode: str) -> dict:
    """The same session load against bench/floor.py: asyncio with no protocol work."""
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "floor.py"), mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert server.stdout is not None and server.stdin is not None
    try:
        port = int(server.stdout.readline())
        return run_load(*session_arguments(port, "floor", plan), watch=server.pid)
    finally:
        server.stdin.close()
        server.wait(STOP_TIMEOUT)


def bench_inbox(work: Path, plan: Plan) -> dict:
    """Inbox.store() alone, ms a message: into an empty inbox, then with rows already in
    the duplicate window from the same sender (all messages carry one receive time)."""
    base = datetime.datetime.now(datetime.UTC)
    result: dict = {}

    def message(number: int) -> Message:
        return Message(
            sender="ALICE",
            recipient=ALIAS,
            text=f"inbox-{number:08d} " + "x" * 185,
            path="session",
            peer=f"{LOOPBACK}:1",
            received_at=base,
            raw=b"x" * 200,
        )

    async def store(inbox: Inbox, first: int, count: int) -> float:
        started = time.perf_counter()
        # At most MAX_PENDING_WRITES may wait at once; half of that keeps the writer busy.
        for chunk in range(first, first + count, MAX_PENDING_WRITES // 2):
            end = min(first + count, chunk + MAX_PENDING_WRITES // 2)
            await asyncio.gather(*(inbox.store(message(n)) for n in range(chunk, end)))
        return time.perf_counter() - started

    async def measure() -> None:
        async with Inbox(work / "inbox") as inbox:
            result["empty_ms"] = 1000 * await store(inbox, 0, plan.inbox_batch) / plan.inbox_batch
            filled = plan.inbox_batch
            await store(inbox, filled, plan.inbox_window - filled)
            elapsed = await store(inbox, plan.inbox_window, plan.inbox_batch)
            result["window_ms"] = 1000 * elapsed / plan.inbox_batch
            result["window_rows"] = plan.inbox_window

    asyncio.run(measure())
    return result


def bench_smbd(work: Path, plan: Plan) -> dict:
    """The same session load against Samba's smbd with a `message command`."""
    folder = work / "smbd"
    folder.mkdir()
    with Smbd(folder) as smbd:
        ready = smbd.start()
        listening = smbd.listening()
        assert smbd.process is not None
        # smbd is slow: its run stops at `smbd_seconds`, the message count staying the same.
        arguments = session_arguments(smbd.port, "smbd", plan, seconds=plan.smbd_seconds)
        loaded = run_load(*arguments, watch=smbd.process.pid)
        single = run_load(*session_arguments(smbd.port, "smbds", plan, concurrency=1))
        pattern = re.compile(rb"smbds?-\d{8}")
        deadline, delivered = time.perf_counter() + SETTLE_TIMEOUT, -1
        while time.perf_counter() < deadline:
            time.sleep(plan.settle)
            now = smbd.delivered(pattern)
            if now == delivered:
                break
            delivered = now
    return {
        "loaded": loaded,
        "single": single,
        "ready_s": ready,
        "listening": listening,
        "acked": sum(run["warmup_sent"] + run["sent"] for run in (loaded, single)),
        "delivered": delivered,
        "version": _smbd_version(),
    }


def _smbd_version() -> str:
    path = shutil.which("smbd")
    if path is None:
        return "-"
    return subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()


def machine() -> dict:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "messengerd": __version__,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about 30 s)")
    parser.add_argument("--no-smbd", action="store_true", help="skip the smbd reference")
    parser.add_argument("--profile", action="store_true", help="also sample with py-spy")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--wait-quiet",
        action="store_true",
        help="before each part, wait (at most 90 s) until other processes leave the CPUs idle",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    results: dict = {"machine": machine(), "mode": "quick" if args.quick else "full"}
    # On disk, not tmpfs: the store's fsync must cost what it costs in a real data folder.
    work = Path(tempfile.mkdtemp(prefix="messengerd-bench-", dir="/var/tmp"))
    # smbd runs its message command as the guest account, which must reach its spool in here.
    work.chmod(0o755)
    began = time.perf_counter()

    def phase(key: str, title: str, bench, *arguments) -> None:
        if args.wait_quiet:
            wait_quiet()
        started = time.perf_counter()
        log(f"{title}...")
        results[key] = bench(*arguments)
        log(f"{title}: {time.perf_counter() - started:.1f} s")

    try:
        phase("start", "start to ready", bench_start, work, plan)
        phase("memory", "memory", bench_memory, work, plan)
        # Alternating rounds, the median of each reported: others' processes share this
        # machine, and a burst of theirs should not decide the storage comparison.
        for number in range(plan.rounds):
            for key, options in (("store", ()), ("nostore", ("--no-store",))):
                phase(
                    f"{key}{number}", f"sessions {key} {number + 1}/{plan.rounds}",
                    bench_sessions, work, f"{key}{number}", plan, *options,
                )  # fmt: skip
        for key in ("store", "nostore"):
            rounds = [results.pop(f"{key}{number}") for number in range(plan.rounds)]
            ordered = sorted(rounds, key=lambda r: r["loaded"]["rate"])
            results[key] = {"median": ordered[(len(ordered) - 1) // 2], "best": ordered[-1]}
            results[key]["rounds"] = [r["loaded"]["rate"] for r in rounds]
        phase("inbox", "inbox", bench_inbox, work, plan)
        phase("fsync", "fsync", bench_fsync, work, plan)
        phase("protocol", "session machine", bench_protocol, plan)
        for mode in ("streams", "protocol"):
            phase(f"floor_{mode}", f"floor ({mode})", bench_floor, plan, mode)
        rates, seconds = plan.mailslot_rates, plan.mailslot_seconds
        phase(
            "mailslot", "mailslot with store", bench_mailslot, work, "mailslot", plan,
            rates, seconds,
        )  # fmt: skip
        phase(
            "mailslot_nostore", "mailslot --no-store", bench_mailslot, work, "mailslot-nostore",
            plan, rates, seconds, "--no-store",
        )  # fmt: skip
        phase(
            "mailslot_sustained", "mailslot sustained, with store", bench_mailslot, work,
            "mailslot-sustained", plan, (plan.sustained_rate,), plan.sustained_seconds,
        )  # fmt: skip
        if args.no_smbd:
            results["smbd"] = "--no-smbd"
        else:
            try:
                phase("smbd", "smbd reference", bench_smbd, work, plan)
            except SmbdUnavailable as exc:
                results["smbd"] = str(exc)
        if args.profile:
            for key, options in (("profile", ()), ("profile_nostore", ("--no-store",))):
                name = key.replace("_", "-")

                def arguments(port: int, name: str = name) -> list[str]:
                    return session_arguments(port, name, plan, count=plan.messages // 2)

                phase(key, name, bench_profile, work, name, arguments, *options)
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.perf_counter() - began
    log(f"done in {results['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
