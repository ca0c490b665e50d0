"""LOGOFF ([MS-SMB2] 3.3.5.6)."""

from smbcad.proto.empty import EMPTY_BODY, decode_empty


def handle(ctx):
    decode_empty(ctx.message)
    session = ctx.session
    # The response is still signed with the session's key, so the session goes
    # away only after the response is built.
    # Durable and persistent opens outlive a logoff as they outlive a lost
    # connection: Windows and Samba let the client reconnect them from a new
    # session (smb2.durable-open.reopen4).
    ctx.after_send.append(lambda: ctx.server.drop_session(session, keep_durable=True))
    return EMPTY_BODY
