"""witnessd's Prometheus metrics, declared in one place (shared/STYLE.md rule 15).

A private registry per daemon (no process-global default registry), so tests
can build several in one process.  Labels are low-cardinality only: message
types, event kinds, auth types; never client names or addresses.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge

from smbca.metrics import register_process_metrics


class WitnessMetrics:
    """Implements ``witnessd.swn.ServiceObserver``; the daemon feeds the rest."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.registrations_gauge = Gauge(
            "witnessd_registrations", "Entries in WitnessRegistrationList", registry=r)
        self.pending_notifies_gauge = Gauge(
            "witnessd_pending_notifies",
            "AsyncNotify and GetInterfaceList calls waiting for an event", registry=r)
        self.notifications = Counter(
            "witnessd_notifications_sent_total", "AsyncNotify answers carrying notifications",
            ["type"], registry=r)
        self.auth_failures = Counter(
            "witnessd_auth_failures_total", "DCE/RPC authentications that failed", registry=r)
        self.connections = Gauge(
            "witnessd_connections", "Open RPC connections (witness and endpoint mapper)",
            registry=r)
        self.protocol_errors = Counter(
            "witnessd_protocol_errors_total", "Connections closed for a DCE/RPC protocol error",
            registry=r)
        self.events = Counter(
            "witnessd_control_events_total", "Events posted on the control socket", ["event"],
            registry=r)
        register_process_metrics(r, "witnessd")

    # -- ServiceObserver -------------------------------------------------------

    def registrations(self, count: int) -> None:
        self.registrations_gauge.set(count)

    def pending_notifies(self, count: int) -> None:
        self.pending_notifies_gauge.set(count)

    def notification_sent(self, message_type: str) -> None:
        self.notifications.labels(message_type).inc()

    # -- daemon ----------------------------------------------------------------

    def auth_failed(self) -> None:
        self.auth_failures.inc()

    def event(self, kind: str) -> None:
        self.events.labels(kind).inc()
