"""What ``import iscsi_helper`` offers a library user: __all__, typed names, a help() that explains."""

from __future__ import annotations

import ast
import pydoc
import subprocess
import sys
from pathlib import Path

import iscsi_helper

PACKAGE = Path(iscsi_helper.__file__).parent


def test_every_public_name_loads_and_is_what_type_checkers_see():
    assert iscsi_helper.__all__[0] == "__version__"
    assert sorted(iscsi_helper.__all__[1:]) == sorted(iscsi_helper._EXPORTS)
    for name in iscsi_helper.__all__:
        assert getattr(iscsi_helper, name) is not None, name
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    typed = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if node.module and node.module.startswith("iscsi_helper")
    }
    assert typed == set(iscsi_helper._EXPORTS), "TYPE_CHECKING imports and __all__ agree"
    assert iscsi_helper.get_helper is __import__("iscsi_helper.registry").registry.get_helper
    from iscsi_helper.exception import ExportNotFound

    assert iscsi_helper.ExportNotFound is ExportNotFound
    assert "get_helper" in dir(iscsi_helper)


def test_help_explains_the_package_and_its_entry_points():
    text = pydoc.render_doc(iscsi_helper, renderer=pydoc.plaintext)
    description = text.split("DESCRIPTION", 1)[1].split("PACKAGE CONTENTS", 1)[0]
    assert len(description.strip().splitlines()) > 20
    for entry in (
        "new_config",
        "get_helper",
        "TargetHelper",
        "ExportStatus",
        "VolumeProtocol",
        "IscsiHelperError",
        "iscsi-helper",
    ):
        assert entry in description, entry
    assert "class ExportStatus" in text and "get_helper(conf" in text, "names documented too"


def test_py_typed_ships_with_the_package():
    assert (PACKAGE / "py.typed").exists()


def test_the_volume_protocol_is_checked_by_mypy(tmp_path):
    """A user's code type-checks against the contract: a mapping or an object with id and name."""
    good = tmp_path / "good.py"
    good.write_text(
        "from dataclasses import dataclass\n"
        "import iscsi_helper\n\n"
        "@dataclass\nclass MyVolume:\n    id: str\n    name: str\n\n"
        "def use(helper: iscsi_helper.TargetHelper) -> str | None:\n"
        "    status = helper.get_export(MyVolume('1', 'volume-1'))\n"
        "    helper.export({'id': '1', 'name': 'volume-1'}, '/dev/x', force=True)\n"
        "    removed: bool = helper.unexport(iscsi_helper.Volume('1', 'volume-1'))\n"
        "    return None if status is None or not removed else status.provider_location\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import iscsi_helper\n\n"
        "def use(helper: iscsi_helper.TargetHelper) -> None:\n"
        "    helper.get_export(42)\n"
    )
    ok = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(good)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert refused.returncode == 1 and 'Argument 1 to "get_export"' in refused.stdout, refused.stdout
