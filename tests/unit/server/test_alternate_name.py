"""FileAlternateNameInformation ([MS-FSCC] 2.4.5, QUERY_INFO class 21): a
name that is valid 8.3 is its own short name, answered without reading the
directory; a long name gets a generated one, unique among its siblings."""

import struct

from smbcad.proto.fscc import short_names
from smbcad.vfs import short_name_cache

from smbcad.proto.constants import Command
from smbcad.proto.status import NtStatus
from tests.unit.proto import wire
from tests.unit.server.harness import connected_client, make_server, status_of

FILE_INFO, ALTERNATE_NAME = 1, 21


def _alternate_name(client, name: str) -> str:
    created = client.request(Command.CREATE, wire.create_request(name, disposition=3))
    assert status_of(created) == NtStatus.SUCCESS
    file_id = struct.unpack_from("<QQ", created, 64 + 64)
    body = struct.pack("<HBBIHHIII", 41, FILE_INFO, ALTERNATE_NAME, 4096, 0, 0, 0, 0, 0)
    reply = client.request(Command.QUERY_INFO, body + wire.file_id_bytes(*file_id) + b"\0")
    assert status_of(reply) == NtStatus.SUCCESS
    offset, size = struct.unpack_from("<HI", reply, 64 + 2)
    length = struct.unpack_from("<I", reply, offset)[0]
    return reply[offset + 4:offset + 4 + length].decode("utf-16-le")


def test_an_8dot3_name_is_answered_without_listing_the_directory(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    for index in range(50):
        (share / f"a long neighbour name {index}.txt").touch()
    server = make_server(str(share), str(tmp_path / "state"))
    fs = server.find_share("share").fs
    listed = []
    siblings = fs.sibling_short_names
    fs.sibling_short_names = lambda path: listed.append(path) or siblings(path)
    client = connected_client(server)
    assert _alternate_name(client, "REPORT.TXT") == "REPORT.TXT"
    assert listed == []
    short = _alternate_name(client, "a long new name.txt")
    assert listed == ["a long new name.txt"]
    # 50 siblings share its first letters: past four ~N, a hash form (as NTFS)
    assert "~" in short and short.endswith(".TXT") and len(short) <= 12, short


def test_a_large_directory_s_map_is_kept_and_matches_the_listing(tmp_path, monkeypatch):
    """The name is the one QUERY_DIRECTORY's "Both" classes show (both come
    from the share's kept map), and asking again in an unchanged directory
    of 300 names does not compute the map again."""
    share = tmp_path / "share"
    share.mkdir()
    names = [f"a long neighbour name {index}.txt" for index in range(300)]
    for name in names:
        (share / name).touch()
    computed = []
    monkeypatch.setattr(short_name_cache, "short_names",
                        lambda names: computed.append(len(names)) or short_names(names))
    server = make_server(str(share), str(tmp_path / "state"))
    client = connected_client(server)
    first = _alternate_name(client, names[7])
    assert first == short_names(names)[names[7]]
    assert computed == [302]                    # the names, "." and ".."
    assert _alternate_name(client, names[7]) == first
    assert _alternate_name(client, names[8]) == short_names(names)[names[8]]
    assert computed == [302]
