"""After a change: the target's own state decides success, and a failure says what it left.

A tool's exit code alone is never believed: after an apply the target is
looked at again, and the operation succeeds only if it shows what was
asked (:meth:`Verification._confirm`). A failure after the first change
says, on its one line, what state it left: the record, and the live target
as the tool shows it (:meth:`Verification._changing`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from iscsi_helper.exception import (
    CommandNotExecutable,
    CommandNotFound,
    CommandTimedOut,
    IscsiHelperError,
    OperationFailed,
    Refused,
    TargetCreateFailed,
)
from iscsi_helper.model import ExportRecord, ExportSpec, LiveTarget
from iscsi_helper.targets.primitives import IscsiPrimitives

SETTLE_HINT = "'iscsi-helper reconcile' reports it, 'reconcile --fix' settles it"


class Verification(IscsiPrimitives):
    """The second look after a change, and the state a failure left."""

    def _problem(self, spec: ExportSpec, live: LiveTarget | None) -> str | None:
        """Why ``live`` is not the export ``spec`` describes (None: it is)."""
        if live is None:
            return "the target tool reported success but the target is not live"
        differ = self._live_differences(spec, live)
        if not differ:
            return None
        detail = self._live_differs(spec, live)
        return (
            "the target tool reported success but the live target differs in "
            + ", ".join(differ)
            + (f" ({detail})" if detail else "")
        )

    def _confirm(self, spec: ExportSpec, applied: ExportRecord) -> LiveTarget:
        """Look at the target after an apply: it is done only if the target shows ``spec``."""
        live = self._lookup(spec.iqn, applied)
        problem = self._problem(spec, live)
        if problem is not None:
            raise TargetCreateFailed(volume_id=spec.volume_id, reason=problem)
        assert live is not None
        return live

    def _state_left(self, volume_name: str, iqn: str, error: IscsiHelperError) -> str:
        """What a failed operation left: the record, and (unless the tool is broken) the target."""
        try:
            record = self._read_record(volume_name)
            persisted = "persisted" if record is not None else "not persisted"
        except IscsiHelperError:
            record, persisted = None, "record unreadable"
        if isinstance(error, CommandTimedOut):
            live = "live state unknown (the tool did not answer)"
        else:
            try:
                target = self._inspect(iqn, record)
            except IscsiHelperError:
                live = "live state unknown"
            else:
                live = "not live" if target is None else "live"
                if target is not None and record is not None:
                    differ = self._live_differences(record.spec, target)
                    live += f" (differs in {', '.join(differ)})" if differ else ""
        return f"{volume_name} {persisted}, {live}; {SETTLE_HINT}"

    @contextlib.contextmanager
    def _changing(self, operation: str, volume_name: str, iqn: str) -> Iterator[None]:
        """The part of an operation that may change state: its failures say what they left.

        A refusal raised in here (a value read back from a tool, say) is no
        longer "nothing was changed": it becomes an OperationFailed. A tool
        that is missing or not executable never ran, so the target was not
        touched and the helper put its files back: that line stays as it is.
        """
        try:
            yield
        except Refused as err:
            failure = OperationFailed(operation=f"The {operation} of {volume_name}", reason=str(err))
            raise failure.leaving(self._state_left(volume_name, iqn, failure)) from err
        except (CommandNotFound, CommandNotExecutable):
            raise
        except IscsiHelperError as err:
            err.leaving(self._state_left(volume_name, iqn, err))
            raise
