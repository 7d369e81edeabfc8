#!/usr/bin/env bash
# Install everything iscsi-helper's demo and tests need on a fresh Debian machine:
# the real target (tgt) and initiator (libiscsi) from Debian, and the package with
# its test extras from PyPI. Idempotent: installed packages are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(tgt libiscsi-bin qemu-utils qemu-block-extra redis-server)
missing=()
for pkg in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

# Real Cinder for tests/ecosystem/cinder, in its own venv (about 45 s the first time).
bash scripts/cinder-venv.sh >/dev/null
