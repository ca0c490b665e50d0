"""The per-connection command sequence window and credit grants
([MS-SMB2] 3.3.1.1, 3.3.1.2, 3.3.5.2.3, 3.3.5.2.5).

A client may use MessageId m only if m is inside the window the server has
granted and has not been used.  Large requests consume ``CreditCharge`` ids.
The window is a sliding bitmap: ``low`` is the lowest unused id, and ``high``
one past the highest granted.
"""

from dataclasses import dataclass, field


class CreditError(Exception):
    """A MessageId outside the window or reused: the connection is dropped (3.3.5.2.3)."""


@dataclass
class CreditWindow:
    """Sequence window of one connection.  ``max_outstanding`` caps the grant."""

    max_outstanding: int = 8192
    low: int = 0
    high: int = 1                       # NEGOTIATE (MessageId 0) is always allowed
    _used_above_low: set = field(default_factory=set)

    @property
    def granted(self) -> int:
        """Ids the client may still use."""
        return self.high - self.low - len(self._used_above_low)

    def consume(self, message_id: int, charge: int) -> None:
        """Mark ``charge`` ids starting at ``message_id`` as used (3.3.5.2.3)."""
        charge = max(charge, 1)
        end = message_id + charge
        if message_id < self.low or end > self.high:
            raise CreditError(f"MessageId {message_id}+{charge} outside [{self.low},{self.high})")
        used = self._used_above_low
        for mid in range(message_id, end):
            if mid in used:
                raise CreditError(f"MessageId {mid} reused")
        if message_id == self.low:
            self.low = end
            while self.low in used:
                used.discard(self.low)
                self.low += 1
        else:
            used.update(range(message_id, end))

    def grant(self, requested: int, charge: int, in_flight: int = 0) -> int:
        """Credits for one response: what was asked (at least the charge back,
        at least one), capped so outstanding credits plus ``in_flight``
        requests (async ones pending, which gave their credit back with the
        interim response) stay under the maximum (3.3.1.2)."""
        # "To maintain the same number of credits already granted, the server
        # returns a value equal to the number of credits consumed" (3.3.1.2):
        # a multi-credit request asking for fewer than its charge still gets
        # the charge back, as Samba's smb2_set_operation_credit grants
        # credit_charge + (CreditRequest - 1).
        want = max(requested, charge, 1)
        room = self.max_outstanding - self.granted - in_flight
        grant = max(min(want, room), 0)
        if grant == 0 and self.granted == 0:
            grant = 1                      # never leave the client with no credit
        self.high += grant
        return grant
