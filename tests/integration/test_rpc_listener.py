"""The RPC path on real UDP sockets: a running receiver (the loopback test target) and
datagrams sent to its RPC port as a Windows client, a spam tool or `messengerd send --via rpc`
send them ([MS-MSRP] §3.2, C706 ch. 12, PROTOCOL.md §6)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.protocol.rpc import NERR_NoRoom
from messengerd.sender import net_message_buffer_send
from messengerd.testing import MessengerController
from messengerd.wire import rpc
from tests.conftest import need, need_tool
from tests.unit.wire.test_rpc_wire import ACTIVITY, HAND_BUILT_REQUEST

WAIT = 5.0
"""Seconds a test waits for a reply before it fails instead of hanging."""


@pytest.fixture(scope="module")
def receiver() -> Iterator[MessengerController]:
    with MessengerController(["BOB"]) as controller:
        yield controller


@pytest.fixture(autouse=True)
def fresh(receiver: MessengerController) -> None:
    receiver.faults.reset()
    receiver.clear()


@pytest.fixture
def client() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(WAIT)
        yield sock


def call(sender: bytes = b"ALICE", to: bytes = b"BOB", text: bytes = b"hi", **options) -> tuple:
    """A NetrSendMessage call's datagrams and its activity."""
    act_id = options.pop("act_id", uuid4())
    return rpc.build_netr_send_message_call(sender, to, text, act_id=act_id, **options), act_id


def reply(client: socket.socket, act_id: UUID, seqnum: int = 0) -> rpc.CallReply:
    """The next datagram the receiver sends for this call."""
    data, _ = client.recvfrom(65536)
    return rpc.parse_call_reply(data, act_id=act_id, seqnum=seqnum)


def where(receiver: MessengerController) -> tuple[str, int]:
    return (receiver.host, receiver.rpc_port)


def test_a_request_written_byte_by_byte_from_the_specs_is_delivered(receiver, client):
    client.sendto(HAND_BUILT_REQUEST, where(receiver))
    answer = reply(client, ACTIVITY, seqnum=7)
    assert (answer.ptype, answer.status) == (rpc.PacketType.RESPONSE, 0)
    message = receiver.wait_for(timeout=WAIT)
    assert (message.sender, message.recipient, message.text) == ("ALICE", "BOB", "Hello, world")
    assert message.path == "rpc"
    assert message.peer == f"127.0.0.1:{client.getsockname()[1]}"


def test_the_sender_delivers_over_rpc_and_an_unknown_alias_is_name_not_found(receiver):
    options = {**receiver.send_options, "timeout": WAIT}
    sent = net_message_buffer_send("bob", "UPS on battery", fromname="UPS", via="rpc", **options)
    assert sent == lmerr.NERR_Success
    assert net_message_buffer_send("BOB", "second", fromname="UPS", via="rpc", **options) == 0
    assert [m.text for m in receiver.messages] == ["UPS on battery", "second"]
    with pytest.raises(NetError) as refused:
        net_message_buffer_send("CAROL", "anyone?", via="rpc", **options)
    assert refused.value.code == lmerr.NERR_NameNotFound
    assert [m.text for m in receiver.messages] == ["UPS on battery", "second"]


def test_fragments_in_any_order_are_delivered_once_and_acknowledged(receiver, client):
    text = b"fragmented " * 300
    fragments, act_id = call(text=text, max_fragment_body=1000)
    assert len(fragments) == 4
    first = rpc.parse_pdu(fragments[0])
    asking = rpc.Header(**{**first.header.__dict__, "flags1": first.header.flags1 & ~rpc.PF_NOFACK})
    client.sendto(rpc.build_pdu(asking, first.body), where(receiver))
    fack = reply(client, act_id)
    assert fack.ptype is rpc.PacketType.FACK
    for fragment in (fragments[2], fragments[3], fragments[1]):
        client.sendto(fragment, where(receiver))
    answer = reply(client, act_id)
    while answer.ptype is rpc.PacketType.FACK:  # the last fragment asks for one too
        answer = reply(client, act_id)
    assert (answer.ptype, answer.status) == (rpc.PacketType.RESPONSE, 0)
    assert receiver.wait_for(timeout=WAIT).text == text.decode()


def test_a_retransmitted_call_is_answered_again_and_delivered_once(receiver, client):
    datagrams, act_id = call(text=b"said twice")
    client.sendto(datagrams[0], where(receiver))
    first = reply(client, act_id)
    client.sendto(datagrams[0], where(receiver))
    again = reply(client, act_id)
    assert first == again and first.status == 0
    receiver.wait_for(timeout=WAIT)
    time.sleep(0.2)  # a second delivery, if there were one, would be in by now
    assert [m.text for m in receiver.messages] == ["said twice"]


def test_a_ping_is_answered_working_while_the_message_is_stored_then_with_the_reply(
    receiver, client
):
    receiver.faults.reply_delay = 1.0
    datagrams, act_id = call(text=b"slow store")
    client.sendto(datagrams[0], where(receiver))
    ping = rpc.Header(
        ptype=rpc.PacketType.PING,
        if_id=rpc.MSGSVCSEND_UUID,
        if_vers=rpc.interface_version(*rpc.MSGSVCSEND_VERSION),
        act_id=act_id,
        opnum=rpc.OPNUM_NETR_SEND_MESSAGE,
    )
    time.sleep(0.2)
    client.sendto(rpc.build_pdu(ping), where(receiver))
    assert reply(client, act_id).ptype is rpc.PacketType.WORKING
    assert reply(client, act_id).ptype is rpc.PacketType.RESPONSE
    client.sendto(rpc.build_pdu(ping), where(receiver))
    assert reply(client, act_id).ptype is rpc.PacketType.RESPONSE
    unknown = rpc.Header(**{**ping.__dict__, "act_id": uuid4()})
    client.sendto(rpc.build_pdu(unknown), where(receiver))
    assert reply(client, unknown.act_id).ptype is rpc.PacketType.NOCALL


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"if_id": UUID(int=99)}, "nca_unk_if"),
        ({"opnum": 9}, "nca_op_rng_error"),
    ],
)
def test_an_unknown_interface_or_opnum_is_rejected(receiver, client, change, status):
    datagrams, act_id = call()
    pdu = rpc.parse_pdu(datagrams[0])
    client.sendto(
        rpc.build_pdu(rpc.Header(**{**pdu.header.__dict__, **change}), pdu.body), where(receiver)
    )
    answer = reply(client, act_id)
    assert answer.ptype is rpc.PacketType.REJECT
    assert rpc.STATUS_NAMES[answer.status] == status
    assert receiver.messages == []


def test_ept_map_names_the_port_msgsvcsend_is_served_on(receiver, client):
    act_id = uuid4()
    request = rpc.Header(
        ptype=rpc.PacketType.REQUEST,
        flags1=rpc.PF_IDEMPOTENT,
        if_id=rpc.EPT_UUID,
        if_vers=rpc.interface_version(*rpc.EPT_VERSION),
        act_id=act_id,
        opnum=rpc.OPNUM_EPT_MAP,
    )
    asked = rpc.udp_tower(rpc.MSGSVCSEND_UUID, rpc.MSGSVCSEND_VERSION, 0, "0.0.0.0")
    client.sendto(rpc.build_pdu(request, rpc.build_ept_map_request(asked)), where(receiver))
    data, _ = client.recvfrom(65536)
    pdu = rpc.parse_pdu(data)
    assert pdu.header.ptype == rpc.PacketType.RESPONSE
    answer = rpc.parse_ept_map_response(pdu.body)
    assert answer.status == 0
    assert [rpc.udp_port_of(tower) for tower in answer.towers] == [receiver.rpc_port]


def test_a_store_that_fails_is_no_room_and_the_faults_reach_rpc_too(receiver):
    options = {**receiver.send_options, "timeout": WAIT}
    receiver.faults.smb_error = True
    with pytest.raises(NetError) as failed:
        net_message_buffer_send("BOB", "lost", via="rpc", **options)
    assert failed.value.code == lmerr.NERR_NetworkError
    assert lmerr.NAMES.get(NERR_NoRoom, str(NERR_NoRoom)) in failed.value.detail
    receiver.faults.reset()
    receiver.faults.refused_names.add("BOB")
    with pytest.raises(NetError) as refused:
        net_message_buffer_send("BOB", "refused", via="rpc", **options)
    assert refused.value.code == lmerr.NERR_NameNotFound
    assert receiver.messages == []


def test_tshark_reads_the_senders_request_and_the_receivers_reply(receiver, tmp_path: Path):
    tshark = need_tool("tshark", "tshark")
    need(os.geteuid() == 0, "capturing on the loopback interface needs root")
    capture = tmp_path / "rpc.pcapng"
    port = receiver.rpc_port
    dumping = subprocess.Popen(
        [tshark, "-i", "lo", "-f", f"udp port {port}", "-w", str(capture), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        started = False
        while time.monotonic() < deadline and not started:
            # tshark says "Capturing on 'Loopback: lo'" once the capture runs.
            started = capture.exists() and capture.stat().st_size > 0
            time.sleep(0.1)
        options = {**receiver.send_options, "timeout": WAIT}
        net_message_buffer_send("BOB", "Read me, tshark", fromname="ALICE", via="rpc", **options)
        time.sleep(0.5)
    finally:
        dumping.terminate()
        dumping.communicate(timeout=20)
    decoded = subprocess.run(
        [tshark, "-n", "-r", str(capture), "-V", "-o", "udp.try_heuristic_first:TRUE"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    request, response = (
        decoded.split("\nFrame 2:")[:2] if "\nFrame 2:" in decoded else (decoded, "")
    )
    assert "Microsoft Messenger Service, NetrSendMessage" in request
    assert "Server: ALICE" in request and "Client: BOB" in request
    assert "Message: Read me, tshark" in request
    assert "Packet type: Response (2)" in response
    assert "Return code: STATUS_SUCCESS (0x00000000)" in response
