"""Fixtures of the behaviour suite: ``h``, one harness per registered helper."""

from __future__ import annotations

from .harness import harness_fixture

h = harness_fixture()
