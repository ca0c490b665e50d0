"""Server state, following the abstract data model of [MS-SMB2] 3.3.1.

These are the in-memory objects.  What a reconnect or failover needs is
persisted separately by the handle store (issue 4), never by pickling these.
"""

import itertools
from dataclasses import dataclass, field
from typing import Any

from smbcad.proto.constants import AccessMask


@dataclass(eq=False)
class Share:
    """3.3.1.6 Share, with its open filesystem (the VFS port)."""

    name: str
    path: str
    comment: str
    is_ipc: bool = False
    is_ca: bool = False
    encrypt_data: bool = False
    read_only: bool = False
    ca_timeout_ms: int = 0
    fs: Any = None                     # smbcad.vfs.ShareFs for disk shares, while online
    store: Any = None                  # the handle store of its persistent opens (or None)
    aggregate: str = ""                # the aggregate it lives on; "" for a node-local share
    volume_id: str | None = None       # configured volume id for file identity (vfs.volume_id)
    case_sensitive: bool = False       # names match in their exact case only (vfs.ShareFs)
    counters: Any = None               # smbcad.metrics.ShareCounters, bound once per share


@dataclass(eq=False)
class TreeConnect:
    """3.3.1.10 TreeConnect."""

    tree_id: int
    share: Share
    session: "Session"
    maximal_access: int = AccessMask.FILE_ALL_ACCESS
    encrypt_data: bool = False
    open_count: int = 0


@dataclass(eq=False)
class Channel:
    """3.3.1.14 Channel: one connection a session is bound to, with its own
    signing key (3.x: derived from the binding authentication's key and, on
    3.1.1, that exchange's preauth hash; 3.3.5.5.3)."""

    connection: Any
    signer: Any = None                 # smbcad.crypto Signer (Channel.SigningKey)


@dataclass(eq=False)
class ChannelBinding:
    """A SESSION_SETUP with SMB2_SESSION_FLAG_BINDING in progress on one
    connection (3.3.5.5.2): its own SPNEGO exchange and, on 3.1.1, its own
    preauth hash chain starting from the connection's (3.3.5.5.3)."""

    session: "Session"
    exchange: Any
    preauth_hash: bytes = b""


class SessionState:
    IN_PROGRESS = "in_progress"
    VALID = "valid"
    EXPIRED = "expired"


@dataclass(eq=False)
class Session:
    """3.3.1.8 Session."""

    session_id: int
    connection: Any
    state: str = SessionState.IN_PROGRESS
    identity: Any = None               # smbca.auth Identity once authenticated
    session_key: bytes = b""
    signer: Any = None                 # smbcad.crypto Signer (SigningKey)
    encryptor: Any = None              # server→client
    decryptor: Any = None              # client→server
    application_key: bytes = b""
    signing_required: bool = False
    encrypt_data: bool = False
    is_guest_or_anonymous: bool = False
    preauth_hash: bytes = b""
    auth_exchange: Any = None          # SpnegoAcceptor while IN_PROGRESS
    dialect: int = 0
    # What every channel must match (3.3.5.5.2): the first connection's
    # ClientGuid, cipher and signing algorithm.
    client_guid: bytes = b""
    cipher_id: int = 0
    signing_algorithm: int = 0
    channels: dict = field(default_factory=dict)     # Connection → Channel (3.3.1.8 ChannelList)
    trees: dict = field(default_factory=dict)
    opens: dict = field(default_factory=dict)        # volatile id → Open
    # Async requests pending on any of its channels (server.max_async_requests_per_session).
    async_requests: int = 0
    _tree_ids: Any = field(default_factory=lambda: itertools.count(1))

    def next_tree_id(self) -> int:
        return next(self._tree_ids)

    def is_on(self, connection) -> bool:
        """A request on ``connection`` may use this session: it is one of its
        channels, or the connection the session is being set up on."""
        return connection in self.channels or connection is self.connection

    def signer_for(self, connection):
        """The key that signs on ``connection`` (3.3.4.1.1, 3.3.5.2.4): its
        Channel.SigningKey, else (a connection still binding) Session.SigningKey."""
        channel = self.channels.get(connection)
        if channel is not None and channel.signer is not None:
            return channel.signer
        return self.signer

    @property
    def user_name(self) -> str:
        return self.identity.user if self.identity is not None else ""


@dataclass(eq=False, slots=True)
class Open:
    """3.3.1.10 Open: one handle from CREATE to CLOSE."""

    persistent_id: int
    volatile_id: int
    session: Session
    tree: TreeConnect
    path: str                           # share-relative, '/'-separated; follows renames
    client_name: str                    # the name the client used (backslashes)
    handle: Any                         # smbcad.vfs OpenFile (or NamedPipe on IPC$)
    granted_access: int
    share_access: int
    create_options: int
    is_directory: bool
    file_key: tuple = ()                # (volume id, inode[, stream]): the file's identity
    delete_on_close: bool = False
    position: int = 0
    mode: int = 0
    oplock_level: int = 0
    lease: Any = None
    # Durability (3.3.1.10; issue 4, smbcad.server.durable).  ``session`` is
    # None while the open is disconnected and waits for a reconnect.
    durable: bool = False
    persistent: bool = False
    resilient: bool = False
    durable_timeout_ms: int = 0
    resiliency_timeout_ms: int = 0
    durable_owner: tuple = ()           # (user, domain) of the opener
    durable_owner_sid: str = ""         # and its SID, for a domain user (durable.is_owner)
    client_guid: bytes = b""
    create_guid: bytes = b""
    desired_access: int = 0
    file_attributes: int = 0
    app_instance_id: bytes = b""
    app_instance_version: tuple | None = None
    is_replay_eligible: bool = False
    channel_sequence: int = 0
    outstanding_requests: int = 0       # Open.OutstandingRequestCount (3.3.5.2.10)
    outstanding_pre_requests: int = 0   # Open.OutstandingPreRequestCount
    lock_sequences: bytearray = field(default_factory=lambda: bytearray(64))
    disconnected_at_ms: int | None = None
    scavenger: Any = None               # the timer that closes it once it times out
    store_version: int = 0              # its record's version in the handle store; 0: none
    create_action: int = 0              # for answering a replayed CREATE (3.3.5.9.10)
    # QUERY_DIRECTORY cursor (3.3.1.10 Open.EnumerationLocation / SearchPattern)
    enum_entries: Any = None
    enum_index: int = 0
    enum_pattern: str = ""
    current_ea_index: int = 1           # 3.3.1.10 Open.CurrentEaIndex (server/eas.py)
    is_pipe: bool = False
    closed: bool = False
    released: bool = False              # handed to the partner node with its record (opens.py)

    @property
    def file_id(self) -> tuple[int, int]:
        return self.persistent_id, self.volatile_id

    @property
    def disconnected(self) -> bool:
        return self.session is None

    @property
    def timeout_ms(self) -> int:
        """How long it is kept once disconnected (3.3.6.2, 3.3.6.4)."""
        return self.resiliency_timeout_ms if self.resilient else self.durable_timeout_ms

    @property
    def survives_disconnect(self) -> bool:
        """3.3.7.1: resilient, persistent, or durable still holding a batch
        oplock or a lease with handle caching."""
        if self.resilient or self.persistent:
            return True
        if not self.durable:
            return False
        if self.lease is not None:
            return bool(self.lease.state.held & 0x02)
        return self.oplock_level == 0x09
