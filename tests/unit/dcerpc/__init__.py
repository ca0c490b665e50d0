"""Tests of the sans-IO DCE/RPC core (smbca.rpc.dcerpc)."""
