"""py-spy samples of a receiver under load, per thread and per function (run.py --profile)."""

from __future__ import annotations

import collections
import shutil
import subprocess
import time
from pathlib import Path

from processes import STOP_TIMEOUT, Receiver, run_load

ATTACH_SECONDS = 1.0
"""Time py-spy gets to attach before the load starts."""
RATE = 200
"""Samples a second."""
WRAPPERS = ("<frozen runpy>", "runners.py", "base_events.py", "events.py", "__main__.py")
"""Frames every event-loop sample passes through; left out of the inclusive list."""


def bench_profile(work: Path, name: str, messages: int, gil: bool = False) -> dict:
    """py-spy samples (`--threads`; idle samples left out) of a receiver with its inbox
    while load.py sends `messages` 16 at a time: each thread's share of the samples, and
    the top functions by self and by inclusive time. With `gil`, only the samples of the
    thread that holds the GIL (py-spy --gil): what the writer thread takes from the loop."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    raw = work / f"{name}.txt"
    with Receiver(work / name) as receiver:
        port = receiver.wait_ready().ports["session"]
        sampler = subprocess.Popen(
            [spy, "record", "--rate", str(RATE), "--format", "raw", "--threads",
             *(["--gil"] if gil else []), "--output", str(raw), "--pid", str(receiver.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(ATTACH_SECONDS)
        loaded = run_load(
            "--port", str(port), "--tag", name, "session", "--count", str(messages),
            "--warmup", "0", "--concurrency", "16",
        )  # fmt: skip
        receiver.stop()
        sampler.wait(STOP_TIMEOUT)
    result = summarize_profile(raw)
    result["loaded"] = loaded
    # Samples a busy thread would give in the timed part (the load's start-up is idle).
    result["possible"] = int(loaded["seconds"] * RATE)
    result["gil"] = gil
    return result


def summarize_profile(raw: Path, top: int = 10) -> dict:
    """Per-thread sample counts and self and inclusive shares of functions in py-spy's raw
    (collapsed stack) output."""
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.strip():
            continue
        weight = int(count)
        samples += weight
        thread, *frames = stack.split(";")
        thread = thread.split(": ", 1)[-1]
        threads[thread] += weight
        functions = [_function(frame) for frame in frames] or ["(no Python frame)"]
        own[f"{thread}: {functions[-1]}"] += weight
        for function in set(functions):
            total[function] += weight
    inclusive = [
        (f, 100 * n / samples)
        for f, n in total.most_common()
        if not f.endswith(tuple(f"({name})" for name in WRAPPERS))
        and not f.startswith(("main (cli.py)", "cmd_run (run.py)", "_bootstrap"))
    ]
    return {
        "samples": samples,
        "threads": dict(threads),
        "self": [(f, 100 * n / samples) for f, n in own.most_common(top)],
        "total": inclusive[:top],
    }


def _function(frame: str) -> str:
    """`name (path/file.py:line)` -> `name (file.py)`: one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rsplit(':', 1)[0]).name})" if where else name
