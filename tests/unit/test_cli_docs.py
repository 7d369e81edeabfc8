"""The man page and the bash completion: generated from the parser, fresh, and working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from iscsi_helper.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]
MAN_PAGE = REPO / "docs" / "man" / "iscsi-helper.1"
COMPLETION = REPO / "etc" / "bash_completion.d" / "iscsi-helper"


def test_generated_files_match_the_parser():
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_cli_docs.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_the_man_page_documents_every_command_option_and_exit_code():
    text = MAN_PAGE.read_text()
    assert text.splitlines()[1].startswith(".TH ISCSI\\-HELPER 1 ")
    for command in COMMANDS:
        assert f"\n.TP\n\\fB{command.name.replace('-', chr(92) + '-')}\\fR" in text, command.name
    for flag in (
        "\\-\\-json",
        "\\-\\-debug",
        "\\-\\-log\\-file",
        "\\-\\-backend",
        "\\-\\-force",
        "\\-\\-stop\\-orphans",
        "\\-\\-dry\\-run",
    ):
        assert f"\\fB{flag}\\fR" in text, flag
    for code in ("0", "1", "2", "3", "130", "141"):
        assert f"\n.B {code}\n" in text


def complete(line: str) -> list[str]:
    """What bash completes for ``line`` (the cursor at its end), with our completion loaded."""
    words = line.split(" ")
    script = (
        f"source {COMPLETION}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_iscsi_helper\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
    )
    return [w for w in done.stdout.splitlines() if w]


def test_bash_completes_commands_options_and_helper_names():
    assert complete("iscsi-helper rec") == ["reconcile"]
    assert set(complete("iscsi-helper ")) >= {c.name for c in COMMANDS} | {"--json", "--backend"}
    assert set(complete("iscsi-helper reconcile --st")) == {"--stop-orphans", "--state-path"}
    assert set(complete("iscsi-helper --debug list --lo")) == {"--long", "--log-file", "--lock-path"}
    assert complete("iscsi-helper --backend lvm export 1 --fo") == ["--force"]
    assert set(complete("iscsi-helper --target-helper ")) >= {"chiscsi", "iet", "tgt", "fake"}
    assert complete("iscsi-helper lab s") == ["shims", "stop"]
