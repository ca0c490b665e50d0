"""The user and group SIDs a Kerberos ticket's PAC carries ([MS-PAC]).

The PAC reaches us already verified: MIT krb5 checks its server signature
with our keytab key when it accepts the AP-REQ, and hands it out as the
``urn:mspac:`` name attribute.  Only the KERB_VALIDATION_INFO buffer
([MS-PAC] 2.5, PAC_LOGON_INFO, ulType 1) is read here; its NDR is decoded
with impacket's structures, which cover the whole type (deferred pointers,
conformant arrays) and which smbca already depends on.

Group SIDs ([MS-PAC] 2.5, [MS-KILE] 3.3.5.7.4 for what Windows puts in a
token): the domain SID plus each RID of GroupIds, then ExtraSids, then
ResourceGroupDomainSid plus each RID of ResourceGroupIds.
"""

import struct
from dataclasses import dataclass

from impacket.krb5.pac import VALIDATION_INFO

from smbca.auth.errors import logon_failure

PAC_LOGON_INFO = 1
_PACTYPE = struct.Struct("<II")            # cBuffers, Version
_PAC_INFO_BUFFER = struct.Struct("<IIQ")   # ulType, cbBufferSize, Offset


@dataclass(frozen=True, slots=True)
class PacLogonInfo:
    """What the token needs from KERB_VALIDATION_INFO."""

    user: str                     # EffectiveName (the sAMAccountName)
    domain: str                   # LogonDomainName (NetBIOS)
    user_sid: str
    primary_group_sid: str
    group_sids: tuple[str, ...]   # every group, the primary group included


def pac_buffers(pac: bytes) -> dict[int, bytes]:
    """The PAC's buffers by ulType ([MS-PAC] 2.3, 2.4)."""
    if len(pac) < _PACTYPE.size:
        raise logon_failure("PAC too short")
    count, _version = _PACTYPE.unpack_from(pac)
    if _PACTYPE.size + count * _PAC_INFO_BUFFER.size > len(pac):
        raise logon_failure("PAC buffer table runs past its end")
    buffers = {}
    for index in range(count):
        kind, size, offset = _PAC_INFO_BUFFER.unpack_from(
            pac, _PACTYPE.size + index * _PAC_INFO_BUFFER.size)
        if offset + size > len(pac):
            raise logon_failure(f"PAC buffer {kind} runs past the PAC's end")
        buffers.setdefault(kind, pac[offset:offset + size])
    return buffers


def parse_logon_info(pac: bytes) -> PacLogonInfo:
    """The user, its domain and its SIDs; ``AuthError`` if the PAC has none."""
    data = pac_buffers(pac).get(PAC_LOGON_INFO)
    if data is None:
        raise logon_failure("the ticket's PAC has no logon information")
    try:
        info = VALIDATION_INFO()
        info.fromString(data)
        info.fromStringReferents(data[len(info.getData()):])
        return logon_info_of(info["Data"])
    except (KeyError, IndexError, ValueError, TypeError, struct.error) as exc:
        raise logon_failure(f"PAC logon information does not decode: {exc}") from None


def logon_info_of(validation) -> PacLogonInfo:
    """The user and its SIDs from an impacket KERB_VALIDATION_INFO ([MS-PAC]
    2.5) or NETLOGON_VALIDATION_SAM_INFO4 ([MS-NRPC] 2.2.1.4.13, a NETLOGON
    network logon's answer): the same fields, the latter without resource
    groups.  Raises KeyError, ValueError or struct.error on a bad structure."""
    domain_sid = validation["LogonDomainId"].formatCanonical()
    groups = [f"{domain_sid}-{group['RelativeId']}"
              for group in _elements(validation, "GroupIds")]
    groups += [extra["Sid"].formatCanonical() for extra in _elements(validation, "ExtraSids")]
    if "ResourceGroupDomainSid" in validation.fields and _present(validation,
                                                                   "ResourceGroupDomainSid"):
        resource_domain = validation["ResourceGroupDomainSid"].formatCanonical()
        groups += [f"{resource_domain}-{group['RelativeId']}"
                   for group in _elements(validation, "ResourceGroupIds")]
    primary = f"{domain_sid}-{validation['PrimaryGroupId']}"
    groups.insert(0, primary)           # first, as Identity.group_sids promises
    return PacLogonInfo(
        user=str(validation["EffectiveName"]), domain=str(validation["LogonDomainName"]),
        user_sid=f"{domain_sid}-{validation['UserId']}", primary_group_sid=primary,
        group_sids=tuple(dict.fromkeys(groups)))


def _present(struct_, field: str) -> bool:
    """Whether an NDR pointer field is non-NULL (impacket's item access
    hands out the referent, b"" for NULL; the pointer is in ``fields``)."""
    return struct_.fields[field]["ReferentID"] != 0


def _elements(struct_, field: str) -> list:
    """The elements of a pointer-to-conformant-array field ([] if NULL)."""
    return list(struct_[field]) if _present(struct_, field) else []
