"""The core: messages, the alias table, policy, limits, result codes and the store."""
