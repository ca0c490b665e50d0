"""SET_INFO ([MS-SMB2] 3.3.5.21; semantics from [MS-FSA] 2.1.5.15).

Basic (times, attributes), end of file, allocation, rename (with replace),
disposition (delete pending), position, mode, and security descriptors.  Each
class and each security part needs its right in the open's granted access
([MS-SMB2] 3.3.5.21.1, 3.3.5.21.3; tables in ``proto.fscc.info_classes``),
checked before any lease break the change would cause.
"""

from smbcad.proto.constants import FileAttributes as FA, InfoType
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (
    FileAllocationInfo, FileBasicInfo, FileDispositionInfo, FileDispositionInfoEx,
    FileEndOfFileInfo, FileFullEaInfo, FileModeInfo, FilePositionInfo, FileRenameInfo,
    SET_FILE_ACCESS, decode_set_info, missing_access, set_security_access)
from smbcad.proto.set_info import SetInfoRequest, SetInfoResponse
from smbcad.proto.status import NtStatus
from smbcad.server import deletes, durable, eas, leases, renamed_opens, renames, security, streams
from smbcad.server.context import answer_after
from smbcad.vfs import parse_smb_path

_MODE_BITS = 0x0000003E                 # [MS-FSCC] 2.4.26 FILE_MODE_INFORMATION
_MAX_SIZE = (1 << 63) - 1


def _require(open_, access: int, what: str) -> None:
    missing = missing_access(open_.granted_access, access)
    if missing:
        raise SmbError(NtStatus.ACCESS_DENIED, f"{what} needs access 0x{missing:08x}")


def _basic(ctx, open_, info: FileBasicInfo) -> None:
    fs = ctx.tree.share.fs
    # Attributes first: they rewrite the xattr, which would move a ChangeTime
    # that set_times just recorded.
    fs.set_attributes(open_.handle, info.file_attributes)
    fs.set_times(open_.handle, *info.times)


def _end_of_file(ctx, open_, info: FileEndOfFileInfo) -> None:
    if info.end_of_file < 0 or info.end_of_file > _MAX_SIZE:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad end of file")
    ctx.tree.share.fs.truncate(open_.handle, info.end_of_file)
    leases.break_read_caching(ctx.server, open_)     # after, as a WRITE's


def _allocation(ctx, open_, info: FileAllocationInfo) -> None:
    if info.allocation_size < 0 or info.allocation_size > _MAX_SIZE:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad allocation size")
    ctx.tree.share.fs.allocate(open_.handle, info.allocation_size)
    leases.break_read_caching(ctx.server, open_)     # after, as a WRITE's


def _set_delete_pending(ctx, open_, delete: bool) -> None:
    """[MS-FSA] 2.1.5.15.3: DELETE access, not read-only, an empty directory."""
    if delete:
        fs = ctx.tree.share.fs
        info = fs.stat(open_.handle)
        if info.attributes & FA.READONLY:
            raise SmbError(NtStatus.CANNOT_DELETE, "read-only file")
        if info.is_directory and not deletes.directory_is_empty(ctx.server, fs, open_.handle):
            raise SmbError(NtStatus.DIRECTORY_NOT_EMPTY)
        if not open_.handle.path:
            raise SmbError(NtStatus.CANNOT_DELETE, "share root")
    ctx.server.opens.set_delete_pending(open_.file_key, delete)
    if not delete:
        open_.delete_on_close = False


def _disposition(ctx, open_, info: FileDispositionInfo) -> None:
    _set_delete_pending(ctx, open_, info.delete_pending)


def _disposition_ex(ctx, open_, info: FileDispositionInfoEx) -> None:
    _set_delete_pending(ctx, open_, info.delete)


def _position(ctx, open_, info: FilePositionInfo) -> None:
    if info.current_byte_offset < 0:
        raise SmbError(NtStatus.INVALID_PARAMETER, "negative position")
    open_.position = info.current_byte_offset


def _mode(ctx, open_, info: FileModeInfo) -> None:
    if info.mode & ~_MODE_BITS:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad mode bits")
    open_.mode = info.mode


def _rename(ctx, open_, info: FileRenameInfo) -> None:
    """[MS-FSA] 2.1.5.15.12; [MS-SMB2] 3.3.5.21.1: the target is share-relative."""
    if info.root_directory:
        raise SmbError(NtStatus.INVALID_PARAMETER, "RootDirectory must be 0")
    name = info.file_name.lstrip("\\")
    if streams.rename(ctx, open_, info):    # ":stream" targets, stream handles (server/streams.py)
        return
    target = parse_smb_path(name)
    if not target:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "empty target")
    server, fs = ctx.server, ctx.tree.share.fs
    old_path = open_.handle.path
    if open_.is_directory and renamed_opens.opens_below(server, ctx.tree.share, old_path):
        raise SmbError(NtStatus.ACCESS_DENIED, "files below the directory are open")
    resolved = fs.lookup(target)
    if resolved.exists:
        key = (resolved.info.device_id, resolved.info.file_id)
        if key != open_.file_key:
            if not info.replace_if_exists:
                raise SmbError(NtStatus.OBJECT_NAME_COLLISION)
            if server.opens.is_open(key):
                raise SmbError(NtStatus.ACCESS_DENIED, "target is open")
    new = fs.rename(open_.handle, target, replace=info.replace_if_exists)
    renamed_opens.follow(server, ctx.tree.share, open_.file_key, old_path, new.path)
    renames.after_rename(ctx, open_, old_path, new.path)     # directory leases (server/renames.py)


# What a persistent open's record carries (smbcad.server.open_records.to_record).
_PERSISTED_INFO = (FileDispositionInfo, FileDispositionInfoEx, FileRenameInfo, FilePositionInfo)

_FILE_HANDLERS = {
    FileBasicInfo: _basic, FileEndOfFileInfo: _end_of_file, FileAllocationInfo: _allocation,
    FileDispositionInfo: _disposition, FileDispositionInfoEx: _disposition_ex,
    FilePositionInfo: _position, FileModeInfo: _mode, FileRenameInfo: _rename,
    FileFullEaInfo: eas.set_full_ea,
}


def _security(ctx, open_, request) -> None:
    """3.3.5.21.3: store the descriptor; its DACL also becomes the POSIX mode."""
    extra = request.additional_information
    _require(open_, set_security_access(extra), "setting these security parts")
    security.apply(ctx.tree.share.fs, open_.handle, open_.is_directory, request.buffer, extra,
                   absent_dacl_is_null=True,
                   id_of=security.domain_ids(ctx.server.config.identity.idmap,
                                             ctx.session.identity))


def handle(ctx):
    request = SetInfoRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    if open_.is_pipe:
        raise SmbError(NtStatus.NOT_SUPPORTED, "SET_INFO on a pipe")
    if ctx.tree.share.read_only:
        raise SmbError(NtStatus.ACCESS_DENIED, "read-only share")
    if request.info_type == InfoType.FILE:
        info = decode_set_info(request.file_info_class, request.buffer)
        handler = _FILE_HANDLERS.get(type(info))
        if handler is None:
            raise SmbError(NtStatus.NOT_SUPPORTED, type(info).__name__)
        _require(open_, SET_FILE_ACCESS.get(request.file_info_class, 0), type(info).__name__)
        pending = leases.before_set_info(ctx, open_, info, _retry)   # rename/delete vs H leases
        if pending is not None:
            return pending
        old_path = open_.handle.path
        handler(ctx, open_, info)
        if isinstance(info, _PERSISTED_INFO):
            # a persistent open's new name, delete-on-close or position is in
            # the handle store before the answer; a rename moves every open of
            # the file (renamed_opens.follow), so all their records change at once
            state = ctx.server.opens.file_state(open_.file_key)
            moved = (state.opens if isinstance(info, FileRenameInfo) and state is not None
                     else [open_])
            commit = durable.persist_many(ctx.server.opens, moved)
            if ctx.server.peers is not None and open_.handle.path != old_path:
                # other workers' opens of it follow before the answer
                return renamed_opens.answer_when_followed(ctx, open_, old_path, commit,
                                                          SetInfoResponse().encode())
            if commit is not None:
                return answer_after(commit, SetInfoResponse().encode())
    elif request.info_type == InfoType.SECURITY:
        _security(ctx, open_, request)
    elif request.info_type == InfoType.FILESYSTEM:
        raise SmbError(NtStatus.NOT_SUPPORTED, "filesystem info cannot be set")
    else:
        raise SmbError(NtStatus.INVALID_PARAMETER, f"info type {request.info_type}")
    return SetInfoResponse().encode()


def _retry(ctx):
    """A SET_INFO that waited for a lease break starts over."""
    return handle(ctx)
