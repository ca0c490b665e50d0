"""The base of clusdisk's host-side errors (shared/STYLE.md rule 8): each
carries a short ``status`` naming what failed, for logs, metrics and the
control socket.  SCSI errors have their own tree in clusdisk.scsi.errors."""


class ClusdiskError(Exception):
    status = "error"

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
