"""``iscsi-helper``: the target helpers from a shell, for operators and scripts.

Exit codes are a contract for scripts: 0 success, 1 the operation failed,
2 bad usage, or input or configuration refused before anything was touched
(:class:`~iscsi_helper.exception.Refused`). A failure prints one line on
stderr naming what went wrong; once a change had begun, that line also
says what state was left. Read commands take ``--json``;
secrets are shown as ``***`` unless ``--show-secrets`` is given.

Each command is one small function over the helper's public contract
(:class:`~iscsi_helper.targets.base.TargetHelper`), listed in
:data:`COMMANDS`; each makes one call of the helper, so one lookup or one
listing of the target.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, NoReturn

from oslo_config import cfg

from iscsi_helper import __version__, options, registry, secretmask
from iscsi_helper.exception import ExportNotFound, InvalidConfiguration, IscsiHelperError, Refused
from iscsi_helper.formats import format_provider_auth, validate_volume_id
from iscsi_helper.model import ExportStatus, Volume
from iscsi_helper.targets.base import Progress, TargetHelper

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Entry-point group through which other packages add commands (the lab adds
#: ``demo``). Each entry is ``register(command)``: it calls ``command(name,
#: help, ...)`` and sets ``run_extension`` on the parser it gets back. The
#: product never imports those packages by name.
COMMAND_EXTENSIONS = "iscsi_helper.cli_commands"

# Command-line flags that override the configuration file, by option name.
_OVERRIDES = ("target_helper", "state_path", "volumes_dir", "target_ip_address",
              "target_port", "target_prefix", "chiscsi_conf", "iet_conf", "iet_proc_dir",
              "lock_path")


class CliUsageError(Exception):
    """The command line itself is wrong (unknown flag, missing argument): exit 2, one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; keep one line
        raise CliUsageError(f"{self.prog}: {message}")


class Invocation:
    """One run of the command: its arguments, and the configuration and helper they select."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    @functools.cached_property
    def conf(self) -> cfg.ConfigOpts:
        overrides = {name: getattr(self.args, name) for name in _OVERRIDES
                     if getattr(self.args, name) is not None}
        if "lock_path" in overrides:
            overrides["oslo_concurrency.lock_path"] = overrides.pop("lock_path")
        try:
            return options.new_config(self.args.config_file, overrides)
        except (cfg.Error, ValueError) as err:
            raise InvalidConfiguration(reason=str(err).strip()) from None

    @functools.cached_property
    def helper(self) -> TargetHelper:
        return registry.get_helper(self.conf)

    def volume(self, volume_id: str) -> Volume:
        volume_id = validate_volume_id(volume_id)
        return Volume(volume_id, self.conf.volume_name_template % volume_id)

    def show(self, data: Any, human: Callable[[Any], str]) -> None:
        as_json = getattr(self.args, "json", False)
        print(json.dumps(data, indent=2, sort_keys=True) if as_json else human(data))


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
    status = run.helper.export(run.volume(run.args.volume_id), run.args.device)
    run.show(_status_dict(status, run.args.show_secrets), _human_status)
    return EXIT_OK


def _unexport(run: Invocation) -> int:
    run.helper.remove_export(None, run.volume(run.args.volume_id))
    print(f"volume {run.args.volume_id}: export removed")
    return EXIT_OK


def _ensure(run: Invocation) -> int:
    if bool(run.args.all) == bool(run.args.volume_ids):
        raise CliUsageError("iscsi-helper ensure: give VOLUME_ID... or --all (not both)")
    names = None if run.args.all else [run.volume(v).name for v in run.args.volume_ids]
    with _progress_bar() as progress:
        report = run.helper.restore_exports(names, progress, missing_ok=False)
    data = {"started": report.started, "updated": report.updated,
            "unchanged": report.unchanged, "failed": report.failed}
    run.show(data, lambda d: (
        f"started {len(d['started'])}, updated {len(d['updated'])}, "
        f"unchanged {len(d['unchanged'])}, failed {len(d['failed'])}"
        + "".join(f"\n  failed {k}: {v}" for k, v in sorted(d["failed"].items()))))
    return EXIT_OK if report.ok else EXIT_FAILED


def _list(run: Invocation) -> int:
    rows = [_status_dict(s, False) for s in run.helper.list_exports()]
    run.show(rows, lambda rs: "\n".join(
        [f"{'VOLUME':38} {'LIVE':5} {'TID':>5}  IQN"]
        + [f"{r['volume_id']:38} {'yes' if r['live'] else 'NO':5} "
           f"{r['tid'] if r['tid'] is not None else '-':>5}  {r['iqn']}" for r in rs]))
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
        raise ExportNotFound(volume=f"{run.args.volume_id} (persisted but not live; "
                                    "run 'iscsi-helper ensure' first)")
    chap = status.spec.chap
    volume = Volume(volume.id, volume.name, provider_location=status.provider_location,
                    provider_auth=format_provider_auth(chap) if chap else None)
    info = run.helper.initialize_connection(volume, connector)
    if not run.args.show_secrets and "auth_password" in info["data"]:
        info["data"]["auth_password"] = secretmask.MASK
    run.show(info, lambda i: "\n".join(
        [f"driver_volume_type {i['driver_volume_type']}"]
        + [f"{k:22} {v}" for k, v in sorted(i["data"].items())]))
    return EXIT_OK


def _reconcile(run: Invocation) -> int:
    drifts = run.helper.reconcile(fix=run.args.fix)
    rows = [{"volume_name": d.volume_name, "iqn": d.iqn, "state": d.state,
             "fields": list(d.fields), "fixed": d.fixed, "error": d.error} for d in drifts]
    run.show(rows, lambda rs: "\n".join(
        f"{r['state']:13} {r['volume_name']}"
        + (f" [{', '.join(r['fields'])}]" if r["fields"] else "")
        + (" (fixed)" if r["fixed"] else "") + (f" ({r['error']})" if r["error"] else "")
        for r in rs) or "no exports")
    clean = all(d.state == "ok" or d.fixed for d in drifts)
    return EXIT_OK if clean else EXIT_FAILED


def _helpers(run: Invocation) -> int:
    run.show(registry.helper_names(), "\n".join)
    return EXIT_OK


# ------------------------------------------------------------------- table


def _volume_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_id")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_id")
    p.add_argument("device", help="backing block device or file")


def _ensure_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_ids", nargs="*", metavar="VOLUME_ID")
    p.add_argument("--all", action="store_true", help="every persisted export")


def _connection_info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume_id")
    p.add_argument("--initiator", required=True, metavar="IQN", help="the initiator's IQN")
    p.add_argument("--multipath", action="store_true", help="ask for every portal")


def _reconcile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fix", action="store_true",
                   help="start missing exports, reload differing ones, stop orphans")


def _no_args(p: argparse.ArgumentParser) -> None:
    """The command takes no arguments of its own."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[Invocation], int]
    arguments: Callable[[argparse.ArgumentParser], None] = _no_args
    json_flag: bool = True
    secrets_flag: bool = False


COMMANDS: tuple[Command, ...] = (
    Command("export", "Export a device as the volume's iSCSI target (idempotent).",
            _export, _export_args, secrets_flag=True),
    Command("unexport", "Remove the volume's target and its persisted export (idempotent).",
            _unexport, _volume_id, json_flag=False),
    Command("ensure", "Bring persisted exports back live (after a restart), fixing any that "
                      "differ.", _ensure, _ensure_args),
    Command("list", "List persisted exports and whether each is live.", _list),
    Command("show", "Show one export.", _show, _volume_id, secrets_flag=True),
    Command("connection-info", "Connection properties for an initiator (os-brick format; "
                               "grants the initiator access where the helper keeps ACLs).",
            _connection_info, _connection_info_args, secrets_flag=True),
    Command("reconcile", "Compare persisted exports with the live target: ok, missing-live, "
                         "differs [fields], orphan-live, foreign-file (only targets named with "
                         "target_prefix are considered).", _reconcile, _reconcile_args),
    Command("helpers", "List the registered target helpers.", _helpers),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="iscsi-helper",
                     description="Export block volumes over iSCSI through a target helper "
                                 "(chiscsi, IET, tgt, ...), with Cinder's options and formats.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config-file", action="append", default=[], metavar="PATH",
                        help="INI file with Cinder-named options (repeatable), e.g. cinder.conf")
    for name in _OVERRIDES:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, metavar="VALUE",
                            help=f"override option {name}")
    parser.add_argument("--debug", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, help_text: str, *, json_flag: bool = True,
                secrets_flag: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON for machines")
        if secrets_flag:
            p.add_argument("--show-secrets", action="store_true",
                           help="print CHAP secrets instead of ***")
        return p

    for entry in COMMANDS:
        p = command(entry.name, entry.help, json_flag=entry.json_flag,
                    secrets_flag=entry.secrets_flag)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CliUsageError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as done:  # --help, --version
        return int(done.code or 0)
    handler = logging.StreamHandler()
    handler.addFilter(secretmask.SecretMaskingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        handlers=[handler], force=True)
    try:
        return _run(args)
    except CliUsageError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    except Refused as err:  # nothing was touched: the input or configuration must change
        print(f"iscsi-helper: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except IscsiHelperError as err:
        print(f"iscsi-helper: error: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
