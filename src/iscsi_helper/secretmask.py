"""Keep CHAP secrets out of log records and error messages.

The first defence is never formatting a secret into a message. This module
is the second: while an operation handles a secret it declares it with
:func:`handling_secrets`, and a logging filter on the ``iscsi_helper``
logger replaces any occurrence in any record, whatever code produced it.
The set is per context (a contextvar), so masking costs O(secrets of this
operation), not O(all exports on the node).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterable, Iterator

MASK = "***"

_active: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "iscsi_helper_active_secrets", default=frozenset()
)


@contextlib.contextmanager
def handling_secrets(values: Iterable[str | None]) -> Iterator[None]:
    """Declare secrets for the duration of a block (nestable)."""
    extra = frozenset(v for v in values if v)
    token = _active.set(_active.get() | extra)
    try:
        yield
    finally:
        _active.reset(token)


def mask(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every active secret (and ``extra``) replaced by ``***``."""
    for secret in sorted(_active.get() | frozenset(e for e in extra if e), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class SecretMaskingFilter(logging.Filter):
    """Rewrites a record's final message with active secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _active.get():
            message = record.getMessage()
            masked = mask(message)
            if masked != message:
                record.msg, record.args = masked, None
        return True


def get_logger(name: str) -> logging.Logger:
    """A module logger whose records are masked whatever handler receives them.

    Logger-level filters only see records created on that very logger, so
    every iscsi-helper module takes its logger from here.
    """
    logger = logging.getLogger(name)
    if not any(isinstance(f, SecretMaskingFilter) for f in logger.filters):
        logger.addFilter(SecretMaskingFilter())
    return logger
