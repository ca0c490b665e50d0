"""NEGOTIATE ([MS-SMB2] 3.3.5.3 SMB1 negotiate, 3.3.5.4 SMB2 NEGOTIATE)."""

import os
import time

from smbcad import crypto
from smbcad.proto.constants import (
    ALL_DIALECTS, CipherId, Dialect, GlobalCaps, HashAlgorithm, NegotiateContextType,
    SecurityMode, SigningAlgorithmId)
from smbcad.proto.errors import ProtocolViolation, SmbError
from smbcad.proto.fileinfo import unix_ns_to_filetime
from smbcad.proto.negotiate import (
    SMB1_DIALECT_2_0_2, SMB1_DIALECT_WILDCARD, EncryptionCapabilities, NegotiateRequest,
    NegotiateResponse, PreauthIntegrityCapabilities, SigningCapabilities, smb1_dialects)
from smbcad.proto.status import NtStatus

# 2.0.2 clients can't use multi-credit requests, so 64 KiB is all they get.
SMB2_0_2_MAX_IO = 65536
CIPHERS_SUPPORTED = (CipherId.AES_128_GCM, CipherId.AES_128_CCM,
                     CipherId.AES_256_GCM, CipherId.AES_256_CCM)
SIGNING_SUPPORTED = (SigningAlgorithmId.AES_GMAC, SigningAlgorithmId.AES_CMAC,
                     SigningAlgorithmId.HMAC_SHA256)


def _security_mode(server) -> int:
    mode = SecurityMode.SIGNING_ENABLED
    if server.config.server.signing_required:
        mode |= SecurityMode.SIGNING_REQUIRED
    return mode


def _response(conn, dialect: int, contexts=()) -> NegotiateResponse:
    server = conn.server
    max_io = server.config.server.max_io_bytes
    if dialect == Dialect.SMB_2_0_2:
        max_io = SMB2_0_2_MAX_IO
    conn.max_transact_size = conn.max_read_size = conn.max_write_size = max_io
    return NegotiateResponse(
        security_mode=conn.server_security_mode,
        dialect=dialect,
        server_guid=server.server_guid,
        capabilities=conn.server_capabilities,
        max_transact_size=max_io,
        max_read_size=max_io,
        max_write_size=max_io,
        system_time=unix_ns_to_filetime(time.time_ns()),
        server_start_time=0,
        security_buffer=server.authenticator.negotiate_token(),
        contexts=tuple(contexts),
    )


def handle_smb1(conn, frame) -> bytes:
    """An SMB1 NEGOTIATE listing SMB2 dialects gets an SMB2 response (3.3.5.3.1):
    2.0.2 if that is all it offers, else the wildcard 0x02FF and a second,
    SMB2 NEGOTIATE follows."""
    names = smb1_dialects(frame)
    conn.server_security_mode = _security_mode(conn.server)
    if SMB1_DIALECT_WILDCARD in names:
        dialect = Dialect.WILDCARD
    elif SMB1_DIALECT_2_0_2 in names:
        dialect = Dialect.SMB_2_0_2
        conn.dialect = dialect
    else:
        raise SmbError(NtStatus.NOT_SUPPORTED, "no SMB2 dialect offered")
    conn.server_capabilities = 0
    response = _response(conn, dialect)
    return response.encode()


def _choose_dialect(conn, offered) -> int:
    common = [d for d in offered if d in ALL_DIALECTS]
    if not common:
        raise SmbError(NtStatus.NOT_SUPPORTED, "no common dialect")
    return max(common)


def _capabilities(conn, request: NegotiateRequest, dialect: int) -> int:
    caps = 0
    if dialect >= Dialect.SMB_2_1:
        caps |= GlobalCaps.LARGE_MTU | GlobalCaps.LEASING     # leases: smbcad.server.leases
    caps |= GlobalCaps.DIRECTORY_LEASING if dialect >= Dialect.SMB_3_0 else 0   # server/dirleases.py
    if (Dialect.SMB_3_0 <= dialect < Dialect.SMB_3_1_1
            and request.capabilities & GlobalCaps.ENCRYPTION):
        caps |= GlobalCaps.ENCRYPTION
    # 3.3.5.4: multichannel on 3.x when enabled (server.multichannel); the
    # client may then bind more connections to its sessions (3.3.5.5.2).
    if dialect >= Dialect.SMB_3_0 and conn.server.config.server.multichannel:
        caps |= GlobalCaps.MULTI_CHANNEL
    # 3.3.5.4: persistent handles for a 3.x client that asks, when the server
    # keeps them (a handle store; smbcad.server.durable).
    if (dialect >= Dialect.SMB_3_0 and request.capabilities & GlobalCaps.PERSISTENT_HANDLES
            and conn.server.offers_persistent_handles):
        caps |= GlobalCaps.PERSISTENT_HANDLES
    return caps


def _choose_cipher(offered) -> int:
    """The client's order decides among the ciphers we have (3.3.5.4)."""
    for cipher in offered:
        if cipher in CIPHERS_SUPPORTED:
            return cipher
    return 0


def _choose_signing(offered) -> int:
    """GMAC when offered: it runs ~20x faster than CMAC here (issue 2, item 5)."""
    if SigningAlgorithmId.AES_GMAC in offered:
        return SigningAlgorithmId.AES_GMAC
    for algorithm in offered:
        if algorithm in SIGNING_SUPPORTED:
            return algorithm
    return SigningAlgorithmId.AES_CMAC


def _negotiate_311(conn, request: NegotiateRequest) -> list:
    """3.1.1 contexts (3.3.5.4): preauth is mandatory; encryption and signing
    are chosen from the client's lists."""
    ctx = request.contexts
    if ctx.preauth is None:
        raise SmbError(NtStatus.INVALID_PARAMETER, "3.1.1 without preauth context")
    if HashAlgorithm.SHA_512 not in ctx.preauth.hash_algorithms:
        raise SmbError(NtStatus.SMB_NO_PREAUTH_INTEGRITY_HASH_OVERLAP)
    out = [(NegotiateContextType.PREAUTH_INTEGRITY_CAPABILITIES,
            PreauthIntegrityCapabilities((HashAlgorithm.SHA_512,), os.urandom(32)).encode())]
    if ctx.encryption is not None:
        conn.cipher_id = _choose_cipher(ctx.encryption.ciphers)
        out.append((NegotiateContextType.ENCRYPTION_CAPABILITIES,
                    EncryptionCapabilities((conn.cipher_id,)).encode()))
    if ctx.signing is not None:
        conn.signing_algorithm = _choose_signing(ctx.signing.algorithms)
        out.append((NegotiateContextType.SIGNING_CAPABILITIES,
                    SigningCapabilities((conn.signing_algorithm,)).encode()))
    return out


def handle(ctx):
    conn = ctx.connection
    if conn.dialect and conn.dialect != Dialect.WILDCARD:
        raise ProtocolViolation("second NEGOTIATE on a connection (3.3.5.4)")
    request = NegotiateRequest.decode(ctx.message)
    dialect = _choose_dialect(conn, request.dialects)
    conn.client_guid = request.client_guid
    conn.client_capabilities = request.capabilities
    conn.client_security_mode = request.security_mode
    conn.client_dialects = request.dialects
    conn.server_security_mode = _security_mode(conn.server)
    conn.server_capabilities = _capabilities(conn, request, dialect)
    conn.supports_multi_credit = bool(conn.server_capabilities & GlobalCaps.LARGE_MTU)
    if dialect in (Dialect.SMB_3_0, Dialect.SMB_3_0_2):
        conn.signing_algorithm = SigningAlgorithmId.AES_CMAC
        if conn.server_capabilities & GlobalCaps.ENCRYPTION:
            conn.cipher_id = CipherId.AES_128_CCM
    elif dialect < Dialect.SMB_3_0:
        conn.signing_algorithm = SigningAlgorithmId.HMAC_SHA256
    contexts = []
    if dialect == Dialect.SMB_3_1_1:
        conn.signing_algorithm = SigningAlgorithmId.AES_CMAC
        contexts = _negotiate_311(conn, request)
        conn.preauth_hash = crypto.preauth_next(crypto.PREAUTH_INITIAL, ctx.message)
        ctx.response_hooks.append(
            lambda data: setattr(conn, "preauth_hash", crypto.preauth_next(conn.preauth_hash, data)))
    conn.dialect = dialect
    return _response(conn, dialect, contexts).encode()
