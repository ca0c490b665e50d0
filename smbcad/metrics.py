"""smbcad's Prometheus metrics, declared in one place (shared/STYLE.md rule 15).

A private registry per server (no process-global default registry), so tests
can build several servers in one process.  Labels are low-cardinality only.
"""

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from smbca.metrics import register_process_metrics
from smbcad.proto.status import name_of

_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A handle-store batch: one fsync (local), plus the partner's ACK when mirrored.
_COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Tally:
    """A counter only the event loop bumps: a plain number (no lock), read
    when Prometheus scrapes."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


@dataclass(frozen=True, slots=True)
class ShareCounters:
    """One share's counters, bound once when the share is built, so READ,
    WRITE and the dispatcher increment them without a label lookup or lock;
    exported as smbcad_share_*_total{share} (_ShareCollector)."""

    read_bytes: Tally
    written_bytes: Tally
    operations: Tally

_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)


class SmbMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # smbcad_requests_total and smbcad_request_duration_seconds: every
        # request counts in them, so they are plain numbers (_RequestStats).
        self.request_stats = _RequestStats()
        r.register(self.request_stats)
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
        # -- continuous availability (issue 15 item 6): smbcad_share_*_total
        self._shares: dict[str, ShareCounters] = {}
        r.register(_ShareCollector(self._shares))
        self.reconnects = Counter("smbcad_durable_reconnects_total",
                                  "Durable and persistent handle reconnects (DHnC/DH2C) by "
                                  "result: ok or the NTSTATUS refusing it", ["result"],
                                  registry=r)
        self.store_commit_seconds = Histogram(
            "smbcad_store_commit_duration_seconds",
            "Time of one handle-store group commit (write + fsync, + the partner's ACK "
            "when mirrored)", ["store"], buckets=_COMMIT_BUCKETS, registry=r)
        register_process_metrics(r, "smbcad")
        # Series that exist from the start, so rate() sees their first increase.
        for result in ("ok", "failed"):
            self.session_setups.labels(result=result)
        self.reconnects.labels("ok")
        self.loop_lag = Histogram("smbcad_event_loop_lag_seconds",
                                  "How late the event loop ran its lag probe (smbcad.loop_lag)",
                                  buckets=_LAG_BUCKETS, registry=r)
        self.loop_lag_max = Gauge("smbcad_event_loop_lag_max_seconds",
                                  "Worst event-loop lag in the last 10 s", registry=r)
        self.observe = self.request_stats.observe

    def share_counters(self, share: str) -> ShareCounters:
        """The share's counters; a share built again (a reload) counts on."""
        counters = self._shares.get(share)
        if counters is None:
            counters = self._shares[share] = ShareCounters(Tally(), Tally(), Tally())
        return counters

    def reconnect(self, result: str) -> None:
        """One DHnC/DH2C answered: ``ok`` or the refusing status's name."""
        self.reconnects.labels(result).inc()

    def commit_observer(self, store: str):
        """The per-batch callback a handle store reports its commit time to."""
        return self.store_commit_seconds.labels(store).observe

    def watch_handles(self, opens, stores) -> None:
        """Durable/persistent opens by state and the handle stores' health,
        read from the OpenTable ``opens`` and ``stores()`` (name -> store)
        when Prometheus scrapes."""
        self.registry.register(_HandleCollector(opens, stores))

    def watch_cluster(self, status) -> None:
        """Per-aggregate cluster metrics, read from ``status()`` (the cluster
        member's status dict) when Prometheus scrapes."""
        self.registry.register(_ClusterCollector(status))


class _RequestStats:
    """smbcad_requests_total{command,status} and
    smbcad_request_duration_seconds{command}, kept as plain counts that one
    event loop bumps (no lock, no label lookup, no status name per request)
    and turned into samples when Prometheus scrapes.  ``observe(command,
    status, seconds)`` is ``SmbMetrics.observe``."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        # command -> [count per bucket ..., count above the last, sum of seconds]
        self._latency: dict[str, list] = {}

    def observe(self, command: str, status: int, seconds: float) -> None:
        key = (command, status)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        hist = self._latency.get(command)
        if hist is None:
            hist = self._latency[command] = [0] * (len(_LATENCY_BUCKETS) + 1) + [0.0]
        hist[bisect_left(_LATENCY_BUCKETS, seconds)] += 1     # "le": bound included
        hist[-1] += seconds

    def describe(self):
        return []

    def collect(self):
        requests = CounterMetricFamily("smbcad_requests", "SMB2 requests answered",
                                       labels=["command", "status"])
        for (command, status), count in list(self._counts.items()):
            requests.add_metric([command, name_of(status)], float(count))
        yield requests
        latency = HistogramMetricFamily("smbcad_request_duration_seconds",
                                        "Time from request decode to response",
                                        labels=["command"])
        for command, hist in list(self._latency.items()):
            hist = list(hist)
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, _LATENCY_BUCKETS), "+Inf"), hist[:-1]):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            latency.add_metric([command], buckets, hist[-1])
        yield latency


class _ShareCollector:
    """smbcad_share_{read_bytes,written_bytes,operations}_total{share}."""

    _FAMILIES = (("smbcad_share_read_bytes", "File bytes returned by READ, per share",
                  "read_bytes"),
                 ("smbcad_share_written_bytes", "File bytes accepted by WRITE, per share",
                  "written_bytes"),
                 ("smbcad_share_operations", "Requests answered on a tree connect to the share",
                  "operations"))

    def __init__(self, shares: dict) -> None:
        self._shares = shares

    def describe(self):
        return []

    def collect(self):
        shares = list(self._shares.items())
        for name, doc, field in self._FAMILIES:
            family = CounterMetricFamily(name, doc, labels=["share"])
            for share, counters in shares:
                family.add_metric([share], float(getattr(counters, field).value))
            yield family


class _HandleCollector:
    """smbcad_handles{kind,state} and smbcad_store_*{store}: counted at scrape
    time (no bookkeeping on the request path)."""

    def __init__(self, opens, stores) -> None:
        self._opens = opens
        self._stores = stores

    def describe(self):
        return []

    def collect(self):
        counts = {(kind, state): 0 for kind in ("persistent", "durable", "resilient")
                  for state in ("connected", "disconnected")}
        for open_ in list(self._opens.by_persistent_id.values()):
            kind = ("persistent" if open_.persistent else "resilient" if open_.resilient
                    else "durable" if open_.durable else None)
            if kind is not None and not open_.closed:
                counts[kind, "connected" if open_.session is not None else "disconnected"] += 1
        handles = GaugeMetricFamily("smbcad_handles", "Durable, resilient and persistent opens "
                                    "by state (disconnected: waiting for a reconnect)",
                                    labels=["kind", "state"])
        for (kind, state), count in counts.items():
            handles.add_metric([kind, state], float(count))
        yield handles
        failed = GaugeMetricFamily("smbcad_store_failed", "1 once a commit failed: the handle "
                                   "store is read-only until smbcad restarts", labels=["store"])
        records = GaugeMetricFamily("smbcad_store_records", "Records in the handle store",
                                    labels=["store"])
        commits = CounterMetricFamily("smbcad_store_commits", "Changes committed to the handle "
                                      "store", labels=["store"])
        batches = CounterMetricFamily("smbcad_store_batches", "Group commits (one fsync each)",
                                      labels=["store"])
        for name, store in self._stores().items():
            stats = store.stats()
            failed.add_metric([name], 1.0 if store.failed else 0.0)
            records.add_metric([name], float(stats.records))
            commits.add_metric([name], float(stats.commits))
            batches.add_metric([name], float(stats.batches))
        yield from (failed, records, commits, batches)


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
