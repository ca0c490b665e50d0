"""Malformed lsarpc / samr stubs: every mutation of a captured request gets an answer
or an RpcFault (a fault PDU on the wire), never another exception."""

import random

import pytest

from smbca.rpc.dcerpc import RpcFault
from smbcad.rpc.handles import ContextHandles
from smbcad.rpc.lsarpc import LSARPC_SYNTAX, lsarpc_interface
from smbcad.rpc.samr import SAMR_SYNTAX, samr_interface

from . import vectors_lsa as v
from .client import call_context, directory

LSA = {6: v.OPEN_POLICY_REQUEST, 14: v.LOOKUP_NAMES_EVERYONE_REQUEST,
       15: v.LOOKUP_SIDS_THREE_REQUEST, 0: v.CLOSE_REQUEST, 45: v.GET_USER_NAME_REQUEST,
       7: v.QUERY_POLICY_PRIMARY_REQUEST, 77: v.LOOKUP_NAMES4_REQUEST,
       44: v.OPEN_POLICY2_REQUEST, 46: v.QUERY_POLICY2_DNS_REQUEST}
SAMR = {64: v.SAMR_CONNECT5_REQUEST, 6: v.SAMR_ENUM_DOMAINS_REQUEST,
        5: v.SAMR_LOOKUP_DOMAIN_REQUEST, 7: v.SAMR_OPEN_DOMAIN_BUILTIN_REQUEST,
        17: v.SAMR_LOOKUP_NAMES_REQUEST, 1: v.SAMR_CLOSE_REQUEST, 18: v.SAMR_LOOKUP_IDS_REQUEST}


def mutations(stub: bytes, seed: int):
    rng = random.Random(seed)
    for length in range(len(stub)):
        yield stub[:length]
    for _ in range(200):
        data = bytearray(stub)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0x80, rng.randrange(256)))
        yield bytes(data)


def interfaces():
    names = directory()
    handles = ContextHandles(1)
    return handles, (lsarpc_interface(names.names, names.policy, handles),
                     samr_interface(names.sam, handles))


@pytest.mark.parametrize(("which", "opnum"), [("lsa", op) for op in LSA] +
                         [("samr", op) for op in SAMR])
def test_mutated_requests_never_escape(which: str, opnum: int) -> None:
    handles, (lsa, samr) = interfaces()
    interface, vectors, syntax = ((lsa, LSA, LSARPC_SYNTAX) if which == "lsa"
                                  else (samr, SAMR, SAMR_SYNTAX))
    call = call_context(syntax)
    policy = handles.create(b"lsap", 0x00020807)
    server = handles.create(b"samS", 0x00020031)
    handle = policy if which == "lsa" else server
    stub = vectors[opnum]
    if opnum not in (6 if which == "lsa" else 64, 44, 77):
        stub = handle + stub[20:]  # a live handle, so the mutations reach the lookups
    for data in mutations(stub, opnum):
        try:
            interface(opnum, data, call)
        except RpcFault:
            pass
