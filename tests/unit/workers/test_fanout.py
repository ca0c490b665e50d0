"""The supervisor's merge of its workers' control answers
(smbcad/workers/fanout.py): one server to the admin."""

import pytest

from smbca.control import ControlError
from smbcad.workers.fanout import merge


def status(pid, connections, sessions, opens, disconnected=0):
    return {"smb": {"version": "1", "pid": pid, "uptime_s": 9, "connections": connections,
                    "sessions": sessions, "opens": opens, "disconnected_opens": disconnected,
                    "shares_online": ["a"], "shares_offline": []}, "cluster": None}


def test_status_sums_the_workers_and_lists_them():
    merged = merge("status", [status(11, 2, 2, 5, 1), status(12, 1, 1, 3),
                              ControlError("no answer within 30 s")], supervisor_pid=10)
    smb = merged["smb"]
    assert (smb["pid"], smb["connections"], smb["sessions"], smb["opens"],
            smb["disconnected_opens"], smb["uptime_s"]) == (10, 3, 3, 8, 1, 9)
    assert smb["workers"] == [
        {"index": 0, "pid": 11, "connections": 2, "sessions": 2, "opens": 5},
        {"index": 1, "pid": 12, "connections": 1, "sessions": 1, "opens": 3},
        {"index": 2, "error": "no answer within 30 s"}]
    assert merged["cluster"] is None


def test_lists_are_joined_with_their_worker():
    merged = merge("opens", [{"opens": [{"id": "0x1"}]}, {"opens": [{"id": "0x2"},
                                                                     {"id": "0x3"}]}], 1)
    assert merged == {"opens": [{"id": "0x1", "worker": 0}, {"id": "0x2", "worker": 1},
                                {"id": "0x3", "worker": 1}]}


def test_shares_sum_their_counts_by_name():
    one = {"shares": [{"name": "a", "tree_connects": 1, "opens": 2, "ca": True},
                      {"name": "b", "tree_connects": 0, "opens": 0, "ca": False}]}
    two = {"shares": [{"name": "a", "tree_connects": 3, "opens": 1, "ca": True},
                      {"name": "b", "tree_connects": 1, "opens": 4, "ca": False}]}
    assert merge("shares", [one, two], 1)["shares"] == [
        {"name": "a", "tree_connects": 4, "opens": 3, "ca": True},
        {"name": "b", "tree_connects": 1, "opens": 4, "ca": False}]


def test_an_action_is_the_answer_of_the_worker_that_acted():
    merged = merge("close-open", [ControlError("no open 0x5"),
                                  {"closed": [{"id": "0x5"}]}], 1)
    assert merged == {"closed": [{"id": "0x5", "worker": 1}]}
    with pytest.raises(ControlError, match="no open 0x6"):
        merge("close-open", [ControlError("no open 0x6"), ControlError("no open 0x6")], 1)
    with pytest.raises(ControlError, match="no workers"):
        merge("status", [], 1)


def adopted(restored, tickles, seconds=0.5):
    return {"aggregate": "aggr1", "phase": "online", "source": "replica",
            "restored": restored, "intents": 0, "kept": 0, "dropped": 1,
            "seconds": seconds, "tickles": tickles}


def test_an_adoption_is_every_workers_partition():
    merged = merge("adopt", [adopted(2, [["192.0.2.100", 5000, "192.0.2.10", 445]]),
                             adopted(1, [["192.0.2.100", 5001, "192.0.2.10", 445]], 0.75)], 1)
    assert (merged["restored"], merged["dropped"], merged["seconds"]) == (3, 2, 0.75)
    assert merged["tickles"] == [["192.0.2.100", 5000, "192.0.2.10", 445],
                                 ["192.0.2.100", 5001, "192.0.2.10", 445]]
    assert [entry["worker"] for entry in merged["workers"]] == [0, 1]
    # One worker's refusal is the node's: clusdisk must not think it adopted.
    with pytest.raises(ControlError, match=r"adopt failed in 1 of 2 workers: worker 1: "
                                           r"aggr1: adoption refused: marker unreadable"):
        merge("adopt", [adopted(2, []),
                        ControlError("aggr1: adoption refused: marker unreadable")], 1)
    released = merge("release", [{"aggregate": "aggr1", "phase": "offline", "handed_over": 2,
                                  "seconds": 0.1},
                                 {"aggregate": "aggr1", "phase": "offline", "handed_over": 3,
                                  "seconds": 0.2}], 1)
    assert (released["handed_over"], released["seconds"]) == (5, 0.2)


def mirror(in_sync, acked, role="primary"):
    return {"aggregate": "aggr1", "role": role, "epoch": 3, "generation": 1 << 32,
            "mseq": acked, "acked_mseq": acked, "in_sync": in_sync, "link": "up",
            "marker": "in sync" if in_sync else "outdated", "lag_frames": 0, "lag_bytes": 0,
            "degrade_count": 0 if in_sync else 1, "last_ack_latency_s": 0.001,
            "resync_duration_s": None, "resyncs": {"none": 1}, "fenced": False}


def cluster_status(phase, a_mirror, link="up"):
    return {"status": {"node_id": 1, "cluster": "c", "mirror_link": link,
                       "mirror_link_counts": {"connects": 1, "drops": 0, "refused_peers": 0,
                                              "dropped_frames": {}},
                       "aggregates": [{"name": "aggr1", "phase": phase, "adopted": {
                           "restored": 1, "intents": 0, "kept": 0, "dropped": 0},
                           "detail": "", "mirror": a_mirror}]},
            "smb": {"pid": 5}}


def test_a_cluster_nodes_status_is_in_sync_only_when_every_partition_is():
    merged = merge("status", [cluster_status("online", mirror(True, 4)),
                              cluster_status("online", mirror(False, 2), "down")], 1)["status"]
    assert merged["mirror_link"] == "down"
    assert merged["mirror_link_counts"]["connects"] == 2
    [aggregate] = merged["aggregates"]
    assert aggregate["phase"] == "online" and aggregate["adopted"]["restored"] == 2
    assert aggregate["mirror"]["in_sync"] is False
    assert (aggregate["mirror"]["acked_mseq"], aggregate["mirror"]["degrade_count"],
            aggregate["mirror"]["marker"]) == (6, 1, "mixed")
    assert [p["mirror"]["in_sync"] for p in aggregate["partitions"]] == [True, False]
    both = merge("status", [cluster_status("online", mirror(True, 4)),
                            cluster_status("offline", mirror(True, 1, "replica"))], 1)
    [aggregate] = both["status"]["aggregates"]
    assert aggregate["phase"] == "partial" and aggregate["mirror"]["role"] == "mixed"
    assert both["status"]["mirror_link"] == "up"


def test_tickles_are_every_workers():
    merged = merge("tickles", [{"tickles": [[1]]}, {"tickles": [[2], [3]]}], 1)
    assert merged == {"tickles": [[1], [2], [3]]}


def test_a_worker_that_does_not_answer_leaves_the_aggregate_partial():
    merged = merge("status", [cluster_status("online", mirror(True, 4)),
                              ControlError("no answer within 30 s")], 1)["status"]
    [aggregate] = merged["aggregates"]
    assert aggregate["phase"] == "partial" and aggregate["mirror"]["in_sync"] is False
    assert [(p["worker"], p["phase"]) for p in aggregate["partitions"]] == [
        (0, "online"), (1, "unknown")]
    assert "worker 1: no answer within 30 s" in aggregate["detail"]
    assert merged["mirror_link"] == "down"
    assert merged["workers"][1] == {"worker": 1, "mirror_link": "down",
                                    "error": "no answer within 30 s"}


def test_clusdisks_aggregate_events_are_adopt_and_release():
    from smbca import events
    from smbcad.workers.fanout import command_of
    adopt = events.AggregateAdopt("aggr1", "/srv/aggr1", 1).to_json()
    release = events.AggregateRelease("aggr1", "/srv/aggr1", 1, True, False).to_json()
    assert (command_of(adopt), command_of(release)) == ("adopt", "release")
    assert command_of({"command": "status"}) == "status"
    assert command_of({"event": "status"}) == ""
