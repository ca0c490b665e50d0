"""clusdisk on real shared LUNs (issue 5, "How it is shown"): two daemons,
node A on initiator A and node B on initiator B, heartbeating over both veth
links between the namespaces, in SCSI-2 mode and in PR mode.  One scenario per
mode, so that one guest boot runs it (tests/lab/test_clusdisk.py):

  1. form     A starts and forms; B joins as standby.  (a) exactly one owns the
              quorum; A (the aggregate's home) mounts the data LUN, B has it
              offline; (e) B's WRITE to the data LUN: RESERVATION CONFLICT.
  2. cut      both heartbeat links cut, both alive: (c) A keeps the quorum and
              the data disk in every sample, B challenges, loses and stands
              down (exit 1).  Links healed, B restarted as standby.
  3. kill     kill -9 of A: (b) B owns the quorum and the data disk within the
              configured challenge time (SCSI-2: 7 + 10 s plus one renew period
              from the partner loss, the Microsoft defaults); A's nexus is
              fenced.
  4. rejoin   A restarts (unmounting what the killed process left mounted),
              joins as standby; its home aggregate stays on B until a giveback
              sent to B's clusdisk brings it back.
  5. stop     (f) SIGTERM of B, the quorum owner: A takes the quorum at once
              (handover, no arbitration).  B restarted as standby.
  6. stop     (f) SIGTERM of A, owner of the quorum and the data disk: B takes
              both at once.  Steps 4-6 reset neither LUN (LIO's own reset
              counter; the logs).
  7. leave    SIGTERM of B, the last node: it unmounts and releases everything.

(d) runs throughout: both control sockets every 100 ms, never two owners of
one disk.  The results are printed as ``clusdisk-lab[MODE]: ...`` lines.
"""

import subprocess
import time

import pytest

from clusdisk_pair import (
    AGGREGATE,
    CLAIM_STATES,
    GOOD,
    HB_INTERVAL_MS,
    OWNER_STATES,
    PR_KEYS,
    PR_TYPE_WE_REGISTRANTS_ONLY,
    PR_TYPE_WRITE_EXCLUSIVE,
    RESERVATION_CONFLICT,
    ModeSetup,
    Pair,
    Sampler,
    detach,
    lun_resets,
    make_filesystem,
    mount_points,
    pr_holder,
    pr_keys,
    read_only,
    say,
    tur_status,
    wait_view,
    write_status,
)
from smbca.control import request_blocking

# SCSI-2: the Microsoft defaults (renew 3 s, challenge wait 7 s, settle 10 s);
# PR: the example config's (renew 3 s, preempt delay 2 s, settle 4 s).  Only
# the join window (default 2 x renew) is shorter: it only delays forming.
SETUPS = {
    "scsi2": ModeSetup("scsi2", {"renew_ms": 3000, "challenge_wait_ms": 7000,
                                 "settle_ms": 10000, "join_window_ms": 3000}),
    "pr": ModeSetup("pr", {"renew_ms": 3000, "pr_challenge_delay_ms": 2000,
                           "pr_settle_ms": 4000, "join_window_ms": 3000}),
}
START_S = 90                      # daemon start-up (Python under TCG) + join + settle
SLACK_S = 30                      # waits beyond a protocol bound, before failing
SG_RAW_RESERVATION_CONFLICT = 24  # sg3_utils exit status


def owner(view) -> bool:
    return view is not None and view.state in OWNER_STATES and view.owns_quorum


def serves(view) -> bool:
    return view is not None and AGGREGATE in view.up


def standby(view) -> bool:
    return view is not None and view.state == "standby" and not view.owns_quorum


class Scenario:
    def __init__(self, mode: str, pair: Pair, sampler: Sampler, lab) -> None:
        self.mode = mode
        self.setup = SETUPS[mode]
        self.pair = pair
        self.sampler = sampler
        self.lab = lab
        self.pr = mode == "pr"

    def say(self, text: str) -> None:
        say(self.mode, text)

    def wait(self, predicate, timeout_s: float, what: str):
        return wait_view(self.sampler, predicate, timeout_s, what)

    def resets(self) -> tuple[int, int]:
        return lun_resets(self.lab.quorum), lun_resets(self.lab.data)

    # -- checks ------------------------------------------------------------------

    def check_quorum_held_by(self, side: str, other_registered: bool) -> None:
        """What the quorum LUN itself says about its owner."""
        quorum, other = self.lab.quorum, "B" if side == "A" else "A"
        if self.pr:
            assert pr_holder(quorum.a.sg) == (PR_KEYS[side], PR_TYPE_WE_REGISTRANTS_ONLY)
            want = {PR_KEYS[side]} | ({PR_KEYS[other]} if other_registered else set())
            assert pr_keys(quorum.a.sg) == want
        else:
            assert tur_status(quorum.path(other).sg) == RESERVATION_CONFLICT
            assert tur_status(quorum.path(side).sg) == GOOD

    def check_data_owner(self, side: str, other_killed: bool = False) -> None:
        """``side`` has the data LUN mounted, writable and reserved; the other
        node has it offline (unless it was killed: then its kernel keeps the
        stale mount, and only the LUN's fencing counts); (e) WRITE through the
        other's nexus: RESERVATION CONFLICT, through the owner's: GOOD."""
        data, other = self.lab.data, "B" if side == "A" else "A"
        view = self.pair[side].view()
        assert serves(view), f"node {side} does not serve {AGGREGATE}: {view}"
        block = data.path(side).sd
        assert mount_points(block) == [self.pair[side].mount_point], mount_points(block)
        assert not read_only(block), f"{block} is read-only on the owner"
        if not other_killed:
            other_block = data.path(other).sd
            assert mount_points(other_block) == [], f"{other_block} mounted on the non-owner"
            assert read_only(other_block), f"{other_block} is writable on the non-owner"
        assert write_status(data, other) == RESERVATION_CONFLICT, \
            f"node {other}'s WRITE to the data LUN was not refused"
        assert write_status(data, side) == GOOD
        if self.pr:
            assert pr_holder(data.a.sg) == (PR_KEYS[side], PR_TYPE_WRITE_EXCLUSIVE)

    def log_since(self, offsets: dict) -> dict:
        return {side: self.pair[side].log_text(offsets[side]) for side in ("A", "B")}

    # -- the phases --------------------------------------------------------------

    def form(self) -> None:
        started = time.monotonic()
        self.pair.start("A")
        self.wait(lambda s: s.a is not None and s.a.state in CLAIM_STATES, START_S,
                  "A to form the cluster")
        self.pair.start("B")
        self.wait(lambda s: owner(s.a) and serves(s.a) and standby(s.b), START_S,
                  "A online with the data disk and B standby")
        latest = self.sampler.latest()
        assert [v.owns_quorum for v in (latest.a, latest.b)] == [True, False]     # (a)
        self.check_quorum_held_by("A", other_registered=True)
        self.check_data_owner("A")                                                 # (e)
        lba = f"{self.lab.data.size_bytes // 512 - 1:016x}"          # WRITE(16), 1 block
        cdb = ["8a", "00", *(lba[i:i + 2] for i in range(0, 16, 2)), "00", "00", "00", "01",
               "00", "00"]
        sg_raw = subprocess.run(["sg_raw", "-s", "512", "-i", "/dev/zero", self.lab.data.b.sg,
                                 *cdb], capture_output=True, text=True, timeout=30)
        assert sg_raw.returncode == SG_RAW_RESERVATION_CONFLICT, sg_raw.stderr
        self.say(f"(a) formed in {time.monotonic() - started:.1f} s: A owns the quorum and "
                 f"mounts the data LUN, B is standby with it offline; (e) B's WRITE to the "
                 f"data LUN: RESERVATION CONFLICT (SG_IO, and sg_raw exit 24)")

    def cut(self) -> None:
        """(c) heartbeat cut, both alive: the defender keeps everything."""
        before = self.resets()
        cut_at = time.monotonic()
        self.pair.nodes.cut()
        bound = (self.setup.heartbeat_timeout_s() + HB_INTERVAL_MS / 1000
                 + self.setup.challenge_s + SLACK_S)
        status = self.pair.wait_exit("B", bound)
        down_at = time.monotonic()
        assert status == 1, f"B (challenger) exit status {status}, want 1 (stood down)"
        reason = ("our quorum key was preempted: the partner is alive" if self.pr
                  else "lost the challenge for the quorum disk")
        assert f"leaving the cluster: {reason}" in self.pair["B"].log_text()
        views = self.sampler.views("A", cut_at)
        assert any(v.state.startswith("challenge") for v in self.sampler.views("B", cut_at)), \
            "the sampler never saw B challenge"
        assert views and all(owner(v) and serves(v) for v in views), \
            [v for v in views if not (owner(v) and serves(v))][:3]
        self.check_quorum_held_by("A", other_registered=False)
        self.check_data_owner("A")
        after = self.resets()
        self.pair.nodes.heal()
        challenge = ", ".join(state for _, state in self.sampler.transitions("B", cut_at))
        self.say(f"(c) heartbeat cut: B challenged ({challenge}), lost and stood down "
                 f"{down_at - cut_at:.1f} s after the cut; A kept the quorum and the data disk "
                 f"in all {len(views)} samples "
                 f"(LUN resets: quorum +{after[0] - before[0]}, data +{after[1] - before[1]})")
        self.pair.start("B")
        self.wait(lambda s: owner(s.a) and serves(s.a) and standby(s.b), START_S,
                  "B back as standby")

    def kill(self) -> None:
        """(b) kill -9 of the owner."""
        before = self.resets()
        killed_at = time.monotonic()
        self.pair.kill("A")
        hb_s = self.setup.heartbeat_timeout_s() + HB_INTERVAL_MS / 1000
        self.wait(lambda s: owner(s.b) and serves(s.b),
                  hb_s + self.setup.takeover_bound_s + SLACK_S,
                  "B to own the quorum and the data disk")
        detected = self.sampler.first("B", lambda v: v.state != "standby", killed_at)
        quorum = self.sampler.first("B", owner, killed_at)
        data = self.sampler.first("B", serves, killed_at)
        times = {"detect_s": detected.t - killed_at, "quorum_s": quorum.t - killed_at,
                 "data_s": data.t - killed_at, "challenge_s": data.t - detected.t}
        path = " -> ".join(f"{state} +{t:.1f}" for t, state in
                           self.sampler.transitions("B", killed_at))
        self.say(f"(b) kill -9 of A: B saw the partner lost +{times['detect_s']:.1f} s, owned "
                 f"the quorum +{times['quorum_s']:.1f} s and mounted the data disk "
                 f"+{times['data_s']:.1f} s after the kill = {times['challenge_s']:.1f} s after "
                 f"the partner loss (bound {self.setup.challenge_s:g} + {self.setup.renew_s:g} "
                 f"= {self.setup.takeover_bound_s:g} s; heartbeat timeout "
                 f"{self.setup.heartbeat_timeout_s():g} s)")
        self.say(f"    B: {path}")
        assert times["challenge_s"] <= self.setup.takeover_bound_s, times
        assert times["quorum_s"] <= times["data_s"]
        assert times["data_s"] <= hb_s + self.setup.takeover_bound_s, times
        self.check_quorum_held_by("B", other_registered=False)
        self.check_data_owner("B", other_killed=True)          # A's nexus is fenced
        after = self.resets()
        if self.pr:
            assert after == before, f"PR mode reset a LUN: {before} -> {after}"
        else:          # the challenge resets the quorum, taking the data LUN resets it too
            assert after[0] > before[0] and after[1] > before[1], (before, after)
        self.say(f"    LUN resets during the failover: quorum +{after[0] - before[0]}, "
                 f"data +{after[1] - before[1]}; A's WRITE to the data LUN: RESERVATION CONFLICT")

    def rejoin(self) -> None:
        """A restarts and joins as standby; its aggregate stays on B (no
        automatic giveback) until the operator's giveback, sent to B."""
        stale = mount_points(self.lab.data.a.sd)
        assert stale == [self.pair["A"].mount_point], stale        # left by kill -9
        offset = self.pair["A"].log_size()
        self.pair.start("A")
        self.wait(lambda s: standby(s.a) and not serves(s.a) and owner(s.b) and serves(s.b),
                  START_S, "A standby, its aggregate still on B")
        reply = request_blocking(self.pair["B"].socket, {"command": "giveback"}, START_S)
        assert reply.get("ok"), reply
        self.wait(lambda s: standby(s.a) and serves(s.a) and owner(s.b) and not serves(s.b),
                  START_S, "A standby with its aggregate back, B owner")
        assert "is mounted from a previous run: unmounting" in self.pair["A"].log_text(offset)
        self.check_data_owner("A")
        self.say("    A restarted: unmounted what the killed process left mounted, joined as "
                 "standby and, with the operator's giveback, got the data disk back from B")

    def clean_stop(self, leaving: str) -> None:
        """(f) SIGTERM of the quorum owner ``leaving``: it tears down,
        releases and tells its partner, which takes the quorum (and the data
        disk, if ``leaving`` served it) without arbitration or reset."""
        taking = "B" if leaving == "A" else "A"
        had_data = serves(self.pair[leaving].view())
        offsets = {side: self.pair[side].log_size() for side in ("A", "B")}
        stopped_at = time.monotonic()
        status = self.pair.stop(leaving)
        assert status == 0, f"{leaving}'s exit status after SIGTERM: {status}"
        self.wait(lambda s: owner(s.side(taking)) and (serves(s.side(taking)) or not had_data),
                  10 + SLACK_S, f"{taking} to own what {leaving} owned")
        quorum = self.sampler.first(taking, owner, stopped_at)
        times = {"quorum_s": quorum.t - stopped_at}
        if had_data:
            times["data_s"] = self.sampler.first(taking, serves, stopped_at).t - stopped_at
        logs = self.log_since(offsets)
        assert "--partner-clean-shutdown--> handover-reserve" in logs[taking], logs[taking]
        assert "challenge" not in logs[taking], logs[taking]
        assert "resetting" not in logs[taking] + logs[leaving]
        assert "leaving the cluster: clean shutdown" in logs[leaving], logs[leaving]
        self.check_quorum_held_by(taking, other_registered=False)
        if had_data:
            self.check_data_owner(taking)
        data = f", the data disk mounted {times['data_s']:.1f} s" if had_data else ""
        held = "quorum owner with the data disk" if had_data else "quorum owner"
        self.say(f"(f) SIGTERM of {leaving} ({held}): exit 0; {taking} owned the quorum "
                 f"{times['quorum_s']:.1f} s later{data} (handover-reserve, no challenge)")

    def handovers(self) -> None:
        """After the failover: A rejoins (give-back), then (f) the two clean
        stops, B's (quorum only) and, B restarted, A's (quorum and data)."""
        before = self.resets()
        self.rejoin()
        self.clean_stop("B")
        self.pair.start("B")
        self.wait(lambda s: owner(s.a) and serves(s.a) and standby(s.b), START_S,
                  "B back as standby")
        self.clean_stop("A")
        after = self.resets()
        assert after == before, f"a LUN was reset in a clean move: {before} -> {after}"
        self.say(f"    LUN resets from A's restart to here (give-back, two clean stops): "
                 f"quorum +{after[0] - before[0]}, data +{after[1] - before[1]}")

    def leave(self, side: str) -> None:
        status = self.pair.stop(side)
        assert status == 0, f"{side}'s exit status after SIGTERM: {status}"
        for path in ("A", "B"):
            block = self.lab.data.path(path).sd
            assert mount_points(block) == [] and read_only(block), block
        for lun in (self.lab.quorum, self.lab.data):
            if self.pr:
                assert pr_keys(lun.a.sg) == set() and pr_holder(lun.a.sg) is None, lun.name
            else:
                assert tur_status(lun.a.sg) == GOOD and tur_status(lun.b.sg) == GOOD, \
                    f"{lun.name} still reserved"
        self.say(f"    SIGTERM of {side}, the last node: exit 0, data disk unmounted and "
                 f"read-only on both, both LUNs released")

    def never_two_owners(self) -> None:
        """(d) over the whole scenario (one node is down or starting for much
        of it: Python starts slowly under TCG)."""
        self.sampler.stop()
        samples = self.sampler.samples
        span = time.monotonic() - self.sampler.started_at
        both = sum(1 for sample in samples if sample.a is not None and sample.b is not None)
        assert not self.sampler.conflicts, self.sampler.conflicts[:5]
        assert self.sampler.longest_gap_s < 2, f"the sampler stalled {self.sampler.longest_gap_s} s"
        self.say(f"(d) {len(samples)} samples over {span:.0f} s, every "
                 f"{self.sampler.period_s * 1000:.0f} ms (longest gap "
                 f"{self.sampler.longest_gap_s:.2f} s), {both} with both daemons answering: "
                 f"never two owners of one disk")


@pytest.mark.parametrize("mode", sorted(SETUPS))
def test_two_nodes(mode, luns, nodes, tmp_path):
    began = time.monotonic()
    make_filesystem(luns.data)
    pair = Pair(nodes, luns, tmp_path, SETUPS[mode])
    sampler = Sampler(pair)
    sampler.start()
    scenario = Scenario(mode, pair, sampler, luns)
    try:
        scenario.form()                     # (a), (e)
        scenario.cut()                      # (c)
        scenario.kill()                     # (b)
        scenario.handovers()                # (f)
        scenario.leave("B")
        scenario.never_two_owners()         # (d)
        scenario.say(f"scenario took {time.monotonic() - began:.1f} s")
    except BaseException:
        for side in ("A", "B"):
            print(f"---- node {side} log (tail) ----\n{pair[side].log_text()[-6000:]}")
        raise
    finally:
        sampler.stop()
        for side in ("A", "B"):
            if pair[side].proc is not None:
                nodes.kill(pair[side].proc)
            for point in mount_points(luns.data.path(side).sd):
                detach(point)
