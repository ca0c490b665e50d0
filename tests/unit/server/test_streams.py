"""Named streams and EAs end to end through the real connection (server/streams.py,
server/eas.py and their hooks in CREATE, READ, WRITE, CLOSE, QUERY_INFO,
SET_INFO and QUERY_DIRECTORY).

The scenarios and statuses are smbtorture's smb2.streams, smb2.setinfo and
smb2.getinfo (source4/torture/smb2/streams.c, setinfo.c, getinfo.c), which
record what Windows answers.  The share is on tmp_path and needs user xattrs.
"""

import struct

import pytest

from smbcad.proto.constants import Command
from smbcad.proto.status import NtStatus
from tests.unit.proto import wire
from tests.unit.server.harness import connected_client, make_server, status_of

OK = NtStatus.SUCCESS
ALL = 0x001F01FF                         # SEC_RIGHTS_FILE_ALL
READ, WRITE, DELETE_ACCESS = 0x1, 0x2, 0x10000
READ_EA, WRITE_EA, READ_ATTRIBUTES = 0x8, 0x10, 0x80
OPEN, CREATE, OPEN_IF, OVERWRITE_IF = 1, 2, 3, 5
DIRECTORY_FILE, NON_DIRECTORY, DELETE_ON_CLOSE = 0x1, 0x40, 0x1000
FILE_INFO, FS_INFO = 1, 2
C_EA, C_FULL_EA, C_STANDARD, C_NAME, C_RENAME, C_DISPOSITION, C_STREAM = 7, 15, 5, 9, 10, 13, 22
SL_RESTART_SCAN, SL_RETURN_SINGLE_ENTRY, SL_INDEX_SPECIFIED = 1, 2, 4
NO_MORE_EAS = 0x80000012


@pytest.fixture
def share(tmp_path):
    path = tmp_path / "share"
    path.mkdir()
    return path


@pytest.fixture
def client(share, tmp_path):
    server = make_server(str(share), str(tmp_path / "state"))
    if not server.find_share("share").fs.user_xattrs():
        pytest.skip("no user xattrs on tmp_path")
    return connected_client(server)


# --- test-side encoders ([MS-SMB2] 2.2.37, 2.2.39; [MS-FSCC] 2.4.16) ---------------------

def full_ea_list(*eas: tuple[str, bytes]) -> bytes:
    out = b""
    for index, (name, value) in enumerate(eas):
        entry = struct.pack("<IBBH", 0, 0, len(name), len(value)) + name.encode() + b"\0" + value
        if index < len(eas) - 1:
            entry += bytes(-len(entry) % 4)
            entry = struct.pack("<I", len(entry)) + entry[4:]
        out += entry
    return out


def get_ea_list(*names: str) -> bytes:
    out = b""
    for index, name in enumerate(names):
        entry = struct.pack("<IB", 0, len(name)) + name.encode() + b"\0"
        if index < len(names) - 1:
            entry += bytes(-len(entry) % 4)
            entry = struct.pack("<I", len(entry)) + entry[4:]
        out += entry
    return out


def parse_full_eas(data: bytes) -> list[tuple[str, bytes]]:
    out, offset = [], 0
    while data:
        next_offset, _, name_len, value_len = struct.unpack_from("<IBBH", data, offset)
        name = data[offset + 8:offset + 8 + name_len].decode()
        value = data[offset + 9 + name_len:offset + 9 + name_len + value_len]
        out.append((name, value))
        if not next_offset:
            return out
        offset += next_offset
    return out


def parse_streams(data: bytes) -> list[tuple[str, int]]:
    out, offset = [], 0
    while data:
        next_offset, name_len, size = struct.unpack_from("<IIq", data, offset)
        out.append((data[offset + 24:offset + 24 + name_len].decode("utf-16-le"), size))
        if not next_offset:
            return out
        offset += next_offset
    return out


def names_listed(reply: bytes) -> list[str]:
    """Names in a FileDirectoryInformation listing ([MS-FSCC] 2.4.10)."""
    offset = struct.unpack_from("<H", reply, 64 + 2)[0]
    names = []
    while True:
        next_offset, name_len = struct.unpack_from("<I", reply, offset)[0], \
            struct.unpack_from("<I", reply, offset + 60)[0]
        names.append(reply[offset + 64:offset + 64 + name_len].decode("utf-16-le"))
        if not next_offset:
            return names
        offset += next_offset


class Handle:
    def __init__(self, client, reply):
        self.client = client
        self.status = status_of(reply)
        self.action = struct.unpack_from("<I", reply, 64 + 4)[0] if self.status == OK else None
        self.end_of_file = (struct.unpack_from("<q", reply, 64 + 48)[0]
                            if self.status == OK else None)
        self.file_id = struct.unpack_from("<QQ", reply, 64 + 64) if self.status == OK else None

    def write(self, offset: int, data: bytes) -> int:
        return status_of(self.client.request(Command.WRITE,
                                             wire.write_request(*self.file_id, offset, data)))

    def read(self, length: int, offset: int = 0) -> tuple[int, bytes]:
        reply = self.client.request(Command.READ, wire.read_request(*self.file_id, length, offset))
        if status_of(reply) != OK:
            return status_of(reply), b""
        data_offset, data_length = struct.unpack_from("<BxI", reply, 64 + 2)
        return OK, reply[data_offset:data_offset + data_length]

    def query(self, info_class: int, info_type: int = FILE_INFO, input_buffer: bytes = b"",
              flags: int = 0, index: int = 0, length: int = 65536) -> tuple[int, bytes]:
        body = struct.pack("<HBBIHHIII", 41, info_type, info_class, length,
                           0x68 if input_buffer else 0, 0, len(input_buffer), index, flags)
        body += wire.file_id_bytes(*self.file_id) + (input_buffer or b"\0")
        reply = self.client.request(Command.QUERY_INFO, body)
        offset, size = struct.unpack_from("<HI", reply, 64 + 2)
        return status_of(reply), reply[offset:offset + size] if size else b""

    def set(self, info_class: int, buffer: bytes) -> int:
        body = struct.pack("<HBBIHHI", 33, FILE_INFO, info_class, len(buffer), 0x60, 0, 0)
        body += wire.file_id_bytes(*self.file_id) + buffer
        return status_of(self.client.request(Command.SET_INFO, body))

    def rename(self, name: str, replace: bool = False) -> int:
        raw = name.encode("utf-16-le")
        return self.set(C_RENAME, struct.pack("<B7xQI", replace, 0, len(raw)) + raw)

    def close(self) -> int:
        return status_of(self.client.request(Command.CLOSE, wire.close_request(*self.file_id)))


def open_(client, name: str, *, access: int = ALL, share: int = 7, disposition: int = OPEN_IF,
          options: int = 0, contexts: bytes = b"") -> Handle:
    return Handle(client, client.request(Command.CREATE, wire.create_request(
        name, contexts, access=access, share=share, disposition=disposition, options=options)))


def unlink(client, name: str) -> int:
    handle = open_(client, name, access=DELETE_ACCESS, disposition=OPEN, options=DELETE_ON_CLOSE)
    return handle.status if handle.status != OK else handle.close()


# --- streams -------------------------------------------------------------------------------

def test_stream_of_a_missing_file_creates_both(client, share):
    stream = open_(client, "f.txt:Stream One", disposition=CREATE)
    assert (stream.status, stream.action) == (OK, 2)
    assert stream.write(0, b"test data") == OK and stream.write(5, b"MORE DATA ") == OK
    assert stream.read(100) == (OK, b"test MORE DATA ")
    assert (share / "f.txt").read_bytes() == b""
    assert stream.close() == OK
    again = open_(client, "f.txt:STREAM ONE:$DaTa", disposition=OPEN)
    assert (again.status, again.action, again.end_of_file) == (OK, 1, 15)
    status, data = again.query(C_STREAM)
    assert status == OK and parse_streams(data) == [("::$DATA", 0), (":Stream One:$DATA", 15)]
    status, data = again.query(C_STANDARD)
    assert status == OK and struct.unpack_from("<qq", data) == (4096, 15)
    status, data = again.query(C_NAME)
    assert data[4:].decode("utf-16-le") == "\\f.txt:Stream One"
    again.close()


def test_missing_stream_and_bad_names(client, share):
    (share / "f").write_bytes(b"")
    assert open_(client, "f:nope", disposition=OPEN).status == NtStatus.OBJECT_NAME_NOT_FOUND
    assert open_(client, "f:s:$FOO").status == NtStatus.OBJECT_NAME_INVALID
    assert open_(client, "f:").status == NtStatus.OBJECT_NAME_INVALID
    assert open_(client, "f:s/x").status == NtStatus.OBJECT_NAME_INVALID
    assert open_(client, "f:s\\").status == NtStatus.OBJECT_NAME_INVALID
    assert open_(client, "nofile:s", disposition=OPEN).status == NtStatus.OBJECT_NAME_NOT_FOUND


def test_directory_streams(client, share):
    (share / "d").mkdir()
    assert open_(client, "d::$DATA").status == NtStatus.FILE_IS_A_DIRECTORY
    assert open_(client, "d::$DATA", options=DIRECTORY_FILE).status == NtStatus.NOT_A_DIRECTORY
    assert open_(client, "new:s", options=DIRECTORY_FILE,
                 disposition=CREATE).status == NtStatus.NOT_A_DIRECTORY
    stream = open_(client, "d:s", disposition=CREATE)
    assert stream.status == OK and stream.write(0, b"x") == OK
    stream.close()
    directory = open_(client, "d", disposition=OPEN)
    assert parse_streams(directory.query(C_STREAM)[1]) == [(":s:$DATA", 1)]
    listing = client.request(Command.QUERY_DIRECTORY, wire.query_directory_request(
        *directory.file_id, info_class=1))
    assert status_of(listing) == OK and names_listed(listing) == [".", ".."]    # no streams
    directory.close()


def test_share_modes_are_per_stream(client, share):
    one = open_(client, "f:one", access=WRITE, share=0, disposition=CREATE)
    two = open_(client, "f:two", access=WRITE, share=0, disposition=CREATE)
    assert one.status == OK and two.status == OK
    assert open_(client, "f:ONE", access=WRITE, share=0).status == NtStatus.SHARING_VIOLATION
    base = open_(client, "f", access=WRITE, share=0)
    assert base.status == OK
    for handle in (one, two, base):
        handle.close()


def test_delete_of_a_file_with_open_streams(client, share):
    stream = open_(client, "f:s", share=0, disposition=CREATE)
    stream.write(0, b"test data")
    assert unlink(client, "f") == NtStatus.SHARING_VIOLATION
    assert open_(client, "f", access=DELETE_ACCESS).status == NtStatus.SHARING_VIOLATION
    stream.close()
    stream = open_(client, "f:s", access=READ | WRITE, share=7)
    assert unlink(client, "f") == OK
    assert stream.read(9) == (OK, b"test data")
    assert open_(client, "f").status == NtStatus.DELETE_PENDING
    assert open_(client, "f:s").status == NtStatus.DELETE_PENDING
    assert (share / "f").exists()
    stream.close()
    assert not (share / "f").exists()
    assert open_(client, "f", disposition=OPEN).status == NtStatus.OBJECT_NAME_NOT_FOUND


def test_delete_on_close_of_a_stream_removes_only_it(client, share):
    (share / "f").write_bytes(b"keep")
    open_(client, "f:s", disposition=CREATE).close()
    assert unlink(client, "f:s") == OK
    assert open_(client, "f:s", disposition=OPEN).status == NtStatus.OBJECT_NAME_NOT_FOUND
    assert (share / "f").read_bytes() == b"keep"
    stream = open_(client, "f:t", disposition=CREATE)
    assert stream.set(C_DISPOSITION, b"\x01") == OK
    stream.close()
    base = open_(client, "f", disposition=OPEN)
    assert parse_streams(base.query(C_STREAM)[1]) == [("::$DATA", 4)]
    base.close()


def test_stream_rename(client, share):
    open_(client, "f:Stream One", disposition=CREATE).close()
    second = open_(client, "f:Second Stream", disposition=CREATE)
    second.write(0, b"data")
    assert second.rename(":Stream One") == NtStatus.OBJECT_NAME_COLLISION
    assert second.rename(":Stream One", replace=True) == OK          # empty target replaced
    assert second.rename(":x:$FOO") == NtStatus.OBJECT_TYPE_MISMATCH
    assert second.rename(":bad:") == NtStatus.INVALID_PARAMETER
    assert parse_streams(second.query(C_STREAM)[1]) == [("::$DATA", 0), (":Stream One:$DATA", 4)]
    assert second.write(4, b"!") == OK
    second.close()
    assert open_(client, "f:Stream One", disposition=OPEN).read(10)[1] == b"data!"


def test_stream_rename_with_a_path(client, share):
    (share / "d").mkdir()
    held = open_(client, "d", options=DIRECTORY_FILE)          # SEC_RIGHTS_DIR_ALL: DELETE
    stream = open_(client, "d\\f:one", disposition=CREATE)
    assert stream.rename("d\\f:two") == NtStatus.SHARING_VIOLATION   # [MS-FSA] <185>
    held.close()
    assert stream.rename("d\\f:two") == OK
    assert stream.rename("d\\g") == NtStatus.INVALID_PARAMETER
    stream.close()


def test_stream_rename_onto_the_default_stream(client, share):
    stream = open_(client, "f:s", disposition=CREATE)
    stream.write(0, b"moved")
    assert stream.rename("::$DATA") == NtStatus.OBJECT_NAME_COLLISION
    assert stream.rename("::$DATA", replace=True) == OK
    assert stream.read(10) == (OK, b"moved")
    stream.close()
    assert (share / "f").read_bytes() == b"moved"


def test_file_with_open_streams_cannot_be_renamed(client, share):
    stream = open_(client, "f:s", disposition=CREATE)
    base = open_(client, "f", disposition=OPEN)
    assert base.rename("g") == NtStatus.ACCESS_DENIED
    stream.close()
    assert base.rename("g") == OK
    base.close()


def test_overwrite_drops_the_streams(client, share):
    open_(client, "f:Stream One:$DATA", disposition=CREATE).close()
    base = open_(client, "f", disposition=OVERWRITE_IF)
    assert (base.status, base.action) == (OK, 3)
    assert parse_streams(base.query(C_STREAM)[1]) == [("::$DATA", 0)]
    base.close()


def test_stream_times_and_attributes_are_the_files(client, share):
    stream = open_(client, "f:s", disposition=CREATE)
    base = open_(client, "f", disposition=OPEN)
    basic = struct.pack("<qqqqI4x", 0, 0, 0, 0, 0x1 | 0x20)       # READONLY | ARCHIVE
    assert stream.set(4, basic) == OK
    status, data = base.query(4)
    assert status == OK and struct.unpack_from("<I", data, 32)[0] == 0x21
    stream.close()
    base.close()


# --- EAs -------------------------------------------------------------------------------------

def test_create_with_eas_and_query_them(client, share):
    eas = full_ea_list(("EAONE", b"VALUE1"), ("SecondEA", b"ValueTwo"))
    handle = open_(client, "f", disposition=OVERWRITE_IF,
                   contexts=wire.context_chain((b"ExtA", eas)))
    assert handle.status == OK
    status, data = handle.query(C_FULL_EA, flags=SL_RESTART_SCAN)
    assert status == OK
    assert parse_full_eas(data) == [("EAONE", b"VALUE1"), ("SecondEA", b"ValueTwo")]
    status, data = handle.query(C_EA)
    assert status == OK and struct.unpack("<I", data) == (41,)
    status, data = handle.query(C_FULL_EA, input_buffer=get_ea_list("secondea", "missing"))
    assert parse_full_eas(data) == [("SecondEA", b"ValueTwo"), ("missing", b"")]
    handle.close()


def test_ea_enumeration_by_index(client, share):
    (share / "f").write_bytes(b"")
    handle = open_(client, "f", disposition=OPEN)
    assert handle.query(C_FULL_EA)[0] == NtStatus.NO_EAS_ON_FILE
    assert handle.set(C_FULL_EA, full_ea_list(("A", b"1"), ("B", b"2"), ("C", b"3"))) == OK
    assert handle.query(C_FULL_EA, flags=SL_RETURN_SINGLE_ENTRY) == (OK, full_ea_list(("A", b"1")))
    assert parse_full_eas(handle.query(C_FULL_EA)[1]) == [("B", b"2"), ("C", b"3")]
    assert handle.query(C_FULL_EA)[0] == NO_MORE_EAS
    status, data = handle.query(C_FULL_EA, flags=SL_INDEX_SPECIFIED, index=3)
    assert (status, parse_full_eas(data)) == (OK, [("C", b"3")])
    assert handle.query(C_FULL_EA, flags=SL_INDEX_SPECIFIED,
                        index=4)[0] == NtStatus.NONEXISTENT_EA_ENTRY
    status, data = handle.query(C_FULL_EA, flags=SL_RESTART_SCAN, length=24)
    assert (status, parse_full_eas(data)) == (NtStatus.BUFFER_OVERFLOW, [("A", b"1"), ("B", b"2")])
    assert handle.query(C_FULL_EA, flags=SL_RESTART_SCAN, length=4)[0] == NtStatus.BUFFER_TOO_SMALL
    handle.close()


def test_set_ea_empty_value_deletes(client, share):
    (share / "f").write_bytes(b"")
    handle = open_(client, "f", disposition=OPEN)
    assert handle.set(C_FULL_EA, full_ea_list(("NewEA", b"testme"))) == OK
    status, data = handle.query(C_FULL_EA, flags=SL_RESTART_SCAN)
    assert parse_full_eas(data) == [("NewEA", b"testme")]
    assert handle.set(C_FULL_EA, full_ea_list(("NEWEA", b""))) == OK
    assert handle.set(C_FULL_EA, full_ea_list(("ZeroEA", b""))) == OK
    assert handle.query(C_FULL_EA, flags=SL_RESTART_SCAN)[0] == NtStatus.NO_EAS_ON_FILE
    assert handle.set(C_FULL_EA, full_ea_list(("bad:name", b"x"))) == 0x80000013   # INVALID_EA_NAME
    handle.close()


def test_ea_access_checks(client, share):
    (share / "f").write_bytes(b"")
    handle = open_(client, "f", access=READ | READ_ATTRIBUTES, disposition=OPEN)
    assert handle.query(C_FULL_EA)[0] == NtStatus.ACCESS_DENIED
    assert handle.set(C_FULL_EA, full_ea_list(("A", b"1"))) == NtStatus.ACCESS_DENIED
    handle.close()


def test_bad_ext_a_creates_nothing(client, share):
    bad = struct.pack("<IBBH", 0, 0, 3, 1) + b"A:B\0x"
    assert open_(client, "f", disposition=CREATE, contexts=wire.context_chain(
        (b"ExtA", bad))).status == 0x80000013
    assert not (share / "f").exists()
    assert open_(client, "f", disposition=CREATE, options=0x200, contexts=wire.context_chain(
        (b"ExtA", full_ea_list(("A", b"1"))))).status == NtStatus.ACCESS_DENIED


def test_directory_listing_reports_ea_size(client, share):
    eas = full_ea_list(("EAONE", b"VALUE1"))
    open_(client, "f", disposition=CREATE, contexts=wire.context_chain((b"ExtA", eas))).close()
    root = open_(client, "", access=0x00100081, options=0)
    listing = client.request(Command.QUERY_DIRECTORY, wire.query_directory_request(
        *root.file_id, pattern="f", info_class=2))          # FileFullDirectoryInformation
    assert status_of(listing) == OK
    offset = struct.unpack_from("<H", listing, 64 + 2)[0]
    assert struct.unpack_from("<I", listing, offset + 64)[0] == 20
    root.close()


def test_fs_attributes_advertise_streams_and_eas(client):
    root = open_(client, "", access=0x00100081)
    status, data = root.query(5, info_type=FS_INFO)                  # FileFsAttributeInformation
    assert status == OK and struct.unpack_from("<I", data)[0] & 0x00840000 == 0x00840000
    root.close()
