"""Regenerate ``captured.py``: stubs and PDUs that real clients sent to witnessd.

Run as root inside a private network namespace, so that rpcclient (which
always asks the endpoint mapper on TCP 135) reaches our EPM::

    PYTHONPATH=. unshare -n python3 tests/unit/witness/capture_vectors.py \
        > tests/unit/witness/captured.py

It starts witnessd in-process on 127.0.0.1 (EPM on 135), wraps every
interface handler to record (opnum, request stub, response stub) and every
connection to record the first PDU a client sends, then drives:

* Samba 4.17 ``rpcclient`` (``ncacn_ip_tcp:127.0.0.1[sign]``): ept_map,
  GetInterfaceList, Register, RegisterEx, AsyncNotify (answered after a
  client-move event), UnRegister;
* Samba 4.17 python bindings (``/usr/bin/python3``, ``samba.dcerpc.witness``,
  ``[spnego,sign]``): RegisterEx with a share and flags, AsyncNotify answered
  with RESOURCE_CHANGE and IP_CHANGE, UnRegister; ``samba.dcerpc.mgmt``
  inq_princ_name.

Requests are client bytes; responses are our encoder's bytes that the
client decoded and accepted.  Nothing here runs under pytest.
"""

import asyncio
import os
import subprocess
import textwrap

import witnessd.daemon
from smbca.rpc.dcerpc import PendingCall, RpcConnection
from witnessd import config as config_mod
from witnessd.daemon import Daemon

SOCKET = "/tmp/witness-capture.sock"
OPS = {("witness", 0): "GetInterfaceList", ("witness", 1): "Register",
       ("witness", 2): "UnRegister", ("witness", 3): "AsyncNotify",
       ("witness", 4): "RegisterEx", ("witness", 5): "UnRegisterEx",
       ("epmapper", 3): "ept_map", ("mgmt", 4): "inq_princ_name"}

SAMBA_PY = r'''
import sys
from samba.dcerpc import witness, mgmt
from samba import credentials, param
lp = param.LoadParm()
creds = credentials.Credentials(); creds.guess(lp)
creds.set_username("alice"); creds.set_password("Secret1"); creds.set_domain("")
port = sys.argv[1]
c = witness.witness(f"ncacn_ip_tcp:127.0.0.1[{port},spnego,sign]", lp, creds)
h = c.RegisterEx(witness.WITNESS_V2, "CLUSTER", "vm", "127.0.0.2", "hv1.example.com", 1, 120)
print("READY", flush=True)
r = c.AsyncNotify(h)
print("GOT", r.type, flush=True)
r = c.AsyncNotify(h)
print("GOT", r.type, flush=True)
c.UnRegister(h)
m = mgmt.mgmt(f"ncacn_ip_tcp:127.0.0.1[{port}]", lp, creds)
print("PRINC", m.inq_princ_name(9, 256), flush=True)
'''


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes, bytes | None]] = []
        self.binds: list[tuple[str, bytes]] = []
        self.client = "?"

    def wrap_table(self, table):
        return {key: self._wrap(handler) for key, handler in table.items()}

    def _wrap(self, handler):
        def wrapped(opnum, stub, call):
            name = OPS.get((handler.name, opnum), f"{handler.name}.{opnum}")
            entry = [self.client, name, stub, None]
            self.calls.append(entry)
            result = handler(opnum, stub, call)
            if isinstance(result, PendingCall):
                send = result._send

                def record(call_, out, status):
                    entry[3] = out
                    send(call_, out, status)
                result._send = record
            else:
                entry[3] = bytes(result)
            return result
        wrapped.name = handler.name
        return wrapped


async def run_process(*argv: str, stdin: bytes | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate(stdin)
    return out


async def rpcclient_command(proc, command: str, lines: int = 1) -> list[str]:
    proc.stdin.write(command.encode() + b"\n")
    await proc.stdin.drain()
    return [(await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
            for _ in range(lines)]


async def post(daemon: Daemon, event: dict) -> None:
    from witnessd.control import apply_request, parse_request
    apply_request(daemon.service, parse_request(event))


def record_first_pdus(recorder: "Recorder") -> None:
    """Every connection records the first PDU (the bind) its client sends."""

    class Recording(RpcConnection):
        def receive_data(self, data: bytes) -> None:
            if not getattr(self, "_recorded", False):
                self._recorded = True
                recorder.binds.append((recorder.client, bytes(data)))
            super().receive_data(data)
    witnessd.daemon.RpcConnection = Recording


async def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    cfg = config_mod.from_quick_args(config_mod.QuickArgs(
        listen=("127.0.0.1:0",), epm_listen=("127.0.0.1:135",), users=("alice:Secret1",),
        net_name="CLUSTER", interfaces=("NODE1=127.0.0.1", "NODE2=127.0.0.2,fd00::2"),
        shares=("vm",)))
    daemon = Daemon(cfg)
    recorder = Recorder()
    record_first_pdus(recorder)
    for role in ("witness", "epm"):
        daemon._tables[role] = recorder.wrap_table(daemon._tables[role])
    bound = await daemon.start()
    port = next(port for role, _, port in bound if role == "witness")
    ticker = asyncio.create_task(daemon.serve())

    recorder.client = "rpcclient 4.17.12 [sign]"
    proc = await asyncio.create_subprocess_exec(
        "rpcclient", "ncacn_ip_tcp:127.0.0.1[sign]", "-U", "alice%Secret1",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    # rpcclient reads stdin line by line only when it waits for input (it polls
    # the descriptor), so each command is sent after the previous one answered.
    await rpcclient_command(proc, "getinterfacelist", lines=2)
    (handle,) = await rpcclient_command(proc, "register --net=CLUSTER --ip=127.0.0.2 --client=hv1")
    await rpcclient_command(proc, "registerex --net=CLUSTER --ip=127.0.0.2 --client=hv1 "
                            "--share=vm --timeout=60")
    proc.stdin.write(f"asyncnotify {handle}\n".encode())
    await asyncio.sleep(1)
    await post(daemon, {"event": "client-move", "client": "hv1", "destination": "NODE1"})
    await asyncio.sleep(1)
    proc.stdin.write(f"unregister {handle}\n".encode())
    proc.stdin.close()
    await asyncio.wait_for(proc.wait(), 10)

    recorder.client = "samba 4.17.12 python bindings [spnego,sign]"
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/python3", "-c", SAMBA_PY, str(port), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    await proc.stdout.readline()  # READY
    await asyncio.sleep(0.5)
    await post(daemon, {"event": "node", "node": "NODE2", "state": "down"})
    out = await proc.communicate()
    await post(daemon, {"event": "node", "node": "NODE2", "state": "up"})
    if proc.returncode != 0:
        raise SystemExit(f"samba client failed: {out}")
    ticker.cancel()
    emit(recorder)


def emit(recorder: Recorder) -> None:
    print('"""Stubs captured from real clients by capture_vectors.py (do not edit by hand).')
    print()
    print("Each entry: (client, operation, request stub, response stub).  Requests are")
    print("the client's bytes; responses are witnessd's, which the client decoded.")
    print('"""')
    print()
    print("CALLS = [")
    for client, name, request, response in recorder.calls:
        print(f"    ({client!r}, {name!r},")
        print(f"     bytes.fromhex({_hex(request)}),")
        print(f"     {'None' if response is None else f'bytes.fromhex({_hex(response)})'}),")
    print("]")
    print()
    print("FIRST_PDUS = [")
    for client, pdu in recorder.binds:
        print(f"    ({client!r},")
        print(f"     bytes.fromhex({_hex(pdu)})),")
    print("]")


def _hex(data: bytes) -> str:
    text = data.hex()
    lines = textwrap.wrap(text, 64)
    if len(lines) <= 1:
        return repr(text)
    return "\n        " + "\n        ".join(repr(line) for line in lines)


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root inside `unshare -n`")
    asyncio.run(main())
