"""Hostile peers on sockets: control requests to a real daemon, replies to a real sender.

Every control request line gets one JSON reply line and the daemon serves on; send_message
and resolve_name give a result or NetError within their bound, whatever the peer answers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from messengerd.background import DaemonThread
from messengerd.config.options import DaemonConfig
from messengerd.control.protocol import CONTROL_SOCKET, MAX_REPLY_BYTES, MAX_REQUEST_BYTES
from messengerd.core.lmerr import NetError
from messengerd.daemon import Daemon
from messengerd.sender import (
    prepare_message,
    resolve_name,
    send_message,
)
from messengerd.wire import nbss, smb
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName, alias_name
from messengerd.wire.nbns import (
    QueryResponse,
    build_negative_name_query_response,
    build_positive_name_query_response,
    parse_nbns,
)

REPLY_TIMEOUT = 5.0
"""Seconds to wait for a control reply; running out is a hang, not flakiness."""


def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few bytes set, flipped, inserted or cut, or cut short."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["set", "flip", "insert", "cut", "truncate"]))
        if action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif action == "truncate":
            del data[at:]
        elif at < len(data):
            data[at] = draw(st.integers(0, 255)) if action == "set" else data[at] ^ 0x80
    return bytes(data)


# --- the control channel ------------------------------------------------------------------


class ErrorLog(logging.Handler):
    """What messengerd logs at ERROR: a request that crashed into the connection's last guard."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


ERRORS = ErrorLog()


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    """The control socket of one real daemon, on its own loop in a thread, for the module."""
    data_dir = Path(tmp_path_factory.mktemp("control-fuzz")) / "data"
    ports = {"name_port": 0, "datagram_port": 0, "session_port": 0, "rpc_port": 0}
    config = DaemonConfig(
        bind="127.0.0.1", broadcast="127.255.255.255", **ports, aliases=["RECVR"],
        data_dir=data_dir, store=False, register=False, control="unix",
    )  # fmt: skip
    logging.getLogger("messengerd").addHandler(ERRORS)
    runner = DaemonThread(Daemon(config))
    runner.start()
    try:
        yield str(data_dir / CONTROL_SOCKET)
    finally:
        runner.stop()
        logging.getLogger("messengerd").removeHandler(ERRORS)


def converse(path: str, lines: list[bytes]) -> list[dict]:
    """Each line's reply, over one connection: one JSON object with a bool "ok" (and an int
    "code" when false) per line, nothing after, nothing logged as an error."""
    logged = len(ERRORS.records)
    replies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(REPLY_TIMEOUT)
        sock.connect(path)
        with sock.makefile("rb") as reader:
            for line in lines:
                try:
                    sock.sendall(line)
                    reply = reader.readline(MAX_REPLY_BYTES + 1)
                except TimeoutError:
                    raise AssertionError(
                        f"no reply in {REPLY_TIMEOUT} s to {line[:80]!r}"
                    ) from None
                assert reply.endswith(b"\n"), f"{line[:80]!r} got {reply[:80]!r}"
                replies.append(json.loads(reply))
            sock.shutdown(socket.SHUT_WR)
            assert reader.read() == b"", "a reply nobody asked for"
    assert ERRORS.records[logged:] == []
    for reply in replies:
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
        if not reply["ok"]:
            assert isinstance(reply.get("code"), int) and not isinstance(reply["code"], bool)
    return replies


STATUS = b'{"op": "status"}\n'
OPS = ["status", "names.add", "names.del", "names.list", "names.info"]
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
"""Any code points, lone surrogates included: JSON can carry them as escapes."""
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.integers(-(10**300), 10**300),
    st.floats(),
    ANY_TEXT,
    st.from_regex(r"[A-Za-z0-9 *._-]{0,17}", fullmatch=True),
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children),
    max_leaves=8,
)
"""JSON values, nested a few levels."""
REQUESTS = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(OPS), JSON.filter(lambda op: op != "subscribe"))},
    optional={
        key: JSON for key in ("id", "name", "level", "prefmaxlen", "resume_handle", "token", "x")
    },
)


def as_line(request: object, ascii_only: bool = True) -> bytes:
    # Unescaped, a lone surrogate is not UTF-8: the line is then bytes no decoder accepts.
    text = json.dumps(request, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass") + b"\n"


@st.composite
def long_line(draw: st.DrawFn) -> bytes:
    """A line near or past MAX_REQUEST_BYTES: a request padded out, or filler alone."""
    near = st.integers(MAX_REQUEST_BYTES - 24, MAX_REQUEST_BYTES + 4)
    size = draw(st.one_of(near, st.integers(MAX_REQUEST_BYTES, 4 * MAX_REQUEST_BYTES)))
    filler = draw(st.sampled_from([b"x", b"\\u00e9", b" ", b"\xff", b"\\"]))
    head = b'{"op": "status", "pad": "'
    body = (filler * size)[: max(0, size - len(head) - 3)]
    return draw(st.sampled_from([head + body + b'"}\n', body + b"\n", b"[" + body + b"\n"]))


REQUEST_LINES = st.builds(as_line, REQUESTS, st.booleans())
LINES = st.one_of(
    st.binary(max_size=200).map(lambda data: data.replace(b"\n", b"") + b"\n"),
    st.builds(as_line, JSON, st.booleans()),
    REQUEST_LINES,
    REQUEST_LINES.flatmap(lambda line: st.composite(lambda draw: mutate(draw, line[:-1]))()).map(
        lambda data: data.replace(b"\n", b"") + b"\n"
    ),
    long_line(),
)


def request_of(line: bytes) -> dict | None:
    """The request object the daemon reads from `line`, if it reads one."""
    try:
        request = json.loads(line.decode("utf-8"))
    except ValueError:
        return None
    return request if isinstance(request, dict) and len(line) <= MAX_REQUEST_BYTES else None


@settings(max_examples=120, deadline=None)
@given(st.lists(LINES, min_size=1, max_size=6))
def test_every_request_line_gets_one_reply_and_the_daemon_serves_on(control, lines):
    assert converse(control, [*lines, STATUS])[-1]["ok"] is True


@settings(max_examples=60, deadline=None)
@given(st.lists(REQUEST_LINES, max_size=6))
def test_a_plain_id_comes_back_and_no_other(control, lines):
    for line, reply in zip(lines, converse(control, lines), strict=True):
        request = request_of(line) or {}
        if isinstance(request.get("id"), str | int | float):
            assert json.dumps(reply["id"]) == json.dumps(request["id"])
        else:
            assert "id" not in reply


@settings(max_examples=30, deadline=None)
@given(st.fixed_dictionaries({"op": st.just("subscribe")}, optional={"id": JSON}), st.lists(LINES))
def test_subscribe_answers_once_then_ignores_input_until_the_client_goes(control, request, lines):
    logged = len(ERRORS.records)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(REPLY_TIMEOUT)
        sock.connect(control)
        with sock.makefile("rb") as reader:
            sock.sendall(as_line(request) + b"".join(lines))
            assert json.loads(reader.readline())["ok"] is True
            sock.shutdown(socket.SHUT_WR)
            assert reader.read() == b""
    assert ERRORS.records[logged:] == []
    assert converse(control, [STATUS])[0]["ok"] is True


@pytest.mark.parametrize("request_id", ["\ud800", "name\udfff"], ids=["alone", "after-text"])
def test_an_id_holding_a_lone_surrogate_comes_back(control, request_id):
    # Found by this fuzzer: the reply's UTF-8 encoding failed, and the connection with it.
    reply = converse(control, [as_line({"op": "status", "id": request_id})])[0]
    assert reply["ok"] is True and reply["id"] == request_id


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 2000 + b"]" * 2000,
        b'{"op": "status", "id": ' + b"[" * 990 + b"]" * 990 + b"}",
        b'{"op": ' + b"[" * 990 + b"]" * 990 + b"}",
    ],
    ids=["2000-arrays", "id-990-arrays", "op-990-arrays"],
)
def test_json_nested_past_the_recursion_limit_is_answered(control, line):
    # Found by this fuzzer: RecursionError in json.loads or in json.dumps echoing the id
    # dropped the connection. Not a property: Hypothesis raises the recursion limit (for
    # every thread) while it runs one, and 4 KiB of JSON cannot nest past its limit.
    converse(control, [line + b"\n", STATUS])


# --- the sender against a hostile receiver and name server ---------------------------------

SEND_TIMEOUT = 2.0
PEER_PATIENCE = 0.1
"""Seconds the hostile receiver waits for the sender's next frame before it hangs up: long on
loopback; when it runs out early, that is one more way a receiver may behave."""
CLOSE = None
"""In a receiver's script: hang up instead of answering."""

SHORT, LONG = "hello", "x" * 300
"""A text for one D0 (D5/D7/D6 when the D0 is refused), and one for D5, three D7, D6."""
OUTGOING = prepare_message("RECVR", SHORT)
D0 = nbss.session_message(
    smb.build_send_message_request(OUTGOING.sender, OUTGOING.recipient.name, OUTGOING.text)
)
D5 = nbss.session_message(
    smb.build_send_start_mb_message_request(OUTGOING.sender, OUTGOING.recipient.name)
)
D7 = nbss.session_message(smb.build_send_text_mb_message_request(7, OUTGOING.text))
D6 = nbss.session_message(smb.build_send_end_mb_message_request(7))


def answer(request: bytes, error: smb.SMBError | None = None) -> bytes:
    """A receiver's reply to a message command: success (group 7 for a D5), or `error`."""
    header = smb.parse_header(request[nbss.NBSS_HEADER_LENGTH :])
    reply = smb.build_error_reply(header, error) if error else smb.build_success_reply(header, 7)
    return nbss.session_message(reply)


POSITIVE = nbss.positive_response()
CONVERSATIONS = [
    (SHORT, [POSITIVE, answer(D0)]),
    (SHORT, [POSITIVE, answer(D0, smb.ERROR_UNKNOWN_SMB), POSITIVE, *map(answer, (D5, D7, D6))]),
    (LONG, [POSITIVE, *map(answer, (D5, D7, D7, D7, D6))]),
]
"""Texts and a good receiver's replies to them, in order."""
REPLIES = [
    POSITIVE,
    nbss.negative_response(),
    nbss.retarget_response("127.0.0.1"),
    nbss.keepalive(),
    *map(answer, (D0, D5, D7, D6)),
    answer(D0, smb.ERROR_NO_ROOM),
    answer(D0, smb.ERROR_INVALID_PARAMETER),
    answer(D5, smb.ERROR_MESSAGING_OFF),
]
"""Good replies to put in the wrong places."""


@st.composite
def hostile_conversation(draw: st.DrawFn) -> tuple[str, list[bytes | None]]:
    """A text and a good receiver's replies with one or two swapped, mutated, doubled, after a
    keepalive, random or a hang-up; a quarter of them cut short."""
    text, script = draw(st.sampled_from(CONVERSATIONS))
    hostile: list[bytes | None] = list(script)
    for at in draw(st.sets(st.integers(0, len(script) - 1), max_size=2)):
        seed = draw(st.sampled_from([script[at], *REPLIES]))
        hostile[at] = draw(
            st.one_of(
                st.sampled_from([seed, CLOSE, nbss.keepalive() + seed, seed + seed]),
                st.binary(max_size=64),
                st.composite(lambda draw, seed=seed: mutate(draw, seed))(),
            )
        )
    if draw(st.integers(0, 3)) == 0:
        del hostile[draw(st.integers(0, len(hostile))) :]
    return text, hostile


class Receiver:
    """A session service answering each frame with its script's next reply, across
    connections (the sender reconnects after a refused D0), then hanging up; with `hold`,
    keeping the session open until the sender goes."""

    def __init__(self, script: list[bytes | None], *, hold: bool = False) -> None:
        self.script = list(script)
        self.hold = hold

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while self.script:
                async with asyncio.timeout(None if self.hold else PEER_PATIENCE):
                    _, length = nbss.frame_header(await reader.readexactly(nbss.NBSS_HEADER_LENGTH))
                    await reader.readexactly(length)
                reply = self.script.pop(0)
                if reply is CLOSE:
                    return
                writer.write(reply)
                await writer.drain()
            while self.hold and await reader.read(4096):
                pass
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, WireError):
            pass
        finally:
            writer.close()


def run_bounded(main, bound: float):
    """asyncio.run(main) in a thread; an AssertionError when it outlasts `bound` (a hang,
    even one that blocks the loop), else its result or what it raised."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = asyncio.run(main)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"still running after {bound} s: a hang"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


async def send_to(receiver: Receiver, text: str, **options) -> str:
    """Send `text` via the session to `receiver`: "delivered ..." or the NetError's name."""
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    options = {"timeout": SEND_TIMEOUT, **options}
    try:
        delivery = await send_message("RECVR", text, port=port, via="session", **options)
    except NetError as exc:
        return exc.name
    finally:
        server.close()
    assert delivery.path == "session" and delivery.pieces >= 1
    return f"delivered in {delivery.pieces} piece(s)"


def bound(timeout: float) -> float:
    """The longest a send may take: two connects and at most eight replies, `timeout` each."""
    return 10 * timeout + 5


@settings(max_examples=80, deadline=None)
@given(hostile_conversation())
def test_a_hostile_receiver_gets_the_sender_to_say_net_error_or_delivered(conversation):
    text, script = conversation
    event(run_bounded(send_to(Receiver(script), text, host="127.0.0.1"), bound(SEND_TIMEOUT)))


@settings(max_examples=4, deadline=None)
@given(st.sampled_from(CONVERSATIONS), st.integers(0, 5), st.integers(0, 3))
def test_a_receiver_that_stops_mid_reply_costs_the_timeout_not_a_hang(conversation, at, cut):
    # Part of one reply, then silence on an open session: only the sender's timeout ends it.
    text, script = conversation
    at %= len(script)
    stalled = Receiver([*script[:at], script[at][:cut]], hold=True)
    outcome = run_bounded(send_to(stalled, text, host="127.0.0.1", timeout=0.5), bound(0.5))
    assert outcome == "NERR_NetworkError"


RECVR = alias_name("RECVR")
NAME_ANSWERS = [
    build_positive_name_query_response(0, RECVR, "127.0.0.1"),
    build_positive_name_query_response(0, RECVR, "192.0.2.7"),
    build_positive_name_query_response(0, NetBIOSName(b"RECVR", 0x20), "127.0.0.1"),
    build_negative_name_query_response(0, RECVR),
]
"""Answers to a query for RECVR<03>, with transaction id 0: the query's is XORed in."""
ANSWER_LISTS = st.lists(
    st.lists(
        st.one_of(
            st.sampled_from(NAME_ANSWERS),
            st.sampled_from(NAME_ANSWERS).flatmap(
                lambda seed: st.composite(lambda draw: mutate(draw, seed))()
            ),
            st.binary(max_size=80),
        ),
        max_size=3,
    ),
    max_size=3,
)
"""What the name server answers each of the (at most three) queries."""


class NameServer(asyncio.DatagramProtocol):
    """Answers the n-th query with the n-th list of answers, the query's transaction id XORed
    into each (a mutated id stays mutated); with `loopback_only`, drops a positive answer
    that would send the sender beyond loopback."""

    def __init__(self, answers: list[list[bytes]], *, loopback_only: bool) -> None:
        self.answers = list(answers)
        self.loopback_only = loopback_only

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        for hostile in self.answers.pop(0) if self.answers and len(data) >= 2 else []:
            reply = bytes(a ^ b for a, b in zip(hostile[:2], data, strict=False)) + hostile[2:]
            if not self.loopback_only or _leads_to_loopback(reply):
                self.transport.sendto(reply, addr)


def _leads_to_loopback(reply: bytes) -> bool:
    try:
        packet = parse_nbns(reply)
    except WireError:
        return True
    if not isinstance(packet, QueryResponse) or not packet.positive or not packet.entries:
        return True
    return ipaddress.IPv4Address(packet.entries[0].address).is_loopback


async def with_name_server(answers: list[list[bytes]], work, *, loopback_only: bool = False):
    """`await work(port)` while a NameServer answers on 127.0.0.1:port."""
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: NameServer(answers, loopback_only=loopback_only), local_addr=("127.0.0.1", 0)
    )
    try:
        return await work(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


async def resolve(port: int) -> str:
    """resolve_name against 127.0.0.1:port: "resolved" to an IPv4 address, or NetError's name."""
    try:
        address = await resolve_name(
            RECVR, broadcast="127.0.0.1", port=port, retries=3, interval=0.02
        )
    except NetError as exc:
        return exc.name
    ipaddress.IPv4Address(address)
    return "resolved"


@settings(max_examples=80, deadline=None)
@given(ANSWER_LISTS)
def test_a_hostile_name_server_gets_resolve_name_to_say_net_error_or_an_address(answers):
    event(run_bounded(with_name_server(answers, resolve), REPLY_TIMEOUT))


@settings(max_examples=15, deadline=None)
@given(ANSWER_LISTS, st.booleans())
def test_send_message_without_host_says_net_error_or_delivered(answers, then_a_good_answer):
    # Each unanswered query costs the sender an RFC 1002 retry (0.25 s); a good answer ends it.
    if then_a_good_answer and answers:
        answers[0].append(NAME_ANSWERS[0])

    async def send(port: int) -> str:
        receiver = Receiver([POSITIVE, answer(D0)])
        return await send_to(receiver, SHORT, broadcast="127.0.0.1", name_port=port)

    event(run_bounded(with_name_server(answers, send, loopback_only=True), bound(SEND_TIMEOUT) + 1))
