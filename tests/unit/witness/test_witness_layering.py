"""Layering rules for witnessd (shared/STYLE.md): who may import what.

* ``smbca.rpc.ndr`` and ``smbca.rpc.dcerpc`` import the standard library only,
  and no I/O modules;
* only ``witnessd/transport.py`` touches sockets;
* no module reads the environment except ``witnessd/config.py``;
* no module is over ~600 lines.
"""

import ast
import sys
from pathlib import Path

import pytest

import witnessd

ROOT = Path(witnessd.__file__).parent
MODULES = sorted(ROOT.rglob("*.py"))
IO_MODULES = {"asyncio", "socket", "os", "fcntl", "selectors", "subprocess", "threading"}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


PURE = [p for p in MODULES if p.parent.name in ("ndr", "dcerpc")]


@pytest.mark.parametrize("path", PURE, ids=_ids(PURE))
def test_protocol_cores_import_the_stdlib_only(path: Path) -> None:
    own = "witnessd." + path.parent.name
    for name in imports(path):
        if name.startswith(own):
            continue
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
        assert top not in IO_MODULES, f"{path.name} imports I/O module {name}"


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_only_transport_opens_sockets(path: Path) -> None:
    if path.name == "transport.py" and path.parent == ROOT:
        return
    names = imports(path)
    assert "socket" not in names and "prometheus_client.exposition" not in names
    assert "start_http_server" not in path.read_text()


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_environment_is_read_in_config_only(path: Path) -> None:
    if path.name == "config.py":
        return
    text = path.read_text()
    assert "os.environ" not in text and "getenv" not in text


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 620, path.name
