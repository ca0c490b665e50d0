"""The domain membership's metric: when the machine account's password was
last set (issue 12), for the alert that says it is due for ``smbca domain
update`` (contrib/prometheus/smbca-rules.yml, SmbcaMachinePasswordOld).

A DC does not change a member's password; the member must, within the
domain's maximum machine password age (30 days by default on Windows and
Samba), or a DC that enforces it refuses the account.  The time comes from
the machine account record beside the keytab (``smbca.domain``'s
``password_set``, written by the join and by ``domain update``); a record
from before that field exists gives its file's modification time instead.
The record is read at each scrape, so an update on this node or a copy
from the partner shows without a restart.  Not joined: the family has no
samples.
"""

import os
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from smbca.domain import DomainError, MachineAccount, machine_account_path

PASSWORD_SET = "smbcad_domain_machine_password_set_timestamp_seconds"


class MachineAccountCollector(Collector):
    """``PASSWORD_SET`` for the join beside the keytab ``keytab()`` names."""

    def __init__(self, keytab: Callable[[], str | None]) -> None:
        self._keytab = keytab

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            PASSWORD_SET, "Unix time the domain machine account's password was set "
            "(smbca domain join / update)", labels=("account", "realm"))
        keytab = self._keytab()
        if keytab is not None:
            found = _password_set(machine_account_path(keytab))
            if found is not None:
                family.add_metric(found[:2], found[2])
        yield family


def _password_set(path: str) -> tuple[str, str, float] | None:
    """(account, realm, when) from the record at ``path``; None when there is
    no readable record (not joined, or joined before records existed)."""
    try:
        with open(path, encoding="utf-8") as handle:
            account = MachineAccount.from_json(handle.read(), path)
            when = account.password_set or os.fstat(handle.fileno()).st_mtime
    except (OSError, DomainError):
        return None
    return f"{account.computer_name}$", account.realm, when
