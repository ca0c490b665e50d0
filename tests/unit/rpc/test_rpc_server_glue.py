"""The server's lsarpc/samr environment (smbcad/server/pipes.py): one account domain
for both nodes of a pair, users read from the current authenticator."""

import uuid

from smbca.auth import Authenticator, User, UserDatabase
from smbca.auth.legacy_crypto import nt_hash
from smbcad.config import Config, ListenAddress, ServerConfig, ShareConfig
from smbcad.config_cluster import ClusterConfig
from smbcad.metrics import SmbMetrics
from smbcad.proto.fscc.security import unix_user_sid
from smbcad.rpc import account_domain
from smbcad.server import pipes
from smbcad.server.server import SmbServer
from smbcad.vfs import ShareFs


def server_for(tmp_path, node_id: int | None, users=()) -> SmbServer:
    cluster = None if node_id is None else ClusterConfig(node_id=node_id, name="Pair-1")
    config = Config(server=ServerConfig(listen=(ListenAddress("127.0.0.1", 0),),
                                        state_dir=str(tmp_path / f"state{node_id}"),
                                        server_name="FILES", domain="corpnet"),
                    shares=(ShareConfig(name="share", path=str(tmp_path)),), cluster=cluster)
    auth = Authenticator(UserDatabase.from_users(users), server_name="FILES",
                         domain_name="CORPNET")
    return SmbServer(config, server_guid=uuid.uuid4().bytes_le, authenticator=auth,
                     metrics=SmbMetrics(), open_share_fs=ShareFs)


def test_both_nodes_of_a_pair_name_one_account_domain(tmp_path) -> None:
    node_a = pipes._environment(server_for(tmp_path, 1)).directory
    node_b = pipes._environment(server_for(tmp_path, 2)).directory
    assert node_a.policy == node_b.policy
    assert node_a.policy.account_domain == account_domain("FILES", "Pair-1")
    assert node_a.policy.primary_domain == "CORPNET"


def test_a_lone_server_derives_it_from_its_name(tmp_path) -> None:
    lone = pipes._environment(server_for(tmp_path, None)).directory
    assert lone.policy.account_domain == account_domain("FILES", "FILES")


def test_lookups_follow_a_reload_of_the_users(tmp_path) -> None:
    server = server_for(tmp_path, None)
    names = pipes._environment(server).directory.names
    assert names.translate_name("Unix User\\smbcalookupdave") is None
    users = UserDatabase.from_users([User("smbcalookupdave", nt_hash("Dave-Pw-1"), uid=5001)])
    server.reload(server.config, Authenticator(users, server_name="FILES",
                                               domain_name="CORPNET"))
    assert names.translate_name("smbcalookupdave").sid == unix_user_sid(5001)
