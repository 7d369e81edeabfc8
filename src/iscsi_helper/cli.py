"""``iscsi-helper``: the target helpers from a shell, for operators and scripts.

Exit codes are a contract for scripts: 0 success, 1 the operation failed,
2 bad usage or invalid input (nothing was changed). A failure prints one
line on stderr naming what went wrong. Read commands take ``--json``;
secrets are shown as ``***`` unless ``--show-secrets`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any

from oslo_config import cfg

from iscsi_helper import __version__, options, registry, secretmask
from iscsi_helper.exception import (ExportNotFound, InvalidConfiguration, InvalidInput,
                                    IscsiHelperError)
from iscsi_helper.formats import format_provider_auth, validate_volume_id
from iscsi_helper.model import ExportStatus, Volume
from iscsi_helper.targets.iscsi import IscsiHelper

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


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep one line
        raise UsageError(f"{self.prog}: {message}")


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
        p = sub.add_parser(name, help=help_text, description=help_text)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON for machines")
        if secrets_flag:
            p.add_argument("--show-secrets", action="store_true",
                           help="print CHAP secrets instead of ***")
        return p

    p = command("export", "Export a device as the volume's iSCSI target (idempotent).",
                secrets_flag=True)
    p.add_argument("volume_id")
    p.add_argument("device", help="backing block device or file")
    p = command("unexport", "Remove the volume's target and its persisted export (idempotent).",
                json_flag=False)
    p.add_argument("volume_id")
    p = command("ensure", "Bring persisted exports back live (after a restart), "
                          "fixing any that differ.")
    p.add_argument("volume_ids", nargs="*", metavar="VOLUME_ID")
    p.add_argument("--all", action="store_true", help="every persisted export")
    command("list", "List persisted exports and whether each is live.")
    p = command("show", "Show one export.", secrets_flag=True)
    p.add_argument("volume_id")
    p = command("connection-info", "Connection properties for an initiator "
                                   "(os-brick format; grants the initiator access where the "
                                   "helper keeps ACLs).", secrets_flag=True)
    p.add_argument("volume_id")
    p.add_argument("--initiator", required=True, metavar="IQN", help="the initiator's IQN")
    p.add_argument("--multipath", action="store_true", help="ask for every portal")
    p = command("reconcile", "Compare persisted exports with the live target: ok, "
                             "missing-live, differs, orphan-live (only targets named with "
                             "target_prefix are considered).")
    p.add_argument("--fix", action="store_true",
                   help="start missing exports, reload differing ones, stop orphans")
    command("helpers", "List the registered target helpers.")
    for extension in metadata.entry_points(group=COMMAND_EXTENSIONS):
        extension.load()(command)
    return parser


def _load_config(args: argparse.Namespace) -> cfg.ConfigOpts:
    overrides = {name: getattr(args, name) for name in _OVERRIDES
                 if getattr(args, name) is not None}
    if "lock_path" in overrides:
        overrides["oslo_concurrency.lock_path"] = overrides.pop("lock_path")
    try:
        return options.new_config(args.config_file, overrides)
    except (cfg.Error, ValueError) as err:
        raise InvalidConfiguration(reason=str(err).strip()) from None


def _volume(conf: cfg.ConfigOpts, volume_id: str) -> Volume:
    volume_id = validate_volume_id(volume_id)
    return Volume(volume_id, conf.volume_name_template % volume_id)


def _status_dict(status: ExportStatus, show_secrets: bool) -> dict[str, Any]:
    spec = status.spec
    auth = format_provider_auth(spec.chap) if spec.chap else None
    if auth and not show_secrets:
        auth = f"CHAP {spec.chap.username} {secretmask.MASK}"  # type: ignore[union-attr]
    return {"volume_id": spec.volume_id, "volume_name": spec.volume_name, "iqn": spec.iqn,
            "device": spec.device_path, "lun": spec.lun,
            "portals": [str(p) for p in spec.portals],
            "live": status.live is not None, "tid": status.live.tid if status.live else None,
            "provider_location": status.provider_location, "provider_auth": auth,
            "initiators": list(spec.initiators)}


def _print(data: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else human(data))


def _human_status(d: dict[str, Any]) -> str:
    rows = [("volume", d["volume_id"]), ("iqn", d["iqn"]), ("device", d["device"]),
            ("lun", d["lun"]), ("portals", ", ".join(d["portals"])),
            ("live", f"yes (tid {d['tid']})" if d["live"] else "NO"),
            ("provider_location", d["provider_location"] or "-"),
            ("provider_auth", d["provider_auth"] or "-"),
            ("initiators", ", ".join(d["initiators"]) or "any")]
    return "\n".join(f"{k:18} {v}" for k, v in rows)


def _require_iscsi(target: Any) -> IscsiHelper:
    if not isinstance(target, IscsiHelper):
        raise InvalidConfiguration(reason=f"{type(target).__name__} has no persisted exports "
                                          "to manage from the command line")
    return target


def _run(args: argparse.Namespace) -> int:
    extension: Callable[[argparse.Namespace], int] | None = getattr(args, "run_extension", None)
    if extension is not None:
        return extension(args)
    if args.command == "helpers":
        names = registry.helper_names()
        _print(names, args.json, lambda n: "\n".join(n))
        return EXIT_OK
    conf = _load_config(args)
    target = _require_iscsi(registry.get_helper(conf))

    if args.command == "export":
        volume = _volume(conf, args.volume_id)
        existing = target.get_export(volume)
        if existing and existing.spec.chap:
            volume = Volume(volume.id, volume.name,
                            provider_auth=format_provider_auth(existing.spec.chap))
        result = target.create_export(None, volume, args.device)
        status = target.get_export(volume)
        assert status is not None
        data = _status_dict(status, args.show_secrets)
        data["provider_location"] = result["location"]
        _print(data, args.json, _human_status)
        return EXIT_OK

    if args.command == "unexport":
        target.remove_export(None, _volume(conf, args.volume_id))
        print(f"volume {args.volume_id}: export removed")
        return EXIT_OK

    if args.command == "ensure":
        if bool(args.all) == bool(args.volume_ids):
            raise UsageError("iscsi-helper ensure: give VOLUME_ID... or --all (not both)")
        names = None if args.all else [_volume(conf, v).name for v in args.volume_ids]
        if names is not None:
            missing = [n for n in names if target.get_export(Volume("x", n)) is None]
            if missing:
                raise ExportNotFound(volume=", ".join(missing))
        with _progress_bar(target, names) as progress:
            report = target.restore_exports(names, progress=progress)
        data = {"started": report.started, "updated": report.updated,
                "unchanged": report.unchanged, "failed": report.failed}
        _print(data, args.json, lambda d: (
            f"started {len(d['started'])}, updated {len(d['updated'])}, "
            f"unchanged {len(d['unchanged'])}, failed {len(d['failed'])}"
            + "".join(f"\n  failed {k}: {v}" for k, v in sorted(d["failed"].items()))))
        return EXIT_OK if report.ok else EXIT_FAILED

    if args.command == "list":
        rows = [_status_dict(s, False) for s in target.list_exports()]
        _print(rows, args.json, lambda rs: "\n".join(
            [f"{'VOLUME':38} {'LIVE':5} {'TID':>5}  IQN"]
            + [f"{r['volume_id']:38} {'yes' if r['live'] else 'NO':5} "
               f"{r['tid'] if r['tid'] is not None else '-':>5}  {r['iqn']}" for r in rs]))
        return EXIT_OK

    if args.command == "show":
        status = target.get_export(_volume(conf, args.volume_id))
        if status is None:
            raise ExportNotFound(volume=args.volume_id)
        _print(_status_dict(status, args.show_secrets), args.json, _human_status)
        return EXIT_OK

    if args.command == "connection-info":
        volume = _volume(conf, args.volume_id)
        status = target.get_export(volume)
        if status is None:
            raise ExportNotFound(volume=args.volume_id)
        if status.live is None:
            raise ExportNotFound(volume=f"{args.volume_id} (persisted but not live; "
                                        "run 'iscsi-helper ensure' first)")
        volume = Volume(volume.id, volume.name, provider_location=status.provider_location,
                        provider_auth=format_provider_auth(status.spec.chap)
                        if status.spec.chap else None)
        connector = {"initiator": args.initiator, "multipath": args.multipath}
        target.validate_connector(connector)
        info = target.initialize_connection(volume, connector)
        if not args.show_secrets and "auth_password" in info["data"]:
            info["data"]["auth_password"] = secretmask.MASK
        _print(info, args.json, lambda i: "\n".join(
            [f"driver_volume_type {i['driver_volume_type']}"]
            + [f"{k:22} {v}" for k, v in sorted(i["data"].items())]))
        return EXIT_OK

    if args.command == "reconcile":
        drifts = target.reconcile(fix=args.fix)
        rows = [{"volume_name": d.volume_name, "iqn": d.iqn, "state": d.state,
                 "fixed": d.fixed, "error": d.error} for d in drifts]
        _print(rows, args.json, lambda rs: "\n".join(
            f"{r['state']:13} {r['volume_name']}"
            + (" (fixed)" if r["fixed"] else "") + (f" ({r['error']})" if r["error"] else "")
            for r in rs) or "no exports")
        clean = all(d.state == "ok" or d.fixed for d in drifts)
        return EXIT_OK if clean else EXIT_FAILED

    raise UsageError(f"unknown command {args.command}")


@contextlib.contextmanager
def _progress_bar(target: IscsiHelper,
                  names: list[str] | None) -> Iterator[Callable[[int, int], None] | None]:
    """A tqdm bar for large restores, on a terminal only: pipes, logs and --json stay clean.

    The total is the number of records; for ``--all`` that costs one extra
    read of the record files (no target-tool call), small next to a restore.
    """
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm  # only a terminal pays for the import

    total = len(names) if names is not None else len(target._list_records())
    with tqdm(total=total, desc="restoring exports", unit="export", file=sys.stderr,
              leave=False, dynamic_ncols=True) as bar:
        def tick(done: int, total: int) -> None:
            bar.update(done - bar.n)
        yield tick


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
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
    except UsageError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    except (InvalidInput, InvalidConfiguration) as err:
        print(f"iscsi-helper: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except IscsiHelperError as err:
        print(f"iscsi-helper: error: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
