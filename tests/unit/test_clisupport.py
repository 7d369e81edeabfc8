"""One line per failure, whatever the failure: the mapping the command line ends with."""

from __future__ import annotations

import errno
import io
import json

import pytest

from iscsi_helper import clisupport
from iscsi_helper.clisupport import CliUsageError, Failure, describe, report
from iscsi_helper.exception import (
    AccessDenied,
    CommandFailed,
    ExportInUse,
    ExportNotFound,
    InvalidConfiguration,
    TargetCreateFailed,
)


@pytest.mark.parametrize(
    "err,code,words",
    [
        (ExportNotFound(volume="7"), 3, ["No export found for volume 7"]),
        (InvalidConfiguration(reason="option x: bad"), 2, ["option x: bad"]),
        (AccessDenied(option="volumes_dir", path="/v", problem="p", fix="f"), 2, ["volumes_dir /v"]),
        (ExportInUse(volume_id="1", connected="c", new="/b", old="/a"), 2, ["--force"]),
        (TargetCreateFailed(volume_id="1", reason="r"), 1, ["volume 1"]),
        (CommandFailed(command="iscsictl -S", exit_code=255, stdout="", stderr="boom"), 1, ["boom"]),
        (CliUsageError("ensure: give VOLUME_ID... or --all"), 2, ["VOLUME_ID"]),
        (
            PermissionError(errno.EACCES, "Permission denied", "/var/lib/cinder/volumes"),
            1,
            ["permission denied on /var/lib/cinder/volumes", "run as root or as the owner"],
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/srv/state/x"),
            1,
            ["no space left on the file system of /srv/state/x", "free some space"],
        ),
        (OSError(errno.EROFS, "Read-only file system", "/ro/x"), 1, ["/ro/x is on a read-only"]),
        (
            ModuleNotFoundError("No module named 'tooz'", name="tooz"),
            1,
            ["tooz is not installed", "pip install 'iscsi-helper[coordination]'"],
        ),
        (ModuleNotFoundError("No module named 'frob.x'", name="frob.x"), 1, ["pip install frob"]),
        (RuntimeError("surprise"), 1, ["unexpected RuntimeError: surprise", "--debug"]),
    ],
)
def test_every_failure_is_one_line_with_its_exit_code(err, code, words):
    failure = describe(err)
    assert failure.exit_code == code
    assert "\n" not in failure.message
    for word in words:
        assert word in failure.message, failure.message


def test_report_prints_the_line_and_with_json_the_object():
    err, out = io.StringIO(), io.StringIO()
    failure = Failure("No export found for volume 7.", 3, "ExportNotFound")
    assert report(failure, as_json=True, stderr=err, stdout=out) == 3
    assert err.getvalue() == "iscsi-helper: error: No export found for volume 7.\n"
    assert json.loads(out.getvalue()) == {
        "error": {
            "type": "ExportNotFound",
            "message": "No export found for volume 7.",
            "exit_code": 3,
            "state_left": None,
        }
    }
    out = io.StringIO()
    report(failure, as_json=False, stderr=io.StringIO(), stdout=out)
    assert out.getvalue() == ""


def test_the_exit_codes_are_the_documented_ones():
    assert (
        clisupport.EXIT_OK,
        clisupport.EXIT_FAILED,
        clisupport.EXIT_USAGE,
        clisupport.EXIT_NOT_FOUND,
        clisupport.EXIT_INTERRUPTED,
        clisupport.EXIT_BROKEN_PIPE,
    ) == (0, 1, 2, 3, 130, 141)


def test_an_unexpected_error_shows_its_traceback_only_with_debug(monkeypatch, capsys):
    from iscsi_helper import cli

    def explode(run):
        raise RuntimeError("surprise")

    monkeypatch.setattr(cli, "_list", explode)
    monkeypatch.setattr(
        cli,
        "COMMANDS",
        tuple(
            cli.Command(c.name, c.help, explode if c.name == "list" else c.run, c.arguments, c.secrets_flag)
            for c in cli.COMMANDS
        ),
    )
    assert cli.main(["--target-helper", "fake", "list"]) == 1
    quiet = capsys.readouterr().err
    assert quiet.strip().splitlines() == [
        "iscsi-helper: error: unexpected RuntimeError: surprise (run again with --debug for the "
        "traceback, and please report it)"
    ]
    assert cli.main(["--target-helper", "fake", "list", "--debug"]) == 1
    loud = capsys.readouterr().err
    assert "Traceback (most recent call last)" in loud and "RuntimeError: surprise" in loud


def test_log_records_never_read_like_the_one_error_line(capsys):
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        clisupport.setup_logging(debug=False, verbose=0, log_file=None)
        log = logging.getLogger("iscsi_helper.test")
        log.warning("careful")
        log.error("could not undo")
        log.info("quiet by default")
        assert capsys.readouterr().err.splitlines() == [
            "iscsi-helper: warning: careful",
            "iscsi-helper: logged error: could not undo",
        ]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
