"""Search pattern matching ([MS-FSA] 2.1.4.4): a table of cases, and a property test
that patterns made only of ``*`` and ``?`` agree with a plain glob translation."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from smbcad.proto.fscc import has_wildcards, match_pattern

CASES = [
    # Part 1 special cases
    ("", "", True),
    ("", "a", False),
    ("a", "", False),
    ("*", "", False),
    ("*", "anything.at.all", True),
    ("*.*", "noext", True),                 # "*.*" matches everything, dot or not
    ("*.*", "a.b", True),
    # exact names: case-insensitive, whole-name
    ("readme.txt", "README.TXT", True),
    ("readme.txt", "readme.txt.bak", False),
    ("readme", "readm", False),
    ("straße", "STRASSE", False),           # per-character, no case expansion
    ("ÄBC", "äbc", True),
    # * and ?
    ("*.txt", "a.txt", True),
    ("*.txt", "A.TXT", True),
    ("*.txt", "a.txt.bak", False),
    ("*.txt", ".txt", True),
    ("a*", "abc", True),
    ("a*", "bac", False),
    ("*a*", "banana", True),
    ("**", "x", True),
    ("a*b*c", "aXXbYYc", True),
    ("a*b*c", "aXXbYY", False),
    ("a?c", "abc", True),
    ("a?c", "ac", False),
    ("a?c", "abbc", False),
    ("?", "ab", False),
    ("???", "abc", True),
    ("*.", "foo", False),                   # a literal dot needs a dot
    # DOS_STAR '<': anything but the final '.'
    ("<.txt", "a.txt", True),
    ("<.txt", "a.b.txt", True),
    ("<.txt", "atxt", False),
    ('<"', "foo", True),                    # what Win32 makes of "*." : no extension
    ('<"', "foo.txt", False),
    ("<", "ab", True),
    ("<", "a.b", False),
    ("<.<", "a.b.c", True),
    ("<", "a.", True),                      # FsRtlIsNameInExpression quirk, see wildcard.py
    # DOS_QM '>': one character, or none at '.' / end of name
    ("a>", "ab", True),
    ("a>", "abc", False),
    ("a>>", "a", True),
    ("a>.b", "a.b", True),
    ("a>", "a.", True),                     # the same quirk
    (">>>>>>>>.>>>", "abc.de", True),       # "????????.???" as Win32 rewrites it
    (">>>>>>>>.>>>", "abcdefgh.txt", True),
    (">>>>>>>>.>>>", "abcdefghi.txt", False),
    (">>>>>>>>.>>>", "abc.defg", False),
    # DOS_DOT '"': a '.' or nothing at the end
    ('a"', "a", True),
    ('a"', "a.", True),
    ('a"b', "a.b", True),
    ('a"b', "ab", False),
    ('a"b', "axb", False),
]


@pytest.mark.parametrize("pattern, name, expected", CASES)
def test_table(pattern, name, expected):
    assert match_pattern(pattern, name) is expected


def test_case_sensitive_mode():
    assert match_pattern("*.TXT", "a.txt", ignore_case=False) is False
    assert match_pattern("A?C", "abc", ignore_case=False) is False
    assert match_pattern("a?c", "abc", ignore_case=False) is True


def test_has_wildcards():
    assert not has_wildcards("plain.txt")
    for ch in '*?<>"':
        assert has_wildcards(f"a{ch}b")


def glob_regex(pattern: str) -> re.Pattern:
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


@settings(max_examples=400, deadline=None, database=None)
@given(st.text(alphabet="ab.*?", min_size=1, max_size=8),
       st.text(alphabet="abAB.", min_size=1, max_size=10))
def test_star_and_question_mark_are_glob(pattern, name):
    if pattern == "*.*":
        return      # documented special case: matches names without a dot too
    assert match_pattern(pattern, name) is bool(glob_regex(pattern).fullmatch(name))
