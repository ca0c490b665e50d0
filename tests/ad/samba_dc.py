"""A real Samba AD DC in a network namespace, as a test fixture (issue 12).

Topology (namespace names carry the test run's PID, so parallel runs never meet)::

    DC ns (sadc<pid>): br0 192.0.2.53/24 ── dc0 ── veth ── member ns (sadm<pid>): ad0 192.0.2.80/24

The DC is Debian's ``samba`` in AD DC mode, provisioned once per test session
with ``samba-tool domain provision --targetdir`` under a temp dir (about ten
seconds), then run as ``samba -i -M single`` inside its namespace and stopped
by PID.  Only the services a domain member needs run: LDAP, CLDAP, the KDC
(with kpasswd), RPC and DNS.  The member namespace is where the server under
test and its clients run (``member_argv`` wraps a command to run there);
``krb5.conf`` for both is a temp file (``KRB5_CONFIG``, ``env()``), its KDC the
DC's address, so nothing on the machine's own Kerberos or DNS set-up is used.
Names resolve inside the member namespace through /etc/netns/NS/hosts and
resolv.conf (``ip netns exec`` mounts them over /etc's), which list the DC and
the server's names and point DNS at the DC, as on a real domain member.

Later tiers (witnessd, the cluster pair) can give another namespace a link
to the DC with ``attach(ns, ifname, address)``.
"""

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

COMMAND_TIMEOUT_S = 120.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0

REALM = "SMBCA.TEST"
DOMAIN = "SMBCA"
DNS_DOMAIN = REALM.lower()
DC_NAME = "dc1"
DC_ADDRESS = "192.0.2.53"
MEMBER_ADDRESS = "192.0.2.80"
PREFIX = 24
ADMIN_PASSWORD = "Adm1n-Pass.word"
# Domain users the tests log on as: name -> password.
USERS = {"alice": "Al1ce-Pass.word", "bob": "B0b-Pass.word"}
GROUP = "smbca-staff"                 # alice is a member, bob is not
# The client-access names of the server under test (FS1 names the computer
# account, FS1ALT is a second name on it); both resolve to the member's address.
SERVER_NAMES = ("FS1", "FS1ALT")

# The DC's services: no smbd (s3fs), no winbindd (its sockets would be under
# /run), no NetBIOS, WINS, replication or dynamic DNS.
_SERVER_SERVICES = "-s3fs -winbindd -nbt -wrepl -ntp_signd -dnsupdate -kcc -drepl"


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("timeout", COMMAND_TIMEOUT_S)
    kwargs.setdefault("capture_output", True)
    try:
        return subprocess.run(argv, **kwargs)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {exc.returncode}:\n"
                           f"{exc.stdout.decode(errors='replace') if exc.stdout else ''}"
                           f"{exc.stderr.decode(errors='replace') if exc.stderr else ''}"
                           ) from None


def krb5_conf(path: Path) -> Path:
    """The tests' krb5.conf: the realm's KDC and kpasswd at the DC's address, no
    DNS look-ups and no reverse-DNS canonicalisation of service host names
    (smbclient's ``cifs/NAME`` must stay as written)."""
    path.write_text(f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 0
    default_ccache_name = FILE:{path.parent}/ccache

[realms]
    {REALM} = {{
        kdc = {DC_ADDRESS}
        admin_server = {DC_ADDRESS}
        kpasswd_server = {DC_ADDRESS}
    }}

[domain_realm]
    .{DNS_DOMAIN} = {REALM}
    {DNS_DOMAIN} = {REALM}
""")
    return path


def provision(target: Path) -> Path:
    """``samba-tool domain provision`` into ``target`` plus the test users and
    group; returns the DC's smb.conf.  An empty base config keeps the
    machine's /etc/samba/smb.conf out of it."""
    target.mkdir(parents=True, exist_ok=True)
    empty = target / "empty.conf"
    empty.write_text("")
    run(["samba-tool", "domain", "provision", "-s", str(empty),
         f"--realm={REALM}", f"--domain={DOMAIN}", "--server-role=dc",
         "--dns-backend=SAMBA_INTERNAL", "--use-rfc2307", f"--adminpass={ADMIN_PASSWORD}",
         f"--targetdir={target}", f"--host-name={DC_NAME}", f"--host-ip={DC_ADDRESS}",
         f"--option=interfaces={DC_ADDRESS}/{PREFIX}", "--option=bind interfaces only=yes",
         f"--option=pid directory={target}/run",
         f"--option=winbindd socket directory={target}/run/winbindd",
         f"--option=ntp signd socket directory={target}/run/ntp_signd",
         f"--option=server services={_SERVER_SERVICES}",
         "--option=dns forwarder=",
         "--option=log level=1"])
    conf = target / "etc" / "smb.conf"
    (target / "run").mkdir(exist_ok=True)
    for user, password in USERS.items():
        run(["samba-tool", "user", "create", "-s", str(conf), user, password])
    # The DC's ldap/ SPNs, which adcli's LDAP bind asks a ticket for, are
    # added by samba_spnupdate from the dnsupdate service, which does not run.
    for spn in (f"ldap/{DC_NAME}.{DNS_DOMAIN}", f"ldap/{DC_NAME.upper()}",
                f"ldap/{DC_NAME}.{DNS_DOMAIN}/{DNS_DOMAIN}"):
        run(["samba-tool", "spn", "add", "-s", str(conf), spn, f"{DC_NAME.upper()}$"])
    run(["samba-tool", "group", "add", "-s", str(conf), GROUP])
    run(["samba-tool", "group", "addmembers", "-s", str(conf), GROUP, "alice"])
    return conf


@dataclass
class SambaDc:
    """The fixture's value: the running DC and the member namespace."""

    base: Path
    conf: Path
    dc_ns: str
    member_ns: str
    krb5_config: Path
    proc: subprocess.Popen | None = None
    links: int = 0

    realm = REALM
    domain = DOMAIN
    dc_address = DC_ADDRESS
    member_address = MEMBER_ADDRESS
    admin_password = ADMIN_PASSWORD
    users = USERS
    group = GROUP

    @classmethod
    def start(cls, base: Path, provisioned: Path) -> "SambaDc":
        tag = f"{os.getpid() % 100000}"
        dc = cls(base=base, conf=provisioned / "etc" / "smb.conf", dc_ns=f"sadc{tag}",
                 member_ns=f"sadm{tag}", krb5_config=krb5_conf(base / "krb5.conf"))
        try:
            dc._make_namespaces()
            dc._start_samba()
        except BaseException:
            dc.close()
            raise
        return dc

    @property
    def _etc(self) -> Path:
        return Path("/etc/netns") / self.member_ns

    def _make_namespaces(self) -> None:
        self._etc.mkdir(parents=True, exist_ok=True)
        hosts = ["127.0.0.1 localhost", f"{DC_ADDRESS} {DC_NAME}.{DNS_DOMAIN} {DC_NAME}"]
        hosts += [f"{MEMBER_ADDRESS} {name.lower()}.{DNS_DOMAIN} {name.lower()}"
                  for name in SERVER_NAMES]
        (self._etc / "hosts").write_text("\n".join(hosts) + "\n")
        (self._etc / "resolv.conf").write_text(f"nameserver {DC_ADDRESS}\nsearch {DNS_DOMAIN}\n")
        run(["ip", "netns", "add", self.dc_ns])
        run(["ip", "netns", "add", self.member_ns])
        run(["ip", "-n", self.dc_ns, "-batch", "-"], input="\n".join([
            "link set lo up", "link add br0 type bridge", "link set br0 up",
            f"addr add {DC_ADDRESS}/{PREFIX} dev br0",
            f"link add dc0 type veth peer name ad0 netns {self.member_ns}",
            "link set dc0 master br0", "link set dc0 up",
        ]).encode())
        run(["ip", "-n", self.member_ns, "-batch", "-"], input="\n".join([
            "link set lo up", "link set ad0 up", f"addr add {MEMBER_ADDRESS}/{PREFIX} dev ad0",
        ]).encode())

    def _start_samba(self) -> None:
        log_path = self.base / "samba.log"
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.dc_ns, "samba", "-i", "-M", "single",
                 "-s", str(self.conf), "--debug-stdout"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"samba exited {self.proc.returncode}:\n{self.log_tail()}")
            if self._kdc_answers():
                return
            time.sleep(0.2)
        raise RuntimeError(f"samba's KDC did not answer in {START_TIMEOUT_S:.0f} s:\n"
                           f"{self.log_tail()}")

    def _kdc_answers(self) -> bool:
        """kinit as Administrator succeeds: the KDC and the directory are up."""
        result = self.member_run(["kinit", f"Administrator@{REALM}"], check=False,
                                 input=ADMIN_PASSWORD.encode(), timeout=10)
        return result.returncode == 0

    def env(self, **extra: str) -> dict:
        """The environment for Kerberos tools and the server under test."""
        return {**os.environ, "KRB5_CONFIG": str(self.krb5_config),
                "KRB5CCNAME": f"FILE:{self.base}/ccache", **extra}

    def member_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.member_ns, *map(str, argv)]

    def member_run(self, argv: list[str], env: dict | None = None,
                   **kwargs) -> subprocess.CompletedProcess:
        return run(self.member_argv(argv), env=env or self.env(), **kwargs)

    def kinit(self, principal: str, password: str, ccache: Path, lifetime: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
        argv = ["kinit", "-c", f"FILE:{ccache}"]
        if lifetime:
            argv += ["-l", lifetime]
        return self.member_run(argv + [principal], input=password.encode(), check=check)

    def samba_tool(self, *args: str) -> subprocess.CompletedProcess:
        """samba-tool against the DC's own database (no network needed)."""
        return run(["samba-tool", *args, "-s", str(self.conf)])

    def object_sid(self, kind: str, name: str) -> str:
        """``samba-tool user|group show``'s objectSid."""
        shown = self.samba_tool(kind, "show", name, "--attributes=objectSid").stdout.decode()
        return next(line.split(":", 1)[1].strip() for line in shown.splitlines()
                    if line.startswith("objectSid:"))

    def attach(self, ns: str, ifname: str, address: str) -> None:
        """A veth from the DC's namespace to ``ns``, where it is ``ifname`` with
        ``address`` (/24, in the DC's subnet)."""
        self.links += 1
        peer = f"dc{self.links}"             # dc0 is the member's
        run(["ip", "-n", self.dc_ns, "link", "add", peer, "type", "veth", "peer", "name",
             ifname, "netns", ns])
        run(["ip", "-n", self.dc_ns, "link", "set", peer, "master", "br0", "up"])
        run(["ip", "-n", ns, "link", "set", ifname, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{address}/{PREFIX}", "dev", ifname])

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.base / "samba.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT_S)
            except ProcessLookupError:
                pass
        for ns in (self.member_ns, self.dc_ns):
            run(["ip", "netns", "del", ns], check=False)
        for name in ("hosts", "resolv.conf"):
            (self._etc / name).unlink(missing_ok=True)
        if self._etc.is_dir():
            self._etc.rmdir()

