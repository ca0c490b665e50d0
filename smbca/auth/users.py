"""Local user accounts: the NT hashes NTLM verifies against.

Accounts come from ``NAME:PASSWORD`` specs or from Samba ``smbpasswd`` files
(smbpasswd(5)).  Only the NT hash is kept ([MS-NLMP] 3.3.1 NTOWFv1); LM
hashes are ignored because LM authentication is never accepted.
"""

import os
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from smbca.auth.legacy_crypto import nt_hash

_NT_HASH_SIZE = 16
# Characters Windows forbids in account names; ':' is also our spec separator.
_FORBIDDEN_NAME_CHARS = frozenset('"/\\[]:;|=,+*?<>')
_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")
_NO_PASSWORD = re.compile(r"X{32}|NO PASSWORDX{21}", re.IGNORECASE)
_FLAGS = re.compile(r"\[([A-Z ]*)\]")
_LCT = re.compile(r"LCT-[0-9A-Fa-f]{1,16}")
# Account-control letters smbpasswd(5) defines.
_KNOWN_FLAGS = frozenset("UNDHTWSLXI")


class UserSpecError(ValueError):
    """A user specification or smbpasswd line is invalid; the message says why."""


@dataclass(frozen=True, slots=True)
class User:
    """One account: its name, NT hash (MD4 of the UTF-16LE password) and POSIX ids."""

    name: str
    nt_hash: bytes = field(repr=False)
    uid: int | None = None
    gid: int | None = None

    def __post_init__(self) -> None:
        problem = _name_problem(self.name)
        if problem:
            raise UserSpecError(f"invalid user name {self.name!r}: {problem}")
        if len(self.nt_hash) != _NT_HASH_SIZE:
            raise UserSpecError(f"user {self.name!r}: NT hash must be 16 bytes")


def _name_problem(name: str) -> str:
    if not name:
        return "empty"
    if name != name.strip():
        return "leading or trailing whitespace"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "control character"
    bad = sorted(set(name) & _FORBIDDEN_NAME_CHARS)
    if bad:
        return f"forbidden character {''.join(bad)!r}"
    return ""


def _key(name: str) -> str:
    """Account names compare case-insensitively ([MS-NLMP] 3.2.5.1.2 Note)."""
    return name.casefold()


@dataclass(frozen=True, slots=True)
class UserDatabase:
    """An immutable, case-insensitive set of accounts.  Build with ``from_users``."""

    _by_key: Mapping[str, User]

    @classmethod
    def from_users(cls, users: Iterable[User]) -> "UserDatabase":
        by_key: dict[str, User] = {}
        for user in users:
            key = _key(user.name)
            if key in by_key:
                raise UserSpecError(f"duplicate user {user.name!r}")
            by_key[key] = user
        return cls(types.MappingProxyType(by_key))

    def lookup(self, name: str) -> User | None:
        return self._by_key.get(_key(name))

    def names(self) -> tuple[str, ...]:
        return tuple(user.name for user in self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


def parse_user_spec(spec: str) -> User:
    """``NAME:PASSWORD`` (the password may itself contain ':')."""
    name, sep, password = spec.partition(":")
    if not sep:
        raise UserSpecError(f"user spec {_shown(spec)} is not NAME:PASSWORD")
    problem = _name_problem(name)
    if problem:
        raise UserSpecError(f"user spec {_shown(spec)}: invalid name ({problem})")
    if not password:
        raise UserSpecError(f"user {name!r}: empty password")
    return User(name, nt_hash(password))


def _shown(spec: str) -> str:
    """The spec for an error message, without the password."""
    name, sep, _ = spec.partition(":")
    return repr(name + (":***" if sep else ""))


def load_smbpasswd(path: str | os.PathLike[str]) -> list[User]:
    """Accounts from a Samba smbpasswd file (smbpasswd(5)).

    Line format: ``name:uid:LMHASH:NTHASH:[FLAGS]:LCT-XXXXXXXX:``.  Comments
    (``#``) and blank lines are skipped, as are disabled accounts (flag D)
    and accounts without an NT hash (32 X's or ``NO PASSWORD...``).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserSpecError(f"{path}: cannot read smbpasswd file: {exc}") from exc
    users: list[User] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        try:
            user = _parse_smbpasswd_line(line)
        except UserSpecError as exc:
            raise UserSpecError(f"{path}:{number}: {exc}") from None
        if user is None:
            continue
        key = _key(user.name)
        if key in seen:
            raise UserSpecError(
                f"{path}:{number}: duplicate user {user.name!r} (first on line {seen[key]})")
        seen[key] = number
        users.append(user)
    return users


def _parse_smbpasswd_line(line: str) -> User | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    fields = stripped.split(":")
    if len(fields) < 4:
        raise UserSpecError("expected name:uid:LMHASH:NTHASH:[FLAGS]:LCT-XXXXXXXX:")
    name, uid_text, lm_text, nt_text = fields[:4]
    problem = _name_problem(name)
    if problem:
        raise UserSpecError(f"invalid user name {name!r} ({problem})")
    if not uid_text.isdecimal() or not uid_text.isascii():
        raise UserSpecError(f"user {name!r}: uid {uid_text!r} is not a number")
    if not (_HEX32.fullmatch(lm_text) or _NO_PASSWORD.fullmatch(lm_text)):
        raise UserSpecError(f"user {name!r}: LM hash is not 32 hex digits or X's")
    flags = _parse_flags(name, fields[4] if len(fields) > 4 else "")
    if len(fields) > 5 and fields[5] and not _LCT.fullmatch(fields[5]):
        raise UserSpecError(f"user {name!r}: last-change field {fields[5]!r} is not LCT-<hex>")
    if _NO_PASSWORD.fullmatch(nt_text):
        return None
    if not _HEX32.fullmatch(nt_text):
        raise UserSpecError(f"user {name!r}: NT hash is not 32 hex digits or X's")
    if "D" in flags:
        return None
    return User(name, bytes.fromhex(nt_text), uid=int(uid_text))


def _parse_flags(name: str, text: str) -> str:
    if not text:
        return ""
    match = _FLAGS.fullmatch(text)
    if not match:
        raise UserSpecError(f"user {name!r}: account flags {text!r} are not [LETTERS]")
    letters = match.group(1).replace(" ", "")
    unknown = sorted(set(letters) - _KNOWN_FLAGS)
    if unknown:
        raise UserSpecError(f"user {name!r}: unknown account flag(s) {''.join(unknown)!r}")
    return letters


def parse_user_arg(arg: str) -> list[User]:
    """A command-line user argument: an smbpasswd file if one exists at
    ``arg``, otherwise a ``NAME:PASSWORD`` spec."""
    if os.path.isfile(arg):
        return load_smbpasswd(arg)
    return [parse_user_spec(arg)]
