"""Shared LUNs for clusdisk processes on a machine without SCSI targets: one
process holds the fake LUNs of tests/unit/clusdisk/fake_lun.py (a model of
SPC-2 reservations and SPC-4 persistent reservations written from the
standards) and serves their commands on a Unix socket, so that two real
clusdisk processes in two network namespaces share a quorum LUN and data
LUNs, each through its own I_T nexus (``RemoteLun``; the LUN lab, tests/lab,
does the same with LIO and real SG_IO).

    python lun_server.py SOCKET NAME...      # one LUN per name, 2 nexuses each

A request is one JSON line: ``{"lun", "nexus", "op": "execute", "cdb",
"data_out", "alloc"}`` (bytes in hex) or ``{"lun", "nexus", "op": "reset",
"kind"}``; the answer one JSON line ``{"status", "sense", "data",
"host_status"}``.  Commands run one at a time, as on one logical unit.
"""

import json
import os
import socket
import socketserver
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "clusdisk"))

from fake_lun import FakeLun, Reply  # noqa: E402

BLOCKS = 4096          # 2 MiB of 512-byte blocks: room for the placement record


class RemoteLun:
    """A client's view of one served LUN with FakeLun's ``execute`` and
    ``reset``, so ``FakeLun.device(remote, nexus)`` builds an SgDevice over it."""

    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name
        self._sock: socket.socket | None = None
        self._file = None
        self._lock = threading.Lock()

    def _ask(self, message: dict) -> dict:
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.connect(self.path)
                self._file = self._sock.makefile("rwb")
            self._file.write(json.dumps({"lun": self.name, **message}).encode() + b"\n")
            self._file.flush()
            line = self._file.readline()
        if not line:
            raise OSError(f"LUN server {self.path} closed the connection")
        return json.loads(line)

    def execute(self, nexus: int, cdb: bytes, data_out: bytes = b"", alloc: int = 0) -> Reply:
        answer = self._ask({"nexus": nexus, "op": "execute", "cdb": cdb.hex(),
                            "data_out": data_out.hex(), "alloc": alloc})
        return Reply(answer["status"], bytes.fromhex(answer["sense"]),
                     bytes.fromhex(answer["data"]), answer["host_status"])

    def reset(self, nexus: int, kind: int) -> None:
        self._ask({"nexus": nexus, "op": "reset", "kind": kind})

    def device(self, nexus: int, **kwargs):
        return FakeLun.device(self, nexus, **kwargs)

    def ioctl(self, nexus: int):
        return FakeLun.ioctl(self, nexus)


def serve(path: str, names) -> None:
    luns = {name: FakeLun(serial=f"cluster-{name}", blocks=BLOCKS,
                          naa=bytes.fromhex(f"6001405{index:025x}"))
            for index, name in enumerate(names)}
    lock = threading.Lock()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                request = json.loads(line)
                lun = luns[request["lun"]]
                with lock:
                    if request["op"] == "reset":
                        lun.reset(request["nexus"], request["kind"])
                        reply = Reply()
                    else:
                        reply = lun.execute(request["nexus"], bytes.fromhex(request["cdb"]),
                                            bytes.fromhex(request["data_out"]), request["alloc"])
                self.wfile.write(json.dumps({"status": reply.status, "sense": reply.sense.hex(),
                                             "data": reply.data.hex(),
                                             "host_status": reply.host_status}).encode() + b"\n")
                self.wfile.flush()

    if os.path.exists(path):
        os.unlink(path)
    with socketserver.ThreadingUnixStreamServer(path, Handler) as server:
        server.daemon_threads = True
        print("lun server: ready", flush=True)
        server.serve_forever()


def naa(names, name: str) -> str:
    """The NAA designator ``serve`` gives LUN ``name``."""
    return f"naa.6001405{list(names).index(name):025x}"


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
