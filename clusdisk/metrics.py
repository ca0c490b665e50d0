"""clusdisk's Prometheus metrics, declared in one place (shared/STYLE.md rule
15): prefix ``clusdisk_``, base units, ``_total`` counters, labels bounded by
the configuration (disk names, link indexes) or by enums (verbs, verdicts,
states, reasons).  A private registry per daemon, so tests can build many.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from clusdisk.arbitration import State
from smbca.metrics import register_process_metrics

LIF_FRAME_KINDS = ("arp_request", "arp_reply", "neighbour_advertisement")   # clusdisk.lif
TICKLE_ACK = "tickle_ack"
_RENEW_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                  2.5, 5.0, 10.0)


class ClusdiskMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.reservation_seconds = Histogram(
            "clusdisk_reservation_command_duration_seconds",
            "Time of one reservation verb (renew, reserve, reset, preempt...) on a LUN",
            ["disk", "verb"], buckets=_RENEW_BUCKETS, registry=r)
        self.reservation_commands = Counter(
            "clusdisk_reservation_commands_total", "Reservation verbs by verdict",
            ["disk", "verb", "verdict"], registry=r)
        self.arbitration_transitions = Counter(
            "clusdisk_arbitration_transitions_total", "Arbitration state changes by target state",
            ["state"], registry=r)
        self.arbitration_outcomes = Counter(
            "clusdisk_arbitration_outcomes_total",
            "Challenges won or lost, handovers, stops and table errors", ["outcome"], registry=r)
        self.arbitration_state = Gauge(
            "clusdisk_arbitration_state", "1 for the current arbitration state", ["state"],
            registry=r)
        self.quorum_owner = Gauge("clusdisk_quorum_owner", "1 while this node owns the quorum",
                                  registry=r)
        self.disk_owned = Gauge("clusdisk_disk_owned",
                                "1 while this node serves the aggregate on this disk",
                                ["disk"], registry=r)
        self.heartbeat_link_up = Gauge("clusdisk_heartbeat_link_up",
                                       "1 while heartbeats arrive on this link", ["link"],
                                       registry=r)
        self.partner_alive = Gauge("clusdisk_heartbeat_partner_alive",
                                   "1 while the partner is heard on any link", registry=r)
        self.partner_losses = Counter("clusdisk_heartbeat_partner_losses_total",
                                      "Times every heartbeat link timed out", registry=r)
        self.heartbeats_rejected = Counter("clusdisk_heartbeat_rejected_total",
                                           "Heartbeat datagrams refused", ["reason"], registry=r)
        self.lif_announce_rounds = Counter(
            "clusdisk_lif_announce_rounds_total",
            "Announcement rounds sent for LIFs brought up here (3 per LIF move by default)",
            registry=r)
        self.lif_announcements = Counter(
            "clusdisk_lif_announcements_sent_total",
            "Gratuitous ARP requests and replies and unsolicited neighbour advertisements sent",
            ["kind"], registry=r)
        self.lif_tickle_acks = Counter(
            "clusdisk_lif_tickle_acks_sent_total",
            "Tickle ACKs sent to the clients of a moved LIF", registry=r)
        self.lif_announce_failures = Counter(
            "clusdisk_lif_announce_failures_total",
            "Announcement frames and tickle ACKs that could not be sent", ["kind"], registry=r)
        self.takeover_possible = Gauge(
            "clusdisk_takeover_possible",
            "1 while this node could take over its partner now (smbca failover show)",
            registry=r)
        self.public_link_up = Gauge(
            "clusdisk_public_link_up",
            "1 while this public (client-facing) port of the LIFs is up (admin up, carrier)",
            ["port"], registry=r)
        self.public_link_handovers = Counter(
            "clusdisk_public_link_handovers_total",
            "Aggregates handed to the partner because every public port was down here",
            ["outcome"], registry=r)
        for outcome in ("ok", "refused"):
            self.public_link_handovers.labels(outcome)
        register_process_metrics(r, "clusdisk")
        for state in State:
            self.arbitration_state.labels(state.value).set(1 if state is State.IDLE else 0)
        for kind in LIF_FRAME_KINDS:
            self.lif_announcements.labels(kind)
        for kind in (*LIF_FRAME_KINDS, TICKLE_ACK):
            self.lif_announce_failures.labels(kind)

    def state_changed(self, old: State, new: State) -> None:
        self.arbitration_state.labels(old.value).set(0)
        self.arbitration_state.labels(new.value).set(1)
        self.arbitration_transitions.labels(new.value).inc()
        self.quorum_owner.set(1 if new in _OWNER else 0)
        outcome = _OUTCOMES.get((old, new))
        if outcome is not None:
            self.arbitration_outcomes.labels(outcome).inc()

    def lif_announce_round(self, sent, failed) -> None:
        """One round of ``clusdisk.lif.LifMover``: counts by frame kind."""
        self.lif_announce_rounds.inc()
        for kind, count in sent.items():
            if kind == TICKLE_ACK:
                self.lif_tickle_acks.inc(count)
            else:
                self.lif_announcements.labels(kind).inc(count)
        for kind, count in failed.items():
            self.lif_announce_failures.labels(kind).inc(count)

    def reservation(self, disk: str, verb: str, verdict: str, seconds: float) -> None:
        self.reservation_seconds.labels(disk, verb).observe(seconds)
        self.reservation_commands.labels(disk, verb, verdict).inc()


_OWNER = frozenset({State.ONLINE, State.ONLINE_PARTNER_LOST, State.ONLINE_TAKEN_OVER,
                    State.OFFLINING_OWNER, State.RELEASING_OWNER})
_OUTCOMES = {
    (State.CHALLENGE_RESERVE, State.SETTLE_TAKEOVER): "challenge_won",
    (State.CHALLENGE_RESERVE, State.STOPPED): "challenge_lost",
    (State.CHALLENGE_PREEMPT, State.STOPPED): "challenge_lost",
    (State.FORM_RESERVE, State.SETTLE_FORM): "formed",
    (State.HANDOVER_RESERVE, State.ONLINE_TAKEN_OVER): "handover",
    (State.ONLINE, State.STOPPED): "reservation_lost",
    (State.ONLINE_PARTNER_LOST, State.STOPPED): "reservation_lost",
    (State.ONLINE_TAKEN_OVER, State.STOPPED): "reservation_lost",
    (State.RELEASING, State.STOPPED): "clean_shutdown",
    (State.RELEASING_OWNER, State.STOPPED): "clean_shutdown",
}
