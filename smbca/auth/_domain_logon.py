"""What the NTLM acceptor asks of a domain controller, and what it gets
back: the port ``NtlmAcceptor`` takes for domain users (``smbca.auth.netlogon``
implements it over NETLOGON; unit tests over the NTLMv2 algorithm itself)."""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class NetworkLogon:
    """An NTLM AUTHENTICATE handed to the DC ([MS-NRPC] 2.2.1.4.6
    NETLOGON_NETWORK_INFO): our challenge and the client's responses."""

    domain: str
    user: str
    workstation: str
    server_challenge: bytes
    nt_response: bytes
    lm_response: bytes


@dataclass(frozen=True, slots=True)
class DomainLogon:
    """What the DC answered for a good logon: the account, its SIDs (the
    primary group first) and the NTLM SessionBaseKey ([MS-NLMP] 3.3.2; the
    UserSessionKey of [MS-NRPC] 2.2.1.4.11)."""

    user: str
    domain: str
    user_sid: str
    group_sids: tuple[str, ...]
    session_base_key: bytes


class DomainLogonPort(Protocol):
    """A verifier of NTLM responses for the domain the server joined."""

    def handles(self, domain: str) -> bool:
        """Whether an AUTHENTICATE naming ``domain`` is this domain's to check."""
        ...

    def logon(self, logon: NetworkLogon) -> DomainLogon:
        """The verdict; raises ``AuthError`` with the client's status.  May
        block on the network: never call it on an event loop."""
        ...
