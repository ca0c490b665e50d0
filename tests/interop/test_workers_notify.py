"""Change notify when the change comes through another worker
(``server.workers: 2``; smbprotocol, ClientGuids placed by the routing hash).

Changes on disk reach every worker through its own inotify watches; what
has no event of its own is a directory left delete-pending while someone
still has it open: a close through the other worker now tells this one
(DeletePending), and its CHANGE_NOTIFY on the directory completes with
STATUS_DELETE_PENDING ([MS-FSA] 2.1.5.15.3) instead of waiting forever
(smbtorture smb2.notify.rmdir4 hung that way half the time).
"""

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.change_notify import CompletionFilter, FileSystemWatcher  # noqa: E402
from smbprotocol.exceptions import SMBResponseException  # noqa: E402
from smbprotocol.open import (  # noqa: E402
    CreateDisposition, CreateOptions, FilePipePrinterAccessMask)

from test_workers import Client, guid_for, server  # noqa: E402

STATUS_DELETE_PENDING = 0xC0000056
WAIT_S = 10.0

__all__ = ["server"]          # the fixture, used by name


def test_a_directory_deleted_through_another_worker_ends_the_notify(server):
    watching, deleting = Client(server, guid_for(0)), Client(server, guid_for(1))
    try:
        directory = watching.open("watched-dir", options=CreateOptions.FILE_DIRECTORY_FILE)
        watcher = FileSystemWatcher(directory)
        watcher.start(CompletionFilter.FILE_NOTIFY_CHANGE_FILE_NAME)
        doomed = deleting.open(
            "watched-dir", disposition=CreateDisposition.FILE_OPEN,
            options=CreateOptions.FILE_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE,
            access=FilePipePrinterAccessMask.DELETE
            | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES)
        doomed.close()
        assert watcher.response_event.wait(WAIT_S), "the CHANGE_NOTIFY never completed"
        with pytest.raises(SMBResponseException) as failure:
            watcher.wait()
        assert failure.value.status == STATUS_DELETE_PENDING
        directory.close()
    finally:
        watching.close()
        deleting.close()
