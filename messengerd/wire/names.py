"""NetBIOS names: the 16-byte form, first-level encoding (RFC 1001 §14.1) and message aliases."""

from __future__ import annotations

from dataclasses import dataclass

from messengerd.core.visible import visible_text
from messengerd.wire.errors import WireError

NETBIOS_NAME_LENGTH = 15
"""Bytes of a NetBIOS name before its suffix byte (RFC 1001 §14)."""
ENCODED_LABEL_LENGTH = 32
"""A 16-byte name becomes 32 letters under first-level encoding (RFC 1001 §14.1)."""
MAX_ENCODED_NAME_LENGTH = 255
"""A whole encoded name with its scope labels, as for a DNS name (RFC 1001 §14.1, RFC 883)."""
MAX_LABEL_LENGTH = 63
"""Longest scope label (RFC 883 §3.1 via RFC 1002 §4.1)."""

MESSENGER_SUFFIX = 0x03
WORKSTATION_SUFFIX = 0x00
SERVER_SUFFIX = 0x20

WILDCARD_NAME = b"*" + b"\x00" * NETBIOS_NAME_LENGTH
"""The node status question name `*` padded with NULs (RFC 1002 §4.2.17)."""


@dataclass(frozen=True, order=True)
class NetBIOSName:
    """A NetBIOS name: 15 space-padded bytes plus a suffix byte, and an optional scope."""

    name: bytes
    suffix: int = MESSENGER_SUFFIX
    scope: bytes = b""

    def __post_init__(self) -> None:
        if len(self.name) > NETBIOS_NAME_LENGTH:
            raise WireError(f"NetBIOS name {self.name!r} is longer than {NETBIOS_NAME_LENGTH}")
        if not 0 <= self.suffix <= 0xFF:
            raise WireError(f"NetBIOS suffix {self.suffix} is not a byte")
        object.__setattr__(self, "name", self.name.rstrip(b" "))

    @classmethod
    def from_bytes16(cls, raw: bytes, scope: bytes = b"") -> NetBIOSName:
        """The name held in 16 raw bytes: 15 name bytes and the suffix."""
        if len(raw) != NETBIOS_NAME_LENGTH + 1:
            raise WireError(f"a raw NetBIOS name has 16 bytes, not {len(raw)}")
        return cls(raw[:NETBIOS_NAME_LENGTH], raw[NETBIOS_NAME_LENGTH], scope)

    def to_bytes16(self) -> bytes:
        """The 16 raw bytes: the name padded with spaces, then the suffix."""
        return self.name.ljust(NETBIOS_NAME_LENGTH, b" ") + bytes([self.suffix])

    def encode(self) -> bytes:
        """The wire form: first-level encoded, then scope labels, then the root label."""
        return encode_first_level(self.to_bytes16(), self.scope)

    def text(self, codepage: str = "cp850") -> str:
        """The name without padding, decoded from the OEM code page."""
        return self.name.decode(codepage, errors="replace")

    def __str__(self) -> str:
        # NUL padding (the node status wildcard `*`) is not part of what a person reads.
        shown = self.name.rstrip(b"\x00").decode("cp850", errors="replace")
        # A name off the wire can hold any byte: in a log line its controls are made visible.
        return f"{visible_text(shown)}<{self.suffix:02X}>"


def encode_first_level(raw16: bytes, scope: bytes = b"") -> bytes:
    """First-level encode 16 raw bytes and append dotted `scope` as labels (RFC 1001 §14.1)."""
    if len(raw16) != NETBIOS_NAME_LENGTH + 1:
        raise WireError(f"a raw NetBIOS name has 16 bytes, not {len(raw16)}")
    letters = bytearray([ENCODED_LABEL_LENGTH])
    for byte in raw16:
        letters += bytes([0x41 + (byte >> 4), 0x41 + (byte & 0x0F)])
    for label in scope.split(b".") if scope else ():
        if not 0 < len(label) <= MAX_LABEL_LENGTH:
            raise WireError(f"scope label {label!r} is empty or too long")
        letters += bytes([len(label)]) + label
    letters += b"\x00"
    if len(letters) > MAX_ENCODED_NAME_LENGTH:
        raise WireError("encoded NetBIOS name with scope is longer than 255 bytes")
    return bytes(letters)


def decode_first_level(data: bytes, offset: int = 0) -> tuple[NetBIOSName, int]:
    """Decode the encoded name at `offset`; return it and the offset just past it.

    Compressed label pointers are not followed: RFC 1002 uses them only in resource
    records that point back at the question, which callers handle themselves.
    """
    if offset >= len(data) or data[offset] != ENCODED_LABEL_LENGTH:
        raise WireError("encoded NetBIOS name does not start with a 32-byte label")
    start = offset + 1
    letters = data[start : start + ENCODED_LABEL_LENGTH]
    if len(letters) != ENCODED_LABEL_LENGTH:
        raise WireError("encoded NetBIOS name is truncated")
    raw = bytearray()
    for high, low in zip(letters[::2], letters[1::2], strict=True):
        if not (0x41 <= high <= 0x50 and 0x41 <= low <= 0x50):
            raise WireError("encoded NetBIOS name has a letter outside A-P")
        raw.append(((high - 0x41) << 4) | (low - 0x41))
    position = start + ENCODED_LABEL_LENGTH
    labels: list[bytes] = []
    while True:
        if position >= len(data):
            raise WireError("encoded NetBIOS name has no root label")
        length = data[position]
        position += 1
        if length == 0:
            break
        if length > MAX_LABEL_LENGTH:
            raise WireError(f"scope label length {length} is not a plain label")
        label = data[position : position + length]
        if len(label) != length:
            raise WireError("scope label is truncated")
        if b"." in label:
            # The scope is kept dotted, so a dot inside a label would re-encode differently.
            raise WireError("scope label contains a dot")
        labels.append(label)
        position += length
        if position - offset > MAX_ENCODED_NAME_LENGTH:
            raise WireError("encoded NetBIOS name with scope is longer than 255 bytes")
    return NetBIOSName.from_bytes16(bytes(raw), b".".join(labels)), position


def oem_name(text: str, codepage: str = "cp850") -> bytes:
    """`text` as NetMessageNameAdd stores it: upper case, in the OEM code page ([MS-MSRP] §3.1.4.6).

    Raises WireError when the name is empty, not representable, or longer than 15 bytes.
    """
    if not text:
        raise WireError("a NetBIOS name cannot be empty")
    try:
        raw = text.upper().encode(codepage)
    except UnicodeEncodeError as exc:
        raise WireError(f"name {text!r} has characters outside code page {codepage}") from exc
    if not raw.strip(b" ") or b"\x00" in raw:
        # Padding is stripped, so blanks would make an empty name; a NUL would cut it short.
        raise WireError(f"name {text!r} is blank or holds a NUL")
    if len(raw) > NETBIOS_NAME_LENGTH:
        raise WireError(f"name {text!r} is {len(raw)} bytes; at most {NETBIOS_NAME_LENGTH}")
    return raw


def alias_name(text: str, codepage: str = "cp850") -> NetBIOSName:
    """The messenger alias `TEXT<03>` for a user-given name."""
    return NetBIOSName(oem_name(text, codepage), MESSENGER_SUFFIX)


def recipient_name(raw: bytes, codepage: str = "cp850") -> NetBIOSName | None:
    """The alias a message's To field addresses, or None when it cannot be one.

    The To field is an OEM string as the sender typed it; Windows upper-cased it before
    lookup, so compare in upper case through the code page, not with bytes.upper().
    """
    try:
        return alias_name(raw.decode(codepage), codepage)
    except (WireError, UnicodeError, LookupError):
        return None
