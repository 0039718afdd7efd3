"""The sender against a real `messengerd run` on loopback: every path, every result code."""

from __future__ import annotations

import argparse
import asyncio
import io
import socket

import pytest

from messengerd.commands import send as send_command
from messengerd.commands.exits import EXIT_FAILED, EXIT_OK, UsageError
from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.sender import CRLF, net_message_buffer_send, send_message
from tests.daemon_process import DaemonProcess

BROADCAST = "127.255.255.255"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    with DaemonProcess("--alias", "BOB", "--alias", "Jürgen", data_dir=data_dir) as process:
        yield process


def by_address(daemon: DaemonProcess, **overrides) -> dict:
    """Options that reach the daemon at 127.0.0.1 without a name query."""
    return {
        "host": "127.0.0.1",
        "port": daemon.ports["session"],
        "datagram_port": daemon.ports["datagram"],
    } | overrides


def by_name(daemon: DaemonProcess) -> dict:
    """Options that find the daemon with a broadcast name query on loopback."""
    return {
        "broadcast": BROADCAST,
        "name_port": daemon.ports["name"],
        "port": daemon.ports["session"],
        "datagram_port": daemon.ports["datagram"],
    }


def free_port() -> int:
    """A TCP port nothing listens on (bound, then closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def failure(call) -> NetError:
    with pytest.raises(NetError) as caught:
        call()
    return caught.value


def test_short_text_goes_as_one_d0(daemon):
    delivery = asyncio.run(send_message("bob", "Hi", fromname="ALICE", **by_address(daemon)))
    assert (delivery.path, delivery.multi_block, delivery.pieces) == ("session", False, 1)
    message = daemon.next_message()
    assert {key: message[key] for key in ("from", "to", "text", "path")} == {
        "from": "ALICE",
        "to": "BOB",
        "text": "Hi",
        "path": "session",
    }


def test_long_text_goes_as_d5_d7_d6_and_arrives_whole(daemon):
    text = "".join(f"line {n:03d} of the nightly backup report\n" for n in range(40)).strip()
    assert 1000 < len(text) <= 1600
    delivery = asyncio.run(send_message("BOB", text, fromname="BACKUP", **by_address(daemon)))
    assert delivery.multi_block and delivery.pieces == -(-len(text) // 128)
    assert daemon.next_message()["text"] == text


def test_name_found_by_broadcast_query_then_session(daemon):
    assert net_message_buffer_send("jürgen", "Grüße", fromname="Zoë", **by_name(daemon)) == 0
    message = daemon.next_message()
    assert (message["to"], message["from"], message["text"]) == ("JÜRGEN", "Zoë", "Grüße")
    assert message["path"] == "session"


def test_mailslot_carries_a_short_message(daemon):
    delivery = asyncio.run(
        send_message("BOB", "via UDP 138", fromname="UPS", via="mailslot", **by_address(daemon))
    )
    assert (delivery.path, delivery.pieces) == ("mailslot", 1)
    message = daemon.next_message()
    assert (message["text"], message["path"], message["from"]) == ("via UDP 138", "mailslot", "UPS")


def test_mailslot_splits_long_text_into_several_messages(daemon):
    text = "0123456789" * 100
    delivery = asyncio.run(
        send_message("BOB", text, fromname="UPS", via="mailslot", **by_name(daemon))
    )
    texts = [daemon.next_message()["text"] for _ in range(delivery.pieces)]
    assert delivery.pieces > 1
    # UDP on loopback keeps order, but nothing promises it: compare the pieces as a set.
    assert sorted(texts) == sorted(
        text[i : i + len(texts[0])] for i in range(0, 1000, len(texts[0]))
    )
    assert sum(map(len, texts)) == len(text)


def test_auto_falls_back_to_the_mailslot_when_no_session_can_be_opened(daemon):
    options = by_address(daemon, port=free_port())
    delivery = asyncio.run(send_message("BOB", "session port closed", via="auto", **options))
    assert delivery.path == "mailslot"
    assert daemon.next_message()["text"] == "session port closed"


@pytest.mark.parametrize("line_break", [b"\x14", CRLF], ids=["windows 0x14", "crlf"])
def test_line_breaks_arrive_as_lines(daemon, line_break):
    # Each case its own text: the daemon's inbox shows a repeated message only once.
    text = f"UPS on battery\nRuntime 12 min\nShut down now ({line_break!r})"
    net_message_buffer_send("BOB", text, line_break=line_break, **by_address(daemon))
    assert daemon.next_message()["text"] == text


def test_unknown_name_is_nerr_name_not_found(daemon):
    error = failure(lambda: net_message_buffer_send("CAROL", "hi", **by_name(daemon)))
    assert error.code == lmerr.NERR_NameNotFound
    assert "3 name queries" in error.detail


def test_refused_session_is_nerr_name_not_found(daemon):
    error = failure(lambda: net_message_buffer_send("CAROL", "hi", **by_address(daemon)))
    assert error.code == lmerr.NERR_NameNotFound
    assert "Called name not present" in error.detail
    assert daemon.no_message()


def test_closed_port_is_nerr_network_error(daemon):
    options = by_address(daemon, port=free_port())
    error = failure(lambda: net_message_buffer_send("BOB", "hi", via="session", **options))
    assert error.code == lmerr.NERR_NetworkError
    assert "Connection refused" in error.detail


# `messengerd send`, parsed the way messengerd.cli builds its parser.


def run_send(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="messengerd")
    send_command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["send", *argv])
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, out, err


def cli_options(daemon: DaemonProcess) -> list[str]:
    return [
        "--host", "127.0.0.1",
        "--port", str(daemon.ports["session"]),
        "--datagram-port", str(daemon.ports["datagram"]),
    ]  # fmt: skip


def test_cli_prints_what_net_send_printed(daemon, capsys):
    code, out, err = run_send(capsys, *cli_options(daemon), "--from", "OPS", "BOB", "disk", "full")
    assert (code, out, err) == (EXIT_OK, "The message was successfully sent to BOB.\n", "")
    message = daemon.next_message()
    assert (message["from"], message["text"]) == ("OPS", "disk full")


def test_cli_reads_the_text_from_stdin_for_a_dash(daemon, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("first line\nsecond line\n"))
    code, _, _ = run_send(capsys, *cli_options(daemon), "--crlf", "BOB", "-")
    assert code == EXIT_OK
    assert daemon.next_message()["text"] == "first line\nsecond line"


def test_cli_failure_is_one_line_with_the_lmerr_name_and_exit_1(daemon, capsys):
    code, out, err = run_send(capsys, *cli_options(daemon), "CAROL", "hi")
    assert (code, out) == (EXIT_FAILED, "")
    assert err.startswith(
        "messengerd: NERR_NameNotFound (2273): The message alias could not be found on the network."
    )
    assert err.count("\n") == 1


def test_cli_over_long_name_is_error_invalid_parameter(daemon, capsys):
    code, _, err = run_send(capsys, *cli_options(daemon), "A-NAME-OF-20-LETTERS", "hi")
    assert code == EXIT_FAILED
    assert err.startswith("messengerd: ERROR_INVALID_PARAMETER (87): The parameter is incorrect.")


def test_cli_unknown_code_page_is_a_usage_error(daemon, capsys):
    with pytest.raises(UsageError, match="unknown code page"):
        run_send(capsys, *cli_options(daemon), "--codepage", "cp99999", "BOB", "hi")
