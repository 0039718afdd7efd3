"""Two builds of the receiver under the same session load, in alternating rounds.

`python bench/ab.py COMMIT [--rounds N] [--wait-quiet]` unpacks COMMIT (`git archive`) into
the work folder and runs its `messengerd run` against this checkout's, with the inbox and
`--no-store`, round after round (each on a fresh receiver, 16 senders at a time, as
bench/run.py), then prints each's median rate, p50/p99, the CPU a message of the event loop,
of its other threads and of its child processes, and its RSS after the load. It answers
"what did this change cost": e.g. the writer process (1831f91) against the writer thread.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from processes import REPO, Receiver, log, memory, run_load, wait_quiet
from run import FULL, session_arguments


def unpack(commit: str, folder: Path) -> Path:
    """COMMIT's tree in `folder` (read from the repository; nothing in it changes)."""
    folder.mkdir()
    archive = subprocess.run(
        ["git", "archive", commit], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def program(tree: Path) -> tuple[str, ...]:
    """`python -m messengerd` from `tree`: -m takes the package from the working directory."""
    shell = 'cd "$1" && shift && exec "$0" -m messengerd "$@"'
    return ("env", f"PYTHONPATH={tree}", "sh", "-c", shell, sys.executable, str(tree))


def one_round(work: Path, name: str, tree: Path, *options: str) -> dict:
    # A build from before the RPC listener has no --rpc-port (and opens no port 135).
    rpc = any("--rpc-port" in f.read_text() for f in (tree / "messengerd").rglob("*.py"))
    with Receiver(work / name, *options, program=program(tree), rpc=rpc) as receiver:
        port = receiver.wait_ready().ports["session"]
        loaded = run_load(*session_arguments(port, name, FULL), watch=receiver.pid)
        after = memory(receiver.pid)
    cpu = loaded["cpu"]
    per_message = 1e4 * cpu["seconds"] / max(1, loaded["sent"])  # µs a message per 1% of a core
    return {
        "rate": loaded["rate"],
        "p50": loaded["p50_ms"],
        "p99": loaded["p99_ms"],
        "loop_us": cpu["main_pct"] * per_message,
        "threads_us": cpu["others_pct"] * per_message,
        "children_us": cpu["children_pct"] * per_message,
        "rss": after["rss"] + after["children_rss"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("commit", help="the build to compare this checkout with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wait-quiet", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="messengerd-ab-", dir="/var/tmp"))
    try:
        trees = {args.commit: unpack(args.commit, work / "tree"), "this checkout": REPO}
        runs: dict[str, list[dict]] = {}
        made = 0
        for number in range(args.rounds):
            for label, tree in trees.items():
                for options in ((), ("--no-store",)):
                    key = f"{label}, {'--no-store' if options else 'with inbox'}"
                    if args.wait_quiet:
                        wait_quiet()
                    made += 1
                    runs.setdefault(key, []).append(one_round(work, f"r{made}", tree, *options))
                    log(f"{key}, round {number + 1}: {runs[key][-1]['rate']:.0f} msgs/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        "| build | msgs/s (median) | rounds | p50 / p99 ms | loop µs a message | other "
        "threads µs | child processes µs | RSS MiB (with children) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, rounds in runs.items():

        def median(field: str, rounds: list[dict] = rounds) -> float:
            return statistics.median(r[field] for r in rounds)

        rates = ", ".join(f"{r['rate']:.0f}" for r in rounds)
        print(
            f"| {key} | {median('rate'):.0f} | {rates} "
            f"| {median('p50'):.1f} / {median('p99'):.1f} | {median('loop_us'):.0f} | "
            f"{median('threads_us'):.0f} | {median('children_us'):.0f} | {median('rss'):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
