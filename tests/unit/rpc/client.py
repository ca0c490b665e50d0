"""Test fixtures for smbcad.rpc: a share list and impacket's client over a NamedPipe.

``PipeTransport`` is an impacket DCERPC transport whose reads and writes
are the SMB verbs of a ``NamedPipe``, so impacket's real DCERPC_v5 client
and srvs helpers drive the pipe the way smbclient does over SMB2.
"""

from impacket.dcerpc.v5 import rpcrt, srvs, transport
from impacket.dcerpc.v5.dtypes import NULL

from smbca.auth import Identity, User, UserDatabase
from smbca.auth.legacy_crypto import nt_hash
from smbca.rpc.dcerpc import NDR20, AssociationGroups, AuthLevel, CallContext
from smbcad.rpc import (
    Directory,
    PosixAccounts,
    local_directory,
    STYPE_DISKTREE,
    STYPE_IPC,
    STYPE_SPECIAL,
    NamedPipe,
    PipeEnvironment,
    ServerConfig,
    ShareInfo,
    open_pipe,
)
from smbcad.rpc.srvsvc import SRVSVC_SYNTAX, STYPE_CLUSTER_FS

SHARES = (
    ShareInfo(name="IPC$", share_type=STYPE_IPC | STYPE_SPECIAL, comment="IPC Service (smbca)"),
    ShareInfo(name="data", share_type=STYPE_DISKTREE | STYPE_CLUSTER_FS, comment="Team data",
              path="/srv/smbca/data", is_ca=True),
    ShareInfo(name="scratch", share_type=STYPE_DISKTREE, comment="", path="/srv/scratch"),
)
SERVER = ServerConfig(name="SMBCA", comment="smbca cluster")
CALL = CallContext(call_id=2, opnum=0, p_cont_id=0, abstract_syntax=SRVSVC_SYNTAX,
                   transfer_syntax=NDR20, assoc_group=AssociationGroups().create())
"""A call context for invoking the srvsvc interface directly at the stub level."""


def enum_request(level: int, *, resume=0, max_length=0xFFFFFFFF, server_name="\\\\SMBCA\x00"):
    """NetrShareEnum [in] exactly as srvs.hNetrShareEnum builds it."""
    request = srvs.NetrShareEnum()
    request["ServerName"] = server_name
    request["PreferedMaximumLength"] = max_length
    request["ResumeHandle"] = resume
    request["InfoStruct"]["Level"] = level
    request["InfoStruct"]["ShareInfo"]["tag"] = level
    request["InfoStruct"]["ShareInfo"][f"Level{level}"]["Buffer"] = NULL
    return request


USERS = UserDatabase.from_users([
    User("bob", nt_hash("Bob-Pw-1"), uid=4242),      # an smbpasswd user with a uid
    User("carol", nt_hash("Carol-Pw-1")),            # a configured user without one
])
"""Local accounts of the lookup tests: names resolve from these only (no NSS)."""


def directory(system: bool = False) -> Directory:
    """Server SMBCA of pair "smbca" in WORKGROUP, over ``USERS`` (and NSS if ``system``)."""
    return local_directory("SMBCA", "workgroup", "smbca",
                           PosixAccounts(lambda: USERS, system=system))


class Session:
    """What a pipe's transport identity looks like: an SMB session with an identity."""

    def __init__(self, identity: Identity | None) -> None:
        self.identity = identity


BOB = Identity("bob", "WORKGROUP", uid=4242)
ANONYMOUS = Identity("", "", is_anonymous=True)


def call_context(syntax, identity: Identity | None = BOB, *,
                 auth_level: int = AuthLevel.NONE, rpc_identity=None) -> CallContext:
    """A call on a pipe opened by ``identity``'s SMB session."""
    return CallContext(call_id=2, opnum=0, p_cont_id=0, abstract_syntax=syntax,
                       transfer_syntax=NDR20, assoc_group=AssociationGroups().create(),
                       transport=Session(identity), auth_level=auth_level,
                       identity=rpc_identity)


def environment(shares=SHARES, groups: AssociationGroups | None = None,
                names: Directory | None = None) -> PipeEnvironment:
    return PipeEnvironment(shares=lambda: shares, server=SERVER,
                           assoc_groups=AssociationGroups() if groups is None else groups,
                           directory=names)


class PipeTransport(transport.DCERPCTransport):
    """impacket transport over NamedPipe.write / read (or transceive), reading in small pieces."""

    def __init__(self, pipe: NamedPipe, read_size: int = 1024, transceive: bool = False) -> None:
        super().__init__("in-process", 445)
        self.pipe = pipe
        self.read_size = read_size
        self.transceive = transceive
        self.overflows = 0
        self._answer: list[bytes] = []

    def connect(self) -> int:
        return 1

    def disconnect(self) -> int:
        return 1

    def send(self, data, forceWriteAndx=0, forceRecv=0) -> None:
        if self.transceive and not forceWriteAndx:
            result = self.pipe.transceive(data, self.read_size)
            self._answer = [result.data]
            if result.status != 0:
                self.overflows += 1
                self._answer.append(self._rest())
        else:
            self.pipe.write(data)

    def _rest(self) -> bytes:
        chunks = []
        while True:
            result = self.pipe.read(self.read_size)
            chunks.append(result.data)
            if not result.more:
                return b"".join(chunks)
            self.overflows += 1

    def recv(self, forceRecv=0, count=0) -> bytes:
        if self._answer:
            data, self._answer = b"".join(self._answer), []
            return data
        first = self.pipe.read(self.read_size)
        if not first.more:
            return first.data
        self.overflows += 1
        return first.data + self._rest()


def srvsvc_client(pipe: NamedPipe | None = None, **kwargs) -> tuple[rpcrt.DCERPC_v5, PipeTransport]:
    """impacket client bound to srvsvc over a fresh (or given) pipe."""
    pipe = pipe or open_pipe("srvsvc", environment())
    pipe_transport = PipeTransport(pipe, **kwargs)
    client = rpcrt.DCERPC_v5(pipe_transport)
    client.connect()
    client.bind(srvs.MSRPC_UUID_SRVS)
    return client, pipe_transport


def bound_client(pipe: NamedPipe, uuid: bytes) -> rpcrt.DCERPC_v5:
    """impacket client bound to interface ``uuid`` (e.g. lsat.MSRPC_UUID_LSAT) on ``pipe``."""
    client = rpcrt.DCERPC_v5(PipeTransport(pipe))
    client.connect()
    client.bind(uuid)
    return client


def bind_pdu(call_id: int = 1) -> bytes:
    """An srvsvc bind PDU as impacket builds it (NDR transfer syntax)."""
    bind = rpcrt.MSRPCHeader()
    bind["type"] = rpcrt.MSRPC_BIND
    bind["call_id"] = call_id
    body = rpcrt.MSRPCBind()
    item = rpcrt.CtxItem()
    item["TransItems"] = 1
    item["AbstractSyntax"] = srvs.MSRPC_UUID_SRVS
    item["TransferSyntax"] = rpcrt.DCERPC.NDRSyntax
    body.addCtxItem(item)
    bind["pduData"] = body.getData()
    return bind.get_packet()
