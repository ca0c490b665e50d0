"""The facade the SMB server holds: one per server, one exchange per
SESSION_SETUP sequence ([MS-SMB2] 3.3.5.5.1 "GSS_Accept_sec_context").

With a keytab (a domain member, ``smbca domain join``), Kerberos is offered
first, under both of its OIDs as Windows does ([MS-KILE] 3.1.5.12), then
NTLM for local users.  python-gssapi is imported only then, so a server
without a keytab does not need it."""

import os
import time
from collections.abc import Callable

from smbca.auth.ntlm import NtlmMechanism
from smbca.auth.spnego import MechanismFactory, SpnegoAcceptor
from smbca.auth.users import UserDatabase


class Authenticator:
    """Builds the mechanism list once; ``new_exchange`` starts a SPNEGO
    acceptor for each SESSION_SETUP sequence."""

    def __init__(self, users: UserDatabase, server_name: str, domain_name: str,
                 allow_guest: bool = False, allow_anonymous: bool = False,
                 rng: Callable[[int], bytes] = os.urandom, *, dns_domain: str = "",
                 dns_name: str = "", guest_user: str | None = None,
                 clock: Callable[[], float] = time.time, keytab: str | None = None) -> None:
        ntlm = NtlmMechanism(users, server_name, domain_name, dns_domain=dns_domain,
                             dns_name=dns_name, allow_guest=allow_guest,
                             guest_user=guest_user, allow_anonymous=allow_anonymous,
                             rng=rng, clock=clock)
        self._users = users
        self._mechanisms: tuple[MechanismFactory, ...] = (*_kerberos(keytab), ntlm)
        self._negotiate_token = SpnegoAcceptor(self._mechanisms).initial_token()

    @property
    def users(self) -> UserDatabase:
        """The local accounts this authenticator checks (name lookups read them too)."""
        return self._users

    @property
    def mechanisms(self) -> tuple[MechanismFactory, ...]:
        return self._mechanisms

    def negotiate_token(self) -> bytes:
        """The NegTokenInit2 for the SMB2 NEGOTIATE response's SecurityBuffer."""
        return self._negotiate_token

    def new_exchange(self) -> SpnegoAcceptor:
        return SpnegoAcceptor(self._mechanisms)


def _kerberos(keytab: str | None) -> tuple[MechanismFactory, ...]:
    if keytab is None:
        return ()
    from smbca.auth.kerberos import MS_KRB5_OID, KerberosMechanism
    krb5 = KerberosMechanism(keytab)
    return (krb5.with_oid(MS_KRB5_OID), krb5)
