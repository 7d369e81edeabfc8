"""The command line uses the helper contract only: no private attribute of anything it did not define."""

from __future__ import annotations

import ast
import inspect

import pytest

from iscsi_helper import cli, cliargs, clisupport, cliviews
from iscsi_helper.targets.base import TargetHelper


def _private_attributes(source: str) -> list[str]:
    """``x._name`` accesses in ``source``, except on names the module itself defines."""
    tree = ast.parse(source)
    own = {node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    return sorted(
        f"{ast.unparse(node.value)}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in own)
    )


@pytest.mark.parametrize("module", [cli, cliargs, cliviews, clisupport], ids=lambda m: m.__name__)
def test_the_cli_reaches_no_private_attribute(module):
    assert _private_attributes(inspect.getsource(module)) == []


def test_the_check_sees_a_private_call():
    assert _private_attributes("def f(t):\n    return t._list_records()\n") == ["t._list_records"]


def test_every_command_calls_only_public_methods_of_the_contract():
    public = {name for name in dir(TargetHelper) if not name.startswith("_")}
    called = {
        node.attr
        for node in ast.walk(ast.parse(inspect.getsource(cli)))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "helper"
    }
    assert called and called <= public, called - public
