"""Target ids handed out by a counter file, so a create never scans the live targets for one.

IET and tgt both take the tid from the caller (``ietadm --op new --tid=N``,
``tgtadm --op new --tid N``). Finding a free one by listing every target
costs a call whose output grows with the number of exports; a counter
under a lock costs a small file read and write. A tid the counter offers
may still be taken (another program's target, or a reboot that renumbered
everything): the target tool then refuses it and the helper asks again.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from pathlib import Path

from oslo_config import cfg

from iscsi_helper import locking
from iscsi_helper.fileutil import atomic_write, read_text_or_none


class TidCounter:
    """The next tid to try, kept in ``path`` and advanced under the lock ``lock_name``.

    ``lock_name`` is an internal lock (:func:`locking.named_lock`), whose
    namespace no volume's lock can enter.
    """

    def __init__(self, conf: cfg.ConfigOpts, path: Path, lock_name: str) -> None:
        self.conf = conf
        self.path = path
        self.lock_name = lock_name

    def allocate(
        self,
        *,
        skip: Sequence[Container[int]] = (),
        live_tids: Callable[[], Iterable[int]] | None = None,
        reseed: bool = False,
    ) -> int:
        """The next tid in none of the ``skip`` sets (tids known taken); the counter then points past it.

        ``live_tids`` seeds a counter that has never been used (or when
        ``reseed`` asks, because the tids it offered kept being taken) past
        every tid the target shows, so the first create after an upgrade
        or a reboot does not walk through taken ones.
        """
        with locking.named_lock(self.conf, self.lock_name):
            text = (read_text_or_none(self.path) or "").strip()
            tid = int(text) if text.isdigit() and int(text) > 0 else None
            if (tid is None or reseed) and live_tids is not None:
                tid = max([tid or 1, *(t + 1 for t in live_tids())])
            tid = tid or 1
            while any(tid in taken for taken in skip):
                tid += 1
            atomic_write(self.path, f"{tid + 1}\n", mode=0o600)
        return tid
