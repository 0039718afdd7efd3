"""B-node registration, conflict, release, refresh (RFC 1002 §5.1.1) and defending our names."""

from __future__ import annotations

import pytest

from messengerd.decode.capture import read_segments
from messengerd.protocol.events import Dropped
from messengerd.protocol.nameservice import NameService, RegistrationAnswer
from messengerd.protocol.registration import (
    BCAST_REQ_RETRY_COUNT,
    BCAST_REQ_RETRY_TIMEOUT,
    Broadcast,
    LateObjection,
    NameConflict,
    NameRegistered,
    Registrar,
)
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
from tests import helpers
from tests.helpers import drain, reply_to, take

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


def poll(registrar: Registrar, now: float) -> list:
    """What the registrar does by `now`."""
    registrar.expire(now)
    return drain(registrar)


def answer(registrar: Registrar, response, source: str) -> list:
    """What an answer changes: the events it brings, less the Dropped that only say why
    an answer was ignored."""
    registrar.receive_answer(response, source)
    return [event for event in drain(registrar) if not isinstance(event, Dropped)]


def register_fully(registrar: Registrar, name: NetBIOSName, start: float = 0.0) -> list:
    registrar.register(name, start)
    events = []
    for step in range(BCAST_REQ_RETRY_COUNT + 1):
        events += poll(registrar, start + step * STEP)
    return events


# --- the Registrar machine ------------------------------------------------------------------


def test_registration_is_three_broadcasts_250_ms_apart_then_an_overwrite_demand():
    registrar = Registrar(OURS, first_trn_id=0x1234)
    registrar.register(BOB, 10.0)
    assert registrar.next_deadline() == 10.0
    sent = []
    for step in range(BCAST_REQ_RETRY_COUNT):
        now = 10.0 + step * STEP
        events = poll(registrar, now)
        assert [type(event) for event in events] == [Broadcast]
        sent += broadcasts(events)
        assert poll(registrar, now + STEP / 2) == [], "nothing between retries"
        assert registrar.next_deadline() == pytest.approx(now + STEP)
        assert registrar.state(BOB) == "registering"
    assert all(isinstance(p, NameRegistration) for p in sent)
    assert {(p.trn_id, p.flags, p.name, p.address) for p in sent} == {(0x1234, 0x2910, BOB, OURS)}
    final = poll(registrar, 10.0 + BCAST_REQ_RETRY_COUNT * STEP)
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
        sent += [e.data for e in poll(registrar, 5.0 + step * STEP) if isinstance(e, Broadcast)]
    assert sent == payloads


def test_an_objection_makes_the_name_someone_elses():
    registrar = Registrar(OURS, first_trn_id=7)
    registrar.register(BOB, 0.0)
    poll(registrar, 0.0)
    events = answer(registrar, objection(7), THEIRS)
    assert events == [NameConflict(BOB, THEIRS, ACT_ERR)]
    assert registrar.state(BOB) is None
    assert poll(registrar, 1.0) == [], "no more requests, no overwrite demand"
    assert registrar.next_deadline() is None


def test_an_objection_to_another_transaction_or_name_is_ignored():
    registrar = Registrar(OURS, first_trn_id=7)
    registrar.register(BOB, 0.0)
    poll(registrar, 0.0)
    assert answer(registrar, objection(8), THEIRS) == []
    assert answer(registrar, objection(7, RECVR), THEIRS) == []
    assert registrar.state(BOB) == "registering"


def test_a_positive_answer_does_not_end_a_b_node_registration():
    registrar = Registrar(OURS, first_trn_id=7)
    registrar.register(BOB, 0.0)
    poll(registrar, 0.0)
    positive = parse_nbns(build_name_registration_response(7, BOB, OURS))
    assert answer(registrar, positive, THEIRS) == []
    assert registrar.state(BOB) == "registering"


def test_an_objection_after_the_name_is_ours_is_too_late():
    registrar = Registrar(OURS, first_trn_id=7)
    register_fully(registrar, BOB)
    assert answer(registrar, objection(7), THEIRS) == [LateObjection(BOB, THEIRS, ACT_ERR)]
    assert registrar.registered() == [BOB]


def test_release_is_three_broadcasts_then_the_name_is_forgotten():
    registrar = Registrar(OURS, first_trn_id=1)
    register_fully(registrar, BOB)
    registrar.release(BOB, 2.0)
    sent = []
    for step in range(BCAST_REQ_RETRY_COUNT):
        sent += broadcasts(poll(registrar, 2.0 + step * STEP))
        assert registrar.busy == (step < BCAST_REQ_RETRY_COUNT - 1)
    assert all(isinstance(p, NameRelease) for p in sent)
    assert {(p.trn_id, p.flags, p.ttl) for p in sent} == {(2, 0x3010, 0)}
    assert registrar.state(BOB) is None
    assert poll(registrar, 10.0) == []


def test_releasing_a_name_still_being_registered_sends_nothing():
    registrar = Registrar(OURS)
    registrar.register(BOB, 0.0)
    poll(registrar, 0.0)
    registrar.release(BOB, 0.1)
    assert poll(registrar, 5.0) == []
    assert registrar.state(BOB) is None


def test_registering_again_while_releasing_stops_the_release():
    registrar = Registrar(OURS)
    register_fully(registrar, BOB)
    registrar.release(BOB, 2.0)
    poll(registrar, 2.0)
    registrar.register(BOB, 2.1)
    sent = broadcasts(poll(registrar, 2.1))
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
    assert poll(registrar, registered_at + 299) == []
    (refresh,) = broadcasts(poll(registrar, registered_at + 300))
    assert isinstance(refresh, NameRefresh)
    assert (refresh.opcode, refresh.flags, refresh.ttl) == (OPCODE_REFRESH, 0x4010, 600)
    (again,) = broadcasts(poll(registrar, registered_at + 600))
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
    ids = {p.name: p.trn_id for p in broadcasts(poll(registrar, 0.0))}
    assert ids == {BOB: 0xFFFF, RECVR: 0}


def test_release_all_releases_held_names_and_drops_pending_ones():
    registrar = Registrar(OURS)
    register_fully(registrar, BOB)
    registrar.register(RECVR, 5.0)
    registrar.release_all(6.0)
    sent = broadcasts(poll(registrar, 6.0))
    assert [(type(p), p.name) for p in sent] == [(NameRelease, BOB)]


# --- defending our names (the name service) -------------------------------------------------


def Names() -> helpers.Names:
    """A Directory: BOB and RECVR unique, WORKGROUP a group."""
    return helpers.Names(local=[BOB, RECVR], groups=[WORKGROUP])


def registration(name, address=THEIRS, *, trn_id=0x77, nb_flags=0):
    return build_name_registration_request(trn_id, name, address, nb_flags=nb_flags)


def test_another_nodes_registration_of_our_name_gets_act_err_0xad86():
    reply = reply_to(NameService(Names()), registration(BOB), local_ip=OURS, source=THEIRS)
    assert reply == build_negative_name_registration_response(0x77, BOB, THEIRS)
    answer = parse_nbns(reply)
    assert isinstance(answer, RegistrationResponse)
    assert (answer.trn_id, answer.flags, answer.rcode) == (0x77, 0xAD86, ACT_ERR)


def test_a_group_registration_of_our_unique_name_is_refused_too():
    reply = reply_to(
        NameService(Names()), registration(BOB, nb_flags=NB_FLAG_G), local_ip=OURS, source=THEIRS
    )
    assert parse_nbns(reply).rcode == ACT_ERR


def test_an_overwrite_demand_for_our_name_is_answered():
    demand = build_name_overwrite_demand(5, RECVR, THEIRS)
    reply = reply_to(NameService(Names()), demand, local_ip=OURS, source=THEIRS)
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
    assert reply_to(NameService(Names()), packet, local_ip=OURS, source=THEIRS) is None, why


def test_the_name_service_hands_objections_to_the_registrar():
    registrar = Registrar(OURS, first_trn_id=9)
    service = NameService(Names())
    carol = NetBIOSName(b"CAROL", 0x03)
    registrar.register(carol, 0.0)
    poll(registrar, 0.0)
    reply = build_negative_name_registration_response(9, carol, OURS)
    [event] = take(service, reply, source=(THEIRS, 137), local_ip=OURS)
    assert isinstance(event, RegistrationAnswer)
    assert answer(registrar, event.response, event.source) == [NameConflict(carol, THEIRS, ACT_ERR)]
