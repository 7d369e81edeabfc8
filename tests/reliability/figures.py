"""Counts the reliability tests produce, printed at the end of the run and written for the docs.

Each test adds what it tried (inputs rejected, fault points injected and
recovered, operations run concurrently, losses found) so the figures in
``docs/reliability.md`` come from a run rather than from hand counting.
"""

from __future__ import annotations

import json
import os
from collections import Counter

FIGURES: Counter[str] = Counter()
REPORT_ENV = "ISCSI_HELPER_RELIABILITY_REPORT"


def add(name: str, amount: int = 1) -> None:
    FIGURES[name] += amount


def render() -> str:
    return "\n".join(f"{name:55} {FIGURES[name]}" for name in sorted(FIGURES))


def write_report() -> None:
    path = os.environ.get(REPORT_ENV)
    if path and FIGURES:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(dict(sorted(FIGURES.items())), handle, indent=2)
            handle.write("\n")
