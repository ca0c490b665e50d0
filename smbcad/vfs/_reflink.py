"""Whether a share's file system shares extents (reflink), probed once.

FSCTL_DUPLICATE_EXTENTS_TO_FILE ([MS-FSA] 2.1.5.10.4) is FICLONERANGE here
(``FileOps.clone_range``).  Clients only try it on a volume that advertises
FILE_SUPPORTS_BLOCK_REFCOUNTING in FileFsAttributeInformation ([MS-FSCC]
2.5.1), so the share says so exactly when a clone works: the probe clones a
4 KiB anonymous file (O_TMPFILE, never visible in the share) into another in
the share's root directory, on the same file system as every file served.
XFS with reflink=1 and Btrfs pass; ext4 and tmpfs answer EOPNOTSUPP.  Any
failure (no O_TMPFILE, no write permission, a full disk) reads as "no": the
flag is a promise, so it is only made when a clone was seen to work.
"""

import fcntl
import os

from smbcad.vfs._fileops import FileOps, struct_file_clone_range

_PROBE_BYTES = 4096


def probe(dir_fd: int, ioctl=fcntl.ioctl) -> bool:
    """Whether FICLONERANGE works in the directory ``dir_fd`` (an O_PATH fd
    will do).  False when the directory takes no anonymous files either
    (O_TMPFILE needs write permission and file system support)."""
    fds = []
    try:
        for _ in range(2):
            fds.append(os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600,
                               dir_fd=dir_fd))
        source, target = fds
        os.write(source, b"\0" * _PROBE_BYTES)
        os.ftruncate(target, _PROBE_BYTES)
        ioctl(target, FileOps._FICLONERANGE,
              struct_file_clone_range(source, 0, _PROBE_BYTES, 0))
        return True
    except OSError:
        return False
    finally:
        for fd in fds:
            os.close(fd)
