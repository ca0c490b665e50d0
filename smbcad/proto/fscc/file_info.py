"""QUERY_INFO file information classes ([MS-FSCC] 2.4) encoded from a ``FileInfo``.

``encode_file_info(info_class, ctx)`` returns the full structure.
``query_file_info(info_class, ctx, output_buffer_length)`` also applies the
OutputBufferLength rule of [MS-SMB2] 3.3.5.20.1: a buffer smaller than the
class's fixed part fails with STATUS_INFO_LENGTH_MISMATCH, and a variable part
that does not fit is cut and answered with STATUS_BUFFER_OVERFLOW (names cut on a
character boundary, stream lists on an entry boundary, [MS-FSA] 2.1.5.12.19/29).

Status choices for classes we do not encode live in ``info_classes``
(``query_unsupported_status``).  Per class:

* FileNameInformation (9) is answered, with a leading backslash, as Samba does;
  Windows fails it remotely with NOT_SUPPORTED ([MS-FSA] 2.1.5.12.19).
* FileAllInformation (18) carries the same path in NameInformation, as Samba and
  Windows up to 2012 R2 do ([MS-SMB2] <420>; newer Windows sends an empty name).
* FileAlternateNameInformation (21) is ``ctx.short_name`` (``short_names.py``);
  without one (the share root) it fails with STATUS_OBJECT_NAME_NOT_FOUND
  ([MS-FSA] 2.1.5.12.4).
* FileStreamInformation (22) lists "::$DATA" for a file and nothing for a
  directory unless ``ctx.streams`` says otherwise.
* FileNormalizedNameInformation (48) is the share-relative path without a leading
  backslash, NOT_SUPPORTED below SMB 3.1.1 (as Samba; [MS-SMB2] 3.3.5.20.1).
* FileIdInformation (59) is NOT_SUPPORTED below SMB 3.0 ([MS-SMB2] 3.3.5.20.1).
* FileFullEaInformation (15) is not built from a FileInfo: see ``ea.encode_full_ea_list``.
"""

import struct
from collections.abc import Callable
from dataclasses import dataclass

from smbcad.proto.constants import Dialect, FileAttributes
from smbcad.proto.errors import SmbError
from smbcad.proto.fileinfo import FileInfo
from smbcad.proto.fscc._common import (I64, NAME_INFO_HEADER, NAME_INFO_MIN, U32,
                                       client_path, file_attributes, name_information,
                                       utf16)
from smbcad.proto.fscc.info_classes import FileInfoClass as C, query_unsupported_status
from smbcad.proto.status import NtStatus

_BASIC = struct.Struct("<qqqqI4x")          # 2.4.7, 40 bytes
_STANDARD = struct.Struct("<qqIBB2x")       # 2.4.47, 24 bytes
_INTERNAL = struct.Struct("<Q")             # 2.4.27
_COMPRESSION = struct.Struct("<qHBBB3x")    # 2.4.9, 16 bytes
_NETWORK_OPEN = struct.Struct("<qqqqqqI4x") # 2.4.34, 56 bytes
_ATTRIBUTE_TAG = struct.Struct("<II")       # 2.4.6
_FILE_ID = struct.Struct("<Q16s")           # 2.4.26, 24 bytes
_STREAM = struct.Struct("<IIqq")            # 2.4.49 up to StreamName, 24 bytes
_ALL_NAME_OFFSET = 96                       # FieldOffset(FILE_ALL_INFORMATION.NameInformation)

COMPRESSION_FORMAT_NONE = 0x0000
COMPRESSION_FORMAT_LZNT1 = 0x0002
# FILE_MODE_INFORMATION bits a query may report ([MS-FSCC] 2.4.31): WRITE_THROUGH,
# SEQUENTIAL_ONLY, NO_INTERMEDIATE_BUFFERING, SYNCHRONOUS_IO_ALERT/NONALERT.
FILE_MODE_MASK = 0x0000003E
DATA_STREAM = "::$DATA"


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One data stream for FileStreamInformation ([MS-FSCC] 2.4.49); name "" is the default."""

    name: str
    size: int
    allocation_size: int

    @property
    def wire_name(self) -> str:
        return f":{self.name}:$DATA"


@dataclass(frozen=True, slots=True)
class QueryContext:
    """Everything a QUERY_INFO FILE class may need besides the file's metadata.

    ``name`` is the path as the client sees it, relative to the share, backslash
    form (a leading backslash is optional; "" is the share root).  ``mode`` is the
    open's FILE_MODE_INFORMATION bits (CreateOptions subset), ``alignment`` its
    FILE_ALIGNMENT_INFORMATION value.  ``streams=None`` means "the default data
    stream only" for a file and "no streams" for a directory.
    """

    info: FileInfo
    name: str = ""
    access_mask: int = 0
    position: int = 0
    mode: int = 0
    alignment: int = 0
    short_name: str = ""
    volume_serial: int = 0
    reparse_tag: int = 0
    streams: tuple[StreamInfo, ...] | None = None
    dialect: int = Dialect.SMB_3_1_1


def encode_basic(ctx: QueryContext) -> bytes:
    """FILE_BASIC_INFORMATION ([MS-FSCC] 2.4.7)."""
    i = ctx.info
    return _BASIC.pack(i.creation_time, i.last_access_time, i.last_write_time,
                       i.change_time, file_attributes(i))


def encode_standard(ctx: QueryContext) -> bytes:
    """FILE_STANDARD_INFORMATION ([MS-FSCC] 2.4.47); no links left means delete pending."""
    i = ctx.info
    delete_pending = i.delete_pending or i.number_of_links == 0
    return _STANDARD.pack(i.allocation_size, i.end_of_file, i.number_of_links,
                          int(delete_pending), int(i.is_directory))


def encode_internal(ctx: QueryContext) -> bytes:
    """FILE_INTERNAL_INFORMATION ([MS-FSCC] 2.4.27): the 64-bit file ID."""
    return _INTERNAL.pack(ctx.info.file_id)


def encode_ea(ctx: QueryContext) -> bytes:
    """FILE_EA_INFORMATION ([MS-FSCC] 2.4.13); ``FileInfo.ea_size`` is reported as is."""
    return U32.pack(ctx.info.ea_size)


def encode_access(ctx: QueryContext) -> bytes:
    """FILE_ACCESS_INFORMATION ([MS-FSCC] 2.4.1): the open's granted access."""
    return U32.pack(ctx.access_mask)


def encode_position(ctx: QueryContext) -> bytes:
    """FILE_POSITION_INFORMATION ([MS-FSCC] 2.4.40)."""
    return I64.pack(ctx.position)


def encode_mode(ctx: QueryContext) -> bytes:
    """FILE_MODE_INFORMATION ([MS-FSCC] 2.4.31); DELETE_ON_CLOSE is never reported."""
    return U32.pack(ctx.mode & FILE_MODE_MASK)


def encode_alignment(ctx: QueryContext) -> bytes:
    """FILE_ALIGNMENT_INFORMATION ([MS-FSCC] 2.4.3)."""
    return U32.pack(ctx.alignment)


def encode_name(ctx: QueryContext) -> bytes:
    """FileNameInformation ([MS-FSCC] 2.4.32): ``\\path\\to\\file``."""
    return name_information(client_path(ctx.name))


def encode_all(ctx: QueryContext) -> bytes:
    """FILE_ALL_INFORMATION ([MS-FSCC] 2.4.2): eight fixed parts, then the name."""
    return b"".join((encode_basic(ctx), encode_standard(ctx), encode_internal(ctx),
                     encode_ea(ctx), encode_access(ctx), encode_position(ctx),
                     encode_mode(ctx), encode_alignment(ctx), encode_name(ctx)))


def encode_alternate_name(ctx: QueryContext) -> bytes:
    """FileAlternateNameInformation ([MS-FSCC] 2.4.5): the 8.3 name, if there is one."""
    if not ctx.short_name:
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no 8.3 name")
    return name_information(ctx.short_name)


def _streams(ctx: QueryContext) -> tuple[StreamInfo, ...]:
    if ctx.streams is not None:
        return ctx.streams
    if ctx.info.is_directory:
        return ()
    return (StreamInfo("", ctx.info.end_of_file, ctx.info.allocation_size),)


def encode_stream(ctx: QueryContext) -> bytes:
    """FILE_STREAM_INFORMATION list ([MS-FSCC] 2.4.49), entries 8-byte aligned."""
    entries = []
    for stream in _streams(ctx):
        raw = utf16(stream.wire_name)
        entries.append(_STREAM.pack(0, len(raw), stream.size, stream.allocation_size) + raw)
    return chain_entries(entries)


def encode_compression(ctx: QueryContext) -> bytes:
    """FILE_COMPRESSION_INFORMATION ([MS-FSA] 2.1.5.12.8): we never compress."""
    i = ctx.info
    compressed = bool(i.attributes & FileAttributes.COMPRESSED)
    size = 0 if i.is_directory else i.allocation_size
    if compressed:  # 64 KiB units, 4 KiB chunks and clusters, as NTFS reports
        return _COMPRESSION.pack(size, COMPRESSION_FORMAT_LZNT1, 16, 12, 12)
    return _COMPRESSION.pack(size, COMPRESSION_FORMAT_NONE, 0, 0, 0)


def encode_network_open(ctx: QueryContext) -> bytes:
    """FILE_NETWORK_OPEN_INFORMATION ([MS-FSCC] 2.4.34)."""
    i = ctx.info
    return _NETWORK_OPEN.pack(i.creation_time, i.last_access_time, i.last_write_time,
                              i.change_time, i.allocation_size, i.end_of_file,
                              file_attributes(i))


def encode_attribute_tag(ctx: QueryContext) -> bytes:
    """FILE_ATTRIBUTE_TAG_INFORMATION ([MS-FSCC] 2.4.6); the tag only with REPARSE_POINT."""
    attrs = file_attributes(ctx.info)
    tag = ctx.reparse_tag if attrs & FileAttributes.REPARSE_POINT else 0
    return _ATTRIBUTE_TAG.pack(attrs, tag)


def encode_normalized_name(ctx: QueryContext) -> bytes:
    """FileNormalizedNameInformation ([MS-FSCC] 2.4.35): share-relative, no leading ``\\``."""
    return name_information(client_path(ctx.name)[1:])


def file_id_128(file_id: int) -> bytes:
    """The 128-bit file ID ([MS-FSCC] 2.1.10) of a 64-bit one: zero-extended, as NTFS."""
    return file_id.to_bytes(8, "little") + bytes(8)


def encode_file_id(ctx: QueryContext) -> bytes:
    """FILE_ID_INFORMATION ([MS-FSCC] 2.4.26): VolumeSerialNumber + 128-bit FileId."""
    return _FILE_ID.pack(ctx.volume_serial, file_id_128(ctx.info.file_id))


def chain_entries(entries: list[bytes]) -> bytes:
    """Join entries that start with NextEntryOffset: 8-byte aligned, the last one 0."""
    out = bytearray()
    for index, entry in enumerate(entries):
        if index + 1 < len(entries):
            size = (len(entry) + 7) & ~7
            out += U32.pack(size) + entry[4:] + bytes(size - len(entry))
        else:
            out += U32.pack(0) + entry[4:]
    return bytes(out)


# How a class's output may be cut when OutputBufferLength is short.
FIXED, NAME, STREAMS = "fixed", "name", "streams"


@dataclass(frozen=True, slots=True)
class InfoClass:
    """One supported QUERY_INFO class: its encoder and how [MS-SMB2] 3.3.5.20.1 applies.

    ``fixed_size`` is the smallest OutputBufferLength accepted ([MS-FSA] 2.1.5.12.x:
    sizeof() of the C structure, names rounded as BlockAlign(offset + 2, n)).
    ``name_offset`` is where a cuttable FILE_NAME_INFORMATION starts.
    """

    name: str
    encode: Callable[[QueryContext], bytes]
    fixed_size: int
    truncation: str = FIXED
    name_offset: int = 0
    min_dialect: int = 0


FILE_INFO_CLASSES: dict[int, InfoClass] = {
    C.FILE_BASIC: InfoClass("FileBasicInformation", encode_basic, 40),
    C.FILE_STANDARD: InfoClass("FileStandardInformation", encode_standard, 24),
    C.FILE_INTERNAL: InfoClass("FileInternalInformation", encode_internal, 8),
    C.FILE_EA: InfoClass("FileEaInformation", encode_ea, 4),
    C.FILE_ACCESS: InfoClass("FileAccessInformation", encode_access, 4),
    C.FILE_NAME: InfoClass("FileNameInformation", encode_name, NAME_INFO_MIN, NAME),
    C.FILE_POSITION: InfoClass("FilePositionInformation", encode_position, 8),
    C.FILE_MODE: InfoClass("FileModeInformation", encode_mode, 4),
    C.FILE_ALIGNMENT: InfoClass("FileAlignmentInformation", encode_alignment, 4),
    C.FILE_ALL: InfoClass("FileAllInformation", encode_all, 104, NAME, _ALL_NAME_OFFSET),
    C.FILE_ALTERNATE_NAME: InfoClass("FileAlternateNameInformation", encode_alternate_name,
                                     NAME_INFO_MIN, NAME),
    C.FILE_STREAM: InfoClass("FileStreamInformation", encode_stream, 32, STREAMS),
    C.FILE_COMPRESSION: InfoClass("FileCompressionInformation", encode_compression, 16),
    C.FILE_NETWORK_OPEN: InfoClass("FileNetworkOpenInformation", encode_network_open, 56),
    C.FILE_ATTRIBUTE_TAG: InfoClass("FileAttributeTagInformation", encode_attribute_tag, 8),
    C.FILE_NORMALIZED_NAME: InfoClass("FileNormalizedNameInformation", encode_normalized_name,
                                      NAME_INFO_MIN, NAME, min_dialect=Dialect.SMB_3_1_1),
    C.FILE_ID: InfoClass("FileIdInformation", encode_file_id, 24,
                         min_dialect=Dialect.SMB_3_0),
}
FILE_INFO_ENCODERS: dict[int, Callable[[QueryContext], bytes]] = {
    level: cls.encode for level, cls in FILE_INFO_CLASSES.items()}


def _lookup(info_class: int, dialect: int) -> InfoClass:
    cls = FILE_INFO_CLASSES.get(info_class)
    if cls is None:
        raise SmbError(query_unsupported_status(info_class), f"file info class {info_class}")
    if dialect < cls.min_dialect:
        raise SmbError(NtStatus.NOT_SUPPORTED, f"{cls.name} needs a newer dialect")
    return cls


def encode_file_info(info_class: int, ctx: QueryContext) -> bytes:
    """The complete structure for ``info_class``, or SmbError with the status to return."""
    return _lookup(info_class, ctx.dialect).encode(ctx)


def fit_output(data: bytes, max_len: int, fixed_size: int) -> tuple[bytes, int]:
    """Apply OutputBufferLength ([MS-SMB2] 3.3.5.20.1, 3.3.5.20.2) to encoded output.

    Raises SmbError(STATUS_INFO_LENGTH_MISMATCH) if ``max_len`` cannot hold the
    fixed part (the dispatcher adds the ErrorData that status needs).  Otherwise
    returns the data, cut to ``max_len`` with STATUS_BUFFER_OVERFLOW if too long.
    """
    if max_len < fixed_size or max_len <= 0:
        raise SmbError(NtStatus.INFO_LENGTH_MISMATCH, "output buffer too small")
    if len(data) <= max_len:
        return data, NtStatus.SUCCESS
    return data[:max_len], NtStatus.BUFFER_OVERFLOW


def _cut_entries(data: bytes, max_len: int) -> bytes:
    """Keep the whole entries of a NextEntryOffset chain that fit; the last gets offset 0."""
    offset, keep_end, last = 0, 0, -1
    while True:
        end = offset + _entry_length(data, offset)
        if end > max_len:
            break
        keep_end, last = end, offset
        next_offset = U32.unpack_from(data, offset)[0]
        if not next_offset:
            break
        offset += next_offset
    if last < 0:
        return b""
    out = bytearray(data[:keep_end])
    U32.pack_into(out, last, 0)
    return bytes(out)


def _entry_length(data: bytes, offset: int) -> int:
    """Unpadded size of one FILE_STREAM_INFORMATION entry."""
    return _STREAM.size + U32.unpack_from(data, offset + 4)[0]


def query_file_info(info_class: int, ctx: QueryContext,
                    output_buffer_length: int) -> tuple[bytes, int]:
    """Encode ``info_class`` and fit it into ``output_buffer_length`` bytes.

    Returns ``(data, status)`` with status SUCCESS or BUFFER_OVERFLOW; raises
    SmbError for INFO_LENGTH_MISMATCH and every class-level failure.
    """
    cls = _lookup(info_class, ctx.dialect)
    if output_buffer_length < cls.fixed_size:
        raise SmbError(NtStatus.INFO_LENGTH_MISMATCH, f"{cls.name}: output buffer too small")
    data = cls.encode(ctx)
    if len(data) <= output_buffer_length:
        return data, NtStatus.SUCCESS
    if cls.truncation == STREAMS:
        return _cut_entries(data, output_buffer_length), NtStatus.BUFFER_OVERFLOW
    if cls.truncation == NAME:
        name_start = cls.name_offset + NAME_INFO_HEADER.size
        keep = output_buffer_length - (output_buffer_length - name_start) % 2
        return data[:keep], NtStatus.BUFFER_OVERFLOW
    return fit_output(data, output_buffer_length, cls.fixed_size)
