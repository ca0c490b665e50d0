"""``run_in_guest``: run Python code or an in-guest pytest session in a lab guest.

Inside the guest the host's root file system is mounted read-only, so the
host venv's interpreter (``sys.executable`` by default) runs the checkout
unchanged.  Tests meant for the guest live in ``tests/lab/guest_tests/``;
the host's pytest never collects them (``tests/lab/conftest.py``), and
their fixtures (``guest_tests/conftest.py``) give the LUN map, LUN
cleanup between tests and two network namespaces joined by veth pairs.

Python under TCG runs ~17x slower than on the host, and every import reads
through 9p: the project's bytecode is compiled on the host first so the
guest never compiles it (the guest cannot write ``__pycache__``).
"""

import compileall
import functools
import sys
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from labvm.vm import REPO_ROOT, LabOptions, RunResult, run

GUEST_TESTS = REPO_ROOT / "tests" / "lab" / "guest_tests"
PACKAGES = ("smbca", "smbcad", "witnessd", "clusdisk")
# pytest in the guest: no cache dir on the read-only checkout, short output,
# and the hypothesis plugin (seconds of imports under TCG) only when asked
PYTEST_OPTIONS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q", "-rfEs",
                  "-o", "addopts=")


@functools.cache
def precompile() -> None:
    """Write the checkout's bytecode on the host, once per process."""
    for name in PACKAGES:
        compileall.compile_dir(REPO_ROOT / name, quiet=1)
    compileall.compile_dir(GUEST_TESTS, quiet=1)


def guest_command(code_or_args: str | Sequence[str], python: str | None = None) -> list[str]:
    """argv for ``run_in_guest``: ``python -c CODE`` for a string, else
    ``python -m pytest`` with the given arguments."""
    python = python or sys.executable
    if isinstance(code_or_args, str):
        return [python, "-c", code_or_args]
    return [python, "-m", "pytest", *PYTEST_OPTIONS, *code_or_args]


def run_in_guest(code_or_args: str | Sequence[str], timeout: float, *, luns: int = 2,
                 writable: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 data_mb: int = 1024, mem_mb: int = 2048, python: str | None = None,
                 output: BinaryIO | None = None) -> RunResult:
    """Boot a lab guest and run Python in it; the result of that one run.

    ``code_or_args``: a string of Python code (``python -c``), or a list of
    pytest arguments, e.g. ``["tests/lab/guest_tests/test_clusdisk_lab.py",
    "-k", "scsi2"]`` (paths relative to the checkout, which is the working
    directory).  ``timeout`` bounds the whole run in seconds, boot included;
    past it the guest is killed and ``status`` is 124.  ``writable`` host
    directories are mounted read-write at the same path (results, logs).
    """
    precompile()
    options = LabOptions(luns=luns, data_mb=data_mb, mem_mb=mem_mb, writable=tuple(writable),
                         timeout_s=timeout, env=tuple((env or {}).items()),
                         cwd=str(REPO_ROOT))
    return run(guest_command(code_or_args, python), options, output=output)
