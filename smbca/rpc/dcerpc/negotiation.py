"""Presentation context and fragment size negotiation ([MS-RPCE] 3.3.1.5.3, 3.3.1.5.6).

Pure functions: the connection passes in what the client proposed and what
is already bound, and applies the outcome (bind_ack / alter_context_resp
results, new rows of the Table of Presentation Contexts, bind time features).
"""

from collections.abc import Mapping
from dataclasses import dataclass

from smbca.rpc.dcerpc.constants import BindTimeFeatures, ContextResult, ProviderReason
from smbca.rpc.dcerpc.elements import (
    NDR20,
    PresentationContext,
    PresentationResult,
    SyntaxId,
    bind_time_features,
)
from smbca.rpc.dcerpc.errors import ProtocolError
from smbca.rpc.dcerpc.interface import InterfaceHandler, InterfaceKey

MIN_FRAG_SIZE = 2048
"""Floor of the negotiated fragment size (Samba's dcesrv_bind, matching Windows 2012 R2)."""
SUPPORTED_FEATURES = BindTimeFeatures.KEEP_CONNECTION_ON_ORPHAN
"""Bind time features granted: one security context per connection; orphans never close it."""


def negotiate_frag_size(client_xmit: int, client_recv: int, server_max: int) -> int:
    """One fragment size for both directions, chosen as Windows and Samba do.

    min(client max_xmit_frag, client max_recv_frag), raised to MIN_FRAG_SIZE,
    capped by the server's own limit, rounded down to a multiple of 8.
    """
    size = max(MIN_FRAG_SIZE, min(client_xmit, client_recv))
    return min(size, server_max) & ~7


@dataclass(frozen=True, slots=True)
class BoundContext:
    """A negotiated row of the Table of Presentation Contexts ([MS-RPCE] 3.3.3.1.1)."""

    p_cont_id: int
    abstract_syntax: SyntaxId
    transfer_syntax: SyntaxId
    handler: InterfaceHandler


@dataclass(frozen=True, slots=True)
class Negotiation:
    """Outcome of one bind or alter_context: results in proposal order, new contexts, features."""

    results: tuple[PresentationResult, ...]
    new_contexts: Mapping[int, BoundContext]
    features: int | None


class ContextError(ProtocolError):
    """A proposal list the server cannot answer per context (bind_nak or fault instead)."""


_ABSTRACT_UNSUPPORTED = PresentationResult(
    result=ContextResult.PROVIDER_REJECTION, reason=ProviderReason.ABSTRACT_SYNTAX_NOT_SUPPORTED)
_TRANSFER_UNSUPPORTED = PresentationResult(
    result=ContextResult.PROVIDER_REJECTION,
    reason=ProviderReason.PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED)
_ACCEPTED_NDR20 = PresentationResult(
    result=ContextResult.ACCEPTANCE, reason=ProviderReason.REASON_NOT_SPECIFIED,
    transfer_syntax=NDR20)


def negotiate_contexts(
    elements: tuple[PresentationContext, ...],
    interfaces: Mapping[InterfaceKey, InterfaceHandler],
    bound: Mapping[int, BoundContext],
    *,
    allow_features: bool,
    max_contexts: int,
) -> Negotiation:
    """One p_result_t per p_cont_elem_t, in order ([C706] 12.6.3.1, [MS-RPCE] 3.3.1.5.6).

    NDR 2.0 is the only transfer syntax: NDR64 and anything else is declined
    with provider_rejection / proposed_transfer_syntaxes_not_supported, an
    unknown interface with abstract_syntax_not_supported.  A bind may carry
    one bind time feature negotiation context, answered negotiate_ack with
    the granted bits in the reason field (3.3.1.5.3).
    """
    results: list[PresentationResult] = []
    new: dict[int, BoundContext] = {}
    features: int | None = None
    for element in elements:
        if not element.transfer_syntaxes:
            raise ContextError(f"context {element.p_cont_id} proposes no transfer syntax")
        requested = bind_time_features(element.transfer_syntaxes[0])
        if allow_features and requested is not None:
            if features is not None:
                raise ContextError("more than one bind time feature negotiation context")
            features = requested & SUPPORTED_FEATURES
            results.append(PresentationResult(result=ContextResult.NEGOTIATE_ACK, reason=features))
            continue
        results.append(_negotiate_one(element, interfaces, bound, new, max_contexts))
    return Negotiation(tuple(results), new, features)


def _negotiate_one(element: PresentationContext,
                   interfaces: Mapping[InterfaceKey, InterfaceHandler],
                   bound: Mapping[int, BoundContext], new: dict[int, BoundContext],
                   max_contexts: int) -> PresentationResult:
    abstract = element.abstract_syntax
    handler = interfaces.get((abstract.if_uuid, abstract.major))
    if handler is None:
        return _ABSTRACT_UNSUPPORTED
    if NDR20 not in element.transfer_syntaxes:
        return _TRANSFER_UNSUPPORTED
    existing = bound.get(element.p_cont_id) or new.get(element.p_cont_id)
    if existing is not None:
        # Re-proposing a context id is fine for the same interface only (as Samba).
        if existing.abstract_syntax != abstract:
            raise ContextError(f"context {element.p_cont_id} rebound to another interface")
        return _ACCEPTED_NDR20
    if any(context.abstract_syntax == abstract for context in new.values()):
        return _TRANSFER_UNSUPPORTED  # at most one transfer syntax per interface (3.3.1.5.6)
    if len(bound) + len(new) >= max_contexts:
        raise ContextError("presentation context limit reached ([MS-RPCE] 3.3.3.5.5)")
    new[element.p_cont_id] = BoundContext(element.p_cont_id, abstract, NDR20, handler)
    return _ACCEPTED_NDR20
