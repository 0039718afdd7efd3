"""messengerd: a receiver for Windows Messenger-service messages."""

from messengerd.core import lmerr

__version__ = "0.1.0"

__all__ = ["__version__", "lmerr"]
