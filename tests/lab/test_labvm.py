"""Host-side pieces of the lab harness that need no QEMU: console marker
splitting, the newc writer, the PVH note check, the in-guest argv, the
cluster harness's event syntax and timeline."""

import io
import json
import struct
import subprocess
import sys
from types import SimpleNamespace

import pytest

from labvm import cluster, guest_command
from labvm.image import _Newc, has_pvh_note
from labvm.vm import SILENT_STATUS, _Console, _pump

NONCE = "00112233aabbccdd"


def _console(chunks):
    boot, out = io.BytesIO(), io.BytesIO()
    console = _Console(NONCE, boot, out, None)
    for chunk in chunks:
        console.feed(chunk)
    console.flush()
    return console, boot.getvalue(), out.getvalue()


def test_console_splits_at_markers_in_any_chunking():
    stream = (b"kernel chatter\n@@SMBCA-LAB:" + NONCE.encode() + b":START@@\n"
              b"line 1\n@@ not a marker\nline 2\n@@SMBCA-LAB:" + NONCE.encode() +
              b":END:7@@\npower off\n")
    for size in (1, 2, 5, 13, len(stream)):
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        console, boot, out = _console(chunks)
        assert console.status == 7, size
        assert out == b"line 1\n@@ not a marker\nline 2\n", size
        assert boot == b"kernel chatter\n\npower off\n", size


def test_console_fatal_marker_and_foreign_nonce():
    other = b"@@SMBCA-LAB:ffffffffffffffff:END:0@@\n"
    console, boot, out = _console([b"boot\n" + other + b"@@SMBCA-LAB:" + NONCE.encode() +
                                   b":FATAL@@\n"])
    assert console.status is None and console.state == "done"
    assert out == b"" and other in boot


def _guest(tmp_path, script: str) -> int:
    """``_pump`` over a shell playing the guest's console."""
    start = f"@@SMBCA-LAB:{NONCE}:START@@"
    proc = subprocess.Popen(["sh", "-c", f"echo booting; echo '{start}'; {script}"],
                            stdout=subprocess.PIPE)
    console = _Console(NONCE, io.BytesIO(), io.BytesIO(), None)
    try:
        return _pump(proc, console, None, SimpleNamespace(dir=tmp_path), None, silence_s=1.5)
    finally:
        proc.kill()
        proc.wait()


def test_a_silent_guest_is_ended_by_the_silence_bound(tmp_path):
    assert _guest(tmp_path, "echo one line; sleep 60") == SILENT_STATUS


def test_a_guest_that_keeps_talking_runs_past_the_silence_bound(tmp_path):
    end = f"@@SMBCA-LAB:{NONCE}:END:3@@"
    talk = "for i in 1 2 3 4 5 6 7 8; do echo alive $i; sleep 0.5; done"
    assert _guest(tmp_path, f"{talk}; echo '{end}'") == 3


def test_newc_archive_layout():
    archive = _Newc()
    archive.directory("dev")
    archive.chardev("dev/console", 5, 1, 0o600)
    archive.file("init", b"#!/bin/sh\n", 0o755)
    data = archive.finish()
    assert data.startswith(b"070701")
    assert len(data) % 4 == 0
    entries, pos = [], 0
    while True:
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        entries.append((name, oct(fields[1]), (fields[9], fields[10]), data[pos:pos + filesize]))
        pos += filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            break
    assert entries[:3] == [("dev", "0o40755", (0, 0), b""), ("dev/console", "0o20600", (5, 1), b""),
                           ("init", "0o100755", (0, 0), b"#!/bin/sh\n")]


def _elf_with_note(owner: bytes, note_type: int) -> bytes:
    name = owner + b"\0"
    note = struct.pack("<III", len(name), 4, note_type) + name + b"\0" * (-len(name) % 4) + b"\0" * 4
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", header, 0x20, 64)              # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)           # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 120, 0, 0, len(note), len(note), 4)
    return bytes(header) + phdr + note


def test_pvh_note_detection():
    assert has_pvh_note(_elf_with_note(b"Xen", 18))
    assert not has_pvh_note(_elf_with_note(b"Xen", 17))
    assert not has_pvh_note(_elf_with_note(b"GNU", 18))
    assert not has_pvh_note(b"MZ not an elf")


def test_guest_command_forms():
    assert guest_command("print(1)") == [sys.executable, "-c", "print(1)"]
    argv = guest_command(["tests/lab/guest_tests", "-k", "x"], python="/py")
    assert argv[:3] == ["/py", "-m", "pytest"] and argv[-3:] == ["tests/lab/guest_tests", "-k", "x"]


def test_shares_bring_in_paths_the_guest_hides(tmp_path):
    from labvm.vm import REPO_ROOT, LabOptions, _shares

    inner = tmp_path / "results"
    inner.mkdir()
    shares = _shares(LabOptions(writable=(str(inner),), cwd=str(tmp_path)))
    assert [(path, mode) for _tag, path, mode in shares if path != str(REPO_ROOT)] == [
        (str(tmp_path), "ro"), (str(inner), "rw")]          # parents mount first
    assert len({tag for tag, _path, _mode in shares}) == len(shares)


def test_cluster_events_are_checked_before_any_guest_boots():
    assert cluster.parse_event("kill-a@12.5") == ("kill-a", 12.5)
    assert cluster.parse_event("lif-migrate-lif1@0") == ("lif-migrate-lif1", 0.0)
    for bad, says in (("kill-c@3", "EVENT one of"), ("kill-a", "EVENT one of"),
                      ("kill-a@soon", "not a number"), ("giveback@-1", "negative")):
        with pytest.raises(ValueError, match=says):
            cluster.parse_event(bad)
    with pytest.raises(ValueError, match="scsi2 or pr"):
        cluster.cluster_command(["true"], "scsi3", [], "/tmp")


def test_cluster_command_and_timeline_round_trip():
    argv = cluster.cluster_command(["sh", "-c", "x"], "pr", ["kill-a@3", "giveback@9"], "/w",
                                   python="/py")
    assert argv == ["/py", str(cluster.DRIVER), "--mode", "pr", "--workdir", "/w",
                    "--event", "kill-a@3", "--event", "giveback@9", "--", "sh", "-c", "x"]
    timeline = {"mode": "pr", "events": [{"event": "kill-a", "outcome": "ok"}]}
    text = (f"noise\n{cluster.TIMELINE_START}\n{json.dumps(timeline, indent=1)}\n"
            f"{cluster.TIMELINE_END}\nmore noise\n")
    assert cluster.parse_timeline(text) == timeline
    assert cluster.parse_timeline("no timeline here") is None
    assert cluster.parse_timeline(f"{cluster.TIMELINE_START}\n{{broken\n{cluster.TIMELINE_END}") \
        is None
