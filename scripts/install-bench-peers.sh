#!/bin/sh
# Installs the peer backup tools that `make bench-peers` compares against, when missing:
# restic and borgbackup from Debian (only as root), rustic from crates.io into a cache dir.
# Prints the directory to add to PATH for rustic on its last line.
set -eu

RUSTIC_VERSION=0.11.4 # needs rustc >= 1.91
TOOLS_DIR=${BENCH_TOOLS_DIR:-${CARGO_TARGET_DIR:-target}/bench/tools}
mkdir -p "$TOOLS_DIR"
TOOLS_DIR=$(cd "$TOOLS_DIR" && pwd)

missing=""
command -v restic >/dev/null 2>&1 || missing="$missing restic"
command -v borg >/dev/null 2>&1 || missing="$missing borgbackup"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing$missing from Debian" >&2
        export DEBIAN_FRONTEND=noninteractive
        # shellcheck disable=SC2086 # word splitting of the package list is wanted
        if ! nice -n 10 apt-get install -y --no-install-recommends $missing >&2; then
            nice -n 10 apt-get update >&2
            nice -n 10 apt-get install -y --no-install-recommends $missing >&2
        fi
    else
        echo "warning:$missing missing and not root: those peers are skipped" >&2
    fi
fi

if ! command -v rustic >/dev/null 2>&1 && ! [ -x "$TOOLS_DIR/bin/rustic" ]; then
    echo "installing rustic-rs $RUSTIC_VERSION into $TOOLS_DIR" >&2
    # Only the backup engine is measured: the terminal UI, WebDAV and telemetry are left out
    # to keep the build short.
    CARGO_TARGET_DIR="$TOOLS_DIR/build" nice -n 10 "${CARGO:-cargo}" install rustic-rs \
        --version "$RUSTIC_VERSION" --locked --no-default-features --root "$TOOLS_DIR" >&2 ||
        echo "warning: rustic could not be built: that peer is skipped" >&2
fi
echo "$TOOLS_DIR/bin"
