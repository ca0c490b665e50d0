"""Resource limits (issue 17): each one that bites is counted in
``smbcad_limit_hits_total{limit}`` and said in the log, at most once per
``LOG_INTERVAL_S`` per limit with the number of hits in between, so a flood
of refused connections does not become a flood of log lines too.

The limits themselves are enforced where the resource is: connections and
buffers in ``smbcad.transport``, credits and async requests in
``smbcad.server.connection``.  This module only reports.
"""

import logging
import time

log = logging.getLogger("smbcad.limits")

LOG_INTERVAL_S = 10.0

# limit → log level.  Refusals are warnings; back-pressure that a fast,
# well-behaved client can meet (a full receive queue) is only debug.
LIMITS = {
    "connections": logging.WARNING,              # server.max_connections
    "connections_per_client": logging.WARNING,   # server.max_connections_per_client
    "auth_timeout": logging.WARNING,             # server.auth_timeout_s
    "idle_timeout": logging.INFO,                # server.idle_timeout_s
    "credits": logging.WARNING,                  # a request beyond the credits granted
    "async_requests": logging.WARNING,           # server.max_async_requests
    "async_requests_per_session": logging.WARNING,   # server.max_async_requests_per_session
    "channels_per_session": logging.WARNING,     # server.max_channels_per_session
    "preauth_frame": logging.WARNING,            # a large frame before authentication
    "frame_size": logging.WARNING,               # a frame past server.max_io_bytes + headers
    "receive_buffer": logging.DEBUG,             # reading paused: requests queued
    "send_buffer": logging.WARNING,              # responses unread: server.send_timeout_s, 64 MiB
}


class LimitReporter:
    """Counts and logs limit hits; ``clock`` is injectable for tests."""

    def __init__(self, counter, *, clock=time.monotonic,
                 interval_s: float = LOG_INTERVAL_S) -> None:
        # Every label is made now: the label set is fixed and small.
        self._counters = {limit: counter.labels(limit=limit) for limit in LIMITS}
        self._clock = clock
        self._interval_s = interval_s
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = dict.fromkeys(LIMITS, 0)

    def hit(self, limit: str, peer: str, detail: str) -> None:
        self._counters[limit].inc()
        now = self._clock()
        last = self._last_logged.get(limit)
        if last is not None and now - last < self._interval_s:
            self._suppressed[limit] += 1
            return
        suppressed, self._suppressed[limit] = self._suppressed[limit], 0
        self._last_logged[limit] = now
        more = f" (and {suppressed} more since the last report)" if suppressed else ""
        log.log(LIMITS[limit], "%s: limit %s: %s%s", peer, limit, detail, more)
