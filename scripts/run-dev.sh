#!/bin/bash
# Runs both daemons in the foreground on a local instance under ./run (created on first use):
# datastore `store1`, user `admin@pbs` (password in run/admin-password) with the Admin role.
# Ctrl-C stops both. Overridable: PBS_API_LISTEN (127.0.0.1:8082), PBS_PROXY_LISTEN
# (127.0.0.1:8007), PBS_RUN_DIR (./run), CARGO, CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
base=$(realpath -m "${PBS_RUN_DIR:-$repo/run}")
api_listen=${PBS_API_LISTEN:-127.0.0.1:8082}
proxy_listen=${PBS_PROXY_LISTEN:-127.0.0.1:8007}
cargo=${CARGO:-cargo}
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
bin="$target_dir/release"

"$cargo" build --release -p proxmox-backup -p proxmox-backup-client \
    --bin proxmox-backup-api --bin proxmox-backup-proxy --bin proxmox-backup-manager \
    --bin proxmox-backup-client --example dev-setup

mkdir -p "$base"
export PBS_BASE_DIR="$base"
export PBS_API_LISTEN="$api_listen"
export PBS_PROXY_LISTEN="$proxy_listen"

setup=$("$bin/examples/dev-setup" "$base/datastores/store1" "$base/admin-password")
fingerprint=$(sed -n 's/^fingerprint //p' <<<"$setup")

if [ "$(id -u)" -eq 0 ]; then
    # The proxy runs as `backup` and writes backups into the datastore.
    chown -R backup:backup "$base/datastores"
    if ! su -s /bin/sh backup -c "test -x '$base'" 2>/dev/null; then
        echo "warning: user backup cannot reach $base - the proxy will fail" >&2
    fi
fi

pids=()
stop_all() {
    trap - INT TERM EXIT
    # Reloaded daemons change their PID: the PID files name the current processes.
    for pid in "${pids[@]}" \
        $(cat "$base/run/proxmox-backup/proxy.pid" "$base/run/proxmox-backup/api.pid" 2>/dev/null); do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait || true
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

"$bin/proxmox-backup-api" &
pids+=($!)
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/${api_listen%:*}/${api_listen##*:}") 2>/dev/null; then break; fi
    if ! kill -0 "${pids[0]}" 2>/dev/null; then echo "API daemon failed to start" >&2; exit 1; fi
    sleep 0.1
done
"$bin/proxmox-backup-proxy" &
pids+=($!)

proxy_port=${proxy_listen##*:}
host=localhost
[ "$proxy_port" = 8007 ] || host="localhost:$proxy_port"
cat <<INFO

  repository:  admin@pbs@$host:store1
  password:    $(cat "$base/admin-password")   (saved in $base/admin-password)
  fingerprint: $fingerprint
  web/API:     https://$host/   (API daemon on http://$api_listen)

  back up /etc (in another shell):
    PBS_REPOSITORY=admin@pbs@$host:store1 PBS_FINGERPRINT=$fingerprint \\
    PBS_PASSWORD_FILE=$base/admin-password $bin/proxmox-backup-client backup etc.pxar:/etc
  Ctrl-C stops both daemons; running again reuses $base.

INFO

# Stop everything as soon as one daemon ends (or on Ctrl-C).
while kill -0 "${pids[0]}" 2>/dev/null && kill -0 "${pids[1]}" 2>/dev/null; do
    sleep 0.5
done
echo "a daemon exited - stopping" >&2
