"""The naming services one server offers on its lsarpc and samr pipes.

``Directory`` bundles the resolver chain, the LSA policy information and
the SAM's domains; ``local_directory`` builds the one a server has, with
the joined domain's resolver (``names.DomainNames``, asking a DC) at the
end of ``names`` when there is one.  The LSA policy still reports the
primary domain by name only (no SID): no client we serve asks for it.
"""

from dataclasses import dataclass

from smbcad.rpc.lsarpc import PolicyInfo
from smbcad.rpc.names import (Accounts, DomainNames, FixedNames, LocalNames, ResolverChain,
                              account_domain)
from smbcad.rpc.samr import SamDomain, sam_domains


@dataclass(frozen=True, slots=True)
class Directory:
    names: ResolverChain
    policy: PolicyInfo
    sam: tuple[SamDomain, ...]


def local_directory(server_name: str, workgroup: str, pair_name: str,
                    accounts: Accounts, joined: DomainNames | None = None) -> Directory:
    """Well-known names, BUILTIN and the local accounts of a server named ``server_name``.

    ``pair_name`` (the cluster's name, or the server's own when it stands
    alone) seeds the account domain SID, so both nodes of a pair agree.
    """
    domain = account_domain(server_name, pair_name)
    resolvers = (FixedNames(), LocalNames(domain, accounts), *((joined,) if joined else ()))
    return Directory(names=ResolverChain(*resolvers),
                     policy=PolicyInfo(account_domain=domain, primary_domain=workgroup.upper()),
                     sam=sam_domains(domain))
