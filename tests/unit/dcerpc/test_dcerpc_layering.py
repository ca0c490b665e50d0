"""smbca.rpc.dcerpc imports the standard library only, no I/O modules (shared/STYLE.md rule 1)."""

import ast
import sys
from pathlib import Path

import pytest

import smbca.rpc.dcerpc

PACKAGE = Path(smbca.rpc.dcerpc.__file__).parent
FORBIDDEN = {"asyncio", "socket", "os", "fcntl", "selectors", "subprocess", "threading"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_stdlib_only(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        if name.startswith("smbca.rpc.dcerpc"):
            continue
        assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
        assert top not in FORBIDDEN, f"{path.name} imports I/O module {name}"
