"""What every daemon's metrics have in common (issue 15 item 6): the process
collector (``process_*``: CPU, memory, open files, start time), a
``<daemon>_build_info`` gauge naming the version, and the HTTP endpoint,
whose address in use is a config error naming the key instead of a
traceback.  Each daemon still declares its own metrics in its ``metrics.py``.
"""

import importlib.metadata
import platform

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, start_http_server

from smbca.config import ConfigError, ListenAddress


def smbca_version() -> str:
    """The installed smbca distribution's version ("unknown" when run from a
    source tree that was never installed)."""
    try:
        return importlib.metadata.version("smbca")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def register_process_metrics(registry: CollectorRegistry, daemon: str) -> None:
    """``process_*`` from /proc/self and ``{daemon}_build_info{version,python} 1``."""
    ProcessCollector(registry=registry)
    info = Gauge(f"{daemon}_build_info", f"{daemon}'s version (always 1)",
                 ["version", "python"], registry=registry)
    info.labels(smbca_version(), platform.python_version()).set(1)


def serve_metrics(address: ListenAddress, registry: CollectorRegistry, key: str) -> None:
    """Serve ``registry`` on ``address`` from prometheus_client's own thread;
    an address that cannot be bound is the ConfigError ``key``."""
    try:
        start_http_server(address.port, address.host, registry=registry)
    except OSError as exc:
        raise ConfigError(key, f"cannot serve metrics on {address}: "
                               f"{exc.strerror or exc}") from None
