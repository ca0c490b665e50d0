"""Named pipes on IPC$ ([MS-SMB2] 3.3.5.9 for pipes, [MS-SMB2] 3.3.5.12/13/15
on a pipe Open): glue between the SMB commands and ``smbcad.rpc``."""

import asyncio

from smbca.auth.dc_names import DcNames
from smbca.rpc.dcerpc import AssociationGroups
from smbca.rpc.ntlm_security import NtlmSecurity
from smbcad.proto.constants import CreateAction, FileAttributes
from smbcad.proto.create import CreateResponse
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc.security import Sid
from smbcad.proto.read import encode_read_response_prefix
from smbcad.proto.status import NtStatus
from smbcad.proto.write import WriteResponse
from smbcad.rpc import (
    STYPE_DISKTREE, STYPE_IPC, STYPE_SPECIAL, PipeEnvironment, PosixAccounts, ServerConfig,
    ShareInfo, local_directory, open_pipe as rpc_open_pipe)
from smbcad.rpc.names import DomainNames
from smbcad.rpc.wellknown import Domain
from smbcad.server import files
from smbcad.server.adm import Open
from smbcad.server.context import Pending, Reply


def _environment(server) -> PipeEnvironment:
    """One per server: the share list is read live, so a reload shows at once."""
    env = server.pipe_environment
    if env is None:
        def shares():
            out = []
            for share in server.shares.values():
                kind = STYPE_IPC | STYPE_SPECIAL if share.is_ipc else STYPE_DISKTREE
                out.append(ShareInfo(name=share.name, share_type=kind, comment=share.comment,
                                     path=share.path, is_ca=share.is_ca))
            return out
        config = server.config
        pair = config.cluster.name if config.cluster is not None else config.server.server_name
        # Users are read live from the current authenticator (a reload swaps it).
        accounts = PosixAccounts(lambda: server.authenticator.users)
        env = PipeEnvironment(shares=shares,
                              server=ServerConfig(name=config.server.server_name),
                              assoc_groups=AssociationGroups(),
                              security=NtlmSecurity(server.authenticator),
                              directory=local_directory(config.server.server_name,
                                                        config.server.domain, pair, accounts,
                                                        _joined_domain(config.server.keytab)))
        server.pipe_environment = env
    return env


def _joined_domain(keytab: str | None) -> DomainNames | None:
    """The joined domain's names through its DC, when the join beside
    ``keytab`` kept a machine account record (``smbca.auth.dc_names``)."""
    if keytab is None:
        return None
    dc = DcNames.from_keytab(keytab)
    if dc is None:
        return None
    account = dc.account
    return DomainNames(Domain(account.netbios_domain.upper(), Sid.from_string(account.domain_sid)),
                       account.realm, dc)


def open_pipe(ctx, request) -> bytes:
    pipe = rpc_open_pipe(request.name, _environment(ctx.server), ctx.session)
    persistent_id, volatile_id = ctx.server.next_file_ids()
    open_ = Open(persistent_id=persistent_id, volatile_id=volatile_id, session=ctx.session,
                 tree=ctx.tree, path=pipe.name, client_name=request.name, handle=pipe,
                 granted_access=files.map_generic(request.desired_access, ctx.tree.maximal_access),
                 share_access=request.share_access, create_options=request.create_options,
                 is_directory=False, file_key=("pipe", persistent_id), is_pipe=True)
    ctx.server.opens.register(open_)
    ctx.compound.file_id = open_.file_id
    return CreateResponse(
        oplock_level=0, flags=0, create_action=CreateAction.OPENED, creation_time=0,
        last_access_time=0, last_write_time=0, change_time=0, allocation_size=4096,
        end_of_file=0, file_attributes=FileAttributes.NORMAL,
        file_id=FileId(persistent_id, volatile_id)).encode()


def read(ctx, open_, request):
    """READ of a pipe ([MS-SMB2] 3.3.5.12): the next message, or, on an empty
    pipe, an async wait for it (interim STATUS_PENDING at once, as Windows and
    Samba answer a pipelining RPC client) that a WRITE's answer, a CANCEL
    (STATUS_CANCELLED) or the pipe's CLOSE (STATUS_PIPE_BROKEN) ends."""
    pipe = open_.handle
    if not pipe.would_wait:
        return _read_reply(pipe.read(request.length))
    if ctx.header.next_command:
        # Only the last request of a compound may go async (3.3.5.2.7, <206>).
        raise SmbError(NtStatus.INTERNAL_ERROR, "pipe READ would go async mid-compound")
    outcome = asyncio.get_running_loop().create_future()

    def done(result) -> None:
        if not outcome.done():
            outcome.set_result(result)
    withdraw = pipe.read_when_ready(request.length, done)

    def cancel() -> None:
        if withdraw():
            done(NtStatus.CANCELLED)

    async def wait():
        result = await outcome
        if isinstance(result, int):
            raise SmbError(result)
        return _read_reply(result)
    return Pending(wait(), interim_after_s=0.0, on_cancel=cancel)


def _read_reply(result) -> Reply:
    body = encode_read_response_prefix(len(result.data)) + (result.data or b"\x00")
    return Reply(body, result.status)


def write(ctx, open_, request):
    return WriteResponse(open_.handle.write(bytes(request.data))).encode()


def transceive(ctx, open_, request):
    result = open_.handle.transceive(bytes(request.input), request.max_output_response)
    return result.data, result.status
