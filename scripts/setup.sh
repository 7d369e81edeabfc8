#!/usr/bin/env bash
# Install everything iscsi-helper's demo and tests need on a fresh Debian machine.
#
# Debian's packages (the real target tgt, the libiscsi initiator, qemu, redis) come
# from apt-get; the package and its test extras go into this checkout's own virtual
# environment, .venv, never into the system Python: Debian 12's python3 refuses pip
# there (PEP 668, "externally managed"), and a machine-wide install would belong to
# whichever clone ran this last. So after it, run things with .venv/bin/python3
# (the README's commands do). The Cinder venv is scripts/cinder-venv.sh's.
#
# Idempotent: installed Debian packages are not fetched again, a working .venv is
# reused (a broken one, e.g. whose Python was removed, is made anew).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv

apt_install() {  # apt_install PKG...: install the Debian packages not installed yet
    local pkg missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

venv_works() {  # a venv (not the base interpreter) whose pip runs
    "$VENV/bin/python3" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null &&
        "$VENV/bin/python3" -m pip --version >/dev/null 2>&1
}

# procps (ps) and iproute2 (ss): the wire tests read processes and sockets; a minimal
# Debian (debootstrap's minbase) lacks both.
apt_install tgt libiscsi-bin qemu-utils qemu-block-extra redis-server procps iproute2

command -v python3 >/dev/null || apt_install python3
if ! venv_works; then
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian ships venv's pip bootstrap (ensurepip) in python3-venv, not in python3.
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV" || {
            echo "setup.sh: '$(command -v python3) -m venv' fails even with python3-venv installed;" \
                 "put a Python >= 3.11 with the venv module first on PATH" >&2
            exit 1
        }
    fi
fi

. scripts/venv-pip.sh
pip_in_venv "$VENV" install -q --disable-pip-version-check -e '.[test]'

# Real Cinder for tests/ecosystem/cinder, in its own venv (about 45 s the first time).
bash scripts/cinder-venv.sh >/dev/null
