"""Server side for the witness unit tests: a two-node ``WitnessService`` and
its ``RpcConnection`` with NTLM security; the client (``DceClient``,
``SocketConnection`` and the call helpers) lives in tests/witness_client.py,
shared with the lab, and is re-exported here.
"""

import ipaddress

from smbca.auth import Authenticator, User, UserDatabase
from smbca.auth.legacy_crypto import nt_hash
from smbca.rpc.dcerpc import AssociationGroups, RpcConnection, interface_table
from smbca.rpc.ntlm_security import NtlmSecurity
from witness_client import (  # noqa: F401  (re-exported for the witness unit tests)
    PASSWORD,
    USER,
    DceClient,
    SocketConnection,
    answer,
    fault_status,
    flags_of,
    notify,
    pending_answer,
    register,
    register_ex,
)
from witnessd.swn import (
    Interface,
    InterfaceState,
    WitnessService,
    WitnessSettings,
    witness_interface,
)


def authenticator() -> Authenticator:
    users = UserDatabase.from_users([User(USER, nt_hash(PASSWORD))])
    return Authenticator(users, server_name="NODE1", domain_name="WORKGROUP",
                         rng=lambda n: bytes(range(n)), clock=lambda: 1_700_000_000.0)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Uuids:
    """Deterministic registration keys."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self):
        import uuid
        self.count += 1
        return uuid.UUID(int=self.count)


def two_node_service(clock: FakeClock | None = None, **settings) -> WitnessService:
    """NODE1 (local, 10.0.0.1 and fd00::1) and NODE2 (10.0.0.2)."""
    interfaces = [
        Interface("NODE1", InterfaceState.AVAILABLE, ipaddress.IPv4Address("10.0.0.1"),
                  ipaddress.IPv6Address("fd00::1"), local=True),
        Interface("NODE2", InterfaceState.AVAILABLE, ipaddress.IPv4Address("10.0.0.2")),
    ]
    defaults = dict(server_global_names=("CLUSTER", "cluster.example.com"), shares=("vm",))
    defaults.update(settings)
    return WitnessService(WitnessSettings(**defaults), interfaces, clock=clock or FakeClock(),
                          new_uuid=Uuids())


def witness_connection(service: WitnessService, groups: AssociationGroups | None = None,
                       **kwargs) -> RpcConnection:
    return RpcConnection(interface_table(witness_interface(service)),
                         groups if groups is not None else AssociationGroups(),
                         security=NtlmSecurity(authenticator()), **kwargs)
