"""A witness client in the lab's client namespace ([MS-SWN] over DCE/RPC, the
client of tests/witness_client.py): registered for a LIF with a node's
witnessd, it records every notification while the pair moves the LIF.

    python cluster_witness.py NODE[,NODE...] LIF_ADDRESS OUT_JSONL

Connects to the first NODE's witnessd (TCP 5004, NTLM with the lab user,
packet integrity), calls WitnessrRegisterEx (NetName ``SMBCA``, IpAddress
LIF_ADDRESS), WitnessrGetInterfaceList (the LIF's state when it registered)
and then WitnessrAsyncNotify again and again, as a Windows client does.  A registration the server drops
(ERROR_NOT_FOUND: witnessd's forced unregistration 5 s after an UNAVAILABLE,
Samba's and Windows' way of making the client re-register) is registered
again; a lost connection moves on to the next NODE.  Each line of OUT_JSONL
is one JSON record with ``t`` (CLOCK_MONOTONIC seconds, the guest's clock
shared with the writers and the cifs trace) and ``what``: ``registered``,
``interfaces`` (the list: group, state, IPv4 per entry), ``change``
(RESOURCE_CHANGE: ``name``, ``state`` AVAILABLE/UNAVAILABLE), ``move``
(CLIENT_MOVE, SHARE_MOVE, IP_CHANGE: ``type``, ``addresses``),
``unregistered``, ``lost``.  Runs until SIGTERM.
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))    # tests/: witness_client
from witness_client import DceClient, SocketConnection, wait_pending  # noqa: E402
from witnessd.swn import (  # noqa: E402
    WITNESS_V2,
    AsyncNotifyRequest,
    AsyncNotifyResponse,
    GetInterfaceListRequest,
    GetInterfaceListResponse,
    InterfaceState,
    MessageType,
    RegisterExRequest,
    RegisterResponse,
    ResourceChange,
    Win32Error,
    parse_messages,
)

WITNESS_PORT = 5004
NET_NAME = "SMBCA"
CLIENT_NAME = "labclient"
KEEP_ALIVE_S = 600
RETRY_S = 1.0


def states(value: int) -> str:
    try:
        return InterfaceState(value).name
    except ValueError:
        return hex(value)


class Recorder:
    def __init__(self, path: Path) -> None:
        self.out = open(path, "a", buffering=1, encoding="utf-8")

    def __call__(self, what: str, **fields) -> None:
        self.out.write(json.dumps({"t": round(time.monotonic(), 3), "what": what, **fields})
                       + "\n")


def watch(node: str, lif: str, record: Recorder) -> None:
    """One connection to ``node``'s witnessd: register, then notify until it breaks."""
    client = DceClient(SocketConnection(WITNESS_PORT, node), user=os.environ["SMBCA_USER"],
                       password=os.environ["SMBCA_PASSWORD"])
    client.bind()
    while True:
        registered = client.call(4, RegisterExRequest(WITNESS_V2, NET_NAME, None, lif,
                                                      CLIENT_NAME, 0, KEEP_ALIVE_S),
                                 RegisterResponse)
        if registered.return_value != Win32Error.SUCCESS:
            record("register-failed", node=node, error=registered.return_value)
            time.sleep(RETRY_S)
            continue
        record("registered", node=node, lif=lif)
        # after registering: a change before it is in the list, one after it
        # comes as a notification (one that came while the client was
        # re-registering is not lost)
        listing = client.call(0, GetInterfaceListRequest(), GetInterfaceListResponse)
        entries = listing.interface_list.interface_info if listing.interface_list else ()
        record("interfaces", node=node, result=listing.return_value,
               list=[{"group": e.interface_group_name, "state": states(e.state),
                      "ipv4": str(e.ipv4)} for e in entries])
        handle = registered.context_handle
        while True:
            pdus = client.send_call(3, AsyncNotifyRequest(handle)) \
                or wait_pending(client, KEEP_ALIVE_S + 60)
            if not pdus:
                continue
            answer = client.decode_answer(pdus, AsyncNotifyResponse)
            if answer.return_value == Win32Error.NOT_FOUND:
                record("unregistered", node=node)
                break                                  # register again
            if answer.return_value != Win32Error.SUCCESS or answer.response is None:
                record("notify-error", node=node, error=answer.return_value)
                continue
            kind = MessageType(answer.response.message_type)
            for message in parse_messages(answer.response):
                if isinstance(message, ResourceChange):
                    record("change", node=node, name=message.resource_name,
                           state=states(message.change_type))
                else:
                    record("move", node=node, type=kind.name,
                           addresses=[str(a.ipv4) for a in message.addresses])


def main(argv: list[str]) -> int:
    nodes, lif, out = argv[0].split(","), argv[1], Path(argv[2])
    record = Recorder(out)
    index = 0
    while True:
        node = nodes[index % len(nodes)]
        try:
            watch(node, lif, record)
        except (OSError, ConnectionError, AssertionError) as exc:
            record("lost", node=node, error=str(exc)[:200])
        index += 1
        time.sleep(RETRY_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
