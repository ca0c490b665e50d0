"""CREATE request and response ([MS-SMB2] 2.2.13, 2.2.14).

The create contexts are parsed up front into ``CreateContexts``
(create_contexts.py); the handler calls ``create_contexts.validate()`` for the
combination rules of 3.3.5.9.x.
"""

import struct
from dataclasses import dataclass, field

from smbcad.proto._util import decode_utf16, slice_checked
from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import (
    CreateContexts, FileId, RELATED_FILE_ID, encode_create_contexts, parse_create_contexts)
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

__all__ = ["CreateRequest", "CreateResponse", "CreateFlags", "FileId", "RELATED_FILE_ID"]

# StructureSize, SecurityFlags, RequestedOplockLevel, ImpersonationLevel,
# SmbCreateFlags, Reserved, DesiredAccess, FileAttributes, ShareAccess,
# CreateDisposition, CreateOptions, NameOffset, NameLength,
# CreateContextsOffset, CreateContextsLength.
_REQUEST = struct.Struct("<HBBIQQIIIIIHHII")
REQUEST_STRUCTURE_SIZE = 57
BUFFER_OFFSET = HEADER_SIZE + _REQUEST.size          # 120 (0x78)
# StructureSize, OplockLevel, Flags, CreateAction, CreationTime, LastAccessTime,
# LastWriteTime, ChangeTime, AllocationSize, EndofFile, FileAttributes,
# Reserved2, FileId, CreateContextsOffset, CreateContextsLength.
_RESPONSE = struct.Struct("<HBBIQQQQQQIIQQII")
RESPONSE_STRUCTURE_SIZE = 89
RESPONSE_CONTEXTS_OFFSET = HEADER_SIZE + _RESPONSE.size   # 152 (0x98)


class CreateFlags:
    """CREATE response Flags (2.2.14)."""

    REPARSEPOINT = 0x01


def _buffer_field(msg, offset: int, length: int):
    """A NameOffset/NameLength or CreateContextsOffset/Length pair (3.3.5.9).

    (0, 0) means absent; otherwise the field may not start inside the fixed
    part ("NameOffset is less than the Buffer field offset") nor run past the
    message ("extends beyond the CREATE request received").
    """
    if offset == 0 and length == 0:
        return msg[0:0]
    if offset < BUFFER_OFFSET:
        raise SmbError(NtStatus.INVALID_PARAMETER, "CREATE buffer overlaps the fixed part")
    return slice_checked(msg, offset, length)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """SMB2 CREATE Request (2.2.13).

    ``name`` is relative to the share ("" opens its root).  SecurityFlags,
    SmbCreateFlags and Reserved are kept for logs; the server ignores them.
    """

    security_flags: int
    requested_oplock_level: int
    impersonation_level: int
    smb_create_flags: int
    reserved: int
    desired_access: int
    file_attributes: int
    share_access: int
    create_disposition: int
    create_options: int
    name: str
    create_contexts: CreateContexts = field(default_factory=CreateContexts)

    @classmethod
    def decode(cls, msg) -> "CreateRequest":
        # "If the size of the SMB2 CREATE Request (excluding the SMB2 header)
        # is less than specified in the StructureSize field, then the request
        # MUST be failed with STATUS_INVALID_PARAMETER" (3.3.5.9).
        if len(msg) < HEADER_SIZE + REQUEST_STRUCTURE_SIZE:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short CREATE")
        (size, security_flags, oplock, impersonation, create_flags, reserved,
         access, attributes, share, disposition, options, name_offset,
         name_length, ctx_offset, ctx_length) = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != REQUEST_STRUCTURE_SIZE:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad CREATE StructureSize")
        name = decode_utf16(_buffer_field(msg, name_offset, name_length))
        contexts = CreateContexts()
        raw = _buffer_field(msg, ctx_offset, ctx_length)
        if len(raw):
            contexts = parse_create_contexts(raw)
        return cls(security_flags, oplock, impersonation, create_flags, reserved,
                   access, attributes, share, disposition, options, name, contexts)


@dataclass(frozen=True, slots=True)
class CreateResponse:
    """SMB2 CREATE Response (2.2.14).

    ``create_contexts`` are ``(name, data)`` pairs in wire order, e.g. from
    ``create_contexts.maximal_access_response`` or ``LeaseResponse.context``.
    """

    oplock_level: int
    flags: int
    create_action: int
    creation_time: int
    last_access_time: int
    last_write_time: int
    change_time: int
    allocation_size: int
    end_of_file: int
    file_attributes: int
    file_id: FileId
    create_contexts: tuple[tuple[bytes, bytes], ...] = ()

    def encode(self) -> bytes:
        chain = encode_create_contexts(self.create_contexts) if self.create_contexts else b""
        head = _RESPONSE.pack(
            RESPONSE_STRUCTURE_SIZE, self.oplock_level, self.flags, self.create_action,
            self.creation_time, self.last_access_time, self.last_write_time,
            self.change_time, self.allocation_size, self.end_of_file,
            self.file_attributes, 0, self.file_id.persistent, self.file_id.volatile,
            RESPONSE_CONTEXTS_OFFSET if chain else 0, len(chain))
        # An empty Buffer still occupies the byte that StructureSize 89 counts.
        return head + (chain or b"\x00")
