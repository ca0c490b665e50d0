"""Event-loop lag probe (issue 17, fairness): a callback scheduled every
``interval_s`` notes how late the loop ran it.  One request or connection that
holds the loop (a directory scan, a long run of queued frames) shows here as
lag, whatever the client measuring it sees.

Exported as ``smbcad_event_loop_lag_seconds`` (histogram of every lateness)
and ``smbcad_event_loop_lag_max_seconds`` (the worst in the last
``window_s``), both declared in ``smbcad.metrics``.
"""

import asyncio
import collections
import time


class LoopLagProbe:
    """Start with ``start()`` on the running loop; ``stop()`` cancels it.
    ``clock`` is the loop's (monotonic) time unless a test gives another."""

    def __init__(self, metrics, interval_s: float = 0.1, window_s: float = 10.0,
                 clock=time.monotonic) -> None:
        self._histogram = metrics.loop_lag
        self._interval_s = interval_s
        self._window_s = window_s
        self._clock = clock
        self._recent: collections.deque = collections.deque()   # (when, lag), newest last
        self._handle = None
        self._due = 0.0
        metrics.loop_lag_max.set_function(self.worst_recent)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = self._clock() + self._interval_s
        self._handle = loop.call_later(self._interval_s, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._clock()
        self.observe(now, max(0.0, now - self._due))
        self._due = now + self._interval_s
        self._handle = asyncio.get_running_loop().call_later(self._interval_s, self._tick)

    def observe(self, now: float, lag: float) -> None:
        self._histogram.observe(lag)
        recent = self._recent
        # Only a new worst (or the window's end) needs keeping: a monotonic
        # deque of decreasing lags gives the window's maximum in O(1).
        while recent and recent[-1][1] <= lag:
            recent.pop()
        recent.append((now, lag))
        while recent and recent[0][0] < now - self._window_s:
            recent.popleft()

    def worst_recent(self) -> float:
        recent = self._recent
        now = self._clock()
        while recent and recent[0][0] < now - self._window_s:
            recent.popleft()
        return recent[0][1] if recent else 0.0
