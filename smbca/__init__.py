"""What smbcad, witnessd and clusdisk share: config primitives, the JSON-line
control protocol and its socket paths, typed inter-daemon events, sd_notify,
NTSTATUS, the NTLM/SPNEGO acceptor, the DCE/RPC core and NDR, and the
``smbca`` admin command.

The daemons import this package and never each other; it imports none of
them (tests/unit/test_layering.py).
"""
