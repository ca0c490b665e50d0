"""Boot the lab guest under QEMU, run one command in it, return its status.

One run is one throwaway guest.  The host side:

1. makes a job directory (a temp dir, exported to the guest over 9p as
   ``/run/lab``) holding ``job.env`` (settings for ``/init``),
   ``shares.list`` (more host directories to mount) and ``cmd.sh``
   (COMMAND with its environment);
2. starts ``qemu-system-x86_64`` (TCG by default, no network device, the
   host root read-only over 9p) with its serial console on a pipe;
3. reads the console: before ``@@SMBCA-LAB:<nonce>:START@@`` it is boot
   chatter (kept in ``boot.log``), then COMMAND's stdout and stderr until
   ``...:END:<status>@@``; ``...:FATAL@@`` means the guest setup failed;
4. kills QEMU at the deadline, or once COMMAND has printed nothing for
   ``silence_s`` (a stalled guest), and always on the way out (QEMU also
   dies with its parent: PR_SET_PDEATHSIG).

Statuses besides COMMAND's own: 124 timeout, 125 the lab failed (the
console tail is in ``RunResult.failure``), 126 the guest kernel locked up
(guest/init.sh's lockup watch: a CPU stuck in the kernel for two minutes;
the backtraces are in the output).
"""

import ctypes
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence

from labvm.image import Host, Image, ensure_image, find_host

TIMEOUT_STATUS = 124
LAB_FAILED_STATUS = 125
LOCKUP_STATUS = 126             # guest/init.sh's LOCKUP_STATUS


class LabGuestLockup(UserWarning):
    """The guest kernel locked up during a lab run (the run_in_guest fixture
    warns with it, then runs the command once more)."""
SILENT_STATUS = -124            # _pump's own: reported as TIMEOUT_STATUS
PASSED_ENV = ("HOME", "LANG", "LC_ALL", "PATH", "VIRTUAL_ENV", "PYTHONPATH", "CI")
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class LabOptions:
    """One guest's shape.  Sizes in MiB; LUN contents live in guest RAM."""

    luns: int = 2                 # LUN 0 "quorum", LUN 1 "data", LUN k>=2 "data<k>"
    quorum_mb: int = 64
    data_mb: int = 1024           # mkfs.xfs needs >= 300 MiB
    writable: tuple[str, ...] = ()  # host dirs mounted read-write at the same path
    timeout_s: float = 3600.0     # whole run, boot included
    silence_s: float = 0.0        # COMMAND silent this long: the guest is stuck (0: no bound)
    mem_mb: int = 2048
    smp: int = 2
    accel: str = "tcg"
    cpu: str = "max"
    env: tuple[tuple[str, str], ...] = ()   # extra environment for COMMAND
    cwd: str = str(REPO_ROOT)
    verbose: bool = False         # boot log and kernel messages to stderr
    keep_job: bool = False        # keep the job directory (boot.log, dmesg, map)

    def validate(self) -> None:
        if not 0 <= self.luns <= 32:
            raise ValueError("luns must be 0..32")
        if self.quorum_mb < 1 or self.data_mb < 1:
            raise ValueError("LUN sizes must be positive")
        if self.mem_mb < 256 or self.smp < 1:
            raise ValueError("mem_mb must be >= 256 and smp >= 1")
        if self.silence_s < 0:
            raise ValueError("silence_s must be >= 0 (0: no bound)")
        for path in self.writable:
            if not os.path.isdir(path):
                raise ValueError(f"writable {path}: not a directory")
            if any(c in path for c in "\t\n"):
                raise ValueError(f"writable {path!r}: tab or newline in the path")
        for name, _ in self.env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"bad environment variable name {name!r}")


@dataclass
class RunResult:
    """What one guest run did.  ``status`` is COMMAND's exit status, or 124-126."""

    status: int
    output: bytes = b""
    boot_s: float = 0.0           # QEMU start -> START marker
    command_s: float = 0.0        # START -> END marker
    total_s: float = 0.0
    image_build_s: float | None = None   # cache (re)build, None when cached
    guest_timings: dict[str, float] = field(default_factory=dict)   # phase -> guest uptime
    warnings: list[str] = field(default_factory=list)
    lun_table: str = ""
    failure: str = ""             # why the lab failed (status 124-126)
    job_dir: str | None = None    # kept job directory

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def describe(self, tail_lines: int = 200) -> str:
        lines = self.text.splitlines()
        shown = "\n".join(lines[-tail_lines:])
        cut = f"[... {len(lines) - tail_lines} earlier lines]\n" if len(lines) > tail_lines else ""
        return (f"lab run: status {self.status} (boot {self.boot_s:.1f} s, command "
                f"{self.command_s:.1f} s)\n{self.failure}{cut}{shown}")


def _pdeathsig() -> None:
    """In the QEMU child: die with the parent (PR_SET_PDEATHSIG = 1)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# Paths the guest replaces with fresh file systems: host files there are hidden
HIDDEN_IN_GUEST = ("/tmp", "/var/tmp", "/run", "/dev", "/proc", "/sys")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _shares(options: LabOptions) -> list[tuple[str, str, str]]:
    """9p shares besides the root: (tag, host path, rw|ro), parents first.
    The ``writable`` dirs are read-write; the checkout and COMMAND's
    directory, when they lie where the guest mounts a fresh tmpfs (a clone
    under /tmp), come in read-only at their host paths."""
    wanted = [(os.path.realpath(p), "rw") for p in options.writable]
    for path in (str(REPO_ROOT), os.path.realpath(options.cwd)):
        hidden = any(_under(path, prefix) for prefix in HIDDEN_IN_GUEST)
        if hidden and os.path.isdir(path) and not any(_under(path, p) for p, _ in wanted):
            wanted.append((path, "ro"))
    wanted.sort(key=lambda share: share[0].count("/"))
    return [(f"labshare{i}", path, mode) for i, (path, mode) in enumerate(wanted)]


class _Job:
    """The job directory of one run."""

    def __init__(self, options: LabOptions, command: Sequence[str], mode: str) -> None:
        self.nonce = os.urandom(8).hex()
        self.dir = Path(tempfile.mkdtemp(prefix="smbca-lab-"))
        self.dir.chmod(0o755)
        settings = {"LAB_NONCE": self.nonce, "LAB_MODE": mode, "LAB_LUNS": options.luns,
                    "LAB_QUORUM_MB": options.quorum_mb, "LAB_DATA_MB": options.data_mb,
                    "LAB_VERBOSE": int(options.verbose)}
        (self.dir / "job.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.shares = _shares(options)
        (self.dir / "shares.list").write_text(
            "".join(f"{tag}\t{path}\t{mode}\n" for tag, path, mode in self.shares))
        (self.dir / "cmd.sh").write_text(self._script(options, command, mode))

    @staticmethod
    def _script(options: LabOptions, command: Sequence[str], mode: str) -> str:
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        env.update({"LAB_GUEST": "1", "LAB_JOB_DIR": "/run/lab", "TERM": "dumb",
                    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
                    "XDG_CACHE_HOME": "/tmp/.cache"})
        if mode == "shell":
            env["TERM"] = os.environ.get("TERM", "vt100")
        env.update(options.env)
        lines = ["# generated by labvm: COMMAND's environment, then COMMAND"]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
        lines.append("[ -f /run/lab/luns.env ] && . /run/lab/luns.env")
        # host paths under /tmp, /run, /var/tmp are hidden in the guest unless shared
        lines.append(f"cd -- {shlex.quote(options.cwd)} || exit 125")
        lines.append("exec /bin/bash -i" if mode == "shell" else "exec " + shlex.join(command))
        return "\n".join(lines) + "\n"

    def close(self, keep: bool) -> str | None:
        if keep:
            return str(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        return None


def qemu_command(host: Host, image: Image, options: LabOptions, job: _Job, mode: str) -> list[str]:
    accel = options.accel
    if accel == "tcg" and options.smp > 1:
        accel = "tcg,thread=multi"
    append = ["console=ttyS0", "panic=-1", "rdinit=/init",
              "cryptomgr.notests=1"]          # crypto self-tests cost seconds under TCG
    if not options.verbose:
        append.append("quiet")
    args = [host.qemu, "-nodefaults", "-no-user-config", "-name", "smbca-lab",
            "-machine", "pc", "-accel", accel, "-cpu", options.cpu,
            "-smp", str(options.smp), "-m", str(options.mem_mb),
            "-display", "none", "-no-reboot", "-nic", "none",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", " ".join(append),
            "-device", "virtio-rng-pci",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={job.dir},mount_tag=labjob,security_model=none,multidevs=remap"]
    for tag, path, mode in job.shares:
        readonly = ",readonly=on" if mode == "ro" else ""
        args += ["-virtfs",
                 f"local,path={path},mount_tag={tag},security_model=none,multidevs=remap{readonly}"]
    if mode == "shell":
        args += ["-chardev", "stdio,id=con,mux=on,signal=off", "-serial", "chardev:con",
                 "-mon", "chardev=con,mode=readline"]
    else:
        args += ["-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"]
    return args


class _Console:
    """Splits the serial console stream at the run's markers."""

    def __init__(self, nonce: str, boot_log: BinaryIO, output: BinaryIO | None,
                 verbose_log: BinaryIO | None) -> None:
        mark = f"@@SMBCA-LAB:{nonce}:".encode()
        self.start = mark + b"START@@\n"
        self.fatal = mark + b"FATAL@@"
        self.end_prefix = mark + b"END:"
        self.end = re.compile(re.escape(self.end_prefix) + rb"(\d+)@@")
        self.state = "boot"                # boot -> run -> done
        self.status: int | None = None
        self.captured = bytearray()
        self.buf = b""
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.boot_log, self.output, self.verbose_log = boot_log, output, verbose_log

    def _boot(self, data: bytes) -> None:
        self.boot_log.write(data)
        if self.verbose_log is not None:
            self.verbose_log.write(data)
            self.verbose_log.flush()

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self.captured += data
        if self.output is not None:
            self.output.write(data)
            self.output.flush()

    @staticmethod
    def _partial(buf: bytes, marker: bytes) -> int:
        """Where a marker may begin at the end of ``buf`` (len(buf) if nowhere)."""
        found = buf.rfind(marker)
        if found >= 0:
            return found
        for k in range(min(len(buf), len(marker) - 1), 0, -1):
            if buf.endswith(marker[:k]):
                return len(buf) - k
        return len(buf)

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        while self.buf:
            if self.state == "boot":
                start, fatal = self.buf.find(self.start), self.buf.find(self.fatal)
                if fatal >= 0 and (start < 0 or fatal < start):
                    self._boot(self.buf)
                    self.buf, self.state = b"", "done"
                elif start >= 0:
                    self._boot(self.buf[:start])
                    self.buf = self.buf[start + len(self.start):]
                    self.state, self.started_at = "run", time.monotonic()
                else:
                    cut = self._partial(self.buf, self.start)
                    self._boot(self.buf[:cut])
                    self.buf = self.buf[cut:]
                    return
            elif self.state == "run":
                match = self.end.search(self.buf)
                if match:
                    self._emit(self.buf[:match.start()])
                    self.status = int(match.group(1))
                    self.ended_at = time.monotonic()
                    self.buf, self.state = self.buf[match.end():], "done"
                else:
                    cut = self._partial(self.buf, self.end_prefix)
                    self._emit(self.buf[:cut])
                    self.buf = self.buf[cut:]
                    return
            else:
                self._boot(self.buf)
                self.buf = b""

    def flush(self) -> None:
        if self.state == "run":
            self._emit(self.buf)
        else:
            self._boot(self.buf)
        self.buf = b""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _guest_timings(job_dir: Path) -> dict[str, float]:
    timings = {}
    for line in _read(job_dir / "timings").splitlines():
        phase, _, uptime = line.partition(" ")
        try:
            timings[phase] = float(uptime)
        except ValueError:
            pass
    return timings


def run(command: Sequence[str], options: LabOptions = LabOptions(), *,
        output: BinaryIO | None = None, host: Host | None = None,
        on_ready=None) -> RunResult:
    """Boot a guest, run ``command`` (argv) in it, return the result.

    ``output`` receives COMMAND's output as it arrives (it is also kept in
    ``RunResult.output``); ``on_ready(job_dir)`` is called once the guest is
    set up, right before COMMAND starts.  Raises ``LabUnavailable`` when the
    host cannot run the lab.
    """
    options.validate()
    if not command:
        raise ValueError("no command")
    host = host or find_host()
    image = ensure_image(host)
    job = _Job(options, command, "run")
    args = qemu_command(host, image, options, job, "run")
    result = RunResult(status=LAB_FAILED_STATUS, image_build_s=image.built_s)
    started = time.monotonic()
    deadline = started + options.timeout_s if options.timeout_s > 0 else None
    verbose = os.fdopen(os.dup(2), "wb") if options.verbose else None
    try:
        with open(job.dir / "boot.log", "wb") as boot_log, \
                open(job.dir / "qemu.stderr", "wb") as qemu_err:
            if verbose is not None:
                verbose.write(("lab: " + shlex.join(args) + "\n").encode())
            console = _Console(job.nonce, boot_log, output, verbose)
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=qemu_err, start_new_session=True,
                                    preexec_fn=_pdeathsig)
            try:
                result.status = _pump(proc, console, deadline, job, on_ready,
                                      options.silence_s)
            finally:
                _stop(proc)
                console.flush()
        ended = time.monotonic()
        result.output = bytes(console.captured)
        result.total_s = ended - started
        if console.started_at is not None:
            result.boot_s = console.started_at - started
            result.command_s = (console.ended_at or ended) - console.started_at
        result.guest_timings = _guest_timings(job.dir)
        result.warnings = _read(job.dir / "warnings").splitlines()
        result.lun_table = _read(job.dir / "luns.txt")
        if result.status == SILENT_STATUS:
            result.status = TIMEOUT_STATUS
            result.failure = (f"lab: timeout: COMMAND printed nothing for "
                              f"{options.silence_s:.0f} s, guest killed after "
                              f"{result.total_s:.0f} s\n")
        elif result.status == TIMEOUT_STATUS and console.status is None:
            result.failure = f"lab: timeout: guest killed after {options.timeout_s:.0f} s\n"
        elif console.status is None:
            result.failure = _failure_report(job.dir, console.state, proc.returncode)
        elif console.status == LOCKUP_STATUS:
            result.failure = ("lab: the guest kernel locked up (a soft lockup); the run was "
                              "ended; backtraces in the output's lab-guest: lines\n")
    finally:
        if verbose is not None:
            verbose.close()
        result.job_dir = job.close(options.keep_job)
    return result


def _pump(proc: subprocess.Popen, console: _Console, deadline: float | None, job: _Job,
          on_ready, silence_s: float = 0.0) -> int:
    """Feed the console until QEMU exits; the command's status or 124/125
    (``SILENT_STATUS`` when COMMAND printed nothing for ``silence_s``: a
    guest that stalls as a whole is ended in minutes, not at ``deadline``)."""
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    power_off_s = 30.0                            # END seen: QEMU should exit promptly
    heard = time.monotonic()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            wait = 1.0
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return console.status if console.status is not None else TIMEOUT_STATUS
            if silence_s > 0 and console.state == "run" \
                    and time.monotonic() - max(heard, console.started_at) > silence_s:
                return SILENT_STATUS
            if not selector.select(min(wait, 1.0)):
                continue
            heard = time.monotonic()
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            was = console.state
            console.feed(chunk)
            if was == "boot" and console.state == "run" and on_ready is not None:
                on_ready(job.dir)
            if was != "done" and console.state == "done":
                off = time.monotonic() + power_off_s
                deadline = off if deadline is None else min(deadline, off)
    proc.wait()
    if console.status is not None:
        return console.status
    rc_file = _read(job.dir / "rc").strip()       # END marker lost, the guest still said
    return int(rc_file) if rc_file.isdigit() else LAB_FAILED_STATUS


def _failure_report(job_dir: Path, state: str, qemu_status: int | None) -> str:
    lines = [f"lab: the guest reported no exit status (stage {state}, qemu exit {qemu_status})"]
    fatal = _read(job_dir / "fatal").strip()
    if fatal:
        lines.append(f"lab: guest setup failed: {fatal}")
    lines += ["lab: console| " + line for line in _read(job_dir / "boot.log").splitlines()[-40:]]
    lines += ["lab: qemu| " + line for line in _read(job_dir / "qemu.stderr").splitlines()[-20:]]
    return "\n".join(lines) + "\n"


def shell(options: LabOptions = LabOptions(), host: Host | None = None) -> int:
    """An interactive bash in the guest on this terminal; its exit status."""
    options.validate()
    host = host or find_host()
    image = ensure_image(host)
    job = _Job(options, (), "shell")
    try:
        subprocess.run(qemu_command(host, image, options, job, "shell"), check=False,
                       preexec_fn=_pdeathsig)
        rc = _read(job.dir / "rc").strip()
        return int(rc) if rc.isdigit() else LAB_FAILED_STATUS
    finally:
        job.close(options.keep_job)
