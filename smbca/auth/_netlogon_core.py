"""The sans-IO half of NTLM pass-through over NETLOGON ([MS-NRPC]): the
secure channel's keys and credentials, the network logon request and what
its answer means.  ``smbca.auth.netlogon`` does the talking.

The secure channel is AES only (what Samba 4.17 and Windows DCs require
since the 2020-2022 hardening, CVE-2020-1472 and CVE-2022-38023): the
session key is HMAC-SHA256 of the challenges under the machine password's
NT hash (3.1.4.3.1), a credential is AES-CFB8 of 8 bytes under it
(3.1.4.4.1).  Calls go over RPC with the Netlogon security provider at
packet privacy (3.3), which is why the logon is NetrLogonSamLogonEx: it
needs no Netlogon authenticator chain, so calls never race each other's
credential, and the partner node authenticating the same account does not
break ours (3.5.4.5.1).
"""

import hashlib
import hmac
from impacket.dcerpc.v5 import nrpc

from smbca.auth._domain_logon import DomainLogon, NetworkLogon
from smbca.auth.errors import AuthError
from smbca.auth.legacy_crypto import aes_cfb8_encrypt
from smbca.auth.pac import logon_info_of
from smbca.ntstatus import NtStatus, name_of

# NETLOGON_NEG_* ([MS-NRPC] 3.1.4.2): what we ask for (as Windows 10 and
# Samba's winbind do) and what the DC must grant.
NEG_STRONG_KEYS = 0x00004000
NEG_SUPPORTS_AES = 0x01000000
NEG_AUTHENTICATED_RPC = 0x40000000           # "secure RPC": schannel
NEGOTIATE_FLAGS = 0x613FFFFF
REQUIRED_FLAGS = NEG_STRONG_KEYS | NEG_SUPPORTS_AES | NEG_AUTHENTICATED_RPC

# ParameterControl of a network logon ([MS-APDS] 3.1.5.2.1, [MS-NRPC]
# 2.2.1.4.15): computer accounts (a Hyper-V host's HOST$) may log on too.
MSV1_0_ALLOW_SERVER_TRUST_ACCOUNT = 0x00000020
MSV1_0_ALLOW_WORKSTATION_TRUST_ACCOUNT = 0x00000800
PARAMETER_CONTROL = MSV1_0_ALLOW_SERVER_TRUST_ACCOUNT | MSV1_0_ALLOW_WORKSTATION_TRUST_ACCOUNT

# What a client is told when the DC refuses: its own status for the states
# of the account a user can act on; wrong password and unknown user alike
# are STATUS_LOGON_FAILURE, as Windows and Samba's smbd answer, so a client
# cannot tell which names exist.
_PASSED_THROUGH = frozenset({
    NtStatus.ACCOUNT_DISABLED, NtStatus.ACCOUNT_EXPIRED, NtStatus.ACCOUNT_LOCKED_OUT,
    NtStatus.PASSWORD_EXPIRED, NtStatus.PASSWORD_MUST_CHANGE, NtStatus.INVALID_LOGON_HOURS,
    NtStatus.INVALID_WORKSTATION, NtStatus.ACCOUNT_RESTRICTION,
})
# The DC does not trust us: the secure channel must be set up again (or the
# machine password is wrong); the client is told there is no logon server.
CHANNEL_STATUSES = frozenset({
    NtStatus.ACCESS_DENIED, NtStatus.NO_TRUST_SAM_ACCOUNT,
    NtStatus.TRUSTED_RELATIONSHIP_FAILURE,
})


def session_key(machine_nt_hash: bytes, client_challenge: bytes,
                server_challenge: bytes) -> bytes:
    """The AES secure channel's session key ([MS-NRPC] 3.1.4.3.1)."""
    digest = hmac.new(machine_nt_hash, client_challenge + server_challenge,
                      hashlib.sha256).digest()
    return digest[:16]


def credential(key: bytes, data: bytes) -> bytes:
    """ComputeNetlogonCredential with AES ([MS-NRPC] 3.1.4.4.1)."""
    return aes_cfb8_encrypt(key, data)


def check_server_credential(key: bytes, server_challenge: bytes, received: bytes) -> bool:
    """The DC proves it knows the password too (3.1.4.1, step 4)."""
    return hmac.compare_digest(credential(key, server_challenge), bytes(received))


def logon_request(computer_name: str, logon: NetworkLogon) -> nrpc.NetrLogonSamLogonEx:
    """NetrLogonSamLogonEx (opnum 39, 3.5.4.5.1) at NetlogonNetworkTransitive-
    Information (the DC may pass it on to a trusted domain's DC) asking for
    NETLOGON_VALIDATION_SAM_INFO4 (the SIDs, the session key)."""
    request = nrpc.NetrLogonSamLogonEx()
    request["LogonServer"] = "\x00"
    request["ComputerName"] = f"{computer_name}\x00"
    level = nrpc.NETLOGON_LOGON_INFO_CLASS.NetlogonNetworkTransitiveInformation
    request["LogonLevel"] = level
    request["LogonInformation"]["tag"] = level
    info = request["LogonInformation"]["LogonNetworkTransitive"]
    info["Identity"]["LogonDomainName"] = logon.domain
    info["Identity"]["ParameterControl"] = PARAMETER_CONTROL
    info["Identity"]["UserName"] = logon.user
    info["Identity"]["Workstation"] = logon.workstation
    info["LmChallenge"] = logon.server_challenge
    info["NtChallengeResponse"] = logon.nt_response
    info["LmChallengeResponse"] = logon.lm_response
    request["ValidationLevel"] = nrpc.NETLOGON_VALIDATION_INFO_CLASS.NetlogonValidationSamInfo4
    request["ExtraFlags"] = 0
    return request


def domain_logon_of(response) -> DomainLogon:
    """The ``DomainLogon`` in a successful NetrLogonSamLogonEx response.

    At validation level 4 (SAM_INFO4, only ever sent over a sealed channel)
    the DC leaves the UserSessionKey unencrypted, where levels 2 and 3 would
    have it AES-CFB8 encrypted under the session key (Samba's DC and its
    winbind client treat level 6 so; tests/ad checks the derived keys sign
    and encrypt an SMB session)."""
    try:
        validation = response["ValidationInformation"]["ValidationSam4"]
        info = logon_info_of(validation)
        key = bytes(validation["UserSessionKey"])
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise AuthError(NtStatus.LOGON_FAILURE,
                        f"NETLOGON: the DC's answer does not decode: {exc}") from None
    if len(key) != 16:
        raise AuthError(NtStatus.LOGON_FAILURE, "NETLOGON: no 16-byte UserSessionKey")
    return DomainLogon(info.user, info.domain, info.user_sid, info.group_sids, key)


def refusal(status: int, logon: NetworkLogon) -> AuthError:
    """The ``AuthError`` for a DC's answer ``status`` to ``logon``."""
    who = f"{logon.domain}\\{logon.user}"
    shown = status if status in _PASSED_THROUGH else NtStatus.LOGON_FAILURE
    return AuthError(shown, f"NETLOGON: the DC refused {who}: {name_of(status)}")
