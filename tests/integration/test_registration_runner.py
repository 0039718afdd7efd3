"""RegistrationRunner: the registration machine on an event loop, with its broadcasts sent."""

from __future__ import annotations

import asyncio

import pytest

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.protocol.registration import (
    BCAST_REQ_RETRY_COUNT,
    Registrar,
)
from messengerd.transport.registration import RegistrationRunner
from messengerd.wire.nbns import NameRegistration, NameRelease, parse_nbns
from tests.unit.protocol.test_registration import BOB, OURS, THEIRS, objection


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
    runner.answer_received(objection(3), THEIRS)
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
