"""The release of the installed smbca, for ``--version`` on every command
and daemon and for the control sockets' answers.

The version is the one pyproject.toml gives the package: read from the
installed distribution's metadata or, when the code runs from a checkout
that was never installed, from the checkout's own pyproject.toml.
"""

import argparse
import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "smbca"
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def version() -> str:
    """``0.1.0``; ``unknown`` when neither the metadata nor pyproject.toml say."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    try:
        with open(_PYPROJECT, "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: prints ``PROG (smbca) VERSION`` and exits 0."""
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s (smbca) {version()}")
