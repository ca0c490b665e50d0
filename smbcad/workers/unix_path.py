"""A worker's Unix socket at a fixed path: bound over a stale file of its
previous run, unlinked at close only while the path is still its own (a
restarted successor of the same worker index may have bound it again)."""

import os
import socket
import stat


class SocketPathError(Exception):
    """The path holds something that is not a socket, or cannot be bound;
    ``errno`` keeps the system's code."""

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        self.errno = code


def bind_at(path: str, sock: socket.socket, what: str) -> tuple[int, int]:
    """Bind ``sock`` at ``path`` (its directory made 0700, a stale socket file
    removed); returns the identity of the bound file for ``unlink_if_own``.
    ``sock`` is closed when this fails."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(mode):
                raise SocketPathError(f"{what} {path} exists and is not a socket")
            os.unlink(path)
        sock.bind(path)
        bound = os.stat(path)
    except SocketPathError:
        sock.close()
        raise
    except OSError as error:
        sock.close()
        raise SocketPathError(f"{what} {path}: {error}", error.errno) from error
    return bound.st_dev, bound.st_ino


def unlink_if_own(path: str, bound: tuple[int, int]) -> None:
    try:
        now = os.stat(path)
        if (now.st_dev, now.st_ino) == bound:
            os.unlink(path)
    except FileNotFoundError:
        pass
