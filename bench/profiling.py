"""py-spy samples of a receiver under load, summed per function (bench/run.py --profile)."""

from __future__ import annotations

import collections
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from processes import STOP_TIMEOUT, Receiver, run_load

ATTACH_SECONDS = 1.0
"""Time py-spy gets to attach before the load starts."""


def bench_profile(
    work: Path, name: str, load_arguments: Callable[[int], list[str]], *options: str
) -> dict:
    """py-spy samples of a receiver while load.py runs with `load_arguments(session port)`:
    the top functions by self and by inclusive time."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    with Receiver(work / name, *options) as receiver:
        raw = work / f"{name}.txt"
        sampler = subprocess.Popen(
            [spy, "record", "--rate", "100", "--format", "raw",
             "--output", str(raw), "--pid", str(receiver.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(ATTACH_SECONDS)
        run_load(*load_arguments(receiver.ports["session"]))
        receiver.stop()
        sampler.wait(STOP_TIMEOUT)
    return summarize_profile(raw)


WRAPPERS = ("<frozen runpy>", "runners.py", "base_events.py", "events.py", "__main__.py")
"""Frames every event-loop sample passes through; left out of the inclusive list."""


def summarize_profile(raw: Path, top: int = 12) -> dict:
    """Self and inclusive shares of functions in py-spy's raw (collapsed stack) output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.strip():
            continue
        weight = int(count)
        samples += weight
        frames = [_function(frame) for frame in stack.split(";")]
        own[frames[-1]] += weight
        for function in set(frames):
            total[function] += weight
    inclusive = [
        (f, 100 * n / samples)
        for f, n in total.most_common()
        if not f.endswith(tuple(f"({name})" for name in WRAPPERS))
        and not f.startswith(("main (cli.py)", "cmd_run (run.py)"))
    ]
    return {
        "samples": samples,
        "self": [(f, 100 * n / samples) for f, n in own.most_common(top)],
        "total": inclusive[: top * 2],
    }


def _function(frame: str) -> str:
    """`name (path/file.py:line)` -> `name (file.py)`: one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rsplit(':', 1)[0]).name})" if where else name
