"""parse_smb_path / is_valid_component: each name trick and the status it gets."""

import pytest

from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.vfs import has_trailing_backslash, is_valid_component, parse_smb_path

ACCEPTED = [
    ("", ()),
    ("a", ("a",)),
    ("a\\b\\c.txt", ("a", "b", "c.txt")),
    ("dir\\", ("dir",)),                       # trailing backslash stripped
    ("dir\\\\", ("dir",)),
    ("a\\\\b", ("a", "b")),                    # redundant separators
    ("a\\.\\b", ("a", "b")),                   # '.' inside is dropped
    (".\\a", ("a",)),
    ("a\\b\\..\\c", ("a", "c")),               # '..' resolved lexically
    ("a\\b\\c\\..\\..\\d", ("a", "d")),
    ("file::$DATA", ("file",)),                # the default stream is the file
    ("dir\\file::$data", ("dir", "file")),
    (".hidden", (".hidden",)),
    ("...", ("...",)),
    ("é\u4e2d\U0001F600", ("é\u4e2d\U0001F600",)),
    ("CON", ("CON",)),                         # DOS devices are plain files here (as Samba)
    ("x" * 255, ("x" * 255,)),
    ("trailing space ", ("trailing space ",)),
]

REJECTED = [
    ("\\", NtStatus.INVALID_PARAMETER),
    ("\\a", NtStatus.INVALID_PARAMETER),
    ("/a", NtStatus.INVALID_PARAMETER),
    ("..", NtStatus.OBJECT_PATH_SYNTAX_BAD),
    ("..\\..\\secret", NtStatus.OBJECT_PATH_SYNTAX_BAD),
    ("..\\..\\..", NtStatus.OBJECT_PATH_SYNTAX_BAD),
    (".\\..\\x", NtStatus.OBJECT_PATH_SYNTAX_BAD),
    ("x\\..\\y.txt", NtStatus.INVALID_PARAMETER),     # [MS-SMB2] <303>
    ("a\\..", NtStatus.INVALID_PARAMETER),
    ("a\\b\\..\\..\\..\\etc", NtStatus.INVALID_PARAMETER),
    (".", NtStatus.OBJECT_NAME_INVALID),
    ("a\\.", NtStatus.OBJECT_NAME_INVALID),
    ("file:stream", NtStatus.OBJECT_NAME_INVALID),
    ("file:stream:$DATA", NtStatus.OBJECT_NAME_INVALID),
    ("file:", NtStatus.OBJECT_NAME_INVALID),
    (":stream", NtStatus.OBJECT_NAME_INVALID),
    ("::$DATA", NtStatus.OBJECT_NAME_INVALID),
    ("dir::$DATA\\file", NtStatus.OBJECT_NAME_INVALID),
    ("dir:s\\file", NtStatus.OBJECT_NAME_INVALID),
    ("dir:$I30:$INDEX_ALLOCATION", NtStatus.OBJECT_NAME_INVALID),
    ("a/b", NtStatus.OBJECT_NAME_INVALID),
    ("a/", NtStatus.OBJECT_NAME_INVALID),
    ("a/..", NtStatus.OBJECT_NAME_INVALID),
    ("a\\..\\/etc/passwd", NtStatus.INVALID_PARAMETER),
    ("sub\\../../x", NtStatus.OBJECT_NAME_INVALID),
    ("a*", NtStatus.OBJECT_NAME_INVALID),
    ("a?", NtStatus.OBJECT_NAME_INVALID),
    ("a<b", NtStatus.OBJECT_NAME_INVALID),
    ("a>b", NtStatus.OBJECT_NAME_INVALID),
    ('a"b', NtStatus.OBJECT_NAME_INVALID),
    ("a|b", NtStatus.OBJECT_NAME_INVALID),
    ("a\x00b", NtStatus.OBJECT_NAME_INVALID),
    ("a\x01", NtStatus.OBJECT_NAME_INVALID),
    ("a\x1f", NtStatus.OBJECT_NAME_INVALID),
    ("a\nb", NtStatus.OBJECT_NAME_INVALID),
    ("x" * 256, NtStatus.OBJECT_NAME_INVALID),
    ("é" * 128, NtStatus.OBJECT_NAME_INVALID),        # 256 UTF-8 bytes
    ("bad\ud800", NtStatus.OBJECT_NAME_INVALID),       # lone surrogate
    ("a\\" * 16381, NtStatus.OBJECT_NAME_INVALID),     # over 32,760 characters
    ("a*\\..\\..", NtStatus.OBJECT_NAME_INVALID),      # first bad component decides
]


@pytest.mark.parametrize(("name", "expected"), ACCEPTED)
def test_accepted(name, expected):
    assert parse_smb_path(name) == expected


@pytest.mark.parametrize(("name", "status"), REJECTED)
def test_rejected(name, status):
    with pytest.raises(SmbError) as caught:
        parse_smb_path(name)
    assert caught.value.status == status


def test_trailing_backslash_flag():
    assert has_trailing_backslash("dir\\")
    assert not has_trailing_backslash("dir")
    assert not has_trailing_backslash("")


@pytest.mark.parametrize("name", ["a", "a.b", ".x", "x" * 255, "名前", "trailing."])
def test_valid_component(name):
    assert is_valid_component(name)


@pytest.mark.parametrize("name", ["", ".", "..", "a\\b", "a/b", "a:b", "a*", "a\x00",
                                  "x" * 256, "a\udc80", "\t"])
def test_invalid_component(name):
    assert not is_valid_component(name)
