"""The product package's import graph: no circle, and each layer imports only the layers below it.

Layers, lowest first: plumbing (exception, formats, model, fileutil,
...), codecs, adapters, targets (helpers), then registry, cli and the
Cinder adapter on top. A codec or an adapter that imported a helper, or
a helper that imported the CLI, would make the layers one knot again.
"""

from __future__ import annotations

import ast
from pathlib import Path

import iscsi_helper

PACKAGE = Path(iscsi_helper.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_graph() -> dict[str, set[str]]:
    """Each product module (the lab left out) -> the product modules it imports."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "lab" not in p.relative_to(PACKAGE).parts}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(paths)
                imported.update(submodules)
                # "from iscsi_helper import locking" imports the module, not the package's
                # face (its re-exports); only names that are no module reach the face.
                if len(submodules) < len(node.names) or node.module != "iscsi_helper":
                    imported.add(node.module)
        graph[name] = {m for m in imported if m in paths and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_product_package_has_no_import_circle():
    graph = product_graph()
    assert "iscsi_helper.targets.iet" in graph and "iscsi_helper.cli" in graph
    assert cycles(graph) == []


def test_the_cycle_finder_sees_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _layer(module: str) -> int:
    if module == "iscsi_helper":
        return 7  # the package's face re-exports from every layer (its names load lazily)
    for prefix, layer in (
        ("iscsi_helper.codecs", 1),
        ("iscsi_helper.adapters", 2),
        ("iscsi_helper.targets", 3),
        ("iscsi_helper.registry", 4),
        ("iscsi_helper.cli", 5),
        ("iscsi_helper.cliargs", 5),
        ("iscsi_helper.cliviews", 5),
        ("iscsi_helper.cinder", 5),
        ("iscsi_helper.__main__", 6),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return 0


def test_each_layer_imports_only_layers_below_it():
    upward = sorted(
        f"{name} -> {other}"
        for name, imports in product_graph().items()
        for other in imports
        if other != "iscsi_helper"
        or not name.startswith("iscsi_helper.")
        or _imports_more_than_the_version(name)
        if _layer(other) > _layer(name)
        or (_layer(other) == _layer(name) == 1 and other != "iscsi_helper.codecs")
        or (_layer(other) == _layer(name) == 2 and other != "iscsi_helper.adapters")
    )
    assert upward == []


def _imports_more_than_the_version(module: str) -> bool:
    """Whether ``module`` takes from the package face anything but ``__version__`` (a constant)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    names = {
        alias.name
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module == "iscsi_helper"
        for alias in node.names
    }
    modules = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    return bool(names - modules - {"__version__"})


def test_the_package_face_loads_nothing_on_import():
    """``import iscsi_helper`` is cheap (the emulators' shims import it on every call)."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, iscsi_helper; print(sorted(m for m in sys.modules if m.startswith('iscsi_helper')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "['iscsi_helper']"
