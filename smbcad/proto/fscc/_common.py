"""Helpers shared by the FSCC encoders: attribute normalisation, names, FILE_NAME_INFORMATION."""

import struct

from smbcad.proto.constants import FileAttributes
from smbcad.proto.errors import SmbError
from smbcad.proto.fileinfo import FileInfo
from smbcad.proto.status import NtStatus

U32 = struct.Struct("<I")
I64 = struct.Struct("<q")
# FILE_NAME_INFORMATION ([MS-FSCC] 2.1.7): FileNameLength, then the name.
NAME_INFO_HEADER = U32
# sizeof(FILE_NAME_INFORMATION) in C (ULONG + WCHAR[1], 4-aligned): the smallest buffer
# a name class accepts, BlockAlign(FieldOffset(FileName) + 2, 4) in [MS-FSA] 2.1.5.12.19.
NAME_INFO_MIN = 8


def file_attributes(info: FileInfo) -> int:
    """FileAttributes as every query class reports them ([MS-FSA] 2.1.5.12.6).

    A directory always carries FILE_ATTRIBUTE_DIRECTORY, and an empty set becomes
    FILE_ATTRIBUTE_NORMAL ([MS-FSCC] 2.6: 0 means "unchanged" on the wire).
    """
    attrs = info.attributes
    if info.is_directory:
        attrs |= FileAttributes.DIRECTORY
    return attrs or FileAttributes.NORMAL


def utf16(text: str) -> bytes:
    """UTF-16LE for a name; a name that cannot be encoded is an invalid name."""
    try:
        return text.encode("utf-16-le")
    except UnicodeEncodeError as exc:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "name not encodable as UTF-16") from exc


def name_information(text: str) -> bytes:
    """FILE_NAME_INFORMATION ([MS-FSCC] 2.1.7): FileNameLength + FileName, no terminator."""
    raw = utf16(text)
    return NAME_INFO_HEADER.pack(len(raw)) + raw


def client_path(name: str) -> str:
    """A share-relative path in the form FileNameInformation reports it: ``\\dir\\file``.

    Forward slashes become backslashes and exactly one leading backslash is kept;
    the share root is ``\\`` (as Samba's ``smbd_do_qfilepathinfo`` does).
    """
    return "\\" + name.replace("/", "\\").lstrip("\\")
