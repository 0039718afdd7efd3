"""tshark, an independent decoder, reads the RPC path's requests and the machine's answers as
Windows' own: "Microsoft Messenger Service, NetrSendMessage" with its Server (From), Client
(To) and Message (Text), the responses' return codes, the endpoint mapper's tower, a reject.

tshark 4.0 has no `-d udp.port==N,dcerpc` (DCE/RPC is no "Decode As" protocol on UDP there);
its connectionless DCE/RPC heuristic, on by default, is asked to run before port-based
dissectors instead, which finds every PDU whatever the ports.
"""

from __future__ import annotations

import re
import subprocess
from uuid import UUID

from scapy.layers.inet import IP, UDP
from scapy.utils import wrpcap

from messengerd.core.aliases import AliasTable
from messengerd.protocol.events import NEED_DATA, MessageAccepted, SendData
from messengerd.protocol.rpc import CallReceived, RpcServer
from messengerd.wire import rpc
from tests.conftest import need_tool
from tests.unit.wire.test_rpc_wire import HAND_BUILT_REQUEST

SERVER = ("127.0.0.1", 1026)
CLIENT = ("127.0.0.1", 40000)


def exchange(server: RpcServer, datagram: bytes) -> list[tuple[bool, bytes]]:
    """The datagram (True: from the client) and every reply to it, storing any message."""
    server.receive_data(datagram, CLIENT, 1.0)
    replies = [(True, datagram)]
    while (event := server.next_event()) is not NEED_DATA:
        if isinstance(event, SendData):
            replies.append((False, event.data))
        elif isinstance(event, CallReceived):
            replies.append((False, server.send(event.call, MessageAccepted()).data))
    return replies


def asking_for_a_fack(datagram: bytes) -> bytes:
    pdu = rpc.parse_pdu(datagram)
    flags = pdu.header.flags1 & ~rpc.PF_NOFACK
    return rpc.build_pdu(rpc.Header(**{**pdu.header.__dict__, "flags1": flags}), pdu.body)


def frames(tmp_path) -> str:
    server = RpcServer(AliasTable(["BOB"]), port=SERVER[1], server_boot=1_000_000)
    carol = rpc.build_netr_send_message_call(
        b"ALICE", b"CAROL", b"Anyone there?", act_id=UUID(int=2), seqnum=1
    )[0]
    ept_header = rpc.Header(
        ptype=rpc.PacketType.REQUEST,
        flags1=rpc.PF_IDEMPOTENT,
        if_id=rpc.EPT_UUID,
        if_vers=3,
        act_id=UUID(int=3),
        opnum=rpc.OPNUM_EPT_MAP,
    )
    tower = rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), 0, "0.0.0.0")
    ept_map = rpc.build_pdu(ept_header, rpc.build_ept_map_request(tower))
    unknown_opnum = rpc.build_pdu(
        rpc.Header(
            ptype=rpc.PacketType.REQUEST,
            if_id=rpc.MSGSVCSEND_UUID,
            if_vers=1,
            act_id=UUID(int=4),
            opnum=5,
        )
    )
    first, second, last = rpc.build_netr_send_message_call(
        b"ALICE", b"BOB", b"long " * 500, act_id=UUID(int=5), max_fragment_body=1000
    )
    datagrams = []
    for request in (HAND_BUILT_REQUEST, carol, ept_map, unknown_opnum):
        datagrams += exchange(server, request)
    for fragment in (asking_for_a_fack(first), second, last):
        datagrams += exchange(server, fragment)
    assert len(datagrams) == 13
    packets = []
    for from_client, datagram in datagrams:
        source, destination = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        packets.append(
            IP(src=source[0], dst=destination[0])
            / UDP(sport=source[1], dport=destination[1])
            / datagram
        )
    path = tmp_path / "rpc.pcap"
    wrpcap(str(path), packets)
    tshark = need_tool("tshark", "tshark")
    return subprocess.run(
        [tshark, "-n", "-r", str(path), "-V", "-o", "udp.try_heuristic_first:TRUE"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def frame(decoded: str, number: int) -> str:
    """The text tshark printed for frame `number`."""
    parts = re.split(r"^Frame (\d+):", decoded, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))[str(number)]


def test_tshark_decodes_requests_and_the_machines_answers(tmp_path):
    decoded = frames(tmp_path)
    assert "Malformed" not in decoded

    request = frame(decoded, 1)
    assert "Microsoft Messenger Service, NetrSendMessage" in request
    assert "Server: ALICE" in request
    assert "Client: BOB" in request
    assert "Message: Hello, world" in request
    assert "Idempotent: Set" in request and "No Fack: Set" in request

    response = frame(decoded, 2)
    assert "Packet type: Response (2)" in response
    assert "Microsoft Messenger Service, NetrSendMessage" in response
    assert "Return code: STATUS_SUCCESS (0x00000000)" in response
    assert "Sequence num: 7" in response

    refusal = frame(decoded, 4)
    assert "Packet type: Response (2)" in refusal
    assert re.search(r"Return code: .*\(0x000008e1\)", refusal)  # 2273, NERR_NameNotFound

    ept = frame(decoded, 6)
    assert "DCE/RPC Endpoint Mapper, Map" in ept
    assert "UUID: Messenger (5a7b91f8-ff00-11d0-a9b2-00c04fb6e6fc)" in ept
    assert "Floor 3 RPC connectionless protocol" in ept
    assert "UDP Port: 1026" in ept

    reject = frame(decoded, 8)
    assert "Packet type: Reject (6)" in reject
    assert "Status: nca_op_rng_error (0x1c010002)" in reject

    fack = frame(decoded, 10)
    assert "Packet type: Fack (9)" in fack and "Fragment num: 0" in fack
    assert "FACK Version: 1" in fack and "Max Frag Size: 1464" in fack

    reassembled = frame(decoded, 12)
    assert "Microsoft Messenger Service, NetrSendMessage" in reassembled
    assert "[3 Reassembled DCE/RPC Fragments (2549 bytes)" in reassembled
    assert re.search(r"Message( \[truncated\])?: long long long", reassembled)
    assert "Return code: STATUS_SUCCESS (0x00000000)" in frame(decoded, 13)
