"""The access each QUERY_INFO / SET_INFO class and security part needs
([MS-SMB2] 3.3.5.20.1, 3.3.5.20.3, 3.3.5.21.1, 3.3.5.21.3)."""

import pytest

from smbcad.proto.constants import AccessMask as A
from smbcad.proto.fscc import (QUERY_FILE_ACCESS, SET_FILE_ACCESS, FileInfoClass as C,
                               SecurityInformation as SI, missing_access,
                               query_security_access, set_security_access)


@pytest.mark.parametrize("info_class,needed", [
    (C.FILE_BASIC, A.FILE_READ_ATTRIBUTES),
    (C.FILE_ALL, A.FILE_READ_ATTRIBUTES),
    (C.FILE_NETWORK_OPEN, A.FILE_READ_ATTRIBUTES),
    (C.FILE_ATTRIBUTE_TAG, A.FILE_READ_ATTRIBUTES),
    (C.FILE_PIPE_LOCAL, A.FILE_READ_ATTRIBUTES),
    (C.FILE_FULL_EA, A.FILE_READ_EA),
    # smb2.getinfo.getinfo_access: these answer a SYNCHRONIZE-only open.
    (C.FILE_STANDARD, 0), (C.FILE_INTERNAL, 0), (C.FILE_ACCESS, 0), (C.FILE_POSITION, 0),
    (C.FILE_MODE, 0), (C.FILE_ALIGNMENT, 0), (C.FILE_ALTERNATE_NAME, 0), (C.FILE_STREAM, 0),
    (C.FILE_COMPRESSION, 0), (C.FILE_NORMALIZED_NAME, 0), (C.FILE_EA, 0),
])
def test_query_file_access(info_class, needed):
    assert QUERY_FILE_ACCESS.get(info_class, 0) == needed


@pytest.mark.parametrize("info_class,needed", [
    (C.FILE_BASIC, A.FILE_WRITE_ATTRIBUTES),
    (C.FILE_END_OF_FILE, A.FILE_WRITE_DATA),
    (C.FILE_ALLOCATION, A.FILE_WRITE_DATA),
    (C.FILE_VALID_DATA_LENGTH, A.FILE_WRITE_DATA),
    (C.FILE_DISPOSITION, A.DELETE),
    (C.FILE_DISPOSITION_EX, A.DELETE),
    (C.FILE_RENAME, A.DELETE),
    (C.FILE_FULL_EA, A.FILE_WRITE_EA),
    (C.FILE_POSITION, 0),
    (C.FILE_MODE, 0),
])
def test_set_file_access(info_class, needed):
    assert SET_FILE_ACCESS.get(info_class, 0) == needed


@pytest.mark.parametrize("parts,query,set_", [
    (SI.OWNER, A.READ_CONTROL, A.WRITE_OWNER),
    (SI.GROUP, A.READ_CONTROL, A.WRITE_OWNER),
    (SI.DACL, A.READ_CONTROL, A.WRITE_DAC),
    (SI.SACL, A.ACCESS_SYSTEM_SECURITY, A.ACCESS_SYSTEM_SECURITY),
    (SI.LABEL, A.READ_CONTROL, A.WRITE_OWNER),
    (SI.OWNER | SI.GROUP | SI.DACL, A.READ_CONTROL, A.WRITE_OWNER | A.WRITE_DAC),
    (SI.DACL | SI.SACL, A.READ_CONTROL | A.ACCESS_SYSTEM_SECURITY,
     A.WRITE_DAC | A.ACCESS_SYSTEM_SECURITY),
    (0, 0, 0),
])
def test_security_access(parts, query, set_):
    assert query_security_access(parts) == query
    assert set_security_access(parts) == set_


def test_missing_access_needs_every_bit():
    assert missing_access(A.READ_CONTROL, A.READ_CONTROL | A.ACCESS_SYSTEM_SECURITY) == \
        A.ACCESS_SYSTEM_SECURITY
    assert missing_access(A.FILE_READ_DATA, 0) == 0
    assert missing_access(A.FILE_ALL_ACCESS, A.FILE_READ_ATTRIBUTES) == 0
