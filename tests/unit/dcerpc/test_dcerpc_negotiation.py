"""Presentation context and fragment size negotiation ([MS-RPCE] 3.3.1.5.3, 3.3.1.5.6)."""

import pytest

from smbca.rpc.dcerpc import NDR20, NDR64, PresentationContext, SyntaxId, interface_table
from smbca.rpc.dcerpc.constants import ContextResult, ProviderReason
from smbca.rpc.dcerpc.elements import NULL_SYNTAX
from smbca.rpc.dcerpc.negotiation import ContextError, negotiate_contexts, negotiate_frag_size

from .client import ECHO, ECHO_SYNTAX, OTHER

INTERFACES = interface_table(ECHO, OTHER)
BTFN = SyntaxId.of("6cb71c2c-9812-4540-0300-000000000000", 1)
UNKNOWN = SyntaxId.of("00000000-1111-2222-3333-444444444444", 1)


def ctx(context_id: int, abstract: SyntaxId, *transfers: SyntaxId) -> PresentationContext:
    return PresentationContext(p_cont_id=context_id, abstract_syntax=abstract,
                               transfer_syntaxes=transfers)


def negotiate(*elements: PresentationContext, bound=None, allow_features=True, max_contexts=100):
    return negotiate_contexts(elements, INTERFACES, bound or {},
                              allow_features=allow_features, max_contexts=max_contexts)


def pairs(outcome) -> list[tuple[int, int]]:
    return [(r.result, r.reason) for r in outcome.results]


def test_ndr20_accepted() -> None:
    outcome = negotiate(ctx(0, ECHO_SYNTAX, NDR20))
    assert pairs(outcome) == [(ContextResult.ACCEPTANCE, 0)]
    assert outcome.results[0].transfer_syntax == NDR20
    assert outcome.new_contexts[0].abstract_syntax == ECHO_SYNTAX
    assert outcome.new_contexts[0].handler is ECHO


def test_ndr64_only_is_declined() -> None:
    outcome = negotiate(ctx(0, ECHO_SYNTAX, NDR64))
    assert pairs(outcome) == [(ContextResult.PROVIDER_REJECTION,
                               ProviderReason.PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED)]
    assert outcome.results[0].transfer_syntax == NULL_SYNTAX
    assert not outcome.new_contexts


def test_windows_style_ndr64_then_ndr20_then_btfn() -> None:
    outcome = negotiate(ctx(0, ECHO_SYNTAX, NDR64), ctx(1, ECHO_SYNTAX, NDR20),
                        ctx(2, ECHO_SYNTAX, BTFN))
    assert pairs(outcome) == [
        (ContextResult.PROVIDER_REJECTION, ProviderReason.PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED),
        (ContextResult.ACCEPTANCE, 0),
        (ContextResult.NEGOTIATE_ACK, 0x02),  # keep-connection-on-orphan only
    ]
    assert outcome.features == 0x02
    assert list(outcome.new_contexts) == [1]


def test_unknown_interface_and_version() -> None:
    other_v1 = SyntaxId(OTHER.syntax.if_uuid, 1)  # OTHER is registered as v2 only
    outcome = negotiate(ctx(0, UNKNOWN, NDR20), ctx(1, other_v1, NDR20))
    assert pairs(outcome) == [(ContextResult.PROVIDER_REJECTION,
                               ProviderReason.ABSTRACT_SYNTAX_NOT_SUPPORTED)] * 2


def test_multi_interface_bind_accepts_each() -> None:
    outcome = negotiate(ctx(0, ECHO_SYNTAX, NDR20), ctx(1, OTHER.syntax, NDR64, NDR20))
    assert pairs(outcome) == [(ContextResult.ACCEPTANCE, 0)] * 2
    assert outcome.new_contexts[1].handler is OTHER


def test_at_most_one_transfer_syntax_per_interface() -> None:
    outcome = negotiate(ctx(0, ECHO_SYNTAX, NDR20), ctx(1, ECHO_SYNTAX, NDR20))
    assert pairs(outcome)[1] == (ContextResult.PROVIDER_REJECTION,
                                 ProviderReason.PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED)


def test_rebinding_a_context_id() -> None:
    bound = dict(negotiate(ctx(0, ECHO_SYNTAX, NDR20)).new_contexts)
    again = negotiate(ctx(0, ECHO_SYNTAX, NDR20), bound=bound)
    assert pairs(again) == [(ContextResult.ACCEPTANCE, 0)] and not again.new_contexts
    with pytest.raises(ContextError):
        negotiate(ctx(0, OTHER.syntax, NDR20), bound=bound)


def test_feature_negotiation_rules() -> None:
    with pytest.raises(ContextError):
        negotiate(ctx(0, ECHO_SYNTAX, BTFN), ctx(1, ECHO_SYNTAX, BTFN))
    # in alter_context the pseudo syntax is just an unsupported transfer syntax
    outcome = negotiate(ctx(0, ECHO_SYNTAX, BTFN), allow_features=False)
    assert pairs(outcome) == [(ContextResult.PROVIDER_REJECTION,
                               ProviderReason.PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED)]


def test_empty_transfer_list_and_context_limit() -> None:
    with pytest.raises(ContextError):
        negotiate(ctx(0, ECHO_SYNTAX))
    with pytest.raises(ContextError):
        negotiate(ctx(0, ECHO_SYNTAX, NDR20), ctx(1, OTHER.syntax, NDR20), max_contexts=1)


@pytest.mark.parametrize("xmit, recv, server, expected", [
    (4280, 4280, 4280, 4280),
    (5840, 5840, 4280, 4280),
    (5840, 5840, 5840, 5840),
    (1024, 4280, 4280, 2048),  # raised to the 2048 floor
    (4281, 4283, 5840, 4280),  # rounded down to a multiple of 8
    (65535, 65535, 65535, 65528),
])
def test_frag_size(xmit: int, recv: int, server: int, expected: int) -> None:
    assert negotiate_frag_size(xmit, recv, server) == expected
