"""The file system port: the only package in smbcad that touches files.

Everything above it speaks SMB names and ``FileInfo``; everything here is
confined to a share by the kernel (openat2 RESOLVE_BENEATH, see
``_resolve.py``).  Public surface:

- ``parse_smb_path`` / ``is_valid_component`` / ``has_trailing_backslash``:
  SMB2 names → components, with Windows' NTSTATUS for bad ones;
  ``parse_smb_name`` also returns a ``file:stream`` name's stream.
- ``ShareFs``: lookup, open/create, mkdir, delete, rename, listing, I/O,
  metadata, volume information for one share.  Its case-insensitive lookups
  go through a per-directory name index (``name_index.py``), none on a share
  made ``case_sensitive``.
- ``Resolved``, ``OpenFile``, ``DirEntry``, ``FsSize``, ``FsIdentity``.
- ``StreamHandle``: an open named stream (kept in an xattr, ``streams.py``).
- ``status_for_errno``: the errno → NTSTATUS table.
- ``LargeDirectory``: what ``ShareFs.lookup(..., max_scan_bytes=N)`` raises
  rather than scan a directory larger than N bytes for a name's spelling.
- ``VolumeId`` / ``parse_volume_id``: a share's volume identity (``ShareFs.volume``)
  and the parser of a configured one (``volume_id.py``).
"""

from smbcad.vfs.errors import LargeDirectory, status_for_errno
from smbcad.vfs.model import DirEntry, FsIdentity, FsSize, OpenFile, Resolved
from smbcad.vfs.paths import (
    MAX_COMPONENT_BYTES,
    check_component,
    has_trailing_backslash,
    is_valid_component,
    is_valid_stream_name,
    parse_smb_name,
    parse_smb_path,
)
from smbcad.vfs.share import ShareFs
from smbcad.vfs.streams import StreamHandle
from smbcad.vfs.volume_id import VolumeId, parse_volume_id

__all__ = [
    "MAX_COMPONENT_BYTES",
    "DirEntry",
    "FsIdentity",
    "FsSize",
    "LargeDirectory",
    "OpenFile",
    "Resolved",
    "ShareFs",
    "StreamHandle",
    "VolumeId",
    "check_component",
    "has_trailing_backslash",
    "is_valid_component",
    "is_valid_stream_name",
    "parse_smb_name",
    "parse_smb_path",
    "parse_volume_id",
    "status_for_errno",
]
