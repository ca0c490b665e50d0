"""Preauth integrity hash chains ([MS-SMB2] 3.3.5.4, 3.3.5.5).

Vectors: every message and intermediate SHA-512 value printed by the
Microsoft blogs named in ms_blog_vectors.json (3.1.1 GCM and CCM appendices of
"SMB 3.1.1 Encryption in Windows 10"; master and binding sessions of "the
anatomy of signing and cryptographic keys").
"""

import hashlib
import json
from pathlib import Path

import pytest

from smbcad.crypto import PREAUTH_INITIAL, preauth_next

VECTORS = json.loads(Path(__file__).with_name("ms_blog_vectors.json").read_text())
CHAINS = [("smb311_gcm", "chain"), ("smb311_ccm", "chain"),
          ("smb311_multichannel", "chain"), ("smb311_multichannel", "binding_chain")]


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def test_initial_value_is_64_zero_bytes():
    assert PREAUTH_INITIAL == bytes(64)


@pytest.mark.parametrize("entry,key", CHAINS)
def test_published_chain(entry, key):
    value = PREAUTH_INITIAL
    for step in VECTORS[entry][key]:
        value = preauth_next(value, unhex(step["message"]))
        assert value == unhex(step["hash"]), step["name"]


def test_accepts_memoryview_of_a_larger_frame():
    # The transport hands over a view of its receive buffer, not a copy.
    message = VECTORS["smb311_gcm"]["chain"][0]
    frame = bytearray(b"\x00\x00\x00\x00" + unhex(message["message"]) + b"junk")
    view = memoryview(frame)[4:-4]
    assert preauth_next(PREAUTH_INITIAL, view) == unhex(message["hash"])


def test_is_sha512_of_concatenation():
    assert preauth_next(b"\x01" * 64, b"abc") == hashlib.sha512(b"\x01" * 64 + b"abc").digest()
