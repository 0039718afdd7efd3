"""NcbRunner: ASYNCH NCBs with events, waited off the loop, cancellable and bounded.

The fake follows Microsoft's "Netbios function" and "NCB structure" pages (see
fake_netbios.py): pending NCBs return 0 with ncb_cmd_cplt NRC_PENDING, completion signals
the manual-reset event, NCBCANCEL completes the target with NRC_CMDCAN.
"""

from __future__ import annotations

import asyncio
import ctypes
import sys

import pytest

from messengerd.windows import nb30
from messengerd.windows.netbios import NcbRunner, Netapi32, NetbiosUnavailable
from tests.unit.windows.fake_netbios import FakeNetbios

BOB = b"BOB            \x03"


async def _reset(fake: FakeNetbios, runner: NcbRunner, lana: int = 0) -> None:
    reset = nb30.new_ncb(nb30.NCBRESET, lana=lana)
    nb30.set_name(reset.ncb_callname, nb30.RESET_CALLNAME)
    assert await runner.call(reset) == nb30.NRC_GOODRET


@pytest.mark.asyncio
async def test_an_asynch_ncb_completes_with_its_final_code_and_fields():
    fake = FakeNetbios()
    runner = NcbRunner(fake)
    await _reset(fake, runner)
    add = nb30.new_ncb(nb30.NCBADDNAME)
    nb30.set_name(add.ncb_name, BOB)
    assert await runner.submit(add) == nb30.NRC_GOODRET
    assert add.ncb_command == nb30.NCBADDNAME | nb30.ASYNCH
    assert add.ncb_retcode == add.ncb_cmd_cplt == nb30.NRC_GOODRET
    assert add.ncb_num == fake.lanas[0].names[BOB]
    assert fake.open_events == 0 and runner.pending == 0


@pytest.mark.asyncio
async def test_a_refusal_at_submission_is_returned_at_once():
    fake = FakeNetbios()
    runner = NcbRunner(fake)
    add = nb30.new_ncb(nb30.NCBADDNAME, lana=7)  # no such LANA
    assert await runner.submit(add) == nb30.NRC_BRIDGE
    add = nb30.new_ncb(nb30.NCBADDNAME, lana=0)  # before NCBRESET
    assert await runner.submit(add) == nb30.NRC_ENVNOTDEF
    assert fake.open_events == 0 and runner.pending == 0


@pytest.mark.asyncio
async def test_a_timed_out_receive_is_cancelled_with_ncbcancel():
    fake = FakeNetbios()
    runner = NcbRunner(fake)
    await _reset(fake, runner)
    listen = nb30.new_ncb(nb30.NCBLISTEN)
    nb30.set_name(listen.ncb_name, BOB)
    nb30.set_name(listen.ncb_callname, nb30.ANY_CALLER)
    assert await runner.submit(listen, timeout=0.05) == nb30.NRC_CMDCAN
    assert fake.pending(0, nb30.NCBLISTEN) == 0
    assert [name for name, _, _ in fake.calls][-1] == "NCBCANCEL"
    assert fake.open_events == 0 and runner.pending == 0


@pytest.mark.asyncio
async def test_cancelling_the_caller_cancels_the_ncb_and_waits_for_it():
    fake = FakeNetbios()
    runner = NcbRunner(fake)
    await _reset(fake, runner)
    buffer = ctypes.create_string_buffer(64)
    receive = nb30.new_ncb(nb30.NCBDGRECV)
    receive.ncb_num = nb30.ANY_NAME_NUMBER
    receive.ncb_buffer = ctypes.addressof(buffer)
    receive.ncb_length = 64
    task = asyncio.ensure_future(runner.submit(receive))
    while fake.pending(0, nb30.NCBDGRECV) == 0:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Completed by the driver (NRC_CMDCAN) before CancelledError reached us: the buffer
    # can be freed.
    assert receive.ncb_cmd_cplt == nb30.NRC_CMDCAN
    assert fake.pending(0, nb30.NCBDGRECV) == 0
    assert fake.open_events == 0 and runner.pending == 0


@pytest.mark.asyncio
async def test_cancelling_an_ncb_that_is_not_pending_answers_canoccr():
    fake = FakeNetbios()
    runner = NcbRunner(fake)
    await _reset(fake, runner)
    cancel = nb30.new_ncb(nb30.NCBCANCEL)
    add = nb30.new_ncb(nb30.NCBADDNAME)
    cancel.ncb_buffer = ctypes.addressof(add)
    # An NCB that is not pending (already completed, or never submitted): NRC_CANOCCR.
    assert await runner.call(cancel) == nb30.NRC_CANOCCR


@pytest.mark.asyncio
async def test_too_many_pending_ncbs_is_a_bug_not_a_hang():
    fake = FakeNetbios()
    runner = NcbRunner(fake, max_pending=1)
    await _reset(fake, runner)
    listen = nb30.new_ncb(nb30.NCBLISTEN)
    first = asyncio.ensure_future(runner.submit(listen))
    while fake.pending(0, nb30.NCBLISTEN) == 0:
        await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="1 NCBs already pending"):
        await runner.submit(nb30.new_ncb(nb30.NCBLISTEN))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


@pytest.mark.skipif(sys.platform == "win32", reason="Netbios() exists on Windows")
def test_the_real_api_says_what_to_do_off_windows():
    with pytest.raises(NetbiosUnavailable) as raised:
        Netapi32()
    assert str(raised.value) == (
        "the NetBIOS API (Netbios() in netapi32.dll) exists only on Windows: "
        "run without --backend netbios to use the sockets backend"
    )
