"""Who a completed authentication exchange proved the client to be."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated principal ([MS-NLMP] 3.2.5.1.2 outcomes).

    ``is_guest`` and ``is_anonymous`` sessions have no session security
    ([MS-NLMP] 3.4): the SMB layer must neither sign nor encrypt for them.
    ``uid``/``gid`` come from the user database when it knows them.
    A Kerberos logon carries its ``principal`` (``user@REALM``) and, when the
    ticket has a PAC ([MS-PAC] 2.5), the user's ``sid`` and every group SID
    (``group_sids``, the primary group first), in ``S-1-5-21-...`` form.
    A domain user's ``uid``/``gid`` and ``gids`` (every group's, the primary
    one first) come from the ID mapping (``smbca.auth.idmap``, applied by
    ``with_mapped_ids``); ``privileges`` are the [MS-LSAD] privilege names the
    configuration gives it (``identity.backup_operators``), and a configured
    administrator carries BUILTIN\\Administrators among its ``group_sids``.
    """

    user: str
    domain: str
    is_guest: bool = False
    is_anonymous: bool = False
    uid: int | None = None
    gid: int | None = None
    principal: str | None = None
    sid: str | None = None
    group_sids: tuple[str, ...] = ()
    # Kerberos: when the ticket ends (time.time() seconds), for the session's
    # ExpirationTime ([MS-SMB2] 3.3.5.5.3); None: the session does not expire.
    expires_at: float | None = None
    gids: tuple[int, ...] = ()
    privileges: tuple[str, ...] = ()
