"""The log-masking filter, on its own: the second defence must work when the first one slips.

Product code never formats a secret into a message, so the end-to-end
hygiene tests cannot tell whether the filter works at all. Here a message
does carry a declared secret, on purpose, and must reach every handler
masked.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

import pytest

import iscsi_helper
from iscsi_helper import secretmask

SECRET = "Declared-Secret-0042"
OTHER = "Other-Secret-0043"


@pytest.fixture
def logger_and_records():
    """A product-style logger with a list handler of its own (no root handler involved)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = secretmask.get_logger("iscsi_helper.test_secretmask")
    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    yield logger, records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_a_declared_secret_in_a_message_or_its_arguments_reaches_handlers_masked(logger_and_records):
    logger, records = logger_and_records
    with secretmask.handling_secrets([SECRET]):
        logger.info("login with %s failed", SECRET)
        logger.warning(f"tool said: bad password {SECRET}!")
        logger.error("%(who)s used %(what)s", {"who": "user1", "what": SECRET})
    messages = [r.getMessage() for r in records]
    assert len(messages) == 3
    assert all(SECRET not in m for m in messages), messages
    assert messages == ["login with *** failed", "tool said: bad password ***!", "user1 used ***"]


def test_root_handlers_see_the_masked_record_too(caplog):
    logger = secretmask.get_logger("iscsi_helper.test_secretmask.root")
    caplog.set_level(logging.DEBUG)
    with secretmask.handling_secrets([SECRET]):
        logger.debug("argv: tool --password %s", SECRET)
    assert caplog.records and caplog.records[-1].getMessage() == "argv: tool --password ***"
    assert SECRET not in caplog.text


def test_masking_is_scoped_to_the_block_and_nests(logger_and_records):
    logger, records = logger_and_records
    with secretmask.handling_secrets([SECRET]):
        with secretmask.handling_secrets([OTHER, None, ""]):
            logger.info("%s and %s", SECRET, OTHER)
        logger.info("%s and %s", SECRET, OTHER)
    logger.info("after: %s", SECRET)
    assert [r.getMessage() for r in records] == ["*** and ***", f"*** and {OTHER}", f"after: {SECRET}"]


def test_the_longest_secret_is_masked_first():
    """A secret that contains another is masked whole, not left with a readable tail."""
    with secretmask.handling_secrets(["abcdefgh1234", "abcdefgh1234-longer"]):
        assert secretmask.mask("x abcdefgh1234-longer y") == "x *** y"
    assert secretmask.mask("plain", extra=["plain"]) == "***"


def test_get_logger_installs_the_filter_once():
    first = secretmask.get_logger("iscsi_helper.test_secretmask.once")
    second = secretmask.get_logger("iscsi_helper.test_secretmask.once")
    assert first is second
    assert sum(isinstance(f, secretmask.SecretMaskingFilter) for f in first.filters) == 1


def test_every_product_module_logs_through_a_masked_logger():
    """A module that took logging.getLogger() directly would log around the filter."""
    unmasked = []
    for info in pkgutil.walk_packages(iscsi_helper.__path__, "iscsi_helper."):
        if info.name.startswith("iscsi_helper.lab") or info.name.endswith("__main__"):
            continue  # the lab is not the product; __main__ would run the CLI
        try:
            module = importlib.import_module(info.name)
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] == "cinder":
                continue  # the Cinder adapter imports only inside Cinder's venv
            raise
        log = getattr(module, "LOG", None)
        if isinstance(log, logging.Logger) and not any(
            isinstance(f, secretmask.SecretMaskingFilter) for f in log.filters
        ):
            unmasked.append(info.name)
    assert not unmasked, unmasked
