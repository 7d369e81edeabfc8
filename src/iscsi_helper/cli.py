"""``iscsi-helper``: the target helpers from a shell, for operators and scripts.

Exit codes are a contract for scripts:

* 0 success;
* 1 the operation failed (``reconcile``: drift is left; ``ensure``: an
  export could not be brought back); once a change had begun, the error
  line says what state was left (and ``state_left`` in the JSON error);
* 2 bad usage, or input or configuration refused before anything was
  touched (:class:`~iscsi_helper.exception.Refused`: a bad value, an
  unreadable file, a path this user cannot write, a device swap under
  connected initiators without ``--force``);
* 3 no such export (``show``, ``connection-info``, ``disconnect``,
  ``ensure VOLUME_ID``); ``unexport`` of a volume with no export is not
  an error: it says so and exits 0;
* 130 interrupted (Ctrl-C); 141 standard output was closed early (``| head``),
  after the command had done its work, as for any Unix tool.

A failure prints one line on stderr, ``iscsi-helper: error: ...``, naming
the path, package or option and the fix; never a traceback unless
``--debug``. With ``--json`` every command prints one JSON document on
stdout, a failure included: ``{"error": {"type", "message", "exit_code",
"state_left"}}`` (the line on stderr is printed too). Secrets are shown as
``***`` unless ``--show-secrets``. The options of the command line itself
(``--json``, ``--debug``, ``-v``, ``--log-file``, ``--config-file``,
``--backend``, the option overrides) are accepted before or after the
command.

Each command is one small function over the helper's public contract
(:class:`~iscsi_helper.targets.base.TargetHelper`), listed in
:data:`COMMANDS`; its arguments are declared in :mod:`iscsi_helper.cliargs`
and its output rendered by :mod:`iscsi_helper.cliviews`. Other packages add
commands through the ``iscsi_helper.cli_commands`` entry point (the lab
adds ``demo`` and ``lab``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg

from iscsi_helper import cliargs, cliviews, options, registry, secretmask, specs
from iscsi_helper.cliargs import COMMAND_EXTENSIONS
from iscsi_helper.clisupport import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CliUsageError,
    Failure,
    describe,
    report,
    setup_logging,
)
from iscsi_helper.exception import ExportNotFound, ExportNotLive, InvalidConfiguration
from iscsi_helper.formats import format_provider_auth, validate_volume_id
from iscsi_helper.model import Volume
from iscsi_helper.targets.base import TargetHelper

__all__ = [
    "COMMANDS",
    "COMMAND_EXTENSIONS",
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "Command",
    "Invocation",
    "build_parser",
    "main",
]

LOG = secretmask.get_logger(__name__)


class Invocation:
    """One run of the command: its arguments, and the configuration and helper they select."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    @functools.cached_property
    def loaded(self) -> options.LoadedConfig:
        overrides = {
            name: getattr(self.args, name)
            for name in cliargs.OVERRIDES
            if getattr(self.args, name) is not None
        }
        if "lock_path" in overrides:
            overrides["oslo_concurrency.lock_path"] = overrides.pop("lock_path")
        try:
            loaded = options.load(
                self.args.config_file, overrides, backend=self.args.backend, config_dirs=self.args.config_dir
            )
        except cfg.ConfigFilesPermissionDeniedError as err:
            raise InvalidConfiguration(
                reason=f"cannot read {', '.join(err.config_files)}: "
                "permission denied (run as a user who can read "
                "it, e.g. root or cinder)"
            ) from None
        except (cfg.Error, ValueError) as err:
            raise InvalidConfiguration(reason=str(err).strip()) from None
        for warning in loaded.warnings:
            LOG.warning("%s", warning)
        return loaded

    @property
    def conf(self) -> cfg.ConfigOpts:
        return self.loaded.conf

    @functools.cached_property
    def helper(self) -> TargetHelper:
        return registry.get_helper(self.conf)

    def changing(self) -> TargetHelper:
        """The helper, once it is known this process can write what it writes (else one line, exit 2)."""
        self.helper.check_access()
        return self.helper

    def volume(self, volume_id: str) -> Volume:
        volume_id = validate_volume_id(volume_id)
        self.helper  # noqa: B018 - the helper checks the configuration (volume_name_template) first
        return Volume(volume_id, self.conf.volume_name_template % volume_id)

    def volume_id_of(self, volume_name: str) -> str:
        """The id a volume name was built from (``volume_name_template``); the name if it was not."""
        return specs.volume_id_from_name(self.conf, volume_name)

    @property
    def as_json(self) -> bool:
        return bool(self.args.json)

    def show(self, data: Any, human: Callable[[Any], str]) -> None:
        print(json.dumps(data, indent=2, sort_keys=True) if self.as_json else human(data))


# ---------------------------------------------------------------- commands


def _export(run: Invocation) -> int:
    volume = run.volume(run.args.volume_id)
    helper = run.changing()
    if run.loaded.address_guessed:
        LOG.warning(
            "target_ip_address is set nowhere it is read, so the export publishes "
            "my_ip's guess of this host's address (%s); set target_ip_address",
            run.conf.target_ip_address,
        )
    status = helper.export(volume, run.args.device, force=run.args.force)
    run.show(cliviews.status_dict(status, run.args.show_secrets), cliviews.human_status)
    return EXIT_OK


def _unexport(run: Invocation) -> int:
    volume = run.volume(run.args.volume_id)
    removed = run.changing().unexport(volume)
    run.show({"volume_id": volume.id, "removed": removed}, cliviews.human_unexport)
    return EXIT_OK


def _ensure(run: Invocation) -> int:
    if bool(run.args.all) == bool(run.args.volume_ids):
        raise CliUsageError("ensure: give VOLUME_ID... or --all (not both)")
    names = None if run.args.all else [run.volume(v).name for v in run.args.volume_ids]
    helper = run.changing()
    with cliviews.progress_bar() as progress:
        restored = helper.restore_exports(names, progress, missing_ok=False)
    run.show(cliviews.report_dict(restored), cliviews.human_report)
    return EXIT_OK if restored.ok else EXIT_FAILED


def _list(run: Invocation) -> int:
    rows = [cliviews.status_dict(s, False) for s in run.helper.list_exports()]
    run.show(rows, lambda rs: cliviews.human_list(rs, run.args.long))
    return EXIT_OK


def _show(run: Invocation) -> int:
    status = run.helper.get_export(run.volume(run.args.volume_id))
    if status is None:
        raise ExportNotFound(volume=run.args.volume_id)
    run.show(cliviews.status_dict(status, run.args.show_secrets), cliviews.human_status)
    return EXIT_OK


def _connection_info(run: Invocation) -> int:
    volume = run.volume(run.args.volume_id)
    connector = {"initiator": run.args.initiator, "multipath": run.args.multipath}
    run.helper.validate_connector(connector)  # refused before any tool is run
    status = run.helper.get_export(volume)
    if status is None:
        raise ExportNotFound(volume=run.args.volume_id)
    if status.live is None:
        raise ExportNotLive(volume=run.args.volume_id)
    chap = status.spec.chap
    volume = Volume(
        volume.id,
        volume.name,
        provider_location=status.provider_location,
        provider_auth=format_provider_auth(chap) if chap else None,
    )
    helper = run.changing() if run.helper.supports_acl else run.helper
    info = helper.initialize_connection(volume, connector)
    run.show(cliviews.mask_connection_secret(info, run.args.show_secrets), cliviews.human_connection_info)
    return EXIT_OK


def _disconnect(run: Invocation) -> int:
    volume = run.volume(run.args.volume_id)
    connector = {"initiator": run.args.initiator}
    run.helper.validate_connector(connector)
    status = run.helper.get_export(volume)
    if status is None:
        raise ExportNotFound(volume=run.args.volume_id)
    granted = run.args.initiator in status.spec.initiators
    if granted:
        run.changing().terminate_connection(volume, connector)
    data = {
        "volume_id": volume.id,
        "initiator": run.args.initiator,
        "revoked": granted,
        "helper_keeps_acl": run.helper.supports_acl,
    }
    run.show(data, cliviews.human_disconnect)
    return EXIT_OK


def _reconcile(run: Invocation) -> int:
    fix, dry_run, stop_orphans = run.args.fix, run.args.dry_run, run.args.stop_orphans
    if (dry_run or stop_orphans) and not fix:
        raise CliUsageError("reconcile: --dry-run and --stop-orphans go with --fix")
    helper = run.changing() if fix and not dry_run else run.helper
    drifts = helper.reconcile(fix=fix and not dry_run, stop_orphans=stop_orphans)
    rows = [
        cliviews.drift_dict(
            d, run.volume_id_of(d.volume_name), fix=fix, dry_run=dry_run, stop_orphans=stop_orphans
        )
        for d in drifts
    ]
    run.show(rows, lambda rs: cliviews.human_drifts(rs, fix))
    clean = all(d.state == "ok" or d.fixed for d in drifts)
    return EXIT_OK if clean else EXIT_FAILED


def _helpers(run: Invocation) -> int:
    run.show(registry.helper_names(), "\n".join)
    return EXIT_OK


# ------------------------------------------------------------------- table


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[Invocation], int]
    arguments: Callable[[argparse.ArgumentParser], None] = cliargs.no_args
    secrets_flag: bool = False


COMMANDS: tuple[Command, ...] = (
    Command(
        "export",
        "Export a device as the volume's iSCSI target (idempotent).",
        _export,
        cliargs.export_args,
        secrets_flag=True,
    ),
    Command(
        "unexport",
        "Remove the volume's target and its persisted export (idempotent).",
        _unexport,
        cliargs.volume_id,
    ),
    Command(
        "ensure",
        "Bring persisted exports back live (after a restart), fixing any that differ.",
        _ensure,
        cliargs.ensure_args,
    ),
    Command("list", "List persisted exports and whether each is live.", _list, cliargs.list_args),
    Command("show", "Show one export.", _show, cliargs.volume_id, secrets_flag=True),
    Command(
        "connection-info",
        "Connection properties for an initiator (os-brick format; "
        "grants the initiator access where the helper keeps ACLs).",
        _connection_info,
        cliargs.connection_info_args,
        secrets_flag=True,
    ),
    Command(
        "disconnect",
        "Revoke the access connection-info granted an initiator (Cinder's terminate_connection).",
        _disconnect,
        cliargs.initiator_args,
    ),
    Command(
        "reconcile",
        "Compare persisted exports with the live target: ok, missing-live, "
        "differs [the fields that differ], orphan-live, foreign-file (only "
        "targets named with target_prefix are considered).",
        _reconcile,
        cliargs.reconcile_args,
    ),
    Command("helpers", "List the registered target helpers.", _helpers),
)


def build_parser() -> argparse.ArgumentParser:
    return cliargs.build_parser(COMMANDS)


def _run(args: argparse.Namespace) -> int:
    extension: Callable[[argparse.Namespace], int] | None = getattr(args, "run_extension", None)
    if extension is not None:
        return extension(args)
    run_command: Callable[[Invocation], int] = args.run_command
    return run_command(Invocation(args))


def _wants_json(argv: Sequence[str]) -> bool:
    """``--json`` anywhere on the line, for errors the parser itself raises."""
    return "--json" in argv


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    as_json = _wants_json(argv)
    try:
        try:
            args = build_parser().parse_args(cliargs.hoist_globals(argv))
        except SystemExit as done:  # --help, --version
            return int(done.code or 0)
        debug, as_json = bool(args.debug), bool(args.json)
        try:
            setup_logging(debug=debug, verbose=args.verbose or 0, log_file=args.log_file)
        except OSError as err:
            raise CliUsageError(
                f"--log-file {args.log_file}: cannot open it "
                f"({err.strerror}); give a file this user can write"
            ) from None
        status = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return status
    except BrokenPipeError:
        return _closed_stdout()
    except KeyboardInterrupt:
        return report(Failure("interrupted", EXIT_INTERRUPTED, "Interrupted"), as_json=False)
    except Exception as err:  # noqa: BLE001 - every failure ends as one line (or a traceback with --debug)
        if debug:
            traceback.print_exc()
        try:
            return report(describe(err), as_json=as_json)
        except BrokenPipeError:
            return _closed_stdout()


def _closed_stdout() -> int:
    """The reader went away (``| head``): say nothing more, and keep Python from complaining at exit."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
