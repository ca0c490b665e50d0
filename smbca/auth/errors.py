"""Authentication errors that carry their wire status (shared/STYLE.md rule 8).

Every failure inside ``smbca.auth`` surfaces as ``AuthError(status)``; the
SESSION_SETUP handler returns ``status`` to the client unchanged.  Malformed
tokens give STATUS_INVALID_PARAMETER, bad credentials STATUS_LOGON_FAILURE.
STATUS_MORE_PROCESSING_REQUIRED is not an error: it is ``AuthStep.complete``
being False.
"""

from smbca.ntstatus import NtStatus, name_of


class AuthError(Exception):
    """An authentication exchange failed with NTSTATUS ``status``."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or name_of(status))
        self.status = status


def malformed(message: str) -> AuthError:
    """The token could not be parsed ([MS-ERREF] STATUS_INVALID_PARAMETER)."""
    return AuthError(NtStatus.INVALID_PARAMETER, message)


def logon_failure(message: str) -> AuthError:
    """Credentials were rejected ([MS-ERREF] STATUS_LOGON_FAILURE)."""
    return AuthError(NtStatus.LOGON_FAILURE, message)
