"""Joining the pair to an Active Directory domain: what ``smbca domain``
asks of adcli, and reading the keytab it leaves (issue 12 item 1).

The pair is one domain member, as a Windows clustered file server is one
computer object for its client access point: one computer account named
after the first client-access name (``server.server_name``), with ``cifs/``
and ``host/`` SPNs for every name, short and fully qualified.  Its keytab
(``server.keytab``) is copied to the partner, so either node can accept a
ticket for any of the names; a password change (``adcli update``) must be
copied again.

The work is adcli's (the tool realmd and sssd use): it finds the DC over
CLDAP, binds to LDAP with Kerberos, creates or updates the account, sets the
SPNs and a random machine password through kpasswd, and writes the keys in
every enctype the domain allows with the salt it discovers.  Doing that by
hand would mean an LDAP client, kpasswd and the salt rules in this tree.

This module is pure: argument vectors and the keytab parser; ``admin_domain``
runs them.
"""

import json
import struct
from dataclasses import asdict, dataclass

DEFAULT_KEYTAB = "/etc/smbca/krb5.keytab"
_SERVICES = ("cifs", "host")
_NETBIOS_MAX = 15


class DomainError(Exception):
    """A join, leave or status that cannot go ahead; the message says why."""


@dataclass(frozen=True)
class Membership:
    """The pair's identity in ``realm``: its client-access ``names`` (the
    first names the computer account) and where the keys go."""

    realm: str
    names: tuple[str, ...]
    keytab: str = DEFAULT_KEYTAB
    domain_controller: str | None = None

    def __post_init__(self) -> None:
        if not self.realm or "." not in self.realm:
            raise DomainError(f"realm {self.realm!r} must be the domain's DNS name")
        if not self.names:
            raise DomainError("no client-access name (server.server_name)")
        for name in self.names:
            if not name or "." in name or len(name) > _NETBIOS_MAX:
                raise DomainError(f"client-access name {name!r} must be a NetBIOS name "
                                  f"(1..{_NETBIOS_MAX} characters, no dots)")

    @property
    def dns_domain(self) -> str:
        return self.realm.lower()

    @property
    def computer_name(self) -> str:
        return self.names[0].upper()

    def fqdn(self, name: str) -> str:
        return f"{name.lower()}.{self.dns_domain}"

    def service_principals(self) -> tuple[str, ...]:
        """Every SPN the account carries for SMB: ``cifs/`` and ``host/`` of
        every name and its FQDN."""
        return tuple(f"{service}/{host}" for name in self.names
                     for host in (name.upper(), self.fqdn(name)) for service in _SERVICES)

    def _domain_arguments(self) -> list[str]:
        argv = [f"--domain={self.dns_domain}", f"--domain-realm={self.realm.upper()}"]
        if self.domain_controller:
            argv.append(f"--domain-controller={self.domain_controller}")
        return argv

    def join_argv(self, admin: str) -> list[str]:
        """``adcli join``; the admin's password comes on standard input."""
        argv = ["adcli", "join", *self._domain_arguments(),
                f"--computer-name={self.computer_name}",
                f"--host-fqdn={self.fqdn(self.names[0])}",
                f"--host-keytab={self.keytab}", f"--login-user={admin}", "--stdin-password",
                "--show-details", "--show-password",
                *(f"--service-name={service}" for service in _SERVICES)]
        first = {f"{service}/{host}" for service in _SERVICES
                 for host in (self.names[0].upper(), self.fqdn(self.names[0]))}
        argv += [f"--add-service-principal={spn}" for spn in self.service_principals()
                 if spn not in first]
        return argv

    def update_argv(self) -> list[str]:
        """``adcli update`` with a new machine password now (lifetime 0),
        logged on with the keytab's own key; the names and SPNs are given as
        at the join so the update keeps them."""
        join = self.join_argv("")
        keep = [arg for arg in join[2:] if not arg.startswith(
            ("--login-user=", "--stdin-password", "--domain-realm="))]
        return ["adcli", "update", *keep, "--computer-password-lifetime=0"]

    def leave_argv(self, admin: str) -> list[str]:
        """``adcli delete-computer``: the account goes; the keytab is ours to remove."""
        return ["adcli", "delete-computer", *self._domain_arguments(),
                f"--login-user={admin}", "--stdin-password", self.computer_name]

    def testjoin_argv(self) -> list[str]:
        """``adcli testjoin``: a logon with the keytab's machine password (the
        account is the keytab's ``NAME$``)."""
        argv = ["adcli", "testjoin", f"--domain={self.dns_domain}",
                f"--host-keytab={self.keytab}"]
        if self.domain_controller:
            argv.append(f"--domain-controller={self.domain_controller}")
        return argv


# --- the machine account record (NETLOGON's shared secret) --------------------------


def machine_account_path(keytab: str) -> str:
    """Where the join keeps the machine account record: beside the keytab,
    so whatever copies one to the partner node sees the other."""
    return f"{keytab}.machine.json"


@dataclass(frozen=True)
class MachineAccount:
    """What a NETLOGON secure channel needs ([MS-NRPC] 3.1.4.1): the
    account (``computer_name$``), its password, the domain's names and SID,
    and the DC the join used (a hint: any DC of the domain will do)."""

    realm: str                 # DNS name, upper case: SMBCA.TEST
    netbios_domain: str        # SMBCA
    domain_sid: str
    computer_name: str         # FS1 (the account is FS1$)
    password: str
    domain_controller: str = ""
    password_set: float = 0.0  # Unix time the join or ``domain update`` set it; 0: unknown

    @property
    def dns_domain(self) -> str:
        return self.realm.lower()

    def names_domain(self, domain: str) -> bool:
        """Whether an NTLM AUTHENTICATE's DomainName means this domain."""
        return domain.upper() in (self.netbios_domain.upper(), self.realm.upper())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "machine account record") -> "MachineAccount":
        try:
            fields = json.loads(text)
            account = cls(**{name: str(fields[name]) for name in
                             ("realm", "netbios_domain", "domain_sid", "computer_name",
                              "password")},
                          domain_controller=str(fields.get("domain_controller", "")),
                          password_set=float(fields.get("password_set", 0.0)))
        except (ValueError, KeyError, TypeError) as exc:
            raise DomainError(f"{source} is not a machine account record: {exc}") from None
        if not account.password or not account.netbios_domain:
            raise DomainError(f"{source} has no password or no domain name")
        return account


def parse_join_details(text: str, realm: str, password_set: float = 0.0) -> MachineAccount:
    """The record from ``adcli join --show-details --show-password`` output:
    ``key = value`` lines under ``[domain]``, ``[computer]``, ``[keytab]``.
    The password is taken exactly as printed after ``= `` (adcli's machine
    passwords are printable ASCII and may hold spaces or ``=``).
    ``password_set`` is when adcli set it (the machine password age metric,
    ``smbcad.domain_metrics``)."""
    details: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep and key.strip() not in details:
            details[key.strip()] = value
    missing = [key for key in ("domain-short", "domain-SID", "computer-name",
                               "computer-password") if not details.get(key)]
    if details.get("kvno", "").strip() == "-1":
        # adcli update prints a password it generated but did not set when
        # the old one was not due; update_argv forces the change.
        raise DomainError("adcli did not change the machine password (kvno -1)")
    if missing:
        raise DomainError(f"adcli did not print {', '.join(missing)} "
                          "(--show-details --show-password)")
    return MachineAccount(realm=(details.get("domain-realm") or realm).strip().upper(),
                          netbios_domain=details["domain-short"].strip(),
                          domain_sid=details["domain-SID"].strip(),
                          computer_name=details["computer-name"].strip().upper(),
                          password=details["computer-password"],
                          domain_controller=details.get("domain-controller", "").strip(),
                          password_set=password_set)


# --- the MIT keytab file format (krb5 source, doc/formats/keytab_file_format) -------

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_KEYTAB_V2 = 0x0502


def keytab_principals(data: bytes) -> dict[str, int]:
    """Principal -> highest kvno in a version-2 keytab (deleted entries skipped)."""
    if len(data) < 2 or _U16.unpack_from(data)[0] != _KEYTAB_V2:
        raise DomainError("not a version 2 keytab")
    principals: dict[str, int] = {}
    offset = 2
    try:
        while offset + 4 <= len(data):
            (size,) = struct.unpack_from(">i", data, offset)
            offset += 4
            if size <= 0:                # a hole left by a deleted entry
                offset += -size
                continue
            entry = data[offset:offset + size]
            offset += size
            principal, kvno = _entry(entry)
            principals[principal] = max(kvno, principals.get(principal, 0))
    except struct.error:
        raise DomainError("keytab entry runs past the end of the file") from None
    return principals


def _entry(entry: bytes) -> tuple[str, int]:
    (count,) = _U16.unpack_from(entry)
    pos = 2
    realm, pos = _counted(entry, pos)
    parts = []
    for _ in range(count):
        part, pos = _counted(entry, pos)
        parts.append(part)
    kvno = entry[pos + 8]                # after the name type and the timestamp
    pos += 4 + 4 + 1 + 2                 # name type, timestamp, 8-bit kvno, enctype
    _key, pos = _counted(entry, pos, text=False)
    if pos + 4 <= len(entry):            # the 32-bit kvno, when present, wins
        (kvno32,) = _U32.unpack_from(entry, pos)
        kvno = kvno32 or kvno
    return f"{'/'.join(parts)}@{realm}", kvno


def _counted(entry: bytes, pos: int, text: bool = True):
    (length,) = _U16.unpack_from(entry, pos)
    value = entry[pos + 2:pos + 2 + length]
    if len(value) != length:
        raise struct.error("short field")
    return (value.decode("utf-8") if text else value), pos + 2 + length
