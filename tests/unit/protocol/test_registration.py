"""B-node registration, conflict, release, refresh (RFC 1002 §5.1.1) and defending our names."""

from __future__ import annotations

import asyncio

import pytest

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.decode.capture import read_segments
from messengerd.protocol.nameservice import NameService
from messengerd.protocol.registration import (
    BCAST_REQ_RETRY_COUNT,
    BCAST_REQ_RETRY_TIMEOUT,
    Broadcast,
    NameConflict,
    NameRegistered,
    Registrar,
)
from messengerd.transport.registration import RegistrationRunner
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import (
    ACT_ERR,
    NB_FLAG_G,
    ONT_H,
    OPCODE_REFRESH,
    NameRefresh,
    NameRegistration,
    NameRelease,
    RegistrationResponse,
    build_name_overwrite_demand,
    build_name_registration_request,
    build_name_registration_response,
    build_name_release_request,
    build_negative_name_registration_response,
    parse_nbns,
)

BOB = NetBIOSName(b"BOB", 0x03)
RECVR = NetBIOSName(b"RECVR", 0x03)
WORKGROUP = NetBIOSName(b"WORKGROUP", 0x03)
OURS = "192.0.2.1"
THEIRS = "192.0.2.99"
STEP = BCAST_REQ_RETRY_TIMEOUT


def broadcasts(events):
    return [parse_nbns(event.data) for event in events if isinstance(event, Broadcast)]


def objection(trn_id: int, name: NetBIOSName = BOB) -> RegistrationResponse:
    """What an owner sends back: flags 0xAD86, RCODE ACT_ERR (RFC 1002 §4.2.6)."""
    packet = parse_nbns(build_negative_name_registration_response(trn_id, name, OURS))
    assert isinstance(packet, RegistrationResponse)
    assert packet.flags == 0xAD86
    return packet


def register_fully(registrar: Registrar, name: NetBIOSName, start: float = 0.0) -> list:
    registrar.register(name, start)
    events = []
    for step in range(BCAST_REQ_RETRY_COUNT + 1):
        events += registrar.poll(start + step * STEP)
    return events


# --- the Registrar machine ------------------------------------------------------------------


def test_registration_is_three_broadcasts_250_ms_apart_then_an_overwrite_demand():
    registrar = Registrar(OURS, first_trn_id=0x1234)
    registrar.register(BOB, 10.0)
    assert registrar.next_deadline() == 10.0
    sent = []
    for step in range(BCAST_REQ_RETRY_COUNT):
        now = 10.0 + step * STEP
        events = registrar.poll(now)
        assert [type(event) for event in events] == [Broadcast]
        sent += broadcasts(events)
        assert registrar.poll(now + STEP / 2) == [], "nothing between retries"
        assert registrar.next_deadline() == pytest.approx(now + STEP)
        assert registrar.state(BOB) == "registering"
    assert all(isinstance(p, NameRegistration) for p in sent)
    assert {(p.trn_id, p.flags, p.name, p.address) for p in sent} == {(0x1234, 0x2910, BOB, OURS)}
    final = registrar.poll(10.0 + BCAST_REQ_RETRY_COUNT * STEP)
    assert final[-1] == NameRegistered(BOB)
    (demand,) = broadcasts(final)
    assert (demand.flags, demand.trn_id, demand.overwrite_demand) == (0x2810, 0x1234, True)
    assert registrar.state(BOB) == "registered"
    assert registrar.registered() == [BOB]


def test_registration_bytes_match_windows_98(capture):
    """MDJR98<03> in dos_win98_smb_netbeui.pcap: frames 21, 27, 29 and the demand 36."""
    payloads = {
        seg.frame: seg.payload
        for seg in read_segments(capture("dos_win98_smb_netbeui.pcap"))
        if seg.frame in (21, 27, 29, 36)
    }
    registrar = Registrar("192.168.239.129", ttl=300_000, first_trn_id=4)
    name = NetBIOSName(b"MDJR98", 0x03)
    data = [event.data for event in register_fully(registrar, name) if isinstance(event, Broadcast)]
    assert data == [payloads[21], payloads[27], payloads[29], payloads[36]]


def test_release_bytes_match_a_real_release(capture):
    """LP-RKERUR-OSX<00> released three times with one NAME_TRN_ID (anyconnect-vpn.pcap)."""
    payloads = [
        seg.payload
        for seg in read_segments(capture("anyconnect-vpn.pcap"))
        if seg.frame in (548, 553, 558)
    ]
    name = NetBIOSName(b"LP-RKERUR-OSX", 0x00)
    registrar = Registrar("10.0.0.227", nb_flags=ONT_H, first_trn_id=17790)
    register_fully(registrar, name)
    registrar.release(name, 5.0)
    sent = []
    for step in range(BCAST_REQ_RETRY_COUNT):
        sent += [e.data for e in registrar.poll(5.0 + step * STEP) if isinstance(e, Broadcast)]
    assert sent == payloads


def test_an_objection_makes_the_name_someone_elses():
    registrar = Registrar(OURS, first_trn_id=7)
    registrar.register(BOB, 0.0)
    registrar.poll(0.0)
    events = registrar.receive(objection(7), THEIRS)
    assert events == [NameConflict(BOB, THEIRS, ACT_ERR)]
    assert registrar.state(BOB) is None
    assert registrar.poll(1.0) == [], "no more requests, no overwrite demand"
    assert registrar.next_deadline() is None


def test_an_objection_to_another_transaction_or_name_is_ignored():
    registrar = Registrar(OURS, first_trn_id=7)
    registrar.register(BOB, 0.0)
    registrar.poll(0.0)
    assert registrar.receive(objection(8), THEIRS) == []
    assert registrar.receive(objection(7, RECVR), THEIRS) == []
    assert registrar.state(BOB) == "registering"


def test_a_positive_answer_does_not_end_a_b_node_registration():
    registrar = Registrar(OURS, first_trn_id=7)
    registrar.register(BOB, 0.0)
    registrar.poll(0.0)
    positive = parse_nbns(build_name_registration_response(7, BOB, OURS))
    assert registrar.receive(positive, THEIRS) == []
    assert registrar.state(BOB) == "registering"


def test_an_objection_after_the_name_is_ours_is_too_late():
    registrar = Registrar(OURS, first_trn_id=7)
    register_fully(registrar, BOB)
    assert registrar.receive(objection(7), THEIRS) == []
    assert registrar.registered() == [BOB]


def test_release_is_three_broadcasts_then_the_name_is_forgotten():
    registrar = Registrar(OURS, first_trn_id=1)
    register_fully(registrar, BOB)
    registrar.release(BOB, 2.0)
    sent = []
    for step in range(BCAST_REQ_RETRY_COUNT):
        sent += broadcasts(registrar.poll(2.0 + step * STEP))
        assert registrar.busy == (step < BCAST_REQ_RETRY_COUNT - 1)
    assert all(isinstance(p, NameRelease) for p in sent)
    assert {(p.trn_id, p.flags, p.ttl) for p in sent} == {(2, 0x3010, 0)}
    assert registrar.state(BOB) is None
    assert registrar.poll(10.0) == []


def test_releasing_a_name_still_being_registered_sends_nothing():
    registrar = Registrar(OURS)
    registrar.register(BOB, 0.0)
    registrar.poll(0.0)
    registrar.release(BOB, 0.1)
    assert registrar.poll(5.0) == []
    assert registrar.state(BOB) is None


def test_registering_again_while_releasing_stops_the_release():
    registrar = Registrar(OURS)
    register_fully(registrar, BOB)
    registrar.release(BOB, 2.0)
    registrar.poll(2.0)
    registrar.register(BOB, 2.1)
    sent = broadcasts(registrar.poll(2.1))
    assert [type(p) for p in sent] == [NameRegistration]


def test_registering_a_name_twice_is_a_programming_error():
    registrar = Registrar(OURS)
    registrar.register(BOB, 0.0)
    with pytest.raises(ValueError, match="registering"):
        registrar.register(BOB, 0.0)


def test_names_are_refreshed_at_half_their_ttl_by_broadcast():
    registrar = Registrar(OURS, ttl=600)
    register_fully(registrar, BOB)
    registered_at = BCAST_REQ_RETRY_COUNT * STEP
    assert registrar.next_deadline() == pytest.approx(registered_at + 300)
    assert registrar.poll(registered_at + 299) == []
    (refresh,) = broadcasts(registrar.poll(registered_at + 300))
    assert isinstance(refresh, NameRefresh)
    assert (refresh.opcode, refresh.flags, refresh.ttl) == (OPCODE_REFRESH, 0x4010, 600)
    (again,) = broadcasts(registrar.poll(registered_at + 600))
    assert again.trn_id != refresh.trn_id
    assert registrar.registered() == [BOB]


def test_ttl_zero_is_forever_and_never_refreshed():
    registrar = Registrar(OURS, ttl=0)
    register_fully(registrar, BOB)
    assert registrar.next_deadline() is None


def test_transaction_ids_wrap_at_16_bits():
    registrar = Registrar(OURS, first_trn_id=0xFFFF)
    registrar.register(BOB, 0.0)
    registrar.register(RECVR, 0.0)
    ids = {p.name: p.trn_id for p in broadcasts(registrar.poll(0.0))}
    assert ids == {BOB: 0xFFFF, RECVR: 0}


def test_release_all_releases_held_names_and_drops_pending_ones():
    registrar = Registrar(OURS)
    register_fully(registrar, BOB)
    registrar.register(RECVR, 5.0)
    registrar.release_all(6.0)
    sent = broadcasts(registrar.poll(6.0))
    assert [(type(p), p.name) for p in sent] == [(NameRelease, BOB)]


# --- defending our names (the name service) -------------------------------------------------


class Names:
    """A Directory: BOB and RECVR unique, WORKGROUP a group."""

    def is_local(self, name):
        return name in (BOB, RECVR)

    def is_group(self, name):
        return name == WORKGROUP

    def name_table(self):
        return [(BOB, False), (RECVR, False), (WORKGROUP, True)]


def registration(name, address=THEIRS, *, trn_id=0x77, nb_flags=0):
    return build_name_registration_request(trn_id, name, address, nb_flags=nb_flags)


def test_another_nodes_registration_of_our_name_gets_act_err_0xad86():
    reply = NameService(Names()).receive(registration(BOB), local_ip=OURS, source=THEIRS)
    assert reply == build_negative_name_registration_response(0x77, BOB, THEIRS)
    answer = parse_nbns(reply)
    assert isinstance(answer, RegistrationResponse)
    assert (answer.trn_id, answer.flags, answer.rcode) == (0x77, 0xAD86, ACT_ERR)


def test_a_group_registration_of_our_unique_name_is_refused_too():
    reply = NameService(Names()).receive(
        registration(BOB, nb_flags=NB_FLAG_G), local_ip=OURS, source=THEIRS
    )
    assert parse_nbns(reply).rcode == ACT_ERR


def test_an_overwrite_demand_for_our_name_is_answered():
    demand = build_name_overwrite_demand(5, RECVR, THEIRS)
    reply = NameService(Names()).receive(demand, local_ip=OURS, source=THEIRS)
    assert parse_nbns(reply).rcode == ACT_ERR


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (registration(BOB, OURS), "our own registration come back"),
        (registration(NetBIOSName(b"CAROL", 0x03)), "not our name"),
        (registration(WORKGROUP, nb_flags=NB_FLAG_G), "a group name is shared"),
        (registration(NetBIOSName(b"BOB", 0x03, b"other.scope")), "another scope"),
        (build_name_release_request(1, BOB, THEIRS), "a release is not a claim"),
    ],
)
def test_these_are_not_defended(packet, why):
    assert NameService(Names()).receive(packet, local_ip=OURS, source=THEIRS) is None, why


class RegistrarListener:
    """Hands what the name service receives to a Registrar, as RegistrationRunner does."""

    def __init__(self, registrar):
        self.registrar = registrar
        self.events = []

    def response_received(self, response, source):
        self.events += self.registrar.receive(response, source)


def test_the_name_service_hands_objections_to_the_registrar():
    registrar = Registrar(OURS, first_trn_id=9)
    listener = RegistrarListener(registrar)
    service = NameService(Names(), registrations=listener)
    registrar.register(NetBIOSName(b"CAROL", 0x03), 0.0)
    registrar.poll(0.0)
    carol = NetBIOSName(b"CAROL", 0x03)
    reply = build_negative_name_registration_response(9, carol, OURS)
    assert service.receive(reply, local_ip=OURS, source=THEIRS) is None
    assert listener.events == [NameConflict(carol, THEIRS, ACT_ERR)]


# --- the asyncio runner ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_runner_register_returns_once_the_name_is_ours_and_close_releases_it():
    sent: list[bytes] = []
    runner = RegistrationRunner(Registrar(OURS, retry_timeout=0.01), sent.append)
    await runner.register(BOB)
    kinds = [type(parse_nbns(data)) for data in sent]
    assert kinds == [NameRegistration] * 4, "three requests and the overwrite demand"
    await runner.close()
    released = [parse_nbns(data) for data in sent[4:]]
    assert [type(p) for p in released] == [NameRelease] * BCAST_REQ_RETRY_COUNT


@pytest.mark.asyncio
async def test_runner_register_fails_with_nerr_duplicate_name_on_an_objection():
    sent: list[bytes] = []
    runner = RegistrationRunner(Registrar(OURS, first_trn_id=3), sent.append)
    task = asyncio.create_task(runner.register(BOB))
    while not sent:
        await asyncio.sleep(0)
    runner.response_received(objection(3), THEIRS)
    with pytest.raises(NetError) as caught:
        await task
    assert caught.value.code == lmerr.NERR_DuplicateName == 2297
    assert THEIRS in caught.value.detail
    await runner.close()
    assert [type(parse_nbns(data)) for data in sent] == [NameRegistration], "nothing released"


@pytest.mark.asyncio
async def test_runner_close_fails_registrations_under_way():
    runner = RegistrationRunner(Registrar(OURS), lambda data: None)
    task = asyncio.create_task(runner.register(BOB))
    await asyncio.sleep(0)
    await runner.close()
    with pytest.raises(NetError) as caught:
        await task
    assert caught.value.code == lmerr.NERR_NetworkError
