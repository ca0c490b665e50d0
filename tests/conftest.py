"""Test gating shared by every tier.

``@pytest.mark.interop`` (optionally ``interop("smbclient", ...)`` naming the
binaries a test needs; by default smbclient and smbtorture) and
``@pytest.mark.root`` skip with a clear reason when the tool or privilege is
missing, except under ``CI=true``, where a missing prerequisite fails the
test: CI installs everything through scripts/test.sh, so a skip there would
hide a broken install step.
"""

import os
import shutil

import pytest

DEFAULT_INTEROP_TOOLS = ("smbclient", "smbtorture")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unmet(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: prerequisites must be installed by scripts/test.sh)",
                    pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long test (large transfers); still runs in CI")


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("interop")
    if marker is not None:
        tools = marker.args or DEFAULT_INTEROP_TOOLS
        missing = [tool for tool in tools if shutil.which(tool) is None]
        if missing:
            _unmet(f"interop tools not installed: {', '.join(missing)} "
                   "(bash scripts/test.sh installs them)")
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        _unmet("needs root")
