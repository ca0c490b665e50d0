"""[MS-SRVS] srvsvc: the calls share browsing needs (shared/STYLE.md rule 11).

Types first, then calls in opnum order, then ``OPNUMS`` and the
``{opnum: handler}`` registration.  The NDR stubs use impacket's
``impacket.dcerpc.v5.srvs`` types, which mirror the IDL ([MS-SRVS] 6); the
only hand-written bytes answer an info level the IDL's unions have no arm
for (see ``_invalid_level``).

``smbclient -L`` and Windows Explorer call NetrShareEnum at level 1;
``net rpc share`` / ``rpcclient`` use NetrShareGetInfo and NetrServerGetInfo.
Every other opnum faults with nca_s_op_rng_error.
"""

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from impacket.dcerpc.v5 import srvs
from impacket.dcerpc.v5.dtypes import NULL
from impacket.dcerpc.v5.ndr import NDR

from smbca.rpc.dcerpc import CallContext, FaultStatus, RpcFault, RpcInterface, SyntaxId
from smbcad.rpc.stubs import decode, encode, wstr

# -- types ------------------------------------------------------------------

SRVSVC_SYNTAX = SyntaxId.of("4b324fc8-1670-01d3-1278-5a47bf6ee188", 3, 0)
"""Interface UUID and version 3.0 ([MS-SRVS] 1.9)."""

# 2.2.2.4 Share Types
STYPE_DISKTREE = 0x00000000
STYPE_PRINTQ = 0x00000001
STYPE_DEVICE = 0x00000002
STYPE_IPC = 0x00000003
STYPE_CLUSTER_FS = 0x02000000
STYPE_CLUSTER_SOFS = 0x04000000
STYPE_CLUSTER_DFS = 0x08000000
STYPE_TEMPORARY = 0x40000000
STYPE_SPECIAL = 0x80000000
_STYPE_CLUSTER_BITS = STYPE_CLUSTER_FS | STYPE_CLUSTER_SOFS | STYPE_CLUSTER_DFS

# 2.2.2.5 Client-Side Caching (CSC) States and 2.2.4.29 SHARE_INFO_1005 flags
CSC_CACHE_MANUAL_REINT = 0x00
CSC_CACHE_AUTO_REINT = 0x10
CSC_CACHE_VDO = 0x20
CSC_CACHE_NONE = 0x30
SHI1005_FLAGS_ACCESS_BASED_DIRECTORY_ENUM = 0x00000800
SHI1005_FLAGS_ENABLE_CA = 0x00004000
SHI1005_FLAGS_ENCRYPT_DATA = 0x00008000

# 2.2.2.6 Platform IDs and 2.2.2.7 Software Type Flags
PLATFORM_ID_NT = 500
SV_TYPE_WORKSTATION = 0x00000001
SV_TYPE_SERVER = 0x00000002
SV_TYPE_NT = 0x00001000
SV_TYPE_SERVER_NT = 0x00008000

# 2.2.2.10 Common Error Codes (the NET_API_STATUS return values)
NERR_SUCCESS = 0x00000000
ERROR_ACCESS_DENIED = 0x00000005
ERROR_INVALID_PARAMETER = 0x00000057
ERROR_INVALID_LEVEL = 0x0000007C
ERROR_MORE_DATA = 0x000000EA
NERR_NET_NAME_NOT_FOUND = 0x00000906  # NERR_NetNameNotFound, 2310

MAX_PREFERRED_LENGTH = 0xFFFFFFFF
"""PreferedMaximumLength meaning "everything" (2.2.2.2, -1 as a DWORD)."""
SHI_USES_UNLIMITED = 0xFFFFFFFF
"""shi*_max_uses of a share without a connection limit."""


@dataclass(frozen=True, slots=True)
class ShareInfo:
    """A share as srvsvc reports it (the Share of [MS-SRVS] 3.1.1.7, reduced).

    ``share_type`` is an STYPE_* value, e.g. STYPE_IPC | STYPE_SPECIAL for
    IPC$; ``path`` is the local (POSIX) path; ``is_ca`` marks continuously
    available shares.
    """

    name: str
    share_type: int
    comment: str = ""
    path: str = ""
    is_ca: bool = False

    @property
    def wire_type(self) -> int:
        """shi*_type: the cluster bits are always cleared remotely (3.1.4.8, 3.1.4.10)."""
        return self.share_type & ~_STYPE_CLUSTER_BITS

    @property
    def flags(self) -> int:
        """shi1005_flags / shi501_flags: manual caching, plus ENABLE_CA for CA shares (2.2.4.29)."""
        return CSC_CACHE_MANUAL_REINT | (SHI1005_FLAGS_ENABLE_CA if self.is_ca else 0)

    @property
    def windows_path(self) -> str:
        """shi*_path in Windows form, as Samba shows it: ``/srv/a`` -> ``C:\\srv\\a``."""
        return "C:" + self.path.replace("/", "\\") if self.path else ""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The ServerConfiguration.ServerInfo103 fields we report ([MS-SRVS] 3.1.1.4, 2.2.4.40-42)."""

    name: str
    comment: str = ""
    version_major: int = 10
    version_minor: int = 0
    server_type: int = SV_TYPE_WORKSTATION | SV_TYPE_SERVER | SV_TYPE_NT | SV_TYPE_SERVER_NT
    disc_minutes: int = 15
    announce_seconds: int = 240
    anndelta_ms: int = 3000


ShareProvider = Callable[[], Sequence[ShareInfo]]
"""Returns the current ShareList, in the order shares were added (3.1.4.8)."""

_NULL_RESULT = struct.Struct("<III")  # union discriminant, NULL arm pointer, return value


def _share_info_0(share: ShareInfo) -> NDR:
    info = srvs.SHARE_INFO_0()
    info["shi0_netname"] = wstr(share.name)
    return info


def _share_info_1(share: ShareInfo) -> NDR:
    info = srvs.SHARE_INFO_1()
    info["shi1_netname"] = wstr(share.name)
    info["shi1_type"] = share.wire_type
    info["shi1_remark"] = wstr(share.comment)
    return info


def _fill_2(info: NDR, prefix: str, share: ShareInfo) -> NDR:
    """The fields SHARE_INFO_2, _502_I and _503_I share (2.2.4.24, 2.2.4.26, 2.2.4.27)."""
    info[f"{prefix}_netname"] = wstr(share.name)
    info[f"{prefix}_type"] = share.wire_type
    info[f"{prefix}_remark"] = wstr(share.comment)
    info[f"{prefix}_permissions"] = 0
    info[f"{prefix}_max_uses"] = SHI_USES_UNLIMITED
    info[f"{prefix}_current_uses"] = 0
    info[f"{prefix}_path"] = wstr(share.windows_path)
    info[f"{prefix}_passwd"] = NULL
    return info


def _share_info_2(share: ShareInfo) -> NDR:
    return _fill_2(srvs.SHARE_INFO_2(), "shi2", share)


def _share_info_501(share: ShareInfo) -> NDR:
    info = srvs.SHARE_INFO_501()
    info["shi501_netname"] = wstr(share.name)
    info["shi501_type"] = share.wire_type
    info["shi501_remark"] = wstr(share.comment)
    info["shi501_flags"] = share.flags
    return info


def _share_info_502(share: ShareInfo) -> NDR:
    info = _fill_2(srvs.SHARE_INFO_502(), "shi502", share)
    info["shi502_reserved"] = 0
    info["shi502_security_descriptor"] = NULL  # no share ACLs yet
    return info


def _share_info_503(share: ShareInfo) -> NDR:
    info = _fill_2(srvs.SHARE_INFO_503(), "shi503", share)
    info["shi503_servername"] = wstr("*")  # not scoped to a server name (3.1.1.7)
    info["shi503_reserved"] = 0
    info["shi503_security_descriptor"] = NULL
    return info


def _share_info_1005(share: ShareInfo) -> NDR:
    info = srvs.SHARE_INFO_1005()
    info["shi1005_flags"] = share.flags
    return info


_ENUM_LEVELS: Mapping[int, Callable[[ShareInfo], NDR]] = MappingProxyType({
    0: _share_info_0, 1: _share_info_1, 2: _share_info_2,
    501: _share_info_501, 502: _share_info_502, 503: _share_info_503,
})
"""SHARE_ENUM_UNION arms (2.2.3.5) and how to fill one entry."""
_GET_INFO_LEVELS: Mapping[int, Callable[[ShareInfo], NDR]] = MappingProxyType(
    {**_ENUM_LEVELS, 1005: _share_info_1005})
"""SHARE_INFO arms NetrShareGetInfo answers (3.1.4.10)."""
_ENUM_FIXED_BYTES = MappingProxyType({0: 4, 1: 12, 2: 32, 501: 16, 502: 40, 503: 44})
"""Fixed part of one entry, for PreferedMaximumLength accounting."""


def _entry_size(share: ShareInfo, level: int) -> int:
    """Approximate marshalled size of one enumerated entry (strings as UTF-16 + NUL)."""
    strings = [share.name]
    if level != 0:
        strings.append(share.comment)
    if level in (2, 502, 503):
        strings.append(share.windows_path)
    return _ENUM_FIXED_BYTES[level] + sum(12 + 2 * (len(text) + 1) for text in strings)


def _invalid_level(level: int, error: int = ERROR_INVALID_LEVEL) -> bytes:
    """[out] union with no arm for ``level``: discriminant, NULL pointer, return value.

    Hand-written because the IDL union has no default arm to express this
    (impacket refuses unknown tags); a NULL pointer arm is how Windows
    answers ERROR_INVALID_LEVEL.
    """
    return _NULL_RESULT.pack(level, 0, error)


def _optional(value: Any) -> Any:
    """impacket yields b"" for a NULL unique pointer; map that to None."""
    return None if value == b"" else value


# -- calls, in opnum order ------------------------------------------------


class SrvsvcServer:
    """The srvsvc manager routines over a share provider and the server's configuration."""

    def __init__(self, shares: ShareProvider, config: ServerConfig) -> None:
        self._shares = shares
        self._config = config

    def netr_share_enum(self, stub: bytes, call: CallContext) -> bytes:
        """NetrShareEnum, opnum 15 ([MS-SRVS] 3.1.4.8)."""
        request = decode(srvs.NetrShareEnum, stub)
        level = request["InfoStruct"]["Level"]
        if request["InfoStruct"]["ShareInfo"]["tag"] != level:
            raise RpcFault(FaultStatus.RPC_X_BAD_STUB_DATA, "union tag differs from Level",
                           did_not_execute=True)
        build = _ENUM_LEVELS[level]  # impacket only decodes the union's known arms
        shares = list(self._shares())
        resume = _optional(request["ResumeHandle"])
        start = (resume or 0) & 0xFFFFFFFF  # impacket reads the DWORD as signed
        budget = request["PreferedMaximumLength"]
        entries: list[ShareInfo] = []
        used = 0
        for share in shares[start:]:
            used += _entry_size(share, level)
            if entries and budget != MAX_PREFERRED_LENGTH and used > budget:
                break  # at least one entry always goes back
            entries.append(share)
        done = start + len(entries) >= len(shares)

        response = srvs.NetrShareEnumResponse()
        response["InfoStruct"]["Level"] = level
        union = response["InfoStruct"]["ShareInfo"]
        union["tag"] = level
        container = union[f"Level{level}"]
        container["EntriesRead"] = len(entries)
        if entries:
            for share in entries:
                container["Buffer"].append(build(share))
        else:
            container["Buffer"] = NULL
        response["TotalEntries"] = max(0, len(shares) - start)
        # Samba semantics: the index to continue from, 0 once the list is complete.
        response["ResumeHandle"] = NULL if resume is None else (0 if done else start + len(entries))
        response["ErrorCode"] = NERR_SUCCESS if done else ERROR_MORE_DATA
        return encode(response)

    def netr_share_get_info(self, stub: bytes, call: CallContext) -> bytes:
        """NetrShareGetInfo, opnum 16 ([MS-SRVS] 3.1.4.10)."""
        request = decode(srvs.NetrShareGetInfo, stub)
        level = request["Level"]
        name = request["NetName"].rstrip("\x00")
        build = _GET_INFO_LEVELS.get(level)
        if build is None:
            return _invalid_level(level)
        response = srvs.NetrShareGetInfoResponse()
        response["InfoStruct"]["tag"] = level
        arm = f"ShareInfo{level}"
        share = next((s for s in self._shares() if s.name.casefold() == name.casefold()), None)
        if not name or share is None:
            response["InfoStruct"][arm] = NULL
            response["ErrorCode"] = ERROR_INVALID_PARAMETER if not name else NERR_NET_NAME_NOT_FOUND
        else:
            response["InfoStruct"][arm] = build(share)
            response["ErrorCode"] = NERR_SUCCESS
        return encode(response)

    def netr_server_get_info(self, stub: bytes, call: CallContext) -> bytes:
        """NetrServerGetInfo, opnum 21 ([MS-SRVS] 3.1.4.17); levels 100, 101, 102."""
        request = decode(srvs.NetrServerGetInfo, stub)
        level = request["Level"]
        if level not in (100, 101, 102):
            return _invalid_level(level)
        config = self._config
        # Like Samba we report our own name, not the ServerName the client typed.
        info = getattr(srvs, f"SERVER_INFO_{level}")()
        prefix = f"sv{level}"
        info[f"{prefix}_platform_id"] = PLATFORM_ID_NT
        info[f"{prefix}_name"] = wstr(config.name)
        if level >= 101:
            info[f"{prefix}_version_major"] = config.version_major
            info[f"{prefix}_version_minor"] = config.version_minor
            info[f"{prefix}_type"] = config.server_type
            info[f"{prefix}_comment"] = wstr(config.comment)
        if level == 102:
            info["sv102_users"] = 0
            info["sv102_disc"] = config.disc_minutes
            info["sv102_hidden"] = 0
            info["sv102_announce"] = config.announce_seconds
            info["sv102_anndelta"] = config.anndelta_ms
            info["sv102_licenses"] = 0
            info["sv102_userpath"] = wstr("C:\\")
        response = srvs.NetrServerGetInfoResponse()
        response["InfoStruct"]["tag"] = level
        response["InfoStruct"][f"ServerInfo{level}"] = info
        response["ErrorCode"] = NERR_SUCCESS
        return encode(response)


# -- opnum table and registration --------------------------------------------

OPNUMS: Mapping[int, tuple[type, type]] = MappingProxyType({
    15: (srvs.NetrShareEnum, srvs.NetrShareEnumResponse),
    16: (srvs.NetrShareGetInfo, srvs.NetrShareGetInfoResponse),
    21: (srvs.NetrServerGetInfo, srvs.NetrServerGetInfoResponse),
})
"""The calls implemented here and their impacket [in]/[out] types."""


def srvsvc_interface(shares: ShareProvider, config: ServerConfig) -> RpcInterface:
    """The srvsvc interface for ``RpcConnection``: ``{opnum: handler}``."""
    server = SrvsvcServer(shares, config)
    return RpcInterface("srvsvc", SRVSVC_SYNTAX, {
        15: server.netr_share_enum,
        16: server.netr_share_get_info,
        21: server.netr_server_get_info,
    })
