"""smbcad.store imports the standard library, itself and smbcad.proto's status
codes only, never the server (the server gets the store injected); the
record codec is pure (no I/O, no asyncio)."""

import ast
import pathlib
import sys

import pytest

STORE = pathlib.Path(__file__).resolve().parents[3] / "smbcad" / "store"
PURE = {"records.py", "errors.py"}
IO_MODULES = {"asyncio", "os", "socket", "fcntl", "sqlite3", "threading", "concurrent"}


def imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


@pytest.mark.parametrize("path", sorted(STORE.glob("*.py")), ids=lambda p: p.name)
def test_store_imports(path):
    for name in imports(path):
        top = name.split(".")[0]
        assert (top in sys.stdlib_module_names or name.startswith("smbcad.store")
                or name == "smbcad.proto.status"), f"{path.name} imports {name}"
        if path.name in PURE:
            assert top not in IO_MODULES, f"{path.name} is pure but imports {name}"


def test_no_module_level_mutable_state():
    """STYLE rule 15: no module-level dicts, lists or sets to mutate."""
    for path in STORE.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if [getattr(t, "id", None) for t in targets] == ["__all__"]:
                    continue
                value = node.value
                assert not isinstance(value, (ast.Dict, ast.List, ast.Set, ast.ListComp,
                                              ast.DictComp, ast.SetComp)), \
                    f"{path.name}:{node.lineno} module-level mutable value"
