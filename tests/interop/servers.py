"""Start SMB servers on loopback for the interop tests and the benchmark.

Two servers speak the same contract, so every interop test can run against
either one:

* ``start_smbcad`` runs this project's server in quick mode
  (``python -m smbcad --listen 127.0.0.1:PORT --share ... --user ...``).
* ``start_smbd`` runs Samba's ``smbd`` as a comparison peer with a private
  ``smb.conf`` whose state, lock, private, pid and log directories all live in
  the test's temporary directory.

``SMBCA_INTEROP_TARGET=smbd`` points the interop tests at ``smbd`` instead of
``smbcad``; that is how the harness itself is checked.

Each server runs in its own session (process group); ``stop()`` sends SIGTERM
to that group by its PID, waits, then SIGKILLs it. That catches smbd's
per-client children; ``samba-dcerpcd``, which smbd starts on demand in a
session of its own, is stopped through its pidfile in the private pid
directory.

smbd authenticates against a private passdb but still maps every user to a
local unix account, so ``start_smbd`` creates a system account (no home, no
shell) named like the test user if it is missing; it needs root, and the
account is left in place for later runs. File access goes through
``force user = root`` so that shares under pytest's 0700 temporary
directories are reachable, as they are for smbcad running as root.
"""

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_USER = "smbcatest"
TEST_PASSWORD = "Interop-Test-Pw1"
READY_LINE = "smbcad: listening on"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 35.0          # smbcad drains for up to 30 s on SIGTERM


class ServerStartError(RuntimeError):
    """A server exited or never became ready; the message carries its log tail."""


@dataclass(frozen=True)
class Share:
    name: str
    path: Path
    ca: bool = False
    encrypt: bool = False


@dataclass
class RunningServer:
    kind: str                  # "smbcad" or "smbd"
    host: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    shares: tuple[Share, ...]
    users: dict[str, str]
    helper_pid_dir: Path | None = None     # daemons the server spawned in their own session
    stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def share(self) -> Share:
        """The first share (most tests use one)."""
        return self.shares[0]

    @property
    def user(self) -> str:
        return next(iter(self.users))

    @property
    def password(self) -> str:
        return self.users[self.user]

    def unc(self, share: str | None = None) -> str:
        return f"//{self.host}/{share or self.share.name}"

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> int | None:
        """SIGTERM the server's process group, wait, then SIGKILL it."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        _signal_group(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.wait()
        # Children (smbd's per-client processes) may outlive the parent.
        _signal_group(self.proc, signal.SIGKILL)
        if self.helper_pid_dir is not None:
            _stop_helpers(self.helper_pid_dir)
        return self.proc.returncode


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _stop_helpers(pid_dir: Path) -> None:
    """Stop daemons that wrote a pidfile into ``pid_dir`` and still name it on their command line.

    smbd starts ``samba-dcerpcd`` on demand in a session of its own, so killing
    smbd's group misses it; its pidfile lies in our private pid directory.
    """
    marker = str(pid_dir.parent).encode()
    for pidfile in pid_dir.glob("*.pid"):
        try:
            pid = int(pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if marker not in cmdline:
            continue
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            if sig == signal.SIGTERM:
                _wait_gone(pid, 5.0)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":
            return
        time.sleep(0.05)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_ready(server: RunningServer, ready_line: str | None,
                accepting_is_ready: bool = True) -> None:
    """Return once the log shows ``ready_line`` or (``accepting_is_ready``)
    the port accepts; else stop and raise."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            server.stop()
            raise ServerStartError(
                f"{server.kind} did not start: exited with status {server.proc.returncode}; "
                f"log {server.log_path}:\n{server.log_tail()}")
        if ready_line is not None and ready_line in server.log_path.read_text(errors="replace"):
            return
        if accepting_is_ready and _accepts(server.host, server.port):
            return
        time.sleep(0.05)
    server.stop()
    raise ServerStartError(
        f"{server.kind} did not start: not ready on {server.host}:{server.port} after "
        f"{START_TIMEOUT_S:.0f} s; log {server.log_path}:\n{server.log_tail()}")


def _launch(argv: list[str], log_path: Path, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True)


def _default_shares(base: Path, shares) -> tuple[Share, ...]:
    if shares:
        return tuple(shares)
    path = base / "share"
    path.mkdir(parents=True, exist_ok=True)
    return (Share("share", path),)


def start_smbcad(tmp_path: Path, shares=None, users=None, extra_args=(),
                 signing: str = "required", encryption: str = "off",
                 host: str = "127.0.0.1", taskset: str | None = None,
                 module: str = "smbcad", also_listen=()) -> RunningServer:
    """Run ``python -m smbcad`` in quick mode on a free loopback port.

    ``shares`` is a sequence of ``Share`` (default: one share ``share`` in
    ``tmp_path/share``), ``users`` a ``{name: password}`` dict (default: the
    test user). ``module`` runs another entry point with smbcad's command line
    (a bench's variant). ``also_listen`` are more addresses on the same port
    (a multichannel client's second path). Returns once the server prints its
    listen line.
    """
    base = Path(tmp_path) / "smbcad"
    state_dir = base / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    shares = _default_shares(Path(tmp_path), shares)
    users = dict(users or {TEST_USER: TEST_PASSWORD})
    port = free_port(host)
    argv = [sys.executable, "-m", module, "--listen", f"{host}:{port}",
            "--state-dir", str(state_dir), "--signing", signing, "--encryption", encryption]
    for other in also_listen:
        argv += ["--listen", f"{other}:{port}"]
    for share in shares:
        flags = "".join(f",{flag}" for flag in ("ca", "encrypt") if getattr(share, flag))
        argv += ["--share", f"{share.name}={share.path}{flags}"]
    for name, password in users.items():
        argv += ["--user", f"{name}:{password}"]
    argv += list(extra_args)
    if taskset:
        argv = ["taskset", "-c", taskset, *argv]
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    log_path = base / "smbcad.log"
    proc = _launch(argv, log_path, env=env, cwd=REPO)
    server = RunningServer("smbcad", host, port, proc, log_path, shares, users)
    # With --workers the supervisor's socket accepts before the workers serve.
    _wait_ready(server, READY_LINE, accepting_is_ready="--workers" not in argv)
    return server


# --- Samba's smbd ---------------------------------------------------------------

_SMBD_SIGNING = {"required": "mandatory", "enabled": "default"}
_SMBD_ENCRYPTION = {"off": "if_required", "desired": "desired", "required": "required"}


def ensure_unix_user(name: str) -> None:
    """smbd maps every SMB user to a unix account: create a system one if missing."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        name], check=True)


def smbd_conf(base: Path, port: int, host: str, shares, signing: str, encryption: str,
              share_options=(), also_listen=()) -> str:
    dirs = {key: base / key for key in ("private", "lock", "state", "cache", "pid", "ncalrpc",
                                        "binddns", "log")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    lines = [
        "[global]",
        "workgroup = WORKGROUP",
        "netbios name = SMBDPEER",
        "server role = standalone server",
        f"smb ports = {port}",
        f"interfaces = {' '.join((host, *also_listen))}",
        "bind interfaces only = yes",
        "disable netbios = yes",
        "server min protocol = SMB2_02",
        f"server signing = {_SMBD_SIGNING[signing]}",
        f"server smb encrypt = {_SMBD_ENCRYPTION[encryption]}",
        f"private dir = {dirs['private']}",
        f"lock directory = {dirs['lock']}",
        f"state directory = {dirs['state']}",
        f"cache directory = {dirs['cache']}",
        f"pid directory = {dirs['pid']}",
        f"ncalrpc dir = {dirs['ncalrpc']}",
        f"binddns dir = {dirs['binddns']}",
        f"log file = {dirs['log']}/log.%m",
        f"passdb backend = tdbsam:{dirs['private']}/passdb.tdb",
        "map to guest = never",
        "load printers = no",
        "printing = bsd",
        "printcap name = /dev/null",
        "disable spoolss = yes",
        "obey pam restrictions = no",
        "unix password sync = no",
        "usershare max shares = 0",
        "",
    ]
    for share in shares:
        lines += [f"[{share.name}]", f"path = {share.path}", "read only = no",
                  "force user = root", "force group = root"]
        if share.encrypt:
            lines.append("server smb encrypt = required")
        lines += [*share_options, ""]
    return "\n".join(lines)


def start_smbd(tmp_path: Path, shares=None, users=None, signing: str = "required",
               encryption: str = "off", host: str = "127.0.0.1",
               taskset: str | None = None, share_options=(), also_listen=()) -> RunningServer:
    """Run Samba's smbd in the foreground on a free loopback port (needs root).

    ``share_options`` are extra smb.conf lines for every share section;
    ``also_listen`` more addresses on the same port.
    """
    base = Path(tmp_path) / "smbd"
    base.mkdir(parents=True, exist_ok=True)
    shares = _default_shares(Path(tmp_path), shares)
    users = dict(users or {TEST_USER: TEST_PASSWORD})
    port = free_port(host)
    conf = base / "smb.conf"
    conf.write_text(smbd_conf(base, port, host, shares, signing, encryption, share_options,
                              also_listen))
    for name, password in users.items():
        ensure_unix_user(name)
        subprocess.run(["smbpasswd", "-c", str(conf), "-a", "-s", name],
                       input=f"{password}\n{password}\n", text=True, check=True,
                       capture_output=True)
    argv = ["smbd", "-F", "--no-process-group", "--debug-stdout", "-d", "1", "-s", str(conf)]
    if taskset:
        argv = ["taskset", "-c", taskset, *argv]
    log_path = base / "smbd.log"
    proc = _launch(argv, log_path)
    server = RunningServer("smbd", host, port, proc, log_path, shares, users,
                           helper_pid_dir=base / "pid")
    _wait_ready(server, None)
    return server


def start_server(kind: str, tmp_path: Path, extra_args=(), share_options=(),
                 **kwargs) -> RunningServer:
    """``start_smbcad`` or ``start_smbd`` by name.

    ``extra_args`` (smbcad command-line flags) and ``share_options`` (smbd
    share lines) apply only to their own server and are dropped for the other.
    """
    if kind == "smbcad":
        return start_smbcad(tmp_path, extra_args=extra_args, **kwargs)
    if kind == "smbd":
        return start_smbd(tmp_path, share_options=share_options, **kwargs)
    raise ValueError(f"unknown server {kind!r} (smbcad or smbd)")
