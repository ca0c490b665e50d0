"""LOGOFF ([MS-SMB2] 3.3.5.6)."""

from smbcad.proto.empty import EMPTY_BODY, decode_empty


def handle(ctx):
    decode_empty(ctx.message)
    session = ctx.session
    # The response is still signed with the session's key, so the session goes
    # away only after the response is built.
    ctx.after_send.append(lambda: ctx.server.drop_session(session))
    return EMPTY_BODY
