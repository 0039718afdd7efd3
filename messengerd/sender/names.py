"""Finding a message alias by broadcast name query (RFC 1002 §4.2.12-4.2.14, §5.1.1.2)."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable

from messengerd.config.options import NAME_SERVICE_PORT
from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import QueryResponse, build_name_query_request, parse_nbns

NAME_QUERY_RETRIES = 3
"""BCAST_REQ_RETRY_COUNT: broadcast name queries sent before giving up (RFC 1002 §6)."""
NAME_QUERY_INTERVAL = 0.25
"""BCAST_REQ_RETRY_TIMEOUT: seconds to wait for an answer to each query (RFC 1002 §6)."""


class _Answers(asyncio.DatagramProtocol):
    """Collects name service packets answering one NAME_TRN_ID."""

    def __init__(self, accept: Callable[[bytes], None]) -> None:
        self.accept = accept

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.accept(data)


async def resolve_name(
    name: NetBIOSName,
    *,
    broadcast: str,
    port: int = NAME_SERVICE_PORT,
    retries: int = NAME_QUERY_RETRIES,
    interval: float = NAME_QUERY_INTERVAL,
) -> str:
    """The address of `name` from a broadcast NAME QUERY to `broadcast`:`port`, sent up to
    `retries` times `interval` seconds apart; NERR_NameNotFound when nobody answers or a name
    server answers NAM_ERR (RFC 1002 §4.2.12-4.2.14, §5.1.1.2)."""
    loop = asyncio.get_running_loop()
    trn_id = secrets.randbelow(0x10000)
    answer: asyncio.Future[str] = loop.create_future()

    def accept(data: bytes) -> None:
        try:
            packet = parse_nbns(data)
        except WireError:
            return
        if not isinstance(packet, QueryResponse) or packet.trn_id != trn_id or answer.done():
            return
        if packet.name != name:
            return
        if not packet.positive:
            answer.set_exception(
                NetError(lmerr.NERR_NameNotFound, f"{broadcast} answered {name}: not found")
            )
        elif packet.entries:
            answer.set_result(packet.entries[0].address)

    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Answers(accept), family=socket.AF_INET, allow_broadcast=True
        )
    except OSError as exc:
        raise NetError(lmerr.NERR_NetworkError, f"no UDP socket for name queries: {exc}") from None
    query = build_name_query_request(trn_id, name, broadcast=True)
    try:
        for _ in range(retries):
            try:
                transport.sendto(query, (broadcast, port))
            except OSError as exc:
                raise NetError(
                    lmerr.NERR_NetworkError, f"cannot query {broadcast}:{port}: {exc}"
                ) from None
            try:
                async with asyncio.timeout(interval):
                    return await asyncio.shield(answer)
            except TimeoutError:
                continue
    finally:
        transport.close()
    raise NetError(
        lmerr.NERR_NameNotFound,
        f"no answer to {retries} name queries for {name} on {broadcast}:{port}",
    )
