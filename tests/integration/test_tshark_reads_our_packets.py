"""tshark, an independent decoder, reads the packets our codecs build (NBNS, NBSS/SMB,
datagrams) without complaint and with the fields we meant."""

from __future__ import annotations

import subprocess

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.smb import SMB_Header
from scapy.packet import Raw
from scapy.utils import wrpcap

from messengerd.wire import layers, nbss, smb
from messengerd.wire.datagram import (
    BROADCAST,
    DESTINATION_NAME_NOT_PRESENT,
)
from messengerd.wire.layers.datagram import NBTDatagramError
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import (
    NAME_FLAG_ACT,
    NB_FLAG_G,
    NodeName,
    build_node_status_response,
)
from tests.conftest import need_tool
from tests.unit.wire.test_datagram_wire import ALICE_TO_BOB_HI, alice_to_bob, win98_variant
from tests.unit.wire.test_nbns_wire import BUILT, MAC, WILDCARD, WORKGROUP
from tests.unit.wire.test_smb_wire import PROTOCOL_MD_D0, request_header


def test_tshark_dissects_our_packets_without_complaint(tmp_path):
    tshark = need_tool("tshark", "tshark")
    names = [
        NodeName(NetBIOSName(b"RECVR", 0x03), NAME_FLAG_ACT),
        NodeName(NetBIOSName(b"BOB", 0x03), NAME_FLAG_ACT),
        NodeName(WORKGROUP, NAME_FLAG_ACT | NB_FLAG_G),
    ]
    packets = [data for data, _, _ in BUILT.values()]
    packets.append(build_node_status_response(0x20A8, WILDCARD, names, unit_id=MAC))
    path = tmp_path / "nbns.pcap"
    wrpcap(
        str(path),
        [
            Ether() / IP(src="192.0.2.7", dst="192.0.2.1") / UDP(sport=137, dport=137) / Raw(data)
            for data in packets
        ],
    )
    verbose = subprocess.run(
        [tshark, "-n", "-r", str(path), "-V"], capture_output=True, text=True, check=True
    ).stdout
    assert "Malformed" not in verbose
    assert "Expert Info" not in verbose
    fields = subprocess.run(
        [
            tshark, "-n", "-r", str(path), "-Y", "nbns.number_of_names == 3",
            "-T", "fields", "-e", "nbns.data_length", "-e", "nbns.netbios_name",
            "-e", "nbns.name_flags", "-e", "nbns.unit_id",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\t")  # fmt: skip
    assert fields[0] == str(18 * 3 + 47)
    assert fields[1] == "RECVR,BOB,WORKGROUP"
    assert fields[2] == "0x0400,0x0400,0x8400"
    assert fields[3].strip() == "00:1c:c4:10:79:0f"


def test_tshark_reads_the_frames_we_build(tmp_path):
    tshark = need_tool("tshark", "tshark")
    request = layers.nbss.parse_frame(PROTOCOL_MD_D0)[SMB_Header]
    start = request_header() / layers.smb.SMBSendStartMBMessageRequest(
        OriginatorName=b"ALICE", DestinationName=b"BOB"
    )
    frames = [
        PROTOCOL_MD_D0,
        nbss.session_message(layers.smb.success_reply(request)),
        nbss.session_message(start),
        nbss.session_message(layers.smb.success_reply(start, 5)),
        nbss.session_message(
            request_header()
            / layers.smb.SMBSendTextMBMessageRequest(MessageGroupId=5, Data=b"x" * 128)
        ),
        nbss.session_message(layers.smb.error_reply(request, smb.ERROR_NO_ROOM)),
    ]
    packets = [
        IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=40000, dport=139, flags="PA") / frame
        for frame in frames
    ]
    path = tmp_path / "built.pcap"
    wrpcap(str(path), packets)
    out = subprocess.run(
        [tshark, "-n", "-r", str(path), "-o", "tcp.analyze_sequence_numbers:FALSE"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "Malformed" not in out
    assert "Send Single Block Message Request" in out
    assert "Send Start of Multi-block Message Response" in out
    assert "Send Text of Multi-block Message Request" in out


def test_tshark_dissects_built_datagrams_as_messngr_mailslot_writes(tmp_path) -> None:
    tshark = need_tool("tshark", "tshark")
    datagrams = [
        ALICE_TO_BOB_HI,
        win98_variant(ALICE_TO_BOB_HI),
        *alice_to_bob(b"Hello from a scope", source_name=NetBIOSName(b"ALICE", 3, b"corp.lan")),
        *alice_to_bob(b"everyone", msg_type=BROADCAST, destination_name=NetBIOSName(b"*")),
    ]
    frames = [
        Ether() / IP(src="10.0.0.1", dst="10.0.0.255") / UDP(sport=138, dport=138) / Raw(raw)
        for raw in datagrams
    ]
    capture = tmp_path / "messngr.pcap"
    wrpcap(str(capture), frames)

    result = subprocess.run(
        [tshark, "-n", "-r", str(capture), "-V"], capture_output=True, text=True, check=True
    )

    assert "Malformed" not in result.stdout
    assert "Expert Info" not in result.stdout
    assert result.stdout.count("SMB MailSlot Protocol") == len(datagrams)
    assert result.stdout.count("Mailslot Name: \\MAILSLOT\\MESSNGR") == len(datagrams)
    assert "ALICE<03>.corp.lan" in result.stdout


def test_tshark_reads_our_error_datagram(tmp_path) -> None:
    tshark = need_tool("tshark", "tshark")
    raw = bytes(
        NBTDatagramError(DgmID=7, SourceIP="10.0.0.1", ErrorCode=DESTINATION_NAME_NOT_PRESENT)
    )
    capture = tmp_path / "error.pcap"
    wrpcap(str(capture), [Ether() / IP() / UDP(sport=138, dport=138) / Raw(raw)])

    result = subprocess.run(
        [tshark, "-n", "-r", str(capture), "-V"], capture_output=True, text=True, check=True
    )

    assert "Error code: Destination name not present (0x82)" in result.stdout
    assert "Malformed" not in result.stdout
