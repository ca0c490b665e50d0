"""8.3 short names ([MS-FSCC] 2.1.5.2.1) for FileAlternateNameInformation and the
ShortName of FileBothDirectoryInformation / FileIdBothDirectoryInformation.

Nothing is stored: a name's short form is computed from the names in its
directory, so it is the same on every query while the directory keeps its
names, and unique in it.  The form is NTFS's hashed one: the first two usable
characters of the base name, four hex digits of a CRC of the whole name, ``~N``
and up to three characters of the extension (``TO3F2A~1.TXT``).  ``N`` is 1
unless several names of the directory share those six characters and the
extension: they then take 1, 2, ... in name order, skipping any result that is
already a real name there.

A name that is already a valid 8.3 name has no separate short name: a
directory listing leaves ShortName empty and FileAlternateNameInformation
returns the name itself (as Samba; Windows stores no second name for it).
"""

import binascii
from collections.abc import Iterable

# [MS-FSCC] 2.1.5.2.1: ASCII only, no space, at most one "."; also none of the
# characters FAT's short names forbid beyond the long-name ones.
_NOT_IN_SHORT_NAMES = frozenset(' +,;=[].')
_MAX_BASE = 8
_MAX_EXT = 3
_STEM_CHARS = 2


def is_8dot3(name: str) -> bool:
    """Whether ``name`` is a valid 8.3 name as it stands ([MS-FSCC] 2.1.5.2.1)."""
    if name in (".", "..") or not name.isascii():
        return False
    base, dot, ext = name.partition(".")
    if not 1 <= len(base) <= _MAX_BASE or (dot and not 1 <= len(ext) <= _MAX_EXT):
        return False
    return _NOT_IN_SHORT_NAMES.isdisjoint(base + ext)


# ASCII fast path of ``_clean`` (most names; a listing cleans two parts of
# each), as a bytes table: the characters short names cannot hold as "_";
# spaces and dots are deleted.
_ASCII_CLEAN = bytes(ord("_") if code < 32 or code == 127 or chr(code) in "+,;=[]" else code
                     for code in range(256))


def _clean(part: str, limit: int) -> str:
    """The first ``limit`` usable characters of ``part``: upper-cased, spaces
    and dots dropped, other unusable characters as "_".  Only the first few
    are ever used, so a long name costs no more than a short one."""
    if part.isascii():
        return part.encode("ascii").translate(_ASCII_CLEAN, b" .").upper()[:limit].decode(
            "ascii")
    out = ""
    for ch in part:
        if ch in " .":
            continue
        for up in ch.upper():           # "ß" upper-cases to two characters
            out += up if up.isascii() and up.isprintable() and up not in _NOT_IN_SHORT_NAMES \
                else "_"
        if len(out) >= limit:
            return out[:limit]
    return out


def _name_hash(name: str) -> int:
    """16 bits of a CRC-32 of the upper-cased name: stable across runs and hosts."""
    crc = binascii.crc32(name.upper().encode("utf-16-le"))
    return (crc ^ (crc >> 16)) & 0xFFFF


def _stem_and_extension(name: str) -> tuple[str, str]:
    base, dot, ext = name.rpartition(".")
    head = _clean(base, _STEM_CHARS) if dot else ""
    if not head:
        base, ext = name, ""            # no extension, or only one after a leading "."
        head = _clean(base, _STEM_CHARS)
    stem = (head or "_") + f"{_name_hash(name):04X}"
    return stem, _clean(ext, _MAX_EXT)


def _compose(stem: str, number: int, ext: str) -> str:
    tail = f"~{number}"
    base = stem[:_MAX_BASE - len(tail)] + tail
    return f"{base}.{ext}" if ext else base


def short_names(names: Iterable[str]) -> dict[str, str]:
    """The short name of every name in one directory that needs one.

    Names that are valid 8.3 names already, "." and ".." are not in the
    result.  The result depends only on the set of names, not their order.
    """
    taken = set()
    groups: dict[tuple[str, str], list[str]] = {}
    for name in set(names):
        if is_8dot3(name):
            taken.add(name.upper())
        elif name not in (".", ".."):
            groups.setdefault(_stem_and_extension(name), []).append(name)
    result: dict[str, str] = {}
    for (stem, ext), members in sorted(groups.items()):
        number = 1
        if len(members) > 1:    # most groups hold one name: no sort to make
            members.sort(key=lambda member: (member.upper(), member))
        for name in members:
            while True:
                candidate = _compose(stem, number, ext)
                number += 1
                if candidate not in taken:
                    break
            taken.add(candidate)
            result[name] = candidate
    return result


def short_name_in(name: str, siblings: Iterable[str]) -> str:
    """FileAlternateNameInformation's name for ``name`` in a directory holding
    ``siblings``: the name itself when it is valid 8.3, "" for "." and "..".
    ``siblings`` is iterated only when a name must be generated, so a lazy
    iterable spares the directory listing for the other names."""
    if name in (".", ".."):
        return ""
    if is_8dot3(name):
        return name
    return short_names({*siblings, name})[name]
