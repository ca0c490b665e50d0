"""The command table: handler plus preconditions as data (shared/STYLE.md rule 4).

The connection core enforces what a row says (session, tree, signing) so the
handlers never re-check it.  ``credit_charge_needed`` is the multi-credit rule
of [MS-SMB2] 3.3.5.2.5.
"""

import struct
from dataclasses import dataclass
from typing import Callable

from smbcad.proto.constants import HEADER_SIZE, Command
from smbcad.server.commands import (
    cancel_echo, change_notify, close, create, flush, ioctl, lock, logoff, negotiate,
    oplock_break, query_directory, query_info, read, session_setup, set_info,
    tree_connect, tree_disconnect, write)


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Callable
    needs_session: bool = True
    needs_tree: bool = True
    modifies: bool = False


DISPATCH = {
    Command.NEGOTIATE: CommandSpec("negotiate", negotiate.handle, False, False),
    Command.SESSION_SETUP: CommandSpec("session_setup", session_setup.handle, False, False),
    Command.LOGOFF: CommandSpec("logoff", logoff.handle, True, False),
    Command.TREE_CONNECT: CommandSpec("tree_connect", tree_connect.handle, True, False),
    Command.TREE_DISCONNECT: CommandSpec("tree_disconnect", tree_disconnect.handle),
    Command.CREATE: CommandSpec("create", create.handle, modifies=True),
    Command.CLOSE: CommandSpec("close", close.handle),
    Command.FLUSH: CommandSpec("flush", flush.handle, modifies=True),
    Command.READ: CommandSpec("read", read.handle),
    Command.WRITE: CommandSpec("write", write.handle, modifies=True),
    Command.LOCK: CommandSpec("lock", lock.handle),
    Command.IOCTL: CommandSpec("ioctl", ioctl.handle, modifies=True),
    Command.ECHO: CommandSpec("echo", cancel_echo.handle_echo, False, False),
    Command.QUERY_DIRECTORY: CommandSpec("query_directory", query_directory.handle),
    Command.CHANGE_NOTIFY: CommandSpec("change_notify", change_notify.handle),
    Command.QUERY_INFO: CommandSpec("query_info", query_info.handle),
    Command.SET_INFO: CommandSpec("set_info", set_info.handle, modifies=True),
    Command.OPLOCK_BREAK: CommandSpec("oplock_break", oplock_break.handle),
}

# Where each command's payload and expected-response sizes sit in the body, for
# the CreditCharge check: (offset of a u32 size, ...) relative to the body,
# in increasing order.
_U32 = struct.Struct("<I")
_SIZE_FIELDS = {
    Command.READ: (4,),            # Length
    Command.WRITE: (4,),           # Length
    Command.IOCTL: (28, 44),       # InputCount, MaxOutputResponse
    Command.QUERY_DIRECTORY: (28,),  # OutputBufferLength
    Command.CHANGE_NOTIFY: (4,),   # OutputBufferLength
    Command.QUERY_INFO: (4, 12),   # OutputBufferLength, InputBufferLength
    Command.SET_INFO: (4,),        # BufferLength
}


def credit_charge_needed(command: int, message) -> int:
    """1 + (max(payload, response) - 1) / 65536 (3.3.5.2.5); 1 when unknown."""
    fields = _SIZE_FIELDS.get(command)
    if fields is None or len(message) < HEADER_SIZE + fields[-1] + 4:
        return 1
    size = 0
    for offset in fields:
        size = max(size, _U32.unpack_from(message, HEADER_SIZE + offset)[0])
    return 1 if size == 0 else 1 + (size - 1) // 65536
