"""The control channel's wire format, and how a client finds the daemon from its data dir."""

from __future__ import annotations

import json

import pytest

from messengerd.control.client import ControlClient
from messengerd.control.protocol import (
    CONTROL_TCP_FILE,
    NoDaemonError,
    encode,
    error_reply,
    info_document,
    int_param,
    name_param,
    read_tcp_file,
)
from messengerd.core import lmerr
from messengerd.core.aliases import MessageInfo
from messengerd.core.lmerr import NetError


def test_an_error_reply_carries_the_lmerr_code_its_name_and_net_names_sentence():
    assert error_reply(lmerr.NERR_NotLocalName, "CAROL is not in the table") == {
        "ok": False,
        "code": 2285,
        "error": "NERR_NotLocalName",
        "message": lmerr.describe(2285),
        "detail": "CAROL is not in the table",
    }


def test_a_line_is_one_ascii_json_object_even_for_a_lone_surrogate():
    line = encode({"ok": True, "id": "name\udfff"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.isascii()
    assert json.loads(line) == {"ok": True, "id": "name\udfff"}


def test_levels_are_whole_numbers_and_names_strings():
    assert int_param({}, "level", 0) == 0
    assert int_param({"level": 1}, "level", 0) == 1
    for bad in ({"level": True}, {"level": "1"}, {"level": 1.0}):
        with pytest.raises(NetError) as caught:
            int_param(bad, "level", 0)
        assert caught.value.code == lmerr.ERROR_INVALID_PARAMETER
    assert name_param({"name": "bob"}) == "bob"
    with pytest.raises(NetError) as caught:
        name_param({"name": ["bob"]})
    assert caught.value.code == lmerr.ERROR_INVALID_PARAMETER


def test_an_entry_is_msg_info_0_or_msg_info_1():
    info = MessageInfo("BOB")
    assert info_document(info, 0) == {"name": "BOB"}
    assert info_document(info, 1) == {"name": "BOB", "forward_flag": 0, "forward": None}


@pytest.mark.parametrize(
    "content",
    [b"", b"{oops", b"\xff", b"[1]", b'{"port": "1", "token": "x"}', b'{"port": 1}'],
)
def test_a_tcp_file_that_announces_no_daemon_reads_as_none(tmp_path, content):
    path = tmp_path / CONTROL_TCP_FILE
    path.write_bytes(content)
    assert read_tcp_file(path) is None


def test_a_tcp_file_gives_the_address_and_token(tmp_path):
    path = tmp_path / CONTROL_TCP_FILE
    document = {"host": "127.0.0.1", "port": 40139, "token": "ab" * 32, "pid": 7}
    path.write_text(json.dumps(document))
    assert read_tcp_file(path) == document
    assert read_tcp_file(tmp_path / "missing") is None


def test_no_daemon_is_one_clear_error(tmp_path):
    with pytest.raises(NoDaemonError) as caught:
        ControlClient(tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message and "no control socket" in message
    assert "messengerd run" in message
