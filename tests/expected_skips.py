"""The skips a full run may have, in one place; under CI any other skip is an error.

A skip hides a test: with a tool missing that ``.ci/run`` installs (tgtd,
redis-server, libiscsi...), whole families of tests would skip and the run
would stay green. So when the environment variable ``CI`` is set (``.ci/run``
and CI services set it), ``tests/conftest.py`` turns every skip that is not
listed here into a failure, and every module skipped at collection into a
failed run. Outside CI, skips stay skips (a developer may lack a tool).

A new expected skip is added here with the reason it is expected, never to
silence a missing tool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ExpectedSkip:
    nodeid: str  # the test's node id (relative to the repository); "*" matches anything
    reason: str  # text the skip reason must contain
    why: str  # why it is right for this test not to run


EXPECTED_SKIPS: tuple[ExpectedSkip, ...] = (
    ExpectedSkip(
        "tests/reliability/test_broken_tools.py::"
        "test_broken_tool_gives_one_clear_line_and_reconcile_settles[fake-*]",
        "fake runs no target tool",
        "the fake helper has no tool that could be absent, hang or print garbage (5 tests)",
    ),
    ExpectedSkip(
        "tests/behaviour/test_target_contract.py::test_initiator_acl_follows_initialize_and_terminate[iet]",
        "iet keeps no initiator ACL",
        "IET's helper restricts logins by CHAP only, as Cinder's IetAdm did (supports_acl False)",
    ),
    ExpectedSkip(
        "tests/behaviour/test_operator_contract.py::"
        "test_a_device_swap_needs_force_once_an_initiator_was_granted_access[iet]",
        "iet keeps no initiator ACL",
        "with no ACL, only sessions make an IET export connected; "
        "test_iet_counts_sessions_from_its_session_file checks that",
    ),
    ExpectedSkip(
        "tests/reliability/test_lying_tools.py::*[fake]",
        "fake runs no target tool",
        "the fake helper has no tool that could say yes without acting (3 tests)",
    ),
    ExpectedSkip(
        "tests/reliability/test_reconcile_fields.py::"
        "test_a_repair_the_tool_only_pretended_to_make_is_not_called_fixed[fake]",
        "fake runs no target tool",
        "the fake helper has no tool that could pretend to repair",
    ),
)


def _matches(nodeid: str, pattern: str) -> bool:
    """``pattern`` with ``*`` as the only wildcard (node ids hold brackets: no fnmatch classes)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), nodeid) is not None


def is_expected(nodeid: str, reason: str) -> bool:
    return any(_matches(nodeid, skip.nodeid) and skip.reason in reason for skip in EXPECTED_SKIPS)
