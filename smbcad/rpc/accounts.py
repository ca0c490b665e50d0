"""Local accounts for name lookups: the SMB user database, then the system's (NSS).

``PosixAccounts`` implements ``names.Accounts``.  An SMB user is looked up
first because its name is what clients type; it acts as the uid the user
database gives it (smbpasswd's uid field).  An SMB user without a uid has no
SID of its own (``names`` module docstring) and hides a system account of
the same name rather than letting the name resolve to a different identity.
Names the SMB users do not know fall through to ``pwd`` / ``grp``, which
also name the uids and gids that file owners carry.
"""

import grp
import pwd
from collections.abc import Callable
from typing import Any

UserDatabaseSource = Callable[[], Any]
"""Returns the current ``smbca.auth.UserDatabase`` (it changes on reload), or None."""

_NO_UID = object()


class PosixAccounts:
    """``names.Accounts`` over the SMB users and the system's passwd and group databases."""

    def __init__(self, users: UserDatabaseSource = lambda: None, *,
                 system: bool = True) -> None:
        self._users = users
        self._system = system

    def _smb_user(self, name: str) -> Any:
        database = self._users()
        user = database.lookup(name) if database is not None else None
        if user is None:
            return None
        return _NO_UID if user.uid is None else user

    def user_id(self, name: str) -> int | None:
        user = self._smb_user(name)
        if user is _NO_UID:
            return None
        if user is not None:
            return user.uid
        if not self._system:
            return None
        try:
            return pwd.getpwnam(name).pw_uid
        except (KeyError, ValueError):  # unknown, or a name with a NUL
            return None

    def user_name(self, uid: int) -> str | None:
        database = self._users()
        if database is not None:
            for name in database.names():
                user = database.lookup(name)
                if user is not None and user.uid == uid:
                    return user.name
        if not self._system:
            return None
        try:
            return pwd.getpwuid(uid).pw_name
        except (KeyError, OverflowError):
            return None

    def group_id(self, name: str) -> int | None:
        if not self._system:
            return None
        try:
            return grp.getgrnam(name).gr_gid
        except (KeyError, ValueError):
            return None

    def group_name(self, gid: int) -> str | None:
        if not self._system:
            return None
        try:
            return grp.getgrgid(gid).gr_name
        except (KeyError, OverflowError):
            return None
