"""QUERY_INFO ([MS-SMB2] 3.3.5.20): file, filesystem and security classes.

Each file class and each security part needs its right in the open's granted
access ([MS-SMB2] 3.3.5.20.1, 3.3.5.20.3; tables in ``proto.fscc.info_classes``),
else STATUS_ACCESS_DENIED.
"""

from dataclasses import replace

from smbcad.proto.constants import InfoType
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (DEFAULT_FS_ATTRIBUTES, QUERY_FILE_ACCESS, FileInfoClass, FsInfo,
                               QueryContext, is_8dot3, missing_access, query_file_info,
                               query_fs_info, query_security_access, short_name_in)
from smbcad.proto.query_info import QueryInfoRequest, QueryInfoResponse
from smbcad.proto.status import NtStatus
from smbcad.server import eas, security, streams
from smbcad.server.context import Reply

_FILE_PIPE_LOCAL_INFORMATION = 24


def _file_info(ctx, open_, request):
    fs = ctx.tree.share.fs
    missing = missing_access(open_.granted_access,
                             QUERY_FILE_ACCESS.get(request.file_info_class, 0))
    if missing:
        raise SmbError(NtStatus.ACCESS_DENIED, f"info class {request.file_info_class} "
                       f"needs access 0x{missing:08x}")
    if open_.is_pipe:
        if request.file_info_class != _FILE_PIPE_LOCAL_INFORMATION:
            raise SmbError(NtStatus.INVALID_PARAMETER, "pipe info class")
        data = open_.handle.local_information().encode()
        return data, NtStatus.SUCCESS
    if request.file_info_class == eas.FULL_EA:      # FileFullEaInformation (server/eas.py)
        return eas.query(ctx, open_, request)
    info = fs.stat(open_.handle)
    if _delete_pending(ctx, open_):
        # A pending delete already counts against the links ([MS-FSA] 2.1.5.11.27).
        info = replace(info, delete_pending=True,
                       number_of_links=max(0, info.number_of_links - 1))
    query = QueryContext(info=info, name=open_.handle.path.replace("/", "\\"),
                         access_mask=open_.granted_access, position=open_.position,
                         mode=open_.mode, volume_serial=info.device_id,   # FileIdInformation: u64
                         dialect=ctx.connection.dialect)
    if request.file_info_class == FileInfoClass.FILE_ALTERNATE_NAME:
        query = replace(query, short_name=_short_name(fs, open_.handle.path))
    query = streams.complete_query(ctx, open_, request.file_info_class, query)
    return query_file_info(request.file_info_class, query, request.output_buffer_length)


def _short_name(fs, path: str) -> str:
    """The 8.3 name of the file at ``path`` among its siblings ("" for the root);
    the siblings are listed only if a ~N name must be generated, and then
    through the share's kept maps, so the name is the one a directory
    listing shows."""
    if not path:
        return ""
    name = path.rpartition("/")[2]
    if is_8dot3(name):
        return name
    found = fs.sibling_short_names(path).get(name)
    return found if found is not None else short_name_in(name, ())     # gone meanwhile


def _delete_pending(ctx, open_) -> bool:
    return ctx.server.opens.delete_pending(open_.file_key)


def _fs_info(ctx, open_, request):
    fs = ctx.tree.share.fs
    size = fs.statvfs()
    ident = fs.fs_id()
    info = FsInfo(
        total_allocation_units=size.total_units, available_units=size.free_units,
        sectors_per_unit=size.sectors_per_unit, bytes_per_sector=size.bytes_per_sector,
        volume_serial=ident.volume_serial, volume_label=ctx.tree.share.name[:32],
        volume_creation_time=ident.volume_creation_time, fs_name=ident.fs_name,
        max_component_length=ident.max_component_length,
        fs_attributes=DEFAULT_FS_ATTRIBUTES | ident.fs_attributes,   # + streams, EAs (vfs)
        actual_available_units=size.actual_free_units, trim_enabled=True,
        # A stable volume object id, derived from the serial (FileFsObjectIdInformation).
        object_id=ident.volume_serial.to_bytes(4, "little") * 4)
    return query_fs_info(request.file_info_class, info, request.output_buffer_length)


def _security_info(ctx, open_, request):
    missing = missing_access(open_.granted_access,
                             query_security_access(request.additional_information))
    if missing:
        raise SmbError(NtStatus.ACCESS_DENIED, f"security query needs access 0x{missing:08x}")
    data = security.query(ctx.tree.share.fs, open_.handle, open_.is_directory,
                          request.additional_information)
    if len(data) > request.output_buffer_length:
        # The client learns the size it needs from the ErrorData (3.3.5.20.3).
        raise SmbError(NtStatus.BUFFER_TOO_SMALL, "descriptor does not fit",
                       len(data).to_bytes(4, "little"))
    return data, NtStatus.SUCCESS


_BY_TYPE = {InfoType.FILE: _file_info, InfoType.FILESYSTEM: _fs_info,
            InfoType.SECURITY: _security_info}


def handle(ctx):
    request = QueryInfoRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    if request.output_buffer_length > ctx.connection.max_transact_size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "output larger than MaxTransactSize")
    query = _BY_TYPE.get(request.info_type)
    if query is None:
        raise SmbError(NtStatus.INVALID_PARAMETER, f"info type {request.info_type}")
    if open_.is_pipe and request.info_type != InfoType.FILE:
        raise SmbError(NtStatus.INVALID_PARAMETER, "pipes have file info only")
    data, status = query(ctx, open_, request)
    body = QueryInfoResponse(data).encode()
    return Reply(body, status) if status != NtStatus.SUCCESS else body
