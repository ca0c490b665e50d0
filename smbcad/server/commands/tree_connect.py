"""TREE_CONNECT ([MS-SMB2] 3.3.5.7)."""

import logging

from smbcad.proto.constants import (
    AccessMask, Dialect, ShareCaps, ShareFlags, ShareType)
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.proto.tree_connect import TreeConnectRequest, TreeConnectResponse
from smbcad.server.adm import TreeConnect

log = logging.getLogger("smbcad.tree")

READ_ONLY_ACCESS = (AccessMask.FILE_GENERIC_READ | AccessMask.FILE_GENERIC_EXECUTE
                    | AccessMask.FILE_READ_ATTRIBUTES)
# Windows keeps ~64K tree connects per session; the cap bounds memory per client.
MAX_TREES_PER_SESSION = 1024


def handle(ctx):
    request = TreeConnectRequest.decode(ctx.message)
    session, conn, server = ctx.session, ctx.connection, ctx.server
    share = server.find_share(request.share_name)
    if share is None:
        raise SmbError(NtStatus.BAD_NETWORK_NAME, f"no share {request.share_name!r}")
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
