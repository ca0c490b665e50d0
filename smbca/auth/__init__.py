"""Authentication for SESSION_SETUP and DCE/RPC: SPNEGO over NTLMv2 and, with a
keytab, Kerberos (``smbca.auth.kerberos``, imported by ``Authenticator`` only
then, since it needs python-gssapi).

The public surface is re-exported here; the other modules are private.
"""

from smbca.auth.authenticator import Authenticator
from smbca.auth.errors import AuthError
from smbca.auth.identity import Identity
from smbca.auth.ntlm import NTLM_OID, NtlmAcceptor, NtlmMechanism
from smbca.auth.spnego import AuthStep, MechanismContext, MechanismFactory, SpnegoAcceptor
from smbca.auth.users import (User, UserDatabase, UserSpecError, load_smbpasswd,
                               parse_user_arg, parse_user_spec)

__all__ = [
    "AuthError",
    "AuthStep",
    "Authenticator",
    "Identity",
    "MechanismContext",
    "MechanismFactory",
    "NTLM_OID",
    "NtlmAcceptor",
    "NtlmMechanism",
    "SpnegoAcceptor",
    "User",
    "UserDatabase",
    "UserSpecError",
    "load_smbpasswd",
    "parse_user_arg",
    "parse_user_spec",
]
