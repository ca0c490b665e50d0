"""Tests of the sans-IO DCE/RPC core (witnessd.dcerpc)."""
