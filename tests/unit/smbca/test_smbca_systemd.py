"""sd_notify over a real datagram socket: delivered, skipped, never blocking."""

import socket

from smbca.systemd import sd_notify


def test_sd_notify(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        assert sd_notify(path, "READY=1")
        assert listener.recv(100) == b"READY=1"
    assert sd_notify(None, "READY=1") is False


def test_sd_notify_never_blocks(tmp_path):
    path = str(tmp_path / "full")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        results = [sd_notify(path, "WATCHDOG=1") for _ in range(5000)]   # nobody reads
    assert results[0] is True and results[-1] is False
    assert sd_notify(str(tmp_path / "absent"), "READY=1") is False
