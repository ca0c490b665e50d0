"""smbcad.cluster imports the standard library, smbcad.store and itself only
(the server wires it in, never the other way); the mirror protocol and core
are sans-IO (STYLE rule 1); no module-level mutable state (rule 15)."""

import ast
import pathlib
import sys

import pytest

from tests.unit.store.test_store_layering import imports

CLUSTER = pathlib.Path(__file__).resolve().parents[3] / "smbcad" / "cluster"
SANS_IO = {"mirror_proto.py", "mirror_core.py", "replica_core.py"}
IO_MODULES = {"asyncio", "os", "socket", "fcntl", "threading", "concurrent", "selectors",
              "time", "random", "secrets"}


@pytest.mark.parametrize("path", sorted(CLUSTER.glob("*.py")), ids=lambda p: p.name)
def test_cluster_imports(path):
    for name in imports(path):
        top = name.split(".")[0]
        assert (top in sys.stdlib_module_names or name.startswith("smbcad.store")
                or name.startswith("smbcad.cluster")), f"{path.name} imports {name}"
        if path.name in SANS_IO:
            assert top not in IO_MODULES, f"{path.name} is sans-IO but imports {name}"


def test_sans_io_modules_exist():
    assert SANS_IO <= {path.name for path in CLUSTER.glob("*.py")}


def test_no_module_level_mutable_state():
    for path in CLUSTER.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if [getattr(t, "id", None) for t in targets] == ["__all__"]:
                    continue
                assert not isinstance(node.value, (ast.Dict, ast.List, ast.Set, ast.ListComp,
                                                   ast.DictComp, ast.SetComp)), \
                    f"{path.name}:{node.lineno} module-level mutable value"
