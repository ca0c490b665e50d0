"""8.3 short names ([MS-FSCC] 2.1.5.2.1): which names are 8.3 already, the
hashed form, and uniqueness and stability within one directory."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from smbcad.proto.fscc import is_8dot3, short_name_in, short_names
from smbcad.proto.fscc.short_names import _name_hash

SHORT_FORM = re.compile(r"[A-Z0-9_!#$%&'()\-@^`{}~]{1,8}(\.[A-Z0-9_!#$%&'()\-@^`{}~]{1,3})?")


@pytest.mark.parametrize("name,valid", [
    ("bufsize.txt", True),          # lower case is allowed: it is the same name to Windows
    ("README", True),
    ("A.B", True),
    ("12345678.123", True),
    ("123456789.txt", False),       # base too long
    ("file.html", False),           # extension too long
    ("two.dots.x", False),
    ("with space.txt", False),
    ("plus+.txt", False),
    ("semi;.txt", False),
    ("brack[.txt", False),
    (".bashrc", False),             # empty base
    ("trailing.", False),
    ("caf\u00e9.txt", False),        # non-ASCII
    (".", False),
    ("..", False),
])
def test_is_8dot3(name, valid):
    assert is_8dot3(name) is valid


def test_hashed_form_pins():
    # Pinned so a change of the hash (which clients may have cached) is noticed.
    expected = f"TO{_name_hash('torture_search.txt'):04X}~1.TXT"
    assert short_name_in("torture_search.txt", []) == expected
    assert short_name_in("torture_search.txt", []) == "TO6AFE~1.TXT"
    assert short_name_in("testsmb2_dir", []) == "TE9F24~1"
    assert short_name_in(".bashrc", []) == "BA4E33~1"


def test_valid_names_stand_for_themselves():
    assert short_name_in("bufsize.txt", ["other"]) == "bufsize.txt"
    assert short_names(["bufsize.txt", ".", ".."]) == {}
    assert short_name_in(".", []) == "" and short_name_in("..", []) == ""


def test_unusable_characters_and_long_extension():
    name = short_name_in("my file+name.markdown", [])
    assert re.fullmatch(r"MY[0-9A-F]{4}~1\.MAR", name)
    assert short_name_in("\u00e9t\u00e9.txt", []).startswith("_T")     # non-ASCII as "_"


def test_the_hash_ignores_case():
    assert short_name_in("Long Name.txt", [])[:6] == short_name_in("long name.TXT", [])[:6]


def test_collisions_take_numbers_in_name_order():
    # Same first two characters, same hash (the name differs only in case), same extension.
    names = ["long name.txt", "Long Name.txt"]
    result = short_names(names)
    assert result["Long Name.txt"].endswith("~1.TXT")
    assert result["long name.txt"].endswith("~2.TXT")
    assert short_names(reversed(names)) == result


def test_a_real_name_is_never_reused():
    taken = short_name_in("torture_search.txt", [])
    assert taken == "TO6AFE~1.TXT"
    assert short_name_in("torture_search.txt", [taken.lower()]) == "TO6AFE~2.TXT"


def test_ten_and_more_collisions_shorten_the_stem():
    # Names that share stem, hash and extension: one name in twelve case forms.
    base = "abcdefghij"
    variants = sorted({"".join(c.upper() if (mask >> i) & 1 else c for i, c in enumerate(base))
                       for mask in range(12)})
    result = short_names(variants)
    assert len(set(result.values())) == len(variants)
    assert all(SHORT_FORM.fullmatch(short) for short in result.values())
    assert any(short.endswith("~10") or short.endswith("~11") for short in result.values())


long_names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"),
                                            blacklist_characters='\\/:*?"<>|'),
                     min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.sets(long_names, max_size=30))
def test_unique_stable_and_well_formed(names):
    result = short_names(names)
    valid = {name.upper() for name in names if is_8dot3(name)}
    assert set(result) == {name for name in names if name not in (".", "..") and not is_8dot3(name)}
    shorts = list(result.values())
    assert len(set(shorts)) == len(shorts)
    assert not set(shorts) & valid
    assert all(SHORT_FORM.fullmatch(short) and is_8dot3(short) for short in shorts)
    assert short_names(sorted(names, reverse=True)) == result
    for name in result:
        assert short_name_in(name, names) == result[name]


def test_only_the_first_usable_characters_are_cleaned():
    """The stem takes two characters and the extension three, however long
    the name; a character that upper-cases to two ("ß") counts as two."""
    long_name = "ab" + "x" * 200 + ".text"
    short = short_names([long_name])[long_name]
    assert short.startswith("AB") and short.endswith("~1.TEX")
    assert short_names(["ßeta file.txt"])["ßeta file.txt"].startswith("SS")
    assert short_names([" .b.c d"])[" .b.c d"].startswith("B")   # leading dots and spaces dropped
