"""The session-wide guard in conftest.py stops any in-process send beyond loopback."""

import socket

import pytest


def test_a_send_beyond_loopback_fails_the_test():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(AssertionError, match="only loopback"):
        s.sendto(b"x", ("192.0.2.1", 9))
    s.sendto(b"x", ("127.0.0.1", 9))
