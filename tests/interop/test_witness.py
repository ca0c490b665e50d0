"""witnessd against Samba 4.17's clients: smbtorture, rpcclient, the python bindings.

Every server listens on 127.0.0.1 (free ports) and is stopped by its PID
(process group) at teardown; temporary directories are pytest's.

* smbtorture ``rpc.witness`` (GetInterfaceList, Register, UnRegister,
  RegisterEx) with the options it needs::

      smbtorture 'ncacn_ip_tcp:127.0.0.1[PORT,sign]' -U 'alice%PW'
          --option=torture:net_name=CLUSTER   # NetName for Register(Ex); else NULL
          --option='smb ports=SMBPORT'        # srvsvc NetShareEnumAll over SMB
          rpc.witness.witness.GetInterfaceList rpc.witness.witness.Register
          rpc.witness.witness.UnRegister rpc.witness.witness.RegisterEx

  Register / RegisterEx first enumerate shares through srvsvc over SMB on the
  same host and record a failure if that fails, so the test runs smbcad next
  to witnessd.  smbtorture keeps the binding's ``sign`` for that pipe, so
  smbcad's srvsvc pipe signs DCE/RPC with the same SPNEGO/NTLM provider
  (smbca.rpc.ntlm_security.NtlmSecurity).  ``AsyncNotify`` is not run: it
  drives a Windows cluster through clusapi and smbtorture 4.17 crashes without
  one.  ``AsyncNotify_timeouts`` (KeepAliveTimeout 0, 1, 10, 100, 120 s, about
  4 minutes) runs with ``WITNESS_TORTURE_TIMEOUTS=1``; its clusapi bind
  failure is expected and the only failure allowed.
* rpcclient 4.17 ignores the port of an ``ncacn_ip_tcp`` binding and always
  asks the endpoint mapper on TCP 135, so witnessd runs in a private network
  namespace (root: ``unshare -n``) with its EPM on 135 there, and rpcclient
  joins it with ``nsenter``.  One interactive session per level (sign, seal):
  getinterfacelist, register, registerex, asyncnotify (completed by a
  client-move event), unregister.
* The python bindings (``/usr/bin/python3``, ``samba.dcerpc.witness``) register
  with RegisterEx, wait in AsyncNotify (checked pending through the control
  socket) and receive CLIENT_MOVE, RESOURCE_CHANGE and IP_CHANGE posted with
  ``python3 -m smbca.admin witness notify`` (the ``smbca`` admin command).
"""

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.servers import REPO, RunningServer, Share, _launch, _wait_ready, free_port

USER, PASSWORD = "alice", "Witness-Pw1"
NET_NAME = "CLUSTER"
SAMBA_PYTHON = "/usr/bin/python3"
ZERO6 = "0000:0000:0000:0000:0000:0000:0000:0000"  # Samba prints IPv6 uncompressed
WITNESS_READY = "witnessd: witness listening on"



def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unmet(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: prerequisites must be installed)", pytrace=False)
    pytest.skip(reason)


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                         os.environ.get("PYTHONPATH")])))


def _config(path: Path, port: int, epm_port: int, control: Path) -> None:
    path.write_text(f"""\
server:
  listen: ["127.0.0.1:{port}"]
  epm_listen: ["127.0.0.1:{epm_port}"]
  control_socket: {control}
  idle_timeout_s: 0
auth:
  users: [{{name: {USER}, password: {PASSWORD}}}]
witness:
  net_name: {NET_NAME}
  local_node: NODE1
  shares: [vm]
  forced_unregister_after_s: 0   # deterministic here; unit tests cover the timer
interfaces:
  - {{node: NODE1, ipv4: 127.0.0.1}}
  - {{node: NODE2, ipv4: 127.0.0.2, ipv6: "fd00::2"}}
""")


class Witness:
    def __init__(self, server: RunningServer, control: Path) -> None:
        self.server = server
        self.control = control

    @property
    def port(self) -> int:
        return self.server.port

    def notify(self, *args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "smbca.admin", "witness", "notify",
                              "--socket", str(self.control), *args], cwd=REPO, env=_env(),
                             capture_output=True, text=True, timeout=30)
        return json.loads(out.stdout)

    def wait_registrations(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.notify("status")["registrations"]) != count:
            assert time.monotonic() < deadline, f"registrations never reached {count}"
            time.sleep(0.05)

    def wait_pending(self, count: int = 1, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.notify("status")
            if sum(r["waiting_calls"] for r in status["registrations"]) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"no AsyncNotify pending: {status}")


def _start_witness(tmp_path: Path, netns: bool) -> Witness:
    port, epm_port = free_port(), (135 if netns else free_port())
    control = tmp_path / "control.sock"
    config = tmp_path / "witnessd.yaml"
    _config(config, port, epm_port, control)
    argv = [sys.executable, "-m", "witnessd", "--config", str(config)]
    if netns:
        argv = ["unshare", "-n", "sh", "-c",
                'ip link set lo up && exec "$0" "$@"', *argv]
    log = tmp_path / "witnessd.log"
    proc = _launch(argv, log, env=_env(), cwd=REPO)
    server = RunningServer("witnessd", "127.0.0.1", port, proc, log, (), {USER: PASSWORD})
    _wait_ready(server, WITNESS_READY)
    deadline = time.monotonic() + 10
    while not control.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return Witness(server, control)


@pytest.fixture
def witness(tmp_path):
    w = _start_witness(tmp_path, netns=False)
    yield w
    w.server.stop()


# -- smbtorture -------------------------------------------------------------------------

@pytest.fixture
def smbcad_with_srvsvc(tmp_path):
    share = tmp_path / "vm"
    share.mkdir()
    port = free_port()
    argv = [sys.executable, "-m", "smbcad", "--listen", f"127.0.0.1:{port}",
            "--state-dir", str(tmp_path / "state"), "--share", f"vm={share},ca",
            "--user", f"{USER}:{PASSWORD}"]
    log = tmp_path / "smbcad.log"
    proc = _launch(argv, log, env=_env(), cwd=REPO)
    server = RunningServer("smbcad", "127.0.0.1", port, proc, log, (Share("vm", share),),
                           {USER: PASSWORD})
    _wait_ready(server, "smbcad: listening on")
    yield server
    server.stop()


def _torture(witness: Witness, smb_port: int, *tests: str, timeout: int) -> str:
    argv = ["smbtorture", f"ncacn_ip_tcp:127.0.0.1[{witness.port},sign]",
            "-U", f"{USER}%{PASSWORD}", f"--option=torture:net_name={NET_NAME}",
            f"--option=smb ports={smb_port}", *tests]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return out.stdout + out.stderr


@pytest.mark.interop("smbtorture")
def test_smbtorture_rpc_witness(witness, smbcad_with_srvsvc) -> None:
    names = ("GetInterfaceList", "Register", "UnRegister", "RegisterEx")
    output = _torture(witness, smbcad_with_srvsvc.port,
                      *(f"rpc.witness.witness.{name}" for name in names), timeout=120)
    results = {name: verdict for verdict, name in
               re.findall(r"^(success|failure|error|skip): witness\.(\w+)", output, re.M)}
    assert results == {name: "success" for name in names}, output


@pytest.mark.interop("smbtorture")
def test_smbtorture_async_notify_timeouts(witness, smbcad_with_srvsvc) -> None:
    if os.environ.get("WITNESS_TORTURE_TIMEOUTS") != "1":
        pytest.skip("about 4 minutes; set WITNESS_TORTURE_TIMEOUTS=1")
    output = _torture(witness, smbcad_with_srvsvc.port,
                      "rpc.witness.witness.AsyncNotify_timeouts", timeout=400)
    assert "Testing Async Notify with timeout of 120" in output, output
    failures = re.findall(r"^failure: witness\.AsyncNotify_timeouts \[\n(.*)$", output, re.M)
    assert all("clusapi" in line for line in failures), output


# -- rpcclient (needs our EPM on 135: private network namespace) ---------------------------

@pytest.fixture
def netns_witness(tmp_path):
    if os.geteuid() != 0:
        _unmet("rpcclient needs the endpoint mapper on TCP 135: a network namespace (root)")
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            _unmet(f"{tool} not installed")
    w = _start_witness(tmp_path, netns=True)
    yield w
    w.server.stop()


class LineReader:
    """Complete lines from a pipe with a timeout (no stdio buffering to fool select)."""

    def __init__(self, pipe) -> None:
        self._fd = pipe.fileno()
        self._buffer = b""
        self._lines: list[str] = []

    def read(self, lines: int, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self._lines) < lines and time.monotonic() < deadline:
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    break
                self._buffer += chunk
                *complete, self._buffer = self._buffer.split(b"\n")
                self._lines += [line.decode().rstrip() for line in complete if line.strip()]
        out, self._lines = self._lines[:lines], self._lines[lines:]
        assert len(out) == lines, out
        return out


class RpcClient:
    """One interactive rpcclient session inside the witness's network namespace.

    rpcclient reads a command only when it waits for input, so each command
    is sent once the previous answer arrived.
    """

    def __init__(self, pid: int, level: str) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", "-t", str(pid), "-n", "rpcclient", f"ncacn_ip_tcp:127.0.0.1[{level}]",
             "-U", f"{USER}%{PASSWORD}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = LineReader(self.proc.stdout)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def read(self, lines: int) -> list[str]:
        return self._reader.read(lines)

    def command(self, line: str, lines: int = 1) -> list[str]:
        self.send(line)
        return self.read(lines)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()


@pytest.mark.root
@pytest.mark.interop("rpcclient")
@pytest.mark.parametrize("level", ["sign", "seal"])
def test_rpcclient_witness_commands(netns_witness, level) -> None:
    client = RpcClient(netns_witness.server.pid, level)
    try:
        assert client.command("getinterfacelist", 2) == [
            " + NODE1 127.0.0.1 V2",
            "*+ NODE2 127.0.0.2 fd00:0000:0000:0000:0000:0000:0000:0002 V2"]
        (handle,) = client.command(f"register --net={NET_NAME} --ip=127.0.0.2 --client=hv1")
        assert re.fullmatch(r"0:[0-9a-f-]{36}", handle), handle
        (handle_ex,) = client.command(f"registerex --net={NET_NAME} --ip=127.0.0.2 "
                                      "--client=hv1 --share=vm --timeout=60")
        assert re.fullmatch(r"0:[0-9a-f-]{36}", handle_ex), handle_ex
        client.send(f"asyncnotify {handle}")
        netns_witness.wait_pending()
        assert netns_witness.notify("client-move", "--client", "hv1", "NODE1")[
            "registrations"] == 2
        # rpcclient prints "Online Offline" for ONLINE (it tests the ONLINE bit twice).
        assert client.read(2) == ["Client move with 1 messages",
                                  "Flags 0x00000009 127.0.0.1 Online Offline"]
        for remaining, h in enumerate((handle, handle_ex)):
            client.send(f"unregister {h}")  # silent on success: watch it take effect
            netns_witness.wait_registrations(1 - remaining)
        assert client.command(f"unregister {handle}", 2) == [
            "dcerpc_witness_UnRegister failed, error: WERR_INVALID_PARAMETER",
            "result was WERR_INVALID_PARAMETER"]
    finally:
        client.close()


# -- Samba's python bindings -------------------------------------------------------------------

SAMBA_CLIENT = r'''
import json, sys
from samba import credentials, param
from samba.dcerpc import witness
lp = param.LoadParm()
creds = credentials.Credentials()
creds.guess(lp)
creds.set_username(sys.argv[2]); creds.set_password(sys.argv[3]); creds.set_domain("")
c = witness.witness(f"ncacn_ip_tcp:127.0.0.1[{sys.argv[1]},{sys.argv[4]}]", lp, creds)
def out(value):
    print(json.dumps(value), flush=True)
out([[i.group_name, i.version, i.state, i.ipv4, i.ipv6, i.flags]
     for i in c.GetInterfaceList().interfaces])
h = c.RegisterEx(witness.WITNESS_V2, "CLUSTER", "vm", "127.0.0.2", "hv1.example.com",
                 witness.WITNESS_REGISTER_IP_NOTIFICATION, 60)
out(str(h))
for line in sys.stdin:
    if line.strip() != "notify":
        break
    r = c.AsyncNotify(h)
    messages = []
    for m in r.messages:
        if r.type == witness.WITNESS_NOTIFY_RESOURCE_CHANGE:
            messages.append([m.type, m.name])
        else:
            messages.append([[a.flags, a.ipv4, a.ipv6] for a in m.addr])
    out({"type": r.type, "num": r.num, "length": r.length, "messages": messages})
c.UnRegister(h)
out("unregistered")
'''


@pytest.fixture
def samba_python():
    probe = subprocess.run([SAMBA_PYTHON, "-c", "import samba.dcerpc.witness"],
                           capture_output=True) if os.path.exists(SAMBA_PYTHON) else None
    if probe is None or probe.returncode != 0:
        _unmet("Samba's python bindings (python3-samba for /usr/bin/python3) not installed")


@pytest.mark.interop("rpcclient")
@pytest.mark.parametrize("level", ["spnego,sign", "spnego,seal"])
def test_python_bindings_receive_notifications(samba_python, witness, level) -> None:
    proc = subprocess.Popen([SAMBA_PYTHON, "-c", SAMBA_CLIENT, str(witness.port), USER,
                             PASSWORD, level], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    reader = LineReader(proc.stdout)
    try:
        def line():
            (text,) = reader.read(1)
            return json.loads(text)

        interfaces = line()
        assert interfaces == [
            ["NODE1", 0x20000, 1, "127.0.0.1", ZERO6, 1],
            ["NODE2", 0x20000, 1, "127.0.0.2", "fd00:0000:0000:0000:0000:0000:0000:0002", 7]]
        assert line().startswith("0, ")

        def event(*args: str) -> dict:
            proc.stdin.write("notify\n")
            proc.stdin.flush()
            witness.wait_pending()
            assert witness.notify(*args)["ok"]
            return line()

        move = event("client-move", "--client", "HV1.example.com", "NODE1")
        assert move == {"type": 2, "num": 1, "length": 36,
                        "messages": [[[0x09, "127.0.0.1", ZERO6]]]}
        down = event("node", "NODE2", "down")
        assert down == {"type": 1, "num": 1, "length": 28,
                        "messages": [[0xFF, "127.0.0.2"]]}
        # the NODE2 change also queued an IP_CHANGE for this IP-notification registration
        proc.stdin.write("notify\n")
        proc.stdin.flush()
        ip_change = line()
        assert ip_change == {"type": 4, "num": 1, "length": 60, "messages": [[
            [0x11, "127.0.0.2", ZERO6],
            [0x12, "0.0.0.0", "fd00:0000:0000:0000:0000:0000:0000:0002"]]]}
        explicit = event("ip-change", "NODE1")
        assert explicit["type"] == 4 and explicit["messages"] == [[[0x09, "127.0.0.1", ZERO6]]]
        up = event("node", "NODE2", "up")
        assert up["type"] == 1 and up["messages"] == [[1, "127.0.0.2"]]
        proc.stdin.write("done\n")
        proc.stdin.flush()
        assert line() == "unregistered"
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
