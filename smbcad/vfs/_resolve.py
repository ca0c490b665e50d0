"""Name resolution beneath the share root ([MS-FSA] 2.1.5.1 phase 6).

Every path is opened with openat2(root_fd, path, RESOLVE_BENEATH |
RESOLVE_NO_MAGICLINKS), always relative to the *root* fd, so an in-share
symlink such as ``a/link -> ../b`` resolves while anything leaving the share
(``..`` past the root, an absolute target, a magic link) fails in the kernel
with EXDEV.  No string check is trusted for containment.

Escaping symlinks, symlink loops and dangling symlinks look like missing
names, as Samba does with ``wide links = no``: STATUS_OBJECT_NAME_NOT_FOUND
for the last component, STATUS_OBJECT_PATH_NOT_FOUND for a parent.

Windows names are case-insensitive: the exact spelling is tried first (one
openat2 for the whole path), and only a miss asks the parent directory's
name index (``name_index.py``) for a name equal under Unicode upper-casing:
a dict probe once the directory is indexed, one scan the first time.  With
several candidates (``a`` and ``A`` both on disk) the lowest code-point
spelling wins.  A caller on the event loop passes ``max_scan_bytes``: a
parent not yet indexed and larger than that (st_size) raises
``LargeDirectory`` instead of being scanned, and the caller looks the name up
again in a worker thread (issue 17).  On a share configured case-sensitive
(``case_sensitive: true``) a miss is a miss: no index, no scan.
"""

import errno
import os

from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.vfs import _meta, ntacl
from smbcad.vfs._openat2 import Syscalls
from smbcad.vfs.errors import smb_error
from smbcad.vfs.model import Resolved
from smbcad.vfs.name_index import NameIndex, fold  # noqa: F401  (fold re-exported)
from smbcad.vfs.paths import is_valid_component
from smbcad.vfs.volume_id import VolumeId

# What a failed resolution step means "nothing usable under this name".
MISSING_ERRNOS = frozenset({errno.ENOENT, errno.EXDEV, errno.ELOOP, errno.ENOTDIR})


def join(parent: str, name: str) -> str:
    """Join share-relative paths ("" is the root)."""
    return f"{parent}/{name}" if parent else name


def is_listable(name: str) -> bool:
    """Whether an on-disk name can be shown to Windows clients.

    Names that are not valid UTF-8 (decoded by Python with surrogateescape)
    or that hold characters illegal in Windows names are skipped, where Samba
    would mangle them.
    """
    return is_valid_component(name)


class Resolver:
    """openat2-based lookups relative to one root directory fd."""

    def __init__(self, syscalls: Syscalls, root_fd: int, volume: VolumeId,
                 names: NameIndex | None = None) -> None:
        self._sys = syscalls
        self._root_fd = root_fd
        self._volume = volume
        # None: the share is case-sensitive, a miss is final.
        self.names = names

    def open_at(self, path: str, flags: int, mode: int = 0) -> int:
        """openat2 beneath the root; ``""`` is the root itself.  Raises ``OSError``."""
        return self._sys.openat2(self._root_fd, path or ".", flags, mode)

    def try_open(self, path: str, flags: int) -> int | None:
        """``open_at``, with ``None`` for a missing or escaping name."""
        try:
            return self.open_at(path, flags)
        except OSError as err:
            if err.errno in MISSING_ERRNOS:
                return None
            raise smb_error(err) from err

    def open_dir(self, path: str) -> int:
        """O_PATH fd of an existing directory, else STATUS_OBJECT_PATH_NOT_FOUND."""
        fd = self.try_open(path, os.O_PATH | os.O_DIRECTORY)
        if fd is None:
            raise SmbError(NtStatus.OBJECT_PATH_NOT_FOUND, "parent directory not found")
        return fd

    def lookup(self, components: tuple[str, ...],
               max_scan_bytes: int | None = None) -> Resolved:
        """Resolve validated components to their on-disk spelling."""
        for part in components:
            # paths.parse_smb_path guarantees this; re-checked because a "/" or
            # ".." here would change what the kernel resolves.
            if not is_valid_component(part):
                raise SmbError(NtStatus.OBJECT_NAME_INVALID, "invalid component")
        path = "/".join(components)
        fd = self.try_open(path, os.O_PATH)
        if fd is not None:
            return self._found(fd, path)
        if self.names is None and len(components) == 1:
            return Resolved(path, False)
        leaf = self._leaf(components, max_scan_bytes)
        return leaf if leaf is not None else self._walk(components, max_scan_bytes)

    def _leaf(self, components: tuple[str, ...], max_scan_bytes: int | None) -> Resolved | None:
        """Only the last component missing in its exact spelling (the common
        case: a new name, or a name in another case): its parent opened once,
        no walk.  None when the parent too is missing as spelled."""
        parent = "/".join(components[:-1])
        dir_fd = self.try_open(parent, os.O_RDONLY | os.O_DIRECTORY)
        if dir_fd is None:
            return None
        try:
            match = None if self.names is None else \
                self.names.match(dir_fd, components[-1], max_scan_bytes)
        finally:
            os.close(dir_fd)
        # Even if unusable (an escaping link), a match owns the name: a create
        # must collide with it, not add a twin.
        path = join(parent, components[-1] if match is None else match)
        fd = None if match is None else self.try_open(path, os.O_PATH)
        return Resolved(path, False) if fd is None else self._found(fd, path)

    def _found(self, fd: int, path: str) -> Resolved:
        try:
            info = _meta.info_of_path_fd(fd, path.rpartition("/")[2], self._volume)
            # A CREATE checks it next: read now, not by resolving the path again.
            security = ntacl.read(f"/proc/self/fd/{fd}")
        except OSError as err:
            raise smb_error(err) from err
        finally:
            os.close(fd)
        return Resolved(path, True, info, security)

    def _walk(self, components: tuple[str, ...], max_scan_bytes: int | None) -> Resolved:
        """Component by component, falling back to a case-insensitive match."""
        parent = ""
        last = len(components) - 1
        for index, part in enumerate(components):
            flags = os.O_PATH if index == last else os.O_PATH | os.O_DIRECTORY
            path = join(parent, part)
            fd = self.try_open(path, flags)
            if fd is None and self.names is not None:
                match = self._match(parent, part, max_scan_bytes)
                if match is not None:
                    # Even if unusable (an escaping link), the entry owns the
                    # name: a create must collide with it, not add a twin.
                    path = join(parent, match)
                    fd = self.try_open(path, flags)
            if fd is None:
                if index == last:
                    return Resolved(path, False)
                raise SmbError(NtStatus.OBJECT_PATH_NOT_FOUND, "path component not found")
            if index == last:
                return self._found(fd, path)
            os.close(fd)
            parent = path
        raise AssertionError("unreachable: the root takes the fast path")

    def _match(self, parent: str, name: str, max_scan_bytes: int | None) -> str | None:
        """The on-disk name in ``parent`` equal to ``name`` ignoring case, if any."""
        fd = self.try_open(parent, os.O_RDONLY | os.O_DIRECTORY)
        if fd is None:
            return None
        try:
            return self.names.match(fd, name, max_scan_bytes)
        finally:
            os.close(fd)
