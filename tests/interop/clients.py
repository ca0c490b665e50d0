"""Run Samba's command-line clients against a ``RunningServer``.

The clients read ``-s /dev/null`` instead of /etc/samba/smb.conf, so the
host's Samba configuration never changes what a test sees. A dialect pins both
``client min protocol`` and ``client max protocol``: the connection either
uses exactly that dialect or fails.
"""

import subprocess

DIALECTS = ("SMB2_02", "SMB2_10", "SMB3_00", "SMB3_02", "SMB3_11")
SIGNING_REQUIRED = ("--option=client signing=required", "--option=client ipc signing=required")
ENCRYPTION_REQUIRED = ("--option=client smb encrypt=required",)


def smbclient_argv(server, commands: str | None = None, dialect: str = "SMB3_11",
                   options=(), share: str | None = None, password: str | None = None,
                   list_shares: bool = False) -> list[str]:
    target = ["-L", server.host] if list_shares else [server.unc(share)]
    argv = ["smbclient", "-s", "/dev/null", *target, "-p", str(server.port),
            "-U", f"{server.user}%{server.password if password is None else password}",
            "-m", dialect, f"--option=client min protocol={dialect}", *options]
    if commands is not None:
        argv += ["-c", commands]
    return argv


def run_smbclient(server, commands: str | None = None, timeout: float = 120,
                  **kwargs) -> subprocess.CompletedProcess:
    """Run smbclient; on timeout subprocess.run kills it by PID and raises."""
    return subprocess.run(smbclient_argv(server, commands, **kwargs), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def check_smbclient(server, commands: str | None = None, **kwargs) -> str:
    """Run smbclient and return its output; fail on a non-zero exit or any NT_STATUS error.

    smbclient's exit status reflects only the last ``-c`` command, so the
    output is searched for errors as well.
    """
    import pytest

    result = run_smbclient(server, commands, **kwargs)
    output = result.stdout + result.stderr
    if result.returncode != 0 or "NT_STATUS_" in output:
        pytest.fail(f"smbclient {commands!r} (dialect {kwargs.get('dialect', 'SMB3_11')}, "
                    f"share {kwargs.get('share') or server.share.name}) exited "
                    f"{result.returncode}:\n{output.rstrip()}\n"
                    f"--- {server.kind} log tail ---\n{server.log_tail(20)}", pytrace=False)
    return output
