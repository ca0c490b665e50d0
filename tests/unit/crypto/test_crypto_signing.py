"""Message signing ([MS-SMB2] 3.1.4.1, 3.1.5.1).

Published vectors: AES-CMAC signatures of signed SESSION_SETUP messages in the
Microsoft blogs (ms_blog_vectors.json) and RFC 4493 section 4.  No published
SMB vector exists for HMAC-SHA256 or AES-GMAC; those are checked against an
independent computation (hmac / AESGCM over the message with a zeroed
signature and a nonce built by hand from the spec text).
"""

import hashlib
import hmac
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smbcad.crypto import (default_signing_algorithm, derive_signing_key, gmac_nonce,
                           make_signer)
from smbcad.proto.constants import Command, Dialect, HeaderFlags, SigningAlgorithmId
from smbcad.proto.header import Smb2Header

VECTORS = json.loads(Path(__file__).with_name("ms_blog_vectors.json").read_text())
ALGORITHMS = [SigningAlgorithmId.HMAC_SHA256, SigningAlgorithmId.AES_CMAC,
              SigningAlgorithmId.AES_GMAC]
KEY = bytes(range(0x40, 0x50))
SIG = slice(48, 64)


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def make_message(command=Command.WRITE, flags=HeaderFlags.SIGNED, message_id=7,
                 body=b"payload" * 10) -> bytearray:
    header = Smb2Header(command=command, message_id=message_id, flags=flags,
                        session_id=0x1122334455667788, tree_id=5)
    return bytearray(header.encode() + body)


# --- published AES-CMAC signatures -----------------------------------------

SIGNED_MESSAGES = [
    # (entry, where the message is, signing key field): the final SESSION_SETUP
    # responses are signed with Session.SigningKey; on the binding connection
    # the requests and the interim response are signed with the master
    # session's key and the final response with Channel.SigningKey.
    ("smb311_gcm", "final_response", "signing_key"),
    ("smb311_ccm", "final_response", "signing_key"),
    ("smb311_multichannel", "final_response", "signing_key"),
    ("smb311_multichannel", ("binding_chain", 2), "signing_key"),
    ("smb311_multichannel", ("binding_chain", 3), "signing_key"),
    ("smb311_multichannel", ("binding_chain", 4), "signing_key"),
    ("smb311_multichannel", "binding_final_response", "channel_signing_key"),
]


def _signed_message(entry: str, where) -> bytes:
    if isinstance(where, tuple):
        return unhex(VECTORS[entry][where[0]][where[1]]["message"])
    return unhex(VECTORS[entry][where])


@pytest.mark.parametrize("entry,where,key_field", SIGNED_MESSAGES)
def test_published_cmac_signature_verifies_and_reproduces(entry, where, key_field):
    message = _signed_message(entry, where)
    signer = make_signer(SigningAlgorithmId.AES_CMAC, unhex(VECTORS[entry][key_field]))
    buf = bytearray(message)
    assert signer.verify(buf)
    assert buf == message  # verify leaves the frame untouched
    buf[SIG] = bytes(16)
    signer.sign(buf)
    assert buf == message


def test_published_final_response_signature_field():
    entry = VECTORS["smb311_gcm"]
    assert unhex(entry["final_response"])[SIG] == unhex(entry["final_response_signature"])


def test_channel_key_does_not_verify_master_signed_message():
    entry = VECTORS["smb311_multichannel"]
    signer = make_signer(SigningAlgorithmId.AES_CMAC, unhex(entry["channel_signing_key"]))
    assert not signer.verify(bytearray(unhex(entry["final_response"])))


def test_binding_signatures_with_derived_keys():
    # Keys derived here rather than read from the blog: master from the main
    # chain, channel from the binding chain.
    entry = VECTORS["smb311_multichannel"]
    master = derive_signing_key(Dialect.SMB_3_1_1, unhex(entry["session_key"]),
                                unhex(entry["chain"][-1]["hash"]))
    channel = derive_signing_key(Dialect.SMB_3_1_1, unhex(entry["binding_session_key"]),
                                 unhex(entry["binding_chain"][-1]["hash"]))
    assert make_signer(SigningAlgorithmId.AES_CMAC, master).verify(
        bytearray(unhex(entry["binding_chain"][2]["message"])))
    assert make_signer(SigningAlgorithmId.AES_CMAC, channel).verify(
        bytearray(unhex(entry["binding_final_response"])))


# RFC 4493 section 4, key 2b7e1516...; messages are prefixes of one 64-byte string.
RFC4493_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
RFC4493_MSG = ("6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
               "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710")


@pytest.mark.parametrize("length,mac", [
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
])
def test_aes_cmac_rfc4493(length, mac):
    signer = make_signer(SigningAlgorithmId.AES_CMAC, unhex(RFC4493_KEY))
    data = unhex(RFC4493_MSG)[:length]
    # Split the input to check multi-part feeding as the signer uses it.
    assert signer._digest((data[:5], data[5:])).hex() == mac


# --- independent checks for HMAC-SHA256 and AES-GMAC -------------------------

def _zeroed(message: bytes) -> bytes:
    out = bytearray(message)
    out[SIG] = bytes(16)
    return bytes(out)


def test_hmac_sha256_matches_independent_hmac():
    msg = make_message()
    make_signer(SigningAlgorithmId.HMAC_SHA256, KEY).sign(msg)
    expected = hmac.new(KEY, _zeroed(msg), hashlib.sha256).digest()[:16]
    assert bytes(msg[SIG]) == expected


@pytest.mark.parametrize("command,flags,role_bits", [
    (Command.WRITE, HeaderFlags.SIGNED, 0),                                    # client request
    (Command.WRITE, HeaderFlags.SIGNED | HeaderFlags.SERVER_TO_REDIR, 1),      # server response
    (Command.CANCEL, HeaderFlags.SIGNED, 2),                                   # client CANCEL
    (Command.OPLOCK_BREAK, HeaderFlags.SIGNED | HeaderFlags.SERVER_TO_REDIR, 1),
])
def test_aes_gmac_matches_independent_gcm(command, flags, role_bits):
    msg = make_message(command=command, flags=flags, message_id=0x0102030405060708)
    nonce = struct.pack("<QI", 0x0102030405060708, role_bits)
    assert gmac_nonce(msg) == nonce
    make_signer(SigningAlgorithmId.AES_GMAC, KEY).sign(msg)
    assert bytes(msg[SIG]) == AESGCM(KEY).encrypt(nonce, b"", _zeroed(msg))


def test_gmac_nonce_differs_by_role_and_cancel():
    client = make_message(flags=HeaderFlags.SIGNED)
    server = make_message(flags=HeaderFlags.SIGNED | HeaderFlags.SERVER_TO_REDIR)
    cancel = make_message(command=Command.CANCEL)
    assert len({gmac_nonce(client), gmac_nonce(server), gmac_nonce(cancel)}) == 3
    signer = make_signer(SigningAlgorithmId.AES_GMAC, KEY)
    # A request signature replayed as a response (same bytes, flag flipped)
    # must not verify: the role bit changed the nonce.
    signer.sign(client)
    reflected = bytearray(client)
    flags = struct.unpack_from("<I", reflected, 16)[0] | HeaderFlags.SERVER_TO_REDIR
    struct.pack_into("<I", reflected, 16, flags)
    assert not signer.verify(reflected)


def test_gmac_nonce_of_message_id():
    assert gmac_nonce(make_message(message_id=1))[:8] == (1).to_bytes(8, "little")
    assert gmac_nonce(make_message(message_id=2)) != gmac_nonce(make_message(message_id=1))


# --- behaviour common to all signers ---------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip(algorithm):
    signer = make_signer(algorithm, KEY)
    msg = make_message()
    signer.sign(msg)
    assert msg[SIG] != bytes(16)
    assert signer.verify(msg)
    assert signer.algorithm_id == algorithm


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("position", [0, 20, 47, 48, 63, 64, -1])
def test_any_flipped_byte_fails(algorithm, position):
    signer = make_signer(algorithm, KEY)
    msg = make_message()
    signer.sign(msg)
    msg[position] ^= 0x01
    assert not signer.verify(msg)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_verify_restores_buffer_and_ignores_field_content(algorithm):
    signer = make_signer(algorithm, KEY)
    msg = make_message()
    signer.sign(msg)
    good = bytes(msg)
    assert signer.verify(msg) and bytes(msg) == good
    # A zeroed (or any other) signature field must not verify...
    msg[SIG] = bytes(16)
    assert not signer.verify(msg)
    assert bytes(msg[SIG]) == bytes(16)
    # ...and a wrong one is left in place after the failed check.
    msg[SIG] = b"\xee" * 16
    assert not signer.verify(msg)
    assert bytes(msg[SIG]) == b"\xee" * 16


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_key_fails(algorithm):
    msg = make_message()
    make_signer(algorithm, KEY).sign(msg)
    assert not make_signer(algorithm, bytes(16)).verify(msg)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_compound_member_signed_in_place(algorithm):
    # Second member of a compound: offset/length select it; padding counts.
    first = make_message(message_id=1, body=b"a" * 24)
    second = make_message(message_id=2, body=b"b" * 20 + bytes(4))
    frame = bytearray(first + second + b"trailer")
    signer = make_signer(algorithm, KEY)
    signer.sign(frame, len(first), len(second))
    assert frame[:len(first)] == first
    assert frame[-7:] == b"trailer"
    assert signer.verify(frame, len(first), len(second))
    alone = bytearray(frame[len(first):len(first) + len(second)])
    assert signer.verify(alone)
    assert not signer.verify(frame, len(first), len(second) - 4)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_memoryview_and_readonly_inputs(algorithm):
    signer = make_signer(algorithm, KEY)
    msg = make_message()
    signer.sign(memoryview(msg))
    assert signer.verify(memoryview(msg))
    assert signer.verify(bytes(msg))  # read-only: verified without mutation
    with pytest.raises(TypeError):
        signer.sign(bytes(msg))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_one_mebibyte_payload(algorithm):
    signer = make_signer(algorithm, KEY)
    msg = make_message(body=bytes(range(256)) * 4096)
    signer.sign(msg)
    assert signer.verify(msg)
    msg[-1] ^= 0xFF
    assert not signer.verify(msg)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_short_message(algorithm):
    signer = make_signer(algorithm, KEY)
    assert not signer.verify(bytearray(63))
    assert not signer.verify(bytearray(100), 50)
    with pytest.raises(ValueError):
        signer.sign(bytearray(63))


def test_make_signer_rejects_bad_input():
    with pytest.raises(ValueError):
        make_signer(0x7777, KEY)
    with pytest.raises(ValueError):
        make_signer(SigningAlgorithmId.AES_CMAC, bytes(32))
    with pytest.raises(ValueError):
        make_signer(SigningAlgorithmId.AES_GMAC, bytes(15))
    assert KEY.hex() not in repr(make_signer(SigningAlgorithmId.AES_CMAC, KEY))


@pytest.mark.parametrize("dialect,negotiated,expected", [
    (Dialect.SMB_2_0_2, None, SigningAlgorithmId.HMAC_SHA256),
    (Dialect.SMB_2_1, SigningAlgorithmId.AES_GMAC, SigningAlgorithmId.HMAC_SHA256),
    (Dialect.SMB_3_0, None, SigningAlgorithmId.AES_CMAC),
    (Dialect.SMB_3_0_2, SigningAlgorithmId.AES_GMAC, SigningAlgorithmId.AES_CMAC),
    (Dialect.SMB_3_1_1, None, SigningAlgorithmId.AES_CMAC),
    (Dialect.SMB_3_1_1, SigningAlgorithmId.AES_GMAC, SigningAlgorithmId.AES_GMAC),
])
def test_default_signing_algorithm(dialect, negotiated, expected):
    assert default_signing_algorithm(dialect, negotiated) == expected
