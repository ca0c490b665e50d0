"""Wire constants of connection-oriented DCE/RPC ([C706] ch. 12, [MS-RPCE] 2.2.2).

Everything here is a plain enum or integer namespace: no behaviour, no I/O.
Names follow the specs (and Samba's ``librpc/idl/dcerpc.idl`` where the
specs only cite C706, which is not stored here).
"""

from enum import IntEnum, IntFlag

RPC_VERS = 5
"""Major protocol version; the only one these extensions accept ([MS-RPCE] 3.3.1.5.1)."""

RPC_VERS_MINORS = frozenset({0, 1})
"""Minor versions accepted on input; we always answer 5.0 ([MS-RPCE] 3.3.1.5.1)."""

DREP_LE_ASCII_IEEE = b"\x10\x00\x00\x00"
"""packed_drep for little-endian integers, ASCII characters, IEEE floats ([C706] 14.1)."""


class PType(IntEnum):
    """Connection-oriented PDU types ([C706] 12.6.4, [MS-RPCE] 2.2.2.10)."""

    REQUEST = 0
    RESPONSE = 2
    FAULT = 3
    BIND = 11
    BIND_ACK = 12
    BIND_NAK = 13
    ALTER_CONTEXT = 14
    ALTER_CONTEXT_RESP = 15
    AUTH3 = 16
    SHUTDOWN = 17
    CO_CANCEL = 18
    ORPHANED = 19


class PfcFlags(IntFlag):
    """pfc_flags of the common header ([C706] 12.6.3.1, [MS-RPCE] 2.2.2.3)."""

    FIRST_FRAG = 0x01
    LAST_FRAG = 0x02
    # 0x04 is PENDING_CANCEL on request/response/fault and SUPPORT_HEADER_SIGN on
    # bind, bind_ack, alter_context, alter_context_resp and auth3 ([MS-RPCE] 2.2.2.3).
    PENDING_CANCEL = 0x04
    SUPPORT_HEADER_SIGN = 0x04
    RESERVED_1 = 0x08
    CONC_MPX = 0x10
    DID_NOT_EXECUTE = 0x20
    MAYBE = 0x40
    OBJECT_UUID = 0x80


SINGLE_FRAGMENT = PfcFlags.FIRST_FRAG | PfcFlags.LAST_FRAG


class FaultStatus:
    """Status codes carried in fault PDUs ([C706] appendix N.2, [MS-RPCE] 3.1.1.5.5).

    Plain integers: they go straight into the 32-bit ``status`` field.
    """

    RPC_S_ACCESS_DENIED = 0x00000005
    RPC_S_CANNOT_SUPPORT = 0x000006E4
    RPC_X_BAD_STUB_DATA = 0x000006F7  # nca_s_fault_ndr ([MS-RPCE] 3.1.3.5.2)
    RPC_S_SEC_PKG_ERROR = 0x00000721
    NCA_S_FAULT_INVALID_TAG = 0x1C000006
    NCA_S_FAULT_CANCEL = 0x1C00000D
    NCA_S_FAULT_UNSPEC = 0x1C000012
    NCA_S_FAULT_CONTEXT_MISMATCH = 0x1C00001A
    NCA_S_FAULT_REMOTE_NO_MEMORY = 0x1C00001B
    NCA_S_OP_RNG_ERROR = 0x1C010002
    NCA_S_UNK_IF = 0x1C010003
    NCA_S_PROTO_ERROR = 0x1C01000B


class BindNakReason(IntEnum):
    """provider_reject_reason of bind_nak ([C706] 12.6.3.1, [MS-RPCE] 2.2.2.5)."""

    REASON_NOT_SPECIFIED = 0
    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2
    CALLED_PADDR_UNKNOWN = 3
    PROTOCOL_VERSION_NOT_SUPPORTED = 4
    DEFAULT_CONTEXT_NOT_SUPPORTED = 5
    USER_DATA_NOT_READABLE = 6
    NO_PSAP_AVAILABLE = 7
    AUTHENTICATION_TYPE_NOT_RECOGNIZED = 8
    INVALID_CHECKSUM = 9


class ContextResult(IntEnum):
    """p_cont_def_result_t ([C706] 12.6.3.1, [MS-RPCE] 2.2.2.4)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    PROVIDER_REJECTION = 2
    NEGOTIATE_ACK = 3


class ProviderReason(IntEnum):
    """p_provider_reason_t ([C706] 12.6.3.1)."""

    REASON_NOT_SPECIFIED = 0
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 1
    PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED = 2
    LOCAL_LIMIT_EXCEEDED = 3


class BindTimeFeatures(IntFlag):
    """BindTimeFeatureNegotiation(Response)Bitmask bits ([MS-RPCE] 2.2.2.14, 2.2.2.15)."""

    SECURITY_CONTEXT_MULTIPLEXING = 0x01
    KEEP_CONNECTION_ON_ORPHAN = 0x02


class AuthType(IntEnum):
    """auth_type of sec_trailer: security providers ([MS-RPCE] 2.2.1.1.7)."""

    NONE = 0x00
    GSS_NEGOTIATE = 0x09
    WINNT = 0x0A
    GSS_SCHANNEL = 0x0E
    GSS_KERBEROS = 0x10
    NETLOGON = 0x44
    DEFAULT = 0xFF


class AuthLevel(IntEnum):
    """auth_level of sec_trailer ([MS-RPCE] 2.2.1.1.8)."""

    DEFAULT = 0
    NONE = 1
    CONNECT = 2
    CALL = 3
    PKT = 4
    PKT_INTEGRITY = 5
    PKT_PRIVACY = 6
