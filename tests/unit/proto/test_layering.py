"""smbcad.proto imports the standard library and itself only (shared/STYLE.md layering)."""

import ast
import pathlib
import sys

import pytest

PROTO = pathlib.Path(__file__).resolve().parents[3] / "smbcad" / "proto"
FORBIDDEN = {"asyncio", "socket", "os", "fcntl"}


@pytest.mark.parametrize("path", sorted(PROTO.glob("*.py")), ids=lambda p: p.name)
def test_imports_are_stdlib_or_proto(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {name}"
            assert name.startswith("smbcad.proto") or name == "smbca.ntstatus" \
                or top in sys.stdlib_module_names, \
                f"{path.name} imports {name}"
