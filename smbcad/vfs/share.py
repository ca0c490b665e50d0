"""``ShareFs``: the only code in the SMB server that touches files.

One instance per share holds an O_PATH fd on the share root.  Every name is
resolved by openat2 relative to that fd with RESOLVE_BENEATH (see
``_resolve.py``); operations that act on a directory entry (create, mkdir,
unlink, rename) go through the entry's parent, itself opened beneath the
root, and pass the kernel a single component, so nothing outside the share
is read, written, created or listed.  Hard links pointing at outside inodes
are not detectable here; whoever can make them already owns the share.

All methods are synchronous and raise ``SmbError``; the server runs the slow
ones (``flush``) in a thread.  Data and metadata methods live in ``_fileops``.

A file's identity is (``FileInfo.device_id``, ``FileInfo.file_id``): the
share's volume id (``volume_id.py``, found once when the root is opened) and
the inode, so it is the same on every node that mounts the volume.  A file
system mounted inside the share is served (RESOLVE_NO_XDEV is not set) and
its files keep ``st_dev`` as their volume half: they are not on the volume
that moves with the share, and their inode numbers are another namespace.
"""

import dataclasses
import errno
import os
import stat

from smbcad.proto.constants import FileAttributes as FA
from smbcad.proto.errors import SmbError
from smbcad.proto.fileinfo import FileInfo
from smbcad.proto.status import NtStatus
from smbcad.vfs import _meta, _reflink, attrs, eas, ntacl
from smbcad.vfs._fileops import ChangeTimes, FileOps
from smbcad.vfs._openat2 import RENAME_NOREPLACE, Syscalls
from smbcad.vfs._resolve import MISSING_ERRNOS, Resolver, is_listable, join
from smbcad.vfs.entry_xattrs import EntryXattrs
from smbcad.vfs.errors import smb_error
from smbcad.vfs.model import DirEntry, FsIdentity, FsSize, OpenFile, Resolved
from smbcad.vfs.name_index import NameIndex
from smbcad.vfs.paths import MAX_COMPONENT_BYTES, is_valid_component
from smbcad.vfs.short_name_cache import ShortNameCache
from smbcad.vfs.streams import OpenStreams, StreamHandle, StreamOps
from smbcad.vfs.volume_id import identify

Target = Resolved | OpenFile | tuple[str, ...]

_BYTES_PER_SECTOR = 512
# [MS-FSCC] 2.5.1: FILE_CASE_PRESERVED_NAMES | FILE_UNICODE_ON_DISK.
_FS_ATTRIBUTES = 0x00000002 | 0x00000004
# ... | FILE_NAMED_STREAMS | FILE_SUPPORTS_EXTENDED_ATTRIBUTES, with user xattrs (streams.py, eas.py).
_XATTR_FS_ATTRIBUTES = 0x00040000 | 0x00800000
# ... | FILE_SUPPORTS_BLOCK_REFCOUNTING, where a reflink clone works (_reflink.py).
_BLOCK_REFCOUNTING = 0x08000000
# How often a non-exclusive create retries when another client races it.
_CREATE_RACE_RETRIES = 3


class ShareFs(FileOps, StreamOps, eas.EaOps):
    """The file system port for one share ([MS-SMB2] 3.3.1.6 Share.LocalPath)."""

    def __init__(self, root: str, syscalls: Syscalls | None = None,
                 volume_id: str | None = None, case_sensitive: bool = False) -> None:
        """Open the share root.  ``volume_id`` is a configured volume id (a hex
        string, ``volume_id.parse_volume_id``; ValueError if malformed); without
        one it is read from the file system, once, here.  ``case_sensitive``
        (the share's ``case_sensitive`` key): a name not found in its exact
        spelling is not looked for in other cases."""
        self._sys = syscalls or Syscalls()
        self._root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # Refuse to serve without kernel containment (openat2 needs Linux 5.6).
            os.close(self._sys.openat2(self._root_fd, ".", os.O_PATH))
            self.volume = identify(self._root_fd, volume_id, label=root)
            # Descriptors stored by earlier versions move to root-only xattrs
            # before the share serves anything (once; ntacl.py).
            ntacl.migrate_share(self._root_fd, label=root)
        except (OSError, ValueError):
            os.close(self._root_fd)
            raise
        self.case_sensitive = case_sensitive
        self._owner = (os.geteuid(), os.getegid())
        # Names by case key of recently used directories (name_index.py).
        self.name_index = None if case_sensitive else NameIndex()
        self._resolver = Resolver(self._sys, self._root_fd, self.volume, self.name_index)
        self.change_times = ChangeTimes()
        self.open_streams = OpenStreams()       # named streams with open handles (streams.py)
        self.short_names = ShortNameCache()     # 8.3 maps of large directories listed
        self.entry_xattrs = EntryXattrs()       # listed entries' xattr reads, by ctime
        self._user_xattrs: bool | None = None   # probed on first use
        self._reflink: bool | None = None       # probed on first use

    def user_xattrs(self) -> bool:
        """Whether the share's file system takes user xattrs: EAs and named streams."""
        if self._user_xattrs is None:
            self._user_xattrs = eas.probe(f"/proc/self/fd/{self._root_fd}")
        return self._user_xattrs

    def reflink(self) -> bool:
        """Whether the share's file system clones extents (FICLONERANGE)."""
        if self._reflink is None:
            self._reflink = _reflink.probe(self._root_fd)
        return self._reflink

    def close(self) -> None:
        """Close the root fd; open files stay valid until their own ``close``."""
        if self._root_fd >= 0:
            fd, self._root_fd = self._root_fd, -1
            os.close(fd)
            if self.name_index is not None:
                self.name_index.close()

    def __enter__(self) -> "ShareFs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- names ---------------------------------------------------------------

    def lookup(self, components: tuple[str, ...],
               max_scan_bytes: int | None = None) -> Resolved:
        """Resolve a name; a missing leaf is ``exists=False``, a missing parent raises.

        STATUS_OBJECT_PATH_NOT_FOUND when a parent is missing, not a directory
        or an escaping/looping symlink; the same leaf cases give an unresolved
        ``Resolved`` (so a create can follow).  ``LargeDirectory`` rather than
        a case-insensitive scan of a directory past ``max_scan_bytes``.
        """
        resolved = self._resolver.lookup(components, max_scan_bytes)
        if resolved.info is not None and self.change_times:
            resolved = Resolved(resolved.path, resolved.exists,
                                self.change_times.apply(resolved.info), resolved.security)
        return resolved

    def stat_path(self, components: tuple[str, ...]) -> FileInfo:
        """``FileInfo`` of a name; STATUS_OBJECT_NAME_NOT_FOUND if it does not exist."""
        resolved = self.lookup(components)
        if not resolved.exists:
            raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no such file")
        return resolved.info

    def _existing(self, target: Target) -> str:
        """The on-disk path of a target that must exist."""
        if isinstance(target, (Resolved, OpenFile)):
            if isinstance(target, Resolved) and not target.exists:
                raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no such file")
            return target.path
        resolved = self.lookup(target)
        if not resolved.exists:
            raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no such file")
        return resolved.path

    # -- open / create -------------------------------------------------------

    def open(self, target: Resolved | tuple[str, ...], *, write: bool = False,
             directory: bool | None = None, create: bool = False, exclusive: bool = False,
             truncate: bool = False, mode: int = 0o644) -> OpenFile:
        """Open or create a file or directory ([MS-FSA] 2.1.5.1).

        ``directory``: True = must be a directory (STATUS_NOT_A_DIRECTORY), False
        = must not be (STATUS_FILE_IS_A_DIRECTORY), None = either.  ``create``
        makes a missing leaf (a directory when ``directory`` is True);
        ``exclusive`` fails an existing one with STATUS_OBJECT_NAME_COLLISION.
        ``truncate`` empties an existing file (implies a writable fd).  Only
        regular files and directories are opened (others: STATUS_ACCESS_DENIED).
        """
        resolved = target if isinstance(target, Resolved) else self.lookup(target)
        if resolved.exists and resolved.info is None:
            resolved = self.lookup(self._components(resolved.path))
        for _ in range(_CREATE_RACE_RETRIES):
            if resolved.exists:
                if create and exclusive:
                    raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "file exists")
                opened = self._open_existing(resolved, write or truncate, directory, truncate)
            elif not create:
                raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no such file")
            elif directory:
                return self._mkdir_at(resolved.path, 0o755, exclusive)
            else:
                opened = self._create_file(resolved.path, mode, exclusive)
            if opened is not None:
                return opened
            # Raced with another client: the name appeared or vanished. Look again.
            resolved = self.lookup(self._components(resolved.path))
        # Something sits under the name that cannot be opened (an escaping symlink).
        raise SmbError(NtStatus.ACCESS_DENIED, "name cannot be opened")

    def mkdir(self, components: tuple[str, ...], mode: int = 0o755) -> OpenFile:
        """Create a directory and open it; STATUS_OBJECT_NAME_COLLISION if the name exists."""
        resolved = self.lookup(components)
        if resolved.exists or not components:
            raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "name exists")
        return self._mkdir_at(resolved.path, mode, True)

    @staticmethod
    def _components(path: str) -> tuple[str, ...]:
        return tuple(path.split("/")) if path else ()

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        """(parent path, leaf) of an entry about to be created, removed or renamed.

        The leaf goes to an *at() call that does not follow it, so it must be
        one plain name: never "..", "." or "/"-bearing, even from a hand-made
        ``Resolved`` (the parent still resolves beneath the root).
        """
        parent, _, name = path.rpartition("/")
        if not is_valid_component(name):
            raise SmbError(NtStatus.OBJECT_NAME_INVALID, "invalid leaf name")
        return parent, name

    def _open_existing(self, resolved: Resolved, write: bool, directory: bool | None,
                       truncate: bool) -> OpenFile | None:
        is_dir = resolved.info.is_directory
        if directory is True and not is_dir:
            raise SmbError(NtStatus.NOT_A_DIRECTORY, "not a directory")
        if directory is False and is_dir:
            raise SmbError(NtStatus.FILE_IS_A_DIRECTORY, "is a directory")
        if is_dir:
            if truncate:
                raise SmbError(NtStatus.FILE_IS_A_DIRECTORY, "cannot truncate a directory")
            flags = os.O_RDONLY | os.O_DIRECTORY
        else:
            # O_NONBLOCK: opening a FIFO must not hang; it is refused just below.
            # (Device nodes need CAP_MKNOD to plant, i.e. the share's admin.)
            flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_NONBLOCK | os.O_NOCTTY
        try:
            fd = self._resolver.open_at(resolved.path, flags)
        except OSError as err:
            if err.errno in MISSING_ERRNOS:
                return None
            raise smb_error(err) from err
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode) != is_dir:
                os.close(fd)
                return None     # replaced since the lookup: look again
            if not is_dir:
                if not stat.S_ISREG(st.st_mode):
                    raise SmbError(NtStatus.ACCESS_DENIED, "not a regular file")
                os.set_blocking(fd, True)
                if truncate:
                    os.ftruncate(fd, 0)
        except OSError as err:
            os.close(fd)
            raise smb_error(err) from err
        except SmbError:
            os.close(fd)
            raise
        return OpenFile(fd, resolved.path, is_dir)

    def _create_file(self, path: str, mode: int, exclusive: bool) -> OpenFile | None:
        self._split(path)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        try:
            fd = self._resolver.open_at(path, flags, mode)
        except OSError as err:
            if err.errno == errno.EEXIST:
                if exclusive:
                    raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "file exists") from err
                return None
            if err.errno in MISSING_ERRNOS:
                raise SmbError(NtStatus.OBJECT_PATH_NOT_FOUND, "parent vanished") from err
            raise smb_error(err) from err
        self._stamp_new(fd, FA.ARCHIVE)   # what Windows gives a new file
        return OpenFile(fd, path, False, created=True)

    def _mkdir_at(self, path: str, mode: int, exclusive: bool) -> OpenFile:
        parent, name = self._split(path)
        parent_fd = self._resolver.open_dir(parent)
        try:
            os.mkdir(name, mode, dir_fd=parent_fd)
            created = True
        except OSError as err:
            if err.errno != errno.EEXIST or exclusive:
                raise smb_error(err) from err
            created = False
        finally:
            os.close(parent_fd)
        try:
            fd = self._resolver.open_at(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            if err.errno == errno.ENOTDIR:
                raise SmbError(NtStatus.NOT_A_DIRECTORY, "name is a file") from err
            if err.errno in MISSING_ERRNOS:
                # An escaping or dangling symlink holds the name.
                raise SmbError(NtStatus.ACCESS_DENIED, "name cannot be opened") from err
            raise smb_error(err) from err
        if created:
            self._stamp_new(fd, 0)
        return OpenFile(fd, path, True, created=created)

    @staticmethod
    def _stamp_new(fd: int, attributes: int) -> None:
        """Record the creation time of a new file so later writes do not move it."""
        try:
            attrs.write(fd, attrs.DosRecord(attributes, _meta.derived_creation_time(os.fstat(fd))))
        except OSError:
            # The create already succeeded; without the record the creation
            # time is derived from stat, which is what no-xattr shares get.
            return

    # -- delete / rename -----------------------------------------------------

    def delete(self, target: Target) -> None:
        """Remove a file, symlink or empty directory ([MS-FSA] 2.1.5.5 close with delete).

        STATUS_DIRECTORY_NOT_EMPTY for a non-empty directory; the share root
        cannot be deleted (STATUS_ACCESS_DENIED).  An ``OpenFile`` whose path
        no longer names its file (renamed elsewhere) gives
        STATUS_OBJECT_NAME_NOT_FOUND rather than deleting a stranger.
        """
        if isinstance(target, StreamHandle):
            return self.delete_stream(target)
        if isinstance(target, OpenFile) and self.defer_delete(target, self._delete_if_same):
            return None     # its streams are open: it goes when they close (streams.py)
        path = self._existing(target)
        if not path:
            raise SmbError(NtStatus.ACCESS_DENIED, "cannot delete the share root")
        parent, name = self._split(path)
        # An entry of the root is removed through the root's own descriptor.
        parent_fd = self._resolver.open_dir(parent) if parent else self._root_fd
        try:
            st = self._lstat(parent_fd, name)
            if isinstance(target, OpenFile):
                self._check_same(target, st)
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(name, dir_fd=parent_fd)
            else:
                os.unlink(name, dir_fd=parent_fd)
        except OSError as err:
            if err.errno == errno.EEXIST:   # some file systems say EEXIST for a full directory
                raise SmbError(NtStatus.DIRECTORY_NOT_EMPTY, "directory not empty") from err
            raise smb_error(err) from err
        finally:
            if parent_fd != self._root_fd:
                os.close(parent_fd)

    @staticmethod
    def _lstat(dir_fd: int, name: str) -> os.stat_result:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError as err:
            raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no such file") from err

    def _delete_if_same(self, path: str, file_key: tuple) -> None:
        """The deferred delete of a file whose streams were open: only if ``path``
        still names that file."""
        resolved = self.lookup(self._components(path))
        if resolved.exists and (resolved.info.device_id, resolved.info.file_id) == file_key:
            self.delete(resolved)

    @staticmethod
    def _check_same(open_file: OpenFile, st: os.stat_result) -> None:
        """The entry still is the open file (a symlink entry is the link itself: allowed)."""
        if stat.S_ISLNK(st.st_mode):
            return
        mine = os.fstat(open_file.fd)
        if (mine.st_dev, mine.st_ino) != (st.st_dev, st.st_ino):
            raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "open file no longer at its path")

    def rename(self, source: Target, destination: tuple[str, ...], replace: bool = False) -> Resolved:
        """Rename within the share ([MS-FSA] 2.1.5.15.12 FileRenameInformation).

        STATUS_OBJECT_PATH_NOT_FOUND if the target's parent is missing;
        STATUS_OBJECT_NAME_COLLISION if the target exists and not ``replace``;
        STATUS_ACCESS_DENIED when replacing a directory or a READONLY file, or
        renaming the root.  A rename to the same file in another case, or to
        another hard link of it, is allowed.  An ``OpenFile`` source gets its
        ``path`` updated.  Returns the new name, resolved.
        """
        if isinstance(source, StreamHandle):
            raise SmbError(NtStatus.INVALID_PARAMETER, "a stream is renamed with rename_stream")
        src_path = self._existing(source)
        if not src_path or not destination:
            raise SmbError(NtStatus.ACCESS_DENIED, "cannot rename the share root")
        dst = self.lookup(destination)
        src_parent, src_name = self._split(src_path)
        self._split(dst.path)
        new_name = destination[-1]
        src_dir = self._resolver.open_dir(src_parent)
        try:
            dst_dir = self._resolver.open_dir(dst.parent)
            try:
                src_st = self._lstat(src_dir, src_name)
                if isinstance(source, OpenFile):
                    self._check_same(source, src_st)
                self._rename_at(src_dir, src_name, src_st, dst_dir, dst, new_name, replace)
            except OSError as err:
                if err.errno == errno.EEXIST:   # RENAME_NOREPLACE lost a race
                    raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "target exists") from err
                raise smb_error(err) from err
            finally:
                os.close(dst_dir)
        finally:
            os.close(src_dir)
        new_path = join(dst.parent, new_name)
        if isinstance(source, OpenFile):
            source.path = new_path
        return self.lookup(self._components(new_path))

    def _rename_at(self, src_dir: int, src_name: str, src_st: os.stat_result, dst_dir: int,
                   dst: Resolved, new_name: str, replace: bool) -> None:
        if not dst.exists and dst.name != new_name:
            # An unusable entry (escaping symlink) owns the name in another case.
            raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "target name taken")
        if dst.exists:
            same_dir = os.path.samestat(os.fstat(src_dir), os.fstat(dst_dir))
            if same_dir and dst.name == src_name:
                # The source itself, found case-insensitively: a case-only rename.
                if new_name != src_name:
                    self._sys.renameat2(src_dir, src_name, dst_dir, new_name, RENAME_NOREPLACE)
                return
            dst_st = self._lstat(dst_dir, dst.name)
            if os.path.samestat(src_st, dst_st):
                # Another hard link of the same file: rename(2) would do nothing.
                os.unlink(dst.name, dir_fd=dst_dir)
            elif not replace:
                raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "target exists")
            elif dst.info.is_directory or dst.info.attributes & FA.READONLY:
                raise SmbError(NtStatus.ACCESS_DENIED, "target is a directory or read-only")
            else:
                self._sys.renameat2(src_dir, src_name, dst_dir, dst.name)
                src_dir, src_name = dst_dir, dst.name
                if new_name == dst.name:
                    return
        self._sys.renameat2(src_dir, src_name, dst_dir, new_name, RENAME_NOREPLACE)

    # -- listing and volume --------------------------------------------------

    def list_directory(self, open_file: OpenFile) -> list[DirEntry]:
        """All entries of an open directory: ``.`` and ``..`` first, then by name.

        Names not valid as Windows names (or not UTF-8) are skipped; a symlink
        is shown as its target when that stays in the share, else skipped.
        STATUS_INVALID_PARAMETER for a file handle ([MS-SMB2] 3.3.5.18).
        """
        if not open_file.is_directory:
            raise SmbError(NtStatus.INVALID_PARAMETER, "not a directory handle")
        entries = [DirEntry(".", self.stat(open_file))]
        entries.append(DirEntry("..", self._parent_info(open_file, entries[0].info)))
        found: list[DirEntry] = []
        try:
            with os.scandir(open_file.fd) as scan:
                for entry in scan:
                    info = self._entry_info(open_file, entry)
                    if info is not None:
                        found.append(DirEntry(entry.name, self.change_times.apply(info)))
        except OSError as err:
            raise smb_error(err) from err
        found.sort(key=lambda item: (item.name.upper(), item.name))
        return entries + found

    def _parent_info(self, open_file: OpenFile, own: FileInfo) -> FileInfo:
        """Info for "..": the lexical parent; the root is its own parent ([MS-FSCC] 2.1.5.1)."""
        if not open_file.path:
            return own
        try:
            return self.stat_path(self._components(open_file.path.rpartition("/")[0]))
        except SmbError:
            return own      # an ancestor was renamed under this handle; ".." is cosmetic

    def _entry_info(self, open_file: OpenFile, entry: os.DirEntry) -> FileInfo | None:
        try:
            return self._info_for_name(open_file, entry.name, entry.is_symlink())
        except FileNotFoundError:
            return None     # removed while listing

    def stored_security_at(self, path: str) -> bytes | None:
        """The descriptor a client stored on the file at ``path`` (share-relative,
        ``/``-separated, any case), if any: what CREATE checks before it opens."""
        fd = self._resolver.try_open(path, os.O_PATH)
        if fd is None and path:
            try:
                resolved = self.lookup(self._components(path))     # another case
            except SmbError:
                return None
            if not resolved.exists or resolved.path == path:
                return None
            fd = self._resolver.try_open(resolved.path, os.O_PATH)
        if fd is None:
            return None
        try:
            return ntacl.read(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

    def sibling_names(self, path: str) -> list[str]:
        """The listable names in the directory holding ``path`` (itself included):
        what an 8.3 name must be unique among ([MS-FSCC] 2.1.5.2.1)."""
        fd = self._resolver.try_open(path.rpartition("/")[0], os.O_RDONLY | os.O_DIRECTORY)
        if fd is None:
            return []
        try:
            return [name for name in os.listdir(fd) if is_listable(name)]
        except OSError as err:
            raise smb_error(err) from err
        finally:
            os.close(fd)

    def sibling_short_names(self, path: str) -> dict[str, str]:
        """The 8.3 names in the directory holding ``path`` ([MS-FSCC]
        2.1.5.2.1), through the share's kept maps: the same names that a
        listing of that directory gives (``QUERY_DIRECTORY``'s "Both"
        classes), computed once for an unchanged large directory."""
        names = sorted(self.sibling_names(path), key=lambda name: (name.upper(), name))
        return self.short_names.short_names([".", ".."] + names)

    def list_names(self, open_file: OpenFile) -> list[str]:
        """``.``, ``..``, then the listable names sorted as ``list_directory`` does,
        without stat: QUERY_DIRECTORY stats each entry when it is returned, so a
        running enumeration neither shows entries deleted meanwhile nor stale
        metadata ([MS-FSA] 2.1.5.6.3)."""
        if not open_file.is_directory:
            raise SmbError(NtStatus.INVALID_PARAMETER, "not a directory handle")
        try:
            names = [name for name in os.listdir(open_file.fd) if is_listable(name)]
        except OSError as err:
            raise smb_error(err) from err
        names.sort(key=lambda name: (name.upper(), name))
        return [".", ".."] + names

    def iter_names(self, open_file: OpenFile):
        """The listable names of an open directory in on-disk order, read as
        they are asked for: a caller that stops at the first one it needs
        (is it empty?) does not read a large directory whole."""
        if not open_file.is_directory:
            raise SmbError(NtStatus.INVALID_PARAMETER, "not a directory handle")
        try:
            with os.scandir(open_file.fd) as entries:
                for entry in entries:
                    if is_listable(entry.name):
                        yield entry.name
        except OSError as err:
            raise smb_error(err) from err

    def find_name(self, open_file: OpenFile, name: str,
                  max_scan_bytes: int | None = None) -> str | None:
        """The spelling on disk of ``name`` in an open directory, or None: its
        exact spelling, else (on a case-insensitive share) another case through
        the name index.  What a QUERY_DIRECTORY pattern without wildcards
        lists, without reading the directory.  ``LargeDirectory`` as ``lookup``."""
        if name in (".", ".."):
            return name
        if not is_listable(name):
            return None
        try:
            os.stat(name, dir_fd=open_file.fd, follow_symlinks=False)
            return name
        except FileNotFoundError:
            pass
        except OSError as err:
            raise smb_error(err) from err
        if self.name_index is None:
            return None
        return self.name_index.match(open_file.fd, name, max_scan_bytes)

    def directory_bytes(self, open_file: OpenFile) -> int:
        """What an open directory's entries take on disk (its st_size): the
        cost of listing or scanning it, which decides whether the server
        does that in a worker thread (issue 17)."""
        try:
            return os.fstat(open_file.fd).st_size
        except OSError as err:
            raise smb_error(err) from err

    def entry_info(self, open_file: OpenFile, name: str, ea_size: bool = False) -> FileInfo | None:
        """Current ``FileInfo`` of one name that ``list_names`` or ``find_name``
        gave (so a listable one) in an open directory; None if it is gone or
        not shown (escaping symlink).  ``ea_size`` fills
        ``FileInfo.ea_size`` (one listxattr more, so only for the classes that
        report EaSize)."""
        if name in (".", ".."):
            info = self.stat(open_file)
            if name == "..":
                info = self._parent_info(open_file, info)
            elif ea_size:
                info = dataclasses.replace(info, ea_size=self.ea_size(open_file))
            return info
        try:
            st = os.stat(name, dir_fd=open_file.fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                info = self._info_for_name(open_file, name, True)
                if info is not None and ea_size and self.user_xattrs():
                    info = dataclasses.replace(info, ea_size=self._entry_ea_size(
                        open_file, name, True))
            else:
                # One stat and no copy per entry: a listing pays this per name,
                # and the xattr reads only when the entry changed (entry_xattrs.py).
                want_ea = ea_size and self.user_xattrs()
                kept = self.entry_xattrs.get(st)
                if kept is not None and (not want_ea or kept[1] is not None):
                    dos_record, ea = kept
                else:
                    dos_record = _meta.read_dos_record(open_file.fd, name)
                    ea = self._entry_ea_size(open_file, name, False) if want_ea else \
                        kept[1] if kept is not None else None
                    self.entry_xattrs.keep(st, dos_record, ea)
                info = _meta.info_of_entry(open_file.fd, name, self.volume, st,
                                           ea if want_ea else 0, dos_record)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise smb_error(err) from err
        return self.change_times.apply(info) if info is not None else None

    def _entry_ea_size(self, open_file: OpenFile, name: str, is_symlink: bool) -> int:
        """EaSize of a listed entry: through the directory fd, or for a symlink
        (shown as its in-share target) through an O_PATH fd of the target."""
        if not is_symlink:
            return eas.size_of(f"/proc/self/fd/{open_file.fd}/{name}")
        fd = self._resolver.try_open(join(open_file.path, name), os.O_PATH)
        if fd is None:
            return 0
        try:
            return eas.size_of(f"/proc/self/fd/{fd}", follow=True)
        finally:
            os.close(fd)

    def _info_for_name(self, open_file: OpenFile, name: str, is_symlink: bool) -> FileInfo | None:
        if not is_listable(name):
            return None
        if not is_symlink:
            return _meta.info_of_entry(open_file.fd, name, self.volume)
        try:
            fd = self._resolver.try_open(join(open_file.path, name), os.O_PATH)
        except SmbError:
            return None     # unreadable target: skip the entry, not the whole listing
        if fd is None:
            return None     # escaping, looping or dangling symlink
        try:
            return _meta.info_of_path_fd(fd, name, self.volume)
        finally:
            os.close(fd)

    def statvfs(self) -> FsSize:
        """Space on the share's file system ([MS-FSCC] 2.5.4, 2.5.8)."""
        try:
            vfs = os.statvfs(self._root_fd)
        except OSError as err:
            raise smb_error(err) from err
        sectors = max(1, vfs.f_frsize // _BYTES_PER_SECTOR)
        return FsSize(vfs.f_blocks, vfs.f_bavail, sectors, _BYTES_PER_SECTOR, vfs.f_bfree)

    def fs_id(self) -> FsIdentity:
        """Volume identity ([MS-FSCC] 2.5.9, 2.5.1); the serial is the volume id's
        low 32 bits (``volume_id.py``), the same on every node."""
        root = self.stat_path(())
        serial = self.volume.serial
        attributes = _FS_ATTRIBUTES | (_XATTR_FS_ATTRIBUTES if self.user_xattrs() else 0)
        attributes |= _BLOCK_REFCOUNTING if self.reflink() else 0
        return FsIdentity(serial, root.creation_time, "NTFS", MAX_COMPONENT_BYTES, attributes)
