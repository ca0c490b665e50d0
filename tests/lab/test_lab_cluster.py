"""Unplanned takeover, planned moves and a rolling restart under the kernel
SMB client (issue 11, "How it is shown"), through the lab cluster harness (``lab.py
cluster``): nodes A and B each run clusdisk, smbcad and witnessd on the
lab's shared LUNs; the guest's cifs client, mounted from the client
namespace with ``vers=3.1.1,persistenthandles,hard`` on ``//192.0.2.10/vms``
(aggr1, home A), writes a pattern with O_DIRECT while node A is killed
(``kill-a``); B takes aggr1 over.  (``cluster_cifs_check.py kill-a
direct,buffered`` adds a writer through the page cache: it passes, but not
every time: Debian 6.1's client can return EAGAIN from fsync when its
writeback races the reopen of the handle after the reconnect, whatever the
server answers; see tests/lab/README.md.)  guest_tests/cluster_cifs_check.py checks
the writer's exit, the data (through the mount and on B's mount of aggr1),
the client's trace (the handle reopened with its same persistent FileId)
and B's adoption log.  One guest boot per arbitration mode; the event's
timeline (clusdisk's steps from its log, with their durations) is printed.
"""

import json

import pytest

from labvm.cluster import TIMELINE_START, parse_timeline, run_cluster

pytestmark = pytest.mark.lab

CHECK = ["tests/lab/guest_tests/cluster_cifs_check.py"]
KILL_AT_S = 25                   # after COMMAND started: both writers open (~5-15 s), the
                                 # O_DIRECT one still writing (64 x 1 MiB, 0.5 s apart)
TIMEOUT_S = 900                  # boot, cluster start-up (~2-4 min under TCG), takeover


# Planned moves and a rolling restart of node A, one after the other while the
# O_DIRECT writer writes: B takes over, gives back, aggr1 is relocated to B,
# A is restarted (its clean shutdown hands nothing more over; it rejoins) and
# aggr1 is given back: the rolling upgrade of README.md, with one relocation.
PLANNED = ["takeover-b@30", "giveback@45", "relocate-aggr1@60", "restart-a@75", "giveback@90"]
PLANNED_WRITER = ["128", "1.0"]  # MiB and s between writes: still writing after the last event


@pytest.mark.parametrize("mode", ["scsi2", "pr"])
def test_kernel_client_writes_through_node_kill(mode, lab_host, tmp_path, capsys,
                                                record_property):
    run_and_check(["kill-a", "direct"], mode, [f"kill-a@{KILL_AT_S}"], tmp_path, capsys,
                  record_property)


def test_kernel_client_writes_through_planned_moves_and_a_rolling_restart(
        lab_host, tmp_path, capsys, record_property):
    names = ",".join(event.split("@")[0] for event in PLANNED)
    run_and_check([names, "direct", *PLANNED_WRITER], "pr", PLANNED, tmp_path, capsys,
                  record_property)


def run_and_check(check_args, mode, events, tmp_path, capsys, record_property) -> dict:
    from labvm.cluster import default_python

    result = run_cluster([default_python(), *CHECK, *check_args], mode=mode,
                         events=events, workdir=str(tmp_path), timeout_s=TIMEOUT_S)
    (tmp_path / "output.txt").write_text(result.text)
    timeline = parse_timeline(result.text)
    lines = [line for line in result.text.splitlines()
             if line.startswith(("cluster-cifs:", "cluster:"))]
    with capsys.disabled():
        print(f"\ncluster[{mode}]: guest boot {result.boot_s:.1f} s, command "
              f"{result.command_s:.1f} s, total {result.total_s:.1f} s")
        for line in lines:
            print(line)
        if timeline is not None:
            for event in timeline.get("events", ()):
                print(f"cluster[{mode}] {event['event']}: {event.get('outcome')}, started "
                      f"{event.get('start_s')} s, killed {event.get('killed_s')} s, served "
                      f"{event.get('served_s')} s; phases {event.get('phases')}")
                for step in event.get("log", ()):
                    print(f"    {step['t']:8.2f} +{step['dt']:6.2f} {step['node']} "
                          f"{step['daemon']}: {step['message'][:110]}")
    record_property("cluster_timeline", json.dumps(timeline))
    before_timeline = result.text.split(TIMELINE_START)[0].splitlines()
    assert result.status == 0, "\n".join(
        [f"status {result.status}; COMMAND's output and the harness's lines (the timeline, the "
         f"daemons' logs: {tmp_path}):", *before_timeline[-150:]])
    assert timeline is not None, "no timeline printed"
    assert [(e["event"], e["outcome"]) for e in timeline["events"]] == [
        (event.split("@")[0], "ok") for event in events], timeline["events"]
    changes = [c for c in timeline["ownership"] if c["node"] == "b"]
    assert any("aggr1" in c.get("aggregates_up", ()) for c in changes), changes
    return timeline
