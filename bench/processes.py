"""Receivers and load generators as processes, and what /proc says about them (bench/)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))  # tests.daemon_process, when run as `python bench/run.py`

from tests.daemon_process import READY, ready_ports  # noqa: E402

LOOPBACK = "127.0.0.1"
BROADCAST = "127.255.255.255"
ALIAS = "BOB"
START_TIMEOUT = 30.0
"""Seconds a receiver may take to print its ready line."""
STOP_TIMEOUT = 20.0
"""Seconds a receiver gets after SIGINT (it commits what is queued) before SIGKILL."""
SETTLE_SECONDS = 1.0
"""Quiet time after which a receiver's output is taken as complete (--quick: a third)."""
SETTLE_TIMEOUT = 30.0
"""Longest wait for a receiver's output to go quiet."""
CHILD_FILES = 4096
"""Soft RLIMIT_NOFILE given to receivers: 1,000 idle sessions plus room (MAX_SESSIONS 2048)."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
QUIET_BUSY_PCT = 20.0
"""--wait-quiet: a part starts once the machine uses less than this (% of one core) for 1 s."""
QUIET_TIMEOUT = 90.0
"""--wait-quiet: the longest wait before a part; it then starts anyway."""
TCP_LISTEN = "0A"
"""The state column of a listening socket in /proc/net/tcp (TCP_LISTEN in the kernel)."""


def log(text: str) -> None:
    """A progress line on stderr (stdout carries the results)."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: rest.strip() for key, _, rest in (line.partition(":") for line in lines)}


def _kib_to_mib(value: str) -> float:
    return int(value.split()[0]) / 1024


def children(pid: int) -> list[int]:
    """Every process `pid` started, and theirs (/proc/PID/task/TID/children, proc(5))."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *children(int(child))]
    return found


def pss_mb(pid: int) -> float:
    """Pss of `pid` in MiB (/proc/PID/smaps_rollup): its private pages and its share of the
    pages it shares with other processes (the Python runtime's, with the load generator)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no Pss for process {pid}")


def memory(pid: int) -> dict[str, float]:
    """A receiver's memory and shape: RSS, peak RSS, Pss, threads, and child processes
    (messengerd has none; the RSS of any would be counted here)."""
    status = _status(pid)
    kids = children(pid)
    return {
        "rss": _kib_to_mib(status["VmRSS"]),
        "peak": _kib_to_mib(status["VmHWM"]),
        "pss": pss_mb(pid),
        "threads": int(status["Threads"]),
        "children": len(kids),
        "children_rss": sum(_kib_to_mib(_status(kid)["VmRSS"]) for kid in kids),
    }


def _stat_fields(path: Path) -> list[str]:
    # The fields after the parenthesised command: state ppid pgrp ... (proc(5)).
    return path.read_text().rsplit(")", 1)[1].split()


def _stat_ticks(path: Path) -> int:
    fields = _stat_fields(path)
    return int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)


def _switches(path: Path) -> tuple[int, int]:
    """Voluntary and involuntary context switches of a task (/proc/.../status)."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            values[key] = int(rest)
    return values["voluntary_ctxt_switches"], values["nonvoluntary_ctxt_switches"]


def machine_ticks() -> tuple[int, int]:
    """Busy and steal ticks of all CPUs (/proc/stat's first line; proc(5)): busy is all but
    idle and iowait; steal is the time the hypervisor gave our virtual CPUs to others."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4], fields[7]


@dataclass(frozen=True)
class CpuSample:
    """CPU ticks of the whole machine (busy, steal), of one process's main thread and of
    its other threads, its context switches, and its child processes and their ticks."""

    when: float
    machine_busy: int
    steal: int
    main: int
    others: int
    switches: tuple[int, int]
    children: dict[int, int]

    @classmethod
    def take(cls, pid: int) -> CpuSample:
        main = others = voluntary = involuntary = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                ticks = _stat_ticks(task / "stat")
                by_choice, forced = _switches(task / "status")
                voluntary, involuntary = voluntary + by_choice, involuntary + forced
                if task.name == str(pid):
                    main = ticks
                else:
                    others += ticks
        busy, steal = machine_ticks()
        kids = {}
        for kid in children(pid):
            with contextlib.suppress(OSError):
                kids[kid] = _stat_ticks(Path(f"/proc/{kid}/stat"))
        return cls(time.perf_counter(), busy, steal, main, others, (voluntary, involuntary), kids)

    def until(self, later: CpuSample) -> dict[str, float]:
        """Percent of one core used in between (200% = 2 cores), and switches a second."""
        seconds = later.when - self.when
        span = seconds * CLOCK_TICKS / 100
        return {
            "seconds": seconds,
            "machine_pct": (later.machine_busy - self.machine_busy) / span,
            "steal_pct": (later.steal - self.steal) / span,
            "main_pct": (later.main - self.main) / span,
            "others_pct": (later.others - self.others) / span,
            "main_ticks": later.main - self.main,
            "voluntary_per_s": (later.switches[0] - self.switches[0]) / seconds,
            "involuntary_per_s": (later.switches[1] - self.switches[1]) / seconds,
            "children": max(len(self.children), len(later.children)),
            "children_pct": sum(
                ticks - self.children.get(kid, 0) for kid, ticks in later.children.items()
            )
            / span,
        }


def _child_limits() -> None:
    """In the receiver before exec: room for 1,000+ sockets (RLIMIT_NOFILE, soft only)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CHILD_FILES if hard == resource.RLIM_INFINITY else min(CHILD_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Receiver:
    """`python -m messengerd run --json` on free loopback ports, stdout to a file.

    The constructor starts it and returns at once; `wait_ready()` waits for its ready line.
    """

    def __init__(
        self, folder: Path, *options: str, program: tuple[str, ...] = (), rpc: bool = True
    ) -> None:
        """`program`: what runs in place of `python -m messengerd` (its arguments follow);
        `rpc`: False for a build older than the RPC listener (no --rpc-port option)."""
        folder.mkdir(parents=True)
        self.data_dir = folder / "data"
        self.output = folder / "stdout.jsonl"
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self.refusals = 0
        self.ports: dict[str, int] = {}
        self.ready_seconds = 0.0
        self._ready = threading.Event()
        command = [
            *(program or (sys.executable, "-m", "messengerd")), "run", "--json",
            "--bind", LOOPBACK, "--broadcast", BROADCAST,
            "--name-port", "0", "--datagram-port", "0", "--session-port", "0",
            *(("--rpc-port", "0") if rpc else ()),
            "--alias", ALIAS, "--data-dir", str(self.data_dir), *options,
        ]  # fmt: skip
        # No settings file of the user's: the default path points into our folder, empty.
        env = dict(os.environ, XDG_CONFIG_HOME=str(folder / "config"))
        self.started = time.perf_counter()
        with open(self.output, "wb") as stdout:
            # stdout goes to a file: the receiver never blocks on it, and nobody parses it live.
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
                env=env,
                preexec_fn=_child_limits,
            )
        self.pid = self.process.pid
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))
            self.refusals += "refused a message" in line
            match = READY.search(line)
            if match and not self._ready.is_set():
                self.ports = ready_ports(match)
                self.ready_seconds = time.perf_counter() - self.started
                self._ready.set()
        self._ready.set()

    def wait_ready(self) -> Receiver:
        """Wait for the ready line (RuntimeError, with the log, if it never comes)."""
        self._ready.wait(START_TIMEOUT)
        if not self.ports:
            self.stop()
            raise RuntimeError("messengerd did not start:\n" + "\n".join(self.log))
        return self

    def session_port(self) -> int | None:
        """The TCP port the receiver listens on, found before its ready line: the listening
        socket among its open files (/proc/PID/fd against /proc/net/tcp)."""
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{self.pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == TCP_LISTEN and fields[9] in inodes:
                return int(fields[1].rsplit(":", 1)[1], 16)
        return None

    def settle(self, quiet: float = SETTLE_SECONDS) -> None:
        """Wait until stdout has not grown for `quiet` seconds (the backlog is worked off)."""
        deadline = time.perf_counter() + SETTLE_TIMEOUT
        size, quiet_since = -1, time.perf_counter()
        while time.perf_counter() < deadline:
            now_size = self.output.stat().st_size
            if now_size != size:
                size, quiet_since = now_size, time.perf_counter()
            elif time.perf_counter() - quiet_since >= quiet:
                return
            time.sleep(0.1)

    def messages(self) -> list[dict]:
        """Every message the receiver printed."""
        with open(self.output, encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]

    def stop(self) -> int:
        """SIGINT, as Ctrl-C; SIGKILL after STOP_TIMEOUT."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_load(*arguments: str, watch: int | None = None) -> dict:
    """Run bench/load.py; with `watch`, that pid's CPU over the load's timed part too."""
    command = [sys.executable, str(BENCH / "load.py"), *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout is not None
    before = None
    result: dict = {}
    for line in process.stdout:
        message = json.loads(line)
        if message.get("event") == "timed":
            before = CpuSample.take(watch) if watch else None
        else:
            if before is not None and watch is not None:
                message["cpu"] = before.until(CpuSample.take(watch))
            result = message
    if process.wait() != 0:
        raise RuntimeError(f"load.py failed: {' '.join(arguments)}")
    return result


def machine_busy_pct(seconds: float = 1.0) -> float:
    """CPU the whole machine used over `seconds`, in % of one core (200% = 2 cores busy)."""
    before, _ = machine_ticks()
    time.sleep(seconds)
    return (machine_ticks()[0] - before) / (seconds * CLOCK_TICKS / 100)


def wait_quiet() -> None:
    """Wait until other processes leave the CPUs (nearly) idle, at most QUIET_TIMEOUT."""
    deadline = time.perf_counter() + QUIET_TIMEOUT
    while (busy := machine_busy_pct()) >= QUIET_BUSY_PCT:
        if time.perf_counter() > deadline:
            log(f"machine still {busy:.0f}% busy; going on")
            break
        log(f"machine {busy:.0f}% busy; waiting")
