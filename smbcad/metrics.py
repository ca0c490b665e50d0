"""smbcad's Prometheus metrics, declared in one place (shared/STYLE.md rule 15).

A private registry per server (no process-global default registry), so tests
can build several servers in one process.  Labels are low-cardinality only.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from smbcad.proto.status import name_of

_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)


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
        self.limit_hits = Counter("smbcad_limit_hits_total",
                                  "Times a resource limit refused or closed a connection or "
                                  "request, or paused reading (smbcad.server.limits)",
                                  ["limit"], registry=r)
        self.async_requests = Gauge("smbcad_async_requests",
                                    "Requests answered STATUS_PENDING and not yet completed",
                                    registry=r)
        self.server_copy_bytes = Counter("smbcad_server_side_copy_bytes_total",
                                         "Bytes copied by FSCTL_SRV_COPYCHUNK", registry=r)
        self.loop_lag = Histogram("smbcad_event_loop_lag_seconds",
                                  "How late the event loop ran its lag probe (smbcad.loop_lag)",
                                  buckets=_LAG_BUCKETS, registry=r)
        self.loop_lag_max = Gauge("smbcad_event_loop_lag_max_seconds",
                                  "Worst event-loop lag in the last 10 s", registry=r)
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

    def watch_cluster(self, status) -> None:
        """Per-aggregate cluster metrics, read from ``status()`` (the cluster
        member's status dict) when Prometheus scrapes."""
        self.registry.register(_ClusterCollector(status))


class _ClusterCollector:
    """smbcad_aggregate_* and smbcad_mirror_*: one sample per aggregate."""

    def __init__(self, status) -> None:
        self._status = status

    def describe(self):
        return []

    def collect(self):
        status = self._status()
        link = GaugeMetricFamily("smbcad_mirror_link_up", "The handle mirror's link to the partner is up")
        link.add_metric([], 1.0 if status.get("mirror_link") == "up" else 0.0)
        yield link
        dropped = CounterMetricFamily("smbcad_mirror_frames_dropped",
                                      "Mirror frames dropped (bad MAC, replayed or reordered "
                                      "counter, undecodable)", labels=["reason"])
        for reason, count in status.get("mirror_link_counts", {}).get("dropped_frames",
                                                                      {}).items():
            dropped.add_metric([reason], float(count))
        yield dropped
        families = {
            "online": GaugeMetricFamily("smbcad_aggregate_online",
                                        "The aggregate's shares are online on this node",
                                        labels=["aggregate"]),
            "adopted": GaugeMetricFamily("smbcad_aggregate_adopted_opens",
                                         "Persistent opens restored by the last adoption",
                                         labels=["aggregate"]),
            "pause": GaugeMetricFamily("smbcad_aggregate_release_seconds",
                                       "Duration of the last release", labels=["aggregate"]),
            "in_sync": GaugeMetricFamily("smbcad_mirror_in_sync",
                                         "The partner's copy is caught up",
                                         labels=["aggregate", "role"]),
            "epoch": GaugeMetricFamily("smbcad_mirror_epoch", "Ownership epoch of the aggregate",
                                       labels=["aggregate"]),
            "lag_frames": GaugeMetricFamily("smbcad_mirror_lag_frames",
                                            "Commits not yet acknowledged by the partner",
                                            labels=["aggregate"]),
            "lag_bytes": GaugeMetricFamily("smbcad_mirror_lag_bytes",
                                           "Bytes not yet acknowledged by the partner",
                                           labels=["aggregate"]),
            "ack": GaugeMetricFamily("smbcad_mirror_ack_latency_seconds",
                                     "Latency of the last acknowledged commit",
                                     labels=["aggregate"]),
            "resync": GaugeMetricFamily("smbcad_mirror_resync_duration_seconds",
                                        "Duration of the last resync", labels=["aggregate"]),
            "degrades": CounterMetricFamily("smbcad_mirror_degrades",
                                            "Times the mirror degraded to local-only",
                                            labels=["aggregate"]),
        }
        for entry in status.get("aggregates", []):
            name = entry["name"]
            families["online"].add_metric([name], 1.0 if entry["phase"] == "online" else 0.0)
            families["adopted"].add_metric([name], float(entry["adopted"].get("restored", 0)))
            families["pause"].add_metric([name], float(entry["last_release_pause_s"]))
            mirror = entry.get("mirror")
            if mirror is None:
                continue
            families["in_sync"].add_metric([name, mirror["role"]], 1.0 if mirror["in_sync"] else 0.0)
            families["epoch"].add_metric([name], float(mirror["epoch"]))
            families["lag_frames"].add_metric([name], float(mirror["lag_frames"]))
            families["lag_bytes"].add_metric([name], float(mirror["lag_bytes"]))
            families["degrades"].add_metric([name], float(mirror["degrade_count"]))
            if mirror["last_ack_latency_s"] is not None:
                families["ack"].add_metric([name], float(mirror["last_ack_latency_s"]))
            if mirror["resync_duration_s"] is not None:
                families["resync"].add_metric([name], float(mirror["resync_duration_s"]))
        yield from families.values()
