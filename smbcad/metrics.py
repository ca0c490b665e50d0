"""smbcad's Prometheus metrics, declared in one place (shared/STYLE.md rule 15).

A private registry per server (no process-global default registry), so tests
can build several servers in one process.  Labels are low-cardinality only.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from smbcad.proto.status import name_of

_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SmbMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("smbcad_requests_total", "SMB2 requests answered",
                                ["command", "status"], registry=r)
        self.latency = Histogram("smbcad_request_duration_seconds",
                                 "Time from request decode to response", ["command"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.bytes_read = Counter("smbcad_read_bytes_total", "File bytes returned by READ",
                                  registry=r)
        self.bytes_written = Counter("smbcad_written_bytes_total",
                                     "File bytes accepted by WRITE", registry=r)
        self.sessions = Gauge("smbcad_sessions", "Sessions in the session table", registry=r)
        self.tree_connects = Gauge("smbcad_tree_connects", "Tree connects", registry=r)
        self.opens = Gauge("smbcad_opens", "Open handles", registry=r)
        self.connections = Gauge("smbcad_connections", "TCP connections", registry=r)
        self.session_setups = Counter("smbcad_session_setups_total",
                                      "Completed or failed authentications", ["result"],
                                      registry=r)
        self.protocol_errors = Counter("smbcad_protocol_errors_total",
                                       "Connections dropped for malformed input", registry=r)
        self.signature_failures = Counter("smbcad_signature_failures_total",
                                          "Requests whose signature did not verify", registry=r)
        self.server_copy_bytes = Counter("smbcad_server_side_copy_bytes_total",
                                         "Bytes copied by FSCTL_SRV_COPYCHUNK", registry=r)
        self._request_children: dict = {}
        self._latency_children: dict = {}

    def observe(self, command: str, status: int, seconds: float) -> None:
        """One answered request; children are cached to keep this cheap."""
        key = (command, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(command, name_of(status))
        child.inc()
        hist = self._latency_children.get(command)
        if hist is None:
            hist = self._latency_children[command] = self.latency.labels(command)
        hist.observe(seconds)
