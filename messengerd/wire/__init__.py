"""Bytes <-> typed packets. Every byte messengerd receives is parsed in this package.

The modules here read and build with struct and import no scapy; the scapy layers they are
proven equal to, the reference definitions, are in messengerd.wire.layers.
"""
