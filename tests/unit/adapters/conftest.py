"""A scripted executor: adapters are tested on the argv they build and on how they read answers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from iscsi_helper.lab.rig import AnsweringExecutor


class ScriptedExecutor(AnsweringExecutor):
    """Records each argv (with the secrets declared for it) and answers with the next scripted reply.

    A reply is (exit code, stdout, stderr); an unscripted call succeeds
    silently. A code outside ``ok_codes`` raises as the real executor does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.replies: list[tuple[int, str, str]] = []
        self.argvs: list[tuple[str, ...]] = []
        self.secrets: list[tuple[str, ...]] = []

    def reply(self, exit_code: int, stdout: str = "", stderr: str = "") -> None:
        self.replies.append((exit_code, stdout, stderr))

    def answer(
        self, argv: tuple[str, ...], *, stdin: str | None, ok_codes: Sequence[int], secrets: Sequence[str]
    ) -> tuple[int, str, str]:
        self.argvs.append(argv)
        self.secrets.append(tuple(secrets))
        return self.replies.pop(0) if self.replies else (0, "", "")


@pytest.fixture
def executor() -> ScriptedExecutor:
    return ScriptedExecutor()
