"""The inbox: every message durable in SQLite before its sender is acknowledged."""
