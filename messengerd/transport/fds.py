"""The open-file limit (RLIMIT_NOFILE) and how many sessions fit in it.

Every session is a socket, so at the common soft limit of 1,024 open files MAX_SESSIONS
(2,048) cannot be reached: accept() fails with EMFILE long before. At start the soft limit
is raised as far as the hard limit allows, up to what the daemon can use, and the session
limit is sized to what is then available, FD_RESERVE kept for everything else.

Where there is no such limit (Windows: no resource module) nothing changes.
"""

from __future__ import annotations

import logging
import sys

from messengerd.core.limits import FD_RESERVE, MAX_SESSIONS, MIN_SESSIONS

log = logging.getLogger(__name__)

OPEN_FILES_WANTED = MAX_SESSIONS + FD_RESERVE
"""Open files the daemon can use at most. The soft limit is raised to this, not to the hard
limit itself (often 524,288 or more): the message commands it starts inherit the soft
limit, and programs that walk every possible descriptor, or still use select(), suffer
from a huge one (systemd.exec(5), LimitNOFILE)."""


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> int | None:
    """Raise the soft RLIMIT_NOFILE towards `wanted`, as far as the hard limit allows; the
    soft limit now, or None where there is none (Windows)."""
    if sys.platform == "win32":
        return None
    import resource  # POSIX only

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return None if soft == resource.RLIM_INFINITY else soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.debug("open-file limit stays at %d: %s", soft, exc)
            return soft
        log.debug("open-file limit raised from %d to %d", soft, target)
        return target
    return soft


def session_limit(open_files: int | None, most: int = MAX_SESSIONS) -> int:
    """Sessions that fit `open_files` with FD_RESERVE kept for the rest, at most `most`,
    at least MIN_SESSIONS; `most` when there is no limit (None)."""
    if open_files is None:
        return most
    return max(MIN_SESSIONS, min(most, open_files - FD_RESERVE))
