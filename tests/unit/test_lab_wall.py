"""The wall between the product and the lab: no product module imports ``iscsi_helper.lab``."""

from __future__ import annotations

import ast
from pathlib import Path

import iscsi_helper

PACKAGE = Path(iscsi_helper.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_product_module_imports_the_lab():
    product = [p for p in PACKAGE.rglob("*.py") if "lab" not in p.relative_to(PACKAGE).parts]
    assert len(product) > 10  # the walk found the package, not an empty directory
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(
            m for m in _imported_modules(p) if m.startswith("iscsi_helper.lab")
        )
        for p in product
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_walk_sees_a_lab_import_when_there_is_one(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from iscsi_helper.lab import demo\n", encoding="utf-8")
    assert "iscsi_helper.lab.demo" in _imported_modules(module)
