"""NDR 2.0 transfer syntax for the RPC interfaces ([C706] ch. 14, [MS-RPCE] 2.2.4).

Standard library only (shared/STYLE.md layering).  Interfaces declare their
structures and parameter lists with the types below, in IDL order, and call
``encode`` / ``decode``; the submodules are private.
"""

from smbca.rpc.ndr._stream import (
    FIRST_REFERENT_ID,
    RPC_X_BAD_STUB_DATA,
    NdrError,
    NdrReader,
    NdrWriter,
)
from smbca.rpc.ndr._types import (
    CONTEXT_HANDLE,
    NULL_HANDLE,
    U8,
    U16,
    U32,
    WSTRING,
    ConformantArray,
    ContextHandle,
    CountOf,
    FixedBytes,
    FixedWideString,
    IPv4,
    IPv6,
    NdrType,
    Params,
    Struct,
    UInt,
    Unique,
    WideString,
    decode,
    encode,
)

__all__ = [
    "CONTEXT_HANDLE", "FIRST_REFERENT_ID", "NULL_HANDLE", "RPC_X_BAD_STUB_DATA", "U8", "U16",
    "U32", "WSTRING", "ConformantArray", "ContextHandle", "CountOf", "FixedBytes",
    "FixedWideString", "IPv4", "IPv6", "NdrError", "NdrReader", "NdrType", "NdrWriter",
    "Params", "Struct", "UInt", "Unique", "WideString", "decode", "encode",
]
