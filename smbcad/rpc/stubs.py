"""Marshalling helpers the interface modules share over impacket's NDR types.

impacket's ``NDRCALL`` classes mirror the IDL of each interface; these
helpers turn undecodable stubs into RPC_X_BAD_STUB_DATA faults, give
pointers deterministic referent ids and convert SIDs and counted strings
between impacket's types and ours.
"""

from itertools import count
from typing import Any

from impacket.dcerpc.v5.dtypes import RPC_SID
from impacket.dcerpc.v5.ndr import NDR, NDRPOINTER, NDRPOINTERNULL

from smbca.rpc.dcerpc import FaultStatus, RpcFault
from smbcad.proto.fscc.security import SID_MAX_SUB_AUTHORITIES, Sid


def wstr(text: str) -> str:
    """impacket's LPWSTR wants the terminating NUL spelled out."""
    return text + "\x00"


def renumber_referents(node: Any, ids: "count[int]") -> None:
    """Give every non-NULL pointer a deterministic referent id.

    impacket draws referent ids from ``random``; unique pointers only need
    distinct non-zero ids ([C706] 14.3.11.3), so we number them the way
    Windows and Samba do (0x00020000, +4, ...) for reproducible bytes.
    """
    if isinstance(node, NDRPOINTER) and node.fields.get("ReferentID"):
        node.fields["ReferentID"] = next(ids)
    if isinstance(node, NDR):
        for value in node.fields.values():
            renumber_referents(value, ids)
    elif isinstance(node, list):
        for value in node:
            renumber_referents(value, ids)


def encode(response: NDR) -> bytes:
    renumber_referents(response, count(0x00020000, 4))
    return response.getData()


def bad_stub(message: str) -> RpcFault:
    return RpcFault(FaultStatus.RPC_X_BAD_STUB_DATA, message, did_not_execute=True)


def decode(request_type: type, stub: bytes) -> NDR:
    """Unmarshal [in] parameters; failure is RPC_X_BAD_STUB_DATA ([MS-RPCE] 3.1.3.5.2)."""
    try:
        return request_type(stub)
    except Exception as exc:  # impacket reports bad input with assorted exception types
        raise bad_stub(f"{request_type.__name__}: {exc}") from exc


def is_null(pointer: Any) -> bool:
    """A unique pointer impacket decoded as NULL."""
    return isinstance(pointer, NDRPOINTERNULL) or (
        isinstance(pointer, NDRPOINTER) and not pointer.fields.get("ReferentID"))


def sid_from_ndr(value: Any) -> Sid:
    """RPC_SID ([MS-DTYP] 2.4.2.3) -> Sid; a malformed one is a bad stub."""
    subs = tuple(value["SubAuthority"])
    if (value["Revision"] != 1 or value["SubAuthorityCount"] != len(subs)
            or len(subs) > SID_MAX_SUB_AUTHORITIES):
        raise bad_stub("malformed RPC_SID")
    return Sid(int.from_bytes(bytes(value["IdentifierAuthority"]), "big"), subs)


def sid_to_ndr(sid: Sid, target: Any = None) -> Any:
    """Fill ``target`` (an RPC_SID or a PRPC_SID's referent) from ``sid``."""
    value = RPC_SID() if target is None else target
    value["Revision"] = 1
    value["SubAuthorityCount"] = len(sid.sub_authorities)
    value["IdentifierAuthority"] = sid.authority.to_bytes(6, "big")
    value["SubAuthority"] = list(sid.sub_authorities)
    return value


def unicode_text(value: Any) -> str | None:
    """An RPC_UNICODE_STRING's text, honouring Length; None for a NULL buffer."""
    if is_null(value.fields["Data"]):
        return None
    length = value.fields["Length"]
    try:
        text = value["Data"]  # impacket decodes the UTF-16 on access
    except UnicodeDecodeError as exc:
        raise bad_stub("RPC_UNICODE_STRING buffer is not UTF-16") from exc
    if length % 2 or length > value.fields["MaximumLength"] or length // 2 > len(text):
        raise bad_stub("RPC_UNICODE_STRING Length does not fit its buffer")
    return text[:length // 2]


def handle_of(value: Any) -> bytes:
    """The 20 bytes of an [in] context handle (impacket yields bytes or its struct)."""
    return bytes(value) if isinstance(value, (bytes, bytearray)) else bytes(value.getData())
