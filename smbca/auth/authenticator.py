"""The facade the SMB server holds: one per server, one exchange per
SESSION_SETUP sequence ([MS-SMB2] 3.3.5.5.1 "GSS_Accept_sec_context").

With a keytab (a domain member, ``smbca domain join``), Kerberos is offered
first, under both of its OIDs as Windows does ([MS-KILE] 3.1.5.12), then
NTLM.  python-gssapi is imported only then, so a server without a keytab
does not need it.  When the join also left its machine account record
beside the keytab, NTLM for the domain's users goes to a DC over NETLOGON
(``smbca.auth.netlogon``); the challenge then names the joined domain, as a
member server's does, and local users still log on as before.

A DC call blocks, so an authenticator that may make one (``may_block``)
steps its exchanges in its own worker threads (``step_off_loop``): a slow
or unreachable DC holds those threads, never the event loop nor the
server's shared pool."""

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from smbca.auth._domain_logon import DomainLogonPort
from smbca.auth.errors import AuthError
from smbca.auth.ntlm import NtlmMechanism
from smbca.auth.spnego import AuthStep, MechanismFactory, SpnegoAcceptor
from smbca.auth.users import UserDatabase

# Session setups waiting on a DC at once; more queue for a free thread.
AUTH_THREADS = 4


class Authenticator:
    """Builds the mechanism list once; ``new_exchange`` starts a SPNEGO
    acceptor for each SESSION_SETUP sequence.  ``domain_logon`` replaces
    the NETLOGON client the keytab's machine account record would give."""

    def __init__(self, users: UserDatabase, server_name: str, domain_name: str,
                 allow_guest: bool = False, allow_anonymous: bool = False,
                 rng: Callable[[int], bytes] = os.urandom, *, dns_domain: str = "",
                 dns_name: str = "", guest_user: str | None = None,
                 clock: Callable[[], float] = time.time, keytab: str | None = None,
                 domain_logon: DomainLogonPort | None = None) -> None:
        if domain_logon is None and keytab is not None:
            domain_logon, server_name, domain_name, dns_domain = _netlogon(
                keytab, server_name, domain_name, dns_domain)
        ntlm = NtlmMechanism(users, server_name, domain_name, dns_domain=dns_domain,
                             dns_name=dns_name, allow_guest=allow_guest,
                             guest_user=guest_user, allow_anonymous=allow_anonymous,
                             rng=rng, clock=clock, domain_logon=domain_logon)
        self._users = users
        self._domain_logon = domain_logon
        self._executor: ThreadPoolExecutor | None = None
        self._mechanisms: tuple[MechanismFactory, ...] = (*_kerberos(keytab), ntlm)
        self._negotiate_token = SpnegoAcceptor(self._mechanisms).initial_token()

    @property
    def users(self) -> UserDatabase:
        """The local accounts this authenticator checks (name lookups read them too)."""
        return self._users

    @property
    def mechanisms(self) -> tuple[MechanismFactory, ...]:
        return self._mechanisms

    @property
    def domain_logon(self) -> DomainLogonPort | None:
        """The DC pass-through for the joined domain's NTLM users, if any."""
        return self._domain_logon

    @property
    def may_block(self) -> bool:
        """Whether a step may wait on the network (a DC): run it with
        ``step_off_loop``, not on the event loop."""
        return self._domain_logon is not None

    def negotiate_token(self) -> bytes:
        """The NegTokenInit2 for the SMB2 NEGOTIATE response's SecurityBuffer."""
        return self._negotiate_token

    def new_exchange(self) -> SpnegoAcceptor:
        return SpnegoAcceptor(self._mechanisms)

    async def step_off_loop(self, exchange: SpnegoAcceptor,
                            token: bytes) -> AuthStep | AuthError:
        """``exchange.step(token)`` in one of the authenticator's threads;
        the outcome, a refusal included, comes back on the loop.  The
        exchange must not be stepped by anyone else meanwhile."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(AUTH_THREADS, thread_name_prefix="smbca-auth")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _outcome, exchange, bytes(token))

    def close(self) -> None:
        """Let the worker threads end once the steps given to them are done
        (a reload replaces the authenticator while exchanges are under way);
        the next ``step_off_loop`` starts new ones."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def _outcome(exchange: SpnegoAcceptor, token: bytes) -> AuthStep | AuthError:
    try:
        return exchange.step(token)
    except AuthError as exc:
        return exc


def _kerberos(keytab: str | None) -> tuple[MechanismFactory, ...]:
    if keytab is None:
        return ()
    from smbca.auth.kerberos import MS_KRB5_OID, KerberosMechanism
    krb5 = KerberosMechanism(keytab)
    return (krb5.with_oid(MS_KRB5_OID), krb5)


def _netlogon(keytab: str, server_name: str, domain_name: str,
              dns_domain: str) -> tuple[DomainLogonPort | None, str, str, str]:
    """The NETLOGON client of the join beside ``keytab`` and the names the
    challenge then carries; the given names when not joined so.  The
    computer name is the account's: a DC refuses an NTLMv2 response whose
    MsvAvNbComputerName is not the secure channel's computer ([MS-APDS]
    3.1.5.2.1, the check against relayed responses)."""
    from smbca.auth.netlogon import NetlogonClient
    client = NetlogonClient.from_keytab(keytab)
    if client is None:
        return None, server_name, domain_name, dns_domain
    account = client.account
    return client, account.computer_name, account.netbios_domain, account.dns_domain
