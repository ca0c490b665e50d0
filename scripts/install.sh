#!/usr/bin/env bash
# Install smbcad and start it on an embedded default: one share (/srv/smbca/share),
# one user (smbca, random password), signing required, listening on 0.0.0.0:445.
#
#   bash scripts/install.sh        # as root on Debian 12; run again to upgrade and restart
#
# The config /etc/smbca/smbcad.yaml is written only if it does not exist (0600: it holds
# the password). With systemd as PID 1 the server runs as smbcad.service; otherwise it
# runs in the background with /run/smbcad.pid and /var/log/smbcad.log.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv=/opt/smbca/venv
etc=/etc/smbca
conf="$etc/smbcad.yaml"
share=/srv/smbca/share
state=/var/lib/smbca
pidfile=/run/smbcad.pid
logfile=/var/log/smbcad.log
user=smbca
export DEBIAN_FRONTEND=noninteractive

log() { echo "install.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root"

install_packages() {
    local pkg missing=()
    for pkg in python3 python3-venv; do
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
    log "installing smbca from $repo"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$repo"
    # The admin's commands on PATH (smbca failover show, clusdisk scan, ...).
    local command
    for command in smbca smbcad clusdisk witnessd; do
        ln -sfn "$venv/bin/$command" "/usr/local/bin/$command"
    done
}

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
# Every key is described in config/ of the smbca repository. Reload with
# 'systemctl reload smbcad' (or kill -HUP \$(cat $pidfile)).
server:
  listen: ["0.0.0.0:445"]
  state_dir: $state
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
    log "wrote $conf with a new password for user '$user'"
}

# Stop a background smbcad started by an earlier run (only the PID in our pidfile).
stop_background() {
    local pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(head -n1 "$pidfile")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && grep -qa smbcad "/proc/$pid/cmdline" 2>/dev/null; then
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
    install -m 0644 "$repo"/systemd/{smbcad,witnessd,clusdisk}.service "$repo"/systemd/smbca.target \
        /etc/systemd/system/
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
    touch "$logfile"
    offset="$(stat -c %s "$logfile")"
    setsid nohup "$venv/bin/smbcad" --config "$conf" </dev/null >>"$logfile" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 300); do
        if tail -c +"$((offset + 1))" "$logfile" | grep -q '^smbcad: listening on'; then
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
    local password host
    password="$("$venv/bin/python" - "$conf" "$user" <<'EOF'
import sys, yaml
with open(sys.argv[1]) as handle:
    config = yaml.safe_load(handle)
print(next((u.get("password") or "" for u in config.get("users") or []
            if u.get("name") == sys.argv[2]), ""))
EOF
)"
    host="$(hostname -I 2>/dev/null | awk '{print $1}')"
    host="${host:-127.0.0.1}"
    cat <<EOF

smbcad is running: share 'share' ($share), user '$user'.
  Linux:    smbclient //$host/share -U '$user%${password:-PASSWORD}' -m SMB3
  Windows:  net use Z: \\\\$host\\share /user:$user ${password:-PASSWORD}
  Config:   $conf (root only; it holds the password)
EOF
    if [[ -d /run/systemd/system ]]; then
        echo "  Service:  systemctl status|reload|restart smbcad; logs: journalctl -u smbcad"
    else
        echo "  Process:  pid $(cat "$pidfile") ($pidfile); log: $logfile; reload: kill -HUP \$(cat $pidfile)"
    fi
}

install_packages
install_venv
write_default_config
if [[ -d /run/systemd/system ]]; then
    start_systemd
else
    start_background
fi
print_instructions
