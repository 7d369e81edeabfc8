"""Per-test outcomes from libiscsi's ``iscsi-test-cu`` output (CUnit's verbose mode).

CUnit prints ``  Test: NAME ...`` then whatever the test logs, then
``passed`` or ``FAILED``. libiscsi marks a test that could not run with
``[SKIPPED] reason`` lines but lets CUnit count it as passed, so the run
summary alone cannot tell "works" from "not implemented": this parser reads
each test's own block and reports it as passed, skipped (with its reasons) or
failed. A ``[FAILED]`` printed after a test's verdict belongs to the next
test's setup or the suite's teardown, not to the test, as CUnit counts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER = re.compile(r"^(?:Suite: (?P<suite>.+?)\s*$|  Test: (?P<test>\S+) \.\.\.)", re.MULTILINE)
_VERDICT = re.compile(r"(?:^|\.\.\.)(passed|FAILED)", re.MULTILINE)
_SKIP = re.compile(r"\[SKIPPED\]\s*(.*)")


@dataclass
class Outcome:
    verdict: str  # "passed", "skipped", "failed" or "unfinished"
    skip_reasons: list[str] = field(default_factory=list)
    log: str = ""


def parse(output: str) -> dict[str, Outcome]:
    """``Suite.Test`` -> outcome, for every test CUnit started."""
    results: dict[str, Outcome] = {}
    suite = "?"
    heads = list(_HEADER.finditer(output))
    for i, head in enumerate(heads):
        if head.group("suite"):
            suite = head.group("suite")
            continue
        end = heads[i + 1].start() if i + 1 < len(heads) else len(output)
        block = output[head.end() : end]
        verdict = _VERDICT.search(block)
        name = f"{suite}.{head.group('test')}"
        if verdict is None:
            results[name] = Outcome("unfinished", log=block)
            continue
        before = block[: verdict.start()]
        reasons = [r.strip() for r in _SKIP.findall(before)]
        if verdict.group(1) == "FAILED":
            results[name] = Outcome("failed", reasons, block)
        elif reasons:
            results[name] = Outcome("skipped", reasons, block)
        else:
            results[name] = Outcome("passed", [], block)
    return results
