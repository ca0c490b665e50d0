"""The fscc package is sans-IO: standard library and smbcad.proto only (shared/STYLE.md),
no module past ~500 lines, and every decoded structure frozen."""

import ast
import dataclasses
import inspect
import pathlib
import sys

import pytest

import smbcad.proto.fscc as fscc

PACKAGE = pathlib.Path(fscc.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
FORBIDDEN = {"os", "socket", "asyncio", "fcntl", "select", "subprocess", "threading"}


def imported_roots(path: pathlib.Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module)
    return roots


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_are_stdlib_or_proto(path):
    for name in imported_roots(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        assert name.startswith("smbcad.proto") or top in sys.stdlib_module_names, \
            f"{path.name} imports {name}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_size(path):
    assert len(path.read_text().splitlines()) <= 500


def test_no_bare_except():
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler):
                assert node.type is not None, f"bare except in {path.name}"


def test_public_dataclasses_are_frozen():
    for name in fscc.__all__:
        obj = getattr(fscc, name)
        if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
            assert obj.__dataclass_params__.frozen, name
