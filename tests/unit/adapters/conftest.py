"""A scripted executor: adapters are tested on the argv they build and on how they read answers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from iscsi_helper.exception import CommandFailed
from iscsi_helper.executor import CommandResult, Executor


class ScriptedExecutor(Executor):
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

    def run(
        self,
        *argv: str,
        ok_codes: Sequence[int] = (0,),
        stdin: str | None = None,
        secrets: Sequence[str] = (),
    ) -> CommandResult:
        self.argvs.append(argv)
        self.secrets.append(tuple(secrets))
        exit_code, stdout, stderr = self.replies.pop(0) if self.replies else (0, "", "")
        if exit_code in ok_codes:
            return CommandResult(argv, exit_code, stdout, stderr)
        raise CommandFailed(command=" ".join(argv[:2]), exit_code=exit_code, stdout=stdout, stderr=stderr)


@pytest.fixture
def executor() -> ScriptedExecutor:
    return ScriptedExecutor()
