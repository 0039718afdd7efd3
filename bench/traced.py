"""`messengerd run` with its inbox writer timed: where a durable message's wait goes.

`python bench/traced.py OUT.json run ...` runs the real `messengerd` command (the same
daemon, writer thread and SQLite settings) with timers wrapped around three of the writer's
steps, and writes what they saw to OUT.json when the daemon stops:

- queue: from `StoreWriter.submit()` on the event loop until the writer thread takes the
  message into a batch;
- commit: the batch's transaction (BEGIN IMMEDIATE, the inserts, COMMIT with
  synchronous=FULL), wall time and the writer thread's CPU time, and the batch's size;
- hand-back: from the end of the transaction until the loop runs the callback that answers
  the batch's futures (sent with one `call_soon_threadsafe`): the writer thread getting the
  GIL back after COMMIT, then the loop finishing what it was doing;
- store: from submit() until the future is answered on the loop (the three above).

The wrappers take a few microseconds a message; bench/run.py reports the traced receiver's
rate beside the untraced ones so that the difference shows.
"""

from __future__ import annotations

import atexit
import json
import statistics
import sys
import time
from pathlib import Path

from messengerd import cli
from messengerd.core.store import writer

_submitted: dict[int, float] = {}
"""id(future) -> when submit() queued it (perf_counter)."""
_committed: dict[int, float] = {}
"""id(future) -> when its batch's transaction ended (perf_counter)."""
_queue_ms: list[float] = []
_commit_ms: list[float] = []
_commit_cpu_ms: list[float] = []
_batch_sizes: list[int] = []
_hand_back_ms: list[float] = []
_store_ms: list[float] = []


def _traced_submit(original):
    def submit(self, message, future):
        _submitted[id(future)] = time.perf_counter()
        return original(self, message, future)

    return submit


def _traced_commit(original):
    def commit(self, conn, batch):
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(self, conn, batch)
        finally:
            ended = time.perf_counter()
            _commit_ms.append(1000 * (ended - started))
            _commit_cpu_ms.append(1000 * (time.thread_time() - cpu))
            _batch_sizes.append(len(batch))
            for write in batch:
                queued = _submitted.get(id(write.future))
                if queued is not None:
                    _queue_ms.append(1000 * (started - queued))
                _committed[id(write.future)] = ended

    return commit


def _traced_settle_all(original):
    def settle_all(answers):
        now = time.perf_counter()
        committed = [_committed.pop(id(future), None) for future, _ in answers]
        if committed[0] is not None:
            _hand_back_ms.append(1000 * (now - committed[0]))
        for future, _ in answers:
            queued = _submitted.pop(id(future), None)
            if queued is not None:
                _store_ms.append(1000 * (now - queued))
        return original(answers)

    return settle_all


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(percent: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]

    return {
        "count": len(ordered),
        "mean": statistics.fmean(ordered),
        "p50": at(50),
        "p90": at(90),
        "p99": at(99),
        "max": ordered[-1],
    }


def _write(path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "batches": len(_batch_sizes),
                "batch_size": _summary([float(n) for n in _batch_sizes]),
                "queue_ms": _summary(_queue_ms),
                "commit_ms": _summary(_commit_ms),
                "commit_cpu_ms": _summary(_commit_cpu_ms),
                "hand_back_ms": _summary(_hand_back_ms),
                "store_ms": _summary(_store_ms),
            }
        )
    )


def main() -> int:
    out = Path(sys.argv[1])
    writer._settle_all = _traced_settle_all(writer._settle_all)
    writer.StoreWriter.submit = _traced_submit(writer.StoreWriter.submit)
    writer.StoreWriter._commit = _traced_commit(writer.StoreWriter._commit)
    atexit.register(_write, out)
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
