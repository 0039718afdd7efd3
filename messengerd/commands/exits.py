"""Exit codes, the error every subcommand raises for what the user must fix, and how a
front end reports a failed request to the daemon."""

from __future__ import annotations

import sys

from messengerd.control.protocol import ControlError
from messengerd.core import lmerr
from messengerd.core.lmerr import NetError

EXIT_OK = 0
EXIT_FAILED = 1
"""An operation failed, as `net name` exits 1 with the lmerr name."""
EXIT_USAGE = 2
"""A bad option, setting or environment (port taken, no permission) the user must fix."""


class UsageError(Exception):
    """A bad option or setting; the message says which and what to do, in one line."""


def control_failure(exc: NetError | ControlError) -> int:
    """Say in one line on stderr why a request to the daemon failed; the exit code.

    A refusal (NetError) prints the lmerr name, code and net name's sentence and is
    EXIT_FAILED, as net name failed; no daemon to ask (ControlError) is EXIT_USAGE: that
    is for the user to fix, and scripts can tell the two apart.
    """
    if isinstance(exc, NetError):
        print(f"messengerd: {exc.name} ({exc.code}): {lmerr.describe(exc.code)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"messengerd: {exc}", file=sys.stderr)
    return EXIT_USAGE
