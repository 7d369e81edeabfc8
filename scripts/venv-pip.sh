# Sourced by scripts/setup.sh and scripts/cinder-venv.sh: one way to run pip in a venv.
#
# pip_in_venv VENV ARGS...: run "VENV/bin/python3 -m pip ARGS...". pip's exit status
# counts; its noise about unused local indexes ("WARNING: Location ...") does not,
# so it is dropped from what reaches stderr and everything else is kept.
pip_in_venv() {
    local venv="$1" log status=0
    shift
    log="$(mktemp)"
    "$venv/bin/python3" -m pip "$@" >"$log" 2>&1 || status=$?
    grep -v "^WARNING: Location" "$log" >&2 || true
    rm -f "$log"
    return "$status"
}
