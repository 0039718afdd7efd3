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

from tests.daemon_process import READY  # noqa: E402

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
"""--wait-quiet: a phase starts once the machine uses less than this (% of one core) for 1 s."""
QUIET_TIMEOUT = 90.0
"""--wait-quiet: the longest wait before a phase; it then starts anyway."""


def log(text: str) -> None:
    """A progress line on stderr (stdout carries the results)."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak) of `pid` in MiB, from /proc/PID/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def children(pid: int) -> list[int]:
    """Every process `pid` started, and theirs (/proc/PID/task/TID/children, proc(5))."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *children(int(child))]
    return found


def pss_mb(pid: int) -> float:
    """Pss of `pid` in MiB (/proc/PID/smaps_rollup): its private pages, and its share of
    the pages it shares, so that the Pss of two processes adds up to what both take."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no Pss for process {pid}")


def memory(pid: int) -> dict[str, float]:
    """The receiver's memory: its own RSS, its child processes' (the inbox writer), and the
    Pss of them all together."""
    kids = children(pid)
    rss, peak = rss_mb(pid)
    return {
        "rss": rss,
        "peak": peak,
        "children_rss": sum(rss_mb(kid)[0] for kid in kids),
        "children": len(kids),
        "pss_total": pss_mb(pid) + sum(pss_mb(kid) for kid in kids),
    }


def _stat_ticks(path: Path) -> int:
    fields = path.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)


def _machine_busy_ticks() -> int:
    """Busy ticks of all CPUs: /proc/stat's first line less idle and iowait (proc(5))."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]


@dataclass(frozen=True)
class CpuSample:
    """CPU ticks of the whole machine, of one process's main thread and other threads, and
    of the processes it started (the inbox writer)."""

    when: float
    machine_busy: int
    main: int
    others: int
    children: dict[int, int]

    @classmethod
    def take(cls, pid: int) -> CpuSample:
        main = others = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                ticks = _stat_ticks(task / "stat")
                if task.name == str(pid):
                    main = ticks
                else:
                    others += ticks
        kids = {}
        for kid in children(pid):
            with contextlib.suppress(OSError):
                kids[kid] = _stat_ticks(Path(f"/proc/{kid}/stat"))
        return cls(time.perf_counter(), _machine_busy_ticks(), main, others, kids)

    def until(self, later: CpuSample) -> dict[str, float]:
        """Percent of one core used in between: machine (of 200% on 2 cores), main, others."""
        span = (later.when - self.when) * CLOCK_TICKS / 100
        return {
            "machine_pct": (later.machine_busy - self.machine_busy) / span,
            "main_pct": (later.main - self.main) / span,
            "others_pct": (later.others - self.others) / span,
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
    """`python -m messengerd run --json` on free loopback ports, stdout to a file."""

    def __init__(self, folder: Path, *options: str, program: tuple[str, ...] = ()) -> None:
        """`program`: what runs in place of `python -m messengerd` (its arguments follow)."""
        folder.mkdir(parents=True)
        self.data_dir = folder / "data"
        self.output = folder / "stdout.jsonl"
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self.refusals = 0
        command = [
            *(program or (sys.executable, "-m", "messengerd")), "run", "--json",
            "--bind", LOOPBACK, "--broadcast", BROADCAST,
            "--name-port", "0", "--datagram-port", "0", "--session-port", "0", "--rpc-port", "0",
            "--alias", ALIAS, "--data-dir", str(self.data_dir), *options,
        ]  # fmt: skip
        ready = threading.Event()
        self.ports: dict[str, int] = {}
        started = time.perf_counter()
        # No settings file of the user's: the default path points into our folder, empty.
        env = dict(os.environ, XDG_CONFIG_HOME=str(folder / "config"))
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

        def read_stderr() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.log.append(line.rstrip("\n"))
                self.refusals += "refused a message" in line
                match = READY.search(line)
                if match and not ready.is_set():
                    self.ports = {k: int(match[k]) for k in ("name", "datagram", "session")}
                    self.ready_seconds = time.perf_counter() - started
                    ready.set()
            ready.set()

        threading.Thread(target=read_stderr, daemon=True).start()
        ready.wait(START_TIMEOUT)
        if not self.ports:
            self.stop()
            raise RuntimeError("messengerd did not start:\n" + "\n".join(self.log))
        self.pid = self.process.pid

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
    before = _machine_busy_ticks()
    time.sleep(seconds)
    return (_machine_busy_ticks() - before) / (seconds * CLOCK_TICKS / 100)


def wait_quiet() -> None:
    """Wait until other processes leave the CPUs (nearly) idle, at most QUIET_TIMEOUT."""
    deadline = time.perf_counter() + QUIET_TIMEOUT
    while (busy := machine_busy_pct()) >= QUIET_BUSY_PCT:
        if time.perf_counter() > deadline:
            log(f"machine still {busy:.0f}% busy; going on")
            break
        log(f"machine {busy:.0f}% busy; waiting")
