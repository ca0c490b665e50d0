"""Shared fixtures for the FSCC codec tests: one file and one directory with fixed metadata.

Times are realistic FILETIMEs (2022) so third-party decoders that turn them into
datetimes accept them.
"""

import pytest

from smbcad.proto.fileinfo import FileInfo

CREATION = 133_000_000_000_000_000
ACCESS = 133_000_000_010_000_000
WRITE = 133_000_000_020_000_000
CHANGE = 133_000_000_030_000_000
FILE_ID = 0x0000_1234_5678_9ABC


@pytest.fixture
def file_info() -> FileInfo:
    return FileInfo(creation_time=CREATION, last_access_time=ACCESS, last_write_time=WRITE,
                    change_time=CHANGE, end_of_file=5000, allocation_size=8192,
                    attributes=0x20, file_id=FILE_ID, number_of_links=2,
                    is_directory=False, ea_size=0, device_id=0x801)


@pytest.fixture
def dir_info() -> FileInfo:
    return FileInfo(creation_time=CREATION, last_access_time=ACCESS, last_write_time=WRITE,
                    change_time=CHANGE, end_of_file=0, allocation_size=0, attributes=0,
                    file_id=0x42, number_of_links=1, is_directory=True)
