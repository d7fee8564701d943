#!/bin/sh
# Install what the lab needs when it is missing: Debian packages (as root) and the venv.
# Safe to run again: it does nothing when everything is in place.
set -eu
cd "$(dirname "$0")/.."

# qemu-system-x86 + qemu-utils: the VM engine; debootstrap + e2fsprogs: building the VM disk
# and node image; docker.io: a local engine where the kernel has PPP; tshark: the decoder oracle;
# chromium: rendering the HTML report in a test.
PKGS="qemu-system-x86 qemu-utils debootstrap e2fsprogs docker.io tshark chromium python3-venv"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "error: missing Debian packages:$missing. Run: sudo apt-get install -y --no-install-recommends$missing" >&2
        exit 1
    fi
    echo "setup: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || { echo "error: apt-get update failed" >&2; exit 1; }
    apt-get install -y -q --no-install-recommends $missing >/tmp/pptp-lab-apt.log 2>&1 \
        || { echo "error: apt-get install$missing failed: see /tmp/pptp-lab-apt.log" >&2; exit 1; }
fi

# The venv is rebuilt only when pyproject.toml changes.
stamp=.venv/.pyproject-$(sha256sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
    echo "setup: creating the Python venv (.venv)"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' >/tmp/pptp-lab-pip.log 2>&1 \
        || { echo "error: pip install failed: see /tmp/pptp-lab-pip.log" >&2; exit 1; }
    rm -f .venv/.pyproject-*
    touch "$stamp"
fi
