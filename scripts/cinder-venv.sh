#!/usr/bin/env bash
# The virtual environment in which the Cinder adapter is tested against real Cinder.
# Cinder (and fixtures, which its test utilities import) pulls in ~150 packages (eventlet, SQLAlchemy, oslo.db, ...); keeping them
# out of the main environment keeps that one what a CLI user gets. Lives outside
# the work tree so a fresh clone on the same machine reuses it; idempotent: Cinder
# is installed once, iscsi-helper is re-pointed (editable, no deps) at this checkout.
# Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
CINDER_VERSION=29.0.0
VENV="${ISCSI_HELPER_CINDER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/iscsi-helper/venv-cinder-$CINDER_VERSION}"
PIP=(-q --disable-pip-version-check)
pip_in_venv() {  # pip's exit status counts; its noise about unused local indexes does not
    local log status=0
    log="$(mktemp)"
    "$VENV/bin/python" -m pip "$@" >"$log" 2>&1 || status=$?
    grep -v "^WARNING: Location" "$log" >&2 || true
    rm -f "$log"
    return "$status"
}
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; import fixtures; sys.exit(m.version('cinder') != '$CINDER_VERSION')" 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    pip_in_venv install "${PIP[@]}" "cinder==$CINDER_VERSION" "pytest>=7" fixtures "setuptools>=77" wheel
    "$VENV/bin/python" -c "import cinder" # fail here, not in the tests, if the install is broken
fi
pip_in_venv install "${PIP[@]}" --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import iscsi_helper.cinder.driver"
echo "$VENV/bin/python"
