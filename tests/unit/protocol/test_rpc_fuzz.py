"""Fuzzing the RPC machine with interleaved calls, fragments, pings, acks, quits, ept_maps,
garbage, answers and time: it never raises, stays within its bounds, never answers a datagram
with much more than it received, and never delivers one call twice."""

from __future__ import annotations

from uuid import UUID

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from messengerd.core.aliases import AliasTable
from messengerd.core.limits import (
    MAX_RPC_PENDING_CALLS,
    MAX_RPC_REASSEMBLIES,
    MAX_RPC_REPLY_CACHE,
)
from messengerd.protocol.events import (
    NEED_DATA,
    Dropped,
    MessageAccepted,
    MessageRefused,
    SendData,
)
from messengerd.protocol.rpc import MAX_REPLY_GROWTH, CallReceived, RpcServer
from messengerd.wire import rpc
from messengerd.wire.errors import WireError
from messengerd.wire.rpc import PacketType

ACTIVITIES = [UUID(int=number) for number in range(1, 3)]
PEER = ("127.0.0.1", 40000)
BOOT = 1_000_000
CALL_FLAGS = [0, rpc.PF_IDEMPOTENT, rpc.PF_MAYBE, rpc.PF_BROADCAST, rpc.PF_NOFACK]

activities = st.sampled_from(ACTIVITIES)
seqnums = st.integers(0, 2)


@st.composite
def netr_call(draw):
    """The datagrams of a NetrSendMessage call, in some order, some twice, some left out."""
    flags = 0
    for flag in draw(st.lists(st.sampled_from(CALL_FLAGS), max_size=3)):
        flags |= flag
    text = b"x" * draw(st.sampled_from([5, 5, 900, 3000]))
    datagrams = rpc.build_netr_send_message_call(
        b"ALICE",
        draw(st.sampled_from([b"BOB", b"CAROL", b"bob"])),
        text,
        act_id=draw(activities),
        seqnum=draw(seqnums),
        flags1=flags,
        server_boot=draw(st.sampled_from([0, 0, 0, BOOT, 7])),
        max_fragment_body=draw(st.sampled_from([300, 1384])),
    )
    picked = draw(st.lists(st.sampled_from(datagrams), min_size=1, max_size=len(datagrams) + 2))
    if draw(st.booleans()):
        picked = draw(st.permutations(datagrams))
    return [draw(asking_for_a_fack(datagram)) for datagram in picked]


@st.composite
def asking_for_a_fack(draw, datagram):
    """The datagram, or with NOFACK cleared so that it asks for a fack."""
    if draw(st.booleans()):
        return datagram
    pdu = rpc.parse_pdu(datagram)
    header = rpc.Header(**{**pdu.header.__dict__, "flags1": pdu.header.flags1 & ~rpc.PF_NOFACK})
    return rpc.build_pdu(header, pdu.body)


@st.composite
def control_datagram(draw):
    """A ping, ack or quit (orphan or cancel) for some call."""
    ptype = draw(st.sampled_from([PacketType.PING, PacketType.ACK, PacketType.CL_CANCEL]))
    body = b""
    if ptype is PacketType.CL_CANCEL and draw(st.booleans()):
        body = b"\0\0\0\0\x01\0\0\0"
    header = rpc.Header(
        ptype=ptype,
        if_id=rpc.MSGSVCSEND_UUID,
        if_vers=1,
        act_id=draw(activities),
        seqnum=draw(seqnums),
        serial=draw(st.integers(0, 0xFFFF)),
    )
    return rpc.build_pdu(header, body)


@st.composite
def ept_datagram(draw):
    header = rpc.Header(
        ptype=PacketType.REQUEST,
        flags1=draw(st.sampled_from([rpc.PF_IDEMPOTENT, rpc.PF_BROADCAST, rpc.PF_MAYBE])),
        if_id=rpc.EPT_UUID,
        if_vers=3,
        act_id=draw(activities),
        seqnum=draw(seqnums),
        opnum=rpc.OPNUM_EPT_MAP,
    )
    tower = rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), 0, "0.0.0.0")
    stub = rpc.build_ept_map_request(
        draw(st.sampled_from([tower, tower[:40], b"\0\0"])),
        object=draw(st.sampled_from([None, rpc.NIL_UUID])),
        max_towers=draw(st.integers(0, 4)),
    )
    return rpc.build_pdu(header, stub)


@st.composite
def mutated(draw, base):
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


valid = st.one_of(netr_call().map(lambda call: call[0]), control_datagram(), ept_datagram())
datagrams = st.one_of(valid, mutated(valid), st.binary(max_size=200)).map(lambda one: [one])
answers = st.sampled_from(
    [
        MessageAccepted(),
        MessageRefused("not_an_alias"),
        MessageRefused("no_room"),
        MessageRefused("denied"),
    ]
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("datagrams"), netr_call(), st.floats(0, 1.5)),
        st.tuples(st.just("datagrams"), datagrams, st.floats(0, 1.5)),
        st.tuples(st.just("answer"), st.integers(0, 20), answers),
        st.tuples(st.just("replay"), st.integers(0, 200), st.floats(0, 1.5)),
        st.tuples(st.just("expire"), st.floats(0, 20)),
    ),
    max_size=60,
)


def drain(server: RpcServer) -> list:
    events = []
    while (event := server.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def feed(server, datagram, now, delivered, acked, waiting) -> None:
    """One datagram in; checks on every event it brings."""
    try:
        pdu = rpc.parse_pdu(datagram)
    except WireError:
        pdu = None
    if pdu is not None and pdu.header.ptype == PacketType.ACK:
        acked.add(pdu.header.act_id)
    server.receive_data(datagram, PEER, now)
    events = drain(server)
    for item in events:
        assert isinstance(item, SendData | Dropped | CallReceived)
        if isinstance(item, SendData):
            assert item.address == PEER
            assert len(item.data) <= len(datagram) + MAX_REPLY_GROWTH
        if isinstance(item, CallReceived):
            key = (item.call.act_id, item.call.seqnum)
            assert key not in delivered or item.call.act_id in acked, key
            delivered.add(key)
            waiting.append(item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_machine_survives_any_interleaving(ops):
    server = RpcServer(AliasTable(["BOB"]), port=1026, server_boot=BOOT)
    now = 0.0
    waiting: list[CallReceived] = []
    delivered: set = set()
    acked: set = set()
    history: list[bytes] = []
    for op in ops:
        if op[0] == "datagrams":
            now += op[2]
            for datagram in op[1]:
                feed(server, datagram, now, delivered, acked, waiting)
            history += op[1]
        elif op[0] == "replay":
            # A retransmission: any datagram fed before, again.
            now += op[2]
            if history:
                feed(server, history[op[1] % len(history)], now, delivered, acked, waiting)
        elif op[0] == "answer":
            _, index, reply_to = op
            if waiting:
                call = waiting.pop(index % len(waiting)).call
                reply = server.send(call, reply_to)
                if reply is not None:
                    assert len(reply.data) == rpc.HEADER_LENGTH + 4
        else:
            now += op[1]
            server.expire(now)
            assert all(isinstance(item, Dropped) for item in drain(server))
        assert server.waiting_calls == len(waiting)
        assert server.held_calls <= (
            MAX_RPC_REASSEMBLIES + MAX_RPC_PENDING_CALLS + MAX_RPC_REPLY_CACHE
        )
        deadline = server.next_deadline()
        assert deadline is None or deadline > now
    event(f"delivered {min(len(delivered), 3)}+ calls")
