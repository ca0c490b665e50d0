"""Samba's smbtorture against the server, one pytest test per group.

A group fails on any failing smbtorture test that the known-failures file
does not list, on overrunning its wall time (smbtorture is killed by PID), or
when the server dies. A listed test that now passes is reported, not failed.
Per-group counts go to tests/interop/.results/smbtorture-<target>.{json,txt}.
The groups whose tests block a client channel (BLOCKING_GROUPS) run, server
and smbtorture both, in a network namespace of their own where smbtorture
drops packets with iptables (root and iptables needed; tests/interop/netns.py).

Environment:
  SMBCA_TORTURE_KNOWNFAIL          known-failures file (default
                                   smbtorture_knownfail.txt; for
                                   SMBCA_INTEROP_TARGET=smbd the harness's own
                                   smbtorture_knownfail.smbd.txt)
  SMBCA_TORTURE_GROUP_TIMEOUT_S    wall time per group (default 300)
  SMBCA_TORTURE_BUDGET_S           wall time for all groups together (default 1500)
"""

import concurrent.futures
import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import netns
from servers import TEST_PASSWORD, TEST_USER, Share
from torture import FAILED, PASSED, GroupRun, KnownFailFileError, parse_knownfail, run_group

pytestmark = pytest.mark.interop("smbtorture")

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / ".results"
GROUPS = (
    # issue 2: the server core
    "smb2.connect", "smb2.read", "smb2.rw", "smb2.create", "smb2.dir", "smb2.getinfo",
    "smb2.setinfo", "smb2.compound", "smb2.credits", "smb2.session", "smb2.tcon",
    # issue 3: locks, oplocks and leases, notify, FSCTLs, share modes (+ streams)
    "smb2.lock", "smb2.oplock", "smb2.lease", "smb2.notify", "smb2.ioctl", "smb2.sharemode",
    "smb2.streams",
    # issue 4: durable, persistent and replayed opens, on a continuously available share
    "smb2.durable-open", "smb2.durable-v2-open", "smb2.durable-v2-delay", "smb2.replay",
    # issue 12: NT ACLs, their inheritance on create and reading descriptors
    "smb2.acls", "smb2.acls_non_canonical", "smb2.sdread",
    # issue 13: multichannel (bugs.bug_15346 is left out: it dials port 445
    # whatever -p says); one server per subgroup, so that the channels a
    # failed test leaves open do not count against the next one's
    "smb2.multichannel.generic", "smb2.multichannel.oplocks", "smb2.multichannel.leases",
    # issue 14: caching, locks, share modes, durable reconnects and change
    # notify across worker processes (WORKERS_SUFFIX below)
    "smb2.oplock+workers", "smb2.lease+workers", "smb2.lock+workers", "smb2.sharemode+workers",
    "smb2.durable-open+workers", "smb2.durable-v2-open+workers", "smb2.notify+workers",
)
# A group named with this suffix runs against ``server.workers: 2`` (smbcad
# only): smbtorture's connections get random ClientGuids, so its two clients
# land on one worker or on two, and every test must pass either way.
WORKERS_SUFFIX = "+workers"
# What fails with workers only, and why (added to the known-failures file's):
# nothing.  The durable groups reconnect from a new ClientGuid, which may land
# on the other worker: the open and the previous session follow
# (smbcad/server/durable_handover.py, PreviousSessionId); notify's changes
# through the other worker reach this one by inotify only (docs/multicore.md,
# "smbtorture against workers").
WORKERS_KNOWNFAIL: dict[str, str] = {}
# Groups run against a share marked ``ca``: persistent handles are granted
# there, and durable-v2-open's persistent tests expect the CA tables.
CA_GROUPS = frozenset({"smb2.durable-open", "smb2.durable-v2-open", "smb2.durable-v2-delay",
                       "smb2.replay"})
# Groups whose server also listens on a second loopback address (a second
# path for multichannel, listed by FSCTL_QUERY_NETWORK_INTERFACE_INFO).
SECOND_ADDRESS_GROUPS = frozenset({"smb2.multichannel.generic", "smb2.multichannel.oplocks",
                                   "smb2.multichannel.leases"})
SECOND_ADDRESS = "127.0.0.2"
# Groups whose tests block a client channel: smbtorture drops its packets with
# iptables (torture:use_iptables), so they run, server and all, in a network
# namespace of their own (tests/interop/netns.py), never on the host's tables.
BLOCKING_GROUPS = frozenset({"smb2.multichannel.generic", "smb2.multichannel.oplocks",
                             "smb2.multichannel.leases", "smb2.replay", "smb2.oplock",
                             "smb2.oplock+workers"})
BLOCKING_ARGS = ("--option=torture:use_iptables=true",
                 f"--option=torture:iptables_command={netns.IPTABLES}")
KNOWNFAIL_FILES = {"smbcad": HERE / "smbtorture_knownfail.txt",
                   "smbd": HERE / "smbtorture_knownfail.smbd.txt"}
# smbtorture adapts some expectations to the server it is told it runs against.
TORTURE_ARGS = {"smbcad": (), "smbd": ("--target=samba3",)}
# A second account for the tests that bind or re-authenticate as another user.
USER2, USER2_PASSWORD = "smbcatest2", "Interop-Test-Pw2"
# Close to Samba's own selftest shares: NT ACLs, DOS attributes and streams in xattrs.
SMBD_SHARE_OPTIONS = ("vfs objects = acl_xattr streams_xattr", "ea support = yes",
                      "store dos attributes = yes")
# The ACL groups run smbd as the test user's own unix account: under the harness's
# usual "force user = root" smbd skips every ACL check (root may do anything) and
# passes 3 of these 16 tests, which says nothing about its ACLs.  Their share is a
# world-writable directory that account can reach (pytest's tmp is 0700 root).
ACL_GROUPS = frozenset({"smb2.acls", "smb2.acls_non_canonical", "smb2.sdread"})
SMBD_AS_USER_OPTIONS = ("force user =", "force group =")
# The anchor: passes of Samba 4.17.12-Debian's smbd on this machine, run as above
# (SMBCA_INTEROP_TARGET=smbd, 2026-12-06: acls 13 of 14, ACCESSBASED failing;
# acls_non_canonical 0 of 1; sdread 1 of 1).  smbcad must pass at least as many.
SMBD_PASS_ANCHOR = {"smb2.acls": 13, "smb2.acls_non_canonical": 0, "smb2.sdread": 1}
# The groups that take longest, longest first (seconds against smbcad in CI,
# December 2026: 195, 169, 121, 111, 85, 84), nearly all of it waiting; they
# run BACKGROUND_LANES at a time from the module's start (BackgroundGroups).
BACKGROUND_GROUPS = ("smb2.lease", "smb2.lease+workers", "smb2.replay",
                     "smb2.multichannel.oplocks", "smb2.oplock", "smb2.oplock+workers",
                     "smb2.notify", "smb2.notify+workers", "smb2.multichannel.leases")
BACKGROUND_LANES = 3


class TortureRun:
    """Wall-time budget and per-group summary of one pytest run."""

    def __init__(self, target: str, budget_s: float, group_timeout_s: float) -> None:
        self.target = target
        self.deadline = time.monotonic() + budget_s
        self.group_timeout_s = group_timeout_s
        self.out_dir = RESULTS_DIR / target
        self.summary: dict[str, dict] = {}

    def record(self, run, known: dict[str, str], lane: str | None = None) -> str:
        failed = run.names(FAILED)
        counts = run.counts()
        lane = lane or run.group
        self.summary[lane] = {
            **counts, "known_failures": sum(name in known for name in failed),
            "duration_s": round(run.duration_s, 1), "timed_out": run.timed_out,
            "failures": failed}
        RESULTS_DIR.mkdir(exist_ok=True)
        stem = RESULTS_DIR / f"smbtorture-{self.target}"
        stem.with_suffix(".json").write_text(json.dumps(self.summary, indent=2) + "\n")
        lines = [f"{'group':26} {'pass':>5} {'fail':>5} {'known':>5} {'skip':>5} {'seconds':>8}"]
        lines += [f"{group:26} {s['passed']:5} {s['failed']:5} {s['known_failures']:5} "
                  f"{s['skipped']:5} {s['duration_s']:8.1f}" for group, s in self.summary.items()]
        stem.with_suffix(".txt").write_text("\n".join(lines) + "\n")
        return (f"smbtorture {lane} on {self.target}: pass {counts['passed']}, "
                f"fail {counts['failed']} ({self.summary[lane]['known_failures']} known), "
                f"skip {counts['skipped']}, {run.duration_s:.1f} s")


@pytest.fixture(scope="module")
def knownfail(interop_target) -> dict[str, str]:
    path = Path(os.environ.get("SMBCA_TORTURE_KNOWNFAIL", KNOWNFAIL_FILES[interop_target]))
    try:
        return parse_knownfail(path)
    except (OSError, KnownFailFileError) as exc:
        problem = str(exc)
    pytest.fail(f"known-failures file: {problem}", pytrace=False)


@pytest.fixture(scope="module")
def torture_run(interop_target) -> TortureRun:
    return TortureRun(interop_target,
                      budget_s=float(os.environ.get("SMBCA_TORTURE_BUDGET_S", 1500)),
                      group_timeout_s=float(os.environ.get("SMBCA_TORTURE_GROUP_TIMEOUT_S", 300)))


def _in_group(name: str, group: str) -> bool:
    return name == group or name.startswith(group + ".")


@dataclass
class GroupOutcome:
    """What a group's run left for the verdict."""

    run: GroupRun
    server_kind: str
    server_exit: int | None
    server_log_tail: str


def _lane(group: str) -> tuple[str, bool]:
    """(the smbtorture group, whether it runs against worker processes)."""
    if group.endswith(WORKERS_SUFFIX):
        return group[:-len(WORKERS_SUFFIX)], True
    return group, False


def run_isolated(group: str, factory, torture_run: TortureRun, bound_s: float,
                 scratch: Path, cleanups: list) -> GroupOutcome:
    """One group against a server of its own (in a network namespace of its
    own for the blocking groups); safe to run in a thread beside others."""
    shares = None
    share_options = SMBD_SHARE_OPTIONS
    if _lane(group)[0] in CA_GROUPS:
        share_dir = scratch / "ca"
        share_dir.mkdir()
        shares = (Share("share", share_dir, ca=True),)
    if group in ACL_GROUPS:
        share_dir = Path(tempfile.mkdtemp(prefix="smbca-torture-acl-"))
        cleanups.append(lambda: shutil.rmtree(share_dir, ignore_errors=True))
        share_dir.chmod(0o777)
        shares = (Share("share", share_dir),)
        share_options = SMBD_SHARE_OPTIONS + SMBD_AS_USER_OPTIONS
    blocking = _lane(group)[0] in BLOCKING_GROUPS
    torture_group, workers = _lane(group)
    extra_args = ("--anonymous-ok", "--workers", "2") if workers else ("--anonymous-ok",)
    if blocking and netns.missing_tools():
        pytest.fail(f"{group} blocks channels with iptables in a network namespace; missing: "
                    + ", ".join(netns.missing_tools()), pytrace=False)
    where = (netns.entered(f"smbca-torture-{os.getpid()}-{GROUPS.index(group)}") if blocking
             else contextlib.nullcontext())
    with where:
        server = factory(users={TEST_USER: TEST_PASSWORD, USER2: USER2_PASSWORD},
                         shares=shares, share_options=share_options,
                         extra_args=extra_args,
                         also_listen=(SECOND_ADDRESS,) if group in SECOND_ADDRESS_GROUPS else ())
        user2 = (f"--option=torture:user2name={USER2}",
                 f"--option=torture:user2password={USER2_PASSWORD}")
        run = run_group(torture_group, server.unc(), server.port, server.user, server.password,
                        torture_run.out_dir / "workers" if workers else torture_run.out_dir,
                        bound_s,
                        (*TORTURE_ARGS[server.kind], *user2, *(BLOCKING_ARGS if blocking else ())))
    server_exit = server.proc.poll()
    return GroupOutcome(run, server.kind, server_exit,
                        server.log_tail() if server_exit is not None else "")


class BackgroundGroups:
    """The long groups (mostly waiting: for break timeouts, blocked channels,
    "no break" windows) run from the module's first test on, a few at a time,
    each with its own server; their tests collect the outcome.  Run one after
    the other they took 13 of CI's 45 minutes."""

    def __init__(self, groups, factory_for, torture_run: TortureRun, scratch_for) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(BACKGROUND_LANES,
                                                           thread_name_prefix="smbtorture")
        self._cleanups: list = []
        self.futures = {group: self._pool.submit(
            run_isolated, group, factory_for(), torture_run, torture_run.group_timeout_s,
            scratch_for(group), self._cleanups) for group in groups}

    def outcome(self, group: str) -> GroupOutcome:
        return self.futures[group].result()

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()
        self._pool.shutdown(wait=True)
        for cleanup in self._cleanups:
            cleanup()


@pytest.fixture(scope="module")
def background_groups(request, server_factories, tmp_path_factory, torture_run,
                      interop_target):
    selected = [item.callspec.params["group"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_smbtorture_group"]
    groups = [group for group in BACKGROUND_GROUPS if group in selected
              and (interop_target == "smbcad" or not _lane(group)[1])]
    background = BackgroundGroups(
        groups, server_factories, torture_run,
        lambda group: tmp_path_factory.mktemp(f"torture-{group}"))
    yield background
    background.close()


@pytest.mark.parametrize("group", GROUPS)
def test_smbtorture_group(group, server_factory, knownfail, torture_run, capsys, tmp_path,
                          request, background_groups, interop_target):
    workers = _lane(group)[1]
    if workers:
        if interop_target != "smbcad":
            pytest.skip("worker processes are smbcad's")
        knownfail = {**knownfail, **WORKERS_KNOWNFAIL}
    if group in background_groups.futures:
        outcome = background_groups.outcome(group)
        bound_s = torture_run.group_timeout_s
    else:
        remaining = torture_run.deadline - time.monotonic()
        if remaining < 10:
            pytest.fail("smbtorture wall-time budget (SMBCA_TORTURE_BUDGET_S) is used up",
                        pytrace=False)
        bound_s = min(torture_run.group_timeout_s, remaining)
        cleanups: list = []
        outcome = run_isolated(group, server_factory, torture_run, bound_s, tmp_path, cleanups)
        for cleanup in cleanups:
            request.addfinalizer(cleanup)
    run, server_exit = outcome.run, outcome.server_exit
    line = torture_run.record(run, knownfail, lane=group)
    now_passing = sorted(name for name, result in run.results.items()
                         if name in knownfail and result.status in PASSED)
    with capsys.disabled():
        print(f"\n  {line}")
        if now_passing:
            print(f"  now passing, remove from the known-failures file: {', '.join(now_passing)}")

    problems = []
    if run.timed_out:
        problems.append(f"overran its {bound_s:.0f} s wall time (SMBCA_TORTURE_GROUP_TIMEOUT_S, "
                        "SMBCA_TORTURE_BUDGET_S) and was stopped")
    if server_exit is not None:
        problems.append(f"{outcome.server_kind} exited with status {server_exit} during the "
                        f"group; log tail:\n{outcome.server_log_tail}")
    failed = run.names(FAILED)
    unexpected = [name for name in failed if name not in knownfail]
    for name in unexpected:
        detail = run.results[name].detail.splitlines()[:3]
        problems.append(f"{run.results[name].status}: {name}\n    " + "\n    ".join(detail))
    anchor = SMBD_PASS_ANCHOR.get(group)
    if outcome.server_kind == "smbcad" and anchor is not None and len(run.names(PASSED)) < anchor:
        problems.append(f"{len(run.names(PASSED))} passes, fewer than smbd's {anchor} "
                        "(SMBD_PASS_ANCHOR)")
    if not run.results:
        problems.append("smbtorture reported no test results")
    elif run.returncode not in (0, -9) and not failed:
        problems.append(f"smbtorture exited with status {run.returncode} without a failing test")
    if problems:
        listed = [name for name in knownfail if _in_group(name, _lane(group)[0])]
        pytest.fail(f"{group} against {outcome.server_kind}: {len(unexpected)} unexpected failure(s) "
                    f"({len(listed)} known)\n" + "\n".join(problems)
                    + f"\nsmbtorture stderr tail:\n{run.stderr_tail}\n"
                    f"output: {torture_run.out_dir}/{'workers/' if workers else ''}"
                    f"{_lane(group)[0]}.subunit", pytrace=False)
