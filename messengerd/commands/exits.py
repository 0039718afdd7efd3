"""Exit codes and the error every subcommand raises for what the user must fix."""

EXIT_OK = 0
EXIT_FAILED = 1
"""An operation failed, as `net name` exits 1 with the lmerr name."""
EXIT_USAGE = 2
"""A bad option, setting or environment (port taken, no permission) the user must fix."""


class UsageError(Exception):
    """A bad option or setting; the message says which and what to do, in one line."""
