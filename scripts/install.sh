#!/usr/bin/env bash
# Install smbcad and start it on an embedded default: one share (/srv/smbca/share),
# one user (smbca, random password), signing required, listening on 0.0.0.0:445.
#
#   bash scripts/install.sh              # as root on Debian 12; run again to upgrade and restart
#   bash scripts/install.sh --uninstall  # stop and remove the software; keep config, state, data
#   bash scripts/install.sh --uninstall --purge   # also remove config, state and logs
#   bash scripts/install.sh --with-domain # also what an Active Directory member needs
#
# --with-domain installs adcli (smbca domain join), MIT Kerberos (krb5-user: kinit, klist)
# and python-gssapi in the venv (Kerberos for smbcad and witnessd; built from source
# against libkrb5-dev with gcc, as PyPI has no Linux wheels). Later runs keep it without
# the flag. Then join: see the README's "Active Directory" section.
#
# The config /etc/smbca/smbcad.yaml is written only if it does not exist (0600: it holds
# the password, which is printed on that first run only). Every run checks the config
# (smbcad --check-config) with the software it just installed before it stops or restarts
# anything: a config that does not check out leaves the running server as it is. With
# systemd as PID 1 the server runs as smbcad.service; otherwise in the background with
# /run/smbcad.pid and /var/log/smbcad.log.
#
# For tests (never needed on a real install):
#   SMBCA_PREFIX=DIR        put every path (/etc, /opt, /srv, /var, /run, /usr/local/bin,
#                           /etc/systemd/system) under DIR
#   SMBCA_SYSTEMD=0|1       override the systemd detection
#   SMBCA_LISTEN=ADDR:PORT  the listen address of a newly written config
#   SMBCA_PIP_OPTIONS=...   extra pip options (e.g. --no-index --no-build-isolation --no-deps)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${SMBCA_PREFIX:-}"
prefix="${prefix%/}"
venv="$prefix/opt/smbca/venv"
etc="$prefix/etc/smbca"
conf="$etc/smbcad.yaml"
share="$prefix/srv/smbca/share"
state="$prefix/var/lib/smbca"
pidfile="$prefix/run/smbcad.pid"
logfile="$prefix/var/log/smbcad.log"
bindir="$prefix/usr/local/bin"
unitdir="$prefix/etc/systemd/system"
listen="${SMBCA_LISTEN:-0.0.0.0:445}"
commands=(smbca smbcad clusdisk witnessd)
units=(smbcad.service witnessd.service clusdisk.service smbca.target)
user=smbca
export DEBIAN_FRONTEND=noninteractive

log() { echo "install.sh: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

uninstall=0
purge=0
domain=0
domain_marker="$venv/smbca-with-domain"     # a later run keeps what --with-domain added
for arg in "$@"; do
    case "$arg" in
        --uninstall) uninstall=1 ;;
        --with-domain) domain=1 ;;
        --purge) purge=1 ;;
        -h|--help) usage ;;
        *) log "unknown argument: $arg"; usage ;;
    esac
done
[[ $purge -eq 0 || $uninstall -eq 1 ]] || die "--purge goes with --uninstall"
[[ $EUID -eq 0 ]] || die "run as root"
[[ -f "$domain_marker" ]] && domain=1

with_systemd() {
    case "${SMBCA_SYSTEMD:-auto}" in
        1) return 0 ;;
        0) return 1 ;;
        *) [[ -d /run/systemd/system ]] ;;
    esac
}

install_packages() {
    local pkg missing=() wanted=(python3 python3-venv)
    if [[ $domain -eq 1 ]]; then
        wanted+=(adcli krb5-user libkrb5-dev gcc python3-dev)
    fi
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
            || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]}"
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

install_venv() {
    if ! "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        log "creating $venv"
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        /usr/bin/python3 -m venv "$venv"
    fi
    local target="$repo"
    [[ $domain -eq 1 ]] && target="$repo[kerberos]"
    log "installing smbca from $target"
    # shellcheck disable=SC2086  # the options are words on purpose
    "$venv/bin/python" -m pip install -q --disable-pip-version-check ${SMBCA_PIP_OPTIONS:-} "$target"
    if [[ $domain -eq 1 ]]; then
        "$venv/bin/python" -c 'import gssapi' \
            || die "python-gssapi does not import in $venv: Kerberos would not work"
        touch "$domain_marker"
    fi
    # The admin's commands on PATH (smbca status, smbca sessions, clusdisk scan, ...).
    local command
    mkdir -p "$bindir"
    for command in "${commands[@]}"; do
        ln -sfn "$venv/bin/$command" "$bindir/$command"
    done
}

first_run=0
write_default_config() {
    install -d -m 0755 "$share" "$state"
    install -d -m 0700 "$etc"
    if [[ -f "$conf" ]]; then
        log "keeping existing $conf"
        return
    fi
    local password
    password="$("$venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))')"
    (
        umask 077
        cat >"$conf" <<EOF
# smbcad configuration, written by scripts/install.sh on $(date -u +%Y-%m-%d).
# Every key is described in config/ of the smbca repository. Check it with
# 'smbcad --config $conf --check-config'; reload with 'systemctl reload smbcad'
# (or kill -HUP \$(cat $pidfile)).
server:
  listen: ["$listen"]
  state_dir: $state
  control_socket: $prefix/run/smbca/smbcad.sock   # where 'smbca' asks
  signing: required
  # metrics_listen: "127.0.0.1:9445"
users:
  - name: $user
    password: "$password"
shares:
  - name: share
    path: $share
    comment: smbca default share
EOF
    )
    chmod 0600 "$conf"
    first_run=1
    log "wrote $conf with a new password for user '$user'"
}

# The PID of the background smbcad an earlier run started, if it still runs.
background_pid() {
    local pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(head -n1 "$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] && grep -qa smbcad "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

# Before anything is stopped: the config must check out with the software just installed.
check_config() {
    local running=""
    if "$venv/bin/smbcad" --config "$conf" --check-config >/dev/null; then
        log "$conf checks out"
        return
    fi
    if with_systemd && systemctl is-active --quiet smbcad.service 2>/dev/null; then
        running="smbcad.service keeps running with the config it was started with"
    elif pid="$(background_pid)"; then
        running="smbcad (pid $pid) keeps running with the config it was started with"
    else
        running="no smbcad was running"
    fi
    die "$conf does not check out (the error is above); nothing was stopped or restarted: $running. Fix it and run install.sh again."
}

# Stop a background smbcad started by an earlier run (only the PID in our pidfile).
stop_background() {
    local pid
    if pid="$(background_pid)"; then
        log "stopping smbcad (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 450); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "smbcad (pid $pid) did not drain in 45 s: killing it"
            kill -KILL "$pid"
        fi
    fi
    rm -f "$pidfile"
}

start_systemd() {
    stop_background
    mkdir -p "$unitdir"
    local unit
    for unit in "${units[@]}"; do
        install -m 0644 "$repo/systemd/$unit" "$unitdir/"
    done
    systemctl daemon-reload
    systemctl enable smbcad.service >/dev/null 2>&1
    # Type=notify: returns once smbcad has reported READY=1, or fails.
    if ! systemctl restart smbcad.service; then
        journalctl -u smbcad.service -n 30 --no-pager >&2 || true
        die "smbcad.service did not start"
    fi
}

start_background() {
    local offset pid
    stop_background
    mkdir -p "$(dirname "$logfile")" "$(dirname "$pidfile")"
    touch "$logfile"
    offset="$(stat -c %s "$logfile")"
    setsid nohup "$venv/bin/smbcad" --config "$conf" </dev/null >>"$logfile" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 300); do
        if tail -c +"$((offset + 1))" "$logfile" | grep -q 'smbcad: listening on'; then
            return
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -c +"$((offset + 1))" "$logfile" | tail -n 30 >&2
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$pidfile"
    die "smbcad did not start (log: $logfile)"
}

print_instructions() {
    local password host secret
    host="$(hostname -I 2>/dev/null | awk '{print $1}')"
    host="${host:-127.0.0.1}"
    if [[ $first_run -eq 1 ]]; then
        # The one time the password is shown: the config was just written.
        password="$("$venv/bin/python" - "$conf" "$user" <<'EOF'
import sys, yaml
with open(sys.argv[1]) as handle:
    config = yaml.safe_load(handle)
print(next((u.get("password") or "" for u in config.get("users") or []
            if u.get("name") == sys.argv[2]), ""))
EOF
)"
        secret="${password:-PASSWORD}"
    else
        secret="PASSWORD"
    fi
    cat <<EOF

smbcad is running: share 'share' ($share), user '$user'.
  Linux:    smbclient //$host/share -U '$user%$secret' -m SMB3
  Windows:  net use Z: \\\\$host\\share /user:$user $secret
EOF
    if [[ $first_run -eq 1 ]]; then
        echo "  Config:   $conf (root only; it holds the password, shown this once)"
    else
        echo "  Config:   $conf (root only): the password of '$user' is there (users[].password)"
    fi
    echo "  Health:   smbca status; smbca sessions | opens | shares"
    if [[ $domain -eq 1 ]]; then
        echo "  Domain:   smbca domain join --realm REALM --user ADMIN (README: Active Directory)"
    fi
    if with_systemd; then
        echo "  Service:  systemctl status|reload|restart smbcad; logs: journalctl -u smbcad"
    else
        echo "  Process:  pid $(cat "$pidfile") ($pidfile); log: $logfile; reload: kill -HUP \$(cat $pidfile)"
    fi
}

uninstall() {
    local unit command
    if with_systemd; then
        for unit in smbca.target smbcad.service witnessd.service clusdisk.service; do
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
        for unit in "${units[@]}"; do
            rm -f "$unitdir/$unit"
        done
        systemctl daemon-reload || true
    fi
    stop_background
    for command in "${commands[@]}"; do
        # only our own links
        if [[ -L "$bindir/$command" && "$(readlink "$bindir/$command")" == "$venv/bin/$command" ]]; then
            rm -f "$bindir/$command"
        fi
    done
    rm -rf "$venv"
    log "removed $venv, the commands in $bindir and the units"
    if [[ $purge -eq 1 ]]; then
        rm -rf "$etc" "$state"
        rm -f "$logfile"
        # Shared files are the users' data: the share directory goes only if it is empty.
        if rmdir "$share" 2>/dev/null; then
            log "removed $etc, $state, $logfile and the empty $share"
        else
            log "removed $etc, $state and $logfile; kept $share (it holds files)"
        fi
    else
        log "kept the config $etc, the state $state, the share $share and the log (--purge removes them)"
    fi
}

if [[ $uninstall -eq 1 ]]; then
    uninstall
    exit 0
fi
install_packages
install_venv
write_default_config
check_config
if with_systemd; then
    start_systemd
else
    start_background
fi
print_instructions
