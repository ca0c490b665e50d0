"""Every request decoder, fed arbitrary bodies behind a valid header, either
returns or raises SmbError - never anything else (shared/STYLE.md rule 14)."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from smbcad.proto.change_notify import ChangeNotifyRequest
from smbcad.proto.close import CloseRequest
from smbcad.proto.constants import Command
from smbcad.proto.create import CreateRequest
from smbcad.proto.create_contexts import parse_create_contexts
from smbcad.proto.empty import decode_empty
from smbcad.proto.errors import SmbError
from smbcad.proto.flush import FlushRequest
from smbcad.proto.ioctl import IoctlRequest
from smbcad.proto.lock import LockRequest
from smbcad.proto.negotiate import NegotiateRequest
from smbcad.proto.oplock_break import decode_oplock_break_acknowledgment
from smbcad.proto.query_directory import QueryDirectoryRequest
from smbcad.proto.query_info import QueryInfoRequest
from smbcad.proto.read import ReadRequest
from smbcad.proto.session_setup import SessionSetupRequest
from smbcad.proto.set_info import SetInfoRequest
from smbcad.proto.tree_connect import TreeConnectRequest
from smbcad.proto.write import WriteRequest

from . import wire

# (command, decoder, a valid body to mutate)
DECODERS = [
    (Command.NEGOTIATE, NegotiateRequest.decode,
     struct.pack("<HHHHI16sIHH", 36, 2, 1, 0, 0, b"g" * 16, 112, 1, 0)
     + struct.pack("<HH", 0x0302, 0x0311) + bytes(4)
     + struct.pack("<HHIHHH", 1, 6, 0, 1, 0, 1)),
    (Command.SESSION_SETUP, SessionSetupRequest.decode,
     struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, 4, 0) + b"blob"),
    (Command.TREE_CONNECT, TreeConnectRequest.decode,
     struct.pack("<HHHH", 9, 0, 72, 8) + "\\\\s\\x".encode("utf-16-le")),
    (Command.ECHO, decode_empty, struct.pack("<HH", 4, 0)),
    (Command.CREATE, CreateRequest.decode,
     wire.create_request("dir\\f.txt", wire.context_chain(
         (b"DH2Q", bytes(32)), (b"RqLs", bytes(52)), (b"MxAc", b""), (b"QFid", b"")))),
    (Command.CLOSE, CloseRequest.decode, wire.close_request(1, 2, 1)),
    (Command.FLUSH, FlushRequest.decode, struct.pack("<HHIQQ", 24, 0, 0, 1, 2)),
    (Command.READ, ReadRequest.decode, wire.read_request(1, 2, 4096, 0)),
    (Command.WRITE, WriteRequest.decode, wire.write_request(1, 2, 0, b"payload")),
    (Command.LOCK, LockRequest.decode,
     struct.pack("<HHIQQ", 48, 2, 0x11, 1, 2) + struct.pack("<QQII", 0, 1, 2, 0) * 2),
    (Command.IOCTL, IoctlRequest.decode,
     struct.pack("<HHIQQIIIIIIII", 57, 0, 0x001401D4, 1, 2, 120, 8, 0, 120, 0, 0, 1, 0)
     + bytes(8)),
    (Command.QUERY_DIRECTORY, QueryDirectoryRequest.decode, wire.query_directory_request(1, 2)),
    (Command.CHANGE_NOTIFY, ChangeNotifyRequest.decode,
     struct.pack("<HHIQQII", 32, 1, 4096, 1, 2, 0xFFF, 0)),
    (Command.QUERY_INFO, QueryInfoRequest.decode,
     struct.pack("<HBBIHHIIIQQ", 41, 1, 15, 4096, 104, 0, 8, 0, 0, 1, 2) + bytes(8)),
    (Command.SET_INFO, SetInfoRequest.decode,
     struct.pack("<HBBIHHIQQ", 33, 1, 13, 1, 96, 0, 0, 1, 2) + b"\x01"),
    (Command.OPLOCK_BREAK, decode_oplock_break_acknowledgment,
     struct.pack("<HHI16sIQ", 36, 0, 0, bytes(16), 1, 0)),
]
IDS = [hex(command) for command, _, _ in DECODERS]
FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _decode_only_raises_smb_error(decoder, command, body):
    try:
        decoder(wire.message(command, body))
    except SmbError:
        pass


@pytest.mark.parametrize("command,decoder,valid", DECODERS, ids=IDS)
def test_valid_seed_decodes(command, decoder, valid):
    decoder(wire.message(command, valid))


@pytest.mark.parametrize("command,decoder,valid", DECODERS, ids=IDS)
@FUZZ
@given(body=st.binary(max_size=400))
def test_random_bodies(command, decoder, valid, body):
    _decode_only_raises_smb_error(decoder, command, body)


@pytest.mark.parametrize("command,decoder,valid", DECODERS, ids=IDS)
@FUZZ
@given(data=st.data())
def test_mutated_valid_bodies(command, decoder, valid, data):
    """Flip bytes and truncate a valid body, so the fuzzing reaches past the fixed part."""
    body = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(body) - 1))
        body[pos] = data.draw(st.integers(0, 255))
    body = body[:data.draw(st.integers(0, len(body)))] + data.draw(st.binary(max_size=32))
    _decode_only_raises_smb_error(decoder, command, bytes(body))


@FUZZ
@given(chain=st.binary(max_size=300))
def test_create_context_chain(chain):
    try:
        parse_create_contexts(chain)
    except SmbError:
        pass


@FUZZ
@given(pairs=st.lists(st.tuples(
    st.sampled_from([b"DHnQ", b"DHnC", b"DH2Q", b"DH2C", b"RqLs", b"MxAc", b"QFid", b"AlSi",
                     b"TWrp", b"ExtA", b"SecD", b"XYZW", b"RqLsX",
                     bytes.fromhex("45BCA66AEFA7F74A9008FA462E144D74"),
                     bytes.fromhex("B982D0B73B56074FA07B524A8116A010")]),
    st.binary(max_size=60)), max_size=5))
def test_create_context_chain_of_known_tags(pairs):
    try:
        ctx = parse_create_contexts(wire.context_chain(*pairs))
        ctx.validate()
    except SmbError:
        pass
