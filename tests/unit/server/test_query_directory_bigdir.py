"""QUERY_DIRECTORY in large directories (issue 14 item 5): what grows with
the directory is done only when the query needs it.

A real server on 127.0.0.1, raw-socket clients; the share's ShareFs and the
short-name function are wrapped to count what a query made them do.
"""

import struct
from pathlib import Path

import pytest

from smbcad.proto.constants import Command
from smbcad.proto.status import NtStatus
from smbcad.vfs import short_name_cache
from tests.unit.proto import wire
from tests.unit.server import harness
from tests.unit.server.loopback import FILE_DIRECTORY_FILE, LoopbackServer, SocketClient

FILE_DIRECTORY = 0x01
FILE_BOTH_DIRECTORY = 0x03
FILE_ID_BOTH_DIRECTORY = 0x25
ENTRIES = 400


@pytest.fixture
def dirs(tmp_path):
    share = tmp_path / "share"
    (share / "big").mkdir(parents=True)
    for index in range(ENTRIES):
        (share / "big" / f"Long Entry Name {index:05d}.data").touch()
    (share / "big" / "SHORT.TXT").touch()
    return str(share), str(tmp_path / "state")


def _count(monkeypatch, obj, name: str) -> list:
    original = getattr(obj, name)
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)
    monkeypatch.setattr(obj, name, counted)
    return calls


def _entries(reply: bytes, name_offset: int, short_offset: int | None = None) -> list:
    """(name, short name) of each entry of a QUERY_DIRECTORY response."""
    offset, length = struct.unpack_from("<HI", reply, 64 + 2)
    data = reply[offset:offset + length]
    found, at = [], 0
    while True:
        next_entry = struct.unpack_from("<I", data, at)[0]
        name_length = struct.unpack_from("<I", data, at + 60)[0]
        name = data[at + name_offset:at + name_offset + name_length].decode("utf-16-le")
        short = ""
        if short_offset is not None:
            short_length = data[at + short_offset]
            short = data[at + short_offset + 2:at + short_offset + 2 + short_length].decode(
                "utf-16-le")
        found.append((name, short))
        if not next_entry:
            return found
        at += next_entry


def _query(client, handle, pattern="*", info_class=FILE_ID_BOTH_DIRECTORY, flags=0,
           output=65536):
    return client.answer(client.send_request(Command.QUERY_DIRECTORY, wire.query_directory_request(
        *handle, pattern=pattern, info_class=info_class, flags=flags,
        output_buffer_length=output)))


def test_a_pattern_without_wildcards_is_a_lookup_not_a_listing(dirs, monkeypatch):
    with LoopbackServer(*dirs) as srv:
        client = SocketClient(srv.port).login()
        fs = srv.server.shares["share"].fs
        listings = _count(monkeypatch, fs, "list_names")
        big = client.create("big", options=FILE_DIRECTORY_FILE, disposition=1)
        reply = _query(client, big, "short.txt", FILE_DIRECTORY)
        assert harness.status_of(reply) == NtStatus.SUCCESS
        assert _entries(reply, 64) == [("SHORT.TXT", "")]         # its spelling on disk
        reply = _query(client, big, "LONG ENTRY NAME 00007.DATA", FILE_DIRECTORY,
                       flags=0x01)                                 # RESTART_SCANS
        assert _entries(reply, 64) == [("Long Entry Name 00007.data", "")]
        assert harness.status_of(_query(client, big, "LONG ENTRY NAME 00007.DATA",
                                        FILE_DIRECTORY)) == NtStatus.NO_MORE_FILES
        reply = _query(client, big, "absent.txt", FILE_DIRECTORY, flags=0x01)
        assert harness.status_of(reply) == NtStatus.NO_SUCH_FILE
        assert listings == []
        client.close()


def test_short_names_only_for_the_classes_that_carry_them(dirs, monkeypatch):
    with LoopbackServer(*dirs) as srv:
        client = SocketClient(srv.port).login()
        shorts = _count(monkeypatch, short_name_cache, "short_names")
        big = client.create("big", options=FILE_DIRECTORY_FILE, disposition=1)
        names = []
        reply = _query(client, big, "*", FILE_DIRECTORY)
        while harness.status_of(reply) == NtStatus.SUCCESS:
            names += [name for name, _ in _entries(reply, 64)]
            reply = _query(client, big, "*", FILE_DIRECTORY)
        assert len(names) == ENTRIES + 3 and shorts == []
        # FileBothDirectoryInformation (2.4.8): ShortNameLength at 68, FileName at 94;
        # computed once for the whole enumeration, not per page.
        both = []
        reply = _query(client, big, "*", FILE_BOTH_DIRECTORY, flags=0x01)
        while harness.status_of(reply) == NtStatus.SUCCESS:
            both += _entries(reply, 94, 68)
            reply = _query(client, big, "*", FILE_BOTH_DIRECTORY)
        assert len(shorts) == 1 and len(both) == ENTRIES + 3
        by_name = dict(both)
        assert by_name["SHORT.TXT"] == "" and by_name["."] == ""
        assert by_name["Long Entry Name 00007.data"].startswith("LO")
        assert by_name["Long Entry Name 00007.data"].endswith(".DAT")
        assert len(set(by_name.values()) - {""}) == ENTRIES       # unique in the directory
        # Listed again unchanged: the share's kept map, not computed again.
        again = _query(client, big, "*", FILE_BOTH_DIRECTORY, flags=0x01)
        assert harness.status_of(again) == NtStatus.SUCCESS and len(shorts) == 1
        assert dict(_entries(again, 94, 68)).items() <= by_name.items()
        # A new name: computed again, and the newcomer has a short name.
        (Path(dirs[0]) / "big" / "Long Entry Name 99999.data").touch()
        newer = []
        reply = _query(client, big, "*", FILE_BOTH_DIRECTORY, flags=0x01)
        while harness.status_of(reply) == NtStatus.SUCCESS:
            newer += _entries(reply, 94, 68)
            reply = _query(client, big, "*", FILE_BOTH_DIRECTORY)
        assert len(shorts) == 2 and dict(newer)["Long Entry Name 99999.data"].startswith("LO")
        client.close()


def test_a_lookup_in_a_both_class_gives_the_listing_s_short_name(dirs):
    with LoopbackServer(*dirs) as srv:
        client = SocketClient(srv.port).login()
        big = client.create("big", options=FILE_DIRECTORY_FILE, disposition=1)
        listed = []
        reply = _query(client, big, "*", FILE_BOTH_DIRECTORY)
        while harness.status_of(reply) == NtStatus.SUCCESS:
            listed += _entries(reply, 94, 68)
            reply = _query(client, big, "*", FILE_BOTH_DIRECTORY)
        expected = dict(listed)["Long Entry Name 00123.data"]
        reply = _query(client, big, "long entry name 00123.DATA", FILE_BOTH_DIRECTORY, flags=0x01)
        assert _entries(reply, 94, 68) == [("Long Entry Name 00123.data", expected)]
        client.close()


def test_a_page_stats_at_most_one_name_more_than_it_returns(dirs, monkeypatch):
    with LoopbackServer(*dirs) as srv:
        client = SocketClient(srv.port).login()
        stats = _count(monkeypatch, srv.server.shares["share"].fs, "entry_info")
        big = client.create("big", options=FILE_DIRECTORY_FILE, disposition=1)
        returned = pages = 0
        reply = _query(client, big, "*", FILE_ID_BOTH_DIRECTORY, output=4096)
        while harness.status_of(reply) == NtStatus.SUCCESS:
            returned += len(_entries(reply, 104))
            pages += 1
            reply = _query(client, big, "*", FILE_ID_BOTH_DIRECTORY, output=4096)
        assert returned == ENTRIES + 3 and pages > 1
        assert len(stats) <= returned + pages
        client.close()
