"""ChannelSequence verification ([MS-SMB2] 3.3.5.2.10) and Open.IsReplayEligible
ending on first use (3.3.5.11-3.3.5.22): the pure rule, then through a real
Connection.

The sequence table is smbtorture's smb2.replay.channel-sequence
(source4/torture/smb2/replay.c, test_channel_sequence_table), which records
what Windows answers; its two random rows are pinned to fixed values here.
"""

import struct

import pytest

from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.header import Smb2Header
from smbcad.proto.status import NtStatus
from smbcad.server.channel_sequence import Counters, completed, difference, verify
from tests.unit.proto import wire
from tests.unit.server.harness import connected_client, make_server, status_of

OK, STALE = NtStatus.SUCCESS, NtStatus.FILE_NOT_AVAILABLE

# (request ChannelSequence, expected WRITE/IOCTL/SET_INFO status), in order,
# starting from an open created with ChannelSequence 0.
TORTURE_TABLE = [
    (0x0000, OK), (0x8000, STALE), (0x8001, STALE), (0xC000, STALE), (0xFFFF, STALE),
    (0x7FFF, OK), (0x7FFE, STALE), (0x0000, STALE), (0x1234, STALE), (0x8000, OK),
    (0xFFFF, OK), (0x0000, OK), (0x0001, OK), (0x0000, STALE), (0x0001, OK),
    (0xFFFF, STALE),
]


def run_table(replay: bool):
    """Each request completes (its response goes) before the next, as in the test."""
    counters = Counters()
    for sequence, expected in TORTURE_TABLE:
        updated = verify(counters, sequence, replay)
        assert (OK if updated is not None else STALE) == expected, hex(sequence)
        if updated is not None:
            assert updated.channel_sequence == sequence and updated.outstanding == 1
            counters = completed(updated, sequence)
            assert (counters.outstanding, counters.outstanding_pre) == (0, 0)


@pytest.mark.parametrize("replay", [False, True])
def test_smbtorture_channel_sequence_table(replay):
    run_table(replay)


def test_difference_is_16_bit_unsigned():
    assert difference(0x0001, 0xFFFF) == 2
    assert difference(0xFFFF, 0x0001) == 0xFFFE
    assert difference(0x7FFF, 0x0000) == 0x7FFF
    assert difference(0x8000, 0x0000) == 0x8000


def test_newer_sequence_moves_the_outstanding_requests_to_pre():
    """Two requests in flight on channel 0, then one arrives on channel 1."""
    counters = verify(verify(Counters(), 0, False), 0, False)
    assert counters == Counters(0, 2, 0)
    counters = verify(counters, 1, False)
    assert counters == Counters(1, 1, 2)
    # The old channel's responses count down the pre-requests, the new one its own.
    counters = completed(counters, 0)
    assert counters == Counters(1, 1, 1)
    counters = completed(counters, 1)
    assert counters == Counters(1, 0, 1)
    counters = completed(counters, 0)
    assert counters == Counters(1, 0, 0)


def test_replay_waits_for_the_old_channel():
    """With the replay flag, outstanding pre-requests refuse the request
    (equal or newer sequence, <273>); without it they do not matter."""
    busy = Counters(1, 0, 1)
    assert verify(busy, 1, True) is None
    assert verify(busy, 2, True) is None
    assert verify(busy, 1, False) == Counters(1, 1, 1)
    assert verify(busy, 2, False) == Counters(2, 1, 1)
    assert verify(Counters(1, 3, 0), 1, True) == Counters(1, 4, 0)
    assert verify(Counters(1, 3, 0), 2, True) == Counters(2, 1, 3)


def test_stale_is_refused_without_touching_the_counts():
    assert verify(Counters(0x7FFF, 1, 0), 0, False) is None
    assert verify(Counters(0x7FFF, 1, 0), 0, True) is None


# --- through a real connection ----------------------------------------------------------

@pytest.fixture
def client(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    return connected_client(make_server(str(share), str(tmp_path / "state")))


def send(client, command: int, body: bytes, sequence: int = 0, replay: bool = False) -> bytes:
    """One signed request with the given ChannelSequence (2.2.1.2) and flags."""
    flags = HeaderFlags.SIGNED | (HeaderFlags.REPLAY_OPERATION if replay else 0)
    msg = bytearray(Smb2Header(command=command, message_id=client.message_id, flags=flags,
                               status=sequence, credits=64, credit_charge=1,
                               session_id=client.session_id, tree_id=client.tree_id).encode()
                    + body)
    client.message_id += 1
    client.signer.sign(msg)
    (reply,) = client.exchange(bytes(msg))
    return reply


def open_file(client, name="f.txt"):
    reply = send(client, Command.CREATE, wire.create_request(name, disposition=5,
                                                             access=0x0012019F))
    assert status_of(reply) == OK
    file_id = struct.unpack_from("<QQ", reply, 64 + 64)
    open_ = client.server.opens.by_persistent_id[file_id[0]]
    return file_id, open_


def position_info(persistent: int, volatile: int) -> bytes:
    """SET_INFO FilePositionInformation (2.2.39) with position 0x1000."""
    data = struct.pack("<Q", 0x1000)
    return struct.pack("<HBBIHHIQQ", 33, 1, 14, len(data), 96, 0, 0,
                       persistent, volatile) + data


def test_stale_write_and_set_info_fail_other_commands_proceed(client):
    file_id, open_ = open_file(client)
    assert status_of(send(client, Command.WRITE, wire.write_request(*file_id, 0, b"x"),
                          sequence=0x7FFF)) == OK
    assert open_.channel_sequence == 0x7FFF
    assert status_of(send(client, Command.WRITE, wire.write_request(*file_id, 0, b"y"),
                          sequence=0)) == STALE
    reply = send(client, Command.READ, wire.read_request(*file_id, 1, 0), sequence=0x7FFF)
    assert status_of(reply) == OK and reply[80:81] == b"x"        # the stale write never ran
    assert status_of(send(client, Command.SET_INFO, position_info(*file_id), sequence=0)) == STALE
    assert open_.position != 0x1000
    # READ with a stale number is served, and counts nothing.
    assert status_of(send(client, Command.READ, wire.read_request(*file_id, 1, 0),
                          sequence=0)) == OK
    assert status_of(send(client, Command.SET_INFO, position_info(*file_id),
                          sequence=0x7FFF, replay=True)) == OK
    assert open_.position == 0x1000
    # every counted request was uncounted when its response went
    assert (open_.outstanding_requests, open_.outstanding_pre_requests) == (0, 0)


def test_use_ends_replay_eligibility_but_close_does_not_count(client):
    file_id, open_ = open_file(client)
    open_.is_replay_eligible = True
    assert status_of(send(client, Command.READ, wire.read_request(*file_id, 0, 0))) == OK
    assert open_.is_replay_eligible is False

    file_id, open_ = open_file(client, "g.txt")
    open_.is_replay_eligible = True
    assert status_of(send(client, Command.CLOSE, wire.close_request(*file_id))) == OK
    assert open_.is_replay_eligible is True


def test_replay_flag_on_ordinary_commands_just_works(client):
    """smb2.replay.replay-commands: the flag alone changes nothing."""
    file_id, _ = open_file(client)
    for command, body in ((Command.WRITE, wire.write_request(*file_id, 0, b"abc")),
                          (Command.READ, wire.read_request(*file_id, 3, 0)),
                          (Command.SET_INFO, position_info(*file_id)),
                          (Command.CLOSE, wire.close_request(*file_id))):
        assert status_of(send(client, command, body, replay=True)) == OK, command
