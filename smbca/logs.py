"""Logging for the three daemons, set up the same way in each (issue 15 item 5).

Where the lines go, first match wins:

* ``--log-file PATH``: that file, rotated by size (``logging.handlers``:
  ``--log-file-max-bytes``, ``--log-file-backups``), each line with its time;
* stderr connected to the journal (systemd sets ``JOURNAL_STREAM`` to its
  device and inode, systemd.exec(5)): journald's native protocol, one
  datagram per event on ``/run/systemd/journal/socket`` carrying PRIORITY
  (syslog level of the record, so ``journalctl -p err`` works), MESSAGE,
  SYSLOG_IDENTIFIER, CODE_* and the structured fields a caller passes as
  ``extra`` (``session_id``, ``client``, ``share``, ``aggregate``, ...:
  ``journalctl SHARE=vms``);
* otherwise stderr, ``NAME: MESSAGE`` for info and ``NAME: LEVEL: MESSAGE``
  for the rest, no time (a supervisor that keeps stderr adds its own).

Every event is one line (or one journal entry): a traceback's line breaks
are written as `` | `` in the text sinks.  The journal writer never blocks
the event loop: a datagram journald has no room for is dropped and counted,
and the next entry carries the count (SMBCA_DROPPED).
"""

import argparse
import errno
import logging
import logging.handlers
import os
import socket
import struct
import sys

from smbca.config import ConfigError, SystemdEnv, systemd_environment

JOURNAL_SOCKET = "/run/systemd/journal/socket"
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}
"""Python level -> syslog priority (sd-journal PRIORITY=)."""

STRUCTURED_FIELDS = {"session_id": "SESSION_ID", "client": "CLIENT", "share": "SHARE",
                     "aggregate": "AGGREGATE", "node": "NODE", "lif": "LIF",
                     "interface": "INTERFACE", "disk": "DISK", "state": "STATE",
                     "open_id": "OPEN_ID"}
"""``extra`` keys a log call may carry -> journal field names."""

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
_LENGTH = struct.Struct("<Q")
_TRUNCATED_MESSAGE_BYTES = 48 * 1024


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a Python level (custom levels round down)."""
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return PRIORITY[level]
    return PRIORITY[logging.DEBUG]


def encode_fields(fields: list[tuple[str, str]]) -> bytes:
    """One native-protocol datagram: ``NAME=value\\n``, or for a value with a
    line break ``NAME\\n`` + its length (64-bit little endian) + value + ``\\n``
    (systemd's "Native Journal Protocol")."""
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += name.encode() + b"\n" + _LENGTH.pack(len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


def _one_line(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", " | ")


class JournalHandler(logging.Handler):
    """Records to journald as native entries (see the module docstring)."""

    def __init__(self, identifier: str, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.dropped = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                                   | socket.SOCK_NONBLOCK)
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise

    def fields(self, record: logging.LogRecord) -> list[tuple[str, str]]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = [("MESSAGE", message), ("PRIORITY", str(syslog_priority(record.levelno))),
                  ("SYSLOG_IDENTIFIER", self.identifier), ("LOGGER", record.name),
                  ("CODE_FILE", record.pathname), ("CODE_LINE", str(record.lineno)),
                  ("CODE_FUNC", record.funcName)]
        for attribute, name in STRUCTURED_FIELDS.items():
            value = getattr(record, attribute, None)
            if value is not None:
                fields.append((name, str(value)))
        if self.dropped:
            fields.append(("SMBCA_DROPPED", str(self.dropped)))
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = self.fields(record)
            try:
                self._sock.send(encode_fields(fields))
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise
                fields[0] = ("MESSAGE", fields[0][1][:_TRUNCATED_MESSAGE_BYTES] + " [truncated]")
                self._sock.send(encode_fields(fields))
            self.dropped = 0
        except BlockingIOError:
            self.dropped += 1           # journald is behind: never stall the loop
        except (OSError, ValueError):
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


class LineFormatter(logging.Formatter):
    """One line per event: ``NAME: MESSAGE`` (info) or ``NAME: LEVEL: MESSAGE``,
    prefixed with the local time (``YYYY-MM-DD HH:MM:SS,mmm``) when ``timestamps``."""

    def __init__(self, timestamps: bool) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        level = "" if record.levelno == logging.INFO else record.levelname.lower() + ": "
        line = f"{record.name}: {level}{_one_line(text)}"
        if self.timestamps:
            return f"{self.formatTime(record, self.datefmt)} {line}"
        return line


def stderr_is_journal(env: SystemdEnv, stderr_fd: int = 2) -> bool:
    """Whether our stderr is the stream systemd connected to the journal."""
    if env.journal_stream is None:
        return False
    try:
        st = os.fstat(stderr_fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == env.journal_stream


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-file`` and its rotation, the same for every daemon."""
    parser.add_argument("--log-file", help="write the log to this file (rotated by size) "
                                           "instead of the journal or stderr")
    parser.add_argument("--log-file-max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help="rotate --log-file at this size (default 10 MiB)")
    parser.add_argument("--log-file-backups", type=int, default=DEFAULT_BACKUPS,
                        help="rotated files to keep (default 5)")


def start_logging(identifier: str, level: str, argv: list[str], *,
                  worker: int | None = None) -> logging.Handler:
    """A daemon's logging from its command line (the ``add_log_arguments``
    options, other arguments ignored) and systemd's environment; a log file
    that cannot be opened is the ConfigError ``--log-file``.

    ``worker``: this process is one of a supervisor's workers (smbcad
    ``server.workers``): its lines name it (``smbcad.session[1]: ...``),
    and a log file is its own (``FILE.worker-1``: several processes must
    not rotate one file)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_log_arguments(parser)
    options, _ = parser.parse_known_args(argv)
    log_file = options.log_file
    if worker is not None and log_file:
        log_file = f"{log_file}.worker-{worker}"
    try:
        handler = setup_logging(identifier, level, systemd_environment(),
                                log_file=log_file, max_bytes=options.log_file_max_bytes,
                                backups=options.log_file_backups)
        if worker is not None:
            handler.addFilter(_WorkerTag(worker))
        return handler
    except OSError as exc:
        raise ConfigError("--log-file", f"cannot open {options.log_file}: "
                                        f"{exc.strerror or exc}") from None


class _WorkerTag(logging.Filter):
    """Names the worker process in each record's logger name."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.suffix = f"[{worker}]"

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.endswith(self.suffix):
            record.name += self.suffix
        return True


def setup_logging(identifier: str, level: str, env: SystemdEnv, *,
                  log_file: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                  backups: int = DEFAULT_BACKUPS,
                  journal_socket: str = JOURNAL_SOCKET) -> logging.Handler:
    """Route the root logger to one sink (module docstring) at ``level``
    (a name: debug, info, ...); returns the handler.  An unopenable
    ``log_file`` raises OSError."""
    handler: logging.Handler
    if log_file:
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        handler.setFormatter(LineFormatter(timestamps=True))
    else:
        handler = None
        if stderr_is_journal(env):
            try:
                handler = JournalHandler(identifier, journal_socket)
            except OSError:
                handler = None          # no journald socket after all: plain stderr
        if handler is None:
            handler = logging.StreamHandler(sys.stderr)
            # Not the journal: nothing else stamps these lines (a terminal,
            # a file they are redirected to, a test harness reading them).
            handler.setFormatter(LineFormatter(timestamps=True))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "smbca_sink", False)]:
        root.removeHandler(old)         # set up again (tests); others' handlers stay
        old.close()
    handler.smbca_sink = True
    root.addHandler(handler)
    root.setLevel(level.upper())
    # impacket logs an ERROR for every RPC request it cannot decode: a client
    # could flood the log with them; our pipes answer those with a fault.
    logging.getLogger("impacket").setLevel(logging.CRITICAL)
    return handler
