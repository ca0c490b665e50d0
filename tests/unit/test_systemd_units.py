"""The systemd units in systemd/ (issue 15 item 4): they parse
(``systemd-analyze verify``), their sandbox stays within an exposure budget
per unit (``systemd-analyze security --offline``), and they agree with what
the daemons and scripts/install.sh do (binaries, exit status 2, sockets).

systemd-analyze comes with Debian 12's systemd package (scripts/test.sh
installs it); without it the checks that run it skip, saying so (under
CI=true they fail instead, like every missing prerequisite: tests/conftest.py).
"""

import configparser
import os
import re
import subprocess
from pathlib import Path

import pytest

from smbca import control

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
DAEMONS = ("smbcad", "witnessd", "clusdisk")
INSTALLED_BIN = "/opt/smbca/venv/bin/"      # scripts/install.sh: venv=/opt/smbca/venv

# systemd-analyze security's overall exposure (0 safe .. 10 unsafe), at most.
# Measured 9.6 for each before issue 15; the unit files say what stays open.
EXPOSURE_BUDGET = {"witnessd": 2.0, "smbcad": 3.0, "clusdisk": 5.0}


# Checks that run the tool skip without it, saying so (tests/conftest.py; under
# CI=true they fail instead).
needs_systemd_analyze = pytest.mark.interop("systemd-analyze")


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


@pytest.fixture
def runnable_units(tmp_path) -> Path:
    """The units with ExecStart pointing at executables that exist here
    (verify checks that the command exists; this host has no install)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for daemon in DAEMONS:
        exe = bin_dir / daemon
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    out = tmp_path / "units"
    out.mkdir()
    for unit in UNITS.iterdir():
        text = unit.read_text().replace(INSTALLED_BIN, f"{bin_dir}/")
        (out / unit.name).write_text(text)
    return out


@needs_systemd_analyze
def test_units_verify_cleanly(runnable_units):
    tool = "systemd-analyze"
    units = sorted(str(p) for p in runnable_units.iterdir())
    result = subprocess.run([tool, "verify", *units], capture_output=True, text=True,
                            timeout=120, check=False)
    # verify exits 0 on unknown keys and bad values too; any word from it is a finding.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("daemon", DAEMONS)
def test_exposure_within_budget(daemon):
    tool = "systemd-analyze"
    result = subprocess.run([tool, "security", "--offline=true", "--no-pager",
                             str(UNITS / f"{daemon}.service")],
                            capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= EXPOSURE_BUDGET[daemon], result.stdout


@pytest.mark.parametrize("daemon", DAEMONS)
def test_unit_runs_what_install_sh_installs(daemon):
    service = _unit(f"{daemon}.service")["Service"]
    exec_start = service["ExecStart"].split()
    assert exec_start[:3] == [f"{INSTALLED_BIN}{daemon}", "--config", f"/etc/smbca/{daemon}.yaml"]
    install_sh = (ROOT / "scripts" / "install.sh").read_text()
    assert 'venv="$prefix/opt/smbca/venv"' in install_sh
    assert re.search(rf"^commands=\(.*\b{daemon}\b.*\)$", install_sh, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf'^{daemon} = "{daemon}\.cli:main"$', pyproject, re.M)


@pytest.mark.parametrize("daemon", DAEMONS)
def test_unit_notify_watchdog_and_no_restart_loop(daemon):
    service = _unit(f"{daemon}.service")["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0
    assert service["RestartPreventExitStatus"] == "2"      # ConfigError exits 2
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert "SystemCallFilter" in service and "CapabilityBoundingSet" in service


@pytest.mark.parametrize("daemon", DAEMONS)
def test_reload_checks_the_new_config_before_signalling(daemon):
    """`systemctl reload` runs --check-config on the unit's own config first
    (a failing ExecReload line stops the ones after it), then SIGHUP."""
    lines = [line.split("=", 1)[1] for line in
             (UNITS / f"{daemon}.service").read_text().splitlines()
             if line.startswith("ExecReload=")]
    assert lines == [f"{INSTALLED_BIN}{daemon} --check-config --config /etc/smbca/{daemon}.yaml",
                     "/bin/kill -HUP $MAINPID"]


def test_runtime_directory_holds_every_default_socket():
    """/run/smbca is each unit's RuntimeDirectory, kept while any of them runs
    (RuntimeDirectoryPreserve), and every daemon's default socket is in it."""
    for daemon in DAEMONS:
        service = _unit(f"{daemon}.service")["Service"]
        assert service["RuntimeDirectory"] == "smbca"
        assert service["RuntimeDirectoryPreserve"] == "yes"
    for path in (control.SMBCAD_SOCKET, control.WITNESSD_SOCKET, control.CLUSDISK_SOCKET):
        assert os.path.dirname(path) == "/run/smbca"
