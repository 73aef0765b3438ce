#!/bin/sh
# Installs the Debian packages the build and the tests need, when run as root.
# As another user it only lists what is missing and how to install it.
set -eu

PACKAGES="build-essential pkg-config libssl-dev libacl1-dev libpam0g-dev libfuse3-dev fuse3 zstd qrencode"

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found - install a Rust toolchain (rustup) first" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    echo "installing missing build packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
else
    echo "error: missing build packages:$missing" >&2
    echo "install them as root with:" >&2
    echo "    apt-get install$missing" >&2
    exit 1
fi
