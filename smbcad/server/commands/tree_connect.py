"""TREE_CONNECT ([MS-SMB2] 3.3.5.7).

A share on an aggregate is connected only where the aggregate is online, and
only through an address that is not another aggregate's (server/aggregates.py);
while its aggregate is being adopted or released here the request waits for the
outcome rather than failing, because a failed tree connect ends a client's
session re-establishment (3.2.4.4).  No interim response is sent meanwhile:
the hold is bounded well under the clients' request timeout."""

import logging

from smbcad.proto.constants import (
    AccessMask, Dialect, ShareCaps, ShareFlags, ShareType)
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.proto.tree_connect import TreeConnectRequest, TreeConnectResponse
from smbcad.server.adm import TreeConnect
from smbcad.server.aggregates import TREE_CONNECT_HOLD_S
from smbcad.server.context import Pending

log = logging.getLogger("smbcad.tree")

READ_ONLY_ACCESS = (AccessMask.FILE_GENERIC_READ | AccessMask.FILE_GENERIC_EXECUTE
                    | AccessMask.FILE_READ_ATTRIBUTES)
# Windows keeps ~64K tree connects per session; the cap bounds memory per client.
MAX_TREES_PER_SESSION = 1024


def handle(ctx):
    request = TreeConnectRequest.decode(ctx.message)
    share = ctx.server.find_share(request.share_name)
    if share is None:
        raise SmbError(NtStatus.BAD_NETWORK_NAME, f"no share {request.share_name!r}")
    wait = ctx.server.aggregates.check_tree_connect(share, ctx.connection.local_address)
    if wait is not None:
        return Pending(_when_settled(ctx, request, wait), TREE_CONNECT_HOLD_S * 2)
    return _connect(ctx, share)


async def _when_settled(ctx, request, wait):
    await wait
    share = ctx.server.find_share(request.share_name)
    if share is None:
        raise SmbError(NtStatus.BAD_NETWORK_NAME, f"no share {request.share_name!r}")
    return _connect(ctx, share)


def _connect(ctx, share):
    session, conn, server = ctx.session, ctx.connection, ctx.server
    if len(session.trees) >= MAX_TREES_PER_SESSION:
        raise SmbError(NtStatus.INSUFFICIENT_RESOURCES, "too many tree connects")
    encrypt = share.encrypt_data and not share.is_ipc
    if encrypt and not conn.cipher_id:
        # A client that cannot encrypt may not use an encrypted share (3.3.5.7).
        raise SmbError(NtStatus.ACCESS_DENIED, "share requires encryption")
    if session.is_guest_or_anonymous and not share.is_ipc and not server.config.server.guest_ok:
        raise SmbError(NtStatus.ACCESS_DENIED, "guest access is off")
    access = READ_ONLY_ACCESS if share.read_only else AccessMask.FILE_ALL_ACCESS
    tree = TreeConnect(tree_id=session.next_tree_id(), share=share, session=session,
                       maximal_access=access, encrypt_data=encrypt)
    session.trees[tree.tree_id] = tree
    ctx.tree = tree
    server.metrics.tree_connects.inc()
    flags = ShareFlags.NO_CACHING if share.is_ipc else ShareFlags.MANUAL_CACHING
    if encrypt:
        flags |= ShareFlags.ENCRYPT_DATA
    caps = 0
    if share.is_ca and conn.dialect >= Dialect.SMB_3_0:
        caps |= ShareCaps.CONTINUOUS_AVAILABILITY
    log.debug("%s: tree %d → %s", conn.peer, tree.tree_id, share.name)
    return TreeConnectResponse(ShareType.PIPE if share.is_ipc else ShareType.DISK,
                               flags, caps, access).encode()
