"""asyncio listeners: they move bytes between sockets and the sans-I/O machines, nothing more."""
