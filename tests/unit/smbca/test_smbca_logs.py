"""smbca.logs: the journald native writer against a real Unix datagram socket
(fields, priority bytes, binary framing of multi-line values, drops), the
choice of sink from JOURNAL_STREAM, the one-line text format and the rotated
log file."""

import re
import logging
import os
import socket
import struct

import pytest

from smbca.config import ConfigError, SystemdEnv, systemd_environment
from smbca.logs import (
    JournalHandler,
    LineFormatter,
    encode_fields,
    setup_logging,
    start_logging,
    stderr_is_journal,
)


def parse_datagram(data: bytes) -> dict[str, str]:
    """The native journal protocol, read independently of the writer."""
    fields, pos = {}, 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            pos = end + 1
        else:
            name = line
            (size,) = struct.unpack_from("<Q", data, end + 1)
            value = data[end + 9:end + 9 + size]
            assert data[end + 9 + size:end + 10 + size] == b"\n"
            pos = end + 10 + size
        fields[name.decode()] = value.decode()
    return fields


@pytest.fixture(autouse=True)
def root_level_restored():
    """setup_logging sets the root logger's level: later tests must not inherit it."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.fixture
def journal(tmp_path):
    path = str(tmp_path / "journal.socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(2)
        yield path, listener


def _logger(handler: logging.Handler, name: str = "smbcad.test") -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def test_journal_entry_fields_and_priority(journal):
    path, listener = journal
    handler = JournalHandler("smbcad", path)
    try:
        _logger(handler).error("share %s offline", "vms",
                               extra={"share": "vms", "aggregate": "aggr1",
                                      "session_id": "0x1000000000001", "client": "192.0.2.7"})
        raw = listener.recv(65536)
    finally:
        handler.close()
    assert b"\nPRIORITY=3\n" in raw
    fields = parse_datagram(raw)
    assert fields["MESSAGE"] == "share vms offline"
    assert fields["PRIORITY"] == "3"
    assert fields["SYSLOG_IDENTIFIER"] == "smbcad"
    assert fields["LOGGER"] == "smbcad.test"
    assert (fields["SHARE"], fields["AGGREGATE"]) == ("vms", "aggr1")
    assert (fields["SESSION_ID"], fields["CLIENT"]) == ("0x1000000000001", "192.0.2.7")
    assert fields["CODE_FUNC"] == "test_journal_entry_fields_and_priority"
    assert "SMBCA_DROPPED" not in fields


@pytest.mark.parametrize("level, priority", [(logging.DEBUG, b"7"), (logging.INFO, b"6"),
                                             (logging.WARNING, b"4"), (logging.ERROR, b"3"),
                                             (logging.CRITICAL, b"2")])
def test_priority_per_level(journal, level, priority):
    path, listener = journal
    handler = JournalHandler("witnessd", path)
    try:
        _logger(handler, "witnessd.test").log(level, "event")
        raw = listener.recv(65536)
    finally:
        handler.close()
    assert b"\nPRIORITY=" + priority + b"\n" in raw


def test_traceback_is_one_entry_with_binary_framing(journal):
    path, listener = journal
    handler = JournalHandler("clusdisk", path)
    try:
        try:
            raise ValueError("bad sense data")
        except ValueError:
            _logger(handler, "clusdisk.test").exception("renew failed")
        raw = listener.recv(65536)
    finally:
        handler.close()
    assert b"\nMESSAGE\n" in raw or raw.startswith(b"MESSAGE\n")
    message = parse_datagram(raw)["MESSAGE"]
    assert message.startswith("renew failed\nTraceback")
    assert "ValueError: bad sense data" in message


def test_full_journal_drops_and_counts_without_blocking(journal):
    path, listener = journal
    handler = JournalHandler("smbcad", path)
    logger = _logger(handler)
    try:
        for _ in range(5000):                   # nobody reads: the queue fills
            logger.info("x" * 1000)
        assert handler.dropped > 0
        dropped = handler.dropped
        listener.setblocking(False)
        while True:                             # journald catches up
            try:
                listener.recv(65536)
            except BlockingIOError:
                break
        listener.settimeout(2)
        logger.warning("after the burst")
        fields = parse_datagram(listener.recv(65536))
    finally:
        handler.close()
    assert fields["MESSAGE"] == "after the burst"
    assert fields["SMBCA_DROPPED"] == str(dropped)
    assert handler.dropped == 0


def test_encode_fields_framing():
    assert encode_fields([("A", "1"), ("B", "x\ny")]) == \
        b"A=1\nB\n" + struct.pack("<Q", 3) + b"x\ny\n"


def test_journal_stream_from_environment(tmp_path):
    env = systemd_environment({"JOURNAL_STREAM": "8:12345"})
    assert env.journal_stream == (8, 12345)
    assert systemd_environment({"JOURNAL_STREAM": "junk"}).journal_stream is None
    with open(tmp_path / "f", "w") as handle:
        st = os.fstat(handle.fileno())
        assert stderr_is_journal(SystemdEnv(journal_stream=(st.st_dev, st.st_ino)),
                                 handle.fileno())
        assert not stderr_is_journal(SystemdEnv(journal_stream=(st.st_dev, st.st_ino + 1)),
                                     handle.fileno())
    assert not stderr_is_journal(SystemdEnv())


def _stderr_env() -> SystemdEnv:
    st = os.fstat(2)
    return SystemdEnv(journal_stream=(st.st_dev, st.st_ino))


def _remove(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()


def test_setup_uses_the_journal_when_stderr_is_its_stream(journal):
    path, listener = journal
    handler = setup_logging("smbcad", "info", _stderr_env(), journal_socket=path)
    try:
        assert isinstance(handler, JournalHandler)
        logging.getLogger("smbcad").warning("mirror link down", extra={"aggregate": "aggr1"})
        fields = parse_datagram(listener.recv(65536))
    finally:
        _remove(handler)
    assert (fields["PRIORITY"], fields["AGGREGATE"]) == ("4", "aggr1")


def test_setup_falls_back_to_stderr_without_journal_socket(tmp_path):
    handler = setup_logging("smbcad", "info", _stderr_env(),
                            journal_socket=str(tmp_path / "absent"))
    try:
        assert type(handler) is logging.StreamHandler
        assert isinstance(handler.formatter, LineFormatter)
    finally:
        _remove(handler)


def _record(level: int, message: str, name: str = "smbcad", exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, exc_info)


def test_line_format_keeps_the_ready_line_and_names_other_levels():
    plain = LineFormatter(timestamps=False)
    assert plain.format(_record(logging.INFO, "listening on 0.0.0.0:445")) == \
        "smbcad: listening on 0.0.0.0:445"
    assert plain.format(_record(logging.ERROR, "store failed", "smbcad.store")) == \
        "smbcad.store: error: store failed"
    try:
        raise OSError(5, "Input/output error")
    except OSError:
        import sys
        line = plain.format(_record(logging.WARNING, "fsync", exc_info=sys.exc_info()))
    assert "\n" not in line and line.startswith("smbcad: warning: fsync | Traceback")
    stamped = LineFormatter(timestamps=True).format(_record(logging.INFO, "up"))
    # "YYYY-MM-DD HH:MM:SS,mmm ": what the lab harness and operators parse
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} smbcad: up$", stamped)


def test_log_file_rotates_by_size(tmp_path):
    path = tmp_path / "smbcad.log"
    handler = start_logging("smbcad", "info", ["--config", "x", "--log-file", str(path),
                                               "--log-file-max-bytes", "2000",
                                               "--log-file-backups", "2"])
    try:
        for i in range(100):
            logging.getLogger("smbcad").info("event %d %s", i, "y" * 50)
    finally:
        _remove(handler)
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated == ["smbcad.log", "smbcad.log.1", "smbcad.log.2"]
    last = path.read_text().splitlines()[-1]
    assert last.endswith("smbcad: event 99 " + "y" * 50)
    assert all(os.path.getsize(tmp_path / name) <= 2000 for name in rotated)


def test_log_file_that_cannot_open_names_the_option(tmp_path):
    with pytest.raises(ConfigError) as caught:
        start_logging("smbcad", "info", ["--log-file", str(tmp_path / "no" / "such.log")])
    assert caught.value.key == "--log-file"
