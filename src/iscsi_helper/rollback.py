"""Undo what an operation already did when a later step of it fails.

A helper changes a target step by step (a file, then the target, then a
LUN, then an account, ...). Each step that changed something pushes its
inverse here; if the operation then fails, the inverses run newest first,
so the target and the files end as they were before the operation began.
One mechanism for every helper, so every rollback behaves and logs alike.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from iscsi_helper import secretmask
from iscsi_helper.exception import IscsiHelperError

LOG = secretmask.get_logger(__name__)


class Rollback:
    """Inverse steps, run newest first when the ``with`` block raises.

    A step that fails while rolling back is logged and the older steps still
    run: the error that started the rollback is the one the caller sees,
    and a half-undone operation is left for ``reconcile`` to settle.
    """

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, step: Callable[[], object]) -> None:
        """Remember how to undo a step that has just succeeded."""
        self._steps.append((what, step))

    def run(self) -> None:
        steps, self._steps = self._steps, []
        for what, step in reversed(steps):
            try:
                step()
            except (IscsiHelperError, OSError) as err:
                LOG.error("Could not roll back %s (%s): %s", self.operation, what, err)

    def __enter__(self) -> Rollback:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.run()
