"""A persistent open of a domain user over Kerberos (smbprotocol), for
tests/ad/test_durable_owner_ad.py; run in the member namespace with the
user's ticket in KRB5CCNAME.

``open NAME CREATE_GUID CLIENT_GUID``: DH2Q persistent + RWH lease, prints
the FileId (hex) and exits without a CLOSE, so the open is left disconnected.
``reconnect NAME CREATE_GUID CLIENT_GUID FILE_ID``: DH2C on a new session;
prints ``reconnected`` or the NTSTATUS name it failed with."""

import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persistent_client import (  # noqa: E402
    create, dh2c_context, dh2q_context, lease_context, one)
from smbprotocol.create_contexts import (  # noqa: E402
    DurableHandleFlags, SMB2CreateDurableHandleResponseV2)
from smbprotocol.connection import Capabilities, Connection  # noqa: E402
from smbprotocol.exceptions import SMBResponseException  # noqa: E402
from smbprotocol.open import CreateDisposition  # noqa: E402
from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

LEASE_KEY = b"K" * 16


def tree_for(client_guid: uuid.UUID):
    connection = Connection(client_guid, "fs1", 445, require_signing=True)
    connection.client_capabilities |= Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES
    connection.connect()
    session = Session(connection, auth_protocol="kerberos")
    session.connect()
    tree = TreeConnect(session, r"\\fs1\share")
    tree.connect()
    return tree


def main(argv: list[str]) -> int:
    verb, name, create_guid, client_guid = argv[0], argv[1], uuid.UUID(argv[2]), uuid.UUID(argv[3])
    tree = tree_for(client_guid)
    if verb == "open":
        handle, contexts = create(tree, name, [dh2q_context(create_guid, 60_000),
                                               lease_context(LEASE_KEY)],
                                  CreateDisposition.FILE_OVERWRITE_IF, lease=True)
        durable = one(contexts, SMB2CreateDurableHandleResponseV2)
        if not durable["flags"].has_flag(DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT):
            print("not persistent", flush=True)
            return 1
        print(handle.file_id.hex(), flush=True)
        return 0
    try:
        create(tree, name, [dh2c_context(bytes.fromhex(argv[4]), create_guid),
                            lease_context(LEASE_KEY)], lease=True)
    except SMBResponseException as exc:
        print(exc.status_name if hasattr(exc, "status_name") else hex(exc.status), flush=True)
        return 1
    print("reconnected", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
