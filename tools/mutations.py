#!/usr/bin/env python3
"""Break the product on purpose, in a scratch copy, and show which tests catch each breakage.

A test suite proves itself by failing when the behaviour it names breaks.
Each mutation here is one such breakage (an exact text edit of the product),
paired with the tests that must then fail; ``tests/README.md`` maps every
guarantee of the README to them. The script:

1. copies this checkout's files (tracked and untracked, not ignored; no
   ``.git``, no venv) into a temporary directory: the real checkout is only
   ever read;
2. runs every selected check once on the unbroken copy (a check that fails
   there proves nothing, so the script stops);
3. for each mutation, applies its edits, runs its checks, reverts, and
   prints ``caught`` (with the tests that failed) or ``MISSED``.

Each edit is (file, exact old text, new text). The old text must occur
exactly once: the product is being restructured, and a mutation whose
text moved must fail loudly (exit 2, naming it) rather than test nothing.
Update the edit to the new code, keeping the breakage the same.

The ``corpus`` group knocks out, one at a time, each rule that refuses
hostile input, and checks that every case of the hostile-input corpus
(tests/reliability/test_hostile_input.py) that names that rule fails: a case
that still passes without its rule is not testing it.

Not part of the test suite (it runs the suite's tests many times over);
run it by hand or in a scheduled job::

    python3 tools/mutations.py                 # every mutation
    python3 tools/mutations.py --group guarantees
    python3 tools/mutations.py masking-filter-off ietd-conf-prefix-match
    python3 tools/mutations.py --list

Exit status: 0 every mutation caught, 1 some missed, 2 a mutation no longer
applies, 3 a check fails on the unbroken copy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: One pytest run: a test file and an optional -k expression.
Check = tuple[str, str]

BEHAVIOUR = "tests/behaviour/test_target_contract.py"
CRASH = "tests/reliability/test_crash_consistency.py"
HYGIENE = "tests/reliability/test_secret_hygiene.py"
HOSTILE = "tests/reliability/test_hostile_input.py"
CONCURRENCY = "tests/reliability/test_concurrency.py"
HOSTILE_ON_FAKE: Check = (HOSTILE, "hostile_input_is_refused and fake")


@dataclass(frozen=True)
class Edit:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutation:
    name: str
    breaks: str  # the guarantee or behaviour this breaks, in words
    edits: tuple[Edit, ...]
    checks: tuple[Check, ...]
    group: str = "guarantees"
    #: hostile-corpus case ids that must each fail (corpus group)
    cases: frozenset[str] = field(default_factory=frozenset)
    #: tests (a part of their node id) that must each be among the failures
    must_fail: frozenset[str] = field(default_factory=frozenset)


def edit(path: str, old: str, new: str) -> Edit:
    return Edit(path, old, new)


ISCSI = "src/iscsi_helper/targets/iscsi.py"
BULK = "src/iscsi_helper/targets/bulk.py"
REFUSALS = "src/iscsi_helper/targets/refusals.py"
SPECS = "src/iscsi_helper/specs.py"
CHISCSI = "src/iscsi_helper/targets/chiscsi.py"
CHISCSI_LIVE = "src/iscsi_helper/targets/chiscsi_live.py"
CHISCSI_CODEC = "src/iscsi_helper/codecs/chiscsi.py"
IET = "src/iscsi_helper/targets/iet.py"
IETD_CONF = "src/iscsi_helper/codecs/ietd_conf.py"
TGT = "src/iscsi_helper/targets/tgt.py"
FORMATS = "src/iscsi_helper/formats.py"
DEVICE = "src/iscsi_helper/devices.py"
CONFCHECK = "src/iscsi_helper/confcheck.py"

GUARANTEES: list[Mutation] = [
    Mutation(
        "ensure-in-place-reruns-tool",
        "ensure_export of an export already in place re-applies it (re-runs the tool)",
        (
            edit(
                ISCSI,
                "                if not self._already_applied(spec, record, live):\n",
                "                if True:\n",
            ),
        ),
        ((BEHAVIOUR, "ensure_export_preserves_chap_and_is_a_noop_when_in_place"),),
    ),
    Mutation(
        "bulk-ensure-in-place-reruns-tool",
        "ensure_exports/restore re-apply exports already in place",
        (
            edit(
                BULK,
                "                    if record is not None and live is not None and "
                "self._already_applied(spec, record, live):\n",
                "                    if False:\n",
            ),
        ),
        ((BEHAVIOUR, "ensure_exports_in_place_makes_no_tool_call"),),
    ),
    Mutation(
        "masking-filter-off",
        "CHAP secrets masked in every log line (the logging filter does nothing)",
        (
            edit(
                "src/iscsi_helper/secretmask.py",
                "        if _active.get():\n            message = record.getMessage()\n",
                "        if False:\n            message = record.getMessage()\n",
            ),
        ),
        (("tests/unit/test_secretmask.py", ""),),
    ),
    Mutation(
        "tool-output-unmasked-in-errors",
        "a secret a tool echoes is masked in the error raised",
        (
            edit(
                "src/iscsi_helper/executor.py",
                "stdout=secretmask.mask(stdout),\n                    stderr=secretmask.mask(stderr),\n",
                "stdout=stdout,\n                    stderr=stderr,\n",
            ),
        ),
        (("tests/unit/test_executor.py", "masks_declared_secrets"),),
    ),
    Mutation(
        "mutual-chap-ignored",
        "iscsi_mutual_chap gives the target its own secret",
        (
            edit(
                SPECS,
                "    if conf.iscsi_mutual_chap:\n        target_chap = kept",
                "    if False:\n        target_chap = kept",
            ),
        ),
        ((BEHAVIOUR, "mutual_chap"), (HYGIENE, "")),
    ),
    Mutation(
        "chiscsi-mutual-secret-not-written",
        "chiscsi's target file carries the mutual (target) secret",
        (
            edit(
                CHISCSI_CODEC,
                "        if spec.target_chap:\n            lines.append(f'\\tAuth_CHAP_Target=",
                "        if False:\n            lines.append(f'\\tAuth_CHAP_Target=",
            ),
        ),
        ((BEHAVIOUR, "mutual_chap and chiscsi"), (HYGIENE, "chiscsi")),
    ),
    Mutation(
        "ietd-conf-mutual-secret-not-written",
        "ietd.conf carries the mutual account, so it survives a real reboot",
        (
            edit(
                IETD_CONF,
                '    if spec.target_chap:\n        lines.append(f"\\tOutgoingUser',
                '    if False:\n        lines.append(f"\\tOutgoingUser',
            ),
        ),
        ((BEHAVIOUR, "mutual_chap and iet"),),
    ),
    Mutation(
        "chiscsi-no-immediate-rollback",
        "a failed iscsictl -S rolls back at once (the target file is put back)",
        (
            edit(
                CHISCSI,
                "                if old_text is None:\n                    remove_file(path)\n"
                "                elif new_text != old_text:\n"
                "                    atomic_write(path, old_text, mode=0o600)\n",
                "                pass\n",
            ),
        ),
        ((CRASH, "chiscsi and create"),),
    ),
    Mutation(
        "iet-ietd-conf-not-put-back",
        "a failed ietadm step puts the ietd.conf block back at once",
        (
            edit(
                IET,
                '                    rollback.push("ietd.conf", '
                "partial(self.ietd_conf.put_back, spec.iqn, conf_old))\n",
                "                    pass\n",
            ),
        ),
        ((CRASH, "iet and create"),),
    ),
    Mutation(
        "iet-index-not-put-back",
        "a failed ietadm step puts the index record back at once",
        (
            edit(
                IET,
                "                    rollback.push(\n"
                '                        "the index record", partial(put_back, path, '
                "indexed.text if indexed else None)\n"
                "                    )\n",
                "                    pass\n",
            ),
        ),
        ((CRASH, "iet and create"),),
    ),
    Mutation(
        "shared-rollback-off",
        "a failed step undoes the steps already made (IET, tgt: the shared Rollback)",
        (
            edit(
                "src/iscsi_helper/rollback.py",
                "        if exc_type is not None:\n            self.run()\n",
                "        if exc_type is not None:\n            pass\n",
            ),
        ),
        ((CRASH, "iet and create"), (CRASH, "tgt and create")),
    ),
    Mutation(
        "tgt-record-not-put-back",
        "a failed tgtadm step puts the target file back at once",
        (
            edit(
                TGT,
                '                    rollback.push("the record", partial(put_back, path, old_text))\n',
                "                    pass\n",
            ),
        ),
        ((CRASH, "tgt and create"),),
    ),
    Mutation(
        "create-unverified-left-behind",
        "a create whose verification fails leaves nothing behind",
        (
            edit(
                ISCSI,
                "                    except IscsiHelperError:\n"
                "                        # Unconfirmed is not done: the caller treats the export "
                "as failed,\n"
                "                        # so it must not stay behind, live and recorded.\n"
                "                        self._undo(spec, record, applied)\n"
                "                        raise\n",
                "                    except IscsiHelperError:\n                        raise\n",
            ),
        ),
        ((CRASH, "chiscsi and create"),),
    ),
    Mutation(
        "ietd-conf-prefix-match",
        "exact names: removing volume-1 leaves volume-10's ietd.conf block",
        (
            edit(
                IETD_CONF,
                "for name, start, end in iter_blocks(lines) if name == iqn]",
                "for name, start, end in iter_blocks(lines) if name.startswith(iqn)]",
            ),
        ),
        ((BEHAVIOUR, "volume_1_and_volume_10 and iet"),),
    ),
    Mutation(
        "tgt-substring-lookup",
        "exact names: a lookup of volume-1 never finds volume-10",
        (
            edit(
                TGT,
                "        return self.tgtadm.show().get(iqn)\n",
                "        return next((t for name, t in self.tgtadm.show().items() if iqn in name), None)\n",
            ),
        ),
        ((BEHAVIOUR, "volume_1_and_volume_10 and tgt"),),
    ),
    Mutation(
        "comma-check-removed",
        "bad input changes nothing: a device path with a comma (device options) is refused",
        (edit(DEVICE, '_FORBIDDEN = {\n    ",": "a comma",\n', "_FORBIDDEN = {\n"),),
        ((BEHAVIOUR, "rejected_input and fake"), HOSTILE_ON_FAKE),
        cases=frozenset({"dev-comma", "dev-comma-options"}),
        must_fail=frozenset({"test_rejected_input_changes_nothing[fake-device path-2]"}),
    ),
    Mutation(
        "device-checked-after-touching",
        "bad input is refused before any file or target is touched",
        (
            edit(
                SPECS,
                "    device = validate_device_path(volume_path, own_state)\n",
                "    device = volume_path\n",
            ),
            edit(
                REFUSALS, "        validate_device_path(volume_path, self._own_state())\n", "        pass\n"
            ),
        ),
        ((BEHAVIOUR, "rejected_input and chiscsi"),),
    ),
    Mutation(
        "secret-file-world-readable",
        "files holding CHAP secrets are mode 0600",
        (
            edit(
                CHISCSI,
                "                atomic_write(path, new_text, mode=0o600)\n            try:\n",
                "                atomic_write(path, new_text, mode=0o644)\n            try:\n",
            ),
        ),
        ((HYGIENE, "chiscsi"),),
    ),
    Mutation(
        "write-without-fsync",
        "crash-safe persistence: temp file, fsync, rename",
        (
            edit(
                "src/iscsi_helper/fileutil.py",
                "            os.fsync(handle.fileno())\n",
                "            pass\n",
            ),
        ),
        (("tests/unit/test_fileutil.py", ""),),
    ),
    Mutation(
        "chiscsi-lookup-lists-all",
        "constant cost: chiscsi's create/remove never list all targets",
        (
            edit(
                CHISCSI_LIVE,
                "        detail = self.tool.show([iqn])[iqn]\n"
                "        return _live(iqn, detail) if detail is not None else None\n",
                "        return self._list_live().get(iqn)\n",
            ),
        ),
        (("tests/behaviour/test_constant_cost.py", "create_and_remove and chiscsi"),),
    ),
    Mutation(
        "create-forgets-stored-credentials",
        "idempotent: re-exporting keeps the credentials it recorded",
        (edit(SPECS, "        or (kept.chap if kept else None)\n", ""),),
        ((BEHAVIOUR, "create_is_idempotent"),),
    ),
    Mutation(
        "volume-lock-not-inter-process",
        "concurrent: every state change holds a per-volume inter-process lock",
        (
            edit(
                "src/iscsi_helper/locking.py",
                "                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n",
                "                pass\n",
            ),
        ),
        ((BEHAVIOUR, "two_processes and fake"), (CONCURRENCY, "eight_processes and fake")),
    ),
    Mutation(
        "distributed-lock-off",
        "concurrent across hosts: coordination_url locks are shared",
        (
            edit(
                "src/iscsi_helper/locking.py",
                "            acquired = lock.acquire(blocking=timeout)\n",
                "            acquired = True\n",
            ),
            edit("src/iscsi_helper/locking.py", "            lock.release()\n", "            pass\n"),
        ),
        ((CONCURRENCY, "cannot_interleave"),),
    ),
    Mutation(
        "cli-invalid-input-exits-1",
        "exit code 2 for bad usage or invalid input",
        (
            edit(
                "src/iscsi_helper/clisupport.py",
                "        elif isinstance(err, REFUSED):\n            code = EXIT_USAGE\n",
                "        elif isinstance(err, REFUSED):\n            code = EXIT_FAILED\n",
            ),
        ),
        (("tests/unit/test_cli.py", ""),),
    ),
    Mutation(
        "cli-failure-exits-2",
        "exit code 1 when the operation failed",
        (
            edit(
                "src/iscsi_helper/clisupport.py",
                "        else:\n            code = EXIT_FAILED\n",
                "        else:\n            code = EXIT_USAGE\n",
            ),
        ),
        (("tests/unit/test_cli.py", ""),),
    ),
    # -- the operator's front door (issue 15)
    Mutation(
        "cli-not-found-exits-1",
        "exit code 3 for no such export",
        (
            edit(
                "src/iscsi_helper/clisupport.py",
                "            code = EXIT_NOT_FOUND\n",
                "            code = EXIT_FAILED\n",
            ),
        ),
        (("tests/unit/test_cli.py", "failures_are_one_line"),),
    ),
    Mutation(
        "orphans-stopped-unasked",
        "reconcile --fix stops orphan targets only with --stop-orphans",
        (
            edit(
                "src/iscsi_helper/targets/reconciling.py",
                '            if d.state not in ("ok", "foreign-file") and '
                '(stop_orphans or d.state != "orphan-live")\n',
                '            if d.state not in ("ok", "foreign-file") and True\n',
            ),
        ),
        (
            ("tests/behaviour/test_operator_contract.py", "orphans_only_when_asked"),
            ("tests/unit/test_cli.py", "reconcile_names_volume_ids"),
        ),
    ),
    Mutation(
        "device-swap-unchecked",
        "export refuses another device under connected initiators unless forced",
        (
            edit(
                ISCSI,
                "                    self._check_device_swap(vol, spec, record, force)  "
                "# before any change\n",
                "                    pass\n",
            ),
        ),
        (("tests/behaviour/test_operator_contract.py", "device_swap_needs_force or sessions"),),
    ),
    Mutation(
        "access-check-off",
        "a path this user cannot write is one line before anything is touched",
        (edit(REFUSALS, "        access.check(self._access_needs())\n", "        pass\n"),),
        (("tests/ecosystem/test_unprivileged.py", "cannot_create or cannot_write or needs"),),
    ),
    Mutation(
        "backend-section-ignored",
        "cinder.conf read as Cinder reads it: a backend's section, then [backend_defaults]",
        (
            edit(
                "src/iscsi_helper/options.py",
                "        conf.set_override(opt.dest, _literal(value))\n",
                "        pass\n",
            ),
        ),
        (("tests/unit/test_cli_cinder_conf.py", ""), ("tests/unit/test_options.py", "backend")),
    ),
    Mutation(
        "held-port-served-anyway",
        "a portal the emulated data path cannot bind fails the export",
        (
            edit(
                "src/iscsi_helper/lab/emulators/serving.py",
                "    service(run_dir).publish(target, every_portal=True)\n",
                "    service(run_dir).publish(target)\n",
            ),
        ),
        (("tests/e2e/test_port_taken.py", "iet"),),
    ),
]


REJECTED_ON_FAKE: Check = (BEHAVIOUR, "rejected_input and fake")


def rule(
    name: str,
    path: str,
    old: str,
    new: str,
    cases: Iterable[str],
    rejected: Iterable[str] = (),
    helper: str = "fake",
) -> Mutation:
    """One refusal rule knocked out; the corpus cases (and the behaviour suite's rejected-input
    cases, by test id) that name it must fail.

    The corpus runs on the fake helper (no tool, fast) unless the rule is one helper's own
    (IET's ietd.conf path, tgt's bsoflags, chiscsi's ACL name kinds): then on that helper.
    """
    must_fail = frozenset(f"test_rejected_input_changes_nothing[fake-{r}]" for r in rejected)
    hostile: Check = (HOSTILE, f"hostile_input_is_refused and {helper}")
    checks = (hostile, REJECTED_ON_FAKE) if must_fail else (hostile,)
    return Mutation(
        f"rule-{name}",
        f"hostile input: the {name} rule",
        (edit(path, old, new),),
        checks,
        group="corpus",
        cases=frozenset(cases),
        must_fail=must_fail,
    )


NAME_CASES = [
    "name-slash",
    "name-dotdot",
    "name-dotdot-only",
    "name-abs",
    "name-newline",
    "name-nul",
    "name-dquote",
    "name-squote",
    "name-equals",
    "name-comma",
    "name-space",
    "name-tab",
    "name-cyrillic-e",
    "name-fullwidth",
    "name-upper",
    "name-empty",
    "name-leading-dash",
    "name-hash",
    "name-semicolon",
]
CHAP_CHARS = '_CHAP_CHARS = frozenset(string.ascii_letters + string.digits + "'

CORPUS: list[Mutation] = [
    rule(
        "volume-name-alphabet",
        FORMATS,
        "    if not isinstance(name, str) or not _VOLUME_NAME.fullmatch(name):\n",
        "    if not isinstance(name, str):\n",
        NAME_CASES,
        ["volume name-4", "volume name-5", "volume name-6"],
    ),
    rule(
        "volume-name-length",
        FORMATS,
        "    if len(name) > MAX_ISCSI_NAME_BYTES:\n"
        '        raise InvalidInput(\n            field="volume name"',
        '    if False:\n        raise InvalidInput(\n            field="volume name"',
        ["name-300-bytes"],
    ),
    rule(
        "volume-id-empty",
        FORMATS,
        "    if not isinstance(volume_id, str) or not volume_id:\n",
        "    if not isinstance(volume_id, str):\n",
        ["id-empty"],
    ),
    rule(
        "volume-id-alphabet",
        FORMATS,
        "    if not _VOLUME_NAME.fullmatch(volume_id):\n",
        "    if False:\n",
        ["id-newline", "id-slash", "id-nul", "id-space", "id-cyrillic"],
    ),
    rule(
        "volume-id-length",
        FORMATS,
        "    if len(volume_id) > MAX_ISCSI_NAME_BYTES:\n",
        "    if False:\n",
        ["id-300-bytes"],
    ),
    rule(
        "iqn-length",
        FORMATS,
        '    if len(name.encode("utf-8")) > MAX_ISCSI_NAME_BYTES:\n',
        "    if False:\n",
        ["name-too-long-for-iqn", "prefix-too-long"],
        ["target IQN-7"],
    ),
    rule(
        "iqn-syntax",
        FORMATS,
        "        if not match:\n            raise InvalidInput(\n",
        "        if False:\n            raise InvalidInput(\n",
        ["prefix-upper", "prefix-space", "prefix-newline", "prefix-underscore", "prefix-short-year"],
    ),
    rule(
        "iqn-month",
        FORMATS,
        '        if not 1 <= int(match["month"]) <= 12:\n',
        "        if False:\n",
        ["prefix-month-13"],
    ),
    rule(
        "iscsi-name-kind",
        FORMATS,
        '    raise InvalidInput(\n        field=field, value=_show(name), reason="must be an iqn., eui.',
        "    return name\n    raise InvalidInput(\n"
        '        field=field, value=_show(name), reason="must be an iqn., eui.',
        ["prefix-no-iqn", "prefix-eui-short", "prefix-eui-lower", "prefix-naa", "initiator-not-iscsi"],
    ),
    rule(
        "chap-empty",
        FORMATS,
        "    if not isinstance(value, str) or not value:\n"
        '        raise InvalidInput(field=field, value=shown, reason="must not be empty")',
        "    if not isinstance(value, str):\n"
        '        raise InvalidInput(field=field, value=shown, reason="must not be empty")',
        ["conf-chap-empty-secret", "conf-chap-empty-name"],
    ),
    rule(
        "chap-whitespace",
        FORMATS,
        CHAP_CHARS,
        CHAP_CHARS.replace('+ "', '+ " \\t" + "'),
        ["conf-chap-space", "conf-chap-name-space", "conf-chap-tab"],
    ),
    rule(
        "chap-double-quote",
        FORMATS,
        CHAP_CHARS,
        CHAP_CHARS.replace('+ "', "+ '\"' + \""),
        ["auth-quote-secret", "auth-quote-name", "conf-chap-quote", "conf-chap-name-quote"],
    ),
    rule(
        "chap-backslash", FORMATS, CHAP_CHARS, CHAP_CHARS.replace('+ "', '+ "\\\\" + "'), ["auth-backslash"]
    ),
    rule("chap-control", FORMATS, CHAP_CHARS, CHAP_CHARS.replace('+ "', '+ "\\x07" + "'), ["auth-control"]),
    rule(
        "chap-non-ascii", FORMATS, CHAP_CHARS, CHAP_CHARS.replace('+ "', '+ "\\u00e9" + "'), ["auth-nonascii"]
    ),
    rule(
        "chap-comma",
        FORMATS,
        CHAP_CHARS,
        CHAP_CHARS.replace('+ "', '+ "," + "'),
        ["auth-comma-secret", "auth-comma-name"],
    ),
    rule(
        "chap-too-long",
        FORMATS,
        "    if len(value) > limit:\n",
        "    if False:\n",
        ["auth-long-secret", "auth-long-name", "conf-chap-long"],
    ),
    rule(
        "chap-too-short",
        FORMATS,
        "    if secret and len(value) < CHAP_SECRET_MIN:\n",
        "    if False:\n",
        ["auth-short-secret", "auth-11-bytes", "conf-chap-short"],
        ["CHAP secret-9"],
    ),
    rule(
        "provider-auth-format",
        FORMATS,
        '    if len(parts) != 3 or parts[0] != "CHAP":\n',
        "    if False:\n",
        [
            "auth-one-word",
            "auth-four-words",
            "auth-not-chap",
            "auth-trailing-space",
            "auth-tab",
            "auth-double-space",
        ],
        ["provider_auth-8"],
    ),
    rule(
        "ip-empty",
        FORMATS,
        "    if not isinstance(ip, str) or not ip:\n",
        "    if not isinstance(ip, str):\n",
        ["ip-empty"],
    ),
    rule("ip-zone-id", FORMATS, '    if "%" in text:\n', "    if False:\n", ["ip-zone-id", "secondary-zone"]),
    rule(
        "ip-address",
        FORMATS,
        "    except ValueError:\n        raise InvalidInput(field=field, value=_show(ip), "
        'reason="not an IPv4 or IPv6 address") from None\n',
        "    except ValueError:\n        return text\n",
        ["ip-octet-999", "ip-hostname", "ip-with-port", "ip-cidr", "ip-space", "secondary-bad"],
    ),
    rule("port-range", FORMATS, "    if not 1 <= number <= 65535:\n", "    if False:\n", ["port-0"]),
    rule(
        "device-empty",
        DEVICE,
        "    if not isinstance(path, str) or not path:\n",
        "    if not isinstance(path, str):\n",
        ["dev-empty"],
    ),
    rule(
        "device-comma",
        DEVICE,
        '    ",": "a comma",\n',
        "",
        ["dev-comma", "dev-comma-options"],
        ["device path-2"],
    ),
    rule("device-double-quote", DEVICE, ' \'"\': "a double quote",', "", ["dev-dquote"]),
    rule("device-newline", DEVICE, ' "\\n": "a newline",', "", ["dev-newline"]),
    rule("device-carriage-return", DEVICE, '    "\\r": "a carriage return",\n', "", ["dev-carriage-return"]),
    rule("device-nul", DEVICE, '    "\\x00": "a NUL byte",\n', "", ["dev-nul"]),
    rule("device-equals", DEVICE, ' "=": "\'=\'",', "", ["dev-equals"]),
    rule("device-hash", DEVICE, '    "#": "\'#\'",\n', "", ["dev-hash"]),
    rule("device-backslash", DEVICE, '    "\\\\": "a backslash",\n', "", ["dev-backslash"]),
    rule(
        "device-whitespace",
        DEVICE,
        "    if any(c.isspace() for c in path):\n",
        "    if False:\n",
        ["dev-space"],
    ),
    rule(
        "device-printable-ascii",
        DEVICE,
        "    if not path.isascii() or not path.isprintable():\n",
        "    if False:\n",
        ["dev-nonascii", "dev-control"],
    ),
    rule(
        "device-absolute",
        DEVICE,
        "    if not os.path.isabs(path):\n",
        "    if False:\n",
        ["dev-relative"],
        ["device path-3"],
    ),
    rule(
        "device-exists",
        DEVICE,
        '    except FileNotFoundError:\n        raise InvalidInput(field="device path", '
        'value=repr(path), reason="does not exist") from None\n',
        "    except FileNotFoundError:\n        return path\n",
        ["dev-missing", "dev-dangling-link"],
        ["device path-0"],
    ),
    rule(
        "device-file-or-block",
        DEVICE,
        "    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):\n",
        "    if False:\n",
        ["dev-directory", "dev-char-device"],
        ["device path-1"],
    ),
    # issue 13
    rule(
        "device-kernel-view",
        DEVICE,
        "    for root in _KERNEL_VIEWS:\n",
        "    for root in ():\n",
        ["dev-proc-environ", "dev-sys"],
    ),
    rule(
        "device-own-state",
        DEVICE,
        "    for own in own_state:\n",
        "    for own in ():\n",
        ["dev-ietd-conf", "dev-chiscsi-conf", "dev-record", "dev-lock-file"],
    ),
    rule(
        "volume-name-from-template",
        SPECS,
        "    if template_id(conf, name) is None:\n",
        "    if False:\n",
        ["name-not-template"],
    ),
    rule(
        "portal-unicast",
        FORMATS,
        "    if problem:\n        raise InvalidInput(\n            field=field,\n",
        "    if False:\n        raise InvalidInput(\n            field=field,\n",
        [
            "ip-unspecified",
            "ip-unspecified-v6",
            "ip-multicast",
            "ip-multicast-v6",
            "ip-broadcast",
            "ip-reserved",
            "secondary-multicast",
        ],
    ),
    rule(
        "decimal-digits",
        FORMATS,
        "    if isinstance(text, str) and text.isascii() and text.isdigit():\n",
        "    if isinstance(text, str):\n",
        [
            "loc-lun-negative",
            "loc-lun-underscore",
            "loc-tid-underscore",
            "loc-lun-arabic-digit",
            "loc-tid-fullwidth-digit",
            "loc-port-plus",
        ],
    ),
    rule(
        "initiator-ascii", FORMATS, "    if not name.isascii():\n", "    if False:\n", ["initiator-non-ascii"]
    ),
    rule(
        "option-values",
        CONFCHECK,
        '            _read(conf, opt, None if group == "DEFAULT" else group)\n',
        "            pass\n",
        [
            "conf-port-65536",
            "conf-port-abc",
            "conf-timeout-zero",
            "conf-iotype-bogus",
            "conf-chap-maybe",
            "conf-protocol-bogus",
        ],
    ),
    rule(
        "option-finite",
        CONFCHECK,
        "    if isinstance(opt, cfg.FloatOpt) and value is not None and not math.isfinite(value):\n",
        "    if False:\n",
        ["conf-timeout-nan", "conf-timeout-inf", "conf-lock-timeout-nan"],
    ),
    rule(
        "option-reference",
        CONFCHECK,
        "    except (cfg.NoSuchOptError, cfg.TemplateSubstitutionError):\n",
        "    except ZeroDivisionError:\n",
        ["conf-dollar", "conf-secret-dollar"],
    ),
    rule(
        "template-one-s",
        CONFCHECK,
        '    if template.count("%s") != 1 or template.count("%") != 1:\n',
        "    if False:\n",
        ["conf-template-no-s", "conf-template-two", "conf-template-percent-d"],
    ),
    rule(
        "template-valid-names",
        CONFCHECK,
        "        validate_volume_name(template % _SAMPLE_ID)\n",
        "        pass\n",
        ["conf-template-dotdot", "conf-template-slash"],
    ),
    rule(
        "path-kind",
        CONFCHECK,
        '        if kind == "directory" and not os.path.isdir(path):\n',
        "        if False:\n",
        ["conf-volumes-dir-file", "conf-lock-path-file"],
    ),
    rule(
        "path-not-directory",
        CONFCHECK,
        '        if kind == "file" and os.path.isdir(path):\n',
        "        if False:\n",
        ["conf-iet-conf-directory"],
        helper="iet",
    ),
    rule(
        "tgt-bsoflags",
        TGT,
        "        if flags and flags not in BSOFLAGS:\n",
        "        if False:\n",
        ["conf-bsoflags"],
        helper="tgt",
    ),
    rule(
        "acl-name-kinds",
        REFUSALS,
        "        if self.supports_acl and not initiator.startswith(self.acl_name_kinds):\n",
        "        if False:\n",
        ["initiator-naa-chiscsi"],
        helper="chiscsi",
    ),
]

MUTATIONS = GUARANTEES + CORPUS


class MutationOutdated(Exception):
    """An edit's old text is not in the file exactly once: the code moved on."""


# ---------------------------------------------------------------- scratch copy


def scratch_copy(destination: Path) -> Path:
    """Copy the checkout's tracked and untracked (not ignored) files; never touch the original."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if not source.is_file():
            continue  # deleted in the work tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination


def apply(root: Path, mutation: Mutation) -> dict[Path, str]:
    """Apply every edit of ``mutation``; returns the original texts for :func:`revert`."""
    originals: dict[Path, str] = {}
    for change in mutation.edits:
        path = root / change.path
        current = path.read_text(encoding="utf-8")
        originals.setdefault(path, current)
        found = current.count(change.old)
        if found != 1:
            revert(originals)
            raise MutationOutdated(
                f"{mutation.name}: {change.path}: the old text occurs {found} times, not once: "
                f"{change.old[:70]!r}..."
            )
        path.write_text(current.replace(change.old, change.new), encoding="utf-8")
    return originals


def revert(originals: dict[Path, str]) -> None:
    for path, text in originals.items():
        path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- running


@dataclass
class Outcome:
    passed: bool
    failed_tests: list[str]
    output: str
    seconds: float


def run_check(root: Path, check: Check) -> Outcome:
    path, keyword = check
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rf",
        "-p",
        "no:cacheprovider",
        "--tb=short",
        "-vv" if path == HOSTILE else "-q",
        path,
    ]
    if keyword:
        argv += ["-k", keyword]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"), env.get("PYTHONPATH")]))
    env["CI"] = "1"  # an unexpected skip fails, as in CI
    env.pop("ISCSI_HELPER_RELIABILITY_REPORT", None)
    started = time.monotonic()
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
    failed = re.findall(r"^(?:FAILED|ERROR) (tests/.+?)(?: - .*)?$", done.stdout, re.M)
    if done.returncode != 0 and not failed:
        failed = [f"{path} (exit {done.returncode})"]
    return Outcome(done.returncode == 0, failed, done.stdout + done.stderr, time.monotonic() - started)


#: a line of the hostile test's failure message: "<case id>-<operation>: <what went wrong>"
CASE_KEY = re.compile(r"^E?\s*([a-z0-9-]+)-(?:create|ensure|remove|connect): ", re.M)


def failed_cases(output: str) -> set[str]:
    return set(CASE_KEY.findall(output))


def corpus_case_ids(root: Path) -> set[str]:
    """Every case id of the hostile corpus, as the copy's test module defines them."""
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tests.reliability.test_hostile_input import CASES; print(' '.join(c.id for c in CASES))",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def describe(check: Check) -> str:
    return f"{check[0]}" + (f" -k '{check[1]}'" if check[1] else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all of --group)")
    parser.add_argument("--group", choices=["guarantees", "corpus", "all"], default="all")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)

    chosen = [m for m in MUTATIONS if args.group in ("all", m.group)]
    if args.names:
        unknown = set(args.names) - {m.name for m in MUTATIONS}
        if unknown:
            parser.error(f"unknown mutations: {sorted(unknown)}")
        chosen = [m for m in MUTATIONS if m.name in args.names]
    if args.list:
        for m in chosen:
            print(f"{m.name:40} {m.group:10} {m.breaks}")
        return 0

    root = Path(tempfile.mkdtemp(prefix="iscsi-helper-mutations-"))
    root.chmod(0o755)  # tests/ecosystem/test_unprivileged.py runs the copy as user nobody
    try:
        scratch_copy(root)
        print(f"scratch copy: {root}")
        for m in chosen:  # every edit must still apply before anything runs
            revert(apply(root, m))
        if any(m.group == "corpus" for m in chosen) and not args.names:
            untied = corpus_case_ids(root) - {c for m in CORPUS for c in m.cases}
            if untied:
                print(f"hostile-corpus cases tied to no rule here: {sorted(untied)}")
                return 2
        checks = sorted({c for m in chosen for c in m.checks})
        for check in checks:
            outcome = run_check(root, check)
            print(
                f"baseline {'ok  ' if outcome.passed else 'FAIL'} {outcome.seconds:5.1f}s {describe(check)}",
                flush=True,
            )
            if not outcome.passed:
                print(outcome.output[-4000:])
                return 3
        missed = 0
        rows = []
        for m in chosen:
            originals = apply(root, m)
            try:
                outcomes = {c: run_check(root, c) for c in m.checks}
            finally:
                revert(originals)
            caught_by = [t for o in outcomes.values() for t in o.failed_tests]
            uncaught_cases: set[str] = set()
            if m.cases:
                seen = set().union(*(failed_cases(o.output) for c, o in outcomes.items() if c[0] == HOSTILE))
                uncaught_cases = set(m.cases) - seen
            unfailed = sorted(t for t in m.must_fail if not any(t in f for f in caught_by))
            ok = bool(caught_by) and not uncaught_cases and not unfailed
            missed += not ok
            seconds = sum(o.seconds for o in outcomes.values())
            verdict = "caught" if ok else "MISSED"
            print(f"{verdict:6} {seconds:6.1f}s {m.name}: {m.breaks}", flush=True)
            for test in caught_by:
                print(f"         failed: {test}")
            if m.cases:
                print(
                    f"         corpus cases failing: {len(m.cases) - len(uncaught_cases)}"
                    f"/{len(m.cases)}"
                    + (f"; still passing: {sorted(uncaught_cases)}" if uncaught_cases else "")
                )
            if unfailed:
                print(f"         still passing: {unfailed}")
            rows.append((m.name, verdict))
        print(f"\n{len(rows) - missed} of {len(rows)} mutations caught")
        return 1 if missed else 0
    except MutationOutdated as err:
        print(f"mutation no longer applies: {err}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
