"""scripts/install.sh as an admin runs it (issue 15 item 7), under a private
prefix (``SMBCA_PREFIX``) so that nothing outside the test's directory changes,
without systemd (the background mode) and on a loopback port:

* the first run writes the config and prints the password, once;
* a second run (the upgrade, ``--with-domain``) checks the config, restarts
  the server and prints no secret, only where it is, and how to join a
  domain; later runs keep the domain extra;
* a run with a broken config (a mistyped key) fails before it stops
  anything: the old server, same PID, still accepts connections;
* ``--uninstall`` stops the server and removes the software but keeps the
  config, the state and the share; ``--purge`` also removes config and state.

The venv is made beforehand from the test venv's interpreter, with the test
venv's packages on its path (a ``.pth`` file), and pip installs the checkout
copy without an index, so the test needs no network.  The server is stopped
by its PID (the pidfile install.sh keeps) at teardown.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import yaml

from servers import REPO, free_port

PIP_OPTIONS = "--no-index --no-build-isolation --no-deps"
WHEEL = Path("/usr/lib/python3/dist-packages/wheel")       # Debian's python3-wheel
SOURCES = ("pyproject.toml", "README.md", "smbca", "smbcad", "witnessd", "clusdisk", "config",
           "systemd", "scripts")


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


class Install:
    def __init__(self, tmp_path: Path) -> None:
        self.src = tmp_path / "src"
        self.src.mkdir()
        for name in SOURCES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, self.src / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(source, self.src / name)
        self.prefix = tmp_path / "root"
        self.port = free_port()
        venv = self.prefix / "opt" / "smbca" / "venv"
        subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=120)
        site = next(venv.glob("lib/python3*/site-packages"))
        # pip builds the checkout with setuptools and wheel, without an index.
        wheel_only = tmp_path / "wheel-only"
        wheel_only.mkdir()
        for part in WHEEL.parent.glob("wheel*"):        # the package and its metadata
            (wheel_only / part.name).symlink_to(part)
        (site / "test-venv.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n{wheel_only}\n")
        self.env = dict(os.environ, SMBCA_PREFIX=str(self.prefix), SMBCA_SYSTEMD="0",
                        SMBCA_LISTEN=f"127.0.0.1:{self.port}", SMBCA_PIP_OPTIONS=PIP_OPTIONS)
        self.env.pop("PYTHONPATH", None)

    @property
    def conf(self) -> Path:
        return self.prefix / "etc" / "smbca" / "smbcad.yaml"

    @property
    def pidfile(self) -> Path:
        return self.prefix / "run" / "smbcad.pid"

    def pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.src / "scripts" / "install.sh"), *args],
                              env=self.env, capture_output=True, text=True, timeout=300)

    def stop(self) -> None:
        try:
            pid = self.pid()
        except (OSError, ValueError):
            return
        if alive(pid) and b"smbcad" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def install(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("install.sh runs as root")
    if not WHEEL.is_dir():
        pytest.skip("python3-wheel is not installed (pip builds the checkout offline with it)")
    installed = Install(tmp_path)
    yield installed
    installed.stop()


def test_install_upgrade_keeps_the_server_on_a_bad_config_and_uninstalls(install):
    first = install.run()
    assert first.returncode == 0, first.stdout + first.stderr
    password = yaml.safe_load(install.conf.read_text())["users"][0]["password"]
    assert password in first.stdout and "shown this once" in first.stdout
    assert oct(install.conf.stat().st_mode & 0o777) == "0o600"
    old_pid = install.pid()
    assert alive(old_pid) and accepts(install.port)
    assert (install.prefix / "usr/local/bin/smbca").resolve() == \
        install.prefix / "opt/smbca/venv/bin/smbca"

    upgrade = install.run("--with-domain")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert "smbca domain join --realm" in upgrade.stdout
    assert "[kerberos]" in upgrade.stderr                # the extra: python-gssapi
    assert password not in upgrade.stdout + upgrade.stderr
    assert f"the password of 'smbca' is there" in upgrade.stdout
    assert "checks out" in upgrade.stderr
    running_pid = install.pid()
    assert running_pid != old_pid and alive(running_pid) and accepts(install.port)

    install.conf.write_text(install.conf.read_text().replace("shares:", "sahres:"))
    broken = install.run()
    assert broken.returncode != 0
    assert "[kerberos]" in broken.stderr                 # kept without the flag
    assert "sahres: unknown key (did you mean shares?)" in broken.stderr
    assert (f"nothing was stopped or restarted: smbcad (pid {running_pid}) keeps running"
            in broken.stderr)
    assert install.pid() == running_pid and alive(running_pid) and accepts(install.port)

    (install.prefix / "srv/smbca/share/kept.txt").write_text("user data")
    removed = install.run("--uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not alive(running_pid) and not accepts(install.port)
    assert not (install.prefix / "opt/smbca/venv").exists()
    assert not (install.prefix / "usr/local/bin/smbca").exists()
    assert install.conf.exists() and (install.prefix / "var/lib/smbca/server_guid").exists()

    purged = install.run("--uninstall", "--purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not install.conf.exists() and not (install.prefix / "var/lib/smbca").exists()
    assert (install.prefix / "srv/smbca/share/kept.txt").read_text() == "user data"
