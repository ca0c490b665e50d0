"""User specs, smbpasswd parsing and the user database."""

import re

import pytest

from smbca.auth import (User, UserDatabase, UserSpecError, load_smbpasswd, parse_user_arg,
                         parse_user_spec)

# NT hash of "Password": [MS-NLMP] 4.2.2.1.2 NTOWFv1().
PASSWORD_NT_HASH = bytes.fromhex("a4f49c406510bdcab6824ee7c30fd852")
LM_X = "X" * 32
NO_PW = "NO PASSWORD" + "X" * 21  # how smbpasswd(8) writes "no password"


def test_user_spec_hashes_password_and_keeps_colons():
    user = parse_user_spec("User:Password")
    assert user == User("User", PASSWORD_NT_HASH)
    assert parse_user_spec("bob:a:b:c").nt_hash == parse_user_spec("x:a:b:c").nt_hash


@pytest.mark.parametrize("spec, fragment", [
    ("nocolon", "is not NAME:PASSWORD"),
    (":pw", "invalid name (empty)"),
    ("bad/name:pw", "forbidden character"),
    (" alice:pw", "whitespace"),
    ("alice:", "empty password"),
])
def test_user_spec_errors_name_the_problem(spec, fragment):
    with pytest.raises(UserSpecError, match=re.escape(fragment)):
        parse_user_spec(spec)


def test_user_spec_error_never_shows_the_password():
    with pytest.raises(UserSpecError) as info:
        parse_user_spec("bad/name:hunter2")
    assert "hunter2" not in str(info.value)


def test_user_rejects_short_hash():
    with pytest.raises(UserSpecError, match="16 bytes"):
        User("alice", b"\x00" * 15)


def test_database_is_case_insensitive_and_ordered():
    db = UserDatabase.from_users([User("Alice", bytes(16)), User("bob", bytes(16), uid=7)])
    assert db.lookup("ALICE").name == "Alice"
    assert db.lookup("Bob").uid == 7
    assert db.lookup("carol") is None
    assert db.names() == ("Alice", "bob")
    assert len(db) == 2


def test_database_rejects_duplicates_ignoring_case():
    with pytest.raises(UserSpecError, match="duplicate user 'ALICE'"):
        UserDatabase.from_users([User("alice", bytes(16)), User("ALICE", bytes(16))])


def _smbpasswd(tmp_path, *lines: str):
    path = tmp_path / "smbpasswd"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_smbpasswd_good_file(tmp_path):
    nt = PASSWORD_NT_HASH.hex().upper()
    path = _smbpasswd(
        tmp_path,
        "# a comment",
        "",
        f"alice:1000:{LM_X}:{nt}:[U          ]:LCT-5F5E1000:",
        f"off:1001:{LM_X}:{nt}:[DU         ]:LCT-5F5E1000:",
        f"nopw:1002:{NO_PW}:{NO_PW}:[NU         ]:LCT-00000000:",
        f"xs:1003:{LM_X}:{LM_X}:[U          ]:LCT-00000000:",
        f"oldstyle:1004:{LM_X}:{nt.lower()}",
    )
    users = load_smbpasswd(path)
    assert users == [User("alice", PASSWORD_NT_HASH, uid=1000),
                     User("oldstyle", PASSWORD_NT_HASH, uid=1004)]


@pytest.mark.parametrize("line, fragment", [
    ("alice:1000", "expected name:uid:LMHASH:NTHASH"),
    (f"alice:abc:{LM_X}:{'0' * 32}:[U ]:LCT-0:", "uid 'abc' is not a number"),
    (f"alice:1:{LM_X}:{'0' * 31}:[U ]:LCT-0:", "NT hash is not 32 hex digits"),
    (f"alice:1:nothex:{'0' * 32}:[U ]:LCT-0:", "LM hash is not 32 hex digits"),
    (f"alice:1:{LM_X}:{'0' * 32}:U:LCT-0:", "account flags 'U' are not"),
    (f"alice:1:{LM_X}:{'0' * 32}:[UQ]:LCT-0:", "unknown account flag(s) 'Q'"),
    (f"alice:1:{LM_X}:{'0' * 32}:[U]:yesterday:", "last-change field 'yesterday'"),
    (f"a/b:1:{LM_X}:{'0' * 32}:[U]:LCT-0:", "invalid user name 'a/b'"),
])
def test_smbpasswd_bad_line_names_line_number_and_problem(tmp_path, line, fragment):
    path = _smbpasswd(tmp_path, "# header", line)
    with pytest.raises(UserSpecError) as info:
        load_smbpasswd(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: ")
    assert fragment in message


def test_smbpasswd_duplicate_user(tmp_path):
    entry = f"{LM_X}:{'1' * 32}:[U          ]:LCT-00000000:"
    path = _smbpasswd(tmp_path, f"alice:1:{entry}", f"ALICE:2:{entry}")
    with pytest.raises(UserSpecError, match=r":2: duplicate user 'ALICE' \(first on line 1\)"):
        load_smbpasswd(path)


def test_smbpasswd_missing_file(tmp_path):
    with pytest.raises(UserSpecError, match="cannot read smbpasswd file"):
        load_smbpasswd(tmp_path / "absent")


def test_parse_user_arg_file_or_spec(tmp_path):
    path = _smbpasswd(tmp_path, f"alice:1000:{LM_X}:{PASSWORD_NT_HASH.hex()}:[U ]:LCT-0:")
    assert parse_user_arg(str(path)) == [User("alice", PASSWORD_NT_HASH, uid=1000)]
    assert parse_user_arg("User:Password") == [User("User", PASSWORD_NT_HASH)]
