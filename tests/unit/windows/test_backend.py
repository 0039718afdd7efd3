"""The NetBIOS API backend against a fake Netbios() that follows Microsoft's documentation.

fake_netbios.py says which documented behaviour each NCB command follows (Netbios function,
NCB structure, nb30.h). The protocol machines are the real ones: what reaches accept() and
what goes back with NCBSEND are the bytes the sockets path would produce.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from messengerd.core import lmerr
from messengerd.core.aliases import AliasTable
from messengerd.core.lmerr import NetError
from messengerd.core.message import Outcome
from messengerd.protocol.events import MessageReceived
from messengerd.windows import nb30
from messengerd.windows.backend import NetbiosBackend, NetbiosBackendError
from messengerd.wire import datagram, smb
from messengerd.wire.names import alias_name
from tests.unit.windows.fake_netbios import FakeNetbios

pytestmark = pytest.mark.asyncio

BOB = alias_name("BOB")
ALICE16 = b"ALICE          \x00"
D0_ALICE_TO_BOB_HI = (
    bytes.fromhex("ff534d42d0")
    + bytes(27)
    + bytes.fromhex("00110004" + b"ALICE".hex() + "0004" + b"BOB".hex() + "00010200" + b"Hi".hex())
)
"""PROTOCOL.md §4's example D0, without its NBSS header (what one NCBRECV returns)."""


STORED = Outcome("stored", id=1)


class Recorder:
    """Daemon.accept()'s role: keep what arrives, answer with a chosen Outcome."""

    def __init__(self, outcome: Outcome = STORED) -> None:
        self.outcome = outcome
        self.messages: list[tuple[MessageReceived, str]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, message: MessageReceived, peer: str) -> Outcome:
        self.messages.append((message, peer))
        self.arrived.set()
        return self.outcome


async def until(condition, timeout: float = 5.0) -> None:
    """Wait for the driver's threads and the loop to make `condition()` true."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def started(fake: FakeNetbios, recorder: Recorder, **options) -> NetbiosBackend:
    table = AliasTable(["BOB"], workgroups=["WORKGROUP"])
    backend = NetbiosBackend(fake, table, recorder, **options)
    assert await backend.start(table.names()) == [BOB]
    for lana in fake.lanas:
        await until(lambda lana=lana: fake.pending(lana, nb30.NCBLISTEN) == 1)
    return backend


async def test_start_resets_every_lana_as_services_do_and_adds_the_aliases():
    fake = FakeNetbios(lanas=(0, 3))
    backend = await started(fake, Recorder())
    for lana in (0, 3):
        assert fake.lanas[lana].reset_callname == b"\xfe\x00\xfd\x00"
        assert list(fake.lanas[lana].names) == [BOB.to_bytes16()]
        await until(lambda lana=lana: fake.pending(lana, nb30.NCBDGRECV) == 1)
        await until(lambda lana=lana: fake.pending(lana, nb30.NCBDGRECVBC) == 1)
    await backend.stop()


async def test_a_single_block_message_is_accepted_then_answered_over_the_session():
    fake = FakeNetbios()
    recorder = Recorder()
    backend = await started(fake, recorder)
    lsn = fake.call(0, BOB.to_bytes16(), ALICE16)
    fake.send_on_session(0, lsn, D0_ALICE_TO_BOB_HI)
    await until(lambda: fake.session(0, lsn).sent)
    message, peer = recorder.messages[0]
    assert (message.sender, message.recipient, message.text, message.path) == (
        b"ALICE",
        b"BOB",
        b"Hi",
        "session",
    )
    assert peer == "ALICE<00> (LANA 0)"
    reply = smb.parse_header(fake.session(0, lsn).sent[0])
    assert (reply.Command, reply.Status, reply.Flags & smb.SMB_FLAGS_REPLY) == (0xD0, 0, 0x80)
    fake.caller_hangs_up(0, lsn)
    await until(lambda: backend.sessions == 0)
    await backend.stop()


async def test_a_multi_block_message_arrives_in_pieces_of_a_small_receive_buffer():
    fake = FakeNetbios()
    recorder = Recorder()
    backend = await started(fake, recorder, receive_buffer=16)  # every SMB is NRC_INCOMP
    text = b"x" * 300
    blocks = [text[at : at + 128] for at in range(0, len(text), 128)]
    lsn = fake.call(0, BOB.to_bytes16(), ALICE16)
    fake.send_on_session(0, lsn, smb.build_send_start_mb_message_request(b"ALICE", b"BOB"))
    await until(lambda: len(fake.session(0, lsn).sent) == 1)
    for block in blocks:
        fake.send_on_session(0, lsn, smb.build_send_text_mb_message_request(0, block))
    fake.send_on_session(0, lsn, smb.build_send_end_mb_message_request(0))
    await recorder.arrived.wait()
    assert recorder.messages[0][0].text == text
    await until(lambda: len(fake.session(0, lsn).sent) == 2 + len(blocks))
    assert all(smb.parse_header(reply).Status == 0 for reply in fake.session(0, lsn).sent)
    await backend.stop()


async def test_a_message_the_store_cannot_take_gets_errsrv_errnoroom():
    fake = FakeNetbios()
    backend = await started(fake, Recorder(Outcome("error", reason="disk full")))
    lsn = fake.call(0, BOB.to_bytes16(), ALICE16)
    fake.send_on_session(0, lsn, D0_ALICE_TO_BOB_HI)
    await until(lambda: fake.session(0, lsn).sent)
    reply = smb.parse_header(fake.session(0, lsn).sent[0])
    assert reply.Status == smb.ERROR_NO_ROOM.dos_status
    await backend.stop()


async def test_a_garbled_smb_ends_the_session_with_a_hangup(caplog):
    fake = FakeNetbios()
    backend = await started(fake, Recorder())
    lsn = fake.call(0, BOB.to_bytes16(), ALICE16)
    with caplog.at_level(logging.INFO, logger="messengerd.windows.backend"):
        fake.send_on_session(0, lsn, b"\x16\x03\x01 not an SMB at all")
        await until(lambda: fake.session(0, lsn).hung_up)
    assert backend.sessions == 0 or await until(lambda: backend.sessions == 0) is None
    assert any("session from ALICE<00> (LANA 0) closed" in line for line in caplog.messages)
    await backend.stop()


async def test_an_idle_session_is_hung_up():
    fake = FakeNetbios()
    backend = await started(fake, Recorder(), idle_timeout=0.1)
    lsn = fake.call(0, BOB.to_bytes16(), ALICE16)
    await until(lambda: fake.session(0, lsn).hung_up)
    await until(lambda: backend.sessions == 0)
    await backend.stop()


async def test_sessions_past_the_limit_wait_for_a_free_one():
    fake = FakeNetbios()
    backend = await started(fake, Recorder(), max_sessions=1)
    first = fake.call(0, BOB.to_bytes16(), ALICE16)
    await until(lambda: backend.sessions == 1)
    await asyncio.sleep(0.05)
    assert fake.pending(0, nb30.NCBLISTEN) == 0  # no listen while the one session is open
    fake.caller_hangs_up(0, first)
    await until(lambda: fake.pending(0, nb30.NCBLISTEN) == 1)
    await backend.stop()


async def test_a_mailslot_message_and_a_broadcast_reach_accept():
    fake = FakeNetbios()
    recorder = Recorder()
    backend = await started(fake, recorder)
    payload = datagram.build_messenger_payload(b"ALICE", b"BOB", b"hello")
    fake.datagram(0, ALICE16, BOB.to_bytes16(), datagram.build_mailslot_write(payload))
    broadcast = datagram.build_messenger_payload(b"ALICE", b"*", b"to all")
    fake.datagram(0, ALICE16, None, datagram.build_mailslot_write(broadcast))
    await until(lambda: len(recorder.messages) == 2)
    texts = sorted((m.text, m.path, peer) for m, peer in recorder.messages)
    assert texts == [
        (b"hello", "mailslot", "ALICE<00> (LANA 0)"),
        (b"to all", "mailslot", "ALICE<00> (LANA 0)"),
    ]
    await backend.stop()


async def test_a_datagram_for_someone_else_is_dropped():
    fake = FakeNetbios()
    recorder = Recorder()
    backend = await started(fake, recorder)
    payload = datagram.build_messenger_payload(b"ALICE", b"CAROL", b"not yours")
    fake.datagram(0, ALICE16, None, datagram.build_mailslot_write(payload))
    await until(lambda: fake.pending(0, nb30.NCBDGRECVBC) == 1 and not fake.lanas[0].datagrams)
    await asyncio.sleep(0.05)
    assert recorder.messages == []
    await backend.stop()


async def test_a_name_held_on_one_lana_is_added_nowhere():
    fake = FakeNetbios(lanas=(0, 1))
    backend = await started(fake, Recorder())
    carol = alias_name("CAROL")
    fake.hold_elsewhere(carol.to_bytes16(), lanas={1})
    with pytest.raises(NetError) as raised:
        await backend.add_name(carol)
    assert raised.value.code == lmerr.NERR_DuplicateName
    assert "NCBADDNAME CAROL<03> on LANA 1: NRC_INUSE (0x16)" in str(raised.value)
    assert carol.to_bytes16() not in fake.lanas[0].names  # undone where it had been added
    assert ("NCBDELNAME", 0, carol.to_bytes16()) in fake.calls
    await backend.stop()


async def test_delete_stops_listening_and_deletes_the_name_everywhere():
    fake = FakeNetbios(lanas=(0, 1))
    backend = await started(fake, Recorder())
    await backend.delete_name(BOB)
    for lana in (0, 1):
        assert fake.lanas[lana].names == {}
        assert fake.pending(lana, nb30.NCBLISTEN) == 0
    await backend.stop()


async def test_stop_leaves_nothing_pending_and_deletes_the_names():
    fake = FakeNetbios(lanas=(0, 1))
    backend = await started(fake, Recorder())
    fake.call(0, BOB.to_bytes16(), ALICE16)
    await until(lambda: backend.sessions == 1)
    await backend.stop()
    for lana in fake.lanas.values():
        assert lana.pending == [] and lana.names == {}
    assert fake.open_events == 0 and backend.runner.pending == 0


async def test_a_failed_reset_says_to_use_the_sockets_backend():
    fake = FakeNetbios(reset_code=nb30.NRC_SYSTEM)
    backend = NetbiosBackend(fake, AliasTable(["BOB"]), Recorder())
    with pytest.raises(NetbiosBackendError) as raised:
        await backend.start([BOB])
    assert str(raised.value).startswith(
        "NCBRESET on LANA 0 failed with NRC_SYSTEM (0x40): the NetBIOS API backend is experimental"
    )
    assert "run without --backend netbios to use the sockets backend" in str(raised.value)
    assert "\n" not in str(raised.value)


async def test_an_add_that_fails_for_another_reason_at_start_falls_back():
    fake = FakeNetbios()
    fake.add_code[0] = nb30.NRC_OSRESNOTAV
    backend = NetbiosBackend(fake, AliasTable(["BOB"]), Recorder())
    with pytest.raises(NetbiosBackendError, match=r"NCBADDNAME BOB<03> failed .*NERR_Network"):
        await backend.start([BOB])
    assert fake.open_events == 0


async def test_no_lana_means_netbt_is_off_everywhere():
    backend = NetbiosBackend(FakeNetbios(lanas=()), AliasTable(["BOB"]), Recorder())
    with pytest.raises(NetbiosBackendError, match="NCBENUM found no LANA"):
        await backend.start([BOB])


async def test_a_name_another_node_holds_at_start_is_dropped_with_a_warning(caplog):
    fake = FakeNetbios()
    fake.hold_elsewhere(BOB.to_bytes16())
    table = AliasTable(["BOB", "ALERTS"])
    backend = NetbiosBackend(fake, table, Recorder())
    with caplog.at_level(logging.WARNING, logger="messengerd.windows.backend"):
        added = await backend.start(table.names())
    assert added == [alias_name("ALERTS")]
    assert any(line.startswith("BOB<03> dropped: NERR_DuplicateName (2297)")
               for line in caplog.messages)  # fmt: skip
    await backend.stop()


class SlowToSubmit(FakeNetbios):
    """The fake, with each NCBRECV reaching Netbios() late, as a thread does that the system
    starts only after the caller has already given up on it."""

    def netbios(self, ncb) -> int:
        if ncb.ncb_command & ~nb30.ASYNCH == nb30.NCBRECV:
            threading.Event().wait(0.3)
        return super().netbios(ncb)


async def test_stopping_while_an_ncb_is_still_being_submitted_cancels_it_once_it_is(caplog):
    fake = SlowToSubmit()
    backend = await started(fake, Recorder())
    fake.call(0, BOB.to_bytes16(), ALICE16)
    await until(lambda: backend.sessions == 1)
    with caplog.at_level(logging.WARNING, logger="messengerd.windows.netbios"):
        await backend.stop()
    # An NCBCANCEL sent before its NCBRECV reached Netbios() finds nothing to cancel; the
    # NCBRECV, submitted after it, would then stay pending and stop() wait for it in vain.
    assert ("NCBRECV", 0) in [(name, lana) for name, lana, _ in fake.calls]
    assert fake.pending(0, nb30.NCBRECV) == 0
    assert "did not complete" not in caplog.text
