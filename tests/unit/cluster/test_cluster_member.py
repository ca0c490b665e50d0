"""smbcad as a cluster member (smbcad/cluster/member.py, control.py and
server/aggregates.py): shares that follow their aggregate, adopt and release
through control requests, tree connects that wait for an adoption or are
refused by address scope, against the real server, store and filesystem."""

import asyncio
import os
import struct
import uuid

import pytest

from smbca import events
from smbca.auth import Authenticator, User, UserDatabase
from smbca.auth.legacy_crypto import nt_hash
from smbca.config import ConfigError, ListenAddress
from smbcad.admin_control import AdminControl
from smbcad.cluster.control import ControlHandler
from smbcad.cluster.member import ClusterMember
from smbcad.config import Config, ServerConfig, ShareConfig, validate
from smbcad.config_cluster import AggregateConfig, ClusterConfig
from smbcad.metrics import SmbMetrics
from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.status import NtStatus
from smbcad.server.aggregates import Phase
from smbcad.server.server import SmbServer
from smbcad.store import LocalHandleStore, LogEngine, PersistentOpen
from smbcad.vfs import ShareFs
from tests.unit.server import harness

LIF_X, LIF_Y = "192.0.2.10", "192.0.2.20"


def make_node(tmp_path):
    """A cluster node with aggregates aggrX (share sx) and aggrY (share sy),
    and a local share; returns (server, member, control, mount points)."""
    mounts = {name: tmp_path / name for name in ("aggrX", "aggrY")}
    for mount in mounts.values():
        (mount / "data").mkdir(parents=True)
    local = tmp_path / "local"
    local.mkdir()
    cluster = ClusterConfig(node_id=2, name="pair", aggregates=(
        AggregateConfig("aggrX", str(mounts["aggrX"]), (LIF_X,)),
        AggregateConfig("aggrY", str(mounts["aggrY"]), (LIF_Y,))))
    cfg = Config(
        server=ServerConfig(listen=(ListenAddress("127.0.0.1", 0),),
                            state_dir=str(tmp_path / "state")),
        shares=(ShareConfig("sx", str(mounts["aggrX"] / "data"), ca=True, aggregate="aggrX"),
                ShareConfig("sy", str(mounts["aggrY"] / "data"), ca=True, aggregate="aggrY"),
                ShareConfig("share", str(local))),
        users=(), cluster=cluster)
    users = UserDatabase.from_users([User(harness.USER, nt_hash(harness.PASSWORD))])
    server = SmbServer(cfg, server_guid=cluster.derived_server_guid,
                       authenticator=Authenticator(users, server_name="SMBCA",
                                                   domain_name="WORKGROUP"),
                       metrics=SmbMetrics(), open_share_fs=ShareFs, node_id=2)
    member = ClusterMember(server, cluster, str(tmp_path / "state"))
    return server, member, AdminControl(server, ControlHandler(server, member)), mounts


class TransportSink(harness.MemorySink):
    """Like the transport: closing the connection runs its connection_lost soon after."""

    def __init__(self, loop):
        super().__init__()
        self.loop = loop
        self.conn = None

    def close(self) -> None:
        if not self.closed:
            super().close()
            self.loop.call_soon(self.conn.connection_lost)


class LoopClient(harness.Client):
    """harness.Client on the test's running loop, connected to ``local_address``."""

    def __init__(self, server, local_address="127.0.0.1"):
        super().__init__(server)
        self.sink = self.conn.sink = TransportSink(asyncio.get_running_loop())
        self.sink.conn = self.conn
        self.conn.local_address = local_address
        server.connections.add(self.conn)

    async def send(self, command: int, body: bytes) -> int:
        mid = self.message_id
        self.message_id += 1
        msg = bytearray(harness.header(command, mid, self.session_id, self.tree_id,
                                       HeaderFlags.SIGNED if self.signer else 0) + body)
        if self.signer:
            self.signer.sign(msg)
        await self.conn.receive_frame(msg)
        return mid

    def final(self, mid: int):
        for frame in self.sink.frames:
            if struct.unpack_from("<Q", frame, 24)[0] == mid and harness.status_of(frame) != NtStatus.PENDING:
                return frame
        return None


def tree_connect_body(share: str) -> bytes:
    path = f"\\\\cluster\\{share}".encode("utf-16-le")
    return struct.pack("<HHHH", 9, 0, 72, len(path)) + path


async def logged_in(server, local_address="127.0.0.1"):
    client = LoopClient(server, local_address)
    await asyncio.to_thread(client.negotiate)
    await asyncio.to_thread(client.session_setup)
    return client


def record(share_dir, name: str, durable_file_id: int, **overrides) -> PersistentOpen:
    with ShareFs(str(share_dir)) as fs:
        info = fs.stat_path((name,))
    fields = dict(durable_file_id=durable_file_id, create_guid=uuid.uuid4().bytes,
                  client_guid=bytes(range(16)), owner_user="alice", owner_domain="WORKGROUP",
                  share_name="sx", path=name, file_dev=info.device_id, file_ino=info.file_id,
                  granted_access=0x0012019F, desired_access=0x0012019F, share_access=0,
                  is_persistent=True, is_durable=True, durable_timeout_ms=60_000,
                  disconnected_at_ms=1)
    fields.update(overrides)
    return PersistentOpen(**fields)


def run(coroutine):
    return asyncio.run(coroutine)


def test_aggregate_shares_start_offline_with_no_fd_on_the_mount_point(tmp_path):
    server, member, control, mounts = make_node(tmp_path)
    assert server.find_share("sx").fs is None and server.find_share("sy").fs is None
    assert server.find_share("share").fs is not None
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not any(path.startswith(str(mounts["aggrX"])) for path in held)
    assert server.offers_persistent_handles


def test_adopt_brings_the_records_back_and_opens_the_share(tmp_path):
    server, member, control, mounts = make_node(tmp_path)
    (mounts["aggrX"] / "data" / "vm.vhdx").write_bytes(b"disk")

    async def main():
        store = await LocalHandleStore.open(LogEngine(member.store_dir("aggrX")))
        await store.create(record(mounts["aggrX"] / "data", "vm.vhdx", 0x0100000000000001))
        await store.shutdown()
        client = await logged_in(server)
        refused = client.final(await client.send(Command.TREE_CONNECT, tree_connect_body("sx")))
        reply = await control.handle({"type": "aggregate", "event": "adopt", "aggregate": "aggrX",
                                      "mount_point": str(mounts["aggrX"]), "node": 2})
        ok = client.final(await client.send(Command.TREE_CONNECT, tree_connect_body("sx")))
        open_ = server.opens.lookup(0x0100000000000001)
        opens = await control.handle({"command": "opens", "disconnected": True})
        status = await control.handle("status")
        await member.release("aggrX", planned=True)
        return refused, reply, ok, open_, opens, status
    refused, reply, ok, open_, opens, status = run(main())
    assert harness.status_of(refused) == NtStatus.BAD_NETWORK_NAME
    assert reply["ok"] and reply["restored"] == 1 and reply["phase"] == "online"
    assert harness.status_of(ok) == 0
    assert open_ is not None and open_.session is None and open_.persistent
    assert [entry["path"] for entry in opens["opens"]] == ["vm.vhdx"]
    assert 59_000 < opens["opens"][0]["expires_in_ms"] <= 60_000     # restarted at adoption
    aggr = {entry["name"]: entry for entry in status["status"]["aggregates"]}
    assert aggr["aggrX"]["phase"] == "online" and aggr["aggrY"]["phase"] == "offline"


def test_tree_connect_waits_for_an_adoption_in_progress(tmp_path):
    server, member, control, mounts = make_node(tmp_path)

    async def main():
        client = await logged_in(server)
        server.aggregates.get("aggrX").phase = Phase.ADOPTING       # clusdisk said adopt
        mid = await client.send(Command.TREE_CONNECT, tree_connect_body("sx"))
        await asyncio.sleep(0.05)
        before = client.final(mid)
        server.aggregates.get("aggrX").phase = Phase.OFFLINE
        await member.adopt("aggrX")
        for _ in range(100):
            if client.final(mid) is not None:
                break
            await asyncio.sleep(0.01)
        after = client.final(mid)
        await member.release("aggrX", planned=False)
        return before, after
    before, after = run(main())
    assert before is None
    assert harness.status_of(after) == 0


def test_a_share_is_refused_through_another_aggregates_address(tmp_path):
    server, member, control, mounts = make_node(tmp_path)

    async def main():
        await member.adopt("aggrX")
        await member.adopt("aggrY")
        on_x = await logged_in(server, local_address=LIF_X)
        wrong = on_x.final(await on_x.send(Command.TREE_CONNECT, tree_connect_body("sy")))
        right = on_x.final(await on_x.send(Command.TREE_CONNECT, tree_connect_body("sx")))
        local = on_x.final(await on_x.send(Command.TREE_CONNECT, tree_connect_body("share")))
        ipc = on_x.final(await on_x.send(Command.TREE_CONNECT, tree_connect_body("IPC$")))
        on_y = await logged_in(server, local_address=LIF_Y)
        sy = on_y.final(await on_y.send(Command.TREE_CONNECT, tree_connect_body("sy")))
        await member.release("aggrX", planned=False)
        await member.release("aggrY", planned=False)
        return wrong, right, local, ipc, sy
    wrong, right, local, ipc, sy = run(main())
    assert harness.status_of(wrong) == NtStatus.BAD_NETWORK_NAME
    assert harness.status_of(right) == 0 and harness.status_of(sy) == 0
    # a node-local share is not reachable through an aggregate's address
    # either (moving the address would cut it off); IPC$ is everywhere
    assert harness.status_of(local) == NtStatus.BAD_NETWORK_NAME
    assert harness.status_of(ipc) == 0


def test_planned_release_closes_its_connections_keeps_the_records_and_frees_the_mount(tmp_path):
    server, member, control, mounts = make_node(tmp_path)
    (mounts["aggrX"] / "data" / "vm.vhdx").write_bytes(b"disk")

    async def main():
        store = await LocalHandleStore.open(LogEngine(member.store_dir("aggrX")))
        await store.create(record(mounts["aggrX"] / "data", "vm.vhdx", 0x0100000000000002))
        await store.shutdown()
        await member.adopt("aggrX")
        await member.adopt("aggrY")
        on_x = await logged_in(server, local_address=LIF_X)
        assert on_x.final(await on_x.send(Command.TREE_CONNECT, tree_connect_body("sx"))) is not None
        on_y = await logged_in(server, local_address=LIF_Y)
        assert harness.status_of(on_y.final(
            await on_y.send(Command.TREE_CONNECT, tree_connect_body("sy")))) == 0
        reply = await control.handle({"command": "release", "aggregate": "aggrX",
                                      "planned": True})
        store = await LocalHandleStore.open(LogEngine(member.store_dir("aggrX")))
        left = await store.traverse()
        await store.shutdown()
        held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")]
        states = (on_x.sink.closed, on_y.sink.closed, on_x.conn in server.connections)
        await member.release("aggrY", planned=False)
        return reply, left, held, states
    reply, left, held, (x_closed, y_closed, x_still_listed) = run(main())
    assert reply["ok"] and reply["handed_over"] == 1 and reply["phase"] == "offline"
    assert [r.durable_file_id for r in left] == [0x0100000000000002]
    assert server.find_share("sx").fs is None
    assert not any(path.startswith(str(mounts["aggrX"])) for path in held)
    assert x_closed and not y_closed            # moving X never disturbs Y's sessions
    assert not x_still_listed


@pytest.mark.parametrize("request_, error", [
    ({"command": "adopt"}, "adopt needs aggregate"),
    ({"command": "adopt", "aggregate": "nosuch"}, "no aggregate 'nosuch'"),
    ({"command": "release", "aggregate": "aggrX", "planned": "yes"}, "planned must be"),
    ({"command": "reboot"}, "unknown command 'reboot'"),
    ({"command": "tickles"}, "tickles needs aggregate"),
    ({"command": "tickles", "aggregate": "nosuch"}, "no aggregate 'nosuch'"),
    ({"command": "status", "extra": 1}, "status takes no extra"),
    (["adopt"], "a request is a JSON object"),
    ({"command": "adopt", "aggregate": "aggrX", "mount_point": "/elsewhere"},
     "not '/elsewhere'"),
])
def test_bad_requests_get_a_clear_error_and_change_nothing(tmp_path, request_, error):
    server, member, control, mounts = make_node(tmp_path)
    reply = run(control.handle(request_))
    assert reply["ok"] is False and error in reply["error"]
    assert all(aggregate.phase is Phase.OFFLINE for aggregate in server.aggregates.by_name.values())


def test_config_errors_name_the_key(tmp_path):
    base = dict(server=ServerConfig(listen=(ListenAddress("127.0.0.1", 0),)),
                users=(), smbpasswd_files=())
    with pytest.raises(ConfigError, match=r"shares\[0\].aggregate: needs a cluster section"):
        validate(Config(shares=(ShareConfig("s", "/srv/x", aggregate="a"),), **base))
    cluster = ClusterConfig(node_id=1, name="p",
                            aggregates=(AggregateConfig("a", "/srv/a", ()),))
    with pytest.raises(ConfigError, match=r"shares\[0\].path: '/srv/b/data' is not under"):
        validate(Config(shares=(ShareConfig("s", "/srv/b/data", aggregate="a"),),
                        cluster=cluster, **base))
    with pytest.raises(ConfigError, match=r"shares\[0\].aggregate: no aggregate 'b'"):
        validate(Config(shares=(ShareConfig("s", "/srv/a/data", aggregate="b"),),
                        cluster=cluster, **base))


def test_both_nodes_derive_the_same_server_guid():
    a = ClusterConfig(node_id=1, name="Pair")
    b = ClusterConfig(node_id=2, name="pair")
    assert a.derived_server_guid == b.derived_server_guid
    assert a.derived_server_guid != ClusterConfig(node_id=1, name="other").derived_server_guid


def test_clusdisk_events_are_adopt_and_release(tmp_path):
    server, member, control, mounts = make_node(tmp_path)

    async def main():
        adopted = await control.handle(
            events.AggregateAdopt("aggrX", str(mounts["aggrX"]), 1).to_json())
        released = await control.handle(
            events.AggregateRelease("aggrX", str(mounts["aggrX"]), 1, planned=True).to_json())
        refused = await control.handle(events.ClientMove("*", "NODE1").to_json())
        return adopted, released, refused
    adopted, released, refused = run(main())
    assert adopted["ok"] and released["ok"]
    assert server.aggregates.get("aggrX").phase is Phase.OFFLINE
    assert refused["ok"] is False and "go to witnessd" in refused["error"]


def test_cluster_metrics_name_each_aggregate(tmp_path):
    from prometheus_client import generate_latest
    from smbcad.metrics import SmbMetrics

    server, member, control, mounts = make_node(tmp_path)
    metrics = SmbMetrics()
    metrics.watch_cluster(member.status)

    async def main():
        await member.adopt("aggrX")
        text = generate_latest(metrics.registry).decode()
        await member.release("aggrX", planned=True)
        return text
    text = run(main())
    assert 'smbcad_aggregate_online{aggregate="aggrX"} 1.0' in text
    assert 'smbcad_aggregate_online{aggregate="aggrY"} 0.0' in text
    assert "smbcad_mirror_link_up 0.0" in text           # no mirror configured here


def test_new_opens_never_take_a_durable_file_id_the_partners_replica_holds(tmp_path):
    from smbcad.cluster.mirror_link import ReplicaEndpoint
    from smbcad.cluster.replica import ReplicaStore

    server, member, control, mounts = make_node(tmp_path)
    first, _ = server.opens.next_file_ids()
    store = ReplicaStore(str(tmp_path / "state"), "aggrY", preallocate_bytes=0)
    store.open()
    store.write(((first + 1, b"the partner's open"), (first + 2, b"another")))

    async def main():
        member._replicas["aggrY"] = ReplicaEndpoint(store, None, asyncio.get_running_loop())
        try:
            return server.opens.next_file_ids()[0]
        finally:
            store.close()
    second = run(main())
    assert second == first + 3
    assert second >> 56 == 2                          # this node's id in the top byte


async def persistent_open_on_x(server, member):
    """aggrX adopted, a client on its LIF with vm.vhdx open persistently."""
    await member.adopt("aggrX")
    client = await logged_in(server, local_address=LIF_X)
    tree = client.final(await client.send(Command.TREE_CONNECT, tree_connect_body("sx")))
    client.tree_id = struct.unpack_from("<I", tree, 36)[0]
    mid = await client.send(Command.CREATE, dh2q_create("vm.vhdx"))
    for _ in range(200):
        if client.final(mid) is not None:
            break
        await asyncio.sleep(0.01)
    assert harness.status_of(client.final(mid)) == 0
    return client


def dh2q_create(name: str) -> bytes:
    """CREATE with DH2Q asking for a persistent handle (2.2.13.2.11)."""
    from tests.unit.proto import wire
    dh2q = struct.pack("<II8s16s", 0, 0x2, bytes(8), uuid.uuid4().bytes)
    return wire.create_request(name, wire.context_chain((b"DH2Q", dh2q)), disposition=5)


@pytest.mark.parametrize("planned", [True, False])
def test_only_a_planned_release_commits_the_disconnects(tmp_path, planned):
    """Planned: every disconnect is in the store before the answer, so the
    partner adopts with nothing lost.  Unplanned (clusdisk lost the aggregate,
    its LUN may be fenced): nothing more goes to the store; the next owner
    treats every open as disconnected anyway."""
    server, member, control, mounts = make_node(tmp_path)

    async def main():
        client = await persistent_open_on_x(server, member)
        await member.release("aggrX", planned=planned)
        store = await LocalHandleStore.open(LogEngine(member.store_dir("aggrX")))
        records = await store.traverse()
        await store.shutdown()
        return records
    [record] = run(main())
    assert record.path == "vm.vhdx" and record.is_persistent
    assert (record.disconnected_at_ms is not None) == planned


class CutOffSink(TransportSink):
    """A client behind a link that is down: whatever it was sending never
    completes, it sends nothing more and it never answers a FIN."""

    half_closed = False

    def quiet(self) -> bool:
        return False

    def dropped(self) -> int:
        return 0

    def half_close(self) -> None:
        self.half_closed = True             # the FIN goes nowhere: no connection_lost


def test_a_release_with_the_clients_cut_off_commits_everything_and_waits_for_no_client(tmp_path):
    """clusdisk hands a cut-off node's aggregate over (``clients_cut_off``):
    still a planned release (the disconnect is committed for the partner),
    but the connection is aborted instead of given a FIN to answer: no
    client can answer it."""
    server, member, control, mounts = make_node(tmp_path)

    async def main():
        client = await persistent_open_on_x(server, member)
        sink = CutOffSink(asyncio.get_running_loop())
        sink.conn, client.conn.sink = client.conn, sink
        reply = await control.handle(events.AggregateRelease(
            "aggrX", str(mounts["aggrX"]), 1, planned=True, clients_cut_off=True).to_json())
        store = await LocalHandleStore.open(LogEngine(member.store_dir("aggrX")))
        records = await store.traverse()
        await store.shutdown()
        return reply, sink, client.conn in server.connections, records
    reply, sink, still_there, [record] = run(main())
    assert reply["ok"] and reply["handed_over"] == 1
    assert sink.closed and not sink.half_closed and not still_there
    assert record.path == "vm.vhdx" and record.disconnected_at_ms is not None


def test_clients_cut_off_is_sent_only_when_true():
    """So that the previous release's messages stay exactly as they were."""
    plain = events.AggregateRelease("aggr1", "/srv/aggr1", 1, planned=True).to_json()
    assert "clients_cut_off" not in plain
    cut = events.AggregateRelease("aggr1", "/srv/aggr1", 1, planned=True, clients_cut_off=True)
    assert events.from_json(cut.to_json()) == cut
