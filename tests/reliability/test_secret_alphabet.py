"""Secrets are masked by value, whatever characters they hold: a property over each helper's alphabet.

Masking that works on text a formatter already changed (a quoted argv, a
regex that stops at ``'`` or ``^``) lets a fragment through. Here
hypothesis draws secrets from the full CHAP alphabet a helper accepts
(``'``, ``^``, ``$``, ``\\``-free but every other printable ASCII mark,
regex metacharacters included), exports with one through the library,
then runs the command line with ``--debug`` through show, list, a
re-export, connection-info, reconcile, a reboot, ``ensure --all``,
``reconcile --fix`` and unexport. Neither the secret nor any 8-character
fragment of it may appear in a log record, stdout, stderr, or the argv of
any child process, except the one call per tool that has no other channel
for it (``ietadm --op new --user``, ``tgtadm --mode account --op new``;
docs/reliability.md names them).
"""

from __future__ import annotations

import logging
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iscsi_helper import cli
from iscsi_helper.executor import CommandResult, Executor

from . import figures
from .conftest import make_device, volume
from .test_secret_hygiene import SECRET_ARGV_ALLOWED

#: Every character formats.validate_chap_credential accepts in a secret.
CHAP_ALPHABET = string.ascii_letters + string.digits + "!#$%&'()*+-./:;<=>?@[]^_`{|}~"
#: What each helper's target takes on top (chiscsi reads '#' as a comment and keeps
#: secrets to 12-16 characters: docs/helpers/chiscsi.md).
ALPHABETS = {"chiscsi": CHAP_ALPHABET.replace("#", "")}
FRAGMENT = 8
USER = "hygiene-user"
INITIATOR = "iqn.1993-08.org.debian:01:alphabet"


def _fragments(secret: str) -> set[str]:
    return {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)} | {secret}


def _flow(h: Any, secret: str, caplog: Any, capsys: Any, argvs: list[tuple[str, ...]]) -> list[str]:
    """Export with ``secret`` through the library, then the CLI with --debug: every text it made."""
    argvs.clear()
    first_record = len(caplog.records)
    dev = make_device(h, "alphabet")
    h.target().create_export(None, volume(1, provider_auth=f"CHAP {USER} {secret}"), dev)
    config = str(h.config_file())
    outputs: list[str] = []
    for argv in (
        ["show", "1"],
        ["list", "--json"],
        ["export", "1", dev, "--json"],
        ["connection-info", "1", "--initiator", INITIATOR],
        ["reconcile"],
        None,
        ["ensure", "--all"],
        ["reconcile", "--fix"],
        ["show", "1", "--json"],
        ["unexport", "1"],
    ):
        if argv is None:
            h.reboot()
            continue
        code = cli.main(["--config-file", config, "--debug", *argv])
        logging.getLogger().addHandler(caplog.handler)  # main() dropped it (force=True)
        out = capsys.readouterr()
        outputs.append(f"{argv}: {out.out}{out.err}")
        assert code == 0, outputs[-1]
    logged = "Running" if h.name != "fake" else "iscsi_helper."  # the fake runs no tool
    assert any(logged in o for o in outputs), "--debug logged nothing: nothing was checked"
    return outputs + [f"log {r.name}: {r.getMessage()}" for r in caplog.records[first_record:]]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
def test_no_secret_or_fragment_of_it_reaches_logs_output_or_argv(
    h, data, caplog, capsys, monkeypatch, root_logging
):
    alphabet = ALPHABETS.get(h.name, CHAP_ALPHABET)
    marks = "".join(c for c in alphabet if not c.isalnum())
    # Any character of the alphabet anywhere, and always a punctuation mark early with
    # at least nine characters after it: what a masker that stops at a quote or a regex
    # metacharacter lets through. At least six different characters: the property is
    # about characters, not repetition.
    secret = data.draw(
        st.builds(
            lambda head, mark, tail: head + mark + tail,
            st.text(alphabet, min_size=2, max_size=5),
            st.sampled_from(marks),
            st.text(alphabet, min_size=9, max_size=10),
        ).filter(lambda s: len(set(s)) >= 6),
        label="secret",
    )
    argvs: list[tuple[str, ...]] = []
    real_run = Executor.run

    def recording_run(self: Executor, *argv: str, **kwargs: Any) -> CommandResult:
        argvs.append(tuple(argv))
        return real_run(self, *argv, **kwargs)

    monkeypatch.setattr(Executor, "run", recording_run)
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    # A control run with a secret of another alphabet says which text the flow prints
    # anyway: hypothesis likes strings from the code under test ("target_lun"), and a
    # fragment that also shows without the secret is not a leak of it.
    control: str = getattr(h, "alphabet_control", "")
    if not control:
        control = "\n".join(
            _flow(h, "Control-Secret-9", caplog, capsys, argvs) + [" ".join(a) for a in argvs]
        )
        h.alphabet_control = control
    texts = _flow(h, secret, caplog, capsys, argvs)
    fragments = {f for f in _fragments(secret) if f not in control}
    leaks = [text[:120] for text in texts if any(f in text for f in fragments)]
    allowed = SECRET_ARGV_ALLOWED.get(h.name, lambda argv: False)
    carrying = [argv for argv in argvs if any(f in " ".join(argv) for f in _fragments(secret))]
    leaks += [f"argv {argv[:4]}" for argv in carrying if not allowed(argv)]
    assert not leaks, (secret, leaks)
    assert secret not in control
    figures.add(f"secret alphabet: secrets drawn, no fragment leaked [{h.name}]")
    figures.add(f"secret alphabet: child argv checked [{h.name}]", len(argvs))
    figures.add(f"secret alphabet: argv carrying one by necessity [{h.name}]", len(carrying))
