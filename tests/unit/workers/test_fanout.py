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
