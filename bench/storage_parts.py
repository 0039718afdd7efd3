"""What each part of storing a message costs: `python bench/storage_parts.py [--rounds N]`.

bench/run.py's session load (16 senders at a time, D5/D7/D6, 200 bytes) against four
receivers, in alternating rounds, each on a fresh receiver:

- durable: messengerd as it is (its writer process commits with synchronous=FULL);
- unsynced: the same, its writer committing without fdatasync (bench/writer_variants.py);
- answering: the same, its writer answering every request at once and storing nothing;
- no store: `--no-store`.

Their differences split the throughput storage costs into the round trip to the writer
process, SQLite's work, and the fdatasync that makes a message durable. The variants lose
messages on a crash and are not messengerd; they exist to be measured. Prints a markdown
table; bench/README.md records a run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import writer_variants
from processes import Receiver, log, run_load, wait_quiet
from run import FULL, session_arguments


def program(name: str) -> tuple[str, ...]:
    """What runs as the receiver `name`: messengerd, or it with a writer variant."""
    if name in writer_variants.VARIANTS:
        return (sys.executable, str(Path(writer_variants.__file__).resolve()), "daemon", name)
    return ()


def options(name: str) -> tuple[str, ...]:
    return ("--no-store",) if name == "no store" else ()


def one_round(work: Path, name: str, number: int) -> dict:
    """16 at a time against a fresh receiver `name`: rate, latencies, CPU."""
    folder = work / f"{name.replace(' ', '-')}{number}"
    with Receiver(folder, *options(name), program=program(name)) as receiver:
        port = receiver.ports["session"]
        result = run_load(*session_arguments(port, folder.name, FULL), watch=receiver.pid)
        receiver.stop()
    return result


def report(results: dict[str, list[dict]]) -> str:
    baseline = statistics.median(run["rate"] for run in results["no store"])
    lines = [
        "| receiver | msgs/s (median round) | rounds | p50 / p99 ms (medians) | cost vs no store |",
        "|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        rate = statistics.median(run["rate"] for run in runs)
        p50 = statistics.median(run["p50_ms"] for run in runs)
        p99 = statistics.median(run["p99_ms"] for run in runs)
        rounds = ", ".join(f"{run['rate']:.0f}" for run in runs)
        cost = "" if name == "no store" else f"{1 - rate / baseline:.0%}"
        lines.append(f"| {name} | {rate:.0f} | {rounds} | {p50:.1f} / {p99:.1f} | {cost} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each receiver")
    parser.add_argument(
        "--wait-quiet", action="store_true", help="wait for idle CPUs before each round"
    )
    args = parser.parse_args()
    names = ("durable", *writer_variants.VARIANTS, "no store")
    results: dict[str, list[dict]] = {name: [] for name in names}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="messengerd-parts-", dir="/var/tmp") as work:
        for number in range(args.rounds):
            for name, runs in results.items():
                if args.wait_quiet:
                    wait_quiet()
                runs.append(one_round(Path(work), name, number))
                log(f"{name} {number + 1}/{args.rounds}: {runs[-1]['rate']:.0f} msgs/s")
    log(f"done in {time.perf_counter() - began:.0f} s")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
