"""TREE_DISCONNECT ([MS-SMB2] 3.3.5.8): closes the tree's opens, then the tree."""

from smbcad.proto.empty import EMPTY_BODY, decode_empty


def handle(ctx):
    decode_empty(ctx.message)
    tree, session = ctx.tree, ctx.session
    for open_ in [o for o in session.opens.values() if o.tree is tree]:
        ctx.server.opens.close(open_)
    session.trees.pop(tree.tree_id, None)
    ctx.server.metrics.tree_connects.dec()
    return EMPTY_BODY
