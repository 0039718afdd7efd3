"""A whole Daemon with `backend = "netbios"` against the fake Netbios() (fake_netbios.py says
which documented behaviour each NCB follows): the same accept(), store and alias table as the
sockets path, with NetBT holding the ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from messengerd.config.options import DaemonConfig
from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.core.store.inbox import Inbox
from messengerd.daemon import Daemon
from messengerd.transport.sockets import ListenError
from messengerd.windows import nb30
from messengerd.wire import smb
from messengerd.wire.names import alias_name
from tests.unit.windows.fake_netbios import FakeNetbios
from tests.unit.windows.test_backend import ALICE16, D0_ALICE_TO_BOB_HI, until

pytestmark = pytest.mark.asyncio

BOB, CAROL, EVE = alias_name("BOB"), alias_name("CAROL"), alias_name("EVE")


def netbios_daemon(data_dir: Path, fake: FakeNetbios, *aliases: str) -> Daemon:
    config = DaemonConfig(
        backend="netbios",
        aliases=list(aliases),
        computer_name="HOST1",
        data_dir=data_dir,
        rpc_port=None,
        control="none",
    )
    return Daemon(config, [], netbios_api=fake)


async def test_a_session_message_is_stored_then_answered_through_ncbsend(tmp_path: Path):
    fake = FakeNetbios(lanas=(0, 3))
    daemon = netbios_daemon(tmp_path, fake, "BOB", "EVE")
    fake.hold_elsewhere(EVE.to_bytes16())
    await daemon.start()
    try:
        # EVE is another node's: NetMessageNameAdd semantics drop it, as the sockets path does.
        assert daemon.aliases.texts() == ["BOB"]
        assert daemon.ports == {}  # NetBT keeps 137-139; we opened none of them
        await until(lambda: fake.pending(3, nb30.NCBLISTEN) == 1)
        lsn = fake.call(3, BOB.to_bytes16(), ALICE16)
        fake.send_on_session(3, lsn, D0_ALICE_TO_BOB_HI)
        await until(lambda: fake.session(3, lsn).sent)
        reply = smb.parse_header(fake.session(3, lsn).sent[0])
        assert (reply.Command, reply.Status) == (smb.SMB_COM_SEND_MESSAGE, 0)
        [stored] = Inbox(tmp_path, create=False).query()
        assert (stored.sender, stored.recipient, stored.text) == ("ALICE", "BOB", "Hi")
        assert stored.peer == "ALICE<00> (LANA 3)"
    finally:
        await daemon.stop()
    assert all(not lana.names for lana in fake.lanas.values())


async def test_names_add_and_del_are_ncbaddname_and_ncbdelname_on_every_lana(tmp_path: Path):
    fake = FakeNetbios(lanas=(0, 3))
    daemon = netbios_daemon(tmp_path, fake, "BOB")
    await daemon.start()
    try:
        await daemon.add_alias("carol")
        assert all(CAROL.to_bytes16() in lana.names for lana in fake.lanas.values())
        fake.hold_elsewhere(EVE.to_bytes16(), lanas=(3,))
        with pytest.raises(NetError) as taken:
            await daemon.add_alias("EVE")
        assert taken.value.code == lmerr.NERR_DuplicateName
        # All or nothing: LANA 0, which took it, gives it back; the table never had it.
        assert all(EVE.to_bytes16() not in lana.names for lana in fake.lanas.values())
        assert daemon.aliases.texts() == ["BOB", "CAROL"]
        await daemon.delete_alias("CAROL")
        assert all(CAROL.to_bytes16() not in lana.names for lana in fake.lanas.values())
    finally:
        await daemon.stop()


async def test_an_api_that_does_not_work_is_a_one_line_error_pointing_at_the_sockets_backend(
    tmp_path: Path,
):
    fake = FakeNetbios(lanas=())
    daemon = netbios_daemon(tmp_path, fake, "BOB")
    with pytest.raises(ListenError) as failed:
        await daemon.start()
    assert "\n" not in str(failed.value)
    assert "NCBENUM found no LANA" in str(failed.value)
    assert "to use the sockets backend" in str(failed.value)
