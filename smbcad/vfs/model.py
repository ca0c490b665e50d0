"""Values the VFS port hands to the server: resolved names, open files, listings."""

import os
from dataclasses import dataclass

from smbcad.proto.fileinfo import FileInfo
# One directory entry type for the port and the FSCC encoders ([MS-FSCC] 2.4).
from smbcad.proto.fscc.dir_info import DirEntry  # noqa: F401  (re-exported)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A name after case-insensitive resolution ([MS-FSA] 2.1.5.1 phase 6).

    ``path`` is the on-disk path relative to the share root, ``/``-separated,
    ``""`` for the root.  Existing components carry their on-disk spelling; a
    missing leaf keeps the client's spelling (that is the name it gets created
    with).  ``info`` is set exactly when ``exists``.  ``security``: the
    descriptor a client stored on the file (``ntacl.py``), read with ``info``
    from the same descriptor, or None (none stored, or no file).
    """

    path: str
    exists: bool
    info: FileInfo | None = None
    security: bytes | None = None

    @property
    def name(self) -> str:
        """The last component ("" for the root)."""
        return self.path.rpartition("/")[2]

    @property
    def parent(self) -> str:
        """The parent's path ("" when the parent is the root)."""
        return self.path.rpartition("/")[0]


@dataclass(slots=True, eq=False)
class OpenFile:
    """An open file or directory (the VFS half of [MS-SMB2] 3.3.1.10 Open).

    ``fd`` is a real descriptor (never O_PATH): O_RDONLY|O_DIRECTORY for
    directories, O_RDONLY or O_RDWR for files.  ``path`` follows renames made
    through ``ShareFs.rename``.  ``created`` says whether this open made it.
    """

    fd: int
    path: str
    is_directory: bool
    created: bool = False

    @property
    def name(self) -> str:
        """The last component ("" for the root)."""
        return self.path.rpartition("/")[2]

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        """Close the descriptor; a second call does nothing."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


@dataclass(frozen=True, slots=True)
class FsSize:
    """FileFsFullSizeInformation ([MS-FSCC] 2.5.4) in allocation units.

    ``free_units`` is what the caller may use (f_bavail); ``actual_free_units``
    includes root-reserved blocks (f_bfree).
    """

    total_units: int
    free_units: int
    sectors_per_unit: int
    bytes_per_sector: int
    actual_free_units: int


@dataclass(frozen=True, slots=True)
class FsIdentity:
    """FileFsVolumeInformation / FileFsAttributeInformation ([MS-FSCC] 2.5.9, 2.5.1)."""

    volume_serial: int           # u32: the low word of the share's volume id (volume_id.py)
    volume_creation_time: int    # FILETIME of the share root
    fs_name: str                 # "NTFS", as Samba reports, so clients enable everything
    max_component_length: int
    fs_attributes: int           # FILE_CASE_PRESERVED_NAMES | FILE_UNICODE_ON_DISK | ...
