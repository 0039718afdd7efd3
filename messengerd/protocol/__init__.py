"""Sans-I/O protocol machines: they take bytes, return events and replies, and never do I/O."""
