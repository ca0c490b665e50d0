"""The Linux kernel SMB client on several channels of one session (issue 13,
"How it is shown", second bullet).  Run from the host by
tests/lab/test_cifs_multichannel.py.

  1. smbcad in nodeB listens on both of the pair's links (198.51.100.2 and
     192.0.2.2, port 445); FSCTL_QUERY_NETWORK_INTERFACE_INFO lists both.
  2. nodeA's kernel mounts //198.51.100.2/share with
     ``vers=3.1.1,multichannel,max_channels=4,hard``; the client binds more
     channels over the addresses the server listed, and DebugData shows them.
  3. A paced O_DIRECT writer (every write an SMB2 WRITE, spread over the
     channels) runs while link 1 is cut (both ends down, no RST) for
     ``CUT_S`` seconds and restored.
  4. The writer exits 0; the data is correct through the mount and in the
     share directory; DebugData still shows several channels.

Results come out as ``cifs-multichannel: ...`` lines.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import guestlab
from cifs_client import CHUNK, first_mismatch, read_direct, read_progress, run, unmount
from cifs_writer import pattern

SHARE, USER, PASSWORD = "share", "labuser", "Lab-Pass-1"
FILE_NAME = "multichannel.bin"
SIZE = 24 << 20
SEED = 13
PAUSE_S = 0.25                 # between writes: the writer spans the cut
CUT_AFTER = 4                  # writes acknowledged before link 1 goes down
CUT_S = 5
START_S = 120
WRITE_S = 300
WRITER = Path(__file__).with_name("cifs_writer.py")
DEBUG_DATA = Path("/proc/fs/cifs/DebugData")


def say(text: str) -> None:
    print(f"cifs-multichannel: {text}", flush=True)


def channel_count() -> int:
    """Channels of the mount's session in DebugData: the primary plus the
    "Extra Channels" the client bound."""
    found = re.search(r"Extra Channels:\s*(\d+)", DEBUG_DATA.read_text())
    return 1 + int(found.group(1)) if found else 1


def test_kernel_client_writes_over_channels_through_a_cut_link(nodes, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    log = tmp_path / "smbcad.log"
    point = tmp_path / "mnt"
    point.mkdir()
    progress = tmp_path / "progress"
    addresses = [nodes.address("B", link) for link in (0, 1)]
    writer = None
    mounted = False
    with open(log, "wb") as out:
        server = nodes.popen("B", [sys.executable, "-m", "smbcad",
                                   *(arg for addr in addresses for arg in ("--listen", f"{addr}:445")),
                                   "--share", f"{SHARE}={share}",
                                   "--state-dir", str(tmp_path / "state"),
                                   "--user", f"{USER}:{PASSWORD}"],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        guestlab.wait_for(lambda: server.poll() is not None
                          or "smbcad: listening on" in log.read_text(errors="replace"),
                          START_S, interval_s=0.2, what="smbcad to listen")
        assert server.poll() is None, log.read_text(errors="replace")[-4000:]
        run(*nodes.argv("A", "mount", "-t", "cifs", f"//{addresses[0]}/{SHARE}", str(point),
                        "-o", f"vers=3.1.1,multichannel,max_channels=4,hard,"
                              f"username={USER},password={PASSWORD}"))
        mounted = True
        guestlab.wait_for(lambda: channel_count() > 1, 60, interval_s=0.5,
                          what="the client to bind a second channel")
        say(f"mounted //{addresses[0]}/{SHARE} with multichannel,max_channels=4: "
            f"{channel_count()} channels in DebugData")

        writer = subprocess.Popen(
            [sys.executable, str(WRITER), "direct", str(point / FILE_NAME), str(SIZE),
             str(CHUNK), str(SEED), str(progress), str(PAUSE_S)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        guestlab.wait_for(lambda: writer.poll() is not None or sum(
            key.isdigit() for key, _ in read_progress(progress)) >= CUT_AFTER,
            WRITE_S, interval_s=0.05, what=f"{CUT_AFTER} writes acknowledged")
        assert writer.poll() is None, writer.stdout.read()
        nodes.cut([1])
        cut_at = time.monotonic()
        time.sleep(CUT_S)
        nodes.heal([1])
        say(f"link 1 ({addresses[1]}) cut for {CUT_S} s and restored while the writer ran")
        out, _ = writer.communicate(timeout=WRITE_S)
        assert writer.returncode == 0, f"writer exit {writer.returncode}:\n{out.decode()}"
        done = [at for key, at in read_progress(progress) if key.isdigit()]
        longest = max(b - a for a, b in zip(done, done[1:]))
        say(f"writer: {SIZE // CHUNK} x 1 MiB O_DIRECT writes, fsync, close: exit 0, "
            f"{time.monotonic() - cut_at:.1f} s after the cut; longest pause between "
            f"acknowledged writes {longest:.1f} s")
        run("sync")
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        want = pattern(SIZE, SEED)
        results = {"mount O_DIRECT": first_mismatch(read_direct(point / FILE_NAME), want),
                   "share directory": first_mismatch((share / FILE_NAME).read_bytes(), want)}
        assert set(results.values()) == {"identical"}, results
        channels = channel_count()
        assert channels > 1, DEBUG_DATA.read_text()
        say(f"data correct through the mount (O_DIRECT) and in the share directory; "
            f"{channels} channels in DebugData at the end")
        binds = len(re.findall(r"channel \d+ of session [0-9a-f]+ bound",
                               log.read_text(errors="replace")))
        say(f"smbcad's log: {binds} channel bind(s)")
    except BaseException:
        print("---- DebugData ----\n" + (DEBUG_DATA.read_text() if DEBUG_DATA.exists() else ""))
        print(f"---- smbcad log (tail) ----\n{log.read_text(errors='replace')[-6000:]}")
        print("---- dmesg (tail) ----\n" + "\n".join(run("dmesg").stdout.splitlines()[-40:]))
        raise
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)
        if mounted:
            unmount(point)
        nodes.kill(server, wait_s=30)
