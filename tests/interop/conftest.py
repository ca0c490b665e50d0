"""Server fixtures for the interop tests.

``SMBCA_INTEROP_TARGET`` picks the server under test: ``smbcad`` (default) or
``smbd`` (Samba, to check the harness itself). Every server a fixture starts
is stopped by PID at teardown, whatever the test did.
"""

import os
import shutil

import pytest

from servers import ServerStartError, start_server, start_smbcad

TARGETS = ("smbcad", "smbd")


def _target() -> str:
    target = os.environ.get("SMBCA_INTEROP_TARGET", "smbcad")
    if target not in TARGETS:
        raise pytest.UsageError(f"SMBCA_INTEROP_TARGET={target!r}: use smbcad or smbd")
    return target


@pytest.fixture(scope="session")
def interop_target() -> str:
    target = _target()
    if target == "smbd":
        if os.geteuid() != 0:
            pytest.skip("smbd as a test peer needs root")
        if shutil.which("smbd") is None:
            pytest.fail("SMBCA_INTEROP_TARGET=smbd but smbd is not installed", pytrace=False)
    return target


class ServerFactory:
    """Starts servers of the chosen kind and stops all of them on ``close()``."""

    def __init__(self, kind: str, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.kind = kind
        self._tmp = tmp_path_factory
        self._servers = []

    def __call__(self, **kwargs):
        server = _started(start_server, self.kind, self._tmp.mktemp(self.kind), **kwargs)
        self._servers.append(server)
        return server

    def close(self) -> None:
        while self._servers:
            self._servers.pop().stop()


@pytest.fixture
def server_factory(interop_target, tmp_path_factory):
    factory = ServerFactory(interop_target, tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def server_factory_module(interop_target, tmp_path_factory):
    factory = ServerFactory(interop_target, tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def server_factories(interop_target, tmp_path_factory):
    """Makes ServerFactory instances (one per group run in a thread) and
    stops every server they started at the module's end."""
    made: list[ServerFactory] = []

    def make() -> ServerFactory:
        factory = ServerFactory(interop_target, tmp_path_factory)
        made.append(factory)
        return factory

    yield make
    for factory in made:
        factory.close()


@pytest.fixture
def smb_server(server_factory):
    """The target server (smbcad or smbd) with one share and the test user."""
    return server_factory()


@pytest.fixture(scope="module")
def smb_server_module(server_factory_module):
    return server_factory_module()


def _started(start, *args, **kwargs):
    """Call a ``start_*`` function; a server that did not start fails the test with its log."""
    try:
        return start(*args, **kwargs)
    except ServerStartError as exc:
        failure = str(exc)
    pytest.fail(failure, pytrace=False)


def _smbcad(tmp_path_factory):
    return _started(start_smbcad, tmp_path_factory.mktemp("smbcad"))


@pytest.fixture
def smbcad_server(tmp_path_factory):
    """Always smbcad, whatever SMBCA_INTEROP_TARGET says."""
    server = _smbcad(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def smbcad_server_module(tmp_path_factory):
    server = _smbcad(tmp_path_factory)
    yield server
    server.stop()
