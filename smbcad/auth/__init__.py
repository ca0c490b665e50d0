"""Authentication for SESSION_SETUP and DCE/RPC: SPNEGO over NTLMv2.

The public surface is re-exported here; the other modules are private.
"""

from smbcad.auth.authenticator import Authenticator
from smbcad.auth.errors import AuthError
from smbcad.auth.identity import Identity
from smbcad.auth.ntlm import NTLM_OID, NtlmAcceptor, NtlmMechanism
from smbcad.auth.spnego import AuthStep, MechanismContext, MechanismFactory, SpnegoAcceptor
from smbcad.auth.users import (User, UserDatabase, UserSpecError, load_smbpasswd,
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
