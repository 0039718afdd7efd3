"""The Messenger's RPC path as scapy layers: msgsvcsend's NetrSendMessage and ept_map over
connectionless DCE/RPC (scapy's `DceRpc4`), and the v4 bodies that are not calls (fault,
reject, fack, quit, quack). These are the reference definitions of `messengerd.wire.rpc`.

Importing this module teaches `DceRpc4` to dissect these bodies:
`DceRpc4(datagram)` gives `DceRpc4 / NetrSendMessage_Request`, `DceRpc4 / DceRpc4Fack`, and so
on, in the byte order the header's drep names. Stubs are NDR 2.0 (NDR64 is for ncacn only).
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from scapy.contrib.rtps.common_types import EField
from scapy.fields import (
    ByteField,
    FieldListField,
    IntField,
    ShortField,
    XIntField,
)
from scapy.layers.dcerpc import (
    DceRpc4,
    DceRpc4Payload,
    DceRpcOp,
    NDRConfVarStrNullField,
    NDRIntField,
    NDRPacket,
    register_dcerpc_interface,
)
from scapy.layers.msrpce.raw.ept import ept_map_Request, ept_map_Response
from scapy.packet import Packet

from messengerd.wire.rpc import (
    EPT_UUID,
    MSGSVCSEND_UUID,
    OPNUM_EPT_MAP,
    OPNUM_NETR_SEND_MESSAGE,
    PacketType,
)


def _byte_order(header: Packet | None) -> str:
    """ "<" or ">" for the DceRpc4 header below a body, from its drep."""
    if isinstance(header, DceRpc4) and header.endian == 0:
        return ">"
    return "<"


class _V4Stub:
    """An NDR stub under a DceRpc4 header: NDR 2.0, in the header's byte order."""

    # What each stub class sets, and what the NDR packet it is mixed into has.
    INTERFACE: ClassVar[UUID]
    OPNUM: ClassVar[int]
    PTYPE: ClassVar[int]
    underlayer: Packet | None
    ndr64: bool
    ndrendian: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("ndr64", False)
        super().__init__(*args, **kwargs)

    def _follow_header(self) -> None:
        if isinstance(self.underlayer, DceRpc4):
            self.ndr64 = False
            self.ndrendian = "big" if _byte_order(self.underlayer) == ">" else "little"

    def do_dissect(self, s: bytes) -> bytes:
        self._follow_header()
        return super().do_dissect(s)  # type: ignore[misc]  # the NDR packet it is mixed into

    def do_build(self) -> bytes:
        self._follow_header()
        return super().do_build()  # type: ignore[misc]  # the NDR packet it is mixed into

    @classmethod
    def can_handle(cls, payload: bytes, header: Packet | None) -> bool:
        """DceRpc4Payload's hook: True for this stub's interface, opnum and direction."""
        return (
            isinstance(header, DceRpc4)
            and header.if_id == cls.INTERFACE
            and header.opnum == cls.OPNUM
            and header.ptype == cls.PTYPE
        )


class NetrSendMessage_Request(_V4Stub, NDRPacket):
    """NetrSendMessage's [in] parameters: three top-level [string] char pointers, which NDR
    writes without referent ids ([MS-MSRP] §3.2.4.1)."""

    INTERFACE, OPNUM, PTYPE = MSGSVCSEND_UUID, OPNUM_NETR_SEND_MESSAGE, PacketType.REQUEST
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        NDRConfVarStrNullField("From", b""),
        NDRConfVarStrNullField("To", b""),
        NDRConfVarStrNullField("Text", b""),
    ]


class NetrSendMessage_Response(_V4Stub, NDRPacket):
    """NetrSendMessage's result, an error_status_t ([MS-MSRP] §3.2.4.1)."""

    INTERFACE, OPNUM, PTYPE = MSGSVCSEND_UUID, OPNUM_NETR_SEND_MESSAGE, PacketType.RESPONSE
    fields_desc = [NDRIntField("status", 0)]  # noqa: RUF012


class EptMap_Request(_V4Stub, ept_map_Request):
    """scapy's ept_map request (C706 Appendix O) under a connectionless header."""

    INTERFACE, OPNUM, PTYPE = EPT_UUID, OPNUM_EPT_MAP, PacketType.REQUEST


class EptMap_Response(_V4Stub, ept_map_Response):
    """scapy's ept_map response (C706 Appendix O) under a connectionless header."""

    INTERFACE, OPNUM, PTYPE = EPT_UUID, OPNUM_EPT_MAP, PacketType.RESPONSE


class _V4Body(Packet):
    """A non-call body: fields in the header's byte order, dispatched on ptype."""

    PTYPES: tuple[int, ...] = ()

    @property
    def endianness(self) -> str:
        """What EField reads to pick each field's byte order."""
        return _byte_order(self.underlayer)

    @classmethod
    def can_handle(cls, payload: bytes, header: Packet | None) -> bool:
        return isinstance(header, DceRpc4) and header.ptype in cls.PTYPES

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


class DceRpc4Status(_V4Body):
    """The body of a fault or reject: one status code (C706 §12.5.3, Appendix E)."""

    name = "DCE/RPC v4 - Status"
    PTYPES = (PacketType.FAULT, PacketType.REJECT)
    fields_desc = [EField(XIntField("status", 0))]  # noqa: RUF012


class DceRpc4Fack(_V4Body):
    """The body of a fack, or of a nocall that reports received fragments (C706 §12.5.3.4).

    With selack_len 0 it still carries one zero selack word, as the DCE reference sends it.
    """

    name = "DCE/RPC v4 - Fack"
    PTYPES = (PacketType.FACK, PacketType.NOCALL)
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        ByteField("vers", 1),
        ByteField("pad1", 0),
        EField(ShortField("window_size", 0)),
        EField(IntField("max_tsdu", 0)),
        EField(IntField("max_frag_size", 0)),
        EField(ShortField("serial_num", 0)),
        EField(ShortField("selack_len", 0)),
        FieldListField(
            "selack",
            [0],  # type: ignore[list-item]  # scapy's stubs type the default as fields
            EField(XIntField("", 0)),
            count_from=lambda pkt: max(1, pkt.selack_len),
        ),
    ]


class DceRpc4Quit(_V4Body):
    """The body of a cancel request (cl_cancel); an orphan quit has none (C706 §12.5.3)."""

    name = "DCE/RPC v4 - Quit"
    PTYPES = (PacketType.CL_CANCEL,)
    fields_desc = [EField(IntField("vers", 0)), EField(IntField("cancel_id", 0))]  # noqa: RUF012


class DceRpc4Quack(_V4Body):
    """The body of a cancel_ack answering a cancel request (C706 §12.5.3)."""

    name = "DCE/RPC v4 - Quack"
    PTYPES = (PacketType.CANCEL_ACK,)
    fields_desc = [  # noqa: RUF012 - scapy's declarative field list
        EField(IntField("vers", 0)),
        EField(IntField("cancel_id", 0)),
        ByteField("server_is_accepting", 0),
    ]


for _payload in (
    NetrSendMessage_Request,
    NetrSendMessage_Response,
    EptMap_Request,
    EptMap_Response,
    DceRpc4Status,
    DceRpc4Fack,
    DceRpc4Quit,
    DceRpc4Quack,
):
    DceRpc4Payload.register_possible_payload(_payload)

register_dcerpc_interface(
    name="msgsvcsend",
    uuid=MSGSVCSEND_UUID,
    version="1.0",
    opnums={OPNUM_NETR_SEND_MESSAGE: DceRpcOp(NetrSendMessage_Request, NetrSendMessage_Response)},
)
