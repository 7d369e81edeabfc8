#!/usr/bin/env bash
# The virtual environment in which the Cinder adapter is tested against real Cinder.
# Cinder (and fixtures, which its test utilities import) pulls in ~150 packages (eventlet, SQLAlchemy, oslo.db, ...); keeping them
# out of the main environment keeps that one what a CLI user gets. One venv per
# checkout, in its work tree (.venv-cinder, ignored by git): iscsi-helper is
# installed into it editable, i.e. as a path to one checkout, so a venv shared by
# two checkouts would test whichever ran this script last. Idempotent: Cinder is
# installed once (about 45 s), iscsi-helper is (re-)pointed at this checkout.
# ISCSI_HELPER_CINDER_VENV overrides the place; tests/ecosystem/test_cinder_venv.py
# refuses a venv that imports another checkout's iscsi_helper. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
CINDER_VERSION=29.0.0
VENV="${ISCSI_HELPER_CINDER_VENV:-$PWD/.venv-cinder}"
PIP=(-q --disable-pip-version-check)
. scripts/venv-pip.sh
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; import fixtures; sys.exit(m.version('cinder') != '$CINDER_VERSION')" 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    pip_in_venv "$VENV" install "${PIP[@]}" "cinder==$CINDER_VERSION" "pytest>=7" fixtures "setuptools>=77" wheel
    "$VENV/bin/python" -c "import cinder" # fail here, not in the tests, if the install is broken
fi
pip_in_venv "$VENV" install "${PIP[@]}" --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import iscsi_helper.cinder.driver"
# The venv must now import this checkout's code, not another's.
"$VENV/bin/python" - "$PWD/src/iscsi_helper/__init__.py" <<'PY'
import os, sys
import iscsi_helper
if os.path.realpath(iscsi_helper.__file__) != os.path.realpath(sys.argv[1]):
    sys.exit(f"the Cinder venv imports {iscsi_helper.__file__}, not {sys.argv[1]}")
PY
echo "$VENV/bin/python"
