"""Lint and type checks as part of the suite, so CI fails on a violation (config: pyproject.toml).

``ruff check`` lints the tree, ``ruff format --check`` finds it formatted,
``mypy`` checks the product package strictly and the lab non-strictly. All
run from the repository root on the tools the ``test`` extra installs; none
writes into the source tree (mypy's cache goes to pytest's temporary directory).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _tool(name: str) -> list[str]:
    """The tool of this interpreter's environment (the test extra), run as a module."""
    pytest.importorskip(name, reason=f"{name} comes with the test extra: pip install -e '.[test]'")
    return [sys.executable, "-m", name]


def test_ruff_finds_nothing_to_fix():
    done = subprocess.run(
        [*_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_tree_is_formatted_as_ruff_format_writes_it():
    done = subprocess.run(
        [*_tool("ruff"), "format", "--no-cache", "--check", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_mypy_passes_strict_on_the_product(tmp_path_factory):
    cache = tmp_path_factory.mktemp("mypy-cache")
    done = subprocess.run(
        [*_tool("mypy"), "--cache-dir", str(cache)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_package_declares_its_types_and_ships_the_marker():
    assert (REPO / "src" / "iscsi_helper" / "py.typed").is_file()
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'iscsi_helper = ["py.typed"]' in pyproject, "py.typed must be package data"
