"""The previous release's source tree, for the mixed-version tests of the
cluster tier (issue 11 item 4: a node of this release and one of the
previous release run as a pair during a rolling upgrade).

``PREVIOUS_RELEASE`` is pinned: the newest landed release this checkout must
interoperate with.  smbca has no release tags yet (every release says 0.1.0),
so a release is a commit landed on main: e1b78e3 is the newest one before the
work merged since (placement records on the quorum LUN, NT ACLs in
``security.*``, the operator's commands).  To bump it when a release lands: set
it to that release's commit on main (full hash), run
tests/cluster/test_mixed_versions.py (drop what it pins as a known difference
once the previous release has it too), and update the sentence of README's
"Rolling upgrade" that names the tested pair.

The tree is exported with ``git archive`` of this checkout's own history
into a temporary directory; nothing is fetched.  A clone without that commit
(a shallow clone: ``git clone --depth``) cannot run these tests: outside CI
they are skipped with a reason naming the commit and how to get it; under
``CI=true`` they fail (the rule of tests/conftest.py for a missing tool), since
CI clones the whole history and a missing commit there would mean the
mixed-version proof silently stopped running.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pair import REPO

PREVIOUS_RELEASE = "e1b78e3173ae8d451ce8b3a8f1ee433c79a0a19b"
GIT_TIMEOUT_S = 60.0


def _git(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True,
                          timeout=GIT_TIMEOUT_S, check=False)


def missing_reason() -> str | None:
    """Why this checkout cannot give the previous release's tree, or None."""
    if shutil.which("git") is None:
        return "git is not installed"
    if _git("rev-parse", "--git-dir").returncode != 0:
        return f"{REPO} is not a git checkout"
    if _git("cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}").returncode == 0:
        return None
    shallow = _git("rev-parse", "--is-shallow-repository").stdout.decode().strip() == "true"
    return (f"commit {PREVIOUS_RELEASE} (the previous release) is not in this "
            f"{'shallow ' if shallow else ''}clone; "
            f"{'`git fetch --unshallow`' if shallow else '`git fetch origin main`'} gets it")


def require_history() -> None:
    """Skip (fail under CI=true) when the pinned commit is not here."""
    reason = missing_reason()
    if reason is None:
        return
    message = f"the mixed-version tests need the previous release's code: {reason}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):     # as tests/conftest.py
        pytest.fail(message)
    pytest.skip(message)


def export(destination: Path) -> Path:
    """The previous release's tree under ``destination`` (``git archive``)."""
    require_history()
    done = _git("archive", "--format=tar", PREVIOUS_RELEASE)
    if done.returncode != 0:
        raise RuntimeError(f"git archive {PREVIOUS_RELEASE}: {done.stderr.decode()}")
    destination.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(destination)], input=done.stdout, check=True,
                   timeout=GIT_TIMEOUT_S)
    return destination
