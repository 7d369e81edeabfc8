"""Runs tests/ecosystem/cinder/ inside the Cinder virtual environment, from the main suite.

Cinder 29.0.0 and its ~150 dependencies live in their own venv
(scripts/cinder-venv.sh, run by scripts/setup.sh), so this is how the main
``python -m pytest`` proves the adapter against real Cinder. In CI a missing
venv is a failure, not a skip: a green run must mean Cinder was exercised.

The venv holds iscsi-helper as an editable install, i.e. a path to one
checkout. It is made per checkout (``.venv-cinder`` in the work tree), and
before anything runs in it this test checks that the ``iscsi_helper`` it
imports is this checkout's file: a venv pointing at another checkout would
test that checkout's code, and pass or fail for the wrong reasons.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

from tests.support.cinder_venv import REPO, cinder_python

OUR_PACKAGE = REPO / "src" / "iscsi_helper" / "__init__.py"


def imported_package(python: Path) -> Path:
    """The iscsi_helper/__init__.py that ``python`` imports, from a neutral working directory."""
    done = subprocess.run(
        [str(python), "-c", "import iscsi_helper; print(iscsi_helper.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return Path(done.stdout.strip()).resolve()


def installed_entry_points(python: Path) -> dict[str, dict[str, str]]:
    """The entry points the venv's iscsi-helper metadata declares, per group."""
    script = (
        "import importlib.metadata as m, json; d = m.distribution('iscsi-helper'); "
        "print(json.dumps([[e.group, e.name, e.value] for e in d.entry_points]))"
    )
    done = subprocess.run([str(python), "-c", script], cwd="/", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found: dict[str, dict[str, str]] = {}
    for group, name, value in json.loads(done.stdout):
        found.setdefault(group, {})[name] = value
    return found


def declared_entry_points() -> dict[str, dict[str, str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {group: dict(points) for group, points in project.get("entry-points", {}).items()}


def test_the_cinder_adapter_passes_inside_real_cinder():
    python = cinder_python("tests/ecosystem/cinder")
    imported = imported_package(python)
    assert imported == OUR_PACKAGE.resolve(), (
        f"the Cinder venv at {python.parent.parent} imports {imported}, not this checkout's "
        f"{OUR_PACKAGE}: run bash scripts/cinder-venv.sh from this checkout"
    )
    # An editable install keeps the metadata of when it was made: helpers are found
    # through its entry points, so they must be this checkout's too.
    declared = declared_entry_points()
    installed = {
        group: points for group, points in installed_entry_points(python).items() if group in declared
    }
    assert installed == declared, (
        "the Cinder venv's iscsi-helper metadata is older than pyproject.toml: "
        "run bash scripts/cinder-venv.sh"
    )
    done = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ecosystem/cinder"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert summary and " passed" in summary[0] and "skipped" not in summary[0], summary
    # eventlet's warnings are filtered where they arise
    # (tests/ecosystem/cinder/conftest.py, by tests/support/cinder_venv.py).
    assert "eventlet" not in done.stdout.lower(), done.stdout[-6000:]
