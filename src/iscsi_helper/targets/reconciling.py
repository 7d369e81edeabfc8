"""Reconcile: the persisted exports against the target's own state, field by field.

A mixin of :class:`~iscsi_helper.targets.iscsi.IscsiHelper`, over the
primitives declared below. Three promises:

* every field a target's tool can show is compared (device path, LUN,
  portals, CHAP users both ways, ACL; docs/reliability.md says which each
  helper shows), and a drift names the fields that differ;
* what the one listing shows as drift is looked at again with the
  volume's lock held, so an operation in flight (which holds that lock) is
  never reported as drift;
* ``--fix`` says ``fixed`` only after one more look at the target shows
  the export as its record says.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping
from pathlib import Path

from oslo_config import cfg

from iscsi_helper import locking, secretmask, specs
from iscsi_helper.exception import IscsiHelperError, PersistenceError
from iscsi_helper.model import Drift, ExportRecord, ExportSpec, LiveTarget

LOG = secretmask.get_logger(__name__)

State = tuple[str, tuple[str, ...]]


class Reconciling(abc.ABC):
    """``reconcile`` over the helper primitives it names."""

    conf: cfg.ConfigOpts

    @abc.abstractmethod
    def _scan_records(self) -> tuple[list[ExportRecord], list[tuple[str, str]]]:
        """Our records, and the other entries of the records directory with why."""

    @abc.abstractmethod
    def _own_record(self, volume_name: str) -> ExportRecord | None:
        """The record of ``volume_name`` (PersistenceError when it is not one of ours)."""

    @abc.abstractmethod
    def _live_view(self, iqns: Collection[str]) -> Mapping[str, LiveTarget]:
        """The live targets of ``iqns`` (and whatever else one listing shows)."""

    @abc.abstractmethod
    def _inspect(self, iqn: str, record: ExportRecord | None) -> LiveTarget | None:
        """One live target with every field the tool shows."""

    @abc.abstractmethod
    def _live_differences(self, spec: ExportSpec, live: LiveTarget) -> tuple[str, ...]:
        """The fields in which ``live`` differs from ``spec``."""

    @abc.abstractmethod
    def _apply(self, spec: ExportSpec, previous: ExportRecord | None) -> ExportRecord:
        """Make ``spec`` persisted and live."""

    @abc.abstractmethod
    def _apply_seen(self, spec: ExportSpec, previous: ExportRecord | None, live: LiveTarget) -> ExportRecord:
        """``_apply``, knowing what a fresh look showed."""

    @abc.abstractmethod
    def _withdraw(self, volume_name: str, iqn: str) -> None:
        """Stop the target and drop its record."""

    @abc.abstractmethod
    def sweep_temp_files(self) -> list[Path]:
        """Drop temp files of interrupted writes."""

    def _ours(self, iqn: str) -> str | None:
        """The volume name of a live target we could have made (our prefix and template), else None."""
        prefix = self.conf.target_prefix
        if not iqn.startswith(prefix):
            return None
        name = iqn[len(prefix) :]
        return name if specs.template_id(self.conf, name) is not None else None

    def _state_of(self, spec: ExportSpec | None, live: LiveTarget | None) -> State | None:
        """(state, differing fields) of one export; None when neither record nor target exists."""
        if spec is None:
            return None if live is None else ("orphan-live", ())
        if live is None:
            return "missing-live", ()
        differ = self._live_differences(spec, live)
        return ("differs", differ) if differ else ("ok", ())

    def reconcile(self, fix: bool = False, *, stop_orphans: bool = False) -> list[Drift]:
        """Compare persisted exports with the live target; with ``fix``, repair the drift.

        Only targets named with our ``target_prefix`` and a name our
        template produces are ever considered: other software's targets on
        the same node are not ours to touch. Files in the records directory
        that are no record of ours are reported as ``foreign-file`` and
        left alone.
        """
        if fix:
            self.sweep_temp_files()
        records, foreign = self._scan_records()
        by_iqn = {r.spec.iqn: r for r in records}
        live_targets = self._live_view(list(by_iqn))
        report: list[Drift] = []
        for iqn in sorted(set(by_iqn) | {i for i in live_targets if self._ours(i)}):
            record = by_iqn.get(iqn)
            name = record.spec.volume_name if record else str(self._ours(iqn))
            state = self._state_of(record.spec if record else None, live_targets.get(iqn))
            if state is not None and state[0] != "ok":
                state = self._second_look(name, iqn)
            if state is not None:
                report.append(Drift(name, iqn, state[0], fields=state[1]))
        report += [Drift(name, "", "foreign-file", error=why) for name, why in foreign]
        return self._fix(report, stop_orphans) if fix else report

    def _second_look(self, volume_name: str, iqn: str) -> State | None:
        """The state of one export with its lock held: no operation on it is half done now."""
        with locking.volume_lock(self.conf, volume_name):
            try:
                record = self._own_record(volume_name)
            except PersistenceError as err:  # turned unreadable since the scan: reported next time
                LOG.warning("Reconcile skips %s: %s", volume_name, err)
                return None
            return self._state_of(record.spec if record else None, self._inspect(iqn, record))

    def _fix(self, report: list[Drift], stop_orphans: bool) -> list[Drift]:
        """Repair every drift (orphans only with ``stop_orphans``: they may be another tool's or
        host's export), then one more listing decides what is ``fixed``."""
        errors = {
            d.iqn: self._repair(d)
            for d in report
            if d.state not in ("ok", "foreign-file") and (stop_orphans or d.state != "orphan-live")
        }
        if not errors:
            return report
        try:
            after: Mapping[str, LiveTarget] = self._live_view(list(errors))
        except IscsiHelperError as err:
            after = {}
            errors = {iqn: error or f"repair not confirmed: {err}" for iqn, error in errors.items()}
        result: list[Drift] = []
        for drift in report:
            if drift.iqn not in errors:
                result.append(drift)
                continue
            error = errors[drift.iqn] or self._still_wrong(drift, after)
            result.append(
                Drift(drift.volume_name, drift.iqn, drift.state, error is None, error, drift.fields)
            )
        return result

    def _still_wrong(self, drift: Drift, after: Mapping[str, LiveTarget]) -> str | None:
        """Why the export of ``drift`` is not right after its repair (None: it is)."""
        try:
            record = self._own_record(drift.volume_name)
        except PersistenceError as err:
            return str(err)
        now = self._state_of(record.spec if record else None, after.get(drift.iqn))
        if now is None or now[0] == "ok":
            return None
        return f"still {now[0]} after the repair" + (f" (differs in {', '.join(now[1])})" if now[1] else "")

    def _repair(self, drift: Drift) -> str | None:
        """Settle one drift under its volume's lock; the error, or None when the tool said done."""
        try:
            with locking.volume_lock(self.conf, drift.volume_name):
                record = self._own_record(drift.volume_name)
                if record is None:
                    if drift.state == "orphan-live":
                        self._withdraw(drift.volume_name, drift.iqn)
                    return None
                with secretmask.handling_secrets(record.spec.secrets()):
                    live = self._inspect(drift.iqn, record)
                    if live is None:
                        self._apply(record.spec, record)
                    elif self._live_differences(record.spec, live):
                        self._apply_seen(record.spec, record, live)
        except IscsiHelperError as err:
            return str(err)
        return None
