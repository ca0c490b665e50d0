"""The server under test in the AD tier: smbcad in the DC fixture's member
namespace, and the ``smbca`` command run there (tests/ad/conftest.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import samba_dc
from samba_dc import SambaDc

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "smbcad: listening on"
START_TIMEOUT_S = 30.0
LOCAL_USER, LOCAL_PASSWORD = "localuser", "Local-Pass1"


def smbca_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "smbca.admin", *args]


def python_env(dc: SambaDc) -> dict:
    return dc.env(PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), PYTHONUNBUFFERED="1")


def member_yaml(address: str, port: int, share: Path, base: Path, keytab: Path,
                share_options: str = "") -> str:
    """The quick-mode flags of ``MemberSmbcad`` as a config file, the domain
    (``server.domain``) being the DC's NetBIOS name, as on a domain member."""
    return f"""server:
  listen: ["{address}:{port}"]
  server_name: {samba_dc.SERVER_NAMES[0]}
  domain: {samba_dc.DOMAIN}
  keytab: {keytab}
  state_dir: {base / "state"}
  control_socket: {base / "control.sock"}
  log_level: debug
shares:
  - {{name: share, path: {share}{share_options}}}
users:
  - {{name: {LOCAL_USER}, password: {LOCAL_PASSWORD}}}
"""


class MemberSmbcad:
    """smbcad in the member namespace on 192.0.2.80 (port 445 unless a test
    runs a second one) with the join's keytab
    and one local NTLM user; stopped by PID (its process group)."""

    def __init__(self, dc: SambaDc, base: Path, keytab: Path, extra_env: dict | None = None,
                 wrapper: tuple[str, ...] = (), port: int = 445,
                 address: str = samba_dc.MEMBER_ADDRESS, config_extra: str | None = None,
                 share: Path | None = None, share_options: str = "") -> None:
        self.port = port
        self.share = share or base / "share"
        self.share.mkdir(parents=True, exist_ok=True)
        self.log_path = base / "smbcad.log"
        argv = [*wrapper, sys.executable, "-m", "smbcad",
                "--listen", f"{address}:{port}", "--share", f"share={self.share}",
                "--state-dir", str(base / "state"), "--keytab", str(keytab),
                "--server-name", samba_dc.SERVER_NAMES[0],
                "--user", f"{LOCAL_USER}:{LOCAL_PASSWORD}", "--log-level", "debug"]
        if config_extra is not None:
            # The same server from a YAML file, with ``config_extra`` (YAML
            # text: more top-level sections) appended.
            self.config_path = base / "smbcad.yaml"
            self.config_path.write_text(member_yaml(address, port, self.share, base, keytab,
                                                    share_options) + config_extra)
            argv = [*wrapper, sys.executable, "-m", "smbcad", "--config", str(self.config_path)]
        env = python_env(dc)
        env.update(extra_env or {})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(dc.member_argv(argv), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY_LINE not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"smbcad did not start:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(20)
