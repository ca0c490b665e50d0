"""The smbca admin command dispatches to the daemons' own control tools."""

import pytest

from smbcad import admin


def test_help_lists_the_commands(capsys):
    assert admin.main(["--help"]) == 0
    assert "smbca witness notify" in capsys.readouterr().out


def test_unknown_command_is_exit_2(capsys):
    assert admin.main(["takeover-now"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_witness_notify_reaches_witnessd_notify(tmp_path, capsys):
    # No witnessd listens on this socket: the notify tool itself reports it.
    code = admin.main(["witness", "notify", "--socket", str(tmp_path / "none.sock"), "status"])
    assert code != 0


@pytest.mark.parametrize("argv", [["status", "--socket", "/nonexistent/clusdisk.sock"]])
def test_status_reaches_clusdisk(argv, capsys):
    assert admin.main(argv) != 0
