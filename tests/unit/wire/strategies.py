"""hypothesis strategies for the fields the wire codecs take, shared by the codec tests."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from messengerd.wire.names import MAX_LABEL_LENGTH, NETBIOS_NAME_LENGTH, NetBIOSName

EQUIVALENCE = {"max_examples": 300, "deadline": None}
"""hypothesis settings of the codec-against-layer tests."""

scope_labels = st.binary(min_size=1, max_size=MAX_LABEL_LENGTH).filter(lambda raw: b"." not in raw)
"""One scope label: any bytes but a dot, which would split it in two (RFC 1001 §14.1)."""
scopes = st.one_of(
    st.just(b""),
    st.sampled_from([b"corp", b"corp.example.com"]),
    st.lists(scope_labels, min_size=1, max_size=3).map(b".".join),
)
netbios_names = st.builds(
    NetBIOSName,
    st.binary(max_size=NETBIOS_NAME_LENGTH).filter(lambda raw: not raw.endswith(b" ")),
    st.integers(0, 0xFF),
    scopes,
)
"""NetBIOS names of any 15 bytes and suffix, with and without a scope; trailing spaces are
padding, so a name never ends in one."""
ipv4_addresses = st.integers(0, 0xFFFFFFFF).map(lambda n: str(ipaddress.IPv4Address(n)))
uint8 = st.integers(0, 0xFF)
uint16 = st.integers(0, 0xFFFF)
uint32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """One of `seeds` after a few byte flips, overwrites, insertions, deletions, truncations."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if operation == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif not data:
            continue
        elif operation == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set":
            data[draw(st.integers(0, len(data) - 1))] = draw(uint8)
        elif operation == "delete":
            at = draw(st.integers(0, len(data) - 1))
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[draw(st.integers(0, len(data))) :]
    return bytes(data)
