"""Bytes <-> typed packets. Every byte messengerd receives is parsed in this package."""
