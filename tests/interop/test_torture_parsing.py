"""The smbtorture runner's parsers (no server needed)."""

from pathlib import Path

import pytest

from torture import KnownFailFileError, parse_knownfail, parse_subunit

SUBUNIT = """smbtorture 4.17.12-Debian
time: 2026-11-22 05:32:27.366838
test: smb2.dir.find
success: smb2.dir.find
test: smb2.dir.one
failure: smb2.dir.one [
../../source4/torture/smb2/dir.c:471: status was NT_STATUS_INVALID_PARAMETER
]
test: smb2.dir.file-index
skip: smb2.dir.file-index [
Server does not support file index
]
test: smb2.dir.many
error: smb2.dir.many [
connection lost
]
test: smb2.dir.large-files
"""


def test_parse_subunit():
    results = parse_subunit(SUBUNIT)
    assert {name: r.status for name, r in results.items()} == {
        "smb2.dir.find": "success", "smb2.dir.one": "failure", "smb2.dir.file-index": "skip",
        "smb2.dir.many": "error", "smb2.dir.large-files": "error"}
    assert "NT_STATUS_INVALID_PARAMETER" in results["smb2.dir.one"].detail
    assert "never finished" in results["smb2.dir.large-files"].detail


def test_parse_knownfail(tmp_path):
    path = tmp_path / "knownfail.txt"
    path.write_text("# comment\n\nsmb2.dir.one   # INDEX flag not done yet\n")
    assert parse_knownfail(path) == {"smb2.dir.one": "INDEX flag not done yet"}


@pytest.mark.parametrize("line", ["smb2.dir.one", "smb2.dir.one  #  ", "smb2.a smb2.b # two"])
def test_knownfail_rejects_bad_lines(tmp_path, line):
    path = tmp_path / "knownfail.txt"
    path.write_text(line + "\n")
    with pytest.raises(KnownFailFileError, match=":1:"):
        parse_knownfail(path)


def test_knownfail_rejects_duplicates(tmp_path):
    path = tmp_path / "knownfail.txt"
    path.write_text("smb2.x # a\nsmb2.x # b\n")
    with pytest.raises(KnownFailFileError, match="twice"):
        parse_knownfail(path)


@pytest.mark.parametrize("name", ["smbtorture_knownfail.txt", "smbtorture_knownfail.smbd.txt"])
def test_checked_in_knownfail_files_parse(name):
    parse_knownfail(Path(__file__).resolve().parent / name)
