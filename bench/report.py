"""The results of bench/run.py as markdown: the issue's targets judged, then the figures."""

from __future__ import annotations

import statistics

TARGET_PROCESSES = 1
"""The receiver is one process (issue 11): no child process, idle or under load."""
TARGET_IDLE_RSS_MB = 35.0
"""Resident memory of an idle receiver, MiB (issue 11)."""
TARGET_SMBD_RATIO = 10.0
"""Durable session messages/s at least this many times smbd's in the same run (issue 11)."""
TARGET_P99_MS = 20.0
"""99th percentile latency of a durable session message, 16 senders at a time (issue 11)."""
NOISE_PCT = 30.0
"""Rest-of-machine CPU (% of one core) above which a round is flagged as disturbed."""
STEAL_PCT = 10.0
"""Steal (% of one core) above which a round is flagged as disturbed."""

KINDS = {
    "store": "messengerd, with its inbox (durable)",
    "nostore": "messengerd --no-store (the receive stack alone)",
    "smbd": "Samba smbd, `message command`",
}


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _ms(summary: dict, *keys: str) -> str:
    return " / ".join(f"{summary[key]:.2f}" for key in keys) if summary.get("count") else "-"


def report(results: dict) -> str:
    """The results as markdown: the run's facts, the targets, the figures, the details."""
    m = results["machine"]
    sessions = results.get("sessions", {})
    lines = [
        f"## Run {m['date']} ({results['mode']}"
        f"{', ' + ' '.join(results['options']) if results['options'] else ''})",
        "",
        f"{m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}, "
        f"SQLite {m['sqlite']}, {_samba(m['smbd'])}; messengerd "
        f"{m['messengerd']} at {m['commit']}. Load average {' '.join(m['loadavg'])} before, "
        f"{' '.join(m.get('loadavg_after', ['?']))} after; over the run's "
        f"{results.get('seconds', 0):.0f} s the machine was "
        f"{m.get('busy_pct', 0):.0f}% busy and the hypervisor stole {m.get('steal_pct', 0):.1f}% "
        "(of one core; 100% = one core).",
        "",
    ]
    if results.get("note"):
        lines += [f"Note: {results['note']}", ""]
    lines += _targets(results)
    lines += _sessions_table(sessions, results.get("trace"))
    lines += _cpu_table(sessions, results.get("trace"))
    lines += _other_rows(results)
    lines += _writer_table(results.get("trace"))
    lines += _disturbed(sessions, results.get("trace"))
    lines += _profile(results.get("profile"))
    lines += _profile(results.get("profile_gil"))
    return "\n".join(lines)


def _samba(version: str) -> str:
    return "no smbd" if version == "-" else "Samba " + version.removeprefix("Version ")


def _median(sessions: dict, kind: str) -> dict | None:
    entry = sessions.get(kind)
    return entry["median"] if isinstance(entry, dict) else None


def _p99s(sessions: dict, kind: str) -> list[float]:
    return [r["loaded"]["p99_ms"] for r in sessions[kind]["rounds"]]


def _targets(results: dict) -> list[str]:
    sessions = results.get("sessions", {})
    lines = ["| target (issue 11) | measured | |", "|---|---|---|"]
    memory = results.get("memory")
    rounds = [
        r for kind in ("store", "nostore") if kind in sessions for r in sessions[kind]["rounds"]
    ]
    if memory:
        idle = memory["idle"]
        under_load = max(
            (max(r["children"], r["loaded"].get("cpu", {}).get("children", 0)) for r in rounds),
            default=0,
        )
        threads = max((r.get("threads", 0) for r in rounds), default=0)
        processes = 1 + max(idle["children"], under_load)
        lines.append(
            f"| the receiver is one process | {processes} process: {idle['children']} child "
            f"processes idle, {under_load} at most during the session rounds; "
            f"{idle['threads']} threads idle{f', {threads} after load' if threads else ''} | "
            f"{verdict(processes == TARGET_PROCESSES)} |"
        )
        lines.append(
            f"| idle RSS at most {TARGET_IDLE_RSS_MB:.0f} MiB | {idle['rss']:.1f} MiB "
            f"(Pss {idle['pss']:.1f} MiB) | {verdict(idle['rss'] <= TARGET_IDLE_RSS_MB)} |"
        )
    stored, smbd = _median(sessions, "store"), _median(sessions, "smbd")
    if stored and smbd:
        ratio = stored["loaded"]["rate"] / smbd["loaded"]["rate"]
        lines.append(
            f"| durable session msgs/s at least {TARGET_SMBD_RATIO:.0f}x smbd's, same run | "
            f"{ratio:.1f}x ({stored['loaded']['rate']:.0f} vs {smbd['loaded']['rate']:.0f} "
            f"msgs/s, medians of {len(sessions['store']['rounds'])} alternating rounds) | "
            f"{verdict(ratio >= TARGET_SMBD_RATIO)} |"
        )
    elif stored:
        lines.append(
            f"| durable session msgs/s at least {TARGET_SMBD_RATIO:.0f}x smbd's, same run | "
            f"smbd not run: {sessions.get('smbd', '?')} | not judged |"
        )
    if stored:
        p99s = _p99s(sessions, "store")
        p99 = statistics.median(p99s)
        lines.append(
            f"| durable p99 at most {TARGET_P99_MS:.0f} ms, 16 senders at a time | "
            f"{p99:.1f} ms (median of the rounds' p99: "
            f"{', '.join(f'{v:.1f}' for v in p99s)}) | {verdict(p99 <= TARGET_P99_MS)} |"
        )
    return [*lines, ""]


def _sessions_table(sessions: dict, trace: dict | None) -> list[str]:
    lines = [
        "Session messages (fresh TCP connection, D5, two D7, D6; 200-byte text): 16 senders "
        "at a time, median round by rate; then one sender at a time on the same receiver.",
        "",
        "| receiver | msgs/s | rounds, msgs/s | p50 / p99 / max ms | one at a time: msgs/s, "
        "p50 ms | failed | acknowledged / printed / stored |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, label in KINDS.items():
        run = _median(sessions, kind)
        if run is None:
            if kind in sessions:
                lines.append(f"| {label} | not run: {sessions[kind]} | | | | | |")
            continue
        loaded, single = run["loaded"], run["single"]
        rates = ", ".join(f"{r['loaded']['rate']:.0f}" for r in sessions[kind]["rounds"])
        if kind == "smbd":
            counts = f"{run['acked']} / {run['delivered']} reached the message command"
        else:
            counts = " / ".join(str(run[k]) for k in ("acked", "printed", "stored") if k in run)
        lines.append(
            f"| {label} | **{loaded['rate']:.0f}** | {rates} | {loaded['p50_ms']:.1f} / "
            f"{loaded['p99_ms']:.1f} / {loaded['max_ms']:.1f} | {single['rate']:.0f}, "
            f"{single['p50_ms']:.1f} | {loaded['failed'] + single['failed']} | {counts} |"
        )
    if trace:
        loaded = trace["loaded"]
        lines.append(
            f"| messengerd with its inbox, writer timed (bench/traced.py), one round | "
            f"{loaded['rate']:.0f} | | {loaded['p50_ms']:.1f} / {loaded['p99_ms']:.1f} / "
            f"{loaded['max_ms']:.1f} | | {loaded['failed']} | |"
        )
    stored, bare = _median(sessions, "store"), _median(sessions, "nostore")
    if stored and bare:
        cost = 1 - stored["loaded"]["rate"] / bare["loaded"]["rate"]
        lines += [
            "",
            f"Durable storage costs {100 * cost:.0f}% of the receive stack's rate here "
            f"({stored['loaded']['rate']:.0f} vs {bare['loaded']['rate']:.0f} msgs/s).",
        ]
    return [*lines, ""]


def _cpu_table(sessions: dict, trace: dict | None) -> list[str]:
    lines = [
        "CPU during the 16-at-a-time part of the median round (% of one core; a message's "
        "CPU from the thread's ticks over the messages sent):",
        "",
        "| receiver | event loop (main thread) | other threads (the inbox writer) | loop µs "
        "a message | writer µs a message | senders | rest of the machine | steal | idle |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = [(KINDS[k], _median(sessions, k)) for k in KINDS if _median(sessions, k)]
    if trace:
        runs.append(("messengerd, writer timed", trace))
    for label, run in runs:
        loaded = run["loaded"]
        cpu = loaded.get("cpu")
        if not cpu:
            continue
        senders = 100 * loaded["client_cpu_seconds"] / loaded["seconds"]
        idle = 200 - cpu["machine_pct"]
        if label == KINDS["smbd"]:
            smbd = cpu["machine_pct"] - senders
            lines.append(
                f"| {label} | smbd and its children: {smbd:.0f}% (a process a connection, "
                f"a shell a message) | | | | {senders:.0f}% | | {cpu['steal_pct']:.0f}% | "
                f"{idle:.0f}% |"
            )
            continue
        rest = _rest(cpu, senders)
        per_message = 1e6 * cpu["seconds"] / max(1, loaded["sent"]) / 100
        lines.append(
            f"| {label} | {cpu['main_pct']:.0f}% | {cpu['others_pct']:.0f}% | "
            f"{cpu['main_pct'] * per_message:.0f} | {cpu['others_pct'] * per_message:.0f} | "
            f"{senders:.0f}% | {rest:.0f}% | {cpu['steal_pct']:.0f}% | {idle:.0f}% |"
        )
    return [*lines, ""]


def _rest(cpu: dict, senders: float) -> float:
    """What the rest of the machine used: all but the receiver (and any child of it) and
    the senders."""
    return cpu["machine_pct"] - cpu["main_pct"] - cpu["others_pct"] - cpu["children_pct"] - senders


def _other_rows(results: dict) -> list[str]:
    lines = ["| measure | value |", "|---|---|"]
    start = results.get("start")
    if start:
        for key, label in (("ready_s", "the ready line"), ("first_s", "first message accepted")):
            values = start[key]
            lines.append(
                f"| start to {label} (median of {len(values)}) | "
                f"{1000 * statistics.median(values):.0f} ms (each: "
                f"{', '.join(f'{1000 * s:.0f}' for s in values)}) |"
            )
        lines.append(
            f"| of which Python start and `import messengerd.cli` / name registration's wait | "
            f"{1000 * start['imports_s']:.0f} ms / {1000 * start['registration_s']:.0f} ms |"
        )
    memory = results.get("memory")
    if memory:
        idle, busy = memory["idle"], memory["with_sessions"]
        lines.append(
            f"| receiver idle: RSS, Pss, threads, child processes | {idle['rss']:.1f} MiB, "
            f"{idle['pss']:.1f} MiB, {idle['threads']}, {idle['children']} |"
        )
        failures = memory["session_failures"] or "none"
        lines.append(
            f"| RSS with {memory['sessions']} idle sessions | {busy['rss']:.1f} MiB "
            f"(+{memory['per_session_kb']:.1f} KiB a session; {memory['fds']} fds; "
            f"failures {failures}) |"
        )
    sessions = results.get("sessions", {})
    stored = _median(sessions, "store")
    if stored:
        lines.append(
            f"| peak RSS after a session round, with inbox | {stored['peak_mb']:.1f} MiB |"
        )
    for key, what in (("mailslot", "mailslot datagrams"), ("rpc", "RPC NetrSendMessage calls")):
        paced = results.get(key)
        if not paced:
            continue
        best = max(
            (step for step in paced["steps"] if step["loss_pct"] < 1.0),
            key=lambda step: step["rate"],
            default=None,
        )
        steps = "; ".join(
            f"{s['offered']}/s: {s['received']} of {s['sent']} ({s['loss_pct']:.1f}% lost)"
            for s in paced["steps"]
        )
        best_text = f"{best['rate']:.0f} msgs/s" if best else "none under 1% loss"
        lines.append(
            f"| {what} with inbox, best rate under 1% loss | {best_text} ({steps}; "
            f"kernel drops {paced['kernel_drops']}, inbox refusals "
            f"{paced['inbox_refusals']}) |"
        )
    sustained = results.get("mailslot_sustained")
    if sustained:
        step = sustained["steps"][0]
        lines.append(
            f"| mailslot {step['offered']}/s for {step['seconds']:.0f} s, with inbox | "
            f"{step['received']} of {step['sent']} stored ({step['loss_pct']:.1f}% lost; "
            f"kernel drops {sustained['kernel_drops']}, inbox refusals "
            f"{sustained['inbox_refusals']}) |"
        )
    protocol = results.get("protocol")
    if protocol:
        lines.append(
            f"| SessionMachine alone (no I/O), CPU a message | {protocol['message_us']:.0f} µs "
            f"({protocol['frames']} frames in, 4 replies out) |"
        )
    fsync = results.get("fsync")
    if fsync:
        lines.append(
            f"| fsync of 4 KiB in the work folder's file system | median {fsync['median_ms']:.2f}"
            f" ms, p90 {fsync['p90_ms']:.2f} ms |"
        )
    return [*lines, ""]


def _writer_table(trace: dict | None) -> list[str]:
    if not trace:
        return []
    w = trace["writer"]
    batch = w["batch_size"]
    keys = ("p50", "p90", "p99", "max")
    return [
        f"The inbox writer under the 16-at-a-time load (bench/traced.py; {w['batches']} "
        f"transactions, {batch.get('mean', 0):.1f} messages each on average; ms, "
        "p50 / p90 / p99 / max):",
        "",
        "| step | ms |",
        "|---|---|",
        f"| messages in a transaction (count, not ms) | {_ms(batch, *keys)} |",
        f"| queue: submit() on the loop until the writer takes it | {_ms(w['queue_ms'], *keys)} |",
        f"| commit: the transaction, wall time | {_ms(w['commit_ms'], *keys)} |",
        f"| commit: the writer thread's CPU time | {_ms(w['commit_cpu_ms'], *keys)} |",
        f"| hand-back: end of COMMIT until the loop answers the futures "
        f"| {_ms(w['hand_back_ms'], *keys)} |",
        f"| store: submit() until answered (the three) | {_ms(w['store_ms'], *keys)} |",
        "",
    ]


def _disturbed(sessions: dict, trace: dict | None) -> list[str]:
    runs = [
        (f"{kind} round {number}", run)
        for kind in ("store", "nostore")
        if isinstance(sessions.get(kind), dict)
        for number, run in enumerate(sessions[kind]["rounds"], 1)
    ]
    if trace:
        runs.append(("the traced round", trace))
    noisy = []
    for label, run in runs:
        loaded, cpu = run["loaded"], run["loaded"].get("cpu")
        if not cpu:
            continue
        rest = _rest(cpu, 100 * loaded["client_cpu_seconds"] / loaded["seconds"])
        if rest > NOISE_PCT or cpu["steal_pct"] > STEAL_PCT:
            noisy.append(f"{label} (others {rest:.0f}%, steal {cpu['steal_pct']:.0f}%)")
    if not noisy:
        return []
    return [
        f"**Disturbed**: other processes or the hypervisor took CPU during {', '.join(noisy)} "
        "(% of one core): the medians are less so; rerun when the machine is quiet.",
        "",
    ]


def _profile(profile: dict | None) -> list[str]:
    if not profile:
        return []
    if "skipped" in profile:
        return [f"Profile: skipped, {profile['skipped']}.", ""]
    threads = ", ".join(
        f"{name} {n} ({100 * n / profile['possible']:.0f}% of the time)"
        for name, n in sorted(profile["threads"].items(), key=lambda item: -item[1])
    )
    kind = "only the thread holding the GIL (--gil)" if profile["gil"] else "idle samples left out"
    lines = [
        f"py-spy --threads, 200 samples/s, {kind}, during "
        f"{profile['loaded']['sent']} messages at {profile['loaded']['rate']:.0f} msgs/s: "
        f"samples by thread: {threads}.",
        "",
        "Self time:",
        "",
    ]
    lines += [f"- {share:.1f}% {function}" for function, share in profile["self"]]
    lines += ["", "Inclusive time:", ""]
    lines += [f"- {share:.1f}% {function}" for function, share in profile["total"]]
    return [*lines, ""]
