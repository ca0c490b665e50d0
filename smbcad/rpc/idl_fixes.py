"""[in]/[out] types where impacket's declaration differs from the IDL on the wire.

Each class here re-declares one call the way [MS-LSAD] / [MS-LSAT] /
[MS-SAMR] and Samba's IDL marshal it, checked against stubs rpcclient sends
(tests/unit/rpc/vectors_lsa.py).  Everything else uses impacket's types.
"""

from impacket.dcerpc.v5.dtypes import LPWSTR, NTSTATUS, PRPC_UNICODE_STRING, PUSHORT, ULONG
from impacket.dcerpc.v5.lsad import ACCESS_MASK, LSAPR_OBJECT_ATTRIBUTES
from impacket.dcerpc.v5.ndr import NDRCALL, NDRPOINTER
from impacket.dcerpc.v5.samr import SAMPR_HANDLE


class LsarOpenPolicy(NDRCALL):
    """[MS-LSAD] 3.1.4.4.2: ``[in,unique] wchar_t *SystemName`` points to ONE
    character (rpcclient and smbcacls send ``\\``), not to a string as impacket has it."""

    opnum = 6
    structure = (
        ("SystemName", PUSHORT),
        ("ObjectAttributes", LSAPR_OBJECT_ATTRIBUTES),
        ("DesiredAccess", ACCESS_MASK),
    )


class PPRPC_UNICODE_STRING(NDRPOINTER):
    """A unique pointer to a PRPC_UNICODE_STRING."""

    referent = (("Data", PRPC_UNICODE_STRING),)


class LsarGetUserName(NDRCALL):
    """[MS-LSAT] 3.1.4.4: ``[in,out] PRPC_UNICODE_STRING *UserName`` (a ref pointer,
    not marshalled, to a unique one) and ``[in,out,unique] PRPC_UNICODE_STRING
    *DomainName`` (two unique pointers); impacket drops the second level."""

    opnum = 45
    structure = (
        ("SystemName", LPWSTR),
        ("UserName", PRPC_UNICODE_STRING),
        ("DomainName", PPRPC_UNICODE_STRING),
    )


class LsarGetUserNameResponse(NDRCALL):
    structure = (
        ("UserName", PRPC_UNICODE_STRING),
        ("DomainName", PPRPC_UNICODE_STRING),
        ("ErrorCode", NTSTATUS),
    )


class SamrCloseHandle(NDRCALL):
    """[MS-SAMR] 3.1.5.13.1: ``[in,out] SAMPR_HANDLE *SamHandle`` only; impacket
    adds a DesiredAccess field that is not on the wire."""

    opnum = 1
    structure = (("SamHandle", SAMPR_HANDLE),)


__all__ = ["LsarGetUserName", "LsarGetUserNameResponse", "LsarOpenPolicy",
           "PPRPC_UNICODE_STRING", "SamrCloseHandle", "ULONG"]
