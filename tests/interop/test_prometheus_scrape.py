"""A real Prometheus (Debian's prometheus package) scrapes a running smbcad on
loopback, and every query of contrib/grafana/smbca.json is evaluated through
its HTTP API (issue 15 item 6): each one parses and runs, and the ones about a
single server that has served a client return data.  The cluster panels come
back empty here (quick mode has no partner); tests/unit/test_monitoring.py
checks their metric names against the registries.

Run with ``-s`` to see what each query returned.  And: smbcad exits 2 naming
``--metrics-listen``'s key when the metrics port is taken.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.interop.clients import check_smbclient
from tests.interop.servers import REPO, Share, free_port, start_smbcad

DASHBOARD = REPO / "contrib" / "grafana" / "smbca.json"
SCRAPE_INTERVAL_S = 1
# Panels that must show data for one smbcad that has served a client.
MUST_HAVE_DATA = ("Requests by command", "Share operations", "Share throughput",
                  "Sessions, connections, opens", "Durable and persistent handles",
                  "Store failed (read-only)", "CPU", "Resident memory", "Open file descriptors",
                  "Versions", "Authentications")


def _query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _start_prometheus(tmp_path: Path, metrics_port: int) -> tuple[subprocess.Popen, int]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: smbcad\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n")
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return proc, port


def _wait_for_scrapes(port: int, count: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            up = _query(port, "count_over_time(up{job='smbcad'}[5m])")["data"]["result"]
            if up and float(up[0]["value"][1]) >= count:
                return
        except OSError:
            pass                        # not listening yet
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.interop("prometheus", "smbclient")
def test_dashboard_queries_against_a_real_scrape(tmp_path):
    (tmp_path / "share").mkdir()
    metrics_port = free_port()
    server = start_smbcad(tmp_path, shares=[Share("share", tmp_path / "share", ca=True)],
                          extra_args=["--metrics-listen", f"127.0.0.1:{metrics_port}"])
    prometheus = None
    try:
        (tmp_path / "prom").mkdir()
        prometheus, port = _start_prometheus(tmp_path / "prom", metrics_port)
        _wait_for_scrapes(port, 2, tmp_path / "prom" / "prometheus.log")
        # Traffic between scrapes, so the rates have something to show.
        (tmp_path / "local.bin").write_bytes(b"x" * 300_000)
        check_smbclient(server, f"put {tmp_path / 'local.bin'} f.bin; "
                                f"get f.bin {tmp_path / 'back.bin'}; ls")
        _wait_for_scrapes(port, 5, tmp_path / "prom" / "prometheus.log")
        assert _query(port, "up{job='smbcad'}")["data"]["result"][0]["value"][1] == "1"
        board = json.loads(DASHBOARD.read_text())
        with_data = set()
        for panel in board["panels"]:
            for target in panel.get("targets", ()):
                expr = target["expr"].replace("$instance", ".*")
                answer = _query(port, expr)
                assert answer["status"] == "success", (panel["title"], expr, answer)
                series = answer["data"]["result"]
                print(f"{panel['title']} [{target['refId']}]: {len(series)} series "
                      f"{[s['value'][1] for s in series][:4]}", file=sys.stderr)
                if series:
                    with_data.add(panel["title"])
        missing = [title for title in MUST_HAVE_DATA if title not in with_data]
        assert not missing, f"no data for {missing}"
        written = _query(port, "sum(rate(smbcad_share_written_bytes_total{share='share'}[5m]))")
        assert float(written["data"]["result"][0]["value"][1]) > 0
    finally:
        if prometheus is not None:
            _stop(prometheus)
        server.stop()


def test_metrics_port_taken_exits_2_naming_the_key(tmp_path):
    (tmp_path / "share").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "smbcad", "--listen", f"127.0.0.1:{free_port()}",
             "--share", f"share={tmp_path / 'share'}", "--user", "u:p",
             "--state-dir", str(tmp_path / "state"), "--metrics-listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 2, result.stderr
    assert f"server.metrics_listen: cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
