r"""SMB2 CREATE names → path components, with the NTSTATUS Windows gives bad ones.

Pure string work; it narrows what reaches the file system but is not the
security boundary (``openat2`` with ``RESOLVE_BENEATH`` is, see ``share.py``).

Rules, checked left to right so the first bad component decides the status:

=====================================  ==============================  =========================================
Name                                   Result                          Source
=====================================  ==============================  =========================================
``""``                                 ``()``, the share root          [MS-SMB2] 3.3.5.9
leading ``\`` or ``/``                 STATUS_INVALID_PARAMETER        [MS-SMB2] 3.3.5.9; Samba smb2_create.c
more than 32,760 characters            STATUS_OBJECT_NAME_INVALID      [MS-FSCC] 2.1.5
``a\\b`` (empty component)             same as ``a\b``                 [MS-FSA] 2.1.5.1 "stripping redundant
                                                                       backslashes"; Samba check_path_syntax
trailing ``\``                         stripped; see                   [MS-FSA] 2.1.5.1 (the caller applies the
                                       ``has_trailing_backslash``      data-file rule once the type is known)
``.`` inside the name                  dropped                         [MS-FSCC] 2.1.5.1
``.`` as the last component            STATUS_OBJECT_NAME_INVALID      Samba filename_convert_dirfsp
``..`` with nothing left to pop        STATUS_OBJECT_PATH_SYNTAX_BAD   Samba check_path_syntax; smbtorture
                                                                       smb2.mkdir ``..\..\..``
``..`` popping the first component     STATUS_INVALID_PARAMETER        [MS-SMB2] 3.3.5.9 <303> (``x\..\y.txt``)
other ``..``                           resolved lexically              [MS-FSCC] 2.1.5.1, <303>
``" * < > ? | /`` or U+0000–U+001F     STATUS_OBJECT_NAME_INVALID      [MS-FSCC] 2.1.5.2
``name::$DATA`` (any case)             ``name``: the default stream    [MS-FSCC] 2.1.5.3/2.1.5.4
any other ``:``                        STATUS_OBJECT_NAME_INVALID      [MS-FSA] 2.1.5.1 phase 5/6; Samba
                                                                       (no FILE_NAMED_STREAMS on this share)
component over 255 UTF-8 bytes         STATUS_OBJECT_NAME_INVALID      [MS-FSCC] 2.1.5.2 (Linux NAME_MAX is bytes)
lone UTF-16 surrogate                  STATUS_OBJECT_NAME_INVALID      cannot be stored as a Linux name
=====================================  ==============================  =========================================

Reserved DOS device names (``CON``, ``NUL`` ... [MS-SMB2] <304>) are allowed,
as Samba allows them: they are ordinary files on Linux.
"""

from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

MAX_PATH_CHARS = 32760        # [MS-FSCC] 2.1.5
MAX_COMPONENT_BYTES = 255     # NAME_MAX; also bounds [MS-FSCC] 2.1.5.2's 255 characters

# [MS-FSCC] 2.1.5.2, plus '\' (the separator) and ':' (the stream separator).
_RESERVED = frozenset('"*<>?|/\\:' + "".join(chr(c) for c in range(0x20)))
_DATA_TYPE = "$data"
MAX_STREAM_NAME_CHARS = 255                     # [MS-FSCC] 2.1.5.3
_STREAM_RESERVED = frozenset("/\\:\x00")        # [MS-FSCC] 2.1.5.3


def parse_smb_path(name: str) -> tuple[str, ...]:
    """Split an SMB2 CREATE / rename name into share-relative components.

    ``name`` is relative to the share root with ``\\`` separators, already
    decoded from UTF-16LE (lone surrogates kept, e.g. via ``surrogatepass``).
    ``name::$DATA`` is ``name``; any other stream syntax is refused.  Raises
    ``SmbError`` with the status in the module table.
    """
    components, stream = parse_smb_name(name)
    if stream or (stream is not None and not components):
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "stream name where a file name is needed")
    return components


def parse_smb_name(name: str) -> tuple[tuple[str, ...], str | None]:
    """``parse_smb_path`` that also takes a stream in the last component.

    Returns ``(components, stream)``: ``stream`` is ``None`` without stream
    syntax, ``""`` for an explicit ``::$DATA`` and otherwise the stream's name
    (validated, spelled as the client sent it).  See the module tables.
    """
    if not name:
        return (), None
    if name[0] in "\\/":
        raise SmbError(NtStatus.INVALID_PARAMETER, "name starts with a separator")
    if len(name) > MAX_PATH_CHARS:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "name too long")
    raw = name.split("\\")
    last = len(raw) - 1
    while last > 0 and raw[last] == "":
        last -= 1         # trailing separators: the leaf is the last non-empty part
    parts: list[str] = []
    stream = None
    for index, part in enumerate(raw[:last + 1]):
        if index == last and ":" in part:
            part, stream = _split_stream(part)
            if part in (".", "..") or (part == "" and index):
                raise SmbError(NtStatus.OBJECT_NAME_INVALID, "stream without a file name")
            if part == "":
                return (), stream       # ":s", the whole name: a stream of the share root
        if part in ("", "."):
            if part == "." and index == last:
                raise SmbError(NtStatus.OBJECT_NAME_INVALID, "'.' as the last component")
            continue
        if part == "..":
            if not parts:
                raise SmbError(NtStatus.OBJECT_PATH_SYNTAX_BAD, "'..' above the share root")
            parts.pop()
            if not parts:
                raise SmbError(NtStatus.INVALID_PARAMETER, "'..' back to the share root")
            continue
        check_component(part)
        parts.append(part)
    return tuple(parts), stream


def _split_stream(component: str) -> tuple[str, str]:
    """``file:stream[:type]`` → (file, stream); ``file::$DATA`` gives stream ``""``."""
    if component.endswith(":"):
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "name ends with ':'")
    pieces = component.split(":")
    if len(pieces) > 3:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "too many ':'")
    if len(pieces) == 3 and pieces[2].lower() != _DATA_TYPE:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "stream type other than $DATA")
    stream = pieces[1]
    if stream and not is_valid_stream_name(stream):
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "invalid stream name")
    return pieces[0], stream


def is_valid_stream_name(name: str) -> bool:
    """Whether ``name`` may name a data stream ([MS-FSCC] 2.1.5.3)."""
    if not name or len(name) > MAX_STREAM_NAME_CHARS or not _STREAM_RESERVED.isdisjoint(name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_trailing_backslash(name: str) -> bool:
    """Whether the name ended in ``\\``.

    [MS-FSA] 2.1.5.1: the open then fails with STATUS_OBJECT_NAME_INVALID if
    FILE_NON_DIRECTORY_FILE is set or the object turns out to be a data file.
    """
    return len(name) > 1 and name.endswith("\\")


def is_valid_component(name: str) -> bool:
    """Whether ``name`` may be a single file name on this share ([MS-FSCC] 2.1.5.2)."""
    if name in ("", ".", ".."):
        return False
    if not _RESERVED.isdisjoint(name):
        return False
    try:
        return len(name.encode("utf-8")) <= MAX_COMPONENT_BYTES
    except UnicodeEncodeError:
        return False


def check_component(name: str) -> None:
    """``is_valid_component`` that raises STATUS_OBJECT_NAME_INVALID instead of returning False."""
    if not is_valid_component(name):
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "invalid file name component")
