"""messengerd: a receiver for Windows Messenger-service messages."""

__version__ = "0.1.0"
