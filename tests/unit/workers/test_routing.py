"""Connection routing (smbcad/workers/routing.py): the owner hash, and the
decision taken from a new connection's first bytes, pinned on hand-built
frames and fuzzed with hypothesis."""

import collections
import os
import random
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from smbcad.proto.constants import Dialect
from smbcad.proto.errors import SmbError
from smbcad.proto.negotiate import NegotiateRequest, smb1_dialects
from smbcad.workers.routing import (
    MAX_HANDOFF_BYTES, NeedMore, Route, Stay, inspect_first_message, owner_of, route)

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
GUID = bytes.fromhex("5f2a3c1e9b7d4e6f8a0b1c2d3e4f5061")
WINDOWS_DIALECTS = (0x0202, 0x0210, 0x0300, 0x0302, 0x0311)


def smb2_header(command: int = 0) -> bytes:
    """[MS-SMB2] 2.2.1.2 sync header as Windows sends its NEGOTIATE: credit
    request 31, ProcessId 0xFEFF, everything else zero."""
    return b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ16s", 64, 0, 0, command, 31, 0, 0, 0,
                                    0xFEFF, 0, 0, bytes(16))


def negotiate(dialects=WINDOWS_DIALECTS, guid: bytes = GUID, with_contexts: bool = True,
              structure_size: int = 36) -> bytes:
    """An SMB2 NEGOTIATE ([MS-SMB2] 2.2.3) with the 3.1.1 contexts
    (2.2.3.1.1 preauth SHA-512 with a 32-byte salt, 2.2.3.1.2 AES-128-GCM
    and -CCM) at an 8-aligned offset, behind its Direct TCP header (2.1)."""
    fixed = 64 + 36 + 2 * len(dialects)
    padding = (-fixed) % 8
    contexts = b""
    if with_contexts:
        preauth = struct.pack("<HHH", 1, 32, 0x0001) + bytes(range(32))
        contexts = struct.pack("<HHI", 0x0001, len(preauth), 0) + preauth
        contexts += bytes((-len(contexts)) % 8)
        ciphers = struct.pack("<HHH", 2, 0x0002, 0x0001)
        contexts += struct.pack("<HHI", 0x0002, len(ciphers), 0) + ciphers
    body = struct.pack("<HHHHI16sIHH", structure_size, len(dialects), 0x0001, 0, 0x7F, guid,
                       fixed + padding if contexts else 0, 2 if contexts else 0, 0)
    body += struct.pack(f"<{len(dialects)}H", *dialects)
    message = smb2_header() + body + (bytes(padding) + contexts if contexts else b"")
    return struct.pack(">I", len(message)) + message


def smb1_negotiate(*names: bytes) -> bytes:
    """[MS-CIFS] 2.2.4.52.1: a 32-byte SMB1 header (command 0x72), WordCount
    0, ByteCount, then 0x02-prefixed NUL-terminated dialect strings."""
    strings = b"".join(b"\x02" + name + b"\x00" for name in names)
    header = b"\xffSMB\x72" + bytes(4) + b"\x18" + struct.pack("<H", 0xC853) + bytes(20)
    message = header + b"\x00" + struct.pack("<H", len(strings)) + strings
    return struct.pack(">I", len(message)) + message


def short_dialects() -> bytes:
    """A NEGOTIATE whose DialectCount (5) runs past its end (2 dialects)."""
    message = smb2_header() + struct.pack("<HHHHI16sIHH", 36, 5, 1, 0, 0, GUID, 0, 0, 0) \
        + struct.pack("<2H", 0x0210, 0x0300)
    return struct.pack(">I", len(message)) + message


# --- owner_of ----------------------------------------------------------------------------

def test_owner_of_is_pinned():
    # The hash is part of the node's contract: every worker, and a node
    # adopting another's persistent handles, computes the same owners.
    assert [owner_of(GUID, n) for n in (1, 2, 3, 4, 8, 16)] == [0, 0, 1, 0, 4, 4]
    assert (owner_of(GUID, 4, 1), owner_of(GUID, 4, 7)) == (0, 3)
    assert owner_of(bytes(range(16)), 4) == 2


def test_owner_of_is_the_same_in_processes_with_other_hash_seeds():
    rng = random.Random(1)
    guids = [rng.randbytes(16) for _ in range(40)]
    script = ("import sys; from smbcad.workers.routing import owner_of; "
              "print([owner_of(bytes.fromhex(g), 7, 5) for g in sys.argv[1:]])")
    here = [owner_of(guid, 7, 5) for guid in guids]
    for hash_seed in ("1", "4242"):
        environment = dict(os.environ, PYTHONHASHSEED=hash_seed,
                           PYTHONPATH=os.pathsep.join(sys.path))
        result = subprocess.run([sys.executable, "-c", script, *(g.hex() for g in guids)],
                                env=environment, capture_output=True, text=True, timeout=60,
                                check=True)
        assert result.stdout.strip() == str(here)


def test_owner_of_spreads_guids_evenly():
    rng = random.Random(20261207)
    counts = collections.Counter(owner_of(rng.randbytes(16), 4) for _ in range(1000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(200 <= count <= 300 for count in counts.values()), counts


def test_the_seed_changes_placement_and_can_put_two_clients_apart():
    rng = random.Random(7)
    guids = [rng.randbytes(16) for _ in range(200)]
    moved = sum(owner_of(g, 4, 0) != owner_of(g, 4, 1) for g in guids)
    assert 100 < moved < 200                          # about 3/4 of them
    first, second = guids[:2]
    seed = next(s for s in range(100) if (owner_of(first, 2, s), owner_of(second, 2, s)) == (0, 1))
    assert route(Route(first), 1, 2, seed) == 0 and route(Route(second), 1, 2, seed) is None


@pytest.mark.parametrize("guid,workers,seed", [
    (bytes(15), 2, 0), (GUID, 0, 0), (GUID, 2, -1), (GUID, 2, 1 << 64)])
def test_owner_of_refuses_bad_arguments(guid, workers, seed):
    with pytest.raises(ValueError):
        owner_of(guid, workers, seed)


# --- the first message -------------------------------------------------------------------

def test_a_windows_negotiate_routes_by_its_client_guid():
    frame = negotiate()
    assert len(frame) == 4 + 174
    # The server itself accepts these bytes, contexts included.
    request = NegotiateRequest.decode(memoryview(frame)[4:])
    assert request.dialects == WINDOWS_DIALECTS and request.contexts.preauth is not None
    assert inspect_first_message(frame) == Route(GUID)
    assert inspect_first_message(frame + b"\x00\x00\x00\x44more") == Route(GUID)
    assert inspect_first_message(bytearray(frame)) == Route(GUID)


def test_every_prefix_of_the_negotiate_needs_more():
    frame = negotiate()
    for cut in range(len(frame)):
        expected = 4 - cut if cut < 4 else len(frame) - cut
        assert inspect_first_message(frame[:cut]) == NeedMore(expected), cut
    assert inspect_first_message(memoryview(frame)) == Route(GUID)


def test_an_smb1_negotiate_stays_and_the_wildcard_looks_again():
    with_wildcard = smb1_negotiate(b"NT LM 0.12", b"SMB 2.002", b"SMB 2.???")
    assert smb1_dialects(memoryview(with_wildcard)[4:])[-1] == "SMB 2.???"
    decision = inspect_first_message(with_wildcard)
    assert isinstance(decision, Stay) and decision.look_again
    only_202 = inspect_first_message(smb1_negotiate(b"NT LM 0.12", b"SMB 2.002"))
    assert isinstance(only_202, Stay) and not only_202.look_again
    for cut in range(len(with_wildcard)):
        assert isinstance(inspect_first_message(with_wildcard[:cut]), NeedMore)


@pytest.mark.parametrize("frame,why", [
    (negotiate((0x0202,), with_contexts=False), "ClientGuid unused"),
    (negotiate((0x0202, 0x0202, 0x0999), with_contexts=False), "ClientGuid unused"),
    (negotiate(guid=bytes(16)), "zero ClientGuid"),
    (negotiate(structure_size=37), "StructureSize"),
    (negotiate((), with_contexts=False), "DialectCount"),
    (short_dialects(), "dialects run past"),
    (struct.pack(">I", 64 + 20) + smb2_header(1) + bytes(20), "command 0x1"),
    (struct.pack(">I", 40) + b"\xfdSMB" + bytes(36), "not an SMB2 message"),
    (struct.pack(">I", 70) + b"\xfeSMB" + struct.pack("<H", 65) + bytes(64), "header"),
    (struct.pack(">I", 80) + smb2_header() + bytes(16), "shorter than its fixed part"),
    (struct.pack(">I", 40) + b"\xffSMB\x73" + bytes(35), "not a NEGOTIATE"),
])
def test_what_does_not_route_stays(frame, why):
    decision = inspect_first_message(frame)
    assert isinstance(decision, Stay) and why in decision.reason, decision


def test_a_bad_transport_header_or_huge_frame_stays_without_waiting():
    assert "first byte" in inspect_first_message(b"\x85\x00\x00\x00").reason
    huge = struct.pack(">I", MAX_HANDOFF_BYTES - 3)
    assert "too big to hand off" in inspect_first_message(huge).reason
    assert inspect_first_message(struct.pack(">I", MAX_HANDOFF_BYTES - 4)) == \
        NeedMore(MAX_HANDOFF_BYTES - 4)


def test_a_negotiate_with_2_0_2_and_a_later_dialect_routes():
    assert inspect_first_message(negotiate((0x0202, 0x0210), with_contexts=False)) == Route(GUID)
    # Contexts the server would refuse are the owner's to refuse.
    broken = bytearray(negotiate())
    broken[-10:] = bytes(10)
    assert inspect_first_message(bytes(broken)) == Route(GUID)


@FUZZ
@given(st.binary(max_size=300))
def test_garbage_never_raises(data):
    for candidate in (data, struct.pack(">I", len(data)) + data,
                      struct.pack(">I", 64 + len(data)) + smb2_header() + data):
        decision = inspect_first_message(candidate)
        assert isinstance(decision, NeedMore | Stay | Route)
        if isinstance(decision, Route):
            assert len(decision.client_guid) == 16 and any(decision.client_guid)


@FUZZ
@given(st.lists(st.sampled_from((0x0202, 0x0210, 0x0300, 0x0302, 0x0311, 0x02FF, 0x1234)),
                min_size=0, max_size=6),
       st.binary(min_size=16, max_size=16), st.booleans())
def test_every_negotiate_the_server_accepts_with_a_client_guid_routes(dialects, guid, contexts):
    frame = negotiate(tuple(dialects), guid, with_contexts=contexts)
    try:
        request = NegotiateRequest.decode(memoryview(frame)[4:])
    except SmbError:
        return
    guid_counts = any(d in request.dialects for d in
                      (Dialect.SMB_2_1, Dialect.SMB_3_0, Dialect.SMB_3_0_2, Dialect.SMB_3_1_1))
    decision = inspect_first_message(frame)
    if guid_counts and any(guid):
        assert decision == Route(guid)
    else:
        assert isinstance(decision, Stay)


# --- route -------------------------------------------------------------------------------

def test_route_names_another_owner_or_stays():
    owner = owner_of(GUID, 4, 3)
    assert route(Route(GUID), owner, 4, 3) is None
    assert {route(Route(GUID), here, 4, 3) for here in range(4) if here != owner} == {owner}
    assert route(Route(GUID), 0, 1) is None
    assert route(Stay("smb1", look_again=True), 0, 4) is None
    with pytest.raises(ValueError, match="no decision yet"):
        route(NeedMore(4), 0, 4)
    with pytest.raises(ValueError):
        route(Route(GUID), 4, 4)
