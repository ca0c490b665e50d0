"""NTLM pass-through to a domain controller over NETLOGON ([MS-NRPC] 3.1.4,
[MS-APDS] 3.1.5.2): the I/O half (``_netlogon_core`` is the sans-IO half).

``NetlogonClient.logon`` hands a domain user's NTLM AUTHENTICATE (our
challenge, the client's responses) to a DC of the domain the pair joined
and returns the user's SIDs and the NTLM SessionBaseKey, or raises
``AuthError`` with the status the client should see.  It blocks on the
network: callers run it in a worker thread (``Authenticator.step_off_loop``).

The secure channel (3.1.4.1): ServerReqChallenge and ServerAuthenticate3 as
the machine account (``NAME$``, the password ``smbca domain join`` kept)
on one unauthenticated connection, then a second connection bound with the
Netlogon security provider at packet privacy (AES), kept for every later
logon.  The DC is the one the join used, else any address the domain's DNS
name has (an AD domain's name resolves to its DCs).  A failure on the
channel (the connection broke, or the DC no longer accepts the session key:
it restarted, or the machine password changed) sets it up again once and
retries; a DC that cannot be reached gives STATUS_NO_LOGON_SERVERS.  One
logon at a time goes over the channel (impacket's RPC client is not
concurrent), under a lock.

Both nodes of the pair set up channels as the same account and computer
name.  NetrLogonSamLogonEx uses the session key of the RPC security context
only, so one node's ServerAuthenticate3 does not break the other's channel
(tests/ad checks it against Samba's DC); ReqChallenge and Authenticate3 of
one set-up go over one connection, where Samba's DC keeps the challenge.

impacket's DCE/RPC client does the Netlogon security provider's sealing;
it does not check the signature of the DC's responses (the sealed data is
decrypted as it comes), so a man in the middle who cannot read the channel
can still corrupt it; a corrupted answer fails to decode or yields a wrong
session key, which the NTLM MIC, or the client's first signed request,
then refuses.
"""

import logging
import os
import socket
import threading

from impacket.dcerpc.v5 import epm, nrpc, transport
from impacket.dcerpc.v5.rpcrt import (RPC_C_AUTHN_LEVEL_PKT_PRIVACY, RPC_C_AUTHN_NETLOGON,
                                      DCERPCException)

from smbca.auth._domain_logon import DomainLogon, NetworkLogon
from smbca.auth._netlogon_core import (CHANNEL_STATUSES, NEGOTIATE_FLAGS, REQUIRED_FLAGS,
                                       check_server_credential, credential, domain_logon_of,
                                       logon_request, refusal, session_key)
from smbca.auth.errors import AuthError
from smbca.auth.legacy_crypto import nt_hash
from smbca.domain import DomainError, MachineAccount, machine_account_path
from smbca.ntstatus import NtStatus, name_of

log = logging.getLogger("smbca.auth.netlogon")

DC_TIMEOUT_S = 10.0
_WORKSTATION_CHANNEL = nrpc.NETLOGON_SECURE_CHANNEL_TYPE.WorkstationSecureChannel


class ChannelError(Exception):
    """The secure channel could not be set up with one DC."""


def load_machine_account(keytab: str) -> MachineAccount | None:
    """The join's machine account record beside ``keytab``; None when there
    is none (joined before NTLM pass-through existed: Kerberos only)."""
    path = machine_account_path(keytab)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return MachineAccount.from_json(text, path)
    except DomainError as exc:
        raise ValueError(str(exc)) from None


class _Channel:
    """One established secure channel: the sealed RPC connection."""

    def __init__(self, dc: str, rpc) -> None:
        self.dc = dc
        self.rpc = rpc

    def close(self) -> None:
        try:
            self.rpc.get_rpc_transport().disconnect()
        except (OSError, DCERPCException, AttributeError):
            pass


class NetlogonClient:
    """NTLM pass-through for the domain of ``account`` (a ``DomainLogonPort``).

    With ``keytab``, each new secure channel reads the machine account
    record beside it again, so a password set since (``smbca domain
    update``, copied to the partner) is the one used, without a restart."""

    def __init__(self, account: MachineAccount, timeout_s: float = DC_TIMEOUT_S,
                 keytab: str | None = None) -> None:
        self._account = account
        self._timeout_s = timeout_s
        self._keytab = keytab
        self._lock = threading.Lock()
        self._channel: _Channel | None = None

    @classmethod
    def from_keytab(cls, keytab: str) -> "NetlogonClient | None":
        """The client of the join beside ``keytab``; None when there is no record."""
        account = load_machine_account(keytab)
        return cls(account, keytab=keytab) if account is not None else None

    @property
    def account(self) -> MachineAccount:
        return self._account

    def handles(self, domain: str) -> bool:
        """Whether an AUTHENTICATE for ``domain`` goes to the DC."""
        return self._account.names_domain(domain)

    def logon(self, logon: NetworkLogon) -> DomainLogon:
        """The DC's verdict on ``logon`` (blocking; see the module docstring)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    channel = self._channel or self._establish()
                except ChannelError as exc:
                    raise AuthError(NtStatus.NO_LOGON_SERVERS,
                                    f"NETLOGON: no domain controller: {exc}") from None
                self._channel = channel
                try:
                    response = channel.rpc.request(logon_request(self._account.computer_name,
                                                                 logon))
                except nrpc.DCERPCSessionError as exc:
                    status = exc.get_error_code()
                    if status in CHANNEL_STATUSES and attempt == 1:
                        log.info("NETLOGON: %s answered %s: setting the secure channel up "
                                 "again", channel.dc, name_of(status))
                        self._drop()
                        continue
                    raise refusal(status, logon) from None
                except (OSError, DCERPCException) as exc:
                    self._drop()
                    if attempt == 1:
                        log.info("NETLOGON: the secure channel to %s failed (%s): again",
                                 channel.dc, exc)
                        continue
                    raise AuthError(NtStatus.NO_LOGON_SERVERS,
                                    f"NETLOGON: {channel.dc} failed: {exc}") from None
                result = domain_logon_of(response)
                log.debug("NETLOGON: %s\\%s is %s\\%s, SID %s, groups %s", logon.domain,
                          logon.user, result.domain, result.user, result.user_sid,
                          " ".join(result.group_sids))
                return result
        raise AssertionError("unreachable")

    def check_channel(self) -> str:
        """Set up a new secure channel now (``smbca domain status``): the DC
        that accepted it; ``ChannelError`` says why none did."""
        with self._lock:
            self._drop()
            self._channel = self._establish()
            return self._channel.dc

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    # -- the secure channel (3.1.4.1) ------------------------------------------------

    def candidates(self) -> list[str]:
        """The join's DC first, then every address of the domain's DNS name."""
        names = [self._account.domain_controller] if self._account.domain_controller else []
        try:
            infos = socket.getaddrinfo(self._account.dns_domain, 135, type=socket.SOCK_STREAM)
            names += [info[4][0] for info in infos]
        except OSError:
            pass
        return list(dict.fromkeys(names))

    def reload_account(self) -> None:
        """The record as it is now, if it still names the same account."""
        if self._keytab is None:
            return
        try:
            account = load_machine_account(self._keytab)
        except ValueError as exc:
            log.warning("NETLOGON: keeping the machine password already read: %s", exc)
            return
        if account is not None and (account.computer_name, account.realm) == (
                self._account.computer_name, self._account.realm):
            self._account = account

    def _establish(self) -> _Channel:
        self.reload_account()
        problems = []
        for dc in self.candidates():
            try:
                channel = self._establish_with(dc)
            except (ChannelError, OSError, DCERPCException) as exc:
                problems.append(f"{dc}: {exc}")
                continue
            log.info("NETLOGON: secure channel to %s as %s$", dc, self._account.computer_name)
            return channel
        raise ChannelError("; ".join(problems) or
                           f"no DC known for {self._account.dns_domain}")

    def _rpc(self, binding: str):
        rpc_transport = transport.DCERPCTransportFactory(binding)
        rpc_transport.set_connect_timeout(self._timeout_s)
        return rpc_transport.get_dce_rpc()

    def _establish_with(self, dc: str) -> _Channel:
        return _Channel(dc, self.open_sealed(dc, nrpc.MSRPC_UUID_NRPC))

    def _map(self, dc: str, interface: bytes) -> str:
        """The DC's ncacn_ip_tcp endpoint of ``interface`` (its endpoint mapper)."""
        mapper = self._rpc(f"ncacn_ip_tcp:{dc}[135]")
        mapper.connect()
        try:
            return epm.hept_map(dc, interface, protocol="ncacn_ip_tcp", dce=mapper)
        finally:
            mapper.get_rpc_transport().disconnect()

    def open_sealed(self, dc: str, interface: bytes):
        """A new secure channel session key with ``dc`` and a connection to
        its ``interface`` bound with it (the Netlogon security provider, AES,
        packet privacy): NETLOGON's own, or lsarpc for the lookups that
        Windows and Samba serve only so (``smbca.auth.dc_names``).  Blocking;
        raises ``ChannelError``, ``OSError`` or ``DCERPCException``."""
        netlogon = self._map(dc, nrpc.MSRPC_UUID_NRPC)
        key = self._authenticate(netlogon)
        binding = netlogon if interface == nrpc.MSRPC_UUID_NRPC else self._map(dc, interface)
        sealed = self._rpc(binding)
        sealed.set_credentials(f"{self._account.computer_name}$", "",
                               self._account.netbios_domain)
        sealed.set_auth_type(RPC_C_AUTHN_NETLOGON)
        sealed.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
        sealed.set_session_key(key)
        sealed.set_aes(True)
        sealed.connect()
        try:
            sealed.bind(interface)
        except BaseException:
            sealed.get_rpc_transport().disconnect()
            raise
        return sealed

    def _authenticate(self, binding: str) -> bytes:
        """ServerReqChallenge + ServerAuthenticate3: the session key."""
        account = self._account
        plain = self._rpc(binding)
        plain.connect()
        try:
            plain.bind(nrpc.MSRPC_UUID_NRPC)
            client_challenge = os.urandom(8)
            answer = nrpc.hNetrServerReqChallenge(plain, "\x00", f"{account.computer_name}\x00",
                                                  client_challenge)
            server_challenge = answer["ServerChallenge"]
            key = session_key(nt_hash(account.password), client_challenge, server_challenge)
            try:
                answer = nrpc.hNetrServerAuthenticate3(
                    plain, "\x00", f"{account.computer_name}$\x00", _WORKSTATION_CHANNEL,
                    f"{account.computer_name}\x00", credential(key, client_challenge),
                    NEGOTIATE_FLAGS)
            except nrpc.DCERPCSessionError as exc:
                raise ChannelError(f"ServerAuthenticate3 as {account.computer_name}$: "
                                   f"{name_of(exc.get_error_code())} (is the machine "
                                   "password current? smbca domain status)") from None
        finally:
            plain.get_rpc_transport().disconnect()
        granted = answer["NegotiateFlags"]
        if granted & REQUIRED_FLAGS != REQUIRED_FLAGS:
            raise ChannelError(f"the DC grants NETLOGON flags 0x{granted:08x}, without AES "
                               "or secure RPC")
        if not check_server_credential(key, server_challenge, answer["ServerCredential"]):
            raise ChannelError("the DC's credential does not verify")
        return key
