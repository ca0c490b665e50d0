"""ECHO ([MS-SMB2] 3.3.5.17).  CANCEL (3.3.5.16) has no response and is taken
by the connection core before dispatch, since it consumes no credit."""

from smbcad.proto.empty import EMPTY_BODY, decode_empty


def handle_echo(ctx):
    decode_empty(ctx.message)
    return EMPTY_BODY
