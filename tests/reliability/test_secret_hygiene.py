"""CHAP secrets never leak: not in logs, errors, CLI output, child argv, or a readable file.

Every operation that handles CHAP runs with DEBUG logging captured from the
root logger (so oslo.concurrency's own command and lock logs are seen), an
observer on every child argv, and known secrets: one chosen through
provider_auth, one configured (use_chap_auth), one generated, and the
mutual-CHAP target secret. A target tool that can take a secret only on its
command line has exactly one call named here that may carry it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from typing import Any

import pytest

from iscsi_helper import cli
from iscsi_helper.exception import Refused

from . import figures
from .conftest import IQN_PREFIX, make_device, volume

CHOSEN = "Chosen-Sec-4711!"  # 16: chiscsi takes 12 to 16
CONFIGURED = "Config-Sec-0815^"  # 16, no '#': chiscsi reads '#' as a comment
INITIATOR = "iqn.1993-08.org.debian:01:hygiene"

# helper name -> predicate on an argv allowed to carry a secret (the tool has no other channel)
SECRET_ARGV_ALLOWED: dict[str, Callable[[tuple[str, ...]], bool]] = {
    "iet": lambda argv: (
        "--user" in argv and "--op" in argv and argv[argv.index("--op") + 1] == "new"
    ),  # ietadm --op new --user --params=...,Password=
    "tgt": lambda argv: (
        "--mode" in argv
        and argv[argv.index("--mode") + 1] == "account"
        and "--op" in argv
        and argv[argv.index("--op") + 1] == "new"
    ),  # tgtadm --mode account --op new
}


def _secrets_of(target: Any, n: int) -> set[str]:
    status = target.get_export(volume(n))
    assert status is not None, f"volume-{n} has no export"
    return set(status.spec.secrets())


def test_secrets_stay_out_of_logs_errors_argv_and_readable_files(h, caplog, capsys, root_logging):
    """Every operation meant to work must work (a failing one proves nothing about its logs),
    every refusal must be the refusal meant, and no known secret may appear anywhere."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    dev = make_device(h)
    secrets: set[str] = {CHOSEN, CONFIGURED}
    errors: list[str] = []
    operations = 0

    def must(fn: Callable[[], Any]) -> Any:
        nonlocal operations
        operations += 1
        return fn()

    def refused(fn: Callable[[], Any], field: str) -> None:
        nonlocal operations
        operations += 1
        with pytest.raises(Refused, match=field) as info:
            fn()
        errors.append(str(info.value))

    def all_ok(report: Any) -> None:
        assert report.ok, report.failed

    plain = h.target()
    configured = h.target(use_chap_auth=True, chap_username="operator", chap_password=CONFIGURED)
    mutual = h.target(iscsi_mutual_chap=True)
    chosen = volume(1, provider_auth=f"CHAP chosen-user {CHOSEN}")
    must(lambda: plain.create_export(None, chosen, dev))
    must(lambda: configured.create_export(None, volume(2), make_device(h, "d2")))
    generated = must(lambda: plain.create_export(None, volume(3), make_device(h, "d3")))
    secrets.add(generated["auth"].split()[2])
    dev4 = make_device(h, "d4")
    made4 = must(lambda: mutual.create_export(None, volume(4), dev4))
    mutual_secrets = _secrets_of(plain, 4)
    assert len(mutual_secrets) == 2, "the mutual export has no target secret"
    assert h.live(IQN_PREFIX + "volume-4").mutual is not None, "the target has no mutual account"
    secrets |= mutual_secrets
    connector = {"initiator": INITIATOR}
    located = {**chosen, "provider_location": plain.get_export(chosen).provider_location}
    must(lambda: plain.initialize_connection(located, connector))
    must(lambda: plain.terminate_connection(located, connector))
    must(lambda: plain.extend_target(chosen))
    must(lambda: plain.ensure_export(None, chosen, dev))
    located4 = volume(4, provider_auth=made4["auth"], provider_location=made4["location"])
    must(lambda: mutual.initialize_connection(located4, connector))
    must(lambda: mutual.terminate_connection(located4, connector))
    must(lambda: mutual.extend_target(located4))
    must(lambda: mutual.ensure_export(None, located4, dev4))
    h.reboot()
    all_ok(must(lambda: mutual.restore_exports(["volume-4"])))
    all_ok(must(lambda: plain.ensure_exports(None, [(chosen, dev)])))
    all_ok(must(lambda: plain.restore_exports(["volume-1", "volume-2", "volume-3"])))
    h.reboot()
    assert all(d.fixed for d in must(lambda: plain.reconcile(fix=True)))
    assert {d.state for d in must(lambda: plain.reconcile())} == {"ok"}
    assert len(must(lambda: plain.list_exports())) == 4
    assert _secrets_of(plain, 4) == mutual_secrets, "a repair lost the mutual secret"
    # refusals of a secret-bearing input: the error must be this one, and not echo it
    refused(
        lambda: plain.create_export(None, volume(9, provider_auth=f"CHAP u {CHOSEN} extra"), dev),
        "provider_auth",
    )
    refused(
        lambda: plain.create_export(None, volume(9, provider_auth="CHAP u short-Sec"), dev), "CHAP secret"
    )
    refused(
        lambda: h.target(
            use_chap_auth=True, chap_username="operator", chap_password=CONFIGURED + " x"
        ).create_export(None, volume(10), dev),
        "chap_password",
    )
    secrets.add("short-Sec")
    secrets.add(CONFIGURED + " x")

    # the command line, as an operator runs it; each command must do its job (exit 0)
    config = str(h.config_file())
    outputs = []
    for argv in (
        ["show", "1"],
        ["show", "1", "--json"],
        ["list"],
        ["list", "--json"],
        ["ensure", "--all"],
        ["reconcile"],
        ["reconcile", "--fix"],
        ["connection-info", "1", "--initiator", INITIATOR],
        ["connection-info", "1", "--initiator", INITIATOR, "--json"],
        ["export", "1", dev],
        ["--debug", "export", "1", dev, "--json"],
        ["unexport", "3"],
    ):
        operations += 1
        code = cli.main(["--config-file", config, *argv])
        logging.getLogger().addHandler(caplog.handler)  # main() dropped it (force=True)
        out = capsys.readouterr()
        outputs.append(f"{argv}: {out.out}{out.err}")
        assert code == 0, outputs[-1]
    cli.main(["--config-file", config, "show", "1", "--show-secrets"])
    shown = capsys.readouterr().out
    assert CHOSEN in shown, "--show-secrets shows the secret (and proves the probe works)"
    must(lambda: plain.remove_export(None, chosen))
    for status in plain.list_exports():  # any secret a repair generated meanwhile
        secrets |= set(status.spec.secrets())

    secrets.discard("")
    leaks = []
    for record in caplog.records:
        message = record.getMessage()
        leaks += [f"log {record.name}: {message[:120]}" for s in secrets if s in message]
    leaks += [f"error: {e[:120]}" for e in errors for s in secrets if s in e]
    leaks += [f"cli {o[:60]}" for o in outputs for s in secrets if s in o]
    allowed = SECRET_ARGV_ALLOWED.get(h.name, lambda argv: False)
    argv_with_secret = [argv for argv in h.calls if any(s in " ".join(argv) for s in secrets)]
    leaks += [f"argv: {argv[:3]}" for argv in argv_with_secret if not allowed(argv)]
    for path, data in h.snapshot().items():
        if any(s.encode() in data for s in secrets):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                leaks.append(f"file {path} holds a secret with mode {mode:o}")
    assert not leaks, leaks
    assert len(errors) == 3, errors
    figures.add(f"secret hygiene: operations checked [{h.name}]", operations)
    figures.add(f"secret hygiene: log records checked [{h.name}]", len(caplog.records))
    figures.add(f"secret hygiene: child argv checked [{h.name}]", len(h.calls))
    figures.add(f"secret hygiene: argv allowed to carry a secret [{h.name}]", len(argv_with_secret))
    figures.add(f"secret hygiene: leaks [{h.name}]", len(leaks))
