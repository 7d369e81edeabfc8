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
:data:`COMMANDS`. Other packages add commands through the
``iscsi_helper.cli_commands`` entry point (the lab adds ``demo`` and
``lab``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, NoReturn

from oslo_config import cfg

from iscsi_helper import __version__, options, registry, secretmask, specs
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
from iscsi_helper.model import Drift, ExportStatus, Volume
from iscsi_helper.targets.base import Progress, TargetHelper

__all__ = ["COMMANDS", "COMMAND_EXTENSIONS", "EXIT_BROKEN_PIPE", "EXIT_FAILED",
           "EXIT_INTERRUPTED", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_USAGE", "Command", "Invocation",
           "build_parser", "main"]

LOG = secretmask.get_logger(__name__)

#: Entry-point group through which other packages add commands (the lab adds
#: ``demo`` and ``lab``). Each entry is ``register(command)``: it calls
#: ``command(name, help, ...)`` and sets ``run_extension`` on the parser it
#: gets back. The product never imports those packages by name.
COMMAND_EXTENSIONS = "iscsi_helper.cli_commands"

# Command-line flags that override the configuration file, by option name.
_OVERRIDES = ("target_helper", "state_path", "volumes_dir", "target_ip_address",
              "target_port", "target_prefix", "chiscsi_conf", "iet_conf", "iet_proc_dir",
              "lock_path", "root_helper")

#: The options of the command line itself, accepted anywhere on it (see _hoist_globals):
#: flag -> whether it takes a value.
_GLOBAL_FLAGS: dict[str, bool] = {
    "--json": False, "--debug": False, "-v": False, "--verbose": False, "--log-file": True,
    "--config-file": True, "--config-dir": True, "--backend": True,
    **{"--" + name.replace("_", "-"): True for name in _OVERRIDES}}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; keep one line
        raise CliUsageError(f"{message} (see {self.prog} --help)")


class Invocation:
    """One run of the command: its arguments, and the configuration and helper they select."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    @functools.cached_property
    def loaded(self) -> options.LoadedConfig:
        overrides = {name: getattr(self.args, name) for name in _OVERRIDES
                     if getattr(self.args, name) is not None}
        if "lock_path" in overrides:
            overrides["oslo_concurrency.lock_path"] = overrides.pop("lock_path")
        try:
            loaded = options.load(self.args.config_file, overrides, backend=self.args.backend,
                                  config_dirs=self.args.config_dir)
        except cfg.ConfigFilesPermissionDeniedError as err:
            raise InvalidConfiguration(reason=f"cannot read {', '.join(err.config_files)}: "
                                              "permission denied (run as a user who can read "
                                              "it, e.g. root or cinder)") from None
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


# ------------------------------------------------------------------ output


def _status_dict(status: ExportStatus, show_secrets: bool) -> dict[str, Any]:
    spec = status.spec
    auth = None
    if spec.chap:
        auth = (format_provider_auth(spec.chap) if show_secrets
                else f"CHAP {spec.chap.username} {secretmask.MASK}")
    return {"volume_id": spec.volume_id, "volume_name": spec.volume_name, "iqn": spec.iqn,
            "device": spec.device_path, "lun": spec.lun,
            "portals": [str(p) for p in spec.portals],
            "live": status.live is not None, "tid": status.live.tid if status.live else None,
            "provider_location": status.provider_location, "provider_auth": auth,
            "initiators": list(spec.initiators)}


def _human_status(d: dict[str, Any]) -> str:
    rows = [("volume", d["volume_id"]), ("iqn", d["iqn"]), ("device", d["device"]),
            ("lun", d["lun"]), ("portals", ", ".join(d["portals"])),
            ("live", f"yes (tid {d['tid']})" if d["live"] else "NO"),
            ("provider_location", d["provider_location"] or "-"),
            ("provider_auth", d["provider_auth"] or "-"),
            ("initiators", ", ".join(d["initiators"]) or "any")]
    return "\n".join(f"{k:18} {v}" for k, v in rows)


def _human_list(rows: list[dict[str, Any]], long: bool) -> str:
    """One line per export, columns as wide as their widest cell."""
    header = ["VOLUME", "LIVE", "TID", "IQN"] + (["DEVICE", "PORTALS"] if long else [])
    table = [header] + [
        [r["volume_id"], "yes" if r["live"] else "NO", "-" if r["tid"] is None else str(r["tid"]),
         r["iqn"]] + ([r["device"], ",".join(r["portals"])] if long else []) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in table)


@contextlib.contextmanager
def _progress_bar() -> Iterator[Progress | None]:
    """A tqdm bar for large restores, on a terminal only: pipes, logs and --json stay clean."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm  # only a terminal pays for the import

    bars: list[tqdm[Any]] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="restoring exports", unit="export",
                             file=sys.stderr, leave=False, dynamic_ncols=True))
        bars[0].update(done - bars[0].n)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


# ---------------------------------------------------------------- commands


def _export(run: Invocation) -> int:
    volume = run.volume(run.args.volume_id)
    helper = run.changing()
    if run.loaded.address_guessed:
        LOG.warning("target_ip_address is set nowhere it is read, so the export publishes "
                    "my_ip's guess of this host's address (%s); set target_ip_address",
                    run.conf.target_ip_address)
    status = helper.export(volume, run.args.device, force=run.args.force)
    run.show(_status_dict(status, run.args.show_secrets), _human_status)
    return EXIT_OK


def _unexport(run: Invocation) -> int:
    volume = run.volume(run.args.volume_id)
    removed = run.changing().unexport(volume)
    run.show({"volume_id": volume.id, "removed": removed}, lambda d: (
        f"volume {d['volume_id']}: export removed" if d["removed"]
        else f"volume {d['volume_id']}: no export to remove (nothing was changed)"))
    return EXIT_OK


def _ensure(run: Invocation) -> int:
    if bool(run.args.all) == bool(run.args.volume_ids):
        raise CliUsageError("ensure: give VOLUME_ID... or --all (not both)")
    names = None if run.args.all else [run.volume(v).name for v in run.args.volume_ids]
    helper = run.changing()
    with _progress_bar() as progress:
        report_ = helper.restore_exports(names, progress, missing_ok=False)
    data = {"started": report_.started, "updated": report_.updated,
            "unchanged": report_.unchanged, "failed": report_.failed}
    run.show(data, lambda d: (
        f"started {len(d['started'])}, updated {len(d['updated'])}, "
        f"unchanged {len(d['unchanged'])}, failed {len(d['failed'])}"
        + "".join(f"\n  failed {k}: {v}" for k, v in sorted(d["failed"].items()))))
    return EXIT_OK if report_.ok else EXIT_FAILED


def _list(run: Invocation) -> int:
    rows = [_status_dict(s, False) for s in run.helper.list_exports()]
    run.show(rows, lambda rs: _human_list(rs, run.args.long))
    return EXIT_OK


def _show(run: Invocation) -> int:
    status = run.helper.get_export(run.volume(run.args.volume_id))
    if status is None:
        raise ExportNotFound(volume=run.args.volume_id)
    run.show(_status_dict(status, run.args.show_secrets), _human_status)
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
    volume = Volume(volume.id, volume.name, provider_location=status.provider_location,
                    provider_auth=format_provider_auth(chap) if chap else None)
    helper = run.changing() if run.helper.supports_acl else run.helper
    info = helper.initialize_connection(volume, connector)
    if not run.args.show_secrets and "auth_password" in info["data"]:
        info["data"]["auth_password"] = secretmask.MASK
    run.show(info, lambda i: "\n".join(
        [f"driver_volume_type {i['driver_volume_type']}"]
        + [f"{k:22} {v}" for k, v in sorted(i["data"].items())]))
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
    data = {"volume_id": volume.id, "initiator": run.args.initiator, "revoked": granted,
            "helper_keeps_acl": run.helper.supports_acl}
    run.show(data, lambda d: (
        f"volume {d['volume_id']}: access of {d['initiator']} revoked" if d["revoked"]
        else f"volume {d['volume_id']}: {d['initiator']} was granted no access, nothing to revoke"
        + ("" if d["helper_keeps_acl"] else
           " (this helper keeps no initiator list: any initiator with the CHAP credentials "
           "can log in)")))
    return EXIT_OK


def _fix_action(drift: Drift, stop_orphans: bool) -> str | None:
    """What ``reconcile --fix`` does (or would do) about one drift."""
    if drift.state == "missing-live":
        return "start"
    if drift.state == "differs":
        return "reload"
    if drift.state == "orphan-live":
        return "stop" if stop_orphans else None
    return None


def _reconcile(run: Invocation) -> int:
    fix, dry_run, stop_orphans = run.args.fix, run.args.dry_run, run.args.stop_orphans
    if (dry_run or stop_orphans) and not fix:
        raise CliUsageError("reconcile: --dry-run and --stop-orphans go with --fix")
    helper = run.changing() if fix and not dry_run else run.helper
    drifts = helper.reconcile(fix=fix and not dry_run, stop_orphans=stop_orphans)
    rows = [{"volume_id": run.volume_id_of(d.volume_name), "volume_name": d.volume_name,
             "iqn": d.iqn, "state": d.state, "fields": list(d.fields),
             "action": _fix_action(d, stop_orphans) if fix else None,
             "dry_run": bool(fix and dry_run), "fixed": d.fixed, "error": d.error}
            for d in drifts]

    def line(r: dict[str, Any]) -> str:
        text = f"{r['state']:13} {r['volume_id']}"
        if r["fields"]:
            text += f" [{', '.join(r['fields'])}]"
        if r["state"] == "orphan-live" and fix and r["action"] is None:
            text += " (left running: add --stop-orphans to stop it)"
        elif r["dry_run"] and r["action"]:
            text += f" (would {r['action']})"
        elif r["fixed"]:
            text += f" (fixed: {r['action']})" if r["action"] else " (fixed)"
        if r["error"]:
            text += f" ({r['error']})"
        return text

    run.show(rows, lambda rs: "\n".join(line(r) for r in rs) or "no exports")
    clean = all(d.state == "ok" or d.fixed for d in drifts)
    return EXIT_OK if clean else EXIT_FAILED


def _helpers(run: Invocation) -> int:
    run.show(registry.helper_names(), "\n".join)
    return EXIT_OK


# ------------------------------------------------------------------- table


def _volume_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_id", metavar="VOLUME_ID")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_id", metavar="VOLUME_ID")
    p.add_argument("device", metavar="DEVICE", help="backing block device or file")
    p.add_argument("--force", action="store_true",
                   help="change the device even while initiators are connected (they see "
                        "another disk under the same LUN)")


def _ensure_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_ids", nargs="*", metavar="VOLUME_ID")
    p.add_argument("--all", action="store_true", help="every persisted export")


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--long", action="store_true", help="also show device and portals")


def _initiator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_id", metavar="VOLUME_ID")
    p.add_argument("--initiator", required=True, metavar="IQN", help="the initiator's IQN")


def _connection_info_args(p: argparse.ArgumentParser) -> None:
    _initiator_args(p)
    p.add_argument("--multipath", action="store_true", help="ask for every portal")


def _reconcile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fix", action="store_true",
                   help="start missing exports and reload differing ones")
    p.add_argument("--dry-run", action="store_true",
                   help="with --fix: say what would be done, change nothing")
    p.add_argument("--stop-orphans", action="store_true",
                   help="with --fix: also stop live targets that have no record (their "
                        "initiators are cut off)")


def _no_args(p: argparse.ArgumentParser) -> None:
    """The command takes no arguments of its own."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[Invocation], int]
    arguments: Callable[[argparse.ArgumentParser], None] = _no_args
    secrets_flag: bool = False


COMMANDS: tuple[Command, ...] = (
    Command("export", "Export a device as the volume's iSCSI target (idempotent).",
            _export, _export_args, secrets_flag=True),
    Command("unexport", "Remove the volume's target and its persisted export (idempotent).",
            _unexport, _volume_id),
    Command("ensure", "Bring persisted exports back live (after a restart), fixing any that "
                      "differ.", _ensure, _ensure_args),
    Command("list", "List persisted exports and whether each is live.", _list, _list_args),
    Command("show", "Show one export.", _show, _volume_id, secrets_flag=True),
    Command("connection-info", "Connection properties for an initiator (os-brick format; "
                               "grants the initiator access where the helper keeps ACLs).",
            _connection_info, _connection_info_args, secrets_flag=True),
    Command("disconnect", "Revoke the access connection-info granted an initiator "
                          "(Cinder's terminate_connection).", _disconnect, _initiator_args),
    Command("reconcile", "Compare persisted exports with the live target: ok, missing-live, "
                         "differs [the fields that differ], orphan-live, foreign-file (only "
                         "targets named with target_prefix are considered).",
            _reconcile, _reconcile_args),
    Command("helpers", "List the registered target helpers.", _helpers),
)


# ---------------------------------------------------------------- parsing


def _add_globals(p: argparse.ArgumentParser, *, shown_on_command: bool) -> None:
    """The options of the command line itself (:data:`_GLOBAL_FLAGS`), for parsing and for help.

    On a command's parser (``shown_on_command``) only the output options
    are added, to show in its help: :func:`_hoist_globals` has moved every
    global option in front of the command before parsing, so they are
    parsed by the main parser wherever they were written.
    """
    output = p.add_argument_group("output and logging (before or after the command)")
    # A command's copies must not set anything (SUPPRESS): argparse copies a command's
    # defaults over the main parser's values.
    unset: Any = argparse.SUPPRESS
    output.add_argument("--json", action="store_true", default=unset if shown_on_command else False,
                        help="print JSON for machines (an error too, as {\"error\": ...})")
    output.add_argument("--debug", action="store_true",
                        default=unset if shown_on_command else False,
                        help="log debug messages (timestamped) to stderr, and tracebacks")
    output.add_argument("-v", "--verbose", action="count", default=unset if shown_on_command else 0,
                        help="log what is done, timestamped (-vv: debug messages too)")
    output.add_argument("--log-file", metavar="PATH", default=unset if shown_on_command else None,
                        help="also log to PATH (timestamped; debug messages with --debug)")
    if shown_on_command:
        return
    configuration = p.add_argument_group("configuration (before or after the command)")
    configuration.add_argument(
        "--config-file", action="append", default=[], metavar="PATH",
        help="INI file with Cinder-named options (repeatable), e.g. /etc/cinder/cinder.conf")
    configuration.add_argument(
        "--config-dir", action="append", default=[], metavar="DIR",
        help="also read every *.conf in DIR, after the files (repeatable)")
    configuration.add_argument(
        "--backend", metavar="NAME",
        help="the cinder.conf backend section to read the target options of (default: the "
             "only entry of enabled_backends; without enabled_backends: [DEFAULT])")
    for name in _OVERRIDES:
        configuration.add_argument("--" + name.replace("_", "-"), dest=name, metavar="VALUE",
                                   help=f"override option {name}")


def _hoist_globals(argv: Sequence[str]) -> list[str]:
    """``argv`` with every global option (and its value) moved in front of the command.

    So ``iscsi-helper list --debug`` and ``iscsi-helper --debug list`` are
    one command line, at any depth of sub-commands. ``--`` ends the scan;
    ``-vv`` counts as ``-v -v``.
    """
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        flag, has_value, _value = arg.partition("=")
        if arg == "--":
            rest += argv[index:]
            break
        if flag in _GLOBAL_FLAGS and _GLOBAL_FLAGS[flag]:
            if has_value:
                front.append(arg)
            elif index + 1 < len(argv):
                front += [arg, argv[index + 1]]
                index += 1
            else:
                rest.append(arg)  # argparse says the value is missing
        elif arg in _GLOBAL_FLAGS:
            front.append(arg)
        elif len(arg) > 2 and arg.startswith("-v") and set(arg[1:]) == {"v"}:
            front += ["-v"] * (len(arg) - 1)
        else:
            rest.append(arg)
        index += 1
    return front + rest


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="iscsi-helper",
                     description="Export block volumes over iSCSI through a target helper "
                                 "(chiscsi, IET, tgt, ...), with Cinder's options and formats.",
                     epilog="Exit codes: 0 success, 1 failed, 2 bad usage or refused before "
                            "anything was touched, 3 no such export, 130 interrupted, 141 "
                            "output closed early. With --json, errors are a JSON object on "
                            "stdout as well.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_globals(parser, shown_on_command=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, help_text: str, *, json_flag: bool = True,
                secrets_flag: bool = False) -> argparse.ArgumentParser:
        """Add a command; ``json_flag`` is kept for extensions written before --json was global."""
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        _add_globals(p, shown_on_command=True)
        if secrets_flag:
            p.add_argument("--show-secrets", action="store_true",
                           help="print CHAP secrets instead of ***")
        return p

    for entry in COMMANDS:
        p = command(entry.name, entry.help, secrets_flag=entry.secrets_flag)
        entry.arguments(p)
        p.set_defaults(run_command=entry.run)
    for extension in metadata.entry_points(group=COMMAND_EXTENSIONS):
        extension.load()(command)
    return parser


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
            args = build_parser().parse_args(_hoist_globals(argv))
        except SystemExit as done:  # --help, --version
            return int(done.code or 0)
        debug, as_json = bool(args.debug), bool(args.json)
        try:
            setup_logging(debug=debug, verbose=args.verbose or 0, log_file=args.log_file)
        except OSError as err:
            raise CliUsageError(f"--log-file {args.log_file}: cannot open it "
                                f"({err.strerror}); give a file this user can write") from None
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
