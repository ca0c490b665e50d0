"""shared/STYLE.md layering rules for clusdisk, checked by parsing imports:
the pure cores import the standard library only (and no I/O modules); only
clusdisk/scsi/sgio.py issues ioctls; only clusdisk/lif.py imports pyroute2;
sockets only in the heartbeat transport, lif.py and control.py; no module
over ~500 lines."""

import ast
import sys
from pathlib import Path

import pytest

import clusdisk

PACKAGE = Path(clusdisk.__file__).parent
PURE = ["scsi/cdb.py", "scsi/pages.py", "scsi/sense.py", "scsi/errors.py", "heartbeat.py",
        "resources.py", "arbitration.py", "errors.py"]
IO_MODULES = {"asyncio", "socket", "os", "fcntl", "selectors", "subprocess", "threading",
              "ctypes"}
MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_cores_import_stdlib_only(module):
    for name in imports(PACKAGE / module):
        top = name.split(".")[0]
        if top == "clusdisk":                     # only other pure modules
            assert name.replace(".", "/").removeprefix("clusdisk/") + ".py" in PURE, name
            continue
        assert top in sys.stdlib_module_names, f"{module} imports {name}"
        assert top not in IO_MODULES, f"{module} imports I/O module {name}"


@pytest.mark.parametrize("module", MODULES)
def test_ioctls_sockets_and_pyroute2_stay_in_their_modules(module):
    source = (PACKAGE / module).read_text()
    names = imports(PACKAGE / module)
    if module != "scsi/sgio.py":
        assert "fcntl" not in names and ".ioctl(" not in source, module
    if module != "lif.py":
        assert not any(n.split(".")[0] == "pyroute2" for n in names), module
    if module not in ("heartbeat_transport.py", "lif.py", "control.py"):
        assert "socket" not in names and "create_datagram_endpoint" not in source, module
    assert "except:" not in source, module
    assert source.count("\n") <= 500, f"{module} has {source.count(chr(10))} lines"


def test_no_environment_reads_outside_config():
    for module in MODULES:
        if module != "config.py":
            assert "os.environ" not in (PACKAGE / module).read_text(), module
