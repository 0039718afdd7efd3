"""The transport floor: what asyncio on this machine costs per message with no protocol work.

`python bench/floor.py streams|protocol` listens on a free loopback port (printed on stdout)
and answers every session message frame with a fixed success reply for its command. It is
not a receiver: it parses nothing, stores nothing and shows nothing. bench/run.py loads it
exactly like messengerd, so the gap between the two is what messengerd's own work costs.
`protocol` has the shape of messengerd.transport.session (a bare asyncio.Protocol per
connection); `streams` is the shape it had before (a task per connection, StreamReader,
asyncio.timeout around every read, write then drain), kept for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys

from messengerd.core.limits import SESSION_IDLE_TIMEOUT
from messengerd.wire import nbss, smb

LOOPBACK = "127.0.0.1"
BACKLOG = 1024
"""As messengerd.transport.session's listener."""
READ_SIZE = 4096
"""Bytes read at a time by the `streams` variant."""
COMMAND_OFFSET = nbss.NBSS_HEADER_LENGTH + 4
"""The SMB Command byte in a frame: after the NBSS header and `FF 'SMB'` ([MS-CIFS] §2.2.3.1)."""


def _reply(command: int, words: bytes = b"") -> bytes:
    header = struct.pack("<4sBIBH", b"\xffSMB", command, 0, smb.SMB_FLAGS_REPLY, smb.REPLY_FLAGS2)
    body = header + bytes(smb.SMB_HEADER_LENGTH - len(header))
    body += bytes([len(words) // 2]) + words + b"\0\0"
    return struct.pack(">I", len(body)) + body


REPLIES = {
    smb.SMB_COM_SEND_MESSAGE: _reply(smb.SMB_COM_SEND_MESSAGE),
    smb.SMB_COM_SEND_START_MB_MESSAGE: _reply(smb.SMB_COM_SEND_START_MB_MESSAGE, b"\0\0"),
    smb.SMB_COM_SEND_TEXT_MB_MESSAGE: _reply(smb.SMB_COM_SEND_TEXT_MB_MESSAGE),
    smb.SMB_COM_SEND_END_MB_MESSAGE: _reply(smb.SMB_COM_SEND_END_MB_MESSAGE),
}
"""Success replies by command; the D5 reply carries MessageGroupId 0 (PROTOCOL.md §4)."""


def _frames(buffer: bytearray) -> list[int]:
    """Commands of the whole frames at the start of `buffer`, which loses them."""
    commands = []
    while len(buffer) >= nbss.NBSS_HEADER_LENGTH:
        end = nbss.NBSS_HEADER_LENGTH + (int.from_bytes(buffer[1:4], "big") & 0x1FFFF)
        if len(buffer) < end:
            break
        commands.append(buffer[COMMAND_OFFSET])
        del buffer[:end]
    return commands


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    buffer = bytearray()
    try:
        while True:
            async with asyncio.timeout(SESSION_IDLE_TIMEOUT):
                data = await reader.read(READ_SIZE)
            if not data:
                return
            buffer += data
            for command in _frames(buffer):
                writer.write(REPLIES.get(command, REPLIES[smb.SMB_COM_SEND_MESSAGE]))
            await writer.drain()
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


class _Session(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for command in _frames(self.buffer):
            self.transport.write(REPLIES.get(command, REPLIES[smb.SMB_COM_SEND_MESSAGE]))


async def main(mode: str) -> None:
    loop = asyncio.get_running_loop()
    if mode == "streams":
        server = await asyncio.start_server(_serve, LOOPBACK, 0, backlog=BACKLOG)
    else:
        server = await loop.create_server(_Session, LOOPBACK, 0, backlog=BACKLOG)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Until bench/run.py closes our stdin.
    await loop.run_in_executor(None, sys.stdin.readline)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("streams", "protocol"))
    asyncio.run(main(parser.parse_args().mode))
