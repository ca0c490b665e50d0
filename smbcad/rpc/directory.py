"""The naming services one server offers on its lsarpc and samr pipes.

``Directory`` bundles the resolver chain, the LSA policy information and
the SAM's domains; ``local_directory`` builds the one a server without a
domain has.  Joining a domain (issue 12 items 1-4) will add a DC resolver
at the end of ``names`` and the domain's name and SID to ``policy``.
"""

from dataclasses import dataclass

from smbcad.rpc.lsarpc import PolicyInfo
from smbcad.rpc.names import Accounts, FixedNames, LocalNames, ResolverChain, account_domain
from smbcad.rpc.samr import SamDomain, sam_domains


@dataclass(frozen=True, slots=True)
class Directory:
    names: ResolverChain
    policy: PolicyInfo
    sam: tuple[SamDomain, ...]


def local_directory(server_name: str, workgroup: str, pair_name: str,
                    accounts: Accounts) -> Directory:
    """Well-known names, BUILTIN and the local accounts of a server named ``server_name``.

    ``pair_name`` (the cluster's name, or the server's own when it stands
    alone) seeds the account domain SID, so both nodes of a pair agree.
    """
    domain = account_domain(server_name, pair_name)
    return Directory(names=ResolverChain(FixedNames(), LocalNames(domain, accounts)),
                     policy=PolicyInfo(account_domain=domain, primary_domain=workgroup.upper()),
                     sam=sam_domains(domain))
