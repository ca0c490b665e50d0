"""Unplanned takeovers, planned moves, a refused LIF migration and the
rolling restart of both nodes, in both arbitration modes, under the kernel
SMB client (issue 11, "How
it is shown"), through the lab cluster harness (``lab.py cluster``): nodes A
and B each run clusdisk, smbcad and witnessd on the lab's shared LUNs; the
guest's cifs client, mounted from the client namespace with
``vers=3.1.1,persistenthandles,hard`` on ``//192.0.2.10/vms`` (aggr1, home A)
and, where both are written, ``//192.0.2.20/sql`` (aggr2, home B), writes a
pattern with O_DIRECT through the events.  guest_tests/cluster_cifs_check.py
checks each writer's exit, the data (through the mount and on the holder's
mount), the client's trace (every handle reopened with its same persistent
FileId), the adopting smbcad's log, a witness client registered with the
other node (UNAVAILABLE then AVAILABLE at every move) and an idle client
(a second mount, a file open, no I/O: reopened seconds after the LIF came
up).  (``kill-a direct,buffered`` adds a writer through the page cache: it
passes, but not every time: Debian 6.1's client can return EAGAIN from
fsync after a reconnect, without sending anything to the server; see
tests/lab/README.md.)  One guest boot per arbitration mode; each event's
timeline (clusdisk's steps from its log, with their durations) is printed.
"""

import json

import pytest

from labvm.cluster import TIMELINE_START, parse_timeline, run_cluster

pytestmark = pytest.mark.lab

CHECK = ["tests/lab/guest_tests/cluster_cifs_check.py"]
TIMEOUT_S = 1500                 # boot, cluster start-up (~1-4 min under TCG), the events

# Event times count from when the check's clients are ready (``after_ready``:
# two mounts, idle mounts and witness clients take 20-45 s under TCG); each
# event starts once the one before it ended.
#
# One guest boot per arbitration mode, every event type in it, while O_DIRECT
# writers write on both aggregates: first the planned sequence (PLANNED: the
# LIF migration refused, lif1 stays with aggr1 and its writer is undisturbed;
# B takes over and gives back; aggr1 is relocated to B; the rolling restart
# of A, which holds nothing then, so nothing moves; the giveback; A takes
# over; the rolling restart of B; the giveback: README "Rolling upgrade"),
# each move handing a data LUN's reservation over; then node A killed while
# the writers write: B takes aggr1 over (a clean shutdown hands the quorum to
# the partner, so after the two restarts A owns it again and B challenges
# it: SCSI-2 reset, wait, reserve; PR preempt).  Planned first: after the
# kill they would need a restart of A, ~50 s under TCG.
# PR then also restarts A (it rejoins as standby: B owns the quorum now),
# gives aggr1 back, and cuts every link of A (no RST: only the tickle ACK
# wakes the client's connections to lif1 after B brings it up; B, the quorum
# owner, wins the partition).
# The writers' WRITE count (cluster_cifs_check.WRITE_SIZE each, 1.0 s apart)
# keeps them writing past the last event: the planned sequence ends ~140 s
# after the writers are ready (the restarts take 35-60 s each), the kill
# ~20 s later, PR's last three events ~50 s after that.
PLANNED = ["!lif-migrate-lif1@5", "takeover-b@10", "giveback@15", "relocate-aggr1@20",
           "restart-a@25", "giveback@30", "takeover-a@35", "restart-b@40", "giveback@45"]
SEQUENCES = {
    "scsi2": ([*PLANNED, "kill-a@50"], ["168", "1.0"]),
    "pr": ([*PLANNED, "kill-a@50", "restart-a@55", "giveback@60", "cut-a@65"], ["220", "1.0"]),
}


@pytest.mark.parametrize("mode", ["scsi2", "pr"])
def test_kernel_client_writes_through_planned_moves_restarts_and_a_node_kill(
        mode, lab_host, tmp_path, capsys, record_property):
    events, writer = SEQUENCES[mode]
    run_and_check(events, "aggr1,aggr2", ["direct", *writer], mode, tmp_path, capsys,
                  record_property)


def run_and_check(events, targets, writer_args, mode, tmp_path, capsys, record_property) -> dict:
    """``events``: EVENT@SECONDS, ``!`` before one expected to be refused."""
    from labvm.cluster import default_python

    names = [event.split("@")[0] for event in events]
    check_args = ["--target", targets, ",".join(names), *writer_args]
    result = run_cluster([default_python(), *CHECK, *check_args], mode=mode,
                         events=[event.lstrip("!") for event in events], workdir=str(tmp_path),
                         timeout_s=TIMEOUT_S, after_ready=True)
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
        (name.lstrip("!"), "failed" if name.startswith("!") else "ok") for name in names], \
        timeline["events"]
    changes = [c for c in timeline["ownership"] if c["node"] == "b"]
    assert any("aggr1" in c.get("aggregates_up", ()) for c in changes), changes
    return timeline
