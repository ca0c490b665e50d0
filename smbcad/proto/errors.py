"""Exceptions that carry their wire status (shared/STYLE.md rule 8).

Code deep in a handler raises ``SmbError(NtStatus.X)``; the dispatcher turns it
into an SMB2 ERROR response with that status.  ``ProtocolViolation`` is raised
for input so malformed that the connection (only that one) must be dropped.
"""

from smbcad.proto.status import NtStatus, name_of


class SmbError(Exception):
    """A request failed with an NTSTATUS that goes back to the client."""

    def __init__(self, status: int, message: str = "", data: bytes = b"") -> None:
        super().__init__(message or name_of(status))
        self.status = status
        # ErrorData for the SMB2 ERROR response (2.2.2), e.g. symlink error contexts.
        self.data = data


class ProtocolViolation(Exception):
    """Input that cannot be answered; the connection it came on is closed."""

    status = NtStatus.INVALID_PARAMETER


def invalid(message: str = "") -> SmbError:
    """Shorthand for the most common decode failure."""
    return SmbError(NtStatus.INVALID_PARAMETER, message)
