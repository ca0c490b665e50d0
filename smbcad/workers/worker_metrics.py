"""The node's Prometheus metrics when workers serve it: the supervisor's
``server.metrics_listen`` endpoint asks every worker for its own registry's
exposition (the control socket's ``metrics`` command) at each scrape and
serves the union, every sample labelled with its ``worker``.  Counters stay
per worker (a restarted worker's start at zero is visible as such, as
Prometheus expects of a process restart); ``sum without (worker)`` gives
the node.  ``smbcad_worker_up{worker}`` says which workers answered."""

from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families


class WorkersCollector:
    """``ask(index)``: worker ``index``'s exposition text, or None when it
    did not answer (restarting)."""

    def __init__(self, count: int, ask: Callable[[int], str | None]) -> None:
        self.count = count
        self.ask = ask

    def collect(self):
        families: dict[str, Metric] = {}
        up = GaugeMetricFamily("smbcad_worker_up", "Whether the worker answered this scrape",
                               labels=["worker"])
        for index in range(self.count):
            text = self.ask(index)
            up.add_metric([str(index)], 0.0 if text is None else 1.0)
            if text is None:
                continue
            for family in text_string_to_metric_families(text):
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation,
                                                            family.type, family.unit)
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": str(index)},
                                      sample.value, sample.timestamp, sample.exemplar)
        yield up
        yield from families.values()
