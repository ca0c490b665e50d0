"""``smbca domain join | leave | status``: the pair as one domain member
(``smbca.domain`` says what and why; adcli does the work).

  smbca domain join --realm REALM --user ADMIN [--password-file F|-] [--name NAME]...
                    [--dc HOST] [--keytab PATH] [--config PATH]
  smbca domain leave --user ADMIN [--password-file F|-] [--realm REALM] ...
  smbca domain status [--realm REALM] [--keytab PATH] [--config PATH] [--json]
  smbca domain update [--realm REALM] [--keytab PATH] [--config PATH] [--dc HOST]

The client-access names are ``server.server_name`` of smbcad's config plus
any ``--name``; the keytab goes to ``server.keytab`` (else ``--keytab``, else
/etc/smbca/krb5.keytab).  Without ``--password-file`` the admin password is
asked for on the terminal; ``--password-file -`` reads it from standard
input (automation).  The join also keeps the machine account's password
(for NETLOGON, NTLM pass-through) in ``KEYTAB.machine.json``, root-only.
Copy both files to the partner node after a join: both nodes are the same
computer account.  ``update`` sets a new machine password now (adcli update,
logged on with the keytab) and rewrites both files; copy them again.  Exit 0 on success (status: joined and
the machine password works), 1 if not, 2 on a usage error.
"""

import getpass
import json
import os
import subprocess
import sys
import time

from smbca.config import ConfigError, read_yaml
from smbca.domain import (DEFAULT_KEYTAB, DomainError, Membership, keytab_principals,
                          machine_account_path, parse_join_details)

SMBCAD_CONFIG = "/etc/smbca/smbcad.yaml"


class NotJoined(DomainError):
    """``status`` on a node with no keytab: an answer, not a usage error."""
ADCLI_TIMEOUT_S = 120


def add_parsers(sub) -> None:
    domain = sub.add_parser("domain", help="Active Directory membership (adcli)")
    verbs = domain.add_subparsers(dest="verb", required=True)
    for verb, text in (("join", "create the pair's computer account and its keytab"),
                       ("leave", "delete the computer account and the keytab"),
                       ("status", "whether the keytab's machine password works"),
                       ("update", "set a new machine password now (copy the files again)")):
        parser = verbs.add_parser(verb, help=text)
        parser.add_argument("--realm", required=verb == "join",
                            help="the domain's DNS name (default: from the keytab)")
        parser.add_argument("--keytab", help=f"default: server.keytab, else {DEFAULT_KEYTAB}")
        parser.add_argument("--config", default=SMBCAD_CONFIG,
                            help="smbcad's config (server.server_name, server.keytab)")
        parser.add_argument("--dc", help="a domain controller (default: found in DNS)")
        if verb == "status":
            parser.add_argument("--json", action="store_true")
        if verb in ("status", "update"):
            continue
        parser.add_argument("--user", required=True, help="a domain admin")
        parser.add_argument("--password-file", help="the admin's password (- for stdin)")
        if verb == "join":
            parser.add_argument("--name", action="append", default=[],
                                help="another client-access name (repeatable)")


def run(args) -> int:
    try:
        membership = _membership(args)
        if args.verb == "join":
            return _join(membership, args)
        if args.verb == "leave":
            return _leave(membership, args)
        if args.verb == "update":
            return _update(membership)
        return _status(membership, args)
    except NotJoined as exc:
        print(f"smbca domain {args.verb}: {exc}", file=sys.stderr)
        return 1
    except (DomainError, ConfigError) as exc:
        print(f"smbca domain {args.verb}: {exc}", file=sys.stderr)
        return 2


def _membership(args) -> Membership:
    server = _server_section(args.config)
    keytab = args.keytab or server.get("keytab") or DEFAULT_KEYTAB
    names = [server.get("server_name") or "SMBCA", *getattr(args, "name", [])]
    if args.verb in ("status", "update") and not os.path.exists(keytab):
        raise NotJoined(f"no keytab at {keytab}: not joined")
    realm = args.realm or _realm_of(keytab)
    return Membership(realm=realm, names=tuple(dict.fromkeys(n.upper() for n in names)),
                      keytab=keytab, domain_controller=args.dc)


def _server_section(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    document = read_yaml(path)
    server = document.get("server") if isinstance(document, dict) else None
    return server if isinstance(server, dict) else {}


def _realm_of(keytab: str) -> str:
    """The realm of the keytab's machine account (``NAME$@REALM``)."""
    for principal in _principals(keytab):
        name, _, realm = principal.rpartition("@")
        if name.endswith("$"):
            return realm
    raise DomainError(f"no machine account in {keytab}: give --realm")


def _principals(keytab: str) -> dict[str, int]:
    try:
        with open(keytab, "rb") as handle:
            return keytab_principals(handle.read())
    except FileNotFoundError:
        raise DomainError(f"no keytab at {keytab}: not joined") from None
    except OSError as exc:
        raise DomainError(f"cannot read {keytab}: {exc.strerror}") from None


def _password(args) -> str:
    if args.password_file == "-":
        return sys.stdin.readline().rstrip("\n")
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                return handle.readline().rstrip("\n")
        except OSError as exc:
            raise DomainError(f"--password-file: {exc.strerror}") from None
    return getpass.getpass(f"Password for {args.user}: ")


def _adcli(argv: list[str], password: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=password, capture_output=True, text=True,
                              timeout=ADCLI_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise DomainError("adcli is not installed (Debian: apt install adcli)") from None
    except subprocess.TimeoutExpired:
        raise DomainError(f"{argv[0]} {argv[1]} did not finish in {ADCLI_TIMEOUT_S} s") from None


def _failed(verb: str, result: subprocess.CompletedProcess) -> int:
    print(f"smbca domain {verb}: adcli failed ({result.returncode}): "
          f"{(result.stderr or result.stdout).strip()}", file=sys.stderr)
    return 1


def _join(membership: Membership, args) -> int:
    keytab_dir = os.path.dirname(membership.keytab)
    if keytab_dir:
        os.makedirs(keytab_dir, mode=0o755, exist_ok=True)
    result = _adcli(membership.join_argv(args.user), _password(args))
    if result.returncode != 0:
        return _failed("join", result)
    os.chmod(membership.keytab, 0o600)
    record = machine_account_path(membership.keytab)
    _write_private(record, parse_join_details(result.stdout, membership.realm,
                                                 time.time()).to_json())
    print(f"joined {membership.realm} as {membership.computer_name}$; keytab "
          f"{membership.keytab} and machine account {record} (copy both to the "
          "partner node)")
    for spn in membership.service_principals():
        print(f"  {spn}")
    return 0


def _update(membership: Membership) -> int:
    result = _adcli(membership.update_argv())
    if result.returncode != 0:
        return _failed("update", result)
    record = machine_account_path(membership.keytab)
    _write_private(record, parse_join_details(result.stdout, membership.realm,
                                                 time.time()).to_json())
    print(f"new machine password for {membership.computer_name}$ in {membership.keytab} "
          f"and {record} (copy both to the partner node)")
    return 0


def _write_private(path: str, text: str) -> None:
    """``text`` into ``path``, mode 0600 from the start (it holds the machine
    password), replacing any older file at once."""
    tmp = f"{path}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _leave(membership: Membership, args) -> int:
    result = _adcli(membership.leave_argv(args.user), _password(args))
    if result.returncode != 0:
        return _failed("leave", result)
    for path in (membership.keytab, machine_account_path(membership.keytab)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    print(f"left {membership.realm}: {membership.computer_name}$ deleted, "
          f"{membership.keytab} and its machine account record removed (remove the "
          "partner's copies too)")
    return 0


def _status(membership: Membership, args) -> int:
    principals = _principals(membership.keytab)
    result = _adcli(membership.testjoin_argv())
    record = machine_account_path(membership.keytab)
    netlogon = _netlogon_check(membership.keytab) if os.path.exists(record) else None
    answer = {"realm": membership.realm, "account": f"{membership.computer_name}$",
              "keytab": membership.keytab, "principals": principals,
              # Without it NTLM for domain users (NETLOGON) is off; Kerberos works.
              "machine_account_record": record if os.path.exists(record) else None,
              "netlogon": netlogon,
              # AD compares SPNs without case, and so does the acceptor (it
              # tries every key of the one account).
              "missing": [spn for spn in membership.service_principals()
                          if f"{spn}@{membership.realm}".lower() not in
                          {principal.lower() for principal in principals}],
              "machine_password_ok": result.returncode == 0,
              "detail": (result.stderr or result.stdout).strip()}
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(f"realm {answer['realm']}, account {answer['account']}, keytab "
              f"{answer['keytab']} ({len(principals)} principals)")
        print(f"machine password: {'ok' if answer['machine_password_ok'] else 'FAILS'}"
              f"{'' if answer['machine_password_ok'] else ': ' + answer['detail']}")
        for spn in answer["missing"]:
            print(f"missing from the keytab: {spn}")
        if netlogon is None:
            print(f"no machine account record at {record}: NTLM for domain users is off "
                  "(join again)")
        elif netlogon["ok"]:
            print(f"NETLOGON secure channel: ok ({netlogon['detail']})")
        else:
            print(f"NETLOGON secure channel: FAILS: {netlogon['detail']}")
    netlogon_ok = netlogon is None or netlogon["ok"]
    return 0 if answer["machine_password_ok"] and not answer["missing"] and netlogon_ok else 1


def _netlogon_check(keytab: str) -> dict:
    """Whether a DC accepts a secure channel with the record's password: what
    NTLM for domain users needs."""
    from smbca.auth.netlogon import ChannelError, NetlogonClient
    try:
        client = NetlogonClient.from_keytab(keytab)
    except ValueError as exc:
        return {"ok": False, "detail": str(exc)}
    if client is None:
        return {"ok": False, "detail": "no machine account record"}
    try:
        return {"ok": True, "detail": f"with {client.check_channel()}"}
    except ChannelError as exc:
        return {"ok": False, "detail": str(exc)}
    finally:
        client.close()
