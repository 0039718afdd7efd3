"""The one error the wire layer raises for bytes it cannot make sense of."""


class WireError(ValueError):
    """Malformed, truncated or over-long bytes; the message says which field and why."""
