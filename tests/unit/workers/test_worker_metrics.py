"""The supervisor's merge of its workers' metrics (smbcad/workers/worker_metrics.py)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from smbcad.workers.worker_metrics import WorkersCollector


def exposition(connections: int, requests: int) -> str:
    registry = CollectorRegistry()
    Gauge("smbcad_connections", "TCP connections", registry=registry).set(connections)
    Counter("smbcad_bytes", "bytes", ["dir"], registry=registry).labels("in").inc(requests)
    return generate_latest(registry).decode()


def test_every_sample_is_labelled_with_its_worker_and_a_silent_worker_is_down():
    texts = {0: exposition(2, 10), 1: None, 2: exposition(5, 1)}
    registry = CollectorRegistry()
    registry.register(WorkersCollector(3, texts.get))
    text = generate_latest(registry).decode()
    assert 'smbcad_worker_up{worker="0"} 1.0' in text
    assert 'smbcad_worker_up{worker="1"} 0.0' in text
    assert 'smbcad_connections{worker="0"} 2.0' in text
    assert 'smbcad_connections{worker="2"} 5.0' in text
    assert 'smbcad_bytes_total{dir="in",worker="2"} 1.0' in text
    assert text.count("# TYPE smbcad_connections gauge") == 1
    assert 'worker="1"}' not in text.replace('smbcad_worker_up{worker="1"}', "")
