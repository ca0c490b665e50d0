"""clusdisk.smb_relay: the admin's SMB requests carried to the partner's
smbcad over two real peer channel endpoints (loopback TCP), the partner's
smbcad a real control socket.  A partner of the previous release (its peer
handler knows no ``smb``: ``clusdisk.operations.Operations.peer_request``'s
answer) is said to not support it; a partner that does not answer is
unreachable, with the reason; only the SMB admin requests pass."""

import asyncio
import socket

import pytest

from clusdisk.peer import PeerChannel
from clusdisk.smb_relay import PEER_OP, SmbRelay, _bounded
from clusdisk.peer_proto import MAX_PAYLOAD
from smbca.control import ControlError, ControlServer

KEY = b"0123456789abcdef0123456789abcdef"
SESSIONS = [{"session_id": "0x0000000000000011", "user": "alice", "client": "192.0.2.100"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pair(tmp_path, partner_knows_smb=True, smbcad=True):
    """Node a's relay (the admin's side) and node b's peer endpoint, whose
    smbcad answers ``sessions`` (and records every request)."""
    port = free_port()
    seen = []
    b_relay = SmbRelay(None, str(tmp_path / "smbcad-b.sock") if smbcad else None, "b", "a")

    async def b_handler(op, args):
        if op == PEER_OP and partner_knows_smb:
            return await b_relay.answer_peer(args)
        return {"ok": False, "error": f"unknown peer request {op!r}"}    # the older release

    def smbcad_b(message):
        seen.append(message)
        return {"sessions": SESSIONS} if message["command"] == "sessions" else {"closed": []}

    a_peer = PeerChannel(KEY, 1, 2, (("127.0.0.1", port),), (("127.0.0.2", port),),
                         lambda op, args: None, connect_timeout_s=1.0)
    b_peer = PeerChannel(KEY, 2, 1, (("127.0.0.2", port),), (("127.0.0.1", port),), b_handler)
    server = ControlServer(str(tmp_path / "smbcad-b.sock"), smbcad_b)
    return SmbRelay(a_peer, None, "a", "b"), b_peer, server, seen


def run(tmp_path, body, partner_up=True, **kwargs):
    async def main():
        relay, b_peer, server, seen = pair(tmp_path, **kwargs)
        await server.start()
        if partner_up:
            await b_peer.start()
        try:
            await body(relay, seen)
        finally:
            await b_peer.close()
            await server.close()
    asyncio.run(main())


def test_the_partners_sessions_come_through_its_clusdisk(tmp_path):
    async def body(relay, seen):
        handle = relay.control(lambda message: {"inner": message["command"]})
        answer = await handle({"command": "partner-smb", "request": {"command": "sessions"}})
        assert answer == {"ok": True, "node": "a", "partner": "b",
                          "reply": {"ok": True, "sessions": SESSIONS}}
        assert seen == [{"command": "sessions"}]
        assert await handle({"command": "status"}) == {"inner": "status"}    # the rest: inner
    run(tmp_path, body)


def test_an_action_reaches_the_partners_smbcad(tmp_path):
    async def body(relay, seen):
        answer = await relay.ask_partner({"command": "close-session", "id": "0x11"})
        assert answer["ok"] and answer["reply"] == {"ok": True, "closed": []}
        assert seen == [{"command": "close-session", "id": "0x11"}]
    run(tmp_path, body)


def test_a_partner_of_the_previous_release_does_not_support_it(tmp_path):
    async def body(relay, seen):
        answer = await relay.ask_partner({"command": "opens"})
        assert answer["ok"] is False and answer["unsupported"] is True
        assert answer["error"].startswith("partner b does not support")
        assert "unknown peer request 'smb'" in answer["error"]
    run(tmp_path, body, partner_knows_smb=False)


def test_a_partner_whose_clusdisk_is_down_is_unreachable_with_the_reason(tmp_path):
    async def body(relay, seen):
        answer = await relay.ask_partner({"command": "sessions"})
        assert answer["ok"] is False and answer["unreachable"] is True
        assert answer["error"].startswith("partner unreachable on every link (127.0.0.2:")
    run(tmp_path, body, partner_up=False)


def test_a_partner_without_smbcad_is_unreachable_with_the_reason(tmp_path):
    async def body(relay, seen):
        answer = await relay.ask_partner({"command": "sessions"})
        assert answer["unreachable"] is True
        assert "no smbcad on b" in answer["error"]
    run(tmp_path, body, smbcad=False)


def test_only_the_smb_admin_requests_pass(tmp_path):
    async def body(relay, seen):
        handle = relay.control(lambda message: {})
        for request in ({"command": "adopt", "aggregate": "aggr1"}, "sessions", None):
            with pytest.raises(ControlError, match="partner-smb needs a request"):
                await handle({"command": "partner-smb", "request": request})
        b_side = SmbRelay(None, str(tmp_path / "smbcad-b.sock"), "b", "a")
        refused = await b_side.answer_peer({"request": {"command": "release",
                                                        "aggregate": "aggr1"}})
        assert refused["ok"] is False and seen == []
    run(tmp_path, body)


def test_a_listing_too_long_for_one_peer_frame_is_cut_and_says_so():
    opens = [{"durable_file_id": f"{n:#018x}", "path": "x" * 200} for n in range(10000)]
    cut = _bounded({"ok": True, "opens": opens}, "opens")
    assert 0 < len(cut["opens"]) < len(opens)
    assert cut["truncated"] == len(opens) - len(cut["opens"])
    assert len(str(cut)) < MAX_PAYLOAD
    small = {"ok": True, "opens": opens[:3]}
    assert _bounded(small, "opens") is small
