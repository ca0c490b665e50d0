"""Verification trailer of request PDUs ([MS-RPCE] 2.2.2.13).

Windows appends an rpc_sec_verification_trailer after the stub data of (the
last fragment of) a request.  Its position is not encoded anywhere: like
Samba, the server looks for the 8-byte signature, 4-byte aligned, in the last
``MAX_SEARCH`` bytes of the stub and parses commands up to the one flagged
SEC_VT_COMMAND_END, which must end the stub.  Hand-written codec: the layout
is a tag/length list that no IDL here describes.
"""

import struct
from dataclasses import dataclass
from typing import Self

from smbca.rpc.dcerpc.elements import SyntaxId

SIGNATURE = bytes((0x8A, 0xE3, 0x13, 0x71, 0x02, 0xF4, 0x36, 0x71))
"""rpc_sec_verification_trailer.signature ([MS-RPCE] 2.2.2.13.1)."""
MAX_SEARCH = 1024
"""How far back from the end of the stub the signature is searched for."""

COMMAND_BITMASK_1 = 0x0001
COMMAND_PCONTEXT = 0x0002
COMMAND_HEADER2 = 0x0003
COMMAND_END = 0x4000
MUST_PROCESS_COMMAND = 0x8000
_COMMAND_TYPE = 0x3FFF
CLIENT_SUPPORT_HEADER_SIGNING = 0x00000001

_SEC_VT = struct.Struct("<HH")  # command, length
_BITMASK = struct.Struct("<I")
# PTYPE, Reserved1, Reserved2, drep, call_id, p_cont_id, opnum
_HEADER2 = struct.Struct("<BBH4sIHH")


@dataclass(frozen=True, slots=True, kw_only=True)
class Header2:
    """rpc_sec_vt_header2 ([MS-RPCE] 2.2.2.13.3): copies of request header fields."""

    ptype: int
    drep: bytes
    call_id: int
    p_cont_id: int
    opnum: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationTrailer:
    """The commands of one verification trailer ([MS-RPCE] 2.2.2.13.2-2.2.2.13.4)."""

    bitmask_1: int | None = None
    pcontext: tuple[SyntaxId, SyntaxId] | None = None  # (InterfaceId, TransferSyntax)
    header2: Header2 | None = None
    unknown_must_process: bool = False

    def encode(self) -> bytes:
        """Signature and commands, END on the last (for tests and clients)."""
        commands = []
        if self.bitmask_1 is not None:
            commands.append((COMMAND_BITMASK_1, _BITMASK.pack(self.bitmask_1)))
        if self.pcontext is not None:
            interface, transfer = self.pcontext
            commands.append((COMMAND_PCONTEXT, interface.encode() + transfer.encode()))
        if self.header2 is not None:
            h = self.header2
            commands.append((COMMAND_HEADER2, _HEADER2.pack(h.ptype, 0, 0, h.drep, h.call_id,
                                                            h.p_cont_id, h.opnum)))
        parts = [SIGNATURE]
        for index, (command, payload) in enumerate(commands):
            if index == len(commands) - 1:
                command |= COMMAND_END
            parts.append(_SEC_VT.pack(command, len(payload)) + payload)
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> Self | None:
        """Commands after the signature, or None unless they end exactly at ``data``'s end."""
        fields: dict = {}
        offset = 0
        while offset + _SEC_VT.size <= len(data):
            command, length = _SEC_VT.unpack_from(data, offset)
            offset += _SEC_VT.size
            payload = data[offset:offset + length]
            offset += length
            if len(payload) != length or length % 4:
                return None
            kind = command & _COMMAND_TYPE
            if kind == COMMAND_BITMASK_1 and length == _BITMASK.size:
                fields["bitmask_1"] = _BITMASK.unpack(payload)[0]
            elif kind == COMMAND_PCONTEXT and length == 2 * SyntaxId.SIZE:
                interface, at = SyntaxId.decode_from(payload, 0)
                fields["pcontext"] = (interface, SyntaxId.decode_from(payload, at)[0])
            elif kind == COMMAND_HEADER2 and length == _HEADER2.size:
                ptype, _, _, drep, call_id, context_id, opnum = _HEADER2.unpack(payload)
                fields["header2"] = Header2(ptype=ptype, drep=drep, call_id=call_id,
                                            p_cont_id=context_id, opnum=opnum)
            elif command & MUST_PROCESS_COMMAND:
                fields["unknown_must_process"] = True
            if command & COMMAND_END:
                return cls(**fields) if offset == len(data) else None
        return None


def split_verification_trailer(stub: bytes) -> tuple[bytes, VerificationTrailer | None]:
    """Stub data without its verification trailer, and the parsed trailer if any."""
    start = max(0, len(stub) - MAX_SEARCH)
    at = stub.find(SIGNATURE, start)
    while at >= 0:
        if at % 4 == 0:
            trailer = VerificationTrailer.parse(stub[at + len(SIGNATURE):])
            if trailer is not None:
                return stub[:at], trailer
        at = stub.find(SIGNATURE, at + 1)
    return stub, None
