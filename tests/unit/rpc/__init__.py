"""Tests of the IPC$ named pipes and their RPC interfaces (smbcad.rpc)."""
