"""messengerd's benchmarks: `python bench/run.py [--quick] [--no-smbd]` prints a markdown table.

Each receiver is a real `python -m messengerd run` process on loopback (free ports, its own
data folder); the senders are bench/load.py in a process of their own. Samba's smbd, where it
is installed and we are root, takes the same session load in the same run as the reference.
A full run appends its table to bench/results/<date>.md. bench/README.md says what each
number means.
"""

from __future__ import annotations

import argparse
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
    REPO,
    SETTLE_SECONDS,
    SETTLE_TIMEOUT,
    START_TIMEOUT,
    CpuSample,
    Receiver,
    log,
    machine_ticks,
    memory,
    run_load,
    wait_quiet,
)
from profiling import bench_profile
from report import report
from smbd import Smbd, SmbdUnavailable

from messengerd import __version__
from messengerd.core.aliases import AliasTable
from messengerd.core.store.inbox import Inbox
from messengerd.protocol.events import MessageAccepted, MessageReceived, SendData
from messengerd.protocol.registration import BCAST_REQ_RETRY_COUNT, BCAST_REQ_RETRY_TIMEOUT
from messengerd.protocol.session import SessionMachine

RESULTS = BENCH / "results"
PROBE_INTERVAL = 0.005
"""Seconds between the start-up part's attempts to find the port and to send its message."""


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
    mailslot_rates=(1000, 2000, 3000),
    mailslot_seconds=1.5,
    sustained_rate=1000,
    sustained_seconds=10.0,
    protocol_messages=2000,
    fsyncs=100,
    settle=SETTLE_SECONDS,
)
QUICK = Plan(
    messages=300,
    rounds=1,
    warmup=20,
    seconds=5.0,
    smbd_seconds=3.0,
    single_messages=20,
    starts=1,
    idle_sessions=100,
    mailslot_rates=(500,),
    mailslot_seconds=0.5,
    sustained_rate=500,
    sustained_seconds=1.0,
    protocol_messages=200,
    fsyncs=10,
    settle=SETTLE_SECONDS / 3,
)


# -- start, memory ---------------------------------------------------------------------


def bench_start(work: Path, plan: Plan) -> dict:
    """From Popen to the ready line, and to the first message answered with success (a D0
    sent every few ms from the moment the session port listens), `plan.starts` times, each
    in a fresh data folder; and how long Python takes to start and import the command."""
    ready, first, imports = [], [], []
    for attempt in range(plan.starts):
        with Receiver(work / f"start{attempt}") as receiver:
            first.append(_first_message(receiver))
            ready.append(receiver.wait_ready().ready_seconds)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import messengerd.cli"], cwd=REPO, check=True)
        imports.append(time.perf_counter() - started)
    return {
        "ready_s": ready,
        "first_s": first,
        "imports_s": statistics.median(imports),
        # B-node registration waits this long for objections before a name is ours.
        "registration_s": BCAST_REQ_RETRY_COUNT * BCAST_REQ_RETRY_TIMEOUT,
    }


def _first_message(receiver: Receiver) -> float:
    """Seconds from the receiver's Popen until a D0 to its alias is answered with success."""
    deadline = receiver.started + START_TIMEOUT
    text = load.message_text("start", 0, 40)
    port = None
    while time.perf_counter() < deadline and receiver.process.poll() is None:
        port = port or receiver.session_port()
        if port and load.probe(port, ALIAS.encode("ascii"), text):
            return time.perf_counter() - receiver.started
        time.sleep(PROBE_INTERVAL)
    raise RuntimeError("messengerd never accepted a message:\n" + "\n".join(receiver.log))


def bench_memory(work: Path, plan: Plan) -> dict:
    """The receiver idle after start, then with `plan.idle_sessions` idle sessions open."""
    with Receiver(work / "memory") as receiver:
        receiver.wait_ready()
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
        holder.stdin.close()
        holder.wait()
    return {
        "idle": idle,
        "sessions": held["open"],
        "session_failures": held["failed"],
        "with_sessions": busy,
        "per_session_kb": (busy["rss"] - idle["rss"]) * 1024 / max(1, held["open"]),
        "fds": descriptors,
    }


# -- session messages ------------------------------------------------------------------


def session_arguments(
    port: int, tag: str, plan: Plan, *, concurrency: int = 16, seconds: float | None = None
) -> list[str]:
    """load.py's arguments: the 16-at-a-time run warms up first; the one-at-a-time run
    follows it on the same receiver, already warm."""
    loaded = concurrency > 1
    return [
        "--port", str(port), "--tag", tag, "session",
        "--count", str(plan.messages if loaded else plan.single_messages),
        "--warmup", str(plan.warmup if loaded else 0), "--concurrency", str(concurrency),
        "--seconds", str(seconds or plan.seconds),
    ]  # fmt: skip


def bench_sessions(work: Path, name: str, plan: Plan, *options: str) -> dict:
    """16 senders at a time, then 1, against one messengerd; its output and store checked."""
    with Receiver(work / name, *options) as receiver:
        port = receiver.wait_ready().ports["session"]
        loaded = run_load(*session_arguments(port, name, plan), watch=receiver.pid)
        single = run_load(*session_arguments(port, name + "s", plan, concurrency=1))
        receiver.settle(plan.settle)
        after = memory(receiver.pid)
        receiver.stop()
    result = {
        "loaded": loaded,
        "single": single,
        "acked": sum(run["warmup_sent"] + run["sent"] for run in (loaded, single)),
        "printed": len(receiver.messages()),
        "peak_mb": after["peak"],
        "threads": after["threads"],
        "children": after["children"],
        "refusals": receiver.refusals,
    }
    if "--no-store" not in options:
        result["stored"] = Inbox(receiver.data_dir, create=False).count()
    return result


def bench_smbd(work: Path, name: str, plan: Plan) -> dict:
    """The same session load against Samba's smbd with a `message command`."""
    folder = work / name
    folder.mkdir()
    with Smbd(folder) as smbd:
        ready = smbd.start()
        listening = smbd.listening()
        assert smbd.process is not None
        # smbd is slow: its run stops at `smbd_seconds`, the message count staying the same.
        arguments = session_arguments(smbd.port, name, plan, seconds=plan.smbd_seconds)
        loaded = run_load(*arguments, watch=smbd.process.pid)
        single = run_load(*session_arguments(smbd.port, name + "s", plan, concurrency=1))
        pattern = re.compile(rb"%ss?-\d{8}" % name.encode("ascii"))
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
    }


def bench_traced(work: Path, plan: Plan) -> dict:
    """The 16-at-a-time load on a receiver with its inbox writer timed (bench/traced.py)."""
    out = work / "trace.json"
    program = (sys.executable, str(BENCH / "traced.py"), str(out))
    with Receiver(work / "traced", program=program) as receiver:
        port = receiver.wait_ready().ports["session"]
        loaded = run_load(*session_arguments(port, "traced", plan), watch=receiver.pid)
        receiver.settle(plan.settle)
        receiver.stop()
    return {"loaded": loaded, "writer": json.loads(out.read_text())}


def bench_protocol(plan: Plan) -> dict:
    """CPU a message costs SessionMachine alone, without I/O: fed the D5/D7/D7/D6 frames
    load.py sends, each MessageReceived answered MessageAccepted, as the daemon does."""
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
            machine.receive_data(frame)
            while True:
                event = machine.next_event()
                if isinstance(event, MessageReceived):
                    machine.send(MessageAccepted())
                    received += 1
                elif not isinstance(event, SendData):
                    break  # NEED_DATA: the next frame
        return received

    if one_message() != 1:
        raise RuntimeError("SessionMachine did not take the benchmark's message")
    started = time.process_time()
    for _ in range(plan.protocol_messages):
        one_message()
    elapsed = time.process_time() - started
    return {"frames": len(requests), "message_us": 1e6 * elapsed / plan.protocol_messages}


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


# -- mailslot --------------------------------------------------------------------------


def bench_mailslot(
    work: Path,
    name: str,
    plan: Plan,
    rates: tuple[int, ...],
    seconds: float,
    mode: str = "mailslot",
) -> dict:
    """Direct mailslot datagrams (or with `mode` "rpc", NetrSendMessage calls) at paced
    `rates`, `seconds` each, to a receiver with its inbox; what it printed per rate, and per
    second of receive time."""
    with Receiver(work / name) as receiver:
        port = receiver.wait_ready().ports["datagram" if mode == "mailslot" else "rpc"]
        sent = run_load(
            "--port", str(port), "--tag", "dg", mode,
            "--rates", *map(str, rates),
            "--seconds", str(seconds), "--pause", str(plan.settle),
        )  # fmt: skip
        receiver.settle(plan.settle)
        kernel_drops = udp_drops(port)
        receiver.stop()
    by_tag: dict[str, list[float]] = {}
    for message in receiver.messages():
        tag = message["text"].split("-", 1)[0]
        when = datetime.datetime.fromisoformat(message["received_at"]).timestamp()
        by_tag.setdefault(tag, []).append(when)
    steps = []
    for step in sent["steps"]:
        times = sorted(by_tag.get(step["tag"], []))
        span = times[-1] - times[0] if len(times) > 1 else 0.0
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
    return {"steps": steps, "kernel_drops": kernel_drops, "inbox_refusals": receiver.refusals}


def udp_drops(port: int) -> int | None:
    """The kernel's drop counter of the UDP socket bound to 127.0.0.1:`port` (/proc/net/udp)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return int(fields[-1])
    return None


# -- the run ---------------------------------------------------------------------------


def machine() -> dict:
    """The facts a result depends on: the machine, its load, the software, the commit."""
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
        "commit": _git_commit(),
        "smbd": _smbd_version(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def _git_commit() -> str:
    def git(*arguments: str) -> str:
        result = subprocess.run(["git", *arguments], capture_output=True, text=True, cwd=REPO)
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + (" (with uncommitted changes)" if git("status", "--porcelain") else "")


def _smbd_version() -> str:
    path = shutil.which("smbd")
    if path is None:
        return "-"
    return subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()


def _median_round(rounds: list[dict]) -> dict:
    """The round of median rate (the lower middle one of an even count)."""
    ordered = sorted(rounds, key=lambda r: r["loaded"]["rate"])
    return ordered[(len(ordered) - 1) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about 30 s)")
    parser.add_argument("--no-smbd", action="store_true", help="skip the smbd reference")
    parser.add_argument("--profile", action="store_true", help="also sample with py-spy")
    parser.add_argument(
        "--wait-quiet",
        action="store_true",
        help="before each part, wait (at most 90 s) until other processes leave the CPUs idle",
    )
    parser.add_argument(
        "--save",
        action=argparse.BooleanOptionalAction,
        help="append the table to bench/results/<date>.md (default: full runs only)",
    )
    parser.add_argument("--note", help="a line to print (and save) with the results")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    results: dict = {
        "machine": machine(),
        "mode": "quick" if args.quick else "full",
        "options": [
            o for o in ("--wait-quiet", "--no-smbd") if getattr(args, o[2:].replace("-", "_"))
        ],
        "note": args.note,
    }
    # On disk, not tmpfs: the store's fsync must cost what it costs in a real data folder.
    work = Path(tempfile.mkdtemp(prefix="messengerd-bench-", dir="/var/tmp"))
    # smbd runs its message command as the guest account, which must reach its spool in here.
    work.chmod(0o755)
    began, ticks = time.perf_counter(), machine_ticks()

    def part(key: str, title: str, bench, *arguments) -> dict:
        if args.wait_quiet:
            wait_quiet()
        started = time.perf_counter()
        log(f"{title}...")
        before = CpuSample.take(os.getpid())
        result = bench(*arguments)
        if isinstance(result, dict):
            result.setdefault("machine_cpu", before.until(CpuSample.take(os.getpid())))
        results[key] = result
        log(f"{title}: {time.perf_counter() - started:.1f} s")
        return result

    try:
        part("start", "start to accepting", bench_start, work, plan)
        part("memory", "memory", bench_memory, work, plan)
        # Alternating rounds, the median of each reported: others' processes share this
        # machine, and a burst of theirs should not decide a comparison.
        kinds = ["store", "nostore"]
        smbd_missing = "--no-smbd" if args.no_smbd else None
        if smbd_missing is None:
            try:
                Smbd(work / "smbd-check")
            except SmbdUnavailable as exc:
                smbd_missing = str(exc)
            else:
                kinds.append("smbd")
        rounds: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for number in range(plan.rounds):
            for kind in kinds:
                name = f"{kind}{number}"
                title = f"sessions {kind} {number + 1}/{plan.rounds}"
                if kind == "smbd":
                    rounds[kind].append(part(name, title, bench_smbd, work, name, plan))
                else:
                    options = ("--no-store",) if kind == "nostore" else ()
                    rounds[kind].append(
                        part(name, title, bench_sessions, work, name, plan, *options)
                    )
                results.pop(name)
        results["sessions"] = {
            kind: {"median": _median_round(runs), "rounds": runs} for kind, runs in rounds.items()
        }
        if smbd_missing is not None:
            results["sessions"]["smbd"] = smbd_missing
        part("trace", "sessions, writer traced", bench_traced, work, plan)
        part("protocol", "session machine", bench_protocol, plan)
        part("fsync", "fsync", bench_fsync, work, plan)
        part(
            "mailslot", "mailslot", bench_mailslot, work, "mailslot", plan,
            plan.mailslot_rates, plan.mailslot_seconds,
        )  # fmt: skip
        part(
            "mailslot_sustained", "mailslot sustained", bench_mailslot, work,
            "mailslot-sustained", plan, (plan.sustained_rate,), plan.sustained_seconds,
        )  # fmt: skip
        part(
            "rpc", "rpc", bench_mailslot, work, "rpc", plan,
            plan.mailslot_rates, plan.mailslot_seconds, "rpc",
        )  # fmt: skip
        if args.profile:
            messages = 2 * plan.messages
            part("profile", "profile", bench_profile, work, "profile", messages)
            part("profile_gil", "profile, GIL", bench_profile, work, "profile-gil", messages, True)
    finally:
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.perf_counter() - began
    busy, steal = (b - a for a, b in zip(ticks, machine_ticks(), strict=True))
    span = results["seconds"] * os.sysconf("SC_CLK_TCK") / 100
    results["machine"]["busy_pct"], results["machine"]["steal_pct"] = busy / span, steal / span
    results["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    log(f"done in {results['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    table = report(results)
    print(table)
    if args.save if args.save is not None else not args.quick:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{results['machine']['date'][:10]}.md"
        with contextlib.ExitStack() as stack:
            new = not path.exists()
            out = stack.enter_context(open(path, "a", encoding="utf-8"))
            if new:
                out.write(f"# bench/run.py results, {results['machine']['date'][:10]}\n")
            out.write("\n" + table + "\n")
        log(f"appended to {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
