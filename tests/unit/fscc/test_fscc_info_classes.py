"""Status policy for classes we do not serve ([MS-SMB2] 3.3.5.20.1/.2, 3.3.5.21.1/.2)."""

import pytest

from smbcad.proto.fscc import (FileInfoClass as C, FsInfoClass as F,
                               fs_query_unsupported_status, fs_set_unsupported_status,
                               query_unsupported_status, set_unsupported_status)
from smbcad.proto.status import NtStatus

INVALID, NOT_SUPPORTED = NtStatus.INVALID_INFO_CLASS, NtStatus.NOT_SUPPORTED


@pytest.mark.parametrize("level, status", [
    # <415>: directory, set-only and a few LOCAL levels
    *[(n, INVALID) for n in (1, 2, 3, 10, 11, 12, 13, 19, 20, 27, 31, 36, 37, 38, 39, 40, 50)],
    # documented elsewhere: NOT_SUPPORTED
    (C.FILE_NAME, NOT_SUPPORTED), (C.FILE_FULL_EA, NOT_SUPPORTED), (C.FILE_PIPE, NOT_SUPPORTED),
    (C.FILE_QUOTA, NOT_SUPPORTED), (C.FILE_ID_EXTD_DIRECTORY, NOT_SUPPORTED),
    (C.FILE_STANDARD_LINK, NOT_SUPPORTED), (C.FILE_ID_ALL_EXTD_BOTH_DIRECTORY, NOT_SUPPORTED),
    # <416>
    (41, NOT_SUPPORTED), (53, NOT_SUPPORTED), (52, NtStatus.INFO_LENGTH_MISMATCH),
    # undocumented
    (0, INVALID), (30, INVALID), (55, INVALID), (100, INVALID), (255, INVALID),
])
def test_query(level, status):
    assert query_unsupported_status(level) == status


@pytest.mark.parametrize("level, status", [
    (C.FILE_SHORT_NAME, NOT_SUPPORTED), (C.FILE_PIPE, NOT_SUPPORTED),
    (C.FILE_QUOTA, NOT_SUPPORTED), (C.FILE_RENAME_EX, NOT_SUPPORTED),
    (C.FILE_STANDARD, INVALID), (C.FILE_STREAM, INVALID), (C.FILE_DIRECTORY, INVALID),
    (C.FILE_HARD_LINK, INVALID),
    (30, NOT_SUPPORTED), (41, NOT_SUPPORTED), (42, NOT_SUPPORTED), (43, NOT_SUPPORTED),
    (0, INVALID), (99, INVALID),
])
def test_set(level, status):
    assert set_unsupported_status(level) == status


@pytest.mark.parametrize("level, query, set_", [
    (F.FILE_FS_VOLUME, NOT_SUPPORTED, INVALID),
    (F.FILE_FS_LABEL, NOT_SUPPORTED, NOT_SUPPORTED),
    (F.FILE_FS_CONTROL, NOT_SUPPORTED, NOT_SUPPORTED),
    (F.FILE_FS_OBJECT_ID, NOT_SUPPORTED, NOT_SUPPORTED),
    (F.FILE_FS_SECTOR_SIZE, NOT_SUPPORTED, INVALID),
    (F.FILE_FS_VOLUME_FLAGS, NOT_SUPPORTED, NOT_SUPPORTED),
    (0, INVALID, INVALID),
    (12, INVALID, INVALID),
])
def test_fs(level, query, set_):
    assert fs_query_unsupported_status(level) == query
    assert fs_set_unsupported_status(level) == set_
