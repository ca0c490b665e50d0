#!/usr/bin/env bash
# Install what the tests need (Debian packages and a venv), then run them.
#
#   bash scripts/test.sh                 # everything under tests/
#   bash scripts/test.sh tests/unit -x   # arguments replace the default 'tests'
#
# Run as root on Debian 12. Idempotent. Environment:
#   SMBCA_VENV=DIR                  test venv (default /opt/smbca/test-venv)
#   SMBCA_SKIP_INSTALL=1            skip apt and pip, just run pytest
#   SMBCA_INTEROP_TARGET=smbd       point tests/interop at Samba's smbd (harness self-check)
#   SMBCA_TORTURE_KNOWNFAIL=FILE    smbtorture known failures (tests/interop/test_smbtorture.py)
#   SMBCA_TORTURE_GROUP_TIMEOUT_S, SMBCA_TORTURE_BUDGET_S   smbtorture wall-time bounds
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SMBCA_VENV:-/opt/smbca/test-venv}"
export DEBIAN_FRONTEND=noninteractive

apt_packages=(
    python3 python3-venv python3-samba
    smbclient samba samba-testsuite   # interop peers: smbclient, smbtorture, smbd
    samba-vfs-modules                 # acl_xattr, streams_xattr for the smbd peer
    iproute2 util-linux procps        # ip/ss, taskset, ps
    iptables                          # smbtorture's blocked channels, inside a netns (tests/interop/netns.py)
    systemd                           # systemd-analyze verify/security on systemd/*.service
    prometheus                        # promtool check rules; a real scrape in tests/unit/test_monitoring.py
)
# ---- tests/cluster (netns) and tests/lab (QEMU guest with shared LUNs, see tests/lab/README.md):
# the lab boots Debian's kernel from /boot (linux-image-amd64 also brings kmod) under
# qemu-system-x86 (TCG), with a static busybox /init; sg3-utils drive the LUNs in the guest,
# xfsprogs/e2fsprogs format the data LUN.  cpio is not needed by tests/lab (it writes its
# initramfs itself) but kept for looking into one: cpio -t < ~/.cache/smbca/lab/initrd-*.cpio
apt_packages+=(qemu-system-x86 linux-image-amd64 kmod busybox-static cpio sg3-utils xfsprogs e2fsprogs)
# ---- tests/ad (issue 12): a Samba AD DC in a network namespace (samba-ad-dc, and
# samba-ad-provision for samba-tool domain provision), adcli for `smbca domain join`,
# krb5-user for kinit/kvno, faketime for the clock-skew and expired-ticket tests;
# libkrb5-dev and gcc build python-gssapi and krb5 (no Linux wheels on PyPI).
apt_packages+=(samba-ad-dc samba-ad-provision adcli krb5-user faketime libkrb5-dev gcc)

log() { echo "test.sh: $*" >&2; }

missing_packages() {
    local pkg
    for pkg in "${apt_packages[@]}"; do
        dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
            || echo "$pkg"
    done
}

install_packages() {
    local missing=()
    mapfile -t missing < <(missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
        return
    fi
    log "installing: ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The samba package starts smbd/nmbd on 445/139 (and prometheus on 9090) on a systemd host;
# our tests run their own on free ports.
stop_system_samba() {
    local unit pidfile pid
    if [[ -d /run/systemd/system ]]; then
        for unit in smbd nmbd samba-ad-dc prometheus; do   # prometheus: tests run their own
            if systemctl list-unit-files "$unit.service" >/dev/null 2>&1; then
                systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
            fi
        done
    fi
    for pidfile in /run/samba/smbd.pid /run/samba/nmbd.pid /run/samba/samba.pid; do
        [[ -f "$pidfile" ]] || continue
        pid="$(head -n1 "$pidfile")"
        if [[ "$pid" =~ ^[0-9]+$ ]] && grep -qE '^(smbd|nmbd|samba)' "/proc/$pid/comm" 2>/dev/null; then
            log "stopping system $(basename "$pidfile" .pid) (pid $pid)"
            kill "$pid"
        fi
    done
}

setup_venv() {
    if ! "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        log "creating venv $venv"
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        /usr/bin/python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        -e "${repo}[test,bench]" pytest-timeout
}

if [[ "${SMBCA_SKIP_INSTALL:-0}" != 1 ]]; then
    if [[ $EUID -ne 0 ]]; then
        log "run as root (apt-get, smbd and network namespaces need it)"
        exit 1
    fi
    install_packages
    stop_system_samba
    setup_venv
fi

cd "$repo"
if [[ $# -eq 0 ]]; then
    set -- tests
fi
pytest_options=(
    -q -rfEs --durations=10
    -p no:cacheprovider                    # no .pytest_cache in the work tree
    -o tmp_path_retention_policy=failed    # keep temp dirs only of failed tests
    --timeout=1800                         # last resort; interop steps have their own bounds
)
status=0
"$venv/bin/python" -m pytest "${pytest_options[@]}" "$@" || status=$?
if [[ $status -eq 5 ]]; then
    log "pytest collected no tests: failing"
    exit 1
fi
exit "$status"
