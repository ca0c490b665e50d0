"""Renames across worker processes (``--workers 2``, docs/multicore.md):
what one worker's rename means for another worker's opens.

* A directory is not renamed while a file below it is open, whichever
  worker holds that open ([MS-FSA] 2.1.5.15.12: STATUS_ACCESS_DENIED, as
  Windows and smbd answer; the renaming worker asks the others with
  OpensBelow).
* A file renamed through one worker while another worker's client has it
  open: that open lives at the new name there too (the renaming worker's
  Renamed, answered before the SET_INFO is): the admin listing shows it,
  FileNameInformation through it gives the new name, and its
  delete-on-close removes the file under its new name.
* A persistent open so renamed is stored under its new name by its own
  worker: killed with SIGKILL, that worker's successor restores it there,
  and the owner's DH2C gets the same FileId.

Clients are smbprotocol connections whose ClientGuids the routing hash puts
on worker 0 and worker 1 (``guid_for``).
"""

import os
import signal
import struct
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.exceptions import SMBResponseException  # noqa: E402
from smbprotocol.header import Commands  # noqa: E402
from smbprotocol.open import (  # noqa: E402
    CreateDisposition,
    CreateOptions,
    FilePipePrinterAccessMask,
    SMB2QueryInfoRequest,
    SMB2QueryInfoResponse,
)

from persistent_client import RawBody, dh2c_context, dh2q_context  # noqa: E402
from servers import start_smbcad  # noqa: E402
from test_workers import (  # noqa: E402, F401 (ca_server: the fixture)
    SHARE_ALL, WAIT_S, Client, ca_server, control, guid_for, persistent_open,
    wait_for_successor, worker_pids)

STATUS_ACCESS_DENIED = 0xC0000022
FILE_RENAME_INFORMATION = 10          # [MS-FSCC] 2.4.42
FILE_NAME_INFORMATION = 9             # [MS-FSCC] 2.4.32
FILE_DISPOSITION_INFORMATION = 13
DIRECTORY_ACCESS = (FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES
                    | FilePipePrinterAccessMask.DELETE | FilePipePrinterAccessMask.SYNCHRONIZE)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_smbcad(tmp_path_factory.mktemp("workers-renames"),
                           extra_args=["--workers", "2"])
    yield running
    running.stop()


def set_info(client: Client, handle, info_class: int, buffer: bytes) -> int:
    """SET_INFO of a file information class ([MS-SMB2] 2.2.39): its status."""
    body = struct.pack("<HBBIHHI16s", 33, 1, info_class, len(buffer), 96, 0, 0,
                       handle.file_id) + buffer
    request = client.connection.send(RawBody(Commands.SMB2_SET_INFO, body),
                                     sid=client.session.session_id,
                                     tid=client.tree.tree_connect_id)
    try:
        return client.connection.receive(request, timeout=WAIT_S)["status"].get_value()
    except SMBResponseException as failure:
        return failure.status


def rename(client: Client, handle, target: str) -> int:
    """FILE_RENAME_INFORMATION_TYPE_2: ReplaceIfExists 0, RootDirectory 0."""
    name = target.encode("utf-16-le")
    return set_info(client, handle, FILE_RENAME_INFORMATION,
                    struct.pack("<B7xQI", 0, 0, len(name)) + name)


def name_of(client: Client, handle) -> str:
    """FileNameInformation through ``handle``."""
    request = SMB2QueryInfoRequest()
    request["info_type"] = 1
    request.fields["file_info_class"].enum_strict = False
    request["file_info_class"] = FILE_NAME_INFORMATION
    request["output_buffer_length"] = 4096
    request["file_id"] = handle.file_id
    response = SMB2QueryInfoResponse()
    response.unpack(client.connection.receive(client.connection.send(
        request, sid=client.session.session_id, tid=client.tree.tree_connect_id),
        timeout=WAIT_S)["data"].get_value())
    buffer = response["buffer"].get_value()
    length = struct.unpack_from("<I", buffer)[0]
    return buffer[4:4 + length].decode("utf-16-le")


def opens_by_worker(server) -> dict:
    return {(entry["worker"], entry["path"]) for entry in control(server, "opens")["opens"]}


def test_a_directory_with_a_file_open_below_through_another_worker_is_not_renamed(server):
    (server.share.path / "project").mkdir()
    (server.share.path / "project" / "inner.bin").write_bytes(b"inside")
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    try:
        inner = first.open("project\\inner.bin", disposition=CreateDisposition.FILE_OPEN)
        directory = second.open("project", disposition=CreateDisposition.FILE_OPEN,
                                options=CreateOptions.FILE_DIRECTORY_FILE,
                                access=DIRECTORY_ACCESS)
        assert rename(second, directory, "project-renamed") == STATUS_ACCESS_DENIED
        assert (server.share.path / "project" / "inner.bin").read_bytes() == b"inside"
        inner.close()
        assert rename(second, directory, "project-renamed") == 0
        directory.close()
        assert (server.share.path / "project-renamed" / "inner.bin").read_bytes() == b"inside"
        assert not (server.share.path / "project").exists()
    finally:
        first.close()
        second.close()


def test_an_open_on_another_worker_follows_a_rename_and_deletes_under_the_new_name(server):
    (server.share.path / "before.bin").write_bytes(b"data")
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    try:
        kept = first.open("before.bin", disposition=CreateDisposition.FILE_OPEN)
        mover = second.open("before.bin", disposition=CreateDisposition.FILE_OPEN)
        assert rename(second, mover, "after.bin") == 0
        # answered only once worker 0's open lives at the new name
        assert (0, "after.bin") in opens_by_worker(server)
        assert (0, "before.bin") not in opens_by_worker(server)
        assert name_of(first, kept) == "\\after.bin"
        mover.close()
        assert set_info(first, kept, FILE_DISPOSITION_INFORMATION, b"\x01") == 0
        kept.close()
        assert not (server.share.path / "after.bin").exists()
        assert not (server.share.path / "before.bin").exists()
    finally:
        first.close()
        second.close()


def test_a_renamed_directory_moves_the_opens_of_its_lease_holder_on_another_worker(server):
    """The directory itself open through both workers (nothing below it):
    the rename through worker 1 moves worker 0's open of it."""
    (server.share.path / "olddir").mkdir()
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    try:
        watcher = first.open("olddir", disposition=CreateDisposition.FILE_OPEN,
                             options=CreateOptions.FILE_DIRECTORY_FILE,
                             access=FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES)
        directory = second.open("olddir", disposition=CreateDisposition.FILE_OPEN,
                                options=CreateOptions.FILE_DIRECTORY_FILE,
                                access=DIRECTORY_ACCESS)
        assert rename(second, directory, "newdir") == 0
        assert (0, "newdir") in opens_by_worker(server)
        assert name_of(first, watcher) == "\\newdir"
        directory.close()
        watcher.close()
    finally:
        first.close()
        second.close()


def test_a_persistent_open_renamed_through_another_worker_is_restored_under_its_new_name(
        ca_server):
    owner_guid, create_guid = guid_for(0), uuid.uuid4()
    owner, other = Client(ca_server, owner_guid), Client(ca_server, guid_for(1))
    try:
        handle = persistent_open(owner, "disk.vhdx", [dh2q_context(create_guid, 60_000)],
                                 share=SHARE_ALL)
        file_id = handle.file_id
        handle.write(b"before the rename", 0)
        mover = other.open("disk.vhdx", disposition=CreateDisposition.FILE_OPEN)
        assert rename(other, mover, "disk-moved.vhdx") == 0
        mover.close()
        before = worker_pids(ca_server)
        os.kill(before[0], signal.SIGKILL)
        wait_for_successor(ca_server, 0, before[0])
        opens = control(ca_server, "opens")["opens"]
        assert [(o["worker"], o["path"].lstrip("\\/")) for o in opens] == \
            [(0, "disk-moved.vhdx")], (opens, ca_server.log_tail(40))

        back = Client(ca_server, owner_guid)
        try:
            again = persistent_open(back, "disk-moved.vhdx",
                                    [dh2c_context(file_id, create_guid)], share=SHARE_ALL)
            assert again.file_id[:8] == file_id[:8]
            assert again.read(0, 17) == b"before the rename"
            again.close()
        finally:
            back.close()
    finally:
        other.close()
        owner.close_after_kill()
