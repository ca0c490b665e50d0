"""Errors of the SCSI layer (shared/STYLE.md rule 8: errors carry their wire status).

``status`` is the SCSI status byte (SAM-3 5.3) when the error comes from a
completed command, and ``None`` when no command completed (malformed data,
an ioctl that failed, a timeout).
"""


class ScsiError(Exception):
    """Base of every error raised by ``clusdisk.scsi``."""

    status: int | None = None


class ScsiParseError(ScsiError):
    """Data-in, sense data or a CDB argument is truncated or malformed.

    Raised instead of ``IndexError``/``struct.error`` so that a short or
    corrupt buffer from a device never escapes as a programming error.
    """


class ScsiCommandError(ScsiError):
    """A command completed with a status other than GOOD (after retries).

    ``outcome`` is the ``clusdisk.scsi.sense.Outcome`` that ended it.
    """

    def __init__(self, what: str, outcome) -> None:
        super().__init__(f"{what}: {outcome.describe()}")
        self.outcome = outcome
        self.status = outcome.status


class ScsiTransportError(ScsiError):
    """The command never completed at the target: an ioctl failure, a host or
    driver error, or a timeout.  ``errno`` is set for OS errors."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
