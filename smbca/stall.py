"""A report when a daemon's stop takes too long.

A daemon asked to stop (SIGTERM) that has not exited after ``seconds``
writes, once, what it is waiting on: the Python stack of every thread
(``faulthandler``, which works even when the event loop itself is blocked,
for instance joining a thread stuck in an ioctl) and, if the loop still
runs, every pending asyncio task with its stack.  systemd (or a test's
harness) SIGKILLs a daemon that overruns its stop timeout; without this
report the log would end at "leaving the cluster" and nobody could say why.
"""

import asyncio
import faulthandler
import io
import logging
import sys

log = logging.getLogger("smbca.stall")


def tasks_report(loop: asyncio.AbstractEventLoop) -> str:
    """Every pending task of ``loop`` with the frames it is suspended in."""
    out = io.StringIO()
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        if task.done():
            continue
        out.write(f"task {task.get_name()}: {task.get_coro()!r}\n")
        task.print_stack(limit=12, file=out)
    return out.getvalue()


class StopOverrun:
    """``arm()`` when a signal asks for the stop; ``loop_done()`` as the
    daemon's ``run`` returns (its loop can report nothing more); ``disarm()``
    once ``asyncio.run`` has returned, which includes joining the threads
    of ``asyncio.to_thread``: a hang there is reported by the thread dump."""

    def __init__(self, what: str, seconds: float, stream=None) -> None:
        self.what = what
        self.seconds = seconds
        self._stream = stream
        self._handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self._handle is not None or self.seconds <= 0:
            return
        stream = self._stream or sys.stderr
        try:
            faulthandler.dump_traceback_later(self.seconds, exit=False, file=stream)
        except (ValueError, io.UnsupportedOperation, OSError) as exc:
            # A stream without a file descriptor (pytest's capture): tasks only.
            log.debug("no thread dump on a stop overrun: %s", exc)
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(self.seconds, self._report, loop)

    def _report(self, loop: asyncio.AbstractEventLoop) -> None:
        log.warning("%s is still stopping after %g s; waiting on:\n%s", self.what,
                    self.seconds, tasks_report(loop) or "(no pending task)\n")

    def loop_done(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def disarm(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        self.loop_done()
        self._handle = None
