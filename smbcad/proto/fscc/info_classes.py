"""Information class numbers ([MS-FSCC] 2.4, 2.5) and the status for classes we do not serve.

Which NTSTATUS an unsupported class earns is data, not code: [MS-SMB2] 3.3.5.20.1,
3.3.5.20.2, 3.3.5.21.1 and 3.3.5.21.2 give the rules, and the Windows behaviour
notes <415>, <416> and <428> give the exceptions.  The ``*_unsupported_status``
functions below apply them so handlers never hand-pick a code.

A few codes the FSCC codecs raise are not (yet) in ``smbcad.proto.status``;
``FsccStatus`` carries them.
"""

from smbcad.proto.constants import AccessMask as A
from smbcad.proto.status import NtStatus


class FsccStatus:
    """NTSTATUS codes used by the FSCC codecs ([MS-ERREF] 2.3.1) beyond ``NtStatus``."""

    INVALID_EA_NAME = 0x80000013
    EA_LIST_INCONSISTENT = 0x80000014
    INVALID_ACL = 0xC0000077
    INVALID_SECURITY_DESCR = 0xC0000079
    VOLUME_NOT_UPGRADED = 0xC000029C


class FileInfoClass:
    """FILE_INFORMATION_CLASS levels ([MS-FSCC] 2.4)."""

    FILE_DIRECTORY = 1
    FILE_FULL_DIRECTORY = 2
    FILE_BOTH_DIRECTORY = 3
    FILE_BASIC = 4
    FILE_STANDARD = 5
    FILE_INTERNAL = 6
    FILE_EA = 7
    FILE_ACCESS = 8
    FILE_NAME = 9
    FILE_RENAME = 10
    FILE_LINK = 11
    FILE_NAMES = 12
    FILE_DISPOSITION = 13
    FILE_POSITION = 14
    FILE_FULL_EA = 15
    FILE_MODE = 16
    FILE_ALIGNMENT = 17
    FILE_ALL = 18
    FILE_ALLOCATION = 19
    FILE_END_OF_FILE = 20
    FILE_ALTERNATE_NAME = 21
    FILE_STREAM = 22
    FILE_PIPE = 23
    FILE_PIPE_LOCAL = 24
    FILE_PIPE_REMOTE = 25
    FILE_MAILSLOT_QUERY = 26
    FILE_MAILSLOT_SET = 27
    FILE_COMPRESSION = 28
    FILE_OBJECT_ID = 29
    FILE_MOVE_CLUSTER = 31
    FILE_QUOTA = 32
    FILE_REPARSE_POINT = 33
    FILE_NETWORK_OPEN = 34
    FILE_ATTRIBUTE_TAG = 35
    FILE_TRACKING = 36
    FILE_ID_BOTH_DIRECTORY = 37
    FILE_ID_FULL_DIRECTORY = 38
    FILE_VALID_DATA_LENGTH = 39
    FILE_SHORT_NAME = 40
    FILE_SFIO_RESERVE = 44
    FILE_SFIO_VOLUME = 45
    FILE_HARD_LINK = 46
    FILE_NORMALIZED_NAME = 48
    FILE_ID_GLOBAL_TX_DIRECTORY = 50
    FILE_STANDARD_LINK = 54
    FILE_ID = 59
    FILE_ID_EXTD_DIRECTORY = 60
    FILE_DISPOSITION_EX = 64
    FILE_RENAME_EX = 65
    FILE_ID_64_EXTD_DIRECTORY = 78
    FILE_ID_64_EXTD_BOTH_DIRECTORY = 79
    FILE_ID_ALL_EXTD_DIRECTORY = 80
    FILE_ID_ALL_EXTD_BOTH_DIRECTORY = 81


class FsInfoClass:
    """FS_INFORMATION_CLASS levels ([MS-FSCC] 2.5)."""

    FILE_FS_VOLUME = 1
    FILE_FS_LABEL = 2
    FILE_FS_SIZE = 3
    FILE_FS_DEVICE = 4
    FILE_FS_ATTRIBUTE = 5
    FILE_FS_CONTROL = 6
    FILE_FS_FULL_SIZE = 7
    FILE_FS_OBJECT_ID = 8
    FILE_FS_DRIVER_PATH = 9
    FILE_FS_VOLUME_FLAGS = 10
    FILE_FS_SECTOR_SIZE = 11


_C = FileInfoClass

# [MS-FSCC] 2.4 table: levels documented with "Query" (including the directory classes).
_DOC_QUERY = frozenset({
    _C.FILE_ACCESS, _C.FILE_ALIGNMENT, _C.FILE_ALL, _C.FILE_ALTERNATE_NAME,
    _C.FILE_ATTRIBUTE_TAG, _C.FILE_BASIC, _C.FILE_BOTH_DIRECTORY, _C.FILE_COMPRESSION,
    _C.FILE_DIRECTORY, _C.FILE_EA, _C.FILE_FULL_DIRECTORY, _C.FILE_FULL_EA,
    _C.FILE_ID_64_EXTD_BOTH_DIRECTORY, _C.FILE_ID_64_EXTD_DIRECTORY,
    _C.FILE_ID_ALL_EXTD_BOTH_DIRECTORY, _C.FILE_ID_ALL_EXTD_DIRECTORY,
    _C.FILE_ID_BOTH_DIRECTORY, _C.FILE_ID_EXTD_DIRECTORY, _C.FILE_ID_FULL_DIRECTORY,
    _C.FILE_ID, _C.FILE_INTERNAL, _C.FILE_MODE, _C.FILE_NAMES, _C.FILE_NETWORK_OPEN,
    _C.FILE_NORMALIZED_NAME, _C.FILE_PIPE, _C.FILE_PIPE_LOCAL, _C.FILE_PIPE_REMOTE,
    _C.FILE_POSITION, _C.FILE_QUOTA, _C.FILE_STANDARD, _C.FILE_STREAM,
})
# [MS-FSCC] 2.4 table: levels documented with "Set".
_DOC_SET = frozenset({
    _C.FILE_ALLOCATION, _C.FILE_BASIC, _C.FILE_DISPOSITION, _C.FILE_DISPOSITION_EX,
    _C.FILE_END_OF_FILE, _C.FILE_FULL_EA, _C.FILE_LINK, _C.FILE_MODE, _C.FILE_PIPE,
    _C.FILE_POSITION, _C.FILE_QUOTA, _C.FILE_RENAME, _C.FILE_RENAME_EX,
    _C.FILE_SHORT_NAME, _C.FILE_VALID_DATA_LENGTH,
})
# [MS-FSCC] 2.4 table: LOCAL-only levels and the two without a documented use.
_DOC_OTHER = frozenset({
    _C.FILE_HARD_LINK, _C.FILE_ID_GLOBAL_TX_DIRECTORY, _C.FILE_MAILSLOT_QUERY,
    _C.FILE_MAILSLOT_SET, _C.FILE_NAME, _C.FILE_OBJECT_ID, _C.FILE_REPARSE_POINT,
    _C.FILE_SFIO_RESERVE, _C.FILE_STANDARD_LINK, _C.FILE_TRACKING,
    _C.FILE_MOVE_CLUSTER, _C.FILE_SFIO_VOLUME,
})
DOCUMENTED_FILE_CLASSES = _DOC_QUERY | _DOC_SET | _DOC_OTHER

# [MS-SMB2] 2.2.39: the FILE classes a client may send in SET_INFO.
SMB2_SET_FILE_CLASSES = frozenset({
    _C.FILE_ALLOCATION, _C.FILE_BASIC, _C.FILE_DISPOSITION, _C.FILE_END_OF_FILE,
    _C.FILE_FULL_EA, _C.FILE_LINK, _C.FILE_MODE, _C.FILE_PIPE, _C.FILE_POSITION,
    _C.FILE_RENAME, _C.FILE_SHORT_NAME, _C.FILE_VALID_DATA_LENGTH,
})

# [MS-SMB2] <415>: Windows answers these QUERY_INFO levels with INVALID_INFO_CLASS.
_WIN_QUERY_INVALID = frozenset({1, 2, 3, 10, 11, 12, 13, 19, 20, 27, 31, 36, 37, 38, 39, 40, 50})
# [MS-SMB2] <416>: ... and these, undocumented, with NOT_SUPPORTED (52: INFO_LENGTH_MISMATCH).
_WIN_QUERY_NOT_SUPPORTED = frozenset({41, 43, 47, 49, 51, 53})
# [MS-SMB2] <428>: undocumented SET_INFO levels Windows fails with NOT_SUPPORTED.
_WIN_SET_NOT_SUPPORTED = frozenset({30, 41, 42, 43})

_F = FsInfoClass
_FS_DOCUMENTED = frozenset(range(_F.FILE_FS_VOLUME, _F.FILE_FS_SECTOR_SIZE + 1))
_FS_QUERY_ONLY = frozenset({_F.FILE_FS_VOLUME, _F.FILE_FS_SIZE, _F.FILE_FS_DEVICE,
                            _F.FILE_FS_ATTRIBUTE, _F.FILE_FS_FULL_SIZE,
                            _F.FILE_FS_SECTOR_SIZE})


def query_unsupported_status(info_class: int) -> int:
    """Status for a QUERY_INFO FILE level this server does not encode ([MS-SMB2] 3.3.5.20.1).

    Windows' exceptions (<415>, <416>) win over the SHOULDs, so a client sees what
    it would see from Windows: directory-only and set-only levels are
    INVALID_INFO_CLASS, other documented levels NOT_SUPPORTED, unknown levels
    INVALID_INFO_CLASS.
    """
    if info_class in _WIN_QUERY_INVALID:
        return NtStatus.INVALID_INFO_CLASS
    if info_class in _WIN_QUERY_NOT_SUPPORTED:
        return NtStatus.NOT_SUPPORTED
    if info_class == 52:
        return NtStatus.INFO_LENGTH_MISMATCH
    if info_class in DOCUMENTED_FILE_CLASSES:
        return NtStatus.NOT_SUPPORTED
    return NtStatus.INVALID_INFO_CLASS


def set_unsupported_status(info_class: int) -> int:
    """Status for a SET_INFO FILE level this server does not decode ([MS-SMB2] 3.3.5.21.1)."""
    if info_class in _DOC_SET:
        return NtStatus.NOT_SUPPORTED          # settable, just not by us (or not over SMB2)
    if info_class in _WIN_SET_NOT_SUPPORTED:
        return NtStatus.NOT_SUPPORTED          # <428>
    return NtStatus.INVALID_INFO_CLASS         # query-only, LOCAL, or undocumented


def fs_query_unsupported_status(info_class: int) -> int:
    """Status for a QUERY_INFO FILESYSTEM level we do not encode ([MS-SMB2] 3.3.5.20.2)."""
    if info_class in _FS_DOCUMENTED:
        return NtStatus.NOT_SUPPORTED
    return NtStatus.INVALID_INFO_CLASS


def fs_set_unsupported_status(info_class: int) -> int:
    """Status for a SET_INFO FILESYSTEM level ([MS-SMB2] 3.3.5.21.2); we set none."""
    if info_class not in _FS_DOCUMENTED or info_class in _FS_QUERY_ONLY:
        return NtStatus.INVALID_INFO_CLASS
    return NtStatus.NOT_SUPPORTED


# --- the access each class needs in Open.GrantedAccess ------------------------------------

# [MS-SMB2] 3.3.5.20.1 ([MS-FSA] 2.1.5.12.x): a QUERY_INFO FILE class not listed
# here needs no particular access.
QUERY_FILE_ACCESS: dict[int, int] = {
    _C.FILE_BASIC: A.FILE_READ_ATTRIBUTES,
    _C.FILE_ALL: A.FILE_READ_ATTRIBUTES,
    _C.FILE_PIPE: A.FILE_READ_ATTRIBUTES,
    _C.FILE_PIPE_LOCAL: A.FILE_READ_ATTRIBUTES,
    _C.FILE_PIPE_REMOTE: A.FILE_READ_ATTRIBUTES,
    _C.FILE_NETWORK_OPEN: A.FILE_READ_ATTRIBUTES,
    _C.FILE_ATTRIBUTE_TAG: A.FILE_READ_ATTRIBUTES,
    _C.FILE_FULL_EA: A.FILE_READ_EA,
}

# [MS-SMB2] 3.3.5.21.1 ([MS-FSA] 2.1.5.15.x): what a SET_INFO FILE class needs;
# FileModeInformation and FilePositionInformation need nothing.
SET_FILE_ACCESS: dict[int, int] = {
    _C.FILE_BASIC: A.FILE_WRITE_ATTRIBUTES,
    _C.FILE_PIPE: A.FILE_WRITE_ATTRIBUTES,
    _C.FILE_ALLOCATION: A.FILE_WRITE_DATA,
    _C.FILE_END_OF_FILE: A.FILE_WRITE_DATA,
    _C.FILE_VALID_DATA_LENGTH: A.FILE_WRITE_DATA,
    _C.FILE_DISPOSITION: A.DELETE,
    _C.FILE_DISPOSITION_EX: A.DELETE,
    _C.FILE_RENAME: A.DELETE,
    _C.FILE_RENAME_EX: A.DELETE,
    _C.FILE_SHORT_NAME: A.DELETE,
    _C.FILE_FULL_EA: A.FILE_WRITE_EA,
}

# SECURITY_INFORMATION bits ([MS-DTYP] 2.4.7) and the right that reads / writes
# each part ([MS-FSA] 2.1.5.13 query, 2.1.5.16 set).
_OWNER, _GROUP, _DACL, _SACL, _LABEL = 0x01, 0x02, 0x04, 0x08, 0x10
_ATTRIBUTE, _SCOPE, _BACKUP = 0x20, 0x40, 0x00010000
_QUERY_SECURITY_ACCESS = (
    (_OWNER | _GROUP | _DACL | _LABEL | _ATTRIBUTE, A.READ_CONTROL),
    (_SACL | _SCOPE, A.ACCESS_SYSTEM_SECURITY),
    (_BACKUP, A.READ_CONTROL | A.ACCESS_SYSTEM_SECURITY),
)
_SET_SECURITY_ACCESS = (
    (_OWNER | _GROUP | _LABEL, A.WRITE_OWNER),
    (_DACL | _ATTRIBUTE, A.WRITE_DAC),
    (_SACL | _SCOPE, A.ACCESS_SYSTEM_SECURITY),
    (_BACKUP, A.WRITE_DAC | A.WRITE_OWNER | A.ACCESS_SYSTEM_SECURITY),
)


def _security_access(table, security_information: int) -> int:
    needed = 0
    for parts, access in table:
        if security_information & parts:
            needed |= access
    return needed


def query_security_access(security_information: int) -> int:
    """The rights a security QUERY_INFO for these parts needs ([MS-SMB2] 3.3.5.20.3)."""
    return _security_access(_QUERY_SECURITY_ACCESS, security_information)


def set_security_access(security_information: int) -> int:
    """The rights a security SET_INFO of these parts needs ([MS-SMB2] 3.3.5.21.3)."""
    return _security_access(_SET_SECURITY_ACCESS, security_information)


def missing_access(granted: int, needed: int) -> int:
    """The bits of ``needed`` an open's ``granted`` access lacks (0: allowed)."""
    return needed & ~granted
